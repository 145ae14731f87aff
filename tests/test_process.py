"""The headless command: outputs per input, CSV rows, resume, interrupts and exit codes."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core import process
from app.core.pipeline import FacePipeline
from tests.conftest import ROOT, require_shared
from tests.model_fixtures import LANDMARKS, random_models  # noqa: F401  (fixture)


def run(*args: object) -> int:
    return process.main([str(a) for a in args])


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def frame_numbers(rows: list[dict[str, str]]) -> list[int]:
    return [int(r["frame"]) for r in rows]


def count_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def mixed_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 frames of 960×480: one face (0–2), no face (3–4), two faces (5–6)."""
    capture = cv2.VideoCapture(str(require_shared("videos", "d18.mp4")))
    face = capture.read()[1]
    capture.release()
    black = np.zeros_like(face)
    frames = [np.hstack([face, black])] * 3 + [np.hstack([black, black])] * 2 + [np.hstack([face, cv2.flip(face, 1)])] * 2
    path = tmp_path_factory.mktemp("videos") / "mixed.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (960, 480))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def test_one_row_per_face_and_a_detected_0_row_for_a_frame_without_faces(mixed_video, random_models, tmp_path):
    assert run(mixed_video, "--out", tmp_path, "--models", random_models, "--mode", "full") == 0
    rows = read_rows(tmp_path / "mixed.csv")
    assert frame_numbers(rows) == [0, 1, 2, 3, 4, 5, 5, 6, 6]
    assert [r["detected"] for r in rows] == ["1"] * 3 + ["0"] * 2 + ["1"] * 4
    assert all(r["face_id"] == "" and r["yaw"] == "" for r in rows[3:5])
    assert len({r["face_id"] for r in rows[5:]}) == 2
    assert rows[0]["time_s"] == "0.0000" and rows[1]["time_s"] == "0.1000"
    assert list(rows[0])[:15] == list(process.BASE_COLUMNS)
    assert len(rows[0]) == 15 + 3 * LANDMARKS
    assert 0.0 <= float(rows[0]["lm0_vis"]) <= 1.0
    summary = json.loads((tmp_path / "mixed.summary.json").read_text())
    assert summary["processed"] == 7 and summary["faces"] == 7 and summary["complete"] is True
    assert summary["mode"] == "full" and summary["provider"] == "CPUExecutionProvider"
    assert {"decode", "detect", "crop", "infer", "overlay"} <= set(summary["median_ms"])
    assert count_frames(tmp_path / "mixed.annotated.mp4") == 7


def test_a_damaged_video_is_processed_as_far_as_it_decodes_and_exits_0(random_models, tmp_path, capsys):
    video = require_shared("videos", "obama_truncated.mp4")
    assert run(video, "--out", tmp_path, "--models", random_models, "--no-video") == 0
    summary = json.loads((tmp_path / "obama_truncated.summary.json").read_text())
    assert (summary["frames"], summary["decoded"], summary["failed"], summary["processed"]) == (158, 55, 103, 55)
    assert sorted(set(frame_numbers(read_rows(tmp_path / "obama_truncated.csv")))) == list(range(55))
    assert not (tmp_path / "obama_truncated.annotated.mp4").exists()
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "did not decode" in line] == \
        ["obama_truncated.mp4: 103 of 158 frames did not decode; processed the 55 that did"]


def test_resume_continues_where_a_run_stopped_without_repeating_rows(random_models, tmp_path):
    video = require_shared("videos", "d18.mp4")
    assert run(video, "--out", tmp_path, "--models", random_models, "--max-frames", 8) == 0
    first = read_rows(tmp_path / "d18.csv")
    assert frame_numbers(first) == list(range(8))
    assert json.loads((tmp_path / "d18.summary.json").read_text())["complete"] is False
    assert run(video, "--out", tmp_path, "--models", random_models, "--max-frames", 15, "--resume") == 0
    rows = read_rows(tmp_path / "d18.csv")
    assert frame_numbers(rows) == list(range(15))
    assert rows[:7] == first[:7]
    assert len({r["face_id"] for r in rows}) == 1
    summary = json.loads((tmp_path / "d18.summary.json").read_text())
    assert summary["resumed_from"] == 7 and summary["processed"] == 15
    assert count_frames(tmp_path / "d18.annotated.mp4") == 15


def test_interrupt_flushes_rows_writes_the_summary_and_resume_finishes(random_models, tmp_path, monkeypatch, capsys):
    video = require_shared("videos", "d18.mp4")
    real_process = FacePipeline.process

    def interrupted_at_5(self, frame, index=0, time_s=0.0):
        if index == 5:
            raise KeyboardInterrupt
        return real_process(self, frame, index, time_s)

    monkeypatch.setattr(FacePipeline, "process", interrupted_at_5)
    assert run(video, "--out", tmp_path, "--models", random_models, "--max-frames", 12) == 130
    assert "--resume" in capsys.readouterr().err
    assert frame_numbers(read_rows(tmp_path / "d18.csv")) == [0, 1, 2, 3, 4]
    summary = json.loads((tmp_path / "d18.summary.json").read_text())
    assert summary["interrupted"] is True and summary["processed"] == 5

    monkeypatch.setattr(FacePipeline, "process", real_process)
    assert run(video, "--out", tmp_path, "--models", random_models, "--max-frames", 12, "--resume") == 0
    assert frame_numbers(read_rows(tmp_path / "d18.csv")) == list(range(12))
    summary = json.loads((tmp_path / "d18.summary.json").read_text())
    assert summary["interrupted"] is False and summary["resumed_from"] == 4
    assert count_frames(tmp_path / "d18.annotated.mp4") == 12


def test_a_cut_off_last_line_is_dropped_on_resume(random_models, tmp_path):
    video = require_shared("videos", "d18.mp4")
    assert run(video, "--out", tmp_path, "--models", random_models, "--max-frames", 6, "--no-video") == 0
    csv_path = tmp_path / "d18.csv"
    csv_path.write_text(csv_path.read_text()[:-20])  # a kill in the middle of writing frame 5
    assert run(video, "--out", tmp_path, "--models", random_models, "--max-frames", 8, "--no-video",
               "--resume") == 0
    assert frame_numbers(read_rows(csv_path)) == list(range(8))


def test_resuming_in_another_mode_is_refused_with_exit_2(random_models, tmp_path, capsys):
    video = require_shared("videos", "d18.mp4")
    assert run(video, "--out", tmp_path, "--models", random_models, "--max-frames", 2, "--no-video") == 0
    assert run(video, "--out", tmp_path, "--models", random_models, "--max-frames", 4, "--no-video",
               "--resume", "--mode", "full") == 2
    assert len(error_lines(capsys.readouterr().err)) == 1


def test_missing_video_exits_2_with_one_line_naming_it(tmp_path, capsys):
    assert run(tmp_path / "absent.mp4", "--out", tmp_path / "out") == 2
    assert error_lines(capsys.readouterr().err) == [f"error: {tmp_path / 'absent.mp4'}: no such file"]


def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys):
    video = require_shared("videos", "d18.mp4")
    assert run(video, "--out", tmp_path, "--mode", "fast") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--mode" in err


def test_a_file_that_is_not_a_video_exits_3(random_models, tmp_path, capsys):
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\x00" * 1000)
    assert run(fake, "--out", tmp_path / "out", "--models", random_models) == 3
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "fake.mp4" in lines[0]


def test_missing_models_folder_exits_4_naming_the_file(tmp_path, capsys):
    video = require_shared("videos", "d18.mp4")
    assert run(video, "--out", tmp_path, "--models", tmp_path / "no_models") == 4
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "no_models" in lines[0] and "mnn_encoder.onnx" in lines[0]


def test_run_app_reports_errors_in_one_line_without_traceback(tmp_path):
    video = require_shared("videos", "d18.mp4")
    done = subprocess.run([sys.executable, str(ROOT / "run_app.py"), "process", str(video), "--out", str(tmp_path),
                           "--models", str(tmp_path / "no_models")], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 4
    assert "Traceback" not in done.stderr
    assert len(error_lines(done.stderr)) == 1
