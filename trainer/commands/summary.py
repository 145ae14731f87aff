"""Print parameter and multiply-accumulate counts of MNN and its encoder."""
from __future__ import annotations

import argparse
import json

import trainer.summary
from trainer.summary import summarise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer summary", description=trainer.summary.__doc__)
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--landmarks", type=int, default=68)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = summarise(args.input_size, args.landmarks)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>15}: {value:,}")
    return 0
