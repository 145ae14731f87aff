"""The pose convention (app/core/pose.py) against the AFLW2000-3D labels and its own inverses."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch

from app.core import pose
from tests.conftest import require_shared
from trainer.mean_face import build_mean_face
from trainer.pose_labels import label_errors


def _aflw_mats() -> list[dict]:
    folder = require_shared("aflw2000_mini")
    mats = [scipy.io.loadmat(p) for p in sorted(folder.glob("*.mat"))]
    assert len(mats) == 16
    return mats


def _label_degrees(mat: dict) -> np.ndarray:
    pitch, yaw, roll = mat["Pose_Para"][0, :3]
    return np.degrees([yaw, pitch, roll])


def test_rotation_of_mean_face_onto_aflw_3d_landmarks_recovers_pose_para() -> None:
    mean_face = np.loadtxt(require_shared("mean_face", "bfm68.txt"))
    errors = []
    for mat in _aflw_mats():
        target = mat["pt3d_68"].T
        a, b = mean_face - mean_face.mean(0), target - target.mean(0)
        u, _, vt = np.linalg.svd(b.T @ a)
        rot = u @ np.diag([1, 1, np.sign(np.linalg.det(u @ vt))]) @ vt
        errors.append(np.abs(np.degrees(pose.matrix_to_angles(rot)) - _label_degrees(mat)))
    assert np.mean(errors) < 1.0


def test_pnp_of_aflw_2d_landmarks_recovers_pose_para_within_two_and_a_half_degrees() -> None:
    errors = label_errors(f"aflw2000:{require_shared('aflw2000_mini')}")
    assert errors["faces"] == 16
    assert errors["mean"] < 2.5
    assert max(errors["yaw"], errors["pitch"], errors["roll"]) < 3.5


def test_matrix_to_angles_inverts_rotation_matrix() -> None:
    rng = np.random.default_rng(0)
    angles = rng.uniform([-1.5, -1.2, -1.5], [1.5, 1.2, 1.5], (200, 3))
    back = pose.matrix_to_angles(pose.rotation_matrix(angles))
    np.testing.assert_allclose(back, angles, atol=1e-9)


def test_rotation_matrix_is_a_proper_rotation() -> None:
    rot = pose.rotation_matrix(np.array([0.4, -0.3, 0.2]))
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0)


def test_project_in_torch_equals_numpy() -> None:
    mean_face = build_mean_face()
    p = np.array([[0.3, -0.2, 0.5, 0.1, -0.05, 1.4], [-0.9, 0.1, 0.0, 0.0, 0.2, 2.0]])
    expected = pose.project(p, mean_face)
    got = pose.project(torch.tensor(p), torch.tensor(mean_face), torch).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_fit_pose_recovers_a_known_pose_from_noise_free_projections() -> None:
    mean_face = build_mean_face()
    truth = np.array([0.6, -0.25, 0.3, 0.05, -0.1, 1.6])
    fitted = pose.fit_pose(pose.project(truth, mean_face) * 100 + 64, mean_face)
    np.testing.assert_allclose(fitted[:3], truth[:3], atol=1e-6)
    np.testing.assert_allclose(fitted[3:5], truth[3:5] * 100 + 64, atol=1e-4)
    assert fitted[5] == pytest.approx(truth[5] / 100, rel=1e-6)


def test_fit_pose_rejects_too_few_landmarks() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        pose.fit_pose(np.zeros((68, 2)), build_mean_face(), np.r_[np.ones(3), np.zeros(65)])


def test_positive_yaw_turns_the_face_towards_the_image_left() -> None:
    mean_face = build_mean_face()
    projected = pose.project(np.radians([30.0, 0, 0, 0, 0, 0]) + np.r_[0, 0, 0, 0, 0, 1.0], mean_face)
    nose, jaw_mid = projected[30, 0], (projected[0, 0] + projected[16, 0]) / 2
    assert nose < jaw_mid
    assert pose.axes_endpoints(np.array([30.0, 0, 0]), np.zeros(2), 1.0)[2, 0] < 0


def test_axes_of_a_frontal_face_point_right_up_and_at_the_viewer() -> None:
    ends = pose.axes_endpoints(np.zeros(3), np.array([50.0, 50.0]), 10.0)
    np.testing.assert_allclose(ends, [[60, 50], [50, 40], [50, 50]], atol=1e-9)


def test_positive_pitch_looks_up_like_aflw2000() -> None:
    mean_face = build_mean_face()
    up = pose.project(np.r_[0, np.radians(20), 0, 0, 0, 1.0], mean_face)
    level = pose.project(np.r_[0, 0, 0, 0, 0, 1.0], mean_face)
    nose_tip_rise = level[30, 1] - up[30, 1]
    assert nose_tip_rise > 0.1
    assert pose.axes_endpoints(np.array([0, 20.0, 0]), np.zeros(2), 1.0)[2, 1] < 0


def test_facing_direction_points_at_the_viewer_left_for_positive_yaw_and_up_for_positive_pitch() -> None:
    np.testing.assert_allclose(pose.facing_direction(np.zeros(3)), [0.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(pose.facing_direction(np.radians([90.0, 0, 0])), [-1.0, 0.0, 0.0], atol=1e-12)
    assert pose.facing_direction(np.radians([0, 20.0, 0]))[1] < 0
    ends = pose.axes_endpoints(np.array([30.0, 10.0, 5.0]), np.zeros(2), 1.0)
    np.testing.assert_allclose(pose.facing_direction(np.radians([30.0, 10.0, 5.0]))[:2], ends[2], atol=1e-12)


def test_transform_angles_mirror_negates_yaw_and_roll() -> None:
    angles = np.radians([25.0, 10.0, -8.0])
    np.testing.assert_allclose(pose.transform_angles(angles, 0.0, True), angles * [-1, 1, -1], atol=1e-12)


def test_transform_angles_in_plane_turn_of_a_frontal_face_is_pure_roll() -> None:
    turned = pose.transform_angles(np.zeros(3), 20.0, False)
    np.testing.assert_allclose(np.abs(np.degrees(turned)), [0, 0, 20], atol=1e-9)


def test_wrap_degrees_brings_any_angle_into_minus_180_to_180() -> None:
    wrapped = pose.wrap_degrees(np.array([0.0, 179.0, 180.0, -180.0, 190.0, -190.0, 725.0]))
    np.testing.assert_allclose(wrapped, [0.0, 179.0, -180.0, -180.0, -170.0, 170.0, 5.0])
