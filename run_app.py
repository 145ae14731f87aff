#!/usr/bin/env python
"""Entry point of the head-pose app.

``python run_app.py [--source 0|PATH] [--mode pose|full] [--models DIR] [--smooth]`` opens the viewer;
``python run_app.py process INPUT [INPUT …] --out DIR …`` processes videos, images and folders of them
without a window
(``app/core/process.py``; ``python run_app.py process --help`` lists its options).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from app.native_logs import quiet_native_logs


def viewer_parser() -> argparse.ArgumentParser:
    """The viewer's arguments."""
    from app.core.estimator import DEFAULT_MODELS_DIR
    from app.core.model_io import MODES
    from app.core.providers import CHOICES

    parser = argparse.ArgumentParser(
        prog="run_app.py", description="Real-time head pose viewer. Use 'run_app.py process --help' for headless runs.")
    parser.add_argument("--source", default=None, metavar="0|PATH",
                        help="camera index or video file to open at start (default: none, the window opens empty)")
    parser.add_argument("--mode", choices=list(MODES), default="pose",
                        help="pose: encoder only (fast); full: also landmarks and visibility (default: %(default)s)")
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS_DIR, metavar="DIR",
                        help="folder with mnn_encoder.onnx / mnn_full.onnx (default: %(default)s)")
    parser.add_argument("--smooth", action="store_true",
                        help="One Euro smoothing of each face over time (default: off)")
    parser.add_argument("--provider", choices=list(CHOICES), default="auto",
                        help="ONNX Runtime execution provider: auto (TensorRT, then CUDA, then the CPU, the first "
                             "that runs here), cpu, cuda or tensorrt (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the headless command or the viewer; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    quiet_native_logs()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if argv and argv[0] == "process":
        from app.core.process import main as process_main

        return process_main(argv[1:])
    args = viewer_parser().parse_args(argv)
    from app.ui.main_window import run_viewer

    return run_viewer(args)


if __name__ == "__main__":
    sys.exit(main())
