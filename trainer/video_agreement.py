"""``python -m trainer video-agreement``: our per-frame head pose on a video beside 3DDFA_V2's angles for it.

    python -m trainer video-agreement --model models/ --video ../shared/data/videos/side_large_pose.mp4 \\
        --reference ../shared/data/videos/side_large_pose.3ddfa_v2.csv --plot models/side_large_pose.png \\
        [--csv runs/side/ours.csv] [--mode pose] [--max-frames N] [--from-csv OURS.csv]

Our angles come from the app's own headless processing (``app.core.process.process_video`` with no
video output: detector, tracker, crop, ONNX Runtime), read back from its per-frame CSV; ``--csv``
keeps that CSV, ``--from-csv`` reads one instead of running the network again. With several faces in
a frame, the one with the largest detector box is taken. Frames are paired with the reference by
frame index, after checking that the two timestamps of each pair agree within half a frame (3DDFA_V2's
``imageio`` reader can yield a frame or two more at the end than OpenCV decodes). Frames without a
face on our side, or present on one side only, are left out and counted. Prints one JSON object
(``agreement``'s figures plus what was run) and writes a plot: yaw, pitch and roll against time, ours
beside 3DDFA_V2's converted to our convention.

Conventions. 3DDFA_V2 (cleardusk/3DDFA_V2 ``utils/pose.py``; the fork pavankumarny/3DDFA_V2_Pavan that
wrote the CSV calls the same ``calc_pose``) takes the rotation ``R`` from the rows of its affine camera
(``P2sRt``: r1, r2 normalised, r3 = r1 × r2). ``R`` poses the BFM mean face in a right-handed y-up
frame (``similar_transform`` flips y only after ``R``), which is our ``R_up`` of ``app/core/pose.py``.
``matrix2angle(R)`` returns ``yaw = asin(R20)``, ``pitch = atan2(R21, R22)``, ``roll = atan2(R10, R00)``,
i.e. it reads ``R = Rz(roll) Ry(-yaw) Rx(pitch)``, whereas ours reads ``R_up.T = Rz(roll) Ry(yaw)
Rx(pitch)`` (the Pose_Para order, ``../shared/CONVENTIONS.md``). The orders differ, so no per-angle
sign flip is exact: ``tddfa_to_ours`` rebuilds ``R = Rz(roll) Ry(-yaw) Rx(pitch)`` from 3DDFA_V2's
three angles (the rotation that ``matrix2angle`` reads back as those angles, its ±90° branches
included) and reads it with ``pose.matrix_to_angles``: a fixed conversion, nothing fitted. To first
order it keeps yaw and negates pitch and roll; from about 45° of yaw on, the two differ by ten degrees
or more (a profile with our pitch 10°, roll 0° reads in 3DDFA_V2 as yaw 80°, pitch −79°, roll 79°).
Checked on the data: 3DDFA_V2's yaw is +23° on frame 0, where the face is turned towards the image left
(our positive yaw); the head axes that ``pose.axes_endpoints`` draws from the converted angles lie on
the face in every frame looked at (0, 20, 150, 400, 700, 1000), e.g. facing up and left on frame 400,
where the person looks up (our pitch +93° there), whereas the raw angles, or yaw with pitch and roll
merely negated, draw the head upside down on the profile frames.

Near profile (|yaw| → 90°) every yaw-pitch-roll order with yaw in the middle, ours and 3DDFA_V2's
alike, is near gimbal lock: only pitch ∓ roll is well defined, and two rotations a few degrees apart
can differ by 90° in pitch and roll (3DDFA_V2's own ``matrix2angle`` also snaps to exact lock when
``|R20| > 0.998``, up to 3.6° off). So ``agreement`` also reports the geodesic angle between the two
rotations (``rotation_diff_deg``, convention-free), and the per-angle figures on the frames where the
reference's |yaw| is below ``NEAR_PROFILE_DEG``; the plot shades the frames above it.

Exit codes (``app.core.exit_codes``, through ``trainer.cli``): 0 done, 2 bad input (missing video,
malformed or incomplete CSV, timestamps that disagree), 4 model missing or invalid, 130 interrupted;
each error is one line naming the file.
"""
from __future__ import annotations

import logging
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from app.core import pose
from app.core.pipeline import FacePipeline
from app.core.process import Options, process_video
from app.core.results_csv import read_results, read_rows

log = logging.getLogger(__name__)

REFERENCE_COLUMNS = ("frame", "timestamp", "pitch", "yaw", "roll")
"""Columns of a 3DDFA_V2 per-frame CSV (degrees, 3DDFA_V2's own convention)."""

ANGLES = ("yaw", "pitch", "roll")
NEAR_PROFILE_DEG = 70.0
"""Reference |yaw| from which pitch and roll are too close to gimbal lock to compare one by one."""
TURN_BANDS = (0.0, 30.0, 60.0, 75.0, 85.0, 95.0, 180.0)
"""Edges of the bands ``agreement`` breaks its figures into: degrees between where the reference's face
looks and the camera (85–95° is a full profile; past 90° the face looks away); the last band is closed."""


@dataclass(frozen=True)
class AngleTrack:
    """Per-frame head pose in our convention: frame indices, times, and (yaw, pitch, roll) in degrees.

    Frames without a face have NaN angles; ``frames`` is strictly increasing.
    """

    frames: np.ndarray
    """``(N,)`` int frame indices."""
    times: np.ndarray
    """``(N,)`` seconds from the start of the video."""
    angles: np.ndarray
    """``(N, 3)`` yaw, pitch, roll in degrees (``app/core/pose.py``), NaN where there is no face."""


def tddfa_rotation(pitch_yaw_roll_deg: np.ndarray) -> np.ndarray:
    """``(..., 3, 3)`` rotations (y-up frame) whose 3DDFA_V2 ``matrix2angle`` gives these (pitch, yaw, roll)."""
    a = np.radians(np.asarray(pitch_yaw_roll_deg, dtype=np.float64))
    x, y, z = a[..., 1], a[..., 0], a[..., 2]  # matrix2angle's x (yaw), y (pitch), z (roll)
    zero, one = np.zeros_like(x), np.ones_like(x)

    def stack(rows: list[list[np.ndarray]]) -> np.ndarray:
        return np.stack([np.stack(r, -1) for r in rows], -2)

    rz = stack([[np.cos(z), -np.sin(z), zero], [np.sin(z), np.cos(z), zero], [zero, zero, one]])
    ry = stack([[np.cos(-x), zero, np.sin(-x)], [zero, one, zero], [-np.sin(-x), zero, np.cos(-x)]])
    rx = stack([[one, zero, zero], [zero, np.cos(y), -np.sin(y)], [zero, np.sin(y), np.cos(y)]])
    return rz @ ry @ rx


def tddfa_to_ours(pitch_yaw_roll_deg: np.ndarray) -> np.ndarray:
    """3DDFA_V2 angles in its CSV order (pitch, yaw, roll), degrees → our (yaw, pitch, roll), degrees.

    Exact for every rotation (see the module docstring); about ``(yaw, -pitch, -roll)`` for small angles.
    """
    flip = np.diag([1.0, -1.0, 1.0])  # y-up frame → the image-like frame of pose.py
    return np.degrees(pose.matrix_to_angles(flip @ tddfa_rotation(pitch_yaw_roll_deg) @ flip))


def _read_rows(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """The rows of a CSV with at least the ``required`` columns (``results_csv.read_rows``), and at least one."""
    rows = read_rows(path, required)[1]
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def _number(path: Path, line: int, row: dict[str, str], column: str) -> float:
    try:
        value = float(row[column])
    except (TypeError, ValueError):
        raise ValueError(f"{path}: line {line}: {column} is {row[column]!r}, not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{path}: line {line}: {column} is {row[column]!r}, not a finite number")
    return value


def _frame(path: Path, line: int, row: dict[str, str]) -> int:
    value = _number(path, line, row, "frame")
    if value != int(value) or value < 0:
        raise ValueError(f"{path}: line {line}: frame is {row['frame']!r}, not a frame index")
    return int(value)


def _check_increasing(path: Path, frames: np.ndarray) -> None:
    if np.any(np.diff(frames) <= 0):
        bad = int(np.argmax(np.diff(frames) <= 0)) + 1
        raise ValueError(f"{path}: frame {frames[bad]} is repeated or out of order")


def read_3ddfa_csv(path: Path) -> AngleTrack:
    """A 3DDFA_V2 per-frame CSV (``REFERENCE_COLUMNS``), converted to our convention by ``tddfa_to_ours``."""
    path = Path(path)
    rows = _read_rows(path, REFERENCE_COLUMNS)
    frames, times, raw = [], [], []
    for line, row in enumerate(rows, start=2):
        frames.append(_frame(path, line, row))
        times.append(_number(path, line, row, "timestamp"))
        raw.append([_number(path, line, row, c) for c in ("pitch", "yaw", "roll")])
    track = AngleTrack(np.array(frames), np.array(times), tddfa_to_ours(np.array(raw)))
    _check_increasing(path, track.frames)
    return track


def read_process_csv(path: Path) -> AngleTrack:
    """Our per-frame CSV as ``run_app.py process`` writes it, read by ``results_csv.read_results``; one face
    per frame, the largest box, NaN angles where there is none."""
    frames = sorted(read_results(Path(path)), key=lambda f: f.index)
    if not frames:
        raise ValueError(f"{path}: no rows")
    angles = []
    for frame in frames:
        largest = max(frame.faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), default=None)
        angles.append([math.nan] * 3 if largest is None else [largest.yaw, largest.pitch, largest.roll])
    return AngleTrack(np.array([f.index for f in frames]), np.array([f.time_s for f in frames]),
                      np.array(angles, dtype=np.float64).reshape(-1, 3))


def rotation_difference(ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Geodesic angle in degrees between the rotations of two ``(N, 3)`` (yaw, pitch, roll) arrays."""
    a = pose.rotation_matrix(np.radians(ours))
    b = pose.rotation_matrix(np.radians(reference))
    cos = (np.trace(a.swapaxes(-1, -2) @ b, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _per_angle(values: np.ndarray, reduce: Any) -> dict[str, float | None]:
    if not len(values):
        return {name: None for name in (*ANGLES, "mean")}
    per = [float(reduce(values[:, k])) for k in range(3)]
    return {**{n: round(v, 3) for n, v in zip(ANGLES, per)}, "mean": round(float(np.mean(per)), 3)}


def agreement(ours: AngleTrack, reference: AngleTrack) -> dict[str, Any]:
    """Our angles against the reference's, both in our convention, paired by frame index.

    ``ValueError`` when a pair's timestamps differ by more than half a frame (the tracks would not be of
    the same frames). Returns the per-angle mean and median absolute difference (degrees, wrapped to
    ±180), the Pearson correlation of each angle (a sign check), the geodesic rotation difference, the
    per-angle mean on the frames below ``NEAR_PROFILE_DEG`` of reference yaw, the figures by how far the
    reference's face is turned from the camera (``by_reference_turn``, from ``by_turn_band``), and the frames
    compared and left out: ``no_face`` (ours found none), ``not_in_reference``, ``not_in_video``.
    """
    ref_at = {int(f): i for i, f in enumerate(reference.frames)}
    our_at = {int(f): i for i, f in enumerate(ours.frames)}
    common = [f for f in ours.frames.tolist() if f in ref_at]
    oi = np.array([our_at[f] for f in common], dtype=int)
    ri = np.array([ref_at[f] for f in common], dtype=int)
    offsets = np.abs(ours.times[oi] - reference.times[ri])
    step = _frame_period(reference)
    if len(offsets) and step is not None and offsets.max() > step / 2:
        worst = int(np.argmax(offsets))
        raise ValueError(f"timestamps disagree by {offsets[worst]:.4f} s at frame {common[worst]} "
                         f"(more than half a frame, {step / 2:.4f} s): not the same frames")
    has_face = ~np.isnan(ours.angles[oi]).any(axis=1) if len(oi) else np.zeros(0, bool)
    o, r = ours.angles[oi[has_face]], reference.angles[ri[has_face]]
    diff = np.abs(pose.wrap_degrees(o - r))
    rotation = rotation_difference(o, r)
    below = np.abs(r[:, 0]) < NEAR_PROFILE_DEG
    return {
        "frames_compared": int(has_face.sum()),
        "left_out": {"no_face": int((~has_face).sum()), "not_in_reference": len(ours.frames) - len(common),
                     "not_in_video": len(reference.frames) - len(common)},
        "max_time_offset_s": round(float(offsets.max()), 6) if len(offsets) else None,
        "mean_abs_diff_deg": _per_angle(diff, np.mean),
        "median_abs_diff_deg": _per_angle(diff, np.median),
        "correlation": {n: _correlation(o[:, k], r[:, k]) for k, n in enumerate(ANGLES)},
        "rotation_diff_deg": {"mean": round(float(rotation.mean()), 3) if len(rotation) else None,
                              "median": round(float(np.median(rotation)), 3) if len(rotation) else None},
        "below_profile": {"reference_abs_yaw_below_deg": NEAR_PROFILE_DEG, "frames": int(below.sum()),
                          "mean_abs_diff_deg": _per_angle(diff[below], np.mean)},
        "by_reference_turn": by_turn_band(o, r, rotation),
    }


def _turn_and_side(angles_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Degrees from the camera and side (+1 towards the image left, -1 right) of each face's facing
    direction, from one ``pose.facing_direction``."""
    looks = pose.facing_direction(np.radians(angles_deg))
    return np.degrees(np.arccos(np.clip(looks[..., 2], -1.0, 1.0))), np.where(looks[..., 0] <= 0, 1.0, -1.0)


def turned_from_camera(angles_deg: np.ndarray) -> np.ndarray:
    """Degrees between where each face looks and the camera: convention-free, unlike Euler yaw, which a
    profile that looks up splits between yaw, pitch and roll."""
    return _turn_and_side(angles_deg)[0]


def signed_turn(angles_deg: np.ndarray) -> np.ndarray:
    """``turned_from_camera`` with the sign of the side the face looks to: positive towards the image left,
    as positive yaw. Equals yaw for a face that only turns; stays near ±90° on a profile that looks up."""
    turn, side = _turn_and_side(angles_deg)
    return side * turn


def by_turn_band(ours: np.ndarray, reference: np.ndarray, rotation: np.ndarray) -> list[dict[str, Any]]:
    """Per band of the reference's turn from the camera (``TURN_BANDS``): frames, mean rotation
    difference, the share of frames where our face looks to the same side of the image (left or right)
    as the reference's, and the mean turn of ours and the reference's. Shows where along the turn a
    model stops reading it."""
    turn, reference_side = _turn_and_side(reference)
    our_turn, our_side = _turn_and_side(ours)
    same_side = (our_side == reference_side).astype(float)
    last = len(TURN_BANDS) - 2
    bands = []
    for k, (lo, hi) in enumerate(zip(TURN_BANDS[:-1], TURN_BANDS[1:])):
        inside = (turn >= lo) & ((turn <= hi) if k == last else (turn < hi))
        bands.append({"reference_turn_deg": [lo, hi], "frames": int(inside.sum()),
                      "rotation_diff_deg": _mean_inside(rotation, inside),
                      "same_side": _mean_inside(same_side, inside),
                      "our_turn_deg": _mean_inside(our_turn, inside),
                      "reference_turn_mean_deg": _mean_inside(turn, inside)})
    return bands


def _mean_inside(values: np.ndarray, inside: np.ndarray) -> float | None:
    return round(float(values[inside].mean()), 3) if inside.any() else None


def _frame_period(track: AngleTrack) -> float | None:
    if len(track.frames) < 2:
        return None
    return float(np.median(np.diff(track.times) / np.diff(track.frames)))


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return round(float(np.corrcoef(a, b)[0, 1]), 3)


def run_pipeline(video: Path, models: Path, mode: str = "pose", max_frames: int | None = None,
                 keep_csv: Path | None = None, detector: str = "blazeface",
                 precision: str = "fp32") -> tuple[AngleTrack, dict[str, Any]]:
    """Our angles on every frame of ``video`` through the app's headless processing, and what ran:
    model file, variant, input size, provider, precision, frames decoded. ``keep_csv`` keeps the
    per-frame CSV. ``precision`` defaults to the fp32 model, as ``trainer.evaluate`` does."""
    with tempfile.TemporaryDirectory() as tmp:
        options = Options(videos=[Path(video)], out=Path(tmp), mode=mode, no_video=True, models=Path(models),
                          max_frames=max_frames, detector=detector)
        with FacePipeline(Path(models), mode=mode, detector=detector, precision=precision) as pipeline:
            info = pipeline.load(mode)
            summary = process_video(Path(video), options, pipeline)
        out_csv = Path(summary["csv"])
        track = read_process_csv(out_csv)
        if keep_csv is not None:
            keep_csv.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out_csv, keep_csv)
    ran = {"model_file": str(info.path), "variant": info.variant, "input_size": info.input_size,
           "provider": summary["provider"], "precision": summary["precision"], "decoded": summary["decoded"], "failed": summary["failed"]}
    return track, ran


def plot_agreement(ours: AngleTrack, reference: AngleTrack, result: dict[str, Any], path: Path, title: str) -> None:
    """Four stacked panels against time, ours beside the reference, written to ``path``: the signed turn
    from the camera (``signed_turn``, convention-free), then yaw, pitch and roll."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(11, 11), sharex=True)
    turn_ax, axes = axes[0], axes[1:]
    turn_ax.plot(reference.times, signed_turn(reference.angles), color="tab:orange", lw=1.0, label="3DDFA_V2")
    turn_ax.plot(ours.times, signed_turn(ours.angles), color="tab:blue", lw=1.2, label="ours")
    turn_ax.set_ylabel("turn from camera (°)")
    turn_ax.set_title(f"where the face looks, + towards the image left: rotation difference "
                      f"{_deg(result['rotation_diff_deg']['mean'])}", fontsize=9, loc="right")
    for level in (-90.0, 0.0, 90.0):
        turn_ax.axhline(level, color="0.6", lw=0.5)
    turn_ax.grid(alpha=0.3)
    turn_ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    near = np.abs(reference.angles[:, 0]) >= NEAR_PROFILE_DEG
    for k, (ax, name) in enumerate(zip(axes, ANGLES)):
        _shade(ax, reference.times, near, label=f"3DDFA_V2 |yaw| ≥ {NEAR_PROFILE_DEG:g}°: pitch and roll "
                                                "near gimbal lock" if k == 0 else None)
        ax.plot(reference.times, reference.angles[:, k], color="tab:orange", lw=1.0,
                label="3DDFA_V2 (converted to our convention)")
        ax.plot(ours.times, ours.angles[:, k], color="tab:blue", lw=1.2, label="ours")
        mad = result["mean_abs_diff_deg"][name]
        ax.set_ylabel(f"{name} (°)")
        ax.set_title(f"{name}: mean |Δ| {_deg(mad)}", fontsize=9, loc="right")
        ax.axhline(0.0, color="0.6", lw=0.5)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="center", fontsize=8, framealpha=0.9)
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _shade(ax: Any, times: np.ndarray, mask: np.ndarray, label: str | None) -> None:
    """Grey spans over the runs of ``mask``."""
    if not len(times):
        return
    half = float(np.median(np.diff(times))) / 2 if len(times) > 1 else 0.0
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(int), 0]))
    for start, stop in zip(edges[::2], edges[1::2]):
        ax.axvspan(times[start] - half, times[stop - 1] + half, color="0.88", lw=0, label=label)
        label = None


def _deg(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}°"


def _title(ran: dict[str, Any], mode: str, video_name: str, result: dict[str, Any]) -> str:
    mad, rot = result["mean_abs_diff_deg"], result["rotation_diff_deg"]["mean"]
    model = f"{ran['model_file']} ({ran['variant']}, {ran['input_size']} px, {mode} mode)" if ran else "ours"
    return (f"{model} vs 3DDFA_V2 on {video_name}\n"
            f"mean |Δ| yaw {_deg(mad['yaw'])}, pitch {_deg(mad['pitch'])}, roll {_deg(mad['roll'])} "
            f"over {result['frames_compared']} frames; mean rotation difference {_deg(rot)}")
