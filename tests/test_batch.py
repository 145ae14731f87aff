"""Batches of ``run_app.py process`` on one machine: worker processes, the batch index, progress, resume."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import threading
import time
from pathlib import Path

import cv2
import pytest

from app.core import process
from app.core.batch import INDEX_COLUMNS, INDEX_CSV, INDEX_JSON, plan_workers
from app.core.exit_codes import ExitCode
from app.core.progress import BatchProgress
from tests.conftest import require_shared
from tests.model_fixtures import random_models  # noqa: F401  (fixture)


def clip(path: Path, start: int, count: int) -> Path:
    """``count`` frames of d18.mp4 from ``start``, as a video of their own."""
    capture = cv2.VideoCapture(str(require_shared("videos", "d18.mp4")))
    capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = [capture.read()[1] for _ in range(count)]
    capture.release()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of three short clips and a file that is not a video."""
    folder = tmp_path_factory.mktemp("inputs")
    for name, start in (("a", 0), ("b", 40), ("c", 80)):
        clip(folder / f"{name}.mp4", start, 5)
    (folder / "broken.mp4").write_bytes(b"\x00" * 500)
    return folder


def index_rows(out: Path) -> list[dict[str, str]]:
    with (out / INDEX_CSV).open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_two_workers_write_the_files_one_worker_writes_and_a_failing_input_stops_no_other(
        inputs, random_models, tmp_path, capsys):
    for workers in (1, 2):
        code = process.main([str(inputs), "--out", str(tmp_path / f"w{workers}"), "--models", str(random_models),
                             "--workers", str(workers), "--threads", "1"])
        assert code == ExitCode.INPUT
    for name in ("a.csv", "b.csv", "c.csv", "a.annotated.mp4", "c.annotated.mp4"):
        assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes(), name
    err = capsys.readouterr().err
    finished = [line for line in err.splitlines() if line.startswith("[")]
    assert len(finished) == 8 and sum("broken.mp4: failed (exit 3)" in line for line in finished) == 2
    assert sum(line.startswith("error: ") and "broken.mp4" in line for line in err.splitlines()) == 2


def test_the_batch_index_lists_every_input_with_status_frames_faces_and_time(inputs, random_models, tmp_path):
    assert process.main([str(inputs), "--out", str(tmp_path), "--models", str(random_models), "--no-video",
                         "--workers", "2"]) == ExitCode.INPUT
    rows = index_rows(tmp_path)
    assert list(rows[0]) == list(INDEX_COLUMNS)
    assert [(Path(r["input"]).name, r["status"], r["frames"], r["exit_code"]) for r in rows] == [
        ("a.mp4", "complete", "5", "0"), ("b.mp4", "complete", "5", "0"), ("broken.mp4", "failed", "0", "3"),
        ("c.mp4", "complete", "5", "0")]
    assert all(int(r["faces"]) == 5 and float(r["seconds"]) > 0 for r in rows if r["status"] == "complete")
    document = json.loads((tmp_path / INDEX_JSON).read_text())
    assert document["counts"]["complete"] == 3 and document["counts"]["failed"] == 1
    assert document["workers"] == 2 and document["threads"] == 1 and document["frames"] == 15
    assert [v["input"] for v in document["videos"]] == [r["input"] for r in rows]




def test_resume_skips_complete_videos_and_continues_partial_ones(inputs, random_models, tmp_path):
    args = [str(inputs / "a.mp4"), str(inputs / "b.mp4"), "--out", str(tmp_path), "--models", str(random_models),
            "--no-video", "--workers", "2"]
    assert process.main([*args[:1], *args[2:]]) == 0
    assert process.main([*args[1:2], *args[2:], "--max-frames", "2"]) == 0
    before_a = (tmp_path / "a.csv").read_bytes()
    assert process.main([*args, "--resume"]) == 0
    statuses = {Path(r["input"]).name: r["status"] for r in index_rows(tmp_path)}
    assert statuses == {"a.mp4": "skipped", "b.mp4": "complete"}
    assert (tmp_path / "a.csv").read_bytes() == before_a
    summary = json.loads((tmp_path / "b.summary.json").read_text())
    assert summary["resumed_from"] == 1 and summary["processed"] == 5 and summary["complete"] is True


@pytest.mark.parametrize("workers, threads, inputs, cores, planned", [
    (None, None, 8, 2, (2, 1)), (None, None, 1, 2, (1, 2)), (4, None, 8, 2, (2, 1)), (1, None, 8, 2, (1, 2)),
    (2, 4, 8, 2, (2, 1)), (None, 2, 8, 16, (8, 2)), (3, None, 8, 16, (3, 5)),
])
def test_workers_times_threads_stays_within_the_cores(workers, threads, inputs, cores, planned):
    assert plan_workers(workers, threads, inputs, cores) == planned
    assert planned[0] * planned[1] <= cores


def test_the_progress_bar_counts_frames_and_videos_on_a_terminal_and_prints_lines_elsewhere():
    stream = io.StringIO()
    bar = BatchProgress(videos=2, frames=10, stream=stream, terminal=True)
    bar.frames(4)
    bar.finished("a.mp4: complete")
    bar.close()
    assert "videos 1/2" in stream.getvalue() and "4/10" in stream.getvalue() and "a.mp4" not in stream.getvalue()
    lines = io.StringIO()
    plain = BatchProgress(videos=2, frames=10, stream=lines, terminal=False)
    plain.frames(4)
    plain.finished("a.mp4: complete, 5 frames")
    assert lines.getvalue() == "[1/2] a.mp4: complete, 5 frames\n"


def spawned_workers() -> list[int]:
    """Process ids of this process's ``multiprocessing`` spawn workers."""
    found = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
    return found


def test_a_worker_killed_mid_video_is_replaced_and_the_videos_continue_from_their_rows(random_models, tmp_path):
    first, second = clip(tmp_path / "first.mp4", 0, 60), clip(tmp_path / "second.mp4", 60, 60)
    out = tmp_path / "out"
    codes: list[int] = []
    run = threading.Thread(target=lambda: codes.append(process.main([
        str(first), str(second), "--out", str(out), "--models", str(random_models), "--no-video",
        "--workers", "2", "--threads", "1"])))
    run.start()
    deadline = time.monotonic() + 120
    csvs = [out / "first.csv", out / "second.csv"]
    while time.monotonic() < deadline and not all(p.is_file() and p.read_text().count("\n") > 8 for p in csvs):
        time.sleep(0.05)
    os.kill(spawned_workers()[0], signal.SIGKILL)
    run.join(timeout=180)
    assert codes == [0]
    for path in csvs:
        with path.open(newline="") as handle:
            assert [r["frame"] for r in csv.DictReader(handle)] == [str(i) for i in range(60)]
    assert [r["status"] for r in index_rows(out)] == ["complete", "complete"]
    resumed = [json.loads((out / f"{n}.summary.json").read_text())["resumed_from"] for n in ("first", "second")]
    assert any(r is not None and r >= 8 for r in resumed)
