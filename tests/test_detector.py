"""Face detectors: BlazeFace finds the face of a real frame, nothing in a blank one; chosen by name."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.core.detector import DETECTORS, create_detector


@pytest.mark.parametrize("name", list(DETECTORS))
def test_finds_the_one_face_of_a_d18_frame(name: str, d18_frame: np.ndarray):
    detector = create_detector(name)
    try:
        boxes = detector.detect(d18_frame)
    finally:
        detector.close()
    assert boxes.shape == (1, 5)
    x1, y1, x2, y2, score = boxes[0]
    assert score > 0.5
    assert 0 <= x1 < x2 <= 480 and 0 <= y1 < y2 <= 480
    assert 100 < x2 - x1 < 400 and 100 < y2 - y1 < 400
    centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
    assert np.all(np.abs(centre - 240) < 120)


def test_a_blank_frame_has_no_face():
    detector = create_detector("blazeface")
    try:
        boxes = detector.detect(np.zeros((240, 320, 3), np.uint8))
    finally:
        detector.close()
    assert boxes.shape == (0, 5)


def test_several_faces_are_all_found_best_first(d18_frame: np.ndarray):
    pair = np.hstack([d18_frame, cv2.flip(d18_frame, 1)])
    detector = create_detector("blazeface")
    try:
        boxes = detector.detect(pair)
    finally:
        detector.close()
    assert len(boxes) == 2
    assert boxes[0, 4] >= boxes[1, 4]
    assert sorted(boxes[:, 0] < 480) == [False, True]


def test_unknown_detector_name_lists_the_choices():
    with pytest.raises(ValueError, match="blazeface"):
        create_detector("haar")
