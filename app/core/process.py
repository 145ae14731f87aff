"""Headless processing of video files: ``python run_app.py process VIDEO [VIDEO …] --out DIR``.

For each input ``NAME.mp4`` it writes, into ``DIR``:

- ``NAME.csv``: one row per frame per face, and one row with ``detected=0`` for a frame without a
  face (columns in ``csv_columns``). Each frame's rows are written and flushed as soon as the frame
  is done, so an interrupted run loses at most the frame in hand.
- ``NAME.annotated.mp4`` (unless ``--no-video``): every decoded frame with the overlay.
- ``NAME.summary.json``: frame counts, faces, median milliseconds per stage, provider, mode, the
  landmark refiner in use (``"refiner": "or.npz"`` in full mode with the occlusion-aware regressor,
  else null), and whether the run was complete or interrupted.

``--resume`` continues a stopped run from its CSV: the rows already written are kept (the last
frame's rows are redone, since a stop may have cut that frame short) and processing starts at the
first frame not kept. An MP4 cannot be appended to, and one cut short by a kill has no index, so
the annotated video is always written afresh: frames before the resume point are decoded again and
redrawn from their CSV rows, without running the network. Only frames after the resume point are
timed in the summary's ``median_ms``.

Exit codes: 0 done (also for a partly damaged video, with one line on stderr saying how much did
not decode), 2 bad arguments or missing input, 3 unreadable video (other inputs are still
processed), 4 model missing or invalid, 130 interrupted. Each error is one line on stderr.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, TextIO

import cv2
import numpy as np
from tqdm import tqdm

from app.core.detector import DETECTORS
from app.core.estimator import DEFAULT_MODELS_DIR, MODES
from app.core.model_io import ModelError
from app.core.overlay import draw_overlay
from app.core.pipeline import FaceResult, FacePipeline, FrameLoop, FrameResult
from app.core.video import VideoError, VideoSource

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_VIDEO = 3
EXIT_MODEL = 4
EXIT_INTERRUPTED = 130

BASE_COLUMNS = ("frame", "time_s", "detected", "face_id", "score", "x1", "y1", "x2", "y2",
                "yaw", "pitch", "roll", "tx", "ty", "tz")
"""Columns of every CSV; full mode appends ``lm{i}_x``, ``lm{i}_y``, ``lm{i}_vis`` per landmark ``i``."""

VIDEO_FOURCC = "mp4v"
"""MPEG-4 Part 2: the MP4 codec every OpenCV wheel can write."""


class UsageError(Exception):
    """Bad arguments or inputs: exit code 2."""


def csv_columns(mode: str, landmarks: int) -> list[str]:
    """The CSV header for ``mode``; full mode adds x, y and visibility of each of ``landmarks`` landmarks."""
    columns = list(BASE_COLUMNS)
    if mode == "full":
        for i in range(landmarks):
            columns += [f"lm{i}_x", f"lm{i}_y", f"lm{i}_vis"]
    return columns


def frame_rows(result: FrameResult, landmarks: int) -> list[list[str]]:
    """The CSV rows of one frame: one per face, or one ``detected=0`` row when there is none."""
    frame, time_s = str(result.index), f"{result.time_s:.4f}"
    if not result.faces:
        width = len(csv_columns(result.mode, landmarks))
        return [[frame, time_s, "0"] + [""] * (width - 3)]
    rows = []
    for face in result.faces:
        row = [frame, time_s, "1", str(face.face_id), f"{face.score:.4f}"]
        row += [f"{v:.2f}" for v in face.box]
        row += [f"{face.yaw:.4f}", f"{face.pitch:.4f}", f"{face.roll:.4f}"]
        row += [f"{v:.6f}" for v in face.translation]
        if result.mode == "full":
            visibility = face.visibility if face.visibility is not None else np.full(landmarks, np.nan)
            for (x, y), vis in zip(face.landmarks, visibility):
                row += [f"{x:.2f}", f"{y:.2f}", f"{vis:.4f}"]
        rows.append(row)
    return rows


def face_from_row(row: dict[str, str], landmarks: int) -> FaceResult:
    """A ``FaceResult`` read back from a CSV row with ``detected=1`` (for redrawing a resumed run)."""
    has_landmarks = "lm0_x" in row
    points = np.array([[float(row[f"lm{i}_x"]), float(row[f"lm{i}_y"])] for i in range(landmarks)]) \
        if has_landmarks else None
    visibility = np.array([float(row[f"lm{i}_vis"]) for i in range(landmarks)]) if has_landmarks else None
    return FaceResult(
        face_id=int(row["face_id"]), box=np.array([float(row[k]) for k in ("x1", "y1", "x2", "y2")]),
        score=float(row["score"]), yaw=float(row["yaw"]), pitch=float(row["pitch"]), roll=float(row["roll"]),
        translation=np.array([float(row[k]) for k in ("tx", "ty", "tz")]), landmarks=points, visibility=visibility)


@dataclass
class OutputPaths:
    """The three files written for one input."""

    csv: Path
    video: Path
    summary: Path

    @staticmethod
    def for_input(video: Path, out_dir: Path) -> "OutputPaths":
        name = video.stem
        return OutputPaths(out_dir / f"{name}.csv", out_dir / f"{name}.annotated.mp4", out_dir / f"{name}.summary.json")


@dataclass
class ResumeState:
    """What an earlier run of the same input left: the frames kept and where to carry on."""

    start_index: int = 0
    complete: bool = False
    frames: int = 0
    faces: int = 0
    face_ids: set[int] = field(default_factory=set)
    last_boxes: list[np.ndarray] = field(default_factory=list)
    last_ids: list[int] = field(default_factory=list)
    redraw: dict[int, tuple[float, tuple[FaceResult, ...]]] = field(default_factory=dict)


def read_resume_state(paths: OutputPaths, columns: list[str], mode: str, landmarks: int,
                      keep_faces: bool) -> ResumeState:
    """Trim ``paths.csv`` to the frames an earlier run finished and say where to carry on.

    A partial last line (a killed run) is dropped, and so are the rows of the last frame unless the
    summary says the run was complete. ``keep_faces`` keeps the faces of each kept frame for
    redrawing the annotated video. ``UsageError`` when the CSV has other columns (another mode or
    landmark count).
    """
    if not paths.csv.is_file():
        log.info("%s: nothing to resume, starting from the first frame", paths.csv)
        return ResumeState()
    text = paths.csv.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()
    if not lines or lines[0].rstrip("\n") != ",".join(columns):
        raise UsageError(f"{paths.csv}: its columns are not those of a {mode}-mode run with this model; "
                         "run without --resume to start again")
    complete = False
    if paths.summary.is_file():
        try:
            summary = json.loads(paths.summary.read_text(encoding="utf-8"))
            complete = bool(summary.get("complete")) and summary.get("mode") == mode
        except (OSError, json.JSONDecodeError):
            complete = False
    rows = list(csv.DictReader(lines))
    frame_of_line = [int(r["frame"]) for r in rows]
    last_frame = frame_of_line[-1] if rows else -1
    keep = len(rows) if complete else sum(1 for f in frame_of_line if f < last_frame)
    start_index = last_frame + 1 if complete else max(last_frame, 0)
    paths.csv.write_text("".join(lines[:keep + 1]), encoding="utf-8")

    state = ResumeState(start_index=start_index, complete=complete)
    by_frame: dict[int, tuple[float, list[FaceResult]]] = {}
    for row in rows[:keep]:
        index = int(row["frame"])
        time_s, faces = by_frame.setdefault(index, (float(row["time_s"]), []))
        if row["detected"] == "1":
            faces.append(face_from_row(row, landmarks))
    for index, (time_s, faces) in by_frame.items():
        state.frames += 1
        state.faces += len(faces)
        state.face_ids.update(f.face_id for f in faces)
        if keep_faces:
            state.redraw[index] = (time_s, tuple(faces))
    if by_frame:
        last_faces = by_frame[max(by_frame)][1]
        state.last_boxes = [f.box for f in last_faces]
        state.last_ids = [f.face_id for f in last_faces]
    return state


class CsvLog:
    """Appends each frame's rows to the CSV and flushes them at once."""

    def __init__(self, path: Path, columns: list[str], landmarks: int, append: bool) -> None:
        self.landmarks = landmarks
        self._file: TextIO = path.open("a" if append else "w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file, lineterminator="\n")
        if not append:
            self._writer.writerow(columns)
            self._file.flush()

    def write(self, result: FrameResult) -> None:
        """Write and flush the rows of ``result``."""
        self._writer.writerows(frame_rows(result, self.landmarks))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


@dataclass
class RunStats:
    """Counts and stage times gathered while processing one input."""

    frames: int = 0
    faces: int = 0
    face_ids: set[int] = field(default_factory=set)
    processed_now: int = 0
    timings: dict[str, list[float]] = field(default_factory=dict)

    def add(self, result: FrameResult, overlay_ms: float | None) -> None:
        self.frames += 1
        self.processed_now += 1
        self.faces += len(result.faces)
        self.face_ids.update(f.face_id for f in result.faces)
        stages = dict(result.timings_ms)
        if overlay_ms is not None:
            stages["overlay"] = overlay_ms
        for key, value in stages.items():
            self.timings.setdefault(key, []).append(value)

    def median_ms(self) -> dict[str, float]:
        return {k: round(statistics.median(v), 3) for k, v in self.timings.items()}


@dataclass
class Options:
    """The parsed command line of ``process``."""

    videos: list[Path]
    out: Path
    mode: str = "pose"
    smooth: bool = False
    no_video: bool = False
    resume: bool = False
    models: Path = DEFAULT_MODELS_DIR
    max_frames: int | None = None
    detector: str = "blazeface"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors become one ``UsageError`` line instead of usage text."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser(prog: str = "run_app.py process") -> argparse.ArgumentParser:
    """The ``process`` command's arguments."""
    parser = _Parser(prog=prog, description="Estimate head pose in video files without a window.")
    parser.add_argument("videos", nargs="+", type=Path, metavar="VIDEO", help="video files to process")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created if absent)")
    parser.add_argument("--mode", choices=sorted(MODES), default="pose",
                        help="pose: encoder only (fast); full: also landmarks and visibility")
    parser.add_argument("--smooth", action="store_true", help="One Euro smoothing of each face over time")
    parser.add_argument("--no-video", action="store_true", help="write the CSV and summary only")
    parser.add_argument("--resume", action="store_true", help="continue a stopped run from its CSV")
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS_DIR, metavar="DIR",
                        help=f"folder with mnn_encoder.onnx / mnn_full.onnx (default {DEFAULT_MODELS_DIR})")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N",
                        help="stop before frame index N (a quick look at the start of a video)")
    parser.add_argument("--detector", choices=list(DETECTORS), default="blazeface", help="face detector")
    return parser


def parse_options(argv: Sequence[str]) -> Options:
    """``Options`` from the command line; ``UsageError`` for bad arguments or missing inputs."""
    args = build_parser().parse_args(list(argv))
    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError("--max-frames must be at least 1")
    missing = [str(v) for v in args.videos if not v.is_file()]
    if missing:
        raise UsageError(f"{missing[0]}: no such file")
    stems = [v.stem for v in args.videos]
    clash = next((s for s in stems if stems.count(s) > 1), None)
    if clash is not None:
        raise UsageError(f"two inputs are named {clash!r}; their outputs would overwrite each other")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"{args.out}: exists and is not a folder")
    return Options(videos=list(args.videos), out=args.out, mode=args.mode, smooth=args.smooth,
                   no_video=args.no_video, resume=args.resume, models=args.models,
                   max_frames=args.max_frames, detector=args.detector)


class Interrupted(Exception):
    """Raised after an interrupted input's files are closed and its summary written."""


def process_video(video: Path, options: Options, pipeline: FacePipeline) -> dict:
    """Process one input into its CSV, annotated video and summary; returns the summary.

    ``VideoError`` if it cannot be read; ``Interrupted`` (after writing everything) on Ctrl-C.
    """
    info = pipeline.load(options.mode)
    columns = csv_columns(options.mode, info.landmarks)
    paths = OutputPaths.for_input(video, options.out)
    state = ResumeState()
    if options.resume:
        state = read_resume_state(paths, columns, options.mode, info.landmarks, keep_faces=not options.no_video)
        if state.complete and (options.no_video or paths.video.is_file()):
            log.info("%s: already complete in %s", video.name, paths.summary)
            return json.loads(paths.summary.read_text(encoding="utf-8"))

    with VideoSource(video) as source:
        pipeline.reset_tracks()
        pipeline.tracker.seed(np.array(state.last_boxes).reshape(-1, 4), state.last_ids)
        if state.face_ids:
            pipeline.tracker.reserve_ids(max(state.face_ids))
        writer = None
        if not options.no_video:
            writer = cv2.VideoWriter(str(paths.video), cv2.VideoWriter_fourcc(*VIDEO_FOURCC), source.fps,
                                     (source.width, source.height))
            if not writer.isOpened():
                raise UsageError(f"{paths.video}: cannot be written")
        csv_log = CsvLog(paths.csv, columns, info.landmarks, append=options.resume and paths.csv.is_file())
        stats = RunStats(frames=state.frames, faces=state.faces, face_ids=set(state.face_ids))
        total = source.frame_count
        if options.max_frames is not None:
            total = options.max_frames if total is None else min(total, options.max_frames)
        bar = tqdm(total=total, desc=video.name, unit="frame", disable=None, file=sys.stderr)
        fps_clock = _FpsClock()
        loop = FrameLoop(source, pipeline, options.max_frames)

        def on_frame(frame: np.ndarray, result: FrameResult) -> None:
            overlay_ms = None
            if writer is not None:
                start = time.perf_counter()
                annotated = draw_overlay(frame, result, fps=fps_clock.tick())
                overlay_ms = (time.perf_counter() - start) * 1000.0
                writer.write(annotated)
            csv_log.write(result)
            stats.add(result, overlay_ms)
            bar.update(result.index + 1 - bar.n)

        def on_skipped(index: int, time_s: float, frame: np.ndarray) -> None:
            if writer is not None:
                time_kept, faces = state.redraw.get(index, (time_s, ()))
                writer.write(draw_overlay(frame, FrameResult(index, time_kept, faces, {}, options.mode)))
            bar.update(index + 1 - bar.n)

        interrupted = False
        started = time.perf_counter()
        try:
            loop.run(on_frame, on_skipped, start_index=state.start_index)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
            csv_log.close()
            if writer is not None:
                writer.release()
        elapsed = time.perf_counter() - started
        summary = {
            "input": str(video),
            "mode": options.mode,
            "smooth": options.smooth,
            "detector": options.detector,
            "provider": pipeline.provider,
            "precision": pipeline.precision(options.mode),
            "refiner": pipeline.refiner_name if options.mode == "full" else None,
            "input_size": info.input_size,
            "frames": source.frame_count if source.frame_count is not None else source.decoded + source.failed,
            "decoded": source.decoded,
            "failed": source.failed,
            "processed": stats.frames,
            "faces": stats.faces,
            "face_ids": len(stats.face_ids),
            "median_ms": stats.median_ms(),
            "fps": round(stats.processed_now / elapsed, 2) if elapsed > 0 and stats.processed_now else None,
            "resumed_from": state.start_index if options.resume else None,
            "max_frames": options.max_frames,
            "interrupted": interrupted,
            "complete": not interrupted and source.ended,
            "csv": str(paths.csv),
            "video": None if writer is None else str(paths.video),
        }
    paths.summary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if interrupted:
        raise Interrupted(f"interrupted: {video.name} stopped after frame {stats.frames - 1 if stats.frames else 0}; "
                          f"rerun with --resume to continue")
    return summary


class _FpsClock:
    """Frames per second of processing, smoothed over about ten frames, for the overlay."""

    def __init__(self) -> None:
        self._last: float | None = None
        self._fps: float | None = None

    def tick(self) -> float | None:
        now = time.perf_counter()
        if self._last is not None and now > self._last:
            current = 1.0 / (now - self._last)
            self._fps = current if self._fps is None else 0.9 * self._fps + 0.1 * current
        self._last = now
        return self._fps


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def main(argv: Sequence[str]) -> int:
    """Run the ``process`` command; returns its exit code (see the module docstring)."""
    try:
        options = parse_options(argv)
        options.out.mkdir(parents=True, exist_ok=True)
    except UsageError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except OSError as exc:
        _error(f"{options.out}: cannot create the output folder ({exc.strerror})")
        return EXIT_USAGE
    code = EXIT_OK
    try:
        with FacePipeline(options.models, mode=options.mode, smooth=options.smooth,
                          detector=options.detector) as pipeline:
            pipeline.load(options.mode)
            for video in options.videos:
                try:
                    summary = process_video(video, options, pipeline)
                except VideoError as exc:
                    _error(str(exc))
                    code = EXIT_VIDEO
                    continue
                if summary.get("failed"):
                    print(f"{video.name}: {summary['failed']} of {summary['frames']} frames did not decode; "
                          f"processed the {summary['decoded']} that did", file=sys.stderr)
    except ModelError as exc:
        _error(str(exc))
        return EXIT_MODEL
    except UsageError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except Interrupted as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code
