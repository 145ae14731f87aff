"""A picture of a processed video's head poses: yaw, pitch and roll against time, one line per face.

``write_pose_plot`` reads the CSV that ``run_app.py process`` writes (``app.core.process``) and saves a PNG
of three stacked panels sharing the time axis. A face's line breaks on the frames where it was not found,
so a lost track never looks like a smooth turn. Matplotlib draws through its Agg canvas on a ``Figure``
of its own (no ``pyplot``: no global state, so the headless command may call it from any thread).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

import numpy as np

ANGLES = ("yaw", "pitch", "roll")
REQUIRED_COLUMNS = ("frame", "time_s", "detected", "face_id", *ANGLES)
LEGEND_FACES = 10
"""Faces named in the legend; the rest are drawn and counted as ``+N more``."""
EMPTY_RANGE_DEG = 45.0
"""Without faces the panels still span ±45° (and the video's duration), so the empty plot reads as one."""
MIN_SPAN_DEG = 30.0
"""Each panel spans at least 30° around its data, so a steady head's fraction-of-a-degree jitter does not
fill the panel and read as a swing."""
FIGURE_SIZE = (10.0, 7.5)
DPI = 100
"""The PNG is ``FIGURE_SIZE · DPI`` pixels: 1000 × 750."""


class PoseSeries(NamedTuple):
    """One face's angles in degrees against ``t`` seconds, NaN on the frames where it was not found."""

    t: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray


def _number(text: str | None) -> float:
    try:
        return float(text) if text else np.nan
    except ValueError:
        return np.nan


def pose_series(csv_path: Path) -> dict[int, PoseSeries]:
    """Per face id (ascending), its angles over every frame of the CSV, NaN where that face is missing.

    A jump in the frame index (frames that did not decode have no rows) also gets a NaN, so no line
    bridges frames nobody saw. ``ValueError`` for a CSV without the ``process`` columns."""
    return _read(Path(csv_path))[1]


def _read(csv_path: Path) -> tuple[np.ndarray, dict[int, PoseSeries]]:
    """The CSV's times (NaN at frame jumps) and ``pose_series``."""
    times: dict[int, float] = {}
    angles: dict[int, dict[int, tuple[float, float, float]]] = {}
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        lacking = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if lacking:
            raise ValueError(f"{csv_path}: not a CSV of run_app.py process (lacks {', '.join(lacking)})")
        for row in reader:
            frame = int(row["frame"])
            times[frame] = _number(row["time_s"])
            if row["detected"] == "1" and row["face_id"]:
                angles.setdefault(int(row["face_id"]), {})[frame] = tuple(_number(row[a]) for a in ANGLES)
    frames = np.array(sorted(times), dtype=np.int64)
    breaks = np.flatnonzero(np.diff(frames) > 1) + 1
    t = np.insert(np.array([times[f] for f in frames], dtype=np.float64), breaks, np.nan)
    series: dict[int, PoseSeries] = {}
    for face_id in sorted(angles):
        seen = angles[face_id]
        values = np.array([seen.get(int(f), (np.nan,) * 3) for f in frames], dtype=np.float64).reshape(-1, 3)
        values = np.insert(values, breaks, np.nan, axis=0)
        series[face_id] = PoseSeries(t, values[:, 0], values[:, 1], values[:, 2])
    return t, series


def _isolated(values: np.ndarray) -> np.ndarray:
    """Where a finite value has no finite neighbour: a line cannot show it, so it gets a dot."""
    finite = np.isfinite(values)
    before = np.r_[False, finite[:-1]]
    after = np.r_[finite[1:], False]
    return finite & ~before & ~after


def write_pose_plot(csv_path: Path, png_path: Path, title: str | None = None) -> None:
    """Save a PNG of the CSV's yaw, pitch and roll (degrees) against time (seconds), one colour per face.

    ``title`` defaults to the CSV's name without ``.csv``. A CSV without faces still gives a plot, saying
    "no face found". ``OSError`` when the PNG cannot be written."""
    # Imported here: the viewer and the per-frame code never pay for matplotlib's import.
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    csv_path, png_path = Path(csv_path), Path(png_path)
    times, series = _read(csv_path)
    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(ANGLES), 1, sharex=True)
    colours = list(colormaps["tab10" if len(series) <= 10 else "tab20"].colors)
    handles: list[Line2D] = []
    for index, (face_id, face) in enumerate(series.items()):
        colour = colours[index % len(colours)]
        for axis, values in zip(axes, face[1:]):
            line, = axis.plot(face.t, values, color=colour, linewidth=1.2)
            lone = _isolated(values)
            if lone.any():
                axis.plot(face.t[lone], values[lone], linestyle="none", marker="o", markersize=2.5, color=colour)
        if index < LEGEND_FACES:
            line.set_label(f"face {face_id}")
            handles.append(line)
    for axis, name in zip(axes, ANGLES):
        axis.set_ylabel(f"{name} (°)")
        axis.axhline(0.0, color="0.75", linewidth=0.8, zorder=0)
        axis.grid(True, color="0.9", linewidth=0.6)
    axes[-1].set_xlabel("time (s)")
    if not series:
        known = times[np.isfinite(times)]
        if len(known) and known.max() > known.min():
            axes[-1].set_xlim(known.min(), known.max())
        for axis in axes:
            axis.set_ylim(-EMPTY_RANGE_DEG, EMPTY_RANGE_DEG)
        axes[1].text(0.5, 0.5, "no face found", transform=axes[1].transAxes, ha="center", va="center",
                     fontsize=14, color="0.4", bbox={"facecolor": "white", "edgecolor": "none"})
    else:
        for axis in axes:
            low, high = axis.get_ylim()
            if high - low < MIN_SPAN_DEG:
                middle = (low + high) / 2
                axis.set_ylim(middle - MIN_SPAN_DEG / 2, middle + MIN_SPAN_DEG / 2)
        if len(series) > LEGEND_FACES:
            handles.append(Line2D([], [], linestyle="none", label=f"+{len(series) - LEGEND_FACES} more"))
        figure.legend(handles=handles, loc="outside right upper", frameon=False)
    figure.suptitle(title if title is not None else csv_path.name.removesuffix(".csv"))
    figure.savefig(png_path, format="png")
