"""Full mode's pose: the PnP pose of its landmarks, the same fit that labels the 300W training faces."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core.crop import from_normalised, to_normalised
from app.core.estimator import PoseEstimator
from app.core.landmark_pose import pose_from_landmarks, with_landmark_pose
from app.core.model_io import ModelInfo
from app.core.crop import crop_faces
from app.core.pipeline import FacePipeline, face_boxes_of
from app.core.pose import fit_pose, project
from app.core.results import EstimatorOutput
from tests.conftest import require_shared
from tests.model_fixtures import random_models  # noqa: F401  (fixture)
from trainer.mean_face import build_mean_face

SIZE = 128
MEAN_FACE = build_mean_face(require_shared("mean_face", "bfm68.txt"))
TRUE_POSES = np.array([[0.4, -0.2, 0.1, 0.05, -0.03, 1.4], [-0.9, 0.3, -0.25, -0.1, 0.08, 1.8]])


def _info() -> ModelInfo:
    return ModelInfo(path=Path("mnn_full.onnx"), variant="full", input_size=SIZE, landmarks=68,
                     mean=np.zeros(3, np.float32), std=np.ones(3, np.float32), mean_face=MEAN_FACE)


def _output(landmarks: np.ndarray) -> EstimatorOutput:
    network = np.tile(np.array([[5.0, 6.0, 7.0, 0.0, 0.0, 1.0]], np.float32), (len(landmarks), 1))
    return EstimatorOutput(network, network.copy(), landmarks.astype(np.float32),
                           np.ones(landmarks.shape[:2], np.float32), None)


def test_full_mode_pose_is_the_pose_that_projects_the_mean_face_onto_the_landmarks() -> None:
    landmarks = np.stack([from_normalised(project(p, MEAN_FACE), SIZE) for p in TRUE_POSES])
    out = _output(landmarks)
    posed = with_landmark_pose(out, _info())
    np.testing.assert_allclose(posed.pose[:, :3], np.degrees(TRUE_POSES[:, :3]), atol=1e-3)
    np.testing.assert_allclose(posed.pose[:, 3:], TRUE_POSES[:, 3:], atol=1e-4)
    assert posed.pose.dtype == np.float32
    assert posed.pose_proj is out.pose_proj and posed.landmarks is out.landmarks


def test_the_jaw_line_does_not_move_the_pose() -> None:
    landmarks = from_normalised(project(TRUE_POSES[0], MEAN_FACE), SIZE)
    moved = landmarks.copy()
    moved[:17] += 9.0
    first, second = with_landmark_pose(_output(np.stack([landmarks, moved])), _info()).pose
    np.testing.assert_allclose(first, second, atol=1e-4)


def test_a_face_whose_landmarks_give_no_pose_keeps_the_network_pose() -> None:
    landmarks = np.stack([from_normalised(project(TRUE_POSES[0], MEAN_FACE), SIZE)] * 2)
    landmarks[1, 17:] = np.nan
    out = _output(landmarks)
    posed = with_landmark_pose(out, _info())
    np.testing.assert_array_equal(posed.pose[1], out.pose[1])
    assert not np.allclose(posed.pose[0], out.pose[0])


def test_another_landmark_layout_gets_no_pnp_pose() -> None:
    assert pose_from_landmarks(np.zeros((29, 2)), np.ones(29, bool), MEAN_FACE[:29]) is None


def test_fit_pose_reaches_the_weighted_least_squares_minimum() -> None:
    rng = np.random.default_rng(4)
    weights = np.r_[np.zeros(17), rng.uniform(0.2, 1.0, 51)]
    for truth in TRUE_POSES:
        points = project(truth, MEAN_FACE) + rng.normal(0, 0.02, (68, 2))
        fitted = fit_pose(points, MEAN_FACE, weights)
        cost = (weights[:, None] * (project(fitted, MEAN_FACE) - points) ** 2).sum()
        for k in range(6):
            for step in (-1e-4, 1e-4):
                nudged = fitted.copy()
                nudged[k] += step
                assert (weights[:, None] * (project(nudged, MEAN_FACE) - points) ** 2).sum() >= cost - 1e-12


def test_the_pipeline_in_full_mode_reports_the_pose_of_its_landmarks(random_models):  # noqa: F811
    capture = cv2.VideoCapture(str(require_shared("videos", "d18.mp4")))
    ok, frame = capture.read()
    capture.release()
    assert ok
    with FacePipeline(random_models, mode="full", refiner=None) as pipeline:
        face = pipeline.process(frame).faces[0]
        info = pipeline.load("full")
    with PoseEstimator(random_models) as estimator:
        crops, _ = crop_faces(frame, face_boxes_of(face.box[None]), info.input_size)
        out = estimator.estimate(crops, "full")
    expected = pose_from_landmarks(to_normalised(out.landmarks[0], info.input_size), np.ones(68, bool), info.mean_face)
    if expected is None:
        pytest.fail("the random model's landmarks gave no pose")
    np.testing.assert_allclose([face.yaw, face.pitch, face.roll], np.degrees(expected[:3]), atol=1e-3)
    assert not np.allclose([face.yaw, face.pitch, face.roll], out.pose[0, :3], atol=1e-2)
