"""Draw a contact sheet of dense-profiled faces at fixed poses, to look at the renders."""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

import trainer.profiling.pose_sheet
from app.core.exit_codes import ExitCode
from trainer.datasets.registry import open_dataset
from trainer.profiling.pose_sheet import SHEET_POSES, pose_sheet


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer pose-sheet",
                                     description=trainer.profiling.pose_sheet.__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, metavar="KIND:PATH", help="training faces, e.g. 300w:…/afw")
    parser.add_argument("--faces", type=int, default=3, help="faces (rows), spread over the dataset")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    dataset = open_dataset(args.data)
    picks = np.unique(np.linspace(0, len(dataset) - 1, max(args.faces, 1)).round().astype(int))
    sheet = pose_sheet([dataset[int(k)] for k in picks])
    cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out} ({len(picks)} faces × {len(SHEET_POSES)} poses)")
    return ExitCode.OK
