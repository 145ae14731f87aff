"""Checkpoint formats and the 6D head's start: format-1 checkpoints (Euler head, no ``format``) still load,
format 2 records the head, and a 6D head fitted to an Euler head starts where that head was."""
from __future__ import annotations

import numpy as np
import torch

from app.core.pose import rotation_matrix
from tests.conftest import ROOT
from trainer.checkpoint import FORMAT, load_checkpoint, load_model, model_state, save_checkpoint
from trainer.head_init import to_rot6d_head
from trainer.mean_face import build_mean_face
from trainer.mnn import MNN
from trainer.rotation import geodesic_angle

COMMITTED = ROOT / "checkpoints" / "mnn128" / "checkpoint.pt"


def test_committed_format_1_checkpoint_loads_as_an_euler_head() -> None:
    model, mean_face = load_model(COMMITTED)
    assert model.config.pose_head == "euler" and mean_face.shape == (68, 3)
    with torch.no_grad():
        _, pose, _ = model.forward_encoder(torch.zeros(1, 3, 128, 128))
    assert pose.shape == (1, 6) and torch.isfinite(pose).all()


def test_format_1_state_without_a_pose_head_loads_and_format_2_records_the_head(tmp_path) -> None:
    old = MNN(16, 68)
    legacy = model_state(old, build_mean_face())
    del legacy["format"], legacy["config"]["pose_head"]
    save_checkpoint(tmp_path / "old.pt", legacy)
    assert load_model(tmp_path / "old.pt")[0].config.pose_head == "euler"
    save_checkpoint(tmp_path / "new.pt", model_state(MNN(16, 68, pose_head="rot6d"), build_mean_face()))
    state = load_checkpoint(tmp_path / "new.pt")
    assert state["format"] == FORMAT and state["config"]["pose_head"] == "rot6d"
    assert load_model(tmp_path / "new.pt")[0].fc_pose.out_channels == 9


def test_6d_head_fitted_to_an_euler_head_starts_from_its_poses() -> None:
    torch.manual_seed(0)
    old = MNN(16, 68).eval()
    with torch.no_grad():
        old.fc_pose.weight.mul_(20.0)  # poses spread over tens of degrees
    images = torch.randn(900, 3, 16, 16)
    new, gap = to_rot6d_head(old, images[:800])
    assert new.config.pose_head == "rot6d" and gap < 3.0
    new.eval()
    with torch.no_grad():
        _, before, _ = old.forward_encoder(images[800:])
        _, after, _ = new.forward_encoder(images[800:])
        for name, value in old.state_dict().items():
            if not name.startswith("fc_pose."):
                torch.testing.assert_close(new.state_dict()[name], value)
    held_gap = np.degrees(geodesic_angle(rotation_matrix(before[:, :3], torch), rotation_matrix(after[:, :3], torch)))
    assert np.ptp(np.degrees(before[:, :3].numpy()), 0).max() > 20
    assert float(held_gap.mean()) < 5.0
    torch.testing.assert_close(after[:, 3:], before[:, 3:])
