"""Framing from the face: the face box the network's output gives, when a face is cropped again, and the
pipeline re-framing a shrunk face whose detector box is twice the face."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.core import crop, framing
from app.core.estimator import DEFAULT_MODELS_DIR
from app.core.pipeline import FacePipeline
from app.core.pose import project
from app.core.results import FaceEstimate
from tests.conftest import read_frames

MEAN_FACE = np.random.default_rng(0).normal(size=(68, 3))


def estimate(angles=(20.0, -10.0, 5.0), centre=(300.0, 200.0), scale=40.0, landmarks=None) -> FaceEstimate:
    return FaceEstimate(box=np.zeros(4), square=np.zeros(4), angles=np.array(angles), centre=np.array(centre),
                        scale=scale, landmarks=landmarks, visibility=None, network_angles=np.array(angles),
                        network_landmarks=None)


def test_the_posed_mean_face_is_the_pose_cameras_projection_in_frame_pixels():
    square, size = np.array([100.0, 50.0, 300.0, 250.0]), 64
    pose = np.array([np.radians(20.0), np.radians(-10.0), np.radians(5.0), 0.1, -0.2, 2.5])
    transform = crop.crop_transform(square, size)
    expected = crop.unwarp_points(crop.from_normalised(project(pose, MEAN_FACE), size), transform)
    centre, scale = crop.translation_to_frame(pose[3:], transform, size)
    posed = framing.posed_mean_face(estimate((20.0, -10.0, 5.0), centre, scale), MEAN_FACE)
    np.testing.assert_allclose(posed, expected, atol=1e-9)


def test_full_mode_frames_a_face_by_its_landmark_box_and_pose_mode_by_the_posed_mean_face():
    landmarks = np.array([[10.0, 20.0], [50.0, 25.0], [30.0, 70.0]])
    np.testing.assert_array_equal(framing.face_box(estimate(landmarks=landmarks), MEAN_FACE), [10, 20, 50, 70])
    pose_only = estimate()
    np.testing.assert_allclose(framing.face_box(pose_only, MEAN_FACE),
                               crop.landmark_box(framing.posed_mean_face(pose_only, MEAN_FACE)))
    assert framing.face_box(estimate(scale=float("nan")), MEAN_FACE) is None


def test_a_box_twice_the_face_is_cropped_again_and_a_matching_or_faceless_one_is_not():
    face = np.array([100.0, 100.0, 140.0, 140.0])
    twice_on_the_hair = np.array([80.0, 60.0, 160.0, 140.0])
    assert framing.needs_reframe(twice_on_the_hair, face)
    assert not framing.needs_reframe(face + 1.0, face)
    assert not framing.needs_reframe(twice_on_the_hair, None)
    assert not framing.needs_reframe(twice_on_the_hair, np.array([500.0, 500.0, 540.0, 540.0]))  # outside the crop
    assert not framing.needs_reframe(twice_on_the_hair, np.array([110.0, 110.0, 113.0, 113.0]))  # far too small


def detector_box_for(face_box: np.ndarray) -> np.ndarray:
    """A detector box that ``crop.face_box_from_detection`` maps to the square ``face_box``."""
    dx, dy, ratio = crop.DETECTOR_BOX_FIT
    side = (face_box[2] - face_box[0]) / ratio
    centre = (face_box[:2] + face_box[2:]) / 2 - [dx * side, dy * side]
    return np.r_[centre - side / 2, centre + side / 2]


@pytest.fixture(scope="module")
def shrunk_face() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A d18 frame shrunk to 1/4 on a 1280x720 canvas, its face's landmark box there (from the full-size
    frame's landmarks), and a detector box whose face box is 1.5 times the face, shifted up onto the hair."""
    frame = read_frames("d18.mp4", 1)[0]
    canvas = np.full((720, 1280, 3), 114, np.uint8)
    canvas[300:420, 900:1020] = cv2.resize(frame, (120, 120), interpolation=cv2.INTER_AREA)
    with FacePipeline(DEFAULT_MODELS_DIR, mode="full", precision="fp32") as pipeline:
        (reference,) = pipeline.process(frame).faces
    face = crop.landmark_box(reference.landmarks) * 0.25 + np.r_[900, 300, 900, 300] - 0.375
    side = face[2] - face[0]
    centre = (face[:2] + face[2:]) / 2 - [0.0, 0.2 * side]
    return canvas, face, detector_box_for(np.r_[centre - 0.75 * side, centre + 0.75 * side])


def test_a_shrunk_face_whose_box_is_half_as_large_again_and_on_the_hair_is_reframed_in_full_mode(shrunk_face):
    canvas, face, detection = shrunk_face
    side = face[2] - face[0]
    with FacePipeline(DEFAULT_MODELS_DIR, mode="full", precision="fp32") as pipeline:
        refiner = pipeline._refiner_for("full")
        (once,) = pipeline._estimator.estimate_faces(canvas, crop.face_box_from_detection(detection)[None], "full",
                                                    refiner)
        (reframed,) = pipeline.estimate(canvas, detection[None])
    assert np.abs(once.box - face).max() > 0.3 * side
    np.testing.assert_array_equal(reframed.box, crop.landmark_box(once.landmarks))
    assert np.abs(reframed.box - face).max() < 0.1 * side
    assert np.abs(crop.landmark_box(reframed.landmarks) - face).max() < 0.1 * side


def test_pose_mode_keeps_the_detector_box_because_its_output_follows_the_crop_not_the_face(shrunk_face):
    canvas, _, detection = shrunk_face
    with FacePipeline(DEFAULT_MODELS_DIR, mode="pose", precision="fp32") as pipeline:
        (estimate,) = pipeline.estimate(canvas, detection[None])
    np.testing.assert_array_equal(estimate.box, crop.face_box_from_detection(detection))
