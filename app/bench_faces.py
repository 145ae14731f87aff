"""``python -m app.bench_faces``: milliseconds per frame with 1, 5 and 20 faces, pose and full mode, as JSON.

The frame is made, not found: the face the detector finds in one frame of ``--video`` (default
``../shared/data/videos/d18.mp4``, frame 0), with a margin, is tiled ``N`` times in a grid on a
1280×720 grey frame, so that the face count is the only thing that changes. Per mode and face count
it reports two medians: ``frame_ms``, ``FacePipeline.process`` on the tiled frame (detector, tracker,
crops, one network run for all faces, refine in full mode; no decode, no overlay) with its stages
and the faces it found; and ``estimate_ms``, ``FacePipeline.estimate`` on the ``N`` tile boxes (crops,
network, refine: the face-dependent part without the detector, which may miss small tiles). Face
counts run in turn, round after round, so that a busy machine slows each alike; models open and warm
up before timing. Exit codes as ``app.bench``'s.
"""
from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

from app.native_logs import quiet_native_logs

quiet_native_logs()

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from app.bench import batch_sizes  # noqa: E402
from app.bench_report import run_and_report  # noqa: E402
from app.core import providers  # noqa: E402
from app.core.detector import DETECTORS, create_detector  # noqa: E402
from app.core.estimator import DEFAULT_MODELS_DIR  # noqa: E402
from app.core.exit_codes import ExitCode  # noqa: E402
from app.core.model_io import MODES, PRECISIONS  # noqa: E402
from app.core.pipeline import FacePipeline  # noqa: E402
from app.core.video import VideoError, VideoSource  # noqa: E402

DEFAULT_VIDEO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos" / "d18.mp4"
CANVAS = (1280, 720)
"""Width and height of the tiled frame."""
MARGIN = 0.6
"""Each tile holds the detector's box widened by this fraction of its size on every side."""
GREY = 114
FPS = 30.0
"""The frame rate the repeated frame is timed as, for the tracker."""


def face_tile(frame_bgr: np.ndarray, detector: str) -> tuple[np.ndarray, np.ndarray]:
    """The square region around the best face in ``frame_bgr`` and that face's detector box within it."""
    found = create_detector(detector).detect(frame_bgr)
    if len(found) == 0:
        raise VideoError("no face found in the frame to tile")
    x1, y1, x2, y2 = found[0, :4]
    side = max(x2 - x1, y2 - y1) * (1 + 2 * MARGIN)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    side_px = int(round(side))
    padded = cv2.copyMakeBorder(frame_bgr, side_px, side_px, side_px, side_px, cv2.BORDER_CONSTANT,
                                value=(GREY, GREY, GREY))
    region = padded[top + side_px:top + 2 * side_px, left + side_px:left + 2 * side_px]
    return region, np.array([x1 - left, y1 - top, x2 - left, y2 - top])


def tiled_frame(region: np.ndarray, box: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` copies of ``region`` in a grid on a ``CANVAS`` frame, and their detector boxes ``(count, 4)``."""
    width, height = CANVAS
    cols = max(1, math.ceil(math.sqrt(count * width / height)))
    rows = math.ceil(count / cols)
    tile = min(width // cols, height // rows)
    scaled = cv2.resize(region, (tile, tile), interpolation=cv2.INTER_AREA)
    factor = tile / region.shape[0]
    frame = np.full((height, width, 3), GREY, np.uint8)
    boxes = []
    for k in range(count):
        x0, y0 = (k % cols) * tile, (k // cols) * tile
        frame[y0:y0 + tile, x0:x0 + tile] = scaled
        boxes.append(box * factor + [x0, y0, x0, y0])
    return frame, np.array(boxes, dtype=np.float64)


def bench_faces(video: Path, counts: Sequence[int], modes: Sequence[str], models: Path, runs: int = 20,
                warmup: int = 3, detector: str = "blazeface", precision: str = "auto", provider: str = "auto",
                frame_index: int = 0) -> dict:
    """Median ms per frame for each mode and face count (``frame_ms`` end to end but decode and overlay,
    ``estimate_ms`` from known boxes), ``runs`` rounds after ``warmup``."""
    with VideoSource(video) as source:
        frame = None
        for index, _, decoded in source:
            if index == frame_index:
                frame = decoded
                break
    if frame is None:
        raise VideoError(f"{video}: no frame {frame_index}")
    region, box = face_tile(frame, detector)
    frames = {n: tiled_frame(region, box, n) for n in counts}
    report: dict = {"video": str(video), "frame_index": frame_index, "canvas": list(CANVAS),
                    "face_px": {str(n): int(round(frames[n][1][0, 2] - frames[n][1][0, 0])) for n in counts},
                    "runs": runs, "warmup": warmup, "results": []}
    # One pipeline per face count: each keeps its own face tracks, as a video of that many faces would.
    pipelines = {n: FacePipeline(models, mode=modes[0], detector=detector, precision=precision, providers=provider)
                 for n in counts}
    try:
        report["provider"] = pipelines[counts[0]].provider
        for mode in modes:
            for pipeline in pipelines.values():
                pipeline.load(mode)
                pipeline.set_mode(mode)
            frame_ms: dict[int, list[float]] = {n: [] for n in counts}
            estimate_ms: dict[int, list[float]] = {n: [] for n in counts}
            stages: dict[int, dict[str, list[float]]] = {n: {} for n in counts}
            found: dict[int, list[int]] = {n: [] for n in counts}
            for round_index in range(warmup + runs):
                for n in counts:
                    image, boxes = frames[n]
                    began = time.perf_counter()
                    result = pipelines[n].process(image, round_index, round_index / FPS)
                    frame_took = (time.perf_counter() - began) * 1000.0
                    began = time.perf_counter()
                    pipelines[n].estimate(image, boxes, mode, check_quality=False)
                    estimate_took = (time.perf_counter() - began) * 1000.0
                    if round_index < warmup:
                        continue
                    frame_ms[n].append(frame_took)
                    estimate_ms[n].append(estimate_took)
                    found[n].append(len(result.faces))
                    for key, value in result.timings_ms.items():
                        stages[n].setdefault(key, []).append(value)
            for n in counts:
                estimate = statistics.median(estimate_ms[n])
                report["results"].append({
                    "mode": mode, "precision": pipelines[n].precision(mode), "faces": n,
                    "detected": int(statistics.median(found[n])),
                    "frame_ms": round(statistics.median(frame_ms[n]), 2),
                    "stages_ms": {k: round(statistics.median(v), 2) for k, v in stages[n].items()},
                    "estimate_ms": round(estimate, 2), "estimate_ms_per_face": round(estimate / n, 2)})
    finally:
        for pipeline in pipelines.values():
            pipeline.close()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its JSON; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m app.bench_faces", description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help="video whose frame gives the face")
    parser.add_argument("--frame", type=int, default=0, help="index of that frame (default: 0)")
    parser.add_argument("--faces", type=batch_sizes, default=[1, 5, 20], metavar="N[,N...]",
                        help="face counts per frame (default: 1,5,20)")
    parser.add_argument("--mode", choices=[*sorted(MODES), "both"], default="both")
    parser.add_argument("--runs", type=int, default=20, help="timed rounds (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="rounds before timing (default: 3)")
    parser.add_argument("--provider", choices=providers.CHOICES, default="auto")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS_DIR, metavar="DIR")
    parser.add_argument("--detector", choices=list(DETECTORS), default="blazeface")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.video.is_file():
        print(f"error: {args.video}: no such file", file=sys.stderr)
        return ExitCode.USAGE
    if args.runs < 1 or args.warmup < 0 or args.frame < 0:
        print("error: --runs must be at least 1, --warmup and --frame at least 0", file=sys.stderr)
        return ExitCode.USAGE
    modes = ["pose", "full"] if args.mode == "both" else [args.mode]
    return run_and_report(lambda: bench_faces(args.video, args.faces, modes, args.models, args.runs, args.warmup,
                                              args.detector, args.precision, args.provider, args.frame), args.json)

if __name__ == "__main__":
    sys.exit(main())
