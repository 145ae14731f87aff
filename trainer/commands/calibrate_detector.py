"""Measure where the face detector's boxes sit relative to landmark boxes, for the app's crops."""
from __future__ import annotations

import argparse
import json

import numpy as np

import trainer.calibrate_detector
from app.core.exit_codes import ExitCode
from trainer.calibrate_detector import box_relations
from trainer.cli import add_data_argument, report_error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer calibrate-detector",
                                     description=trainer.calibrate_detector.__doc__)
    add_data_argument(parser, "training data; repeat")
    parser.add_argument("--detector", default="blazeface")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rows = box_relations(args.data, args.detector)
    if len(rows) == 0:
        return report_error(ValueError("the detector found none of the faces"))
    median, spread = np.median(rows, 0), rows.std(0)
    print(json.dumps({"faces": len(rows), "dx": round(float(median[0]), 4), "dy": round(float(median[1]), 4),
                      "scale": round(float(median[2]), 4), "std": [round(float(v), 4) for v in spread]}))
    return ExitCode.OK
