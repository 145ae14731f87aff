"""The 6D pose head's rotations: its Euler read-out matches ``app.core.pose`` (in torch and in the exported
ONNX), and the geodesic loss stays finite with finite gradients at yaw ±90°, where Euler angles lock."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from app.core import model_io
from app.core.pose import matrix_to_angles, rotation_matrix
from tests.conftest import require_shared
from trainer.losses import loss_pose_rotation
from trainer.mnn import MNN
from trainer.rotation import geodesic_angle, matrix_to_angles as torch_angles, matrix_to_rot6d, rot6d_to_matrix


def _angles(count: int, seed: int = 0) -> np.ndarray:
    """Random (yaw, pitch, roll) radians, a third of them within 1e-4 rad of yaw ±90°."""
    rng = np.random.default_rng(seed)
    angles = np.c_[rng.uniform(-np.pi / 2, np.pi / 2, count), rng.uniform(-1.2, 1.2, count), rng.uniform(-np.pi, np.pi, count)]
    near = np.arange(count) % 3 == 0
    angles[near, 0] = np.sign(angles[near, 0]) * (np.pi / 2 - rng.uniform(0, 1e-4, near.sum()))
    return angles


def test_euler_read_out_of_6d_rotations_matches_app_pose_including_yaw_near_90() -> None:
    rotations = rotation_matrix(_angles(300))
    six = matrix_to_rot6d(torch.tensor(rotations)) * torch.tensor(np.random.default_rng(1).uniform(0.5, 2, (300, 1)))
    ours = torch_angles(rot6d_to_matrix(six)).numpy()
    np.testing.assert_allclose(rotation_matrix(ours), rotations, atol=1e-7)
    regular = np.abs(np.abs(matrix_to_angles(rotations)[:, 0]) - np.pi / 2) > 1e-3
    np.testing.assert_allclose(ours[regular], matrix_to_angles(rotations)[regular], atol=1e-7)


def test_geodesic_angle_is_the_rotation_between_and_zero_for_equal_rotations() -> None:
    a = torch.tensor(rotation_matrix(_angles(50)))
    turn = torch.tensor(rotation_matrix(np.array([0.3, 0.0, 0.0])))
    np.testing.assert_allclose(geodesic_angle(a, a @ turn).numpy(), 0.3, atol=1e-6)
    assert float(geodesic_angle(a, a).max()) < 1e-5


@pytest.mark.parametrize("yaw", [np.pi / 2, -np.pi / 2])
def test_rotation_loss_and_its_gradient_are_finite_at_yaw_90(yaw: float) -> None:
    target = torch.tensor([[yaw, 0.3, -0.2, 0.0, 0.0, 1.5], [yaw, 0.0, 0.0, 0.1, 0.0, 1.5]])
    exact = matrix_to_rot6d(rotation_matrix(target[:, :3], torch))
    for six in (exact.clone(), exact + 0.01):
        six.requires_grad_(True)
        loss = loss_pose_rotation(rot6d_to_matrix(six), target[:, 3:], target, torch.tensor([True, True]))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(six.grad).all()
    assert float(loss.detach()) > 0


def test_exported_6d_model_reports_the_euler_angles_of_its_rotation(tmp_path) -> None:
    from trainer.export import export_models
    from trainer.mean_face import build_mean_face

    torch.manual_seed(0)
    model = MNN(16, 68, pose_head="rot6d").eval()
    with torch.no_grad():
        model.fc_pose.weight.mul_(50.0)  # spread the rotations far from the identity
    images = torch.randn(8, 3, 16, 16)
    with torch.no_grad():
        _, _, rotation, _, _ = model.encode(images)
    encoder_path, _ = export_models(model, build_mean_face(require_shared("mean_face", "bfm68.txt")), tmp_path)
    session = ort.InferenceSession(str(encoder_path), providers=["CPUExecutionProvider"])
    pose = session.run(["pose"], {model_io.INPUT_NAME: images.numpy()})[0]
    assert pose.shape == (8, 6)
    expected = np.degrees(matrix_to_angles(rotation.double().numpy()))
    assert np.ptp(expected, 0).sum() > 30  # the faces are posed differently
    np.testing.assert_allclose(pose[:, :3], expected, atol=1e-3)
