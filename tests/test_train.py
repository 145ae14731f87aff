"""A real training run on 32 afw faces, its resume, then export and evaluation of the result."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import require_shared
from trainer.train import annealed_lr


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True)


def _log(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    afw = require_shared("300w", "afw")
    run = tmp_path_factory.mktemp("run") / "afw32"
    result = _run("-m", "trainer", "train", "--data", f"300w:{afw}", "--input-size", "128", "--limit", "32",
                  "--pretrain-epochs", "1", "--epochs", "1", "--batch-size", "4", "--out", str(run))
    assert result.returncode == 0, result.stderr[-2000:]
    return run


def test_two_epochs_on_32_faces_lower_the_heatmap_loss(trained_run: Path) -> None:
    rows = _log(trained_run)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert [int(r["phase"]) for r in rows] == [1, 2]
    assert float(rows[1]["train_heatmap"]) < float(rows[0]["train_heatmap"])
    assert float(rows[1]["val_heatmap"]) < float(rows[0]["val_heatmap"])


def test_phase_two_logs_all_four_task_losses(trained_run: Path) -> None:
    row = _log(trained_run)[1]
    for task in ("pose", "pose_proj", "heatmap", "visibility"):
        assert float(row[f"train_{task}"]) > 0 and float(row[f"val_{task}"]) > 0
    assert float(row["train_total"]) > float(row["train_heatmap"])


def test_run_folder_holds_checkpoint_log_and_plot(trained_run: Path) -> None:
    assert {"checkpoint.pt", "best.pt", "log.csv", "losses.png"} <= {p.name for p in trained_run.iterdir()}


def _resume(trained_run: Path, copy: Path, *args: str) -> subprocess.CompletedProcess:
    """Resume a copy of ``trained_run``'s checkpoint in ``copy`` (made on first use) with ``args``."""
    if not copy.exists():
        copy.mkdir()
        (copy / "checkpoint.pt").write_bytes((trained_run / "checkpoint.pt").read_bytes())
    afw = require_shared("300w", "afw")
    return _run("-m", "trainer", "train", "--data", f"300w:{afw}", "--out", str(copy), "--resume",
                "--pretrain-epochs", "1", *args)


def test_resume_continues_at_the_next_epoch(trained_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "resumed"
    result = _resume(trained_run, copy, "--epochs", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert [int(r["epoch"]) for r in _log(copy)] == [0, 1, 2]


def test_annealing_takes_the_rate_down_a_cosine_to_the_floor_over_the_last_epochs() -> None:
    rates = [annealed_lr(1e-3, 1e-5, epoch, 10, 4) for epoch in range(10)]
    assert rates[:6] == [None] * 6
    assert all(a > b for a, b in zip(rates[6:], rates[7:]))
    assert rates[6] < 1e-3 and rates[9] > 1e-5
    assert rates[6] + rates[9] == pytest.approx(1e-3 + 1e-5)
    assert annealed_lr(1e-3, 1e-5, 3, 10, 0) is None


def test_resumed_run_logs_the_annealed_rates(trained_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "annealed"
    result = _resume(trained_run, copy, "--epochs", "3", "--anneal-epochs", "2", "--lr-floor", "1e-5")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = _log(copy)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert [float(r["lr"]) for r in rows[2:]] == pytest.approx([annealed_lr(1e-3, 1e-5, e, 4, 2) for e in (2, 3)])


def test_a_run_resumed_past_its_anneal_returns_to_the_plateau_rate(trained_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "restarted"
    assert _resume(trained_run, copy, "--epochs", "2", "--anneal-epochs", "1").returncode == 0
    result = _resume(trained_run, copy, "--epochs", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    assert [float(r["lr"]) for r in _log(copy)[1:]] == pytest.approx([1e-3, annealed_lr(1e-3, 1e-5, 2, 3, 1), 1e-3])


def test_anneal_from_starts_a_resumed_runs_cosine_below_the_plateau_rate(trained_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "settled"
    result = _resume(trained_run, copy, "--epochs", "3", "--anneal-epochs", "2", "--anneal-from", "2e-4")
    assert result.returncode == 0, result.stderr[-2000:]
    assert [float(r["lr"]) for r in _log(copy)[2:]] == pytest.approx([annealed_lr(2e-4, 1e-5, e, 4, 2) for e in (2, 3)])


def test_anneal_from_refuses_a_rate_that_is_not_positive(trained_run: Path, tmp_path: Path) -> None:
    result = _resume(trained_run, tmp_path / "refused", "--epochs", "2", "--anneal-epochs", "1", "--anneal-from", "0")
    assert result.returncode == 2
    assert "--anneal-from" in result.stderr


def test_a_resumed_run_keeps_its_phase_one_length_without_repeating_the_flag(trained_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "kept"
    copy.mkdir()
    (copy / "checkpoint.pt").write_bytes((trained_run / "checkpoint.pt").read_bytes())
    afw = require_shared("300w", "afw")
    result = _run("-m", "trainer", "train", "--data", f"300w:{afw}", "--out", str(copy), "--resume", "--epochs", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert [(int(r["epoch"]), int(r["phase"])) for r in _log(copy)] == [(0, 1), (1, 2), (2, 2)]


def test_exported_run_evaluates_on_helen_test_through_the_app_runtime(trained_run: Path, tmp_path: Path) -> None:
    helen_test = require_shared("300w", "helen_test")
    models = tmp_path / "models"
    export = _run("-m", "trainer", "export", "--checkpoint", str(trained_run / "best.pt"), "--out", str(models))
    assert export.returncode == 0, export.stderr[-2000:]
    out = tmp_path / "eval.json"
    result = _run("-m", "trainer", "evaluate", "--model", str(models), "--data", f"300w:{helen_test}",
                  "--limit", "12", "--json", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    entry = json.loads(out.read_text())["datasets"][0]
    assert entry["faces"] == entry["pose_faces"] == 12
    assert set(entry["mae"]) == {"yaw", "pitch", "roll", "mean"}
    assert set(entry["nme"]) == {"inter_ocular", "inter_pupil", "box_height"}
    assert entry["visibility"]["protocol"] == "synthetic occluder per face, seed 0"
    assert 0.0 <= entry["visibility"]["recall_at_80_precision"] <= 1.0


def test_train_names_a_bad_dataset_spec() -> None:
    result = _run("-m", "trainer", "train", "--data", "nosuchkind:/nowhere", "--out", "/tmp/never-written")
    assert result.returncode == 2
    assert "nosuchkind" in result.stderr


def test_synthetic_faces_join_training_at_the_given_ratio_drawn_afresh_each_epoch() -> None:
    from trainer.datasets.registry import open_dataset
    from trainer.mean_face import build_mean_face
    from trainer.train import CropDataset

    afw = open_dataset(f"300w:{require_shared('300w', 'afw')}")
    base = [(afw, i) for i in range(10)]
    synthetic = [(afw, i) for i in range(10, 40)]
    data = CropDataset(base, 64, build_mean_face(), (0.5,) * 3, (0.25,) * 3, None, 0, synthetic, 0.5)
    assert len(data) == 15 and data.items[:10] == base
    first = list(data.items[10:])
    assert all(item in synthetic for item in first)
    data.set_epoch(1)
    assert data.items[10:] != first
    data.set_epoch(0)
    assert data.items[10:] == first


def test_synthetic_faces_take_their_own_crop_jitter_and_originals_keep_theirs() -> None:
    from trainer.augment import AugmentConfig
    from trainer.datasets.registry import open_dataset
    from trainer.mean_face import build_mean_face
    from trainer.train import CropDataset

    afw = open_dataset(f"300w:{require_shared('300w', 'afw')}")
    still = AugmentConfig(rotation_deg=0, scale=0, translation=0, mirror=0, hsv_low=1, hsv_high=1, occlusion=0)
    shifted = AugmentConfig(rotation_deg=0, scale=0, translation=0.3, mirror=0, hsv_low=1, hsv_high=1, occlusion=0)
    faces = [(afw, i) for i in range(4)]
    data = CropDataset(faces, 64, build_mean_face(), (0.5,) * 3, (0.25,) * 3, still, 0, faces, 1.0, shifted)
    plain = CropDataset(faces, 64, build_mean_face(), (0.5,) * 3, (0.25,) * 3, None, 0)
    for i in range(4):
        assert torch.equal(data[i]["image"], plain[i]["image"])
    moves = []
    for i in range(4, 8):
        source = faces.index(data.items[i])
        moves.append(float((data[i]["landmarks_px"] - plain[source]["landmarks_px"]).abs().max()))
    assert min(moves) > 0.5 and max(moves) <= 0.3 * 64 + 1e-3  # shifts are per axis, in crop pixels


def test_synthetic_faces_rendered_from_validation_faces_are_left_out_of_training():
    from types import SimpleNamespace

    from trainer.train import exclude_sources

    originals = SimpleNamespace(names=["afw/111_1", "helen/222_3"])
    renders = SimpleNamespace(names=["afw/111_1_0", "afw/111_1_7", "helen/222_3_0", "helen/2223_0"])
    kept = exclude_sources([(renders, i) for i in range(4)], [(originals, 1)])
    assert [renders.names[i] for _, i in kept] == ["afw/111_1_0", "afw/111_1_7", "helen/2223_0"]


def _random_batch(size: int, count: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    landmarks_px = torch.rand(count, 68, 2, generator=generator) * (size - 2) + 1
    return {"image": torch.randn(count, 3, size, size, generator=generator), "landmarks_px": landmarks_px,
            "landmarks": landmarks_px / size * 2 - 1, "mask": torch.ones(count, 68, dtype=torch.bool),
            "visibility": torch.ones(count, 68, dtype=torch.bool),
            "pose": torch.tensor([[0.3, 0.1, -0.2, 0.0, 0.0, 1.5]] * count), "has_pose": torch.ones(count, dtype=torch.bool)}


def _step_macs(model, batch: dict[str, torch.Tensor], decoder: bool) -> int:
    """Convolution multiply-accumulates of one training step's forward pass, and its backward run."""
    from trainer.losses import LossWeights
    from trainer.mean_face import build_mean_face
    from trainer.train import compute_losses, weighted_total

    total = 0

    def hook(module, inputs, output) -> None:
        nonlocal total
        total += output.numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1]

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    mean_face = torch.as_tensor(build_mean_face(), dtype=torch.float32)
    losses = compute_losses(model, batch, mean_face, 1.0, decoder=decoder)
    weighted_total(losses, 2, LossWeights()).backward()
    for h in hooks:
        h.remove()
    return total


def test_encoder_only_step_leaves_the_decoder_untouched_and_costs_fewer_macs() -> None:
    from trainer.mnn import MNN

    torch.manual_seed(0)
    model = MNN(32, 68, pose_head="rot6d")
    batch = _random_batch(32)
    encoder_macs = _step_macs(model, batch, decoder=False)
    encoder = {id(p) for p in model.encoder_parameters()}
    assert all((p.grad is None) == (id(p) not in encoder) for p in model.parameters())
    model.zero_grad(set_to_none=True)
    assert encoder_macs < 0.6 * _step_macs(model, batch, decoder=True)


def test_encoder_only_epochs_come_in_blocks_each_followed_by_a_full_epoch_and_the_last_is_full() -> None:
    from trainer.train import encoder_only

    assert [encoder_only(e, 2, 10, 2) for e in range(10)] == [False, False, True, True, False, True, True, False,
                                                              True, False]
    assert not any(encoder_only(e, 2, 10, 0) for e in range(10))


def test_renders_of_validation_faces_validate_and_never_train() -> None:
    from types import SimpleNamespace

    from trainer.validation import split_synthetic

    originals = SimpleNamespace(names=["afw/111_1", "helen/222_3", "helen/333_1"])
    renders = SimpleNamespace(names=["afw/111_1_0", "afw/111_1_3", "helen/222_3_0", "helen/333_1_2"])
    train, val = split_synthetic([(renders, i) for i in range(4)], [(originals, 0), (originals, 2)])
    assert [renders.names[i] for _, i in train] == ["helen/222_3_0"]
    assert [renders.names[i] for _, i in val] == ["afw/111_1_0", "afw/111_1_3", "helen/333_1_2"]


def test_validation_report_gives_the_faces_mae_and_the_renders_mae_by_yaw_band() -> None:
    from trainer.validation import pose_report

    true = np.array([[10.0, 0, 0], [20.0, 0, 0], [15.0, 0, 0], [45.0, 0, 0], [-80.0, 0, 0]])
    pred = true + np.array([[3.0, 0, 0], [0, 0, 0], [6.0, 0, 0], [0, 3.0, 0], [0, 0, 9.0]])
    report = pose_report(pred, true, np.array([True, False, True, True, True]), 2)
    assert report["mae"] == pytest.approx(1.0)
    assert report["renders_mae"] == pytest.approx(2.0)
    assert (report["renders_mae_0-30"], report["renders_mae_30-60"], report["renders_mae_60-90"]) == pytest.approx((2, 1, 3))


def test_log_keeps_columns_that_older_epochs_lack(tmp_path: Path) -> None:
    from trainer.train import write_log

    write_log([{"epoch": 0, "val_total": 1.0}, {"epoch": 1, "val_total": 0.5, "val_mae": 3.0}], tmp_path / "log.csv")
    rows = _log(tmp_path)
    assert rows[0]["val_mae"] == "" and rows[1]["val_mae"] == "3.0"


def test_run_records_its_pose_head_and_labels_and_logs_validation_mae(trained_run: Path) -> None:
    state = torch.load(trained_run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["config"]["pose_head"] == "rot6d" and state["args"]["pose_labels"] == "fit"
    assert (trained_run / "pose_labels_fit.npz").exists()
    assert float(_log(trained_run)[-1]["val_mae"]) > 0


def test_resumed_run_keeps_its_recorded_pose_options_and_older_checkpoints_read_as_pnp_and_euler() -> None:
    from argparse import Namespace

    from trainer.train import STICKY, resolve_options

    unset = dict.fromkeys(STICKY)
    fresh = Namespace(**unset)
    resolve_options(fresh, None)
    assert (fresh.pose_labels, fresh.pose_head, fresh.encoder_only_epochs, fresh.distill_weight) == ("fit", "rot6d", 0, 0.0)
    legacy = Namespace(**unset)
    resolve_options(legacy, {"config": {"input_size": 128}, "args": {}})
    assert (legacy.pose_labels, legacy.pose_head) == ("pnp", "euler")
    told = Namespace(**unset | {"pose_labels": "fit"})
    resolve_options(told, {"config": {"input_size": 128, "pose_head": "rot6d"}, "args": {"pose_labels": "pnp",
                                                                                         "encoder_only_epochs": 2}})
    assert (told.pose_labels, told.pose_head, told.encoder_only_epochs) == ("fit", "rot6d", 2)
