"""Synthesise turned heads from 300W-style faces (face profiling) as an aflw2000-kind dataset."""
from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

import trainer.profile
from app.core.exit_codes import ExitCode
from trainer.cli import add_data_argument
from trainer.datasets.registry import parse_spec
from trainer.profile import MESHES, ProfileSettings, build_contact_sheet, profile_datasets


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer profile",
                                     description=trainer.profile.__doc__.splitlines()[0])
    add_data_argument(parser, "a dataset of 68-landmark faces to turn (repeatable), e.g. 300w:../shared/data/300w/afw")
    parser.add_argument("--out", type=Path, required=True, help="output folder (an aflw2000-kind dataset)")
    parser.add_argument("--mesh", choices=MESHES, default="dense",
                        help="dense: the BFM dense face fitted by 3DDFA_V2, z-buffered (training faces only); "
                             "bfm68: the 68-point mean face with a lofted head")
    parser.add_argument("--per-face", type=int, default=8, help="turned renderings per face")
    parser.add_argument("--yaw-max", type=float, default=90.0, help="target yaw range ±degrees")
    parser.add_argument("--yaw-min", type=float, default=0.0,
                        help="smallest target |yaw| in degrees (e.g. 45: large poses only)")
    parser.add_argument("--pitch-max", type=float, default=15.0, help="pitch offset range ±degrees")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pose draws")
    parser.add_argument("--limit", type=int, default=None, help="turn only the first N faces (quick runs)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    bad_limit = args.limit is not None and args.limit < 1
    if args.per_face < 1 or not 0 < args.yaw_max <= 90 or args.pitch_max < 0 or bad_limit:
        parser.error("--per-face and --limit must be at least 1, --yaw-max in (0, 90], --pitch-max at least 0")
    if not 0 <= args.yaw_min < args.yaw_max:
        parser.error("--yaw-min must be at least 0 and below --yaw-max")
    try:
        for spec in args.data:
            parse_spec(spec)
    except ValueError as error:
        parser.error(str(error))
    settings = ProfileSettings(args.per_face, args.yaw_max, args.pitch_max, args.seed, args.yaw_min, args.mesh)
    start = time.perf_counter()
    try:
        run = profile_datasets(args.data, args.out, settings, args.limit)
    except ValueError as error:
        parser.error(str(error))
    wall = time.perf_counter() - start
    if not run.written:
        raise SystemExit("no face could be profiled")
    sheet = build_contact_sheet(args.data, args.out, run)
    sheet_path = args.out / "contact_sheet.png"
    cv2.imwrite(str(sheet_path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    counts, edges = np.histogram(run.yaws_deg, bins=np.arange(-90, 91, 10))
    summary = {
        "images": len(run.written),
        "faces": len({source for _, source in run.written}),
        "skipped": run.skipped,
        "ms_per_image": round(run.ms_per_image, 1),
        "wall_s": round(wall, 1),
        "settings": asdict(settings),
        "yaw_histogram": {"edges_deg": edges.tolist(), "counts": counts.tolist()},
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {len(run.written)} images of {summary['faces']} faces to {args.out} "
          f"({run.ms_per_image:.0f} ms/image, {wall:.0f} s); contact sheet {sheet_path}")
    return ExitCode.OK
