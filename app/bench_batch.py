"""``python -m app.bench_batch``: videos per hour and frames per second of ``run_app.py process`` on a batch, as JSON.

Each configuration (``--configs 1x2,2x1``: workers x threads per worker) runs the whole command, in a
subprocess as a user runs it, on the same inputs (default: the shared videos, ``SHARED_VIDEOS``), one after
the other in this one run so that their figures compare (``--repeat N`` interleaves N rounds and reports each
configuration's median round, with every round's seconds); the wall time includes start-up (processes,
models), which a user waits for too. ``--ray ADDRESS`` adds a run on that Ray cluster (``local`` starts a
head on 127.0.0.1 for the run) beside the local ones: its CSVs are compared with the first local
configuration's, and its overhead per video is its wall time less the fastest local run's, over the videos.
Frames per second counts the frames processed (the summaries' ``processed``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ROOT.parent / "shared" / "data" / "videos"
SHARED_VIDEOS = ("d3.mp4", "d6.mp4", "d9.mp4", "d12.mp4", "d18.mp4", "d19.mp4", "s18.mp4", "s20.mp4")
"""The shared videos less ``side_large_pose.mp4`` (3456x2234) and ``obama_truncated.mp4`` (damaged)."""


def _digest(out: Path) -> dict[str, str]:
    """SHA-256 of each CSV a run wrote (not the batch index)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.glob("*.csv")) if not p.name.startswith("process_batch")}


def run_config(inputs: list[Path], out: Path, extra: list[str]) -> dict:
    """One run of the command; its wall time, exit code, frames and the digests of its CSVs."""
    command = [sys.executable, str(ROOT / "run_app.py"), "process", *map(str, inputs), "--out", str(out), *extra]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    index = json.loads((out / "process_batch.json").read_text()) if (out / "process_batch.json").is_file() else {}
    frames = int(index.get("frames", 0))
    return {"exit_code": done.returncode, "seconds": round(seconds, 2), "videos": len(inputs), "frames": frames,
            "videos_per_hour": round(len(inputs) * 3600 / seconds, 1), "frames_per_second": round(frames / seconds, 2),
            "csv_sha256": _digest(out), "stderr_tail": done.stderr.strip().splitlines()[-3:] if done.returncode else []}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.bench_batch", description=__doc__.splitlines()[0])
    parser.add_argument("--videos", nargs="*", type=Path, default=[VIDEOS / name for name in SHARED_VIDEOS])
    parser.add_argument("--configs", default="1x2,2x1", help="workers x threads, comma-separated (default: %(default)s)")
    parser.add_argument("--mode", default="pose")
    parser.add_argument("--no-video", action="store_true", help="write no annotated videos")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--ray", default=None, metavar="ADDRESS",
                        help="also run on this Ray cluster (local: start a head on 127.0.0.1 for the run)")
    parser.add_argument("--split-frames", type=int, default=0, help="the Ray run's --split-frames (default: its own)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the configurations this many times, interleaved (A B A B ...); each figure is the "
                             "median run's (default: %(default)s)")
    args = parser.parse_args(argv)
    missing = [str(v) for v in args.videos if not v.is_file()]
    if missing:
        print(f"error: {', '.join(missing)}: no such file", file=sys.stderr)
        return 2
    common = ["--mode", args.mode, "--overwrite"] + (["--no-video"] if args.no_video else [])
    common += ["--max-frames", str(args.max_frames)] if args.max_frames else []
    report: dict = {"videos": [v.name for v in args.videos], "mode": args.mode, "no_video": args.no_video,
                    "max_frames": args.max_frames, "cores": len(os.sched_getaffinity(0)), "runs": {}}
    every: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(args.repeat):
            for config in args.configs.split(","):
                workers, threads = config.split("x")
                every.setdefault(config, []).append(run_config(
                    args.videos, Path(tmp) / f"{config}-{attempt}", common + ["--workers", workers, "--threads", threads]))
            if args.ray:
                every.setdefault("ray", []).append(_ray_run(args, Path(tmp) / f"ray-{attempt}", common))
    for config, runs in every.items():
        median = sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]
        report["runs"][config] = {**median, "seconds_each": [r["seconds"] for r in runs]}
    local = {k: v for k, v in report["runs"].items() if k != "ray"}
    best = max(local, key=lambda k: local[k]["frames_per_second"])
    report["best"] = best
    first = every[args.configs.split(",")[0]][0]
    rounds = range(args.repeat)
    report["same_csvs_within_each_round"] = all(
        runs[i]["csv_sha256"] == every[args.configs.split(",")[0]][i]["csv_sha256"] for i in rounds
        for runs in every.values())
    report["same_csvs_across_rounds"] = all(r["csv_sha256"] == first["csv_sha256"] for runs in every.values()
                                            for r in runs)
    if "ray" in report["runs"]:
        ray_run, fastest = report["runs"]["ray"], local[best]
        report["ray_overhead_s_per_video"] = round((ray_run["seconds"] - fastest["seconds"]) / len(args.videos), 2)
    for run in report["runs"].values():
        run["csv_sha256"] = {k: v[:12] for k, v in run["csv_sha256"].items()}
    print(json.dumps(report, indent=2))
    return 0


def _ray_run(args: argparse.Namespace, out: Path, common: list[str]) -> dict:
    """The same inputs through ``--ray``; ``local`` starts (and stops) a head on 127.0.0.1 around it."""
    extra = common + (["--split-frames", str(args.split_frames)] if args.split_frames else [])
    if args.ray != "local":
        return run_config(args.videos, out, extra + ["--ray", args.ray])
    from app.core.cluster import local_head

    with local_head(num_cpus=len(os.sched_getaffinity(0))) as address:
        return run_config(args.videos, out, extra + ["--ray", address])


if __name__ == "__main__":
    sys.exit(main())
