"""Time a training step (forward, losses, backward, Adam) per phase."""
from __future__ import annotations

import argparse
import json

import torch

import trainer.step_time
from trainer.mnn import POSE_HEADS
from trainer.step_time import time_steps


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer step-time", description=trainer.step_time.__doc__)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--encoder-only", action="store_true", help="a step of an encoder-only epoch (no decoder)")
    parser.add_argument("--pose-head", choices=POSE_HEADS, default="rot6d")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    print(json.dumps(time_steps(args.input_size, args.batch_size, args.steps, device, args.encoder_only, args.pose_head)))
    return 0
