"""Compare our per-frame head pose on a video with 3DDFA_V2's angles for it, as a plot."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

import trainer.video_agreement
from app.core.exit_codes import ExitCode, UsageError
from app.core.model_io import MODES, ModelError, PRECISIONS
from app.core.process import Interrupted
from app.core.video import VideoError
from trainer.cli import report_error
from trainer.video_agreement import _title, agreement, plot_agreement, read_3ddfa_csv, read_process_csv, run_pipeline


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer video-agreement",
                                     description=trainer.video_agreement.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models"), help="folder with the exported ONNX models")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", type=Path, help="video to run our pipeline on")
    source.add_argument("--from-csv", type=Path, metavar="CSV",
                        help="read our angles from an earlier per-frame CSV (process / --csv) instead")
    parser.add_argument("--reference", type=Path, required=True, help="3DDFA_V2 per-frame CSV for the video")
    parser.add_argument("--plot", type=Path, required=True, help="PNG to write")
    parser.add_argument("--csv", type=Path, default=None, help="keep our per-frame CSV here")
    parser.add_argument("--mode", choices=sorted(MODES), default="pose", help="pose (encoder) or full model")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop before frame index N")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32 (as trainer.evaluate), int8 or auto (what the app runs on the CPU)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.max_frames is not None and args.max_frames < 1:
            raise ValueError("--max-frames must be at least 1")
        reference = read_3ddfa_csv(args.reference)
        if args.from_csv is not None:
            ours, ran, name = read_process_csv(args.from_csv), {}, args.from_csv.name
        else:
            if not args.video.is_file():
                raise ValueError(f"{args.video}: no such file")
            ours, ran = run_pipeline(args.video, args.model, args.mode, args.max_frames, args.csv,
                                     precision=args.precision)
            name = args.video.name
        try:
            result = agreement(ours, reference)
        except ValueError as exc:
            raise ValueError(f"{args.reference}: {exc}") from None
        plot_agreement(ours, reference, result, args.plot, _title(ran, args.mode, name, result))
    except (ModelError, ValueError, VideoError, UsageError, OSError) as exc:
        return report_error(exc)
    except (Interrupted, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    kept = args.from_csv or args.csv
    output = {"model": None if args.from_csv else str(args.model), "mode": None if args.from_csv else args.mode,
              **ran, "video": None if args.video is None else str(args.video),
              "ours_csv": None if kept is None else str(kept), "reference": str(args.reference),
              "plot": str(args.plot), **result}
    print(json.dumps(output, indent=2))
    return ExitCode.OK
