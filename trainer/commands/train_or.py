"""Fit the occlusion-aware regressor (``or.npz``) on the exported full model's outputs."""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

import trainer.train_or
from app.core import refiner as orr
from app.core.estimator import PoseEstimator
from app.core.exit_codes import ExitCode
from app.core.model_io import ModelError
from trainer.cli import add_data_argument, report_error
from trainer.datasets.registry import open_dataset
from trainer.or_fit import CascadeConfig, fit_cascade
from trainer.train_or import collect, list_faces, split_faces, validate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer train-or", description=trainer.train_or.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models"), help="folder with mnn_full.onnx")
    add_data_argument(parser, "training dataset; repeat (afw and helen_train, never evaluation data)")
    parser.add_argument("--out", type=Path, default=None, help="where to write or.npz (default MODEL/or.npz)")
    parser.add_argument("--copies", type=int, default=3, help="crops per face: the plain one and COPIES-1 augmented")
    parser.add_argument("--seed", type=int, default=0, help="seed of the augmentation, the split and the trees")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N faces of each dataset")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="fraction of faces held out of the fit to compare MNN and MNN+OR (0: fit on all)")
    parser.add_argument("--max-heatmap-gb", type=float, default=4.0, help="memory allowed for stored heatmaps")
    defaults = CascadeConfig()
    parser.add_argument("--stages", type=int, default=defaults.stages)
    parser.add_argument("--trees-per-landmark", type=int, default=defaults.trees_per_landmark)
    parser.add_argument("--depth", type=int, default=defaults.depth)
    parser.add_argument("--shrinkage", type=float, default=defaults.shrinkage)
    parser.add_argument("--shape-energy", type=float, default=defaults.shape_energy,
                        help="fraction of the non-rigid displacement energy the shape models keep, in (0, 1]")
    parser.add_argument("--min-shape-components", type=int, default=defaults.min_shape_components,
                        help="the fewest non-rigid shape components kept, whatever --shape-energy says")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.copies < 1 or args.stages < 1 or args.trees_per_landmark < 1 or args.depth < 1 \
            or not 0.0 <= args.val_fraction < 1.0 or (args.limit is not None and args.limit < 1) \
            or not 0.0 < args.shape_energy <= 1.0 or args.min_shape_components < 0:
        return report_error(ValueError("--copies, --stages, --trees-per-landmark, --depth and --limit must be at "
                                       "least 1, --val-fraction in [0, 1), --shape-energy in (0, 1] and "
                                       "--min-shape-components at least 0"))
    out_path = args.out if args.out is not None else args.model / orr.OR_FILE
    config = CascadeConfig(stages=args.stages, trees_per_landmark=args.trees_per_landmark, depth=args.depth,
                           shrinkage=args.shrinkage, shape_energy=args.shape_energy,
                           min_shape_components=args.min_shape_components)
    try:
        datasets = [open_dataset(spec) for spec in args.data]
        with PoseEstimator(args.model, precision="fp32") as estimator:
            info = estimator.info("full")
            fit_faces, held_out = split_faces(list_faces(datasets, args.limit), args.val_fraction, args.seed)
            data = collect(estimator, datasets, fit_faces, args.copies, args.seed, args.max_heatmap_gb * 2**30)
            provenance = {"model": str(info.path), "data": args.data, "copies": args.copies, "limit": args.limit,
                          "fit_faces": len(fit_faces), "held_out_faces": len(held_out)}
            regressor = fit_cascade(data, info.mean_face, config, args.seed, provenance)
            del data
            validation = validate(estimator, regressor, datasets, held_out)
    except (ModelError, ValueError, FileNotFoundError) as exc:
        return report_error(exc)
    arrays = regressor.arrays
    arrays["provenance"] = np.str_(json.dumps({**regressor.provenance, "validation": validation}))
    orr.OcclusionAwareRegressor(arrays).save(out_path)
    print(f"wrote {out_path}: {config.stages} stages x {regressor.trees} trees of depth {config.depth}, "
          f"{len(regressor.shape_model.basis)} shape components")
    if validation is not None:
        print(f"held-out training faces ({validation['faces']}): NME inter-ocular MNN {validation['nme_mnn']:.2f}%, "
              f"MNN+OR {validation['nme_mnn_or']:.2f}%")
    print(json.dumps({"out": str(out_path), "config": asdict(config), "validation": validation}))
    return ExitCode.OK
