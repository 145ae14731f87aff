"""Fit the face-quality scorer (``quality.json``: which crops are faces) on training photographs; JSON figures."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import trainer.quality_fit
from app.core import quality
from app.core.estimator import PoseEstimator
from app.core.exit_codes import ExitCode
from app.core.model_io import ModelError
from app.core.refiner import RefinerError
from trainer.cli import add_data_argument, report_error
from trainer.datasets.registry import open_dataset
from trainer.quality_fit import CropSet, collect, evaluate_faces, fit_modes, held_out_photos


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer fit-quality", description=trainer.quality_fit.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models"), help="folder with both models (and or.npz)")
    add_data_argument(parser, "training dataset; repeat (afw and helen_train, never evaluation data)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write quality.json (default MODEL/quality.json)")
    parser.add_argument("--loose", type=int, default=1, help="mis-framed copies of each face")
    parser.add_argument("--background", type=int, default=2, help="non-face boxes per photograph")
    parser.add_argument("--held-out", type=float, default=0.3, help="fraction of photographs kept out of the fit")
    parser.add_argument("--max-features", type=int, default=4, help="most features a mode's scorer combines")
    parser.add_argument("--max-face-invalid", type=float, default=0.005,
                        help="share of the fit part's faces (plain and loose) left below the threshold")
    parser.add_argument("--seed", type=int, default=0, help="seed of the boxes and the split")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N photographs of each dataset")
    parser.add_argument("--features", type=Path, default=None,
                        help="an .npz of the crops' features: read where it exists (no network run), else written")
    parser.add_argument("--test", action="append", default=[], metavar="KIND:PATH",
                        help="evaluation faces (e.g. 300w:../shared/data/300w/helen_test) run through the app with "
                             "the new quality.json: the share invalid, reported only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.loose < 0 or args.background < 1 or not 0.0 < args.held_out < 1.0 or args.max_features < 1 \
            or not 0.0 <= args.max_face_invalid < 0.5 or (args.limit is not None and args.limit < 1):
        return report_error(ValueError("--loose must be at least 0, --background, --max-features and --limit at "
                                       "least 1, --held-out in (0, 1) and --max-face-invalid in [0, 0.5)"))
    out_path = args.out if args.out is not None else args.model / quality.QUALITY_FILE
    try:
        datasets = [open_dataset(spec) for spec in args.data]
        tests = [open_dataset(spec) for spec in args.test]
        with PoseEstimator(args.model, precision="fp32") as estimator:
            if args.features is not None and args.features.is_file():
                crops = CropSet.load(args.features)
            else:
                crops = collect(estimator, datasets, args.loose, args.background, args.seed, args.limit)
                if args.features is not None:
                    crops.save(args.features)
            held_out = held_out_photos(crops.photo, args.held_out, args.seed)
            scorers, report = fit_modes(crops, held_out, args.max_features, args.max_face_invalid)
            provenance = {"data": args.data, "loose": args.loose, "background": args.background,
                          "held_out": args.held_out, "max_face_invalid": args.max_face_invalid, "seed": args.seed,
                          "limit": args.limit, "photos": int(len(set(crops.photo))),
                          "held_out_photos": int(len(set(crops.photo[held_out]))),
                          "held_out_figures": {m: r["held_out"] for m, r in report.items()}}
            quality.write(out_path, scorers, args.model, provenance)
            evaluated = {spec: evaluate_faces(estimator, dataset) for spec, dataset in zip(args.test, tests)} \
                if args.model.resolve() == out_path.parent.resolve() else {}
    except (ModelError, RefinerError, ValueError, FileNotFoundError) as exc:
        return report_error(exc)
    for mode, figures in report.items():
        held = figures["held_out"]
        print(f"{mode} mode: {', '.join(figures['scorer']['features'])}; held-out photographs: "
              f"{held['background_invalid']:.1%} of {held['background_crops']} non-face crops invalid, "
              f"{held['face_invalid']:.1%} of {held['face_crops']} faces and {held['loose_invalid']:.1%} of "
              f"{held['loose_crops']} loose faces invalid")
    print(f"wrote {out_path}")
    print(json.dumps({"out": str(out_path), "photos": provenance["photos"],
                      "held_out_photos": provenance["held_out_photos"], "modes": report, "test": evaluated}))
    return ExitCode.OK
