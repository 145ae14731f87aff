"""Write INT8 variants of the ONNX models and record whether they are accurate enough for the app to run."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import trainer.quantize
from app.core.model_io import ModelError
from trainer.cli import add_data_argument, report_error
from trainer.quantize import CALIBRATION_FACES, SPLIT_SEED, quantize_all


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer quantize", description=trainer.quantize.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models"), help="folder with the fp32 ONNX models")
    add_data_argument(parser, "the training data, in training's order; repeat")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the INT8 models and precision.json go (default: --model)")
    parser.add_argument("--calibration-faces", type=int, default=CALIBRATION_FACES,
                        help="training faces to calibrate on")
    parser.add_argument("--seed", type=int, default=0, help="seed drawing the calibration faces")
    parser.add_argument("--split-seed", type=int, default=SPLIT_SEED, help="the seed training split with")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per model after the warm-up")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.calibration_faces < 1 or args.runs < 1:
        return report_error(ValueError("--calibration-faces and --runs must be at least 1"))
    try:
        record = quantize_all(args.model, args.data, args.out or args.model, args.calibration_faces, args.seed,
                              args.runs, args.split_seed)
    except (ModelError, ValueError, FileNotFoundError) as exc:
        return report_error(exc)
    print(json.dumps(record, indent=2))
    return 0
