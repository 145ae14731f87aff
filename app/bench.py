"""``python -m app.bench``: end-to-end speed of the runtime on a video, as JSON.

Runs the same ``FrameLoop`` as the viewer and the headless command, draws the overlay of every
frame (without writing it anywhere), and reports frames per second end to end and the median
milliseconds of each stage, as ``FacePipeline`` names them: decode, detect, crop (and mapping the
outputs back to the frame), infer (the ONNX Runtime run alone), refine (full mode: the occlusion-aware
regressor, ``or.npz``, and the pose fitted to its landmarks), overlay; the bench runs unsmoothed.
``refine_ms_per_face`` is the refine time summed over the measured frames divided by the faces they
held: the cost per face of the OR and of the pose fitted to its landmarks (``app.core.landmark_pose``).
The first ``--warmup`` frames (graph start-up, first allocations) are processed but not measured;
model loading is never measured, nor is ``--precision auto``'s speed check at a mode's first use on a
CPU (``app.core.precision``; its log line says what it chose and why). Speed is measured here, never by
timed tests.

Exit codes (``app.core.exit_codes``) as for ``run_app.py process``: 2 bad arguments or missing file,
3 unreadable video, 4 model missing or invalid.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

from app.native_logs import quiet_native_logs

quiet_native_logs()

import numpy as np  # noqa: E402  (after the native log settings, which are read at import)

from app.core.detector import DETECTORS  # noqa: E402
from app.core.estimator import DEFAULT_MODELS_DIR  # noqa: E402
from app.core.exit_codes import ExitCode  # noqa: E402
from app.core.model_io import MODES, PRECISIONS, ModelError  # noqa: E402
from app.core.overlay import draw_timed  # noqa: E402
from app.core.pipeline import FacePipeline, FrameLoop  # noqa: E402
from app.core.results import FrameResult  # noqa: E402
from app.core.video import VideoError, VideoSource  # noqa: E402

STAGES = ("decode", "detect", "crop", "infer", "refine", "overlay")


def benchmark(video: Path, mode: str, frames: int, models: Path, warmup: int = 5,
              detector: str = "blazeface", precision: str = "auto") -> dict:
    """Speed of the pipeline on the first ``warmup + frames`` frames of ``video``."""
    with FacePipeline(models, mode=mode, detector=detector, precision=precision) as pipeline, \
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its JSON; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m app.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, required=True, help="video file to run on")
    parser.add_argument("--mode", choices=sorted(MODES), default="pose")
    parser.add_argument("--frames", type=int, default=200, help="frames measured after the warm-up")
    parser.add_argument("--warmup", type=int, default=5, help="frames processed before measuring")
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS_DIR, metavar="DIR")
    parser.add_argument("--detector", choices=list(DETECTORS), default="blazeface")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto (what the app runs: on the CPU, int8 where precision.json finds it accurate "
                             "and a speed check, cached per CPU, finds it fast enough), fp32 or int8")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.video.is_file():
        print(f"error: {args.video}: no such file", file=sys.stderr)
        return ExitCode.USAGE
    if args.frames < 1 or args.warmup < 0:
        print("error: --frames must be at least 1 and --warmup at least 0", file=sys.stderr)
        return ExitCode.USAGE
    try:
        report = benchmark(args.video, args.mode, args.frames, args.models, args.warmup, args.detector,
                           args.precision)
    except VideoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.INPUT
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.MODEL
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
