"""``python -m app.bench``: speed of the runtime, as JSON: end to end on a video, the network alone, or on paper.

``--video PATH`` runs the same ``FrameLoop`` as the viewer and the headless command, draws the overlay
of every frame (without writing it anywhere), and reports frames per second end to end and the median
milliseconds of each stage, as ``FacePipeline`` names them: decode, detect, crop (and mapping the
outputs back to the frame), infer (the ONNX Runtime run alone), refine (full mode: the occlusion-aware
regressor, ``or.npz``, and the pose fitted to its landmarks), overlay; the bench runs unsmoothed.
``refine_ms_per_face`` is the refine time summed over the measured frames divided by the faces they
held: the cost per face of the OR and of the pose fitted to its landmarks (``app.core.landmark_pose``).
The first ``--warmup`` frames (graph start-up, first allocations) are processed but not measured;
model loading is never measured, nor is ``--precision auto``'s speed check at a mode's first use on a
CPU (``app.core.precision``; its log line says what it chose and why). Speed is measured here, never by
timed tests.

``--inference-only --batch 1,8,32`` times the mode's network alone (``PoseEstimator.run``: the ONNX
Runtime call with its input and output copies) on seeded random crops, the batch sizes interleaved
round by round so that a busy machine slows each alike: median milliseconds per call and images per
second for each. ``--on-paper`` prints the expected GPU rate from the graphs' MACs and kernel counts
(``app.bench_paper``), not a measurement.

``--provider auto|cpu|cuda|tensorrt`` picks the execution provider (``app.core.providers``); ``cuda``
or ``tensorrt`` where it cannot run is one line on stderr and exit code 6.

Exit codes (``app.core.exit_codes``) as for ``run_app.py process``: 2 bad arguments or missing file,
3 unreadable video, 4 model missing or invalid, 6 the provider asked for cannot run here.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

from app.native_logs import quiet_native_logs

quiet_native_logs()

import numpy as np  # noqa: E402  (after the native log settings, which are read at import)

from app.core import providers  # noqa: E402
from app.core.detector import DETECTORS  # noqa: E402
from app.core.estimator import DEFAULT_MODELS_DIR, PoseEstimator  # noqa: E402
from app.core.exit_codes import ExitCode  # noqa: E402
from app import bench_paper  # noqa: E402
from app.bench_report import run_and_report  # noqa: E402
from app.core import model_io  # noqa: E402
from app.core.model_io import MODES, PRECISIONS  # noqa: E402
from app.core.precision import cpu_identity  # noqa: E402
from app.core.overlay import draw_timed  # noqa: E402
from app.core.pipeline import FacePipeline, FrameLoop  # noqa: E402
from app.core.results import FrameResult  # noqa: E402
from app.core.video import VideoSource  # noqa: E402

STAGES = ("decode", "detect", "crop", "infer", "refine", "overlay")


def benchmark(video: Path, mode: str, frames: int, models: Path, warmup: int = 5,
              detector: str = "blazeface", precision: str = "auto", provider: str = "auto") -> dict:
    """Speed of the pipeline on the first ``warmup + frames`` frames of ``video``."""
    with FacePipeline(models, mode=mode, detector=detector, precision=precision, providers=provider) as pipeline, \
            VideoSource(video) as source:
        info = pipeline.load(mode)
        loop = FrameLoop(source, pipeline, max_frames=warmup + frames)
        stages: dict[str, list[float]] = {}
        faces: list[int] = []
        refined_faces: list[int] = []
        clock: dict[str, float] = {}

        def on_frame(frame: np.ndarray, result: FrameResult) -> None:
            _, result = draw_timed(frame, result)
            if result.index < warmup:
                clock["start"] = time.perf_counter()
                return
            for key, value in result.timings_ms.items():
                stages.setdefault(key, []).append(value)
            faces.append(len(result.faces))
            if "refine" in result.timings_ms:
                refined_faces.append(len(result.faces))
            clock["end"] = time.perf_counter()

        loop.run(on_frame)
        measured = len(faces)
        elapsed = clock.get("end", 0.0) - clock.get("start", 0.0)
        return {
            "video": str(video),
            "mode": mode,
            "detector": detector,
            "provider": pipeline.provider,
            "precision": pipeline.precision(mode),
            "refiner": pipeline.refiner_name if mode == "full" else None,
            "input_size": info.input_size,
            "frame_size": [source.width, source.height],
            "warmup": warmup,
            "frames": measured,
            "fps": round(measured / elapsed, 2) if measured and elapsed > 0 else None,
            "median_ms": {k: round(statistics.median(stages[k]), 3) for k in STAGES if k in stages},
            "refine_ms_per_face": (round(sum(stages["refine"]) / sum(refined_faces), 3)
                                   if sum(refined_faces) else None),
            "faces_per_frame": round(float(np.mean(faces)), 3) if faces else 0.0,
        }


def inference_benchmark(models: Path, mode: str, batches: Sequence[int], provider: str = "auto",
                        precision: str = "auto", seconds: float = 2.0, warmup: int = 3) -> dict:
    """Median milliseconds of one ``PoseEstimator.run`` per batch size on seeded random crops, the sizes run in
    turn round after round (``warmup`` rounds unmeasured) until ``seconds`` per size have passed (at least 5
    measured rounds)."""
    with PoseEstimator(models, providers=provider, precision=precision) as estimator:
        info = estimator.info(mode)
        size = info.input_size
        rng = np.random.default_rng(0)
        inputs = {b: model_io.to_input(rng.integers(0, 256, (b, size, size, 3), dtype=np.uint8), info)
                  for b in batches}
        times: dict[int, list[float]] = {b: [] for b in batches}
        start, rounds = time.perf_counter(), 0
        while rounds < warmup + 5 or time.perf_counter() - start < seconds * len(batches):
            for b in batches:
                began = time.perf_counter()
                estimator.run(inputs[b], mode)
                if rounds >= warmup:
                    times[b].append((time.perf_counter() - began) * 1000.0)
            rounds += 1
        results = []
        for b in batches:
            median = statistics.median(times[b])
            ordered = sorted(times[b])
            results.append({"batch": b, "runs": len(ordered), "median_ms": round(median, 3),
                            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 3),
                            "ms_per_image": round(median / b, 3), "images_per_s": round(1000.0 * b / median, 1)})
        return {"mode": mode, "model": estimator.model(mode).path.name, "provider": estimator.provider,
                "precision": estimator.precision(mode), "onnxruntime": ort_version(),
                "cpu": cpu_identity(), "input_size": size, "warmup_rounds": warmup, "results": results}


def ort_version() -> str:
    """The installed ONNX Runtime's version."""
    import onnxruntime

    return onnxruntime.__version__


def batch_sizes(text: str) -> list[int]:
    """``"1,8,32"`` → ``[1, 8, 32]``; an ``argparse`` type."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of batch sizes of at least 1")
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its JSON; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m app.bench", description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--video", type=Path, help="video file to run the whole pipeline on")
    what.add_argument("--inference-only", action="store_true",
                      help="time the network alone on random crops, at each --batch size")
    what.add_argument("--on-paper", action="store_true",
                      help="print the expected GPU rate from the models' MACs and kernel counts (not measured)")
    parser.add_argument("--mode", choices=sorted(MODES), default="pose")
    parser.add_argument("--provider", choices=providers.CHOICES, default="auto",
                        help="execution provider: auto (TensorRT, then CUDA, then the CPU, the first that runs "
                             "here), cpu, cuda or tensorrt (exit code 6 where it cannot run)")
    parser.add_argument("--frames", type=int, default=200, help="frames measured after the warm-up")
    parser.add_argument("--warmup", type=int, default=5, help="frames (or --inference-only rounds) before measuring")
    parser.add_argument("--batch", type=batch_sizes, default=[1, 8, 32], metavar="N[,N...]",
                        help="--inference-only: batch sizes (default: 1,8,32)")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="--inference-only: seconds of timed runs per batch size (default: 2)")
    parser.add_argument("--gpu", choices=sorted(bench_paper.GPUS), default="H100 SXM",
                        help="--on-paper: the GPU whose datasheet to use")
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS_DIR, metavar="DIR")
    parser.add_argument("--detector", choices=list(DETECTORS), default="blazeface")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto (what the app runs: on the CPU, int8 where precision.json finds it accurate "
                             "and a speed check, cached per CPU, finds it fast enough), fp32 or int8")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.video is not None and not args.video.is_file():
        print(f"error: {args.video}: no such file", file=sys.stderr)
        return ExitCode.USAGE
    if args.frames < 1 or args.warmup < 0 or args.seconds <= 0:
        print("error: --frames must be at least 1, --warmup at least 0 and --seconds above 0", file=sys.stderr)
        return ExitCode.USAGE
    def compute() -> dict:
        if args.on_paper:
            return bench_paper.on_paper(args.models, args.gpu)
        if args.inference_only:
            return inference_benchmark(args.models, args.mode, args.batch, args.provider, args.precision,
                                       args.seconds, args.warmup)
        return benchmark(args.video, args.mode, args.frames, args.models, args.warmup, args.detector,
                         args.precision, args.provider)

    try:
        return run_and_report(compute, args.json)
    except FileNotFoundError as exc:
        print(f"error: {exc.filename}: no such file", file=sys.stderr)
        return ExitCode.MODEL
    except ImportError as exc:
        print(f"error: --on-paper reads the graphs with the {exc.name} package (requirements-dev.txt)",
              file=sys.stderr)
        return ExitCode.USAGE

if __name__ == "__main__":
    sys.exit(main())
