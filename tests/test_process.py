"""The headless command: outputs per input, CSV rows, resume, interrupts and exit codes."""
from __future__ import annotations

import csv
import json
import logging
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from app.core import process, providers
from app.core.batch import INDEX_CSV
from app.core.exit_codes import ExitCode
from app.core.pipeline import FacePipeline
from app.core.results_csv import BASE_COLUMNS, csv_columns
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


def run_app(*args: object, preexec_fn=None, check_rc: int | None = None) -> subprocess.CompletedProcess:
    """``run_app.py process ARGS`` in a subprocess, as a user runs it."""
    done = subprocess.run([sys.executable, str(ROOT / "run_app.py"), "process", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, preexec_fn=preexec_fn)
    if check_rc is not None:
        assert done.returncode == check_rc, done.stderr
    return done


def decoded_h264(path: Path) -> tuple[str, int, tuple[int, int]]:
    """The codec, the number of frames that decode, and the frame size of a video, read with PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return stream.codec_context.name, len(frames), (frames[0].width, frames[0].height)


@pytest.fixture(scope="module")
def mixed_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 frames of 960×480: one face (0–2), no face (3–4), two faces (5–6)."""
    capture = cv2.VideoCapture(str(require_shared("videos", "d18.mp4")))
    face = capture.read()[1]
    capture.release()
    black = np.zeros_like(face)
    frames = [np.hstack([face, black])] * 3 + [np.hstack([black, black])] * 2 + [np.hstack([face, cv2.flip(face, 1)])] * 2
    path = tmp_path_factory.mktemp("videos") / "mixed.mp4"
    write_video(path, frames, 10.0)
    return path


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames[0].shape[1], frames[0].shape[0]))
    for frame in frames:
        writer.write(frame)
    writer.release()


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 4 frames of d18.mp4 (480×480, one face), as a video of their own."""
    capture = cv2.VideoCapture(str(require_shared("videos", "d18.mp4")))
    frames = [capture.read()[1] for _ in range(4)]
    capture.release()
    path = tmp_path_factory.mktemp("clips") / "clip.mp4"
    write_video(path, frames, 30.0)
    return path


def one_pixel_video(path: Path, frames: int = 5) -> Path:
    """A 1×1-pixel video (FFV1 in Matroska, which OpenCV reads back)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 1, 1, "bgr0"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((1, 1, 3), 40 * i, np.uint8), format="bgr24")
            container.mux(stream.encode(frame.reformat(format="bgr0")))
        container.mux(stream.encode(None))
    return path


def test_one_row_per_face_and_a_detected_0_row_for_a_frame_without_faces(mixed_video, random_models, tmp_path):
    assert run(mixed_video, "--out", tmp_path, "--models", random_models, "--mode", "full") == 0
    rows = read_rows(tmp_path / "mixed.csv")
    assert frame_numbers(rows) == [0, 1, 2, 3, 4, 5, 5, 6, 6]
    assert [r["detected"] for r in rows] == ["1"] * 3 + ["0"] * 2 + ["1"] * 4
    assert all(r["face_id"] == "" and r["yaw"] == "" for r in rows[3:5])
    assert len({r["face_id"] for r in rows[5:]}) == 2
    assert rows[0]["time_s"] == "0.0000" and rows[1]["time_s"] == "0.1000"
    assert list(rows[0])[:15] == list(BASE_COLUMNS)
    assert list(rows[0]) == csv_columns("full", LANDMARKS)
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


def test_an_image_is_a_one_frame_input_with_an_annotated_png(random_models, tmp_path):
    image = require_shared("biwi_mini", "hpdb", "01", "frame_00166_rgb.png")
    assert run(image, "--out", tmp_path, "--models", random_models) == 0
    rows = read_rows(tmp_path / "frame_00166_rgb.csv")
    assert frame_numbers(rows) == [0] and rows[0]["detected"] == "1" and rows[0]["time_s"] == "0.0000"
    summary = json.loads((tmp_path / "frame_00166_rgb.summary.json").read_text())
    assert (summary["frames"], summary["decoded"], summary["processed"], summary["faces"]) == (1, 1, 1, 1)
    assert summary["complete"] is True and summary["plot"] is None
    annotated = cv2.imread(str(tmp_path / "frame_00166_rgb.annotated.png"))
    assert annotated.shape == cv2.imread(str(image)).shape
    assert summary["video"] == str(tmp_path / "frame_00166_rgb.annotated.png")
    assert not (tmp_path / "frame_00166_rgb.annotated.mp4").exists()


def test_an_image_that_does_not_decode_exits_3_naming_it(random_models, tmp_path, capsys):
    fake = tmp_path / "broken.png"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    assert run(fake, "--out", tmp_path / "out", "--models", random_models) == 3
    assert error_lines(capsys.readouterr().err) == [f"error: {fake}: not a readable image (it does not decode)"]


def test_a_1x1_video_is_processed_padded_to_2x2_and_the_batch_goes_on(random_models, short_clip, tmp_path):
    tiny = one_pixel_video(tmp_path / "tiny.mkv")
    out = tmp_path / "out"
    assert run(tiny, short_clip, "--out", out, "--models", random_models) == 0
    assert [r["detected"] for r in read_rows(out / "tiny.csv")] == ["0"] * 5
    assert decoded_h264(out / "tiny.annotated.mp4") == ("h264", 5, (2, 2))
    assert frame_numbers(read_rows(out / "clip.csv")) == [0, 1, 2, 3]
    assert decoded_h264(out / "clip.annotated.mp4") == ("h264", 4, (480, 480))


def test_an_output_that_cannot_be_written_is_one_line_exit_5_and_the_other_inputs_go_on(
        random_models, short_clip, tmp_path, capsys):
    # Tests run as root, whom a read-only folder does not stop: a folder where the CSV should be does.
    first = tmp_path / "first.mp4"
    first.write_bytes(short_clip.read_bytes())
    out = tmp_path / "out"
    (out / "first.csv").mkdir(parents=True)
    assert run(first, short_clip, "--out", out, "--models", random_models, "--no-video", "--overwrite") == 5
    assert error_lines(capsys.readouterr().err) == [f"error: {out / 'first.csv'}: cannot be written (Is a directory)"]
    summary = json.loads((out / "first.summary.json").read_text())
    assert summary["complete"] is False and "Is a directory" in summary["error"]
    assert frame_numbers(read_rows(out / "clip.csv")) == [0, 1, 2, 3]


def _file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.parametrize("video", [False, True], ids=["csv", "annotated_video"])
def test_a_full_disk_mid_run_is_one_line_exit_5_with_a_summary_and_resume_finishes(random_models, tmp_path, video):
    clip = require_shared("videos", "d18.mp4")
    frames = 40
    args = [clip, "--out", tmp_path, "--models", random_models, "--max-frames", frames]
    args += [] if video else ["--no-video"]
    full = tmp_path / ("d18.annotated.mp4" if video else "d18.csv")
    done = run_app(*args, preexec_fn=_file_size_limit(20_000 if video else 3_000))
    assert done.returncode == 5, done.stderr
    assert "Traceback" not in done.stderr
    assert error_lines(done.stderr) == [f"error: {full}: cannot be written (File too large)"]
    summary = json.loads((tmp_path / "d18.summary.json").read_text())
    assert summary["complete"] is False and summary["error"] == error_lines(done.stderr)[0][len("error: "):]
    # The CSV fails at once; the MP4 muxer buffers its writes and reports the failure when the file is closed.
    assert 0 < summary["processed"] < frames or video
    run_app(*args, "--resume", check_rc=0)
    assert frame_numbers(read_rows(tmp_path / "d18.csv")) == list(range(frames))
    if video:
        assert decoded_h264(full) == ("h264", frames, (480, 480))


def test_sigterm_stops_like_ctrl_c_with_a_summary_and_resume_finishes(random_models, tmp_path):
    video = require_shared("videos", "d18.mp4")
    args = [sys.executable, str(ROOT / "run_app.py"), "process", str(video), "--out", str(tmp_path),
            "--models", str(random_models), "--no-video", "--max-frames", "150"]
    child = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    csv_path = tmp_path / "d18.csv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not csv_path.exists() or csv_path.read_text().count("\n") < 4):
        time.sleep(0.02)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "Traceback" not in err
    stopped = [line for line in err.splitlines() if line.startswith("interrupted (SIGTERM): d18.mp4 stopped")]
    assert len(stopped) == 1 and "--resume" in stopped[0]
    summary = json.loads((tmp_path / "d18.summary.json").read_text())
    assert summary["interrupted"] is True and 3 <= summary["processed"] < 150
    assert subprocess.run(args + ["--resume"], capture_output=True, cwd=ROOT).returncode == 0
    assert frame_numbers(read_rows(csv_path)) == list(range(150))


def test_a_folder_stands_for_its_videos_and_images_in_name_order(random_models, short_clip, tmp_path, caplog):
    folder = tmp_path / "inputs"
    (folder / "nested").mkdir(parents=True)
    (folder / "b.mp4").write_bytes(short_clip.read_bytes())
    image = require_shared("biwi_mini", "hpdb", "01", "frame_00166_rgb.png")
    (folder / "a.png").write_bytes(image.read_bytes())
    (folder / "notes.txt").write_text("not an input\n")
    (folder / "old.annotated.mp4").write_bytes(short_clip.read_bytes())  # an output of an earlier run
    (folder / "nested" / "c.mp4").write_bytes(short_clip.read_bytes())
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        assert run(folder, "--out", out, "--models", random_models, "--no-video") == 0
    assert sorted(p.name for p in out.glob("*.csv") if p.name != INDEX_CSV) == ["a.csv", "b.csv"]
    inputs = [json.loads((out / f"{n}.summary.json").read_text())["input"] for n in ("a", "b")]
    assert inputs == [str(folder / "a.png"), str(folder / "b.mp4")]


def test_an_empty_folder_is_a_usage_error_naming_it(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(empty, "--out", tmp_path / "out") == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith(f"error: {empty}: a folder without videos or images")


def test_a_rerun_over_earlier_outputs_is_refused_unless_resume_or_overwrite(random_models, short_clip, tmp_path,
                                                                           capsys):
    assert run(short_clip, "--out", tmp_path, "--models", random_models, "--no-video") == 0
    before = (tmp_path / "clip.csv").read_bytes()
    capsys.readouterr()
    assert run(short_clip, "--out", tmp_path, "--models", random_models, "--max-frames", 2) == 2
    assert error_lines(capsys.readouterr().err) == [
        f"error: {tmp_path / 'clip.csv'}: written by an earlier run; add --resume to continue it "
        "or --overwrite to replace it"]
    assert (tmp_path / "clip.csv").read_bytes() == before
    assert run(short_clip, "--out", tmp_path, "--models", random_models, "--max-frames", 2, "--overwrite") == 0
    assert frame_numbers(read_rows(tmp_path / "clip.csv")) == [0, 1]
    assert run(short_clip, "--out", tmp_path, "--resume", "--overwrite") == 2


@pytest.mark.parametrize("csv_text, says", [("", "empty"), ("frame,time_s,dete", "incomplete")])
def test_resume_on_a_csv_without_a_whole_header_starts_afresh(random_models, short_clip, tmp_path, caplog,
                                                             csv_text, says):
    (tmp_path / "clip.csv").write_text(csv_text)
    with caplog.at_level(logging.WARNING):
        assert run(short_clip, "--out", tmp_path, "--models", random_models, "--no-video", "--resume") == 0
    assert [r.getMessage() for r in caplog.records if "starting afresh" in r.getMessage()] == [
        f"{tmp_path / 'clip.csv'}: its header is {says} and it holds no rows: nothing to resume, "
        "starting afresh from the first frame"]
    assert frame_numbers(read_rows(tmp_path / "clip.csv")) == [0, 1, 2, 3]


def test_two_runs_of_one_input_write_byte_identical_videos_and_csvs(random_models, tmp_path):
    video = require_shared("videos", "d18.mp4")
    for out in ("one", "two"):
        assert run(video, "--out", tmp_path / out, "--models", random_models, "--max-frames", 6) == 0
    for name in ("d18.annotated.mp4", "d18.csv"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    assert decoded_h264(tmp_path / "one" / "d18.annotated.mp4") == ("h264", 6, (480, 480))


def test_the_summary_names_the_refiner_as_the_readme_documents(tmp_path):
    image = require_shared("biwi_mini", "hpdb", "01", "frame_00166_rgb.png")
    assert run(image, "--out", tmp_path, "--mode", "full", "--no-video") == 0
    refiner = json.loads((tmp_path / "frame_00166_rgb.summary.json").read_text())["refiner"]
    assert refiner == "or.npz"
    readme = (ROOT / "README.md").read_text()
    assert f"`refiner` (`{refiner}`" in readme
    assert f'"refiner": "{refiner}"' in process.__doc__


def test_help_shows_defaults_outputs_and_exit_codes():
    shown = run_app("--help", check_rc=0).stdout
    assert "(default: pose)" in shown and "(default: blazeface)" in shown and "(default: every frame)" in shown
    for name in process.OUTPUTS:
        assert name in shown
    assert {ExitCode.OK, ExitCode.USAGE, ExitCode.INPUT, ExitCode.MODEL, ExitCode.OUTPUT, ExitCode.PROVIDER,
            ExitCode.WORKER, ExitCode.INTERRUPTED} <= set(process.EXIT_MEANINGS)
    for code in process.EXIT_MEANINGS:
        assert f"\n  {int(code):<4} " in shown
    viewer = subprocess.run([sys.executable, str(ROOT / "run_app.py"), "--help"], capture_output=True, text=True,
                            cwd=ROOT)
    assert viewer.returncode == 0 and "(default: pose)" in viewer.stdout and "--provider" in viewer.stdout


@pytest.mark.skipif(providers.problem(providers.CUDA) is None, reason="CUDA can run on this machine")
def test_process_asked_for_cuda_where_it_cannot_run_exits_6_with_one_line_and_writes_nothing(short_clip, tmp_path):
    done = run_app(short_clip, "--out", tmp_path / "out", "--provider", "cuda", check_rc=ExitCode.PROVIDER)
    assert error_lines(done.stderr) == [
        f"error: --provider cuda: CUDA cannot run here ({providers.problem(providers.CUDA)})"]
    assert not list((tmp_path / "out").glob("clip.*"))


def test_each_video_gets_a_pose_plot_named_in_its_summary(random_models, short_clip, tmp_path):
    assert run(short_clip, "--out", tmp_path, "--models", random_models, "--no-video") == 0
    plot = tmp_path / "clip.pose.png"
    assert cv2.imread(str(plot)) is not None
    assert json.loads((tmp_path / "clip.summary.json").read_text())["plot"] == str(plot)
