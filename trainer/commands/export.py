"""Write ``mnn_encoder.onnx`` and ``mnn_full.onnx`` from a checkpoint (or a random network)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import trainer.export
from app.core.exit_codes import ExitCode
from trainer.checkpoint import load_model
from trainer.cli import report_error
from trainer.export import export_models, export_random_models


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer export", description=trainer.export.__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="a checkpoint written by trainer.train (best.pt or checkpoint.pt)")
    source.add_argument("--random-init", action="store_true", help="export a freshly initialised network")
    parser.add_argument("--out", type=Path, required=True, help="output folder (e.g. models/)")
    parser.add_argument("--input-size", type=int, default=64, help="with --random-init")
    parser.add_argument("--landmarks", type=int, default=68, help="with --random-init")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.random_init:
        paths = export_random_models(args.out, args.input_size, args.landmarks)
    else:
        if not args.checkpoint.is_file():
            return report_error(ValueError(f"checkpoint {args.checkpoint} does not exist"))
        model, mean_face = load_model(args.checkpoint)
        paths = export_models(model, mean_face, args.out)
    for path in paths:
        print(path)
    return ExitCode.OK
