"""The MNN network: structure per the supplementary's tables, shapes, gradients."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from trainer.mnn import MNN, heatmap_softmax
from trainer.summary import summarise

PAPER_FULL, PAPER_ENCODER = 4_900_948, 2_048_710


def test_parameter_counts_at_256_with_68_landmarks_are_within_one_and_a_half_percent_of_the_paper() -> None:
    counts = summarise(256, 68)
    assert abs(counts["params_full"] / PAPER_FULL - 1) < 0.015
    assert abs(counts["params_encoder"] / PAPER_ENCODER - 1) < 0.015


def test_summary_command_prints_the_four_counts_as_json() -> None:
    out = subprocess.run([sys.executable, "-m", "trainer", "summary", "--input-size", "256", "--landmarks", "68", "--json"],
                         capture_output=True, text=True, check=True).stdout
    counts = json.loads(out)
    assert set(counts) == {"params_full", "params_encoder", "macs_full", "macs_encoder"}
    assert counts["macs_encoder"] < counts["macs_full"]


@pytest.mark.parametrize("size, stages", [(256, 9), (128, 8), (64, 7)])
def test_stage_count_follows_the_input_size_down_to_one_pixel(size: int, stages: int) -> None:
    model = MNN(size, 68)
    assert model.config.stages == stages
    skips, _, _ = model.eval().forward_encoder(torch.zeros(1, 3, size, size))
    assert [s.shape[-1] for s in skips] == [size >> i for i in range(stages)]
    assert skips[-1].shape[1:] == (256, 1, 1)


@pytest.mark.parametrize("landmarks", [68, 29, 98, 21])
def test_outputs_have_the_documented_shapes_for_each_landmark_layout(landmarks: int) -> None:
    model = MNN(64, landmarks).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.pose.shape == out.pose_proj.shape == (2, 6)
    assert out.heatmap_logits.shape == (2, landmarks, 64, 64)
    assert out.visibility_logits.shape == (2, landmarks)
    for t in (out.pose, out.heatmap_logits, out.visibility_logits):
        assert torch.isfinite(t).all()


def test_heatmaps_are_distributions_over_positions() -> None:
    probs = heatmap_softmax(torch.randn(2, 5, 16, 16))
    torch.testing.assert_close(probs.sum((-1, -2)), torch.ones(2, 5))


def test_every_parameter_receives_a_gradient() -> None:
    model = MNN(32, 21)
    out = model(torch.randn(2, 3, 32, 32))
    (out.pose.sum() + out.pose_proj.sum() + out.heatmap_logits.mean() + out.visibility_logits.sum()).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


def test_encoder_parameters_are_those_the_pose_outputs_depend_on() -> None:
    model = MNN(32, 21)
    _, pose, pose_proj = model.forward_encoder(torch.randn(2, 3, 32, 32))
    (pose.sum() + pose_proj.sum()).backward()
    with_grad = {id(p) for p in model.parameters() if p.grad is not None}
    assert with_grad == {id(p) for p in model.encoder_parameters()}


def test_input_size_that_is_not_a_power_of_two_is_rejected() -> None:
    with pytest.raises(ValueError, match="power of two"):
        MNN(100, 68)


def test_6d_head_reports_euler_pose_and_every_parameter_learns_through_its_rotation() -> None:
    model = MNN(32, 21, pose_head="rot6d")
    out = model(torch.randn(2, 3, 32, 32))
    assert out.pose.shape == (2, 6) and out.rotation.shape == (2, 3, 3) and out.translation.shape == (2, 3)
    torch.testing.assert_close(out.rotation @ out.rotation.transpose(1, 2), torch.eye(3).expand(2, 3, 3))
    (out.rotation.sum() + out.translation.sum() + out.pose_proj.sum() + out.heatmap_logits.mean()
     + out.visibility_logits.sum()).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


def test_pose_only_forward_skips_the_decoder() -> None:
    out = MNN(32, 21).eval()(torch.randn(1, 3, 32, 32), decoder=False)
    assert out.heatmap_logits is None and out.visibility_logits is None and out.pose.shape == (1, 6)
