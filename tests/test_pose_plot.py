"""The pose plot of a processed video: one NaN-broken series per face, a PNG of the expected size, a plot even
without faces, and an OSError where the PNG cannot go."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core.pose_plot import DPI, FIGURE_SIZE, pose_series, write_pose_plot

COLUMNS = ["frame", "time_s", "detected", "face_id", "score", "x1", "y1", "x2", "y2", "yaw", "pitch", "roll",
           "cx", "cy", "scale"]
FPS = 10.0


def write_csv(path: Path, faces: dict[int, dict[int, tuple[float, float, float]]], frames: list[int]) -> Path:
    """A CSV as ``run_app.py process`` writes it: a row per face per frame, ``detected=0`` for a frame without any."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for frame in frames:
            here = [(face_id, poses[frame]) for face_id, poses in faces.items() if frame in poses]
            if not here:
                writer.writerow([frame, f"{frame / FPS:.3f}", 0] + [""] * (len(COLUMNS) - 3))
            for face_id, (yaw, pitch, roll) in here:
                writer.writerow([frame, f"{frame / FPS:.3f}", 1, face_id, 0.9, 10, 10, 50, 50, yaw, pitch, roll,
                                 30.0, 30.0, 20.0])
    return path


def two_faces(gap: range | None) -> dict[int, dict[int, tuple[float, float, float]]]:
    """Face 1 turning over 40 frames (missing on ``gap``), face 2 still and found from frame 10 on."""
    first = {f: (30 * np.sin(f / 6), 10 * np.cos(f / 9), 5.0) for f in range(40) if gap is None or f not in gap}
    second = {f: (-20.0, -5.0, 2.0) for f in range(10, 40)}
    return {1: first, 2: second}


def test_a_face_missing_on_some_frames_has_nan_there_and_values_elsewhere(tmp_path: Path):
    path = write_csv(tmp_path / "clip.csv", two_faces(range(15, 22)), list(range(40)))
    series = pose_series(path)
    assert list(series) == [1, 2]
    face = series[1]
    assert np.allclose(face.t, np.arange(40) / FPS)
    for values in (face.yaw, face.pitch, face.roll):
        assert np.isnan(values[15:22]).all() and np.isfinite(np.r_[values[:15], values[22:]]).all()
    assert np.isnan(series[2].yaw[:10]).all() and np.allclose(series[2].yaw[10:], -20.0)


def test_frames_missing_from_the_csv_break_every_line(tmp_path: Path):
    frames = [f for f in range(40) if f not in (20, 21)]
    series = pose_series(write_csv(tmp_path / "clip.csv", two_faces(None), frames))
    face = series[1]
    assert len(face.t) == len(frames) + 1 and np.isnan(face.t[20]) and np.isnan(face.yaw[20])
    assert face.t[21] == pytest.approx(2.2)


def test_the_plot_is_a_png_of_the_figure_size_and_shows_the_gap(tmp_path: Path):
    pictures = {}
    for name, gap in (("gap", range(15, 22)), ("whole", None)):
        csv_path = write_csv(tmp_path / f"{name}.csv", two_faces(gap), list(range(40)))
        write_pose_plot(csv_path, tmp_path / f"{name}.png", title="clip.mp4")
        pictures[name] = cv2.imread(str(tmp_path / f"{name}.png"))
    width, height = (round(side * DPI) for side in FIGURE_SIZE)
    assert pictures["gap"].shape == pictures["whole"].shape == (height, width, 3)
    assert (pictures["gap"] != pictures["whole"]).any()


def test_a_csv_without_faces_still_gets_a_plot(tmp_path: Path):
    csv_path = write_csv(tmp_path / "empty.csv", {}, list(range(5)))
    assert pose_series(csv_path) == {}
    write_pose_plot(csv_path, tmp_path / "empty.png")
    assert cv2.imread(str(tmp_path / "empty.png")) is not None


def test_many_faces_are_all_drawn(tmp_path: Path):
    faces = {face_id: {f: (face_id * 5.0, 0.0, 0.0) for f in range(face_id, 30)} for face_id in range(1, 14)}
    csv_path = write_csv(tmp_path / "crowd.csv", faces, list(range(30)))
    assert list(pose_series(csv_path)) == list(range(1, 14))
    write_pose_plot(csv_path, tmp_path / "crowd.png")
    assert cv2.imread(str(tmp_path / "crowd.png")) is not None


def test_a_png_that_cannot_be_written_is_an_os_error(tmp_path: Path):
    csv_path = write_csv(tmp_path / "clip.csv", two_faces(None), list(range(40)))
    with pytest.raises(OSError):
        write_pose_plot(csv_path, tmp_path / "no such folder" / "clip.png")


def test_a_csv_of_something_else_is_a_value_error_naming_it(tmp_path: Path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="other.csv.*yaw"):
        pose_series(path)
