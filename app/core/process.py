"""Headless processing of videos and images: ``python run_app.py process INPUT [INPUT …] --out DIR``.

An input is a video, a still image (a one-frame input, told by its suffix: ``video.IMAGE_SUFFIXES``),
a folder, which stands for the videos and images directly inside it, in name order, or a glob pattern;
``--from-list FILE`` names more, one a line (``inputs.py``). For each input ``NAME`` it writes, into
``DIR`` (``OUTPUTS``):

- ``NAME.csv``: one row per frame per face, and one row with ``detected=0`` for a frame without a
  face (``results_csv.py``: the columns, writing, reading back, resume trimming). Each frame's rows
  are written and flushed as soon as the frame is done, so an interrupted run loses at most the
  frame in hand.
- ``NAME.annotated.mp4`` (unless ``--no-video``): every decoded frame with the overlay, H.264
  (``video_writer.py``); ``NAME.annotated.png`` for an image.
- ``NAME.pose.png``: yaw, pitch and roll against time (``pose_plot.py``); not for an image.
- ``NAME.summary.json``: frame counts, faces, median milliseconds per stage, provider, mode, the
  landmark refiner (``"refiner": "or.npz"`` in full mode with the occlusion-aware regressor, else
  null), and whether the run was complete, interrupted or stopped by an output error.

and once per run the batch index, ``process_batch.json`` and ``process_batch.csv`` (``BATCH_OUTPUTS``).
``--workers N`` processes N videos at once on this machine, ``--ray ADDRESS`` on a Ray cluster, long videos
split into frame ranges (``batch.py``, ``cluster.py``, ``frame_ranges.py``); one overall progress bar on a
terminal, a line per finished video otherwise (``progress.py``).

Outputs of an earlier run are never overwritten silently: ``--resume`` continues that run,
``--overwrite`` replaces it. ``--resume`` carries on from the CSV: the rows already written are
kept (the last frame's rows are redone, since a stop may have cut that frame short) and processing
starts at the first frame not kept; a video whose summary says it is complete is left alone. An MP4
cannot be appended to, and one cut short by a kill has no index, so the annotated video is always
written afresh: frames before the resume point are decoded again and redrawn from their CSV rows,
without running the network. Only frames after the resume point are timed in the summary's ``median_ms``.

SIGTERM stops a run as Ctrl-C does. Exit codes: ``exit_codes.ExitCode``, worded for this command in
``EXIT_MEANINGS`` (also in ``--help``); each error is one line on stderr naming the file. A failing input
never stops the others; the exit code is the first failing input's.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import statistics
import sys
import textwrap
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np

from app.core.detector import DETECTORS
from app.core.estimator import DEFAULT_MODELS_DIR
from app.core.exit_codes import ExitCode, OutputError, UsageError, cannot_write
from app.core.batch import INDEX_CSV, INDEX_JSON, THREADS_PER_WORKER, plan_workers
from app.core.frame_rate import FrameRate
from app.core.frame_ranges import SPLIT_FRAMES
from app.core.inputs import expand_inputs
from app.core.model_io import MODES, ModelError
from app.core.overlay import draw_overlay, draw_timed
from app.core.pipeline import FacePipeline, FrameLoop
from app.core.pose_plot import write_pose_plot
from app.core.providers import CHOICES as PROVIDER_CHOICES, ProviderError
from app.core.results import FrameResult
from app.core.results_csv import CsvLog, ResumeState, csv_columns, resume_from_csv
from app.core.video import is_image, open_source
from app.core.video_writer import VideoWriteError, VideoWriter

log = logging.getLogger(__name__)

EXIT_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "done; also for a partly damaged video, processed as far as it decodes, with one line "
                 "on stderr saying how many frames did not decode",
    ExitCode.USAGE: "bad arguments, a missing input, a folder without videos or images, outputs of an earlier "
                    "run (without --resume or --overwrite), or --resume on a CSV of another mode",
    ExitCode.INPUT: "an input that cannot be read as a video or an image (the other inputs are still processed)",
    ExitCode.MODEL: "a model file missing or invalid",
    ExitCode.OUTPUT: "an output file (or the output folder) that cannot be written, with the system's reason "
                     "(the other inputs are still processed; the summary is written where it can be; "
                     "--resume continues)",
    ExitCode.PROVIDER: "--provider cuda or tensorrt where that provider cannot run here (no CUDA device, or its "
                       "CUDA, cuDNN or TensorRT libraries missing)",
    ExitCode.WORKER: "a worker process died while processing an input, or a Ray task failed after its retries "
                     "(the other inputs are still processed; --resume continues it)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C or SIGTERM); the summary is written, --resume continues",
}
"""What each exit code means. Where inputs fail for different reasons, the first failure's code is returned."""

OUTPUTS: dict[str, str] = {
    "NAME.csv": "one row per frame per face; a row with detected=0 for a frame without a face",
    "NAME.annotated.mp4": "every decoded frame with the overlay, H.264 (not with --no-video)",
    "NAME.annotated.png": "the same for an image input",
    "NAME.pose.png": "yaw, pitch and roll against time, one line per face (not for an image)",
    "NAME.summary.json": "counts, timings and settings of the run",
}
"""The files written for each input ``NAME``."""

BATCH_OUTPUTS: dict[str, str] = {
    INDEX_JSON: "the batch: settings, counts by status, and every input with its status, frames, faces, "
                "seconds, exit code and error",
    INDEX_CSV: "the same, one row per input",
}
"""The files written once per run, beside the inputs' (``batch.py``)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is so that it stops as on Ctrl-C."""


@dataclass
class OutputPaths:
    """The files written for one input (``OUTPUTS``)."""

    csv: Path
    video: Path
    """The annotated video, or the annotated PNG for an image input."""
    plot: Path
    summary: Path

    @staticmethod
    def for_input(path: Path, out_dir: Path) -> "OutputPaths":
        name = path.stem
        annotated = f"{name}.annotated.png" if is_image(path) else f"{name}.annotated.mp4"
        return OutputPaths(out_dir / f"{name}.csv", out_dir / annotated, out_dir / f"{name}.pose.png",
                           out_dir / f"{name}.summary.json")

    def existing(self) -> list[Path]:
        """The ones already there."""
        return [p for p in (self.csv, self.video, self.plot, self.summary) if p.exists()]


class AnnotatedImage:
    """The annotated output of an image input: a PNG written whole on ``write`` (``OutputError`` if it cannot be)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, frame_bgr: np.ndarray) -> None:
        ok, encoded = cv2.imencode(".png", frame_bgr)
        if not ok:
            raise OutputError(f"{self.path}: cannot be written (PNG encoding failed)")
        try:
            self.path.write_bytes(encoded.tobytes())
        except OSError as error:
            raise cannot_write(self.path, error) from error

    def close(self) -> None:
        """Nothing to finish: the file was written whole."""


@dataclass
class RunStats:
    """Counts and stage times gathered while processing one input."""

    frames: int = 0
    faces: int = 0
    face_ids: set[int] = field(default_factory=set)
    timings: dict[str, list[float]] = field(default_factory=dict)
    invalid_faces: int = 0
    """Face rows judged not to be faces (``FaceResult.valid`` False, ``app.core.quality``)."""

    def add(self, result: FrameResult) -> None:
        """Count ``result``'s frame, faces and invalid faces and keep its stage times."""
        self.frames += 1
        self.faces += len(result.faces)
        self.invalid_faces += sum(1 for f in result.faces if not f.valid)
        self.face_ids.update(f.face_id for f in result.faces)
        for key, value in result.timings_ms.items():
            self.timings.setdefault(key, []).append(value)

    def median_ms(self) -> dict[str, float]:
        """The median milliseconds of each stage, rounded to 0.001."""
        return {k: round(statistics.median(v), 3) for k, v in self.timings.items()}


@dataclass
class Options:
    """The parsed command line of ``process``; ``videos`` are the input files, videos or images (folders already
    listed)."""

    videos: list[Path]
    out: Path
    mode: str = "pose"
    smooth: bool = False
    no_video: bool = False
    resume: bool = False
    overwrite: bool = False
    models: Path = DEFAULT_MODELS_DIR
    max_frames: int | None = None
    detector: str = "blazeface"
    workers: int | None = None
    """Videos processed at once on this machine; None: ``batch.default_workers``."""
    threads: int | None = None
    """Cores each worker may use (its ONNX Runtime threads); None: the cores shared out among the workers."""
    ray: str | None = None
    """The address of a Ray cluster to run on (``cluster.py``), or None for this machine."""
    split_frames: int = SPLIT_FRAMES
    """With ``ray``: videos of more frames than this are split into frame ranges (``frame_ranges.py``)."""
    provider: str = "auto"
    """The execution provider asked for, a ``providers.CHOICES`` name."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors become one ``UsageError`` line instead of usage text."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help (where it has one worth saying), and the epilog's tables as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.required or action.default in (None, argparse.SUPPRESS) or "%(default)" in text:
            return text
        default = ("off" if action.default is False else "on") if isinstance(action.default, bool) else "%(default)s"
        return f"{text} (default: {default})"


def _epilog() -> str:
    """``OUTPUTS`` and ``EXIT_MEANINGS`` as two tables of wrapped lines."""
    def table(items: list[tuple[str, str]], width: int) -> str:
        return "\n".join(textwrap.fill(meaning, 100, initial_indent=f"  {key:<{width}} ",
                                        subsequent_indent=" " * (width + 3)) for key, meaning in items)

    outputs = table(list(OUTPUTS.items()), 20)
    batch = table(list(BATCH_OUTPUTS.items()), 20)
    codes = table([(str(int(code)), meaning) for code, meaning in EXIT_MEANINGS.items()], 4)
    return (f"outputs, for each input NAME, in DIR:\n{outputs}\nand once per run:\n{batch}\n\n"
            f"exit codes (where inputs fail for different reasons, the first one's):\n{codes}")


def build_parser(prog: str = "run_app.py process") -> argparse.ArgumentParser:
    """The ``process`` command's arguments."""
    parser = _Parser(prog=prog, description="Estimate head pose in videos and images without a window.",
                     epilog=_epilog(), formatter_class=_HelpFormatter)
    parser.add_argument("inputs", nargs="*", type=str, metavar="INPUT",
                        help="video or image files, folders or glob patterns (quoted, e.g. 'videos/**/*.mp4'): a "
                             "folder stands for the videos and images directly inside it (by suffix, in name "
                             "order; not this command's outputs)")
    parser.add_argument("--from-list", action="append", type=Path, default=None, metavar="FILE",
                        help="a text file naming inputs, one a line (files, folders or patterns; # comments; "
                             "relative paths from the file's folder); may be repeated")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created if absent)")
    parser.add_argument("--mode", choices=sorted(MODES), default="pose",
                        help="pose: encoder only (fast); full: also landmarks and visibility")
    parser.add_argument("--smooth", action="store_true", help="One Euro smoothing of each face over time")
    parser.add_argument("--no-video", action="store_true", help="write no annotated video or image")
    rerun = parser.add_mutually_exclusive_group()
    rerun.add_argument("--resume", action="store_true", help="continue a stopped run from its CSV")
    rerun.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run")
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS_DIR, metavar="DIR",
                        help="folder with mnn_encoder.onnx / mnn_full.onnx")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N",
                        help="stop before frame index N, a quick look at the start of a video (default: every frame)")
    parser.add_argument("--detector", choices=list(DETECTORS), default="blazeface", help="face detector")
    parser.add_argument("--provider", choices=list(PROVIDER_CHOICES), default="auto",
                        help="ONNX Runtime execution provider: auto (TensorRT, then CUDA, then the CPU, the first "
                             "that runs here), cpu, cuda or tensorrt")
    workers, threads = plan_workers(None, None, 1 << 20)
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="videos processed at once, each in its own process (default: as many as the cores "
                             f"allow at {THREADS_PER_WORKER} thread(s) each: {workers} here)")
    parser.add_argument("--threads", type=int, default=None, metavar="T",
                        help="cores (ONNX Runtime threads) per worker; workers x threads stays within the cores "
                             "(default: the cores shared out among the workers)")
    parser.add_argument("--ray", default=None, metavar="ADDRESS",
                        help="run on an existing Ray cluster (auto, or ray://HOST:PORT): one task per video, long "
                             "videos split into frame ranges; --out must be a folder every node sees")
    parser.add_argument("--split-frames", type=int, default=SPLIT_FRAMES, metavar="N",
                        help="with --ray, videos of more than N frames are split into frame ranges of about N "
                             "frames, one task each")
    return parser


BATCH_STEM = "process_batch"
"""The batch index is ``DIR/process_batch.json`` and ``.csv`` (``batch.py``): no input may be named so."""


def open_pipeline(options: Options, models: Path | None = None) -> FacePipeline:
    """The pipeline ``options`` ask for (mode, smoothing, detector, provider), on ``models`` (default
    ``options.models``): every process, worker and Ray task opens its pipeline here."""
    return FacePipeline(options.models if models is None else models, mode=options.mode, smooth=options.smooth,
                        detector=options.detector, providers=options.provider)


def parse_options(argv: Sequence[str]) -> Options:
    """``Options`` from the command line; ``UsageError`` for bad arguments, missing inputs, empty folders,
    two inputs of one name, or outputs of an earlier run without ``--resume`` or ``--overwrite``."""
    args = build_parser().parse_args(list(argv))
    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError("--max-frames must be at least 1")
    for flag, value in (("--workers", args.workers), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1")
    if args.split_frames < 1:
        raise UsageError("--split-frames must be at least 1")
    inputs = expand_inputs(args.inputs, args.from_list or [])
    stems = [p.stem for p in inputs]
    if BATCH_STEM in stems:
        raise UsageError(f"an input is named {BATCH_STEM!r}, the name of the batch index this command writes")
    clash = next((s for s in stems if stems.count(s) > 1), None)
    if clash is not None:
        raise UsageError(f"two inputs are named {clash!r}; their outputs would overwrite each other")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"{args.out}: exists and is not a folder")
    if not args.resume and not args.overwrite:
        earlier = next((found for p in inputs for found in OutputPaths.for_input(p, args.out).existing()), None)
        if earlier is not None:
            raise UsageError(f"{earlier}: written by an earlier run; add --resume to continue it "
                             "or --overwrite to replace it")
    return Options(videos=inputs, out=args.out, mode=args.mode, smooth=args.smooth, no_video=args.no_video,
                   resume=args.resume, overwrite=args.overwrite, models=args.models,
                   max_frames=args.max_frames, detector=args.detector, workers=args.workers,
                   threads=args.threads, ray=args.ray, split_frames=args.split_frames,
                   provider=args.provider)


class Interrupted(Exception):
    """Raised after an interrupted input's files are closed and its summary written."""


def _close(close: Callable[[], None], failure: str | None) -> str | None:
    """Run ``close``; return the first failure: ``failure`` if there already was one, else ``close``'s own."""
    try:
        close()
    except (OutputError, VideoWriteError) as error:
        return failure or str(error)
    return failure


def _summary_says_complete(summary: Path, mode: str) -> bool:
    """Whether an earlier run's summary says it finished its input in ``mode`` (an unreadable one: no)."""
    if not summary.is_file():
        return False
    try:
        found = json.loads(summary.read_text(encoding="utf-8"))
        return bool(found.get("complete")) and found.get("mode") == mode
    except (OSError, json.JSONDecodeError):
        return False


def process_video(path: Path, options: Options, pipeline: FacePipeline,
                  on_frames: Callable[[int], None] | None = None) -> dict:
    """Process one video or image into its CSV, annotated video (or PNG), pose plot and summary; returns the summary.

    ``on_frames(n)`` is told of every ``n`` frames done (processed or, on resume, redrawn), for a progress bar.

    ``VideoError`` if it cannot be read; ``Interrupted`` (after writing everything) on Ctrl-C or
    SIGTERM; ``OutputError`` (after writing the summary where it can) if an output cannot be written.
    """
    info = pipeline.load(options.mode)
    columns = csv_columns(options.mode, info.landmarks)
    paths = OutputPaths.for_input(path, options.out)
    state = ResumeState()
    if options.resume:
        state = resume_from_csv(paths.csv, columns, options.mode, _summary_says_complete(paths.summary, options.mode),
                                keep_faces=not options.no_video)
        if state.complete and (options.no_video or paths.video.is_file()):
            log.info("%s: already complete in %s", path.name, paths.summary)
            return json.loads(paths.summary.read_text(encoding="utf-8"))

    with open_source(path) as source:
        pipeline.reset_tracks()
        pipeline.tracker.seed(np.array(state.last_boxes).reshape(-1, 4), state.last_ids)
        if state.face_ids:
            pipeline.tracker.reserve_ids(max(state.face_ids))
        writer: VideoWriter | AnnotatedImage | None = None
        if not options.no_video:
            writer = AnnotatedImage(paths.video) if is_image(path) else VideoWriter(paths.video, source.fps)
        stats = RunStats(frames=state.frames, faces=state.faces, face_ids=set(state.face_ids),
                         invalid_faces=state.invalid_faces)
        tell = on_frames or (lambda count: None)
        loop = FrameLoop(source, pipeline, options.max_frames)  # type: ignore[arg-type]  (an ImageSource reads alike)
        csv_log: CsvLog | None = None

        def on_frame(frame: np.ndarray, result: FrameResult) -> None:
            if writer is not None:
                annotated, result = draw_timed(frame, result)
                writer.write(annotated)
            csv_log.write(result)
            stats.add(result)
            rate.tick()
            tell(1)

        def on_skipped(index: int, time_s: float, frame: np.ndarray) -> None:
            if writer is not None:
                kept = state.redraw.get(index, FrameResult(index, time_s, (), {}, options.mode))
                writer.write(draw_overlay(frame, kept))
            tell(1)

        interruption: KeyboardInterrupt | None = None
        failure: str | None = None
        rate = FrameRate()
        try:
            csv_log = CsvLog(paths.csv, columns, info.landmarks, append=state.append)
            loop.run(on_frame, on_skipped, start_index=state.start_index)
        except KeyboardInterrupt as stop:
            interruption = stop
        except (OutputError, VideoWriteError) as error:
            failure = str(error)
        finally:
            if csv_log is not None:
                failure = _close(csv_log.close, failure)
            if writer is not None:
                failure = _close(writer.close, failure)
        fps = rate.mean()
        plot = None
        if interruption is None and failure is None and not is_image(path):
            try:
                write_pose_plot(paths.csv, paths.plot, title=path.name)
                plot = str(paths.plot)
            except OSError as error:
                failure = str(cannot_write(paths.plot, error))
        summary = {
            "input": str(path),
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
            "invalid_faces": stats.invalid_faces,
            "face_ids": len(stats.face_ids),
            "median_ms": stats.median_ms(),
            "fps": fps,
            "resumed_from": state.start_index if options.resume else None,
            "max_frames": options.max_frames,
            "interrupted": interruption is not None,
            "complete": interruption is None and failure is None and source.ended,
            "error": failure,
            "csv": str(paths.csv),
            "video": None if writer is None else str(paths.video),
            "plot": plot,
        }
    try:
        paths.summary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    except OSError as error:
        failure = failure or str(cannot_write(paths.summary, error))
    if interruption is not None:
        cause = "SIGTERM" if isinstance(interruption, Terminated) else "Ctrl-C"
        raise Interrupted(f"interrupted ({cause}): {path.name} stopped after frame "
                          f"{stats.frames - 1 if stats.frames else 0}; rerun with --resume to continue")
    if failure is not None:
        raise OutputError(failure)
    return summary


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While active, SIGTERM raises ``Terminated`` (a ``KeyboardInterrupt``), so that it stops a run as Ctrl-C
    does; only the main thread can take signals, elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str]) -> int:
    """Run the ``process`` command; returns its exit code (``EXIT_MEANINGS``)."""
    try:
        options = parse_options(argv)
        options.out.mkdir(parents=True, exist_ok=True)
    except UsageError as error:
        _error(str(error))
        return ExitCode.USAGE
    except OSError as error:
        _error(f"{options.out}: cannot create the output folder ({error.strerror})")
        return ExitCode.OUTPUT
    from app.core.batch import Batch
    from app.core.progress import BatchProgress

    try:
        with sigterm_as_interrupt():
            codes = Batch(options).run(BatchProgress(len(options.videos), None))
    except ModelError as error:
        _error(str(error))
        return ExitCode.MODEL
    except ProviderError as error:
        _error(str(error))
        return ExitCode.PROVIDER
    except UsageError as error:
        _error(str(error))
        return ExitCode.USAGE
    except Interrupted as stop:
        print(str(stop), file=sys.stderr)
        return ExitCode.INTERRUPTED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    return codes[0] if codes else ExitCode.OK
