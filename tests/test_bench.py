"""The benchmarks' command lines: the network alone at several batch sizes, the on-paper GPU rate, faces tiled."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app import bench_faces
from app.bench import main as bench_main
from app.bench_paper import expected_rate, graph_cost
from app.core.exit_codes import ExitCode
from app.core.model_io import ENCODER_FILE, FULL_FILE
from tests.conftest import read_frames, require_shared
from tests.model_fixtures import INPUT_SIZE, LANDMARKS, random_models  # noqa: F401  (fixture)


def test_inference_only_times_each_batch_size_on_its_own(random_models: Path, capsys: pytest.CaptureFixture):
    code = bench_main(["--inference-only", "--batch", "1,3", "--seconds", "0.01", "--warmup", "0",
                       "--models", str(random_models), "--provider", "cpu", "--precision", "fp32"])
    report = json.loads(capsys.readouterr().out)
    assert code == ExitCode.OK
    assert report["provider"] == "CPUExecutionProvider" and report["input_size"] == INPUT_SIZE
    assert [r["batch"] for r in report["results"]] == [1, 3]
    for row in report["results"]:
        assert row["runs"] >= 5 and row["median_ms"] > 0
        assert row["images_per_s"] == pytest.approx(1000 * row["batch"] / row["median_ms"], rel=2e-3, abs=0.1)


@pytest.mark.parametrize("batch", ["0", "1,x", ""])
def test_a_bad_batch_list_is_a_usage_error(batch: str):
    with pytest.raises(SystemExit) as stopped:
        bench_main(["--inference-only", "--batch", batch])
    assert stopped.value.code == ExitCode.USAGE


def test_the_graph_count_of_macs_agrees_with_the_trainers(random_models: Path):
    from trainer.summary import summarise

    counts = summarise(INPUT_SIZE, LANDMARKS)
    assert graph_cost(random_models / ENCODER_FILE)["macs"] == counts["macs_encoder"]
    assert graph_cost(random_models / FULL_FILE)["macs"] == counts["macs_full"]


def test_batch_one_on_paper_is_launch_bound_and_scales_with_the_kernel_count(random_models: Path):
    cost = graph_cost(random_models / ENCODER_FILE)
    assert cost["gpu_kernels"] == sum(cost["kernels_by_op"].values()) > 0
    small = expected_rate(cost)
    double = expected_rate({**cost, "gpu_kernels": 2 * cost["gpu_kernels"]})
    assert small["batch1"]["bound"] == "launch"
    assert double["batch1"]["expected_ms"] > small["batch1"]["expected_ms"]


def test_tiles_hold_each_face_once_inside_the_frame():
    frame = read_frames("d18.mp4", 1)[0]
    region, box = bench_faces.face_tile(frame, "blazeface")
    assert region.shape[0] == region.shape[1] and 0 <= box[0] < box[2] <= region.shape[1]
    for count in (1, 5, 20):
        tiled, boxes = bench_faces.tiled_frame(region, box, count)
        assert tiled.shape == (bench_faces.CANVAS[1], bench_faces.CANVAS[0], 3) and boxes.shape == (count, 4)
        assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= tiled.shape[1]) and np.all(boxes[:, 3] <= tiled.shape[0])
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.eye(count) * 1e9
        assert gaps.min() >= boxes[0, 2] - boxes[0, 0]


def test_bench_faces_finds_every_tiled_face_and_reports_both_modes(random_models: Path, capsys: pytest.CaptureFixture):
    video = require_shared("videos", "d18.mp4")
    code = bench_faces.main(["--video", str(video), "--faces", "1,5", "--runs", "1", "--warmup", "0",
                             "--models", str(random_models), "--precision", "fp32"])
    report = json.loads(capsys.readouterr().out)
    assert code == ExitCode.OK
    rows = {(r["mode"], r["faces"]): r for r in report["results"]}
    assert set(rows) == {("pose", 1), ("pose", 5), ("full", 1), ("full", 5)}
    assert all(row["detected"] == row["faces"] and row["frame_ms"] > 0 and row["estimate_ms"] > 0
               for row in rows.values())
    assert "refine" in rows["full", 5]["stages_ms"] and "refine" not in rows["pose", 5]["stages_ms"]
