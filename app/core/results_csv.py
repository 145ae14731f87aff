"""The per-frame results CSV of ``run_app.py process``: its columns, writing a frame's rows, reading them back.

One row per frame per face, and one row with ``detected=0`` for a frame without a face; ``quality`` and
``valid`` follow the pose (``app.core.quality``), and full mode appends x, y and visibility per landmark
(``csv_columns``). CSVs written before ``quality`` and ``valid`` existed still read back (as valid faces
of unknown quality); resuming one is refused. Numbers are fixed-point text that never
reads ``-0`` (``pose.format_angle``), so two runs of one input give the same bytes. ``CsvLog`` writes
and flushes a frame's rows at once; ``read_results`` reads a CSV back as ``FrameResult`` frames
(``trainer.video_agreement`` compares them with another tracker's angles; ``read_rows`` is its reader
of any CSV with named columns); ``resume_from_csv`` trims an interrupted run's CSV to its finished
frames and says where to carry on.
"""
from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence, TextIO

import numpy as np

from app.core.exit_codes import UsageError, cannot_write
from app.core.pose import format_angle
from app.core.results import FaceResult, FrameResult

log = logging.getLogger(__name__)

BASE_COLUMNS = ("frame", "time_s", "detected", "face_id", "score", "x1", "y1", "x2", "y2",
                "yaw", "pitch", "roll", "cx", "cy", "scale")
"""Columns of every CSV; full mode appends ``lm{i}_x``, ``lm{i}_y``, ``lm{i}_vis`` per landmark ``i``.
Every position is in frame pixels: the box, the landmarks and the face centre ``cx, cy``; ``scale`` is in
frame pixels per mean-face unit (``crop.translation_to_frame``)."""
QUALITY_COLUMNS = ("quality", "valid")
"""After ``BASE_COLUMNS``: ``quality`` 0–1 (empty where no scorer is in use) and ``valid`` (``1`` a face, ``0`` a
detection judged not to be one; ``app.core.quality``)."""


def csv_columns(mode: str, landmarks: int, quality: bool = True) -> list[str]:
    """The CSV header for ``mode``; full mode adds x, y and visibility of each of ``landmarks`` landmarks.
    ``quality=False`` gives the header of a CSV written before ``QUALITY_COLUMNS`` existed."""
    columns = list(BASE_COLUMNS) + (list(QUALITY_COLUMNS) if quality else [])
    if mode == "full":
        for i in range(landmarks):
            columns += [f"lm{i}_x", f"lm{i}_y", f"lm{i}_vis"]
    return columns


def _fixed(value: float, decimals: int) -> str:
    """``value`` with ``decimals`` places, never ``-0.00…`` (``pose.format_angle``'s rule, for any number)."""
    return format_angle(value, decimals)


def frame_rows(result: FrameResult, landmarks: int) -> list[list[str]]:
    """The CSV rows of one frame: one per face, or one ``detected=0`` row when there is none."""
    frame, time_s = str(result.index), _fixed(result.time_s, 4)
    if not result.faces:
        width = len(csv_columns(result.mode, landmarks))
        return [[frame, time_s, "0"] + [""] * (width - 3)]
    rows = []
    for face in result.faces:
        row = [frame, time_s, "1", str(face.face_id), _fixed(face.score, 4)]
        row += [_fixed(v, 2) for v in face.box]
        row += [format_angle(face.yaw, 4), format_angle(face.pitch, 4), format_angle(face.roll, 4)]
        row += [_fixed(face.centre[0], 2), _fixed(face.centre[1], 2), _fixed(face.scale, 3)]
        row += [_fixed(face.quality, 4) if np.isfinite(face.quality) else "", "1" if face.valid else "0"]
        if result.mode == "full":
            visibility = face.visibility if face.visibility is not None else np.full(landmarks, np.nan)
            for (x, y), vis in zip(face.landmarks, visibility):
                row += [_fixed(x, 2), _fixed(y, 2), _fixed(vis, 4)]
        rows.append(row)
    return rows


def face_from_row(row: dict[str, str], landmarks: int) -> FaceResult:
    """A ``FaceResult`` read back from a CSV row with ``detected=1`` (valid, quality NaN in a CSV without them)."""
    has_landmarks = "lm0_x" in row
    points = np.array([[float(row[f"lm{i}_x"]), float(row[f"lm{i}_y"])] for i in range(landmarks)]) \
        if has_landmarks else None
    visibility = np.array([float(row[f"lm{i}_vis"]) for i in range(landmarks)]) if has_landmarks else None
    return FaceResult(
        face_id=int(row["face_id"]), box=np.array([float(row[k]) for k in ("x1", "y1", "x2", "y2")]),
        score=float(row["score"]), yaw=float(row["yaw"]), pitch=float(row["pitch"]), roll=float(row["roll"]),
        centre=np.array([float(row["cx"]), float(row["cy"])]), scale=float(row["scale"]), landmarks=points,
        visibility=visibility, quality=float(row["quality"]) if row.get("quality") else math.nan,
        valid=_valid(row.get("valid") or "1"))


def _valid(text: str) -> bool:
    """``valid``'s cell as a bool; ``ValueError`` for anything but ``1`` or ``0``."""
    if text not in ("1", "0"):
        raise ValueError(f"valid is {text!r}, not 1 or 0")
    return text == "1"


def _frames(rows: Iterable[dict[str, str]], mode: str, landmarks: int, name: str) -> dict[int, FrameResult]:
    """The rows' frames by index, each with its faces, in the order met; ``ValueError`` naming ``name`` and
    the line of a row that does not read."""
    found: dict[int, tuple[float, list[FaceResult]]] = {}
    for line, row in enumerate(rows, start=2):
        try:
            _, faces = found.setdefault(int(row["frame"]), (float(row["time_s"]), []))
            if row["detected"] == "1":
                faces.append(face_from_row(row, landmarks))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{name}: line {line}: not a row of this CSV ({error})") from None
    return {index: FrameResult(index, time_s, tuple(faces), {}, mode) for index, (time_s, faces) in found.items()}


def _layout(header: list[str]) -> tuple[str, int]:
    """The mode and landmark count a CSV header stands for."""
    landmarks = sum(1 for column in header if column.startswith("lm") and column.endswith("_x"))
    return ("full" if landmarks else "pose"), landmarks


def read_rows(path: Path, required: Sequence[str]) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a CSV with at least the ``required`` columns; ``ValueError`` naming ``path``
    otherwise (missing, undecodable, lacking a column)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            missing = [c for c in required if c not in header]
            if missing:
                raise ValueError(f"{path}: missing column(s) {', '.join(missing)} "
                                 f"(expected {', '.join(required)})")
            return header, list(reader)
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{path}: not a readable CSV ({error})") from error


def read_results(path: Path) -> list[FrameResult]:
    """The frames of a results CSV, in file order, each with its faces (none for a ``detected=0`` row); the
    mode and landmark count come from the header. ``ValueError`` naming the file for anything else."""
    header, rows = read_rows(path, BASE_COLUMNS)
    mode, landmarks = _layout(header)
    if header not in (csv_columns(mode, landmarks), csv_columns(mode, landmarks, quality=False)):
        raise ValueError(f"{path}: not a results CSV of run_app.py process (its columns are not "
                         f"those of a {mode}-mode run)")
    return list(_frames(rows, mode, landmarks, str(path)).values())


class CsvLog:
    """Appends each frame's rows to the CSV and flushes them at once; ``OutputError`` where it cannot take them."""

    def __init__(self, path: Path, columns: list[str], landmarks: int, append: bool) -> None:
        self.path = path
        self.landmarks = landmarks
        try:
            self._file: TextIO = path.open("a" if append else "w", encoding="utf-8", newline="")
        except OSError as error:
            raise cannot_write(path, error) from error
        self._writer = csv.writer(self._file, lineterminator="\n")
        if not append:
            self._write([columns])

    def _write(self, rows: list[list[str]]) -> None:
        try:
            self._writer.writerows(rows)
            self._file.flush()
        except OSError as error:
            raise cannot_write(self.path, error) from error

    def write(self, result: FrameResult) -> None:
        """Write and flush the rows of ``result``."""
        self._write(frame_rows(result, self.landmarks))

    def close(self) -> None:
        """Close the file; ``OutputError`` where the last rows cannot be written."""
        try:
            self._file.close()
        except OSError as error:
            raise cannot_write(self.path, error) from error


@dataclass
class ResumeState:
    """What an earlier run of the same input left: the frames kept and where to carry on."""

    start_index: int = 0
    complete: bool = False
    append: bool = False
    """Whether the CSV holds its header (and the rows kept), so that this run appends to it."""
    frames: int = 0
    faces: int = 0
    invalid_faces: int = 0
    face_ids: set[int] = field(default_factory=set)
    last_boxes: list[np.ndarray] = field(default_factory=list)
    last_ids: list[int] = field(default_factory=list)
    redraw: dict[int, FrameResult] = field(default_factory=dict)
    """The kept frames by index, for redrawing the annotated video (empty unless asked for)."""


def resume_from_csv(path: Path, columns: list[str], mode: str, complete: bool, keep_faces: bool) -> ResumeState:
    """Trim the CSV at ``path`` to the frames an earlier run finished and say where to carry on.

    A partial last line (a killed run) is dropped, and so are the rows of the last frame unless the
    run was ``complete`` (its summary says so). A CSV without a whole header line (empty, or cut short
    by a kill before any row) holds nothing to resume: the run starts from the first frame, with a
    warning. ``keep_faces`` keeps each kept frame for redrawing the annotated video. ``UsageError``
    when the CSV's header is not ``columns`` (another mode or landmark count); ``OutputError`` when it
    cannot be trimmed.
    """
    if not path.is_file():
        log.info("%s: nothing to resume, starting from the first frame", path)
        return ResumeState()
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()
    if not lines:
        log.warning("%s: its header is %s and it holds no rows: nothing to resume, starting afresh from "
                    "the first frame", path, "incomplete" if text else "empty")
        return ResumeState()
    if lines[0].rstrip("\n") == ",".join(c for c in columns if c not in QUALITY_COLUMNS):
        raise UsageError(f"{path}: written before the quality and valid columns existed; run with --overwrite "
                         "to start again")
    if lines[0].rstrip("\n") != ",".join(columns):
        raise UsageError(f"{path}: its columns are not those of a {mode}-mode run with this model; "
                         "run with --overwrite to start again")
    rows = list(csv.DictReader(lines))
    frame_of_line = [int(r["frame"]) for r in rows]
    last_frame = frame_of_line[-1] if rows else -1
    keep = len(rows) if complete else sum(1 for f in frame_of_line if f < last_frame)
    start_index = last_frame + 1 if complete else max(last_frame, 0)
    try:
        path.write_text("".join(lines[:keep + 1]), encoding="utf-8")
    except OSError as error:
        raise cannot_write(path, error) from error

    state = ResumeState(start_index=start_index, complete=complete, append=True)
    frames = _frames(rows[:keep], mode, _layout(columns)[1], str(path))
    for index, frame in frames.items():
        state.frames += 1
        state.faces += len(frame.faces)
        state.invalid_faces += sum(1 for f in frame.faces if not f.valid)
        state.face_ids.update(f.face_id for f in frame.faces)
        if keep_faces:
            state.redraw[index] = frame
    if frames:
        last_faces = frames[max(frames)].faces
        state.last_boxes = [f.box for f in last_faces]
        state.last_ids = [f.face_id for f in last_faces]
    return state
