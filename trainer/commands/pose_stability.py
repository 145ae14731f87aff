"""Full mode's frame-to-frame yaw jumps and its gap from pose mode on videos (JSON; expressions: d6.mp4)."""
from __future__ import annotations

import argparse
from typing import Sequence

import trainer.pose_stability


def build_parser() -> argparse.ArgumentParser:
    """The verb's arguments (``trainer.pose_stability.build_parser``)."""
    return trainer.pose_stability.build_parser()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``trainer.pose_stability`` on the videos and print its JSON report."""
    return trainer.pose_stability.main(argv)
