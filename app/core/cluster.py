"""``run_app.py process --ray ADDRESS``: the same batch on an existing Ray cluster (Ray is optional:
``requirements-ray.txt``).

One task per video; a video of more than ``--split-frames`` frames (``frame_ranges.SPLIT_FRAMES`` by default)
becomes one task per frame range, then a task that merges the ranges' rows, one per range that draws its
annotated segment, and one that joins the segments and writes the plot and summary (``frame_ranges.py``).
The inputs and ``--out`` must be paths every node sees (a shared or network file system, mounted at the same
place), and every node runs this project's Python environment; the ``app`` package itself is shipped with the
job (``runtime_env`` ``py_modules``). The models go to the cluster once: the driver puts the models folder's
files in Ray's object store (``ray.put``), and each worker process writes them to a temporary folder and builds
one ``FacePipeline`` the first time it needs it, which it keeps for every later task.

A task whose worker dies is retried (``RAY_RETRIES``). A retried video task carries on from the rows its first
attempt flushed (``--resume``'s rules; the attempt leaves ``DIR/.NAME.attempt`` naming the batch, its host and
process while it runs); a retried range task starts its range again, and the ranges already finished are kept.
The files written are those of a local run, in the same places, and the same batch index.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from app.core.batch import Batch, VideoRecord, left_alone, record_from_summary, run_one
from app.core.exit_codes import ExitCode, UsageError
from app.core.progress import BatchProgress

RAY_RETRIES = 3
"""Times a task is run again after its worker process or node dies."""

MODEL_SUFFIXES = (".onnx", ".npz", ".json")
"""The files of the models folder that go to the workers."""

APP_DIR = Path(__file__).resolve().parents[1]


def read_models(folder: Path) -> dict[str, bytes]:
    """The models folder's files that the pipeline reads, by name."""
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())
            if p.is_file() and p.suffix in MODEL_SUFFIXES}


_pipelines: dict[tuple, Any] = {}

TASK_CPUS = 1
"""Cores each task asks Ray for, and the cores (ONNX Runtime and OpenCV threads) its worker process runs on."""


def claim_cores(threads: int) -> list[int]:
    """Pin this Ray worker process to ``threads`` cores of its node, taken in turn by the node's workers (a counter
    in a locked file), so that ONNX Runtime, which sizes its thread pool from the cores a process may use, runs
    ``threads`` threads and the workers of a node do not crowd the same cores. Ray itself pins nothing."""
    import fcntl

    import cv2

    from app.core.batch import pin_to_cores

    counter = Path(tempfile.gettempdir()) / f"mnn-ray-cores-{os.getuid()}"
    with counter.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        text = handle.read().strip()
        slot = int(text) if text.isdigit() else 0
        handle.seek(0)
        handle.truncate()
        handle.write(str(slot + 1))
    cores_here = len(os.sched_getaffinity(0))
    cv2.setNumThreads(threads)
    return pin_to_cores(slot % max(1, cores_here // threads), threads)


def worker_pipeline(models: dict[str, bytes], digest: str, options: Any) -> Any:
    """This worker process's pipeline for ``options`` (built once, from the models written to a temporary folder)."""
    from app.core import process

    key = (digest, options.mode, options.smooth, options.detector, options.provider)
    if not _pipelines:
        claim_cores(TASK_CPUS)
    if key not in _pipelines:
        folder = Path(tempfile.gettempdir()) / f"mnn-models-{digest[:16]}"
        if not folder.is_dir():
            staging = Path(tempfile.mkdtemp(prefix="mnn-models-"))
            for name, data in models.items():
                (staging / name).write_bytes(data)
            try:
                staging.rename(folder)
            except OSError:
                pass  # another worker of this node wrote it first
        pipeline = process.open_pipeline(options, folder)
        pipeline.load(options.mode)
        _pipelines[key] = pipeline
    return _pipelines[key]


def _attempt_marker(options: Any, path: Path) -> Path:
    return Path(options.out) / f".{Path(path).stem}.attempt"


def video_task(path: Path, options: Any, models: dict[str, bytes], digest: str, batch_id: str) -> dict:
    """One video on a worker: its record, or ``{"split": frame_count}`` where it is long enough to split."""
    from app.core.frame_ranges import remove_parts
    from app.core.video import VideoError, VideoSource, is_image

    if left_alone(path, options):
        return {"record": run_one(path, options, None, lambda n: None)}  # type: ignore[arg-type]
    split = options.split_frames
    if not is_image(path):
        with contextlib.suppress(VideoError), VideoSource(path) as source:
            count = source.frame_count
            if count is not None and options.max_frames is not None:
                count = min(count, options.max_frames)
            if count is not None and count > split:
                if not options.resume:
                    remove_parts(options.out, Path(path).stem)  # ranges of an earlier run are reused only on --resume
                return {"split": count}
    marker = _attempt_marker(options, path)
    retried = marker.is_file() and marker.read_text(encoding="utf-8").split(" ")[0] == batch_id
    marker.write_text(f"{batch_id} {socket.gethostname()} {os.getpid()}\n", encoding="utf-8")
    if retried:
        options = dataclasses.replace(options, resume=True, overwrite=False)
    record = run_one(path, options, worker_pipeline(models, digest, options), lambda n: None)
    marker.unlink(missing_ok=True)
    return {"record": record}


def range_task(path: Path, options: Any, models: dict[str, bytes], digest: str, rng: Any) -> dict:
    """One frame range on a worker (``frame_ranges.run_range``); its frames and faces."""
    from app.core.frame_ranges import run_range

    record = run_range(path, options, worker_pipeline(models, digest, options), rng)
    return {"frames": record["frames"], "seconds": record["seconds"]}


def merge_task(path: Path, options: Any, ranges: list) -> dict:
    """The ranges' rows merged into ``NAME.csv`` (``frame_ranges.merge_ranges``)."""
    from app.core.frame_ranges import merge_ranges, range_done

    records = [range_done(options.out, Path(path).stem, rng, options.mode) for rng in ranges]
    return merge_ranges(path, options, ranges, records)


def draw_task(path: Path, options: Any, rng: Any) -> str:
    """One range's annotated segment (``frame_ranges.draw_range``)."""
    from app.core.frame_ranges import draw_range

    return str(draw_range(path, options, rng))


def finish_task(path: Path, options: Any, models: dict[str, bytes], digest: str, ranges: list, merged: dict,
                seconds: float) -> VideoRecord:
    """A split video's last step: the segments joined, the plot and the summary written, the partial files removed."""
    from app.core import process
    from app.core.exit_codes import cannot_write
    from app.core.frame_ranges import concat_segments, remove_parts, segment_path
    from app.core.pose_plot import write_pose_plot
    from app.core.video import VideoSource

    pipeline = worker_pipeline(models, digest, options)
    info = pipeline.load(options.mode)
    paths = process.OutputPaths.for_input(Path(path), Path(options.out))
    name = Path(path).stem
    error = None
    try:
        if not options.no_video:
            concat_segments([segment_path(options.out, name, rng) for rng in ranges], paths.video)
        write_pose_plot(paths.csv, paths.plot, title=Path(path).name)
    except OSError as failure:
        error = str(cannot_write(paths.plot, failure))
    with VideoSource(path) as source:
        header = source.frame_count
    wanted = min(header, options.max_frames) if options.max_frames else header
    summary = {
        "input": str(path), "mode": options.mode, "smooth": options.smooth, "detector": options.detector,
        "provider": pipeline.provider, "precision": pipeline.precision(options.mode),
        "refiner": pipeline.refiner_name if options.mode == "full" else None, "input_size": info.input_size,
        "frames": header, "decoded": merged["decoded"],
        "failed": (header if merged["ended"] else wanted) - merged["decoded"],
        "processed": merged["frames"], "faces": merged["faces"], "invalid_faces": merged["invalid_faces"],
        "face_ids": merged["face_ids"],
        "median_ms": merged["median_ms"], "fps": merged["fps"], "resumed_from": None,
        "max_frames": options.max_frames, "interrupted": False,
        "complete": error is None and merged["ended"], "error": error,
        "csv": str(paths.csv), "video": None if options.no_video else str(paths.video),
        "plot": None if error else str(paths.plot), "ranges": len(ranges),
    }
    paths.summary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    remove_parts(options.out, name)
    status = "failed" if error else "complete" if summary["complete"] else "partial"
    return record_from_summary(Path(path), summary, status, seconds, error, ExitCode.OUTPUT if error else 0)


@dataclasses.dataclass
class _Video:
    """A video's place in the driver's plan: which step its outstanding tasks are."""

    path: Path
    started: float
    step: str = "video"
    ranges: list = dataclasses.field(default_factory=list)
    merged: dict | None = None
    waiting: int = 0


def run_on_ray(batch: Batch, progress: BatchProgress) -> None:
    """Run ``batch``'s inputs on the Ray cluster at ``options.ray``, keeping its records as each video finishes."""
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install -r requirements-ray.txt") from None
    from app.core.frame_ranges import WARMUP_FRAMES, plan_ranges

    options = batch.options
    options = dataclasses.replace(options, out=Path(options.out).resolve(),
                                  videos=[Path(v).resolve() for v in options.videos],
                                  models=Path(options.models).resolve())
    try:
        ray.init(address=options.ray, log_to_driver=False, logging_level="ERROR", configure_logging=False,
                 runtime_env={"py_modules": [str(APP_DIR)]})
    except (ConnectionError, RuntimeError, ValueError) as error:
        line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"--ray {options.ray}: cannot join the Ray cluster ({line})") from None
    try:
        models = read_models(options.models)
        digest = hashlib.sha256(b"".join(n.encode() + hashlib.sha256(d).digest() for n, d in models.items())).hexdigest()
        models_ref = ray.put(models)
        batch_id = uuid.uuid4().hex
        remote = {name: ray.remote(function).options(max_retries=RAY_RETRIES, num_cpus=TASK_CPUS)
                  for name, function in (("video", video_task), ("range", range_task), ("merge", merge_task),
                                         ("draw", draw_task), ("finish", finish_task))}
        pending: dict[Any, tuple[_Video, Any]] = {}
        for path, original in zip(options.videos, batch.options.videos):
            video = _Video(original, time.monotonic())
            pending[remote["video"].remote(path, options, models_ref, digest, batch_id)] = (video, None)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in ready:
                video, rng = pending.pop(ref)
                try:
                    value = ray.get(ref)
                except Exception as error:  # a task that failed for good: its video fails, the others go on
                    lost = "died" if isinstance(error, (ray.exceptions.WorkerCrashedError,
                                                        ray.exceptions.NodeDiedError)) else "failed"
                    line = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
                    if video.step != "failed":
                        video.step = "failed"
                        batch.finish(VideoRecord(str(video.path), "failed", exit_code=ExitCode.WORKER,
                                                 error=f"{video.path}: the Ray task {lost} ({line}); rerun with "
                                                       "--resume to continue it",
                                                 seconds=round(time.monotonic() - video.started, 3)), progress)
                    continue
                if video.step == "failed":
                    continue
                path = Path(video.path).resolve()
                if video.step == "video" and "record" in value:
                    record = value["record"]
                    record.input = str(video.path)
                    batch.finish(record, progress)
                elif video.step == "video":
                    video.ranges = plan_ranges(value["split"], options.split_frames, WARMUP_FRAMES)
                    video.step, video.waiting = "range", len(video.ranges)
                    for part in video.ranges:
                        pending[remote["range"].remote(path, options, models_ref, digest, part)] = (video, part)
                elif video.step == "range":
                    progress.frames(value["frames"])
                    video.waiting -= 1
                    if not video.waiting:
                        video.step = "merge"
                        pending[remote["merge"].remote(path, options, video.ranges)] = (video, None)
                elif video.step == "merge":
                    video.merged = value
                    if options.no_video:
                        video.step = "finish"
                        pending[remote["finish"].remote(path, options, models_ref, digest, video.ranges, value,
                                                        time.monotonic() - video.started)] = (video, None)
                    else:
                        video.step, video.waiting = "draw", len(video.ranges)
                        for part in video.ranges:
                            pending[remote["draw"].remote(path, options, part)] = (video, part)
                elif video.step == "draw":
                    video.waiting -= 1
                    if not video.waiting:
                        video.step = "finish"
                        pending[remote["finish"].remote(path, options, models_ref, digest, video.ranges,
                                                        video.merged, time.monotonic() - video.started)] = (video, None)
                elif video.step == "finish":
                    value.input = str(video.path)
                    batch.finish(value, progress)
    finally:
        ray.shutdown()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def local_head(num_cpus: int = 2, timeout_s: float = 60.0) -> Iterator[str]:
    """A Ray head for the length of the block (tests, ``app.bench_batch --ray local``), its address 127.0.0.1 and
    its dashboard off; yields the address. Started with ``ray start --head --block`` and stopped by its own process
    id (Ctrl-C, then SIGKILL to its process group after 30 s)."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray-")
    command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
               f"--port={port}", f"--num-cpus={num_cpus}", "--include-dashboard=false", "--disable-usage-stats",
               f"--temp-dir={temp}", "--object-store-memory=200000000"]
    head = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the local Ray head did not start (exit {head.poll()})")
            time.sleep(0.5)
        yield address
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(head.pid, signal.SIGINT)  # ray start --block stops the head's processes on Ctrl-C
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)
