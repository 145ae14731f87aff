"""Evaluate the exported ONNX models on held-out data through the app's own runtime."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import trainer.evaluate
from app.core.estimator import PoseEstimator
from app.core.model_io import ModelError, PRECISIONS
from app.core.video import VideoError
from trainer.cli import add_data_argument, report_error
from trainer.evaluate import CROPS, band_line, evaluate_dataset
from trainer.video_agreement import agreement, read_3ddfa_csv, run_pipeline


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer evaluate", description=trainer.evaluate.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models"), help="folder with the exported ONNX models")
    add_data_argument(parser, "dataset; repeat")
    parser.add_argument("--mode", choices=("full", "pose"), default="full",
                        help="full: pose, landmarks and visibility (mnn_full.onnx); pose: mnn_encoder.onnx")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N faces of each dataset")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the results as JSON (- for standard output)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32, int8 (mnn_*.int8.onnx) or auto (what the app would run on this CPU)")
    parser.add_argument("--crop", choices=CROPS, default="dataset",
                        help="dataset: each face's landmark box (the paper's protocol; the detector where a "
                             "dataset has none); detector: the app's detector box for every face")
    parser.add_argument("--video", type=Path, default=None,
                        help="a video to compare per frame with --reference (e.g. videos/side_large_pose.mp4)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="3DDFA_V2's per-frame CSV for --video (trainer.video_agreement)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if (args.video is None) != (args.reference is None):
        return report_error(ValueError("--video and --reference go together"))
    try:
        with PoseEstimator(args.model, precision=args.precision) as estimator:
            results = {"model": str(args.model), "provider": estimator.provider,
                       "precision": estimator.precision(args.mode),
                       "datasets": [evaluate_dataset(estimator, spec, args.mode, args.limit, crop=args.crop)
                                    for spec in args.data]}
        if args.video is not None:
            reference = read_3ddfa_csv(args.reference)
            if not args.video.is_file():
                raise ValueError(f"{args.video}: no such file")
            ours, ran = run_pipeline(args.video, args.model, args.mode, precision=args.precision)
            results["video_agreement"] = {"video": str(args.video), "reference": str(args.reference), **ran,
                                          **agreement(ours, reference)}
    except (ModelError, ValueError, FileNotFoundError, VideoError) as exc:
        return report_error(exc)
    text = json.dumps(results, indent=2)
    if args.json in ("-", "/dev/stdout"):
        print(text)
    else:
        if args.json:
            Path(args.json).write_text(text + "\n")
        for entry in results["datasets"]:
            print(json.dumps(entry))
            print(f"{entry['data']} ({entry['mode']}) pose MAE by {band_line(entry['mae_by_yaw_band'])}")
        if "video_agreement" in results:
            print(json.dumps(results["video_agreement"]))
    return 0
