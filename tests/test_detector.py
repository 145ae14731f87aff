"""Face detectors: BlazeFace finds the face of a real frame, nothing in a blank one; chosen by name."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.core.crop import face_box_from_detection
from app.core.detector import DETECTORS, create_detector, merge, tiles
from app.core.tracking import iou_matrix


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


def test_a_large_frame_is_searched_in_overlapping_square_tiles_and_a_small_one_whole():
    assert tiles(1280, 720) == [(0, 0, 480, 480), (400, 0, 880, 480), (800, 0, 1280, 480),
                                (0, 240, 480, 720), (400, 240, 880, 720), (800, 240, 1280, 720)]
    assert tiles(480, 908) == [(0, 0, 480, 480), (0, 428, 480, 908)]
    assert tiles(480, 480) == [(0, 0, 480, 480)] and tiles(560, 480) == [(0, 0, 560, 480)]
    large = tiles(3456, 2234)
    assert len(large) == 6 and large[0][:2] == (0, 0) and large[-1][2:] == (3456, 2234)
    assert all(x2 - x1 == y2 - y1 == 1277 for x1, y1, x2, y2 in large)


def test_merging_keeps_every_near_box_and_adds_only_far_boxes_of_other_faces():
    near = np.array([[100.0, 100.0, 200.0, 200.0, 0.9]])
    far = np.array([[105.0, 95.0, 210.0, 205.0, 0.95],  # the same face
                    [130.0, 130.0, 170.0, 170.0, 0.8],  # inside it
                    [500.0, 100.0, 530.0, 130.0, 0.7]])  # another face
    merged = merge(near, far)
    np.testing.assert_array_equal(merged, [near[0], far[2]])


def test_the_default_detector_finds_a_near_and_a_far_face_in_one_pass(d18_frame: np.ndarray):
    canvas = np.full((720, 1280, 3), 114, np.uint8)
    canvas[160:560, 80:480] = cv2.resize(d18_frame, (400, 400), interpolation=cv2.INTER_AREA)
    canvas[300:360, 1000:1060] = cv2.resize(d18_frame, (60, 60), interpolation=cv2.INTER_AREA)  # 1/8
    found = {}
    for name in ("blazeface_short", "blazeface"):
        detector = create_detector(name)
        try:
            found[name] = detector.detect(canvas)
        finally:
            detector.close()
    assert len(found["blazeface_short"]) == 1
    assert len(found["blazeface"]) == 2
    assert sorted((found["blazeface"][:, 0] > 900).tolist()) == [False, True]


def test_full_range_boxes_are_redrawn_to_frame_the_face_as_short_range_boxes_do(d18_frame: np.ndarray):
    short, full = create_detector("blazeface_short"), create_detector("blazeface_full")
    try:
        (near,), (raw,), (redrawn,) = short.detect(d18_frame), full.detect_raw(d18_frame), full.detect(d18_frame)
    finally:
        short.close()
        full.close()
    assert redrawn[4] == raw[4]
    face = face_box_from_detection(near)
    as_drawn, as_redrawn = (iou_matrix(face_box_from_detection(b)[None], face[None])[0, 0] for b in (raw, redrawn))
    assert as_redrawn > 0.9 and as_redrawn > as_drawn
