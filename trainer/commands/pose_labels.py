"""How close PnP pose labels from landmarks come to a dataset's own pose labels."""
from __future__ import annotations

import argparse
import json

from trainer.pose_labels import label_agreement, label_errors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer pose-labels",
                                     description="How close PnP labels from landmarks come to a dataset's pose labels.")
    parser.add_argument("--data", required=True, metavar="KIND:PATH",
                        help="data with landmarks and pose, e.g. aflw2000:…")
    parser.add_argument("--agreement", action="store_true",
                        help="compare PnP, the dataset's pose and the dense 3D fit (3DDFA_V2 regressor refined to the "
                             "landmarks); training faces and data with pose only, never helen_test")
    parser.add_argument("--limit", type=int, default=None, help="--agreement over the first N faces only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(json.dumps(label_agreement(args.data, args.limit) if args.agreement else label_errors(args.data)))
    return 0
