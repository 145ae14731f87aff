"""Draw a contact sheet of augmented training crops, to look at what the network is trained on."""
from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import cv2

import trainer.preview
from app.core.exit_codes import ExitCode
from trainer.cli import add_data_argument
from trainer.datasets.registry import open_dataset
from trainer.preview import build_sheet


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer preview",
                                     description=trainer.preview.__doc__.splitlines()[0])
    add_data_argument(parser, "a dataset to draw faces from (repeatable), e.g. 300w:../shared/data/300w/afw")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--size", type=int, default=128, help="crop side in pixels")
    parser.add_argument("--count", type=int, default=32, help="number of crops")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws and the augmentation")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.size < 16 or args.count < 1:
        parser.error("--size must be at least 16 and --count at least 1")
    try:
        datasets = [open_dataset(spec) for spec in args.data]
    except ValueError as error:
        parser.error(str(error))
    sheet = build_sheet(datasets, args.size, args.count, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise SystemExit(f"could not write {args.out}")
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")
    return ExitCode.OK
