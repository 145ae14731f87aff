"""Full mode's pose: the PnP pose of the rigid points of its landmarks, which expressions do not move, in the
frontal frame; and the labels' fit of the 51 inner points."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.core.crop import from_normalised, to_normalised
from app.core.estimator import DEFAULT_MODELS_DIR, PoseEstimator
from app.core.landmark_pose import (FRONTAL_PITCH_DEG, RIGID_WEIGHTS, pose_from_landmarks, rigid_pose_from_landmarks,
                                    to_frontal_frame, with_landmark_pose)
from app.core.model_io import ModelInfo
from app.core.pipeline import FacePipeline
from app.core.pose import fit_pose, project
from app.core.results import EstimatorOutput
from tests.conftest import read_frames, require_shared
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


def test_full_mode_pose_is_the_pose_that_projects_the_mean_face_onto_the_landmarks_in_the_frontal_frame() -> None:
    landmarks = np.stack([from_normalised(project(p, MEAN_FACE), SIZE) for p in TRUE_POSES])
    out = _output(landmarks)
    posed = with_landmark_pose(out, _info())
    expected = np.degrees(TRUE_POSES[:, :3]) + [0.0, FRONTAL_PITCH_DEG, 0.0]
    np.testing.assert_allclose(posed.pose[:, :3], expected, atol=1e-3)
    np.testing.assert_allclose(posed.pose[:, 3:], TRUE_POSES[:, 3:], atol=1e-4)
    assert posed.pose.dtype == np.float32
    assert posed.pose_proj is out.pose_proj and posed.landmarks is out.landmarks


def test_the_frontal_frame_moves_pitch_alone_and_by_less_than_five_degrees() -> None:
    angles = np.radians([[30.0, -10.0, 12.0], [-60.0, 20.0, -5.0]])
    moved = np.degrees(to_frontal_frame(angles) - angles)
    np.testing.assert_allclose(moved[:, [0, 2]], 0.0, atol=1e-9)
    np.testing.assert_allclose(moved[:, 1], FRONTAL_PITCH_DEG)
    assert -5.0 < FRONTAL_PITCH_DEG < 0.0


def _open_mouth(landmarks: np.ndarray, drop: float, sideways: float) -> np.ndarray:
    """``landmarks`` with the lower lip and chin pulled down by ``drop`` and the mouth pulled ``sideways``
    (crop pixels): a mouth opened wide and askew, as a tongue out to one side shows it."""
    moved = landmarks.copy()
    moved[[6, 7, 8, 9, 10, 55, 56, 57, 58, 59, 64, 65, 66, 67], 1] += drop
    moved[48:68, 0] += sideways * np.linspace(0.5, 1.0, 20)
    return moved


@pytest.mark.parametrize("pose", TRUE_POSES)
def test_an_open_mouth_does_not_turn_the_head(pose: np.ndarray) -> None:
    frontal = from_normalised(project(pose, MEAN_FACE), SIZE)
    opened = _open_mouth(frontal, drop=12.0, sideways=6.0)
    out = with_landmark_pose(_output(np.stack([frontal, opened])), _info())
    np.testing.assert_allclose(out.pose[1, :3], out.pose[0, :3], atol=1e-3)
    labels = [np.degrees(pose_from_landmarks(to_normalised(x, SIZE), np.ones(68, bool), MEAN_FACE)[:3])
              for x in (frontal, opened)]
    assert np.abs(labels[1] - labels[0]).max() > 3.0  # the 51-point fit of the labels does turn it


def test_the_rigid_fit_weighs_nose_eyes_and_brows_and_not_the_mouth_or_jaw() -> None:
    assert (RIGID_WEIGHTS[:17] == 0).all() and (RIGID_WEIGHTS[48:] == 0).all()
    assert (RIGID_WEIGHTS[17:48] > 0).all()
    assert RIGID_WEIGHTS[27:36].min() > RIGID_WEIGHTS[36:48].max() > RIGID_WEIGHTS[17:27].max()


def test_an_open_mouth_on_video_leaves_full_mode_frontal_like_pose_mode() -> None:
    frame = read_frames("d6.mp4", 230)[229]  # mouth wide open, head frontal: the 51-point fit read yaw -24°
    faces = {}
    for mode in ("full", "pose"):
        with FacePipeline(DEFAULT_MODELS_DIR, mode=mode, precision="fp32") as pipeline:
            faces[mode] = pipeline.process(frame).faces[0]
    assert abs(faces["full"].yaw) < 8.0
    assert abs(faces["full"].yaw - faces["pose"].yaw) < 8.0
    assert abs(faces["full"].pitch - faces["pose"].pitch) < 15.0


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
    assert rigid_pose_from_landmarks(np.zeros((29, 2)), np.ones(29, bool), MEAN_FACE[:29]) is None


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


def test_the_estimator_in_full_mode_reports_the_rigid_pose_of_its_landmarks(random_models):  # noqa: F811
    frame = read_frames("d18.mp4", 1)[0]
    height, width = frame.shape[:2]
    box = np.array([[width * 0.25, height * 0.2, width * 0.75, height * 0.8]])
    with PoseEstimator(random_models, precision="fp32") as estimator:
        (face,) = estimator.estimate_faces(frame, box, "full")
        info = estimator.info("full")
    expected = rigid_pose_from_landmarks(np.asarray(face.landmarks, np.float64), np.ones(68, bool), info.mean_face)
    if expected is None:
        pytest.fail("the random model's landmarks gave no pose")
    np.testing.assert_allclose(face.angles, np.degrees(expected[:3]), atol=1e-2)
    assert not np.allclose(face.angles, face.network_angles, atol=1e-1)
