"""``run_app.py process --ray``: the same files as a local run, long videos split into ranges, a killed task retried.

One Ray head on 127.0.0.1 serves the module (``cluster.local_head``), stopped after it."""
from __future__ import annotations

import csv
import json
import os
import signal
import threading
import time
from pathlib import Path

import av
import pytest

pytest.importorskip("ray")

from app.core import process  # noqa: E402
from app.core.batch import INDEX_CSV  # noqa: E402
from app.core.cluster import local_head  # noqa: E402
from app.core.frame_ranges import parts_dir  # noqa: E402
from tests.conftest import require_shared  # noqa: E402

FRAMES = "45"


@pytest.fixture(scope="module")
def ray_address() -> str:
    with local_head(num_cpus=2) as address:
        yield address


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def statuses(out: Path) -> list[tuple[str, str, str, str]]:
    return [(Path(r["input"]).name, r["status"], r["frames"], r["faces"]) for r in rows(out / INDEX_CSV)]


def test_a_cluster_run_writes_the_csvs_and_videos_a_local_run_writes(ray_address, tmp_path):
    videos = [str(require_shared("videos", name)) for name in ("d18.mp4", "d3.mp4", "obama_truncated.mp4")]
    common = ["--max-frames", FRAMES]
    assert process.main([*videos, "--out", str(tmp_path / "local"), *common]) == 0
    assert process.main([*videos, "--out", str(tmp_path / "ray"), "--ray", ray_address, *common]) == 0
    for name in ("d18", "d3", "obama_truncated"):
        for output in (f"{name}.csv", f"{name}.annotated.mp4"):
            assert (tmp_path / "ray" / output).read_bytes() == (tmp_path / "local" / output).read_bytes(), output
        local, ray = (json.loads((tmp_path / d / f"{name}.summary.json").read_text()) for d in ("local", "ray"))
        for key in ("frames", "decoded", "failed", "processed", "faces", "face_ids", "complete", "mode"):
            assert ray[key] == local[key], (name, key)
    assert statuses(tmp_path / "ray") == statuses(tmp_path / "local")


def test_a_long_video_runs_as_frame_ranges_merged_into_one_csv_and_video(ray_address, tmp_path):
    video = str(require_shared("videos", "d18.mp4"))
    assert process.main([video, "--out", str(tmp_path), "--ray", ray_address, "--max-frames", "60",
                         "--split-frames", "25"]) == 0
    found = rows(tmp_path / "d18.csv")
    assert [r["frame"] for r in found] == [str(i) for i in range(60)] and {r["face_id"] for r in found} == {"1"}
    summary = json.loads((tmp_path / "d18.summary.json").read_text())
    assert summary["ranges"] == 3 and summary["processed"] == 60 and summary["plot"] is not None
    with av.open(str(tmp_path / "d18.annotated.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 60
    assert not parts_dir(tmp_path, "d18").exists()


def test_a_task_whose_worker_is_killed_is_retried_and_keeps_the_rows_written(ray_address, tmp_path):
    video = str(require_shared("videos", "d18.mp4"))
    args = [video, "--no-video", "--max-frames", "80"]
    assert process.main([*args, "--out", str(tmp_path / "local")]) == 0
    out = tmp_path / "ray"
    codes: list[int] = []
    run = threading.Thread(target=lambda: codes.append(process.main([*args, "--out", str(out), "--ray", ray_address])))
    run.start()
    marker, csv_path = out / ".d18.attempt", out / "d18.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (csv_path.is_file() and csv_path.read_text().count("\n") > 15):
        time.sleep(0.05)
    kept = csv_path.read_text().splitlines()[:10]
    os.kill(int(marker.read_text().split()[2]), signal.SIGKILL)
    run.join(timeout=180)
    assert codes == [0]
    found = rows(csv_path)
    assert [r["frame"] for r in found] == [str(i) for i in range(80)]
    assert csv_path.read_text().splitlines()[:10] == kept == (tmp_path / "local" / "d18.csv").read_text().splitlines()[:10]
    summary = json.loads((out / "d18.summary.json").read_text())
    assert summary["resumed_from"] is not None and summary["resumed_from"] >= 10 and summary["processed"] == 80
    assert not marker.exists()
