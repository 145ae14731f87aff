"""Train MNN in two phases (landmarks first, then all four losses)."""
from __future__ import annotations

import argparse
import logging
from dataclasses import asdict
from pathlib import Path

import trainer.train
from trainer.augment import AugmentConfig
from trainer.cli import add_data_argument, report_error
from trainer.fit_labels import LABELS
from trainer.losses import LossWeights
from trainer.mnn import POSE_HEADS
from trainer.train import train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer train", description=trainer.train.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser, "training data; repeat")
    parser.add_argument("--out", required=True, type=Path, help="run folder (checkpoint.pt, best.pt, log.csv, losses.png)")
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--pretrain-epochs", type=int, default=30, help="phase 1: heatmaps only")
    parser.add_argument("--epochs", type=int, default=120, help="phase 2: all four losses")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--anneal-epochs", type=int, default=0,
                        help="phase-2 epochs at the end whose rate falls along a cosine to --lr-floor "
                             "(0: plateau halving only)")
    parser.add_argument("--lr-floor", type=float, default=1e-5, help="the rate at the end of --anneal-epochs")
    parser.add_argument("--anneal-from", type=float, default=None,
                        help="the rate the cosine of --anneal-epochs starts from (default: the plateau rate)")
    parser.add_argument("--loss-weights", type=float, nargs=4, default=list(asdict(LossWeights()).values()),
                        metavar=("POSE", "POSE_PROJ", "HEATMAP", "VISIBILITY"), help="α of eq. 5")
    parser.add_argument("--synthetic", action="append", metavar="KIND:PATH",
                        help="generated faces added to training only (e.g. aflw2000:runs/profiled); repeat")
    parser.add_argument("--synthetic-ratio", type=float, default=1.0,
                        help="synthetic faces drawn per original training face each epoch")
    parser.add_argument("--synthetic-translation", type=float, default=AugmentConfig.translation,
                        help="crop translation half-range for synthetic faces, fraction of the crop side "
                             "(default: the paper's %(default)s, as for the originals)")
    parser.add_argument("--synthetic-scale", type=float, default=AugmentConfig.scale,
                        help="crop scale half-range for synthetic faces (default: the paper's %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="use only this many faces (after the seeded shuffle)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--init-from", type=Path, default=None, metavar="CKPT",
                        help="start a new run in OUT from another run's checkpoint: its weights (pose head converted "
                             "to --pose-head), mean face, input size, seed and limit (so its split), epoch count and "
                             "log; a fresh optimiser at --lr "
                             "(ignored when --resume finds OUT/checkpoint.pt)")
    parser.add_argument("--pose-labels", choices=LABELS, default=None,
                        help="300W photographs labelled by their 3D fit (Pose_Para's convention) or by PnP with the "
                             "mean face (new runs: fit; resumed: as recorded, PnP for older checkpoints)")
    parser.add_argument("--pose-head", choices=POSE_HEADS, default=None,
                        help="fc_pose as a 6D rotation with a geodesic loss, or the paper's Euler angles "
                             "(new runs: rot6d; resumed: as recorded, an Euler head is converted when rot6d is asked)")
    parser.add_argument("--encoder-only-epochs", type=int, default=None, metavar="N",
                        help="phase 2 in blocks of N epochs without the decoder, each followed by one full epoch "
                             "(new runs: 0, every epoch full; resumed: as recorded)")
    parser.add_argument("--distill-weight", type=float, default=None,
                        help="weight of fc_pose's loss against the PnP pose of the network's own landmarks "
                             "(new runs: 0; resumed: as recorded)")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even when CUDA is available")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = train(args)
    except (ValueError, FileNotFoundError) as exc:
        return report_error(exc)
    print(path)
    return 0
