"""The four MNN losses: zero at the ground truth, growing with the error, masked, routed to the right heads."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from app.core.pose import project
from tests.conftest import require_shared
from trainer.losses import loss_heatmap, loss_pose, loss_pose_proj, loss_visibility, target_heatmaps
from trainer.mean_face import build_mean_face
from trainer.mnn import MNN

MEAN_FACE = torch.tensor(build_mean_face(require_shared("mean_face", "bfm68.txt")), dtype=torch.float64)
POSE = torch.tensor([[0.3, -0.1, 0.2, 0.05, -0.02, 1.5], [-0.6, 0.2, -0.1, -0.1, 0.1, 1.8]], dtype=torch.float64)
SIZE, SIGMA = 32, 1.0


def _landmarks_px() -> torch.Tensor:
    return torch.rand(2, 68, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 24 + 4


def _logits_at(points: torch.Tensor) -> torch.Tensor:
    """Heatmap logits whose softmax is exactly the target heatmap."""
    return torch.log(target_heatmaps(points, SIZE, SIGMA).clamp(min=1e-30))


def test_pose_loss_is_zero_at_the_ground_truth_and_grows_with_the_error() -> None:
    has = torch.tensor([True, True])
    assert loss_pose(POSE, POSE, has) == 0
    small = loss_pose(POSE + 0.01, POSE, has)
    large = loss_pose(POSE + 0.1, POSE, has)
    assert 0 < small < large


def test_pose_loss_ignores_images_without_a_pose_label() -> None:
    wrong = POSE.clone()
    wrong[1] += 5
    assert loss_pose(wrong, POSE, torch.tensor([True, False])) == 0


def test_projection_loss_is_zero_when_the_pose_reprojects_onto_the_landmarks() -> None:
    landmarks = project(POSE, MEAN_FACE, torch)
    mask = torch.ones(2, 68, dtype=torch.bool)
    assert loss_pose_proj(POSE, landmarks, mask, MEAN_FACE) < 1e-12
    assert 0 < loss_pose_proj(POSE + 0.02, landmarks, mask, MEAN_FACE) < loss_pose_proj(POSE + 0.2, landmarks, mask, MEAN_FACE)


def test_masked_landmarks_contribute_nothing_to_any_landmark_loss() -> None:
    points = _landmarks_px()
    mask = torch.ones(2, 68, dtype=torch.bool)
    mask[:, :10] = False
    moved = points.clone()
    moved[:, :10] += 7.0
    logits = _logits_at(points)
    assert loss_heatmap(logits, moved, mask, SIGMA) == pytest.approx(float(loss_heatmap(logits, points, mask, SIGMA)))
    landmarks = project(POSE, MEAN_FACE, torch)
    shifted = landmarks.clone()
    shifted[:, :10] += 0.5
    assert loss_pose_proj(POSE, shifted, mask, MEAN_FACE) < 1e-12
    vis_logits = torch.full((2, 68), 30.0, dtype=torch.float64)
    visibility = torch.ones(2, 68, dtype=torch.bool)
    visibility[:, :10] = False
    assert loss_visibility(vis_logits, visibility, mask) < 1e-9


def test_heatmap_loss_is_zero_at_the_target_and_grows_as_the_peak_moves() -> None:
    points = _landmarks_px()
    mask = torch.ones(2, 68, dtype=torch.bool)
    assert abs(float(loss_heatmap(_logits_at(points), points, mask, SIGMA))) < 1e-6
    near = loss_heatmap(_logits_at(points + 1.0), points, mask, SIGMA)
    far = loss_heatmap(_logits_at(points + 3.0), points, mask, SIGMA)
    assert 0 < near < far


def test_visibility_loss_is_near_zero_for_confident_correct_predictions_and_grows_when_wrong() -> None:
    visibility = torch.rand(2, 68, generator=torch.Generator().manual_seed(1)) > 0.3
    mask = torch.ones(2, 68, dtype=torch.bool)
    confident = torch.where(visibility, 20.0, -20.0)
    assert loss_visibility(confident, visibility, mask) < 1e-6
    assert loss_visibility(confident * 0.1, visibility, mask) < loss_visibility(-confident * 0.1, visibility, mask)


@pytest.mark.parametrize("loss_name, head", [("pose", "fc_pose"), ("pose_proj", "fc_pose_proj"),
                                             ("heatmap", "fc_lnd"), ("visibility", "fc_vis")])
def test_each_loss_sends_gradients_to_its_own_head_only(loss_name: str, head: str) -> None:
    torch.manual_seed(0)
    model = MNN(16, 68)
    out = model(torch.randn(2, 3, 16, 16))
    mask = torch.ones(2, 68, dtype=torch.bool)
    points = torch.rand(2, 68, 2) * 14 + 1
    loss = {
        "pose": lambda: loss_pose(out.pose, torch.zeros(2, 6), torch.ones(2, dtype=torch.bool)),
        "pose_proj": lambda: loss_pose_proj(out.pose_proj, points / 8 - 1, mask, MEAN_FACE.float()),
        "heatmap": lambda: loss_heatmap(out.heatmap_logits, points, mask, SIGMA),
        "visibility": lambda: loss_visibility(out.visibility_logits, mask, mask),
    }[loss_name]()
    loss.backward()
    heads = {"fc_pose", "fc_pose_proj", "fc_lnd", "fc_vis"}
    for name in heads:
        grad = getattr(model, name).weight.grad
        touched = grad is not None and bool(torch.any(grad != 0))
        assert touched == (name == head), name
    assert model.down[0][0].weight.grad is not None


def test_target_heatmap_peaks_at_the_landmark() -> None:
    maps = target_heatmaps(torch.tensor([[[5.0, 9.0]]]), 16, 1.0)[0, 0]
    y, x = np.unravel_index(int(torch.argmax(maps)), maps.shape)
    assert (x, y) == (5, 9)
    assert float(maps.sum()) == pytest.approx(1.0)
