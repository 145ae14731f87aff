"""Full mode's pose on videos: how much it jumps from frame to frame, and how far it sits from pose mode's.

Both modes of the app's ``FacePipeline`` run on every frame of each video (fp32, as ``trainer.evaluate``),
one face per frame (the largest detector box). Per video: the mean absolute difference per angle between
pose mode and full mode on the frames where both found a face; the 99th percentile of full mode's (and pose
mode's) frame-to-frame |Δyaw| over consecutive frames; the share of frames whose full-mode yaw is more than
10° from pose mode's. There is no ground truth: on ``d6.mp4`` (strong expressions, a head that stays nearly
frontal) jumps and disagreement measure how much expressions move the pose.

It imports only numpy and ``app.core``, so that it can run another checkout's app for before/after figures:
``cd OTHER && PYTHONPATH=OTHER python /path/to/this/trainer/pose_stability.py ARGS``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

SHARED_VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"
EXPRESSION_VIDEO = "d6.mp4"
YAW_GAP_DEG = 10.0
ANGLES = ("yaw", "pitch", "roll")


def build_parser(prog: str = "python -m trainer pose-stability") -> argparse.ArgumentParser:
    """The command line: models, videos, frame limit."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=None, help="folder with the exported ONNX models (default: the app's)")
    parser.add_argument("--videos", type=Path, nargs="+", default=None, metavar="VIDEO",
                        help=f"videos to run (default: every .mp4 in {SHARED_VIDEOS})")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop each video before frame index N")
    return parser


def largest_face_angles(faces: Sequence[Any]) -> tuple[float, float, float] | None:
    """(yaw, pitch, roll) of the face with the largest detector box, or None for no face."""
    if not faces:
        return None
    face = max(faces, key=lambda f: float((f.box[2] - f.box[0]) * (f.box[3] - f.box[1])))
    return float(face.yaw), float(face.pitch), float(face.roll)


def track_video(video: Path, models: Path | None, max_frames: int | None) -> dict[str, dict[int, tuple[float, float, float]]]:
    """Per mode, the frame index → (yaw, pitch, roll) of the largest face, on every frame of ``video`` that has one."""
    from app.core import FacePipeline, VideoSource

    kwargs = {} if models is None else {"models_dir": models}
    tracks: dict[str, dict[int, tuple[float, float, float]]] = {"pose": {}, "full": {}}
    with FacePipeline(mode="full", precision="fp32", **kwargs) as full, \
            FacePipeline(mode="pose", precision="fp32", **kwargs) as pose, VideoSource(video) as source:
        for index, time_s, frame in source:
            if max_frames is not None and index >= max_frames:
                break
            for mode, pipeline in (("full", full), ("pose", pose)):
                angles = largest_face_angles(pipeline.process(frame, index, time_s).faces)
                if angles is not None:
                    tracks[mode][index] = angles
    return tracks


def jump_p99(track: dict[int, tuple[float, float, float]]) -> float | None:
    """99th percentile of |Δyaw| (degrees) between consecutive frames that both have a face; None without any."""
    from app.core.pose import wrap_degrees

    steps = [abs(float(wrap_degrees(track[i + 1][0] - track[i][0]))) for i in sorted(track) if i + 1 in track]
    return float(np.percentile(steps, 99)) if steps else None


def stability(tracks: dict[str, dict[int, tuple[float, float, float]]]) -> dict[str, Any]:
    """The figures of one video from its two tracks (module docstring)."""
    from app.core.pose import wrap_degrees

    shared = sorted(set(tracks["full"]) & set(tracks["pose"]))
    result: dict[str, Any] = {"frames_full": len(tracks["full"]), "frames_pose": len(tracks["pose"]), "frames_both": len(shared),
                              "full_dyaw_p99": jump_p99(tracks["full"]), "pose_dyaw_p99": jump_p99(tracks["pose"])}
    if shared:
        gap = np.abs(wrap_degrees(np.array([tracks["full"][i] for i in shared]) - np.array([tracks["pose"][i] for i in shared])))
        result["mode_mad"] = dict(zip(ANGLES, gap.mean(0).round(3).tolist()))
        result["mode_mean_signed_full_minus_pose"] = dict(zip(ANGLES, wrap_degrees(
            np.array([tracks["full"][i] for i in shared]) - np.array([tracks["pose"][i] for i in shared])).mean(0).round(3).tolist()))
        result["share_yaw_gap_over_10"] = round(float((gap[:, 0] > YAW_GAP_DEG).mean()), 4)
    return result


def measure(videos: Sequence[Path], models: Path | None, max_frames: int | None) -> dict[str, Any]:
    """The JSON report: which app ran, each video's figures, the mean per angle over videos and the expression video."""
    import app.core

    per_video = {Path(v).name: stability(track_video(Path(v), models, max_frames)) for v in videos}
    mads = [r["mode_mad"] for r in per_video.values() if "mode_mad" in r]
    report: dict[str, Any] = {"app": str(Path(app.core.__file__).resolve().parents[2]), "models": str(models or "default"),
                              "max_frames": max_frames, "videos": per_video,
                              "mode_mad_mean_over_videos": {a: round(float(np.mean([m[a] for m in mads])), 3) for a in ANGLES}
                              if mads else None}
    if EXPRESSION_VIDEO in per_video:
        d6 = per_video[EXPRESSION_VIDEO]
        report["expressions"] = {"video": EXPRESSION_VIDEO, "full_dyaw_p99": d6["full_dyaw_p99"],
                                 "share_yaw_gap_over_10": d6.get("share_yaw_gap_over_10")}
    return report


def main(argv: Sequence[str] | None = None, prog: str = "python -m trainer pose-stability") -> int:
    """Print the JSON report; exit 2 (usage) for a missing video, 3 for one that cannot be read, 4 for a bad model."""
    from app.core.exit_codes import ExitCode
    from app.core.model_io import ModelError
    from app.core.video import VideoError

    args = build_parser(prog).parse_args(argv)
    videos = args.videos or sorted(SHARED_VIDEOS.glob("*.mp4"))
    missing = [str(v) for v in videos if not Path(v).is_file()]
    if not videos or missing:
        print(f"error: no such video: {', '.join(missing) or SHARED_VIDEOS}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        report = measure(videos, args.models, args.max_frames)
    except ModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.MODEL
    except VideoError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.INPUT
    print(json.dumps(report, indent=2))
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main(prog="python trainer/pose_stability.py"))
