"""A batch of ``run_app.py process`` on one machine: the inputs shared out among worker processes, and the batch index.

``--workers N`` processes N videos at once, each in its own process (``spawn``: MediaPipe and ONNX Runtime
are not fork-safe) holding one ``FacePipeline`` for all the videos it is given. Each worker may use
``--threads T`` cores, N x T within the cores this process may use: the worker is pinned to its own T cores
(``os.sched_setaffinity``), and ONNX Runtime, which sizes its intra-op thread pool from the cores the process
may use, then runs T threads, as does OpenCV (``cv2.setNumThreads``). One worker with every core runs in this
process, as the command always did.

A video that fails (unreadable, an output that cannot be written) is reported in one line and the others go
on. A worker process that dies (killed, out of memory) takes its pool down: the videos in hand are started
again in a fresh pool, continuing from the rows they flushed (``--resume``'s rules), and a video in hand at a
second death fails with ``ExitCode.WORKER``. ``process_batch.json`` and ``process_batch.csv`` in the output
folder index every input with its status, frames, faces and seconds (``INDEX_COLUMNS``); they are rewritten
as each video finishes, so an interrupted batch leaves an index of what it did.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import multiprocessing
import os
import queue as queue_module
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from app.core.exit_codes import ExitCode, OutputError, UsageError
from app.core.pipeline import FacePipeline
from app.core.progress import BatchProgress
from app.core.video import VideoError, is_image

log = logging.getLogger(__name__)

INDEX_JSON = "process_batch.json"
INDEX_CSV = "process_batch.csv"
INDEX_COLUMNS = ("input", "status", "frames", "faces", "face_ids", "seconds", "exit_code", "error", "summary")
"""The batch index's columns: ``status`` is ``STATUSES``' key; ``frames``, ``faces``, ``face_ids`` as in the
input's summary (``processed``, ``faces``, ``face_ids``); ``seconds`` the wall time spent on it in this run."""

STATUSES = {
    "complete": "every frame processed and every output written, in this run",
    "skipped": "complete in an earlier run (--resume), left alone",
    "partial": "stopped early on purpose (--max-frames); --resume continues it",
    "failed": "not processed or stopped by an error (exit_code and error say which)",
    "interrupted": "stopped by Ctrl-C or SIGTERM; --resume continues it",
    "not started": "the batch was interrupted before this input's turn",
}

WORKER_RETRIES = 1
"""Times a video is started again after a worker process died while it was in hand. A dying worker takes the
pool down, so the videos in the other workers' hands are started again too, from the rows they wrote."""

PROGRESS_INTERVAL_S = 0.25
"""How often a worker tells the main process how many frames it has done."""


@dataclass
class VideoRecord:
    """How one input of the batch went: a row of the batch index."""

    input: str
    status: str
    frames: int = 0
    faces: int = 0
    face_ids: int = 0
    seconds: float = 0.0
    exit_code: int = 0
    error: str | None = None
    summary: str | None = None
    failed_frames: int = 0
    """Frames that did not decode (a damaged video): reported on stderr, not in the index."""
    header_frames: int = 0

    def line(self) -> str:
        """One line for the log: the input's name, status, counts and time."""
        name = Path(self.input).name
        if self.status in ("failed", "not started"):
            return f"{name}: {self.status}" + (f" (exit {self.exit_code})" if self.exit_code else "")
        return f"{name}: {self.status}, {self.frames} frames, {self.faces} faces, {self.seconds:.1f} s"

    def row(self) -> dict[str, Any]:
        """The index's fields."""
        return {key: getattr(self, key) for key in INDEX_COLUMNS}


def record_from_summary(path: Path, summary: dict, status: str, seconds: float, error: str | None = None,
                        code: int = 0) -> VideoRecord:
    """The record of an input from its summary (``process.process_video``'s)."""
    return VideoRecord(input=str(path), status=status, frames=int(summary.get("processed", 0)),
                       faces=int(summary.get("faces", 0)), face_ids=int(summary.get("face_ids", 0)),
                       seconds=round(seconds, 3), exit_code=int(code), error=error,
                       summary=str(Path(summary["csv"]).with_suffix(".summary.json")) if summary.get("csv") else None,
                       failed_frames=int(summary.get("failed") or 0), header_frames=int(summary.get("frames") or 0))


def left_alone(path: Path, options: Any) -> bool:
    """Whether ``--resume`` leaves ``path`` alone: its summary says it is complete in this mode and its outputs
    are there (``process.process_video``'s own test, made without touching the CSV)."""
    from app.core import process

    paths = process.OutputPaths.for_input(path, options.out)
    return (options.resume and process._summary_says_complete(paths.summary, options.mode)
            and (options.no_video or paths.video.is_file()) and paths.csv.is_file())


def _read_summary(path: Path, options: Any) -> dict:
    from app.core import process

    try:
        return json.loads(process.OutputPaths.for_input(path, options.out).summary.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def run_one(path: Path, options: Any, pipeline: FacePipeline, on_frames: Callable[[int], None]) -> VideoRecord:
    """Process one input with ``pipeline``; its record, whatever happens (``Interrupted`` is passed on after
    the record is kept in ``error.record``)."""
    from app.core import process

    start = time.monotonic()
    if left_alone(path, options):
        summary = _read_summary(path, options)
        on_frames(int(summary.get("processed", 0)))
        return record_from_summary(path, summary, "skipped", 0.0)
    try:
        summary = process.process_video(path, options, pipeline, on_frames)
    except VideoError as error:
        return VideoRecord(str(path), "failed", seconds=round(time.monotonic() - start, 3),
                           exit_code=ExitCode.INPUT, error=str(error))
    except UsageError as error:
        return VideoRecord(str(path), "failed", seconds=round(time.monotonic() - start, 3),
                           exit_code=ExitCode.USAGE, error=str(error))
    except OutputError as error:
        summary = _read_summary(path, options)
        return record_from_summary(path, summary, "failed", time.monotonic() - start, str(error), ExitCode.OUTPUT)
    except process.Interrupted as stop:
        stop.record = record_from_summary(path, _read_summary(path, options), "interrupted",  # type: ignore[attr-defined]
                                          time.monotonic() - start, str(stop), ExitCode.INTERRUPTED)
        raise
    status = "complete" if summary.get("complete") else "partial"
    return record_from_summary(path, summary, status, time.monotonic() - start)


def write_index(out: Path, records: list[VideoRecord], settings: dict[str, Any]) -> None:
    """``process_batch.json`` and ``process_batch.csv`` in ``out``, each replaced whole (written beside, then
    renamed), so that a reader never sees half of one."""
    counts = {status: sum(1 for r in records if r.status == status) for status in STATUSES}
    document = {**settings, "inputs": len(records), "counts": counts,
                "frames": sum(r.frames for r in records), "faces": sum(r.faces for r in records),
                "videos": [r.row() for r in records]}
    json_path, csv_path = out / INDEX_JSON, out / INDEX_CSV
    json_tmp, csv_tmp = json_path.with_name(json_path.name + ".tmp"), csv_path.with_name(csv_path.name + ".tmp")
    json_tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    with csv_tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, INDEX_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for record in records:
            writer.writerow({k: ("" if v is None else v) for k, v in record.row().items()})
    json_tmp.replace(json_path)
    csv_tmp.replace(csv_path)


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


THREADS_PER_WORKER = 1
"""The default cores per worker when ``--workers`` is not given: on the 2-core benchmark machine 2 workers x 1
thread processed more frames per second than 1 worker x 2 threads (``python -m app.bench_batch``)."""


def plan_workers(workers: int | None, threads: int | None, inputs: int, cores: int | None = None) -> tuple[int, int]:
    """``(workers, threads)`` with ``workers x threads <= cores`` and never more workers than inputs; by default
    ``THREADS_PER_WORKER`` cores per worker and as many workers as the cores allow. Cores a capped worker count
    leaves idle go to the workers there are, unless ``threads`` says otherwise."""
    cores = cores or usable_cores()
    if workers is None:
        workers = max(1, cores // min(threads or THREADS_PER_WORKER, cores))
    workers = max(1, min(workers, cores, inputs))
    share = max(1, cores // workers)
    return workers, min(threads or share, share)


class Batch:
    """Runs the inputs of ``options`` and keeps the index; ``run`` returns each input's exit code, in order."""

    def __init__(self, options: Any) -> None:
        self.options = options
        self.workers, self.threads = plan_workers(options.workers, options.threads, len(options.videos))
        self.records: dict[Path, VideoRecord] = {}
        self.started = time.monotonic()
        self.counted: dict[str, int] = {}

    def settings(self) -> dict[str, Any]:
        options = self.options
        return {"out": str(options.out), "mode": options.mode, "smooth": options.smooth,
                "detector": options.detector, "max_frames": options.max_frames,
                "workers": self.workers, "threads": self.threads, "ray": options.ray,
                "seconds": round(time.monotonic() - self.started, 3)}

    def ordered(self) -> list[VideoRecord]:
        return [self.records.get(p) or VideoRecord(str(p), "not started") for p in self.options.videos]

    def finish(self, record: VideoRecord, progress: BatchProgress) -> None:
        """Keep ``record``, report it (an error line; the frames that did not decode), rewrite the index."""
        path = Path(record.input)
        self.records[path] = record
        if record.error and record.status != "interrupted":
            print(f"error: {record.error}", file=sys.stderr)
        if record.failed_frames and record.status != "failed":
            print(f"{path.name}: {record.failed_frames} of {record.header_frames} frames did not decode; "
                  f"processed the {record.header_frames - record.failed_frames} that did", file=sys.stderr)
        expected = self.expected.get(record.input, 0)
        progress.frames(max(0, expected - self.counted.get(record.input, 0)))
        progress.finished(record.line())
        self.write_index()

    def write_index(self) -> None:
        try:
            write_index(self.options.out, self.ordered(), self.settings())
        except OSError as error:
            log.warning("%s: the batch index cannot be written (%s)", self.options.out / INDEX_JSON,
                        error.strerror or error)

    def count(self, name: str, frames: int, progress: BatchProgress) -> None:
        self.counted[name] = self.counted.get(name, 0) + frames
        progress.frames(frames)

    def run(self, progress: BatchProgress | None = None) -> list[int]:
        """Process every input (in this process, in worker processes or on Ray); each input's exit code."""
        progress = progress or BatchProgress(len(self.options.videos), None, terminal=False)
        self.expected = expected_frames(self.options.videos, self.options.max_frames) if progress.terminal else {}
        progress.set_total(sum(self.expected.values()))
        try:
            if self.options.ray:
                from app.core.cluster import run_on_ray

                run_on_ray(self, progress)
            elif self.workers == 1 and self.threads >= usable_cores():
                self._run_here(progress)
            else:
                self._run_in_workers(progress)
        finally:
            progress.close()
            self.write_index()
        return [r.exit_code for r in self.ordered() if r.exit_code]

    def _run_here(self, progress: BatchProgress) -> None:
        """Every input in this process, one after the other, with one pipeline."""
        from app.core import process

        options = self.options
        with process.open_pipeline(options) as pipeline:
            pipeline.load(options.mode)
            for path in options.videos:
                try:
                    record = run_one(path, options, pipeline, lambda n, key=str(path): self.count(key, n, progress))
                except process.Interrupted as stop:
                    self.finish(stop.record, progress)  # type: ignore[attr-defined]
                    raise
                self.finish(record, progress)

    def _run_in_workers(self, progress: BatchProgress) -> None:
        """The inputs shared out among worker processes; a worker that dies fails its video, and the videos not
        yet started go to a fresh pool."""
        from app.core import process

        options = self.options
        check_models(options)
        context = multiprocessing.get_context("spawn")
        messages = context.Queue()
        stopping = context.Event()
        pending = list(options.videos)
        attempts: dict[Path, int] = {}
        interrupted: KeyboardInterrupt | None = None
        rounds = 0
        while pending and interrupted is None:
            rounds += 1
            slots = context.Queue()
            for slot in range(self.workers):
                slots.put(slot)
            busy: dict[str, int] = {}
            with ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_worker,
                                     initargs=(options, self.threads, slots, messages, stopping,
                                               logging.getLogger().level)) as pool:
                futures: dict[Future, Path] = {pool.submit(_work, path, attempts.get(path, 0) > 0): path
                                               for path in pending}
                pending = []
                waiting = set(futures)
                while waiting:
                    done: set[Future] = set()
                    try:
                        done, waiting = wait(waiting, timeout=PROGRESS_INTERVAL_S, return_when=FIRST_COMPLETED)
                        self._drain(messages, busy, progress)
                    except KeyboardInterrupt as stop:
                        interrupted = stop
                        stopping.set()
                        for future in waiting:
                            future.cancel()
                        self._drain(messages, busy, progress)
                        _stop_workers(busy.values())
                        finished, _ = wait(waiting, timeout=120)
                        done, waiting = set(done) | finished, set()
                    for future in done:
                        path = futures[future]
                        if future.cancelled():
                            continue
                        try:
                            record = future.result()
                        except BrokenProcessPool:
                            started = str(path) in busy
                            attempts[path] = attempts.get(path, 0) + started
                            if interrupted is not None or attempts[path] > WORKER_RETRIES or rounds > len(futures):
                                record = VideoRecord(str(path), "failed", exit_code=ExitCode.WORKER,
                                                     error=f"{path}: the worker process processing it died; "
                                                           "rerun with --resume to continue it")
                            else:
                                pending.append(path)
                                busy.pop(str(path), None)
                                continue
                        busy.pop(str(path), None)
                        self.finish(record, progress)
            self._drain(messages, busy, progress)
        if interrupted is not None:
            stopped = [r for r in self.records.values() if r.status == "interrupted"]
            message = "; ".join(r.error or "" for r in stopped) or "interrupted"
            raise process.Interrupted(message)

    def _drain(self, messages: Any, busy: dict[str, int], progress: BatchProgress) -> None:
        """Take the workers' messages: which video each has started, and frames done."""
        while True:
            try:
                kind, name, value = messages.get_nowait()
            except queue_module.Empty:
                return
            if kind == "start":
                busy[name] = value
            elif kind == "frames":
                self.count(name, value, progress)


def expected_frames(videos: Iterable[Path], max_frames: int | None) -> dict[str, int]:
    """The frames each input's header promises (1 for an image), up to ``max_frames``: the progress bar's total."""
    import cv2

    found = {}
    for path in videos:
        if is_image(path):
            count = 1
        else:
            capture = cv2.VideoCapture(str(path))
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if capture.isOpened() else 0
            capture.release()
        found[str(path)] = min(count, max_frames) if max_frames else count
    return found


def check_models(options: Any) -> None:
    """Open the mode's model here once (``ModelError`` before any worker starts; the CPU's INT8 check is made and
    cached once rather than by every worker at the same time)."""
    from app.core import process

    with process.open_pipeline(options) as pipeline:
        pipeline.load(options.mode)


def _stop_workers(pids: Iterable[int]) -> None:
    """SIGTERM to the workers processing a video: each stops as on Ctrl-C, writing its summary."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


_worker: dict[str, Any] = {}


def pin_to_cores(slot: int, threads: int) -> list[int]:
    """Restrict this process to ``threads`` cores of its own (the ``slot``-th share of the usable ones)."""
    cores = sorted(os.sched_getaffinity(0))
    share = [cores[(slot * threads + i) % len(cores)] for i in range(threads)]
    os.sched_setaffinity(0, set(share))
    return share


def _start_worker(options: Any, threads: int, slots: Any, messages: Any, stopping: Any, log_level: int) -> None:
    """A worker process's start: its own cores, quiet native logs, one pipeline for every video it is given."""
    from app.native_logs import quiet_native_logs

    quiet_native_logs()
    logging.basicConfig(level=log_level, format="%(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process stops the workers (SIGTERM), not Ctrl-C
    pin_to_cores(slots.get(), threads)
    import cv2

    cv2.setNumThreads(threads)
    from app.core import process

    pipeline = process.open_pipeline(options)
    pipeline.load(options.mode)
    _worker.update(options=options, pipeline=pipeline, messages=messages, stopping=stopping)


def _work(path: Path, retry: bool = False) -> VideoRecord:
    """Process one input in a worker; its record (an interrupted one too). A ``retry`` continues from the rows an
    earlier attempt wrote (``--resume``'s rules)."""
    from app.core import process

    options, pipeline, messages = _worker["options"], _worker["pipeline"], _worker["messages"]
    if _worker["stopping"].is_set():
        return VideoRecord(str(path), "not started")
    if retry:
        options = dataclasses.replace(options, resume=True, overwrite=False)
    messages.put(("start", str(path), os.getpid()))
    pending = [0, time.monotonic()]

    def on_frames(count: int) -> None:
        pending[0] += count
        if time.monotonic() - pending[1] >= PROGRESS_INTERVAL_S:
            messages.put(("frames", str(path), pending[0]))
            pending[0], pending[1] = 0, time.monotonic()

    try:
        with process.sigterm_as_interrupt():
            record = run_one(path, options, pipeline, on_frames)
    except process.Interrupted as stop:
        record = stop.record  # type: ignore[attr-defined]
    if pending[0]:
        messages.put(("frames", str(path), pending[0]))
    return record
