"""Face detectors behind one small interface, chosen by name from ``DETECTORS``.

A detector takes a BGR frame and returns every face it finds as rows ``(x1, y1, x2, y2, score)`` in
frame pixels, best score first. The implementations are MediaPipe's BlazeFace models, which
mediapipe 0.10.21 bundles:

- ``blazeface_short``: the short-range model (faces within about 2 m, 128 px input). Fast, and the
  more confident of the two on near faces such as a webcam user's.
- ``blazeface_full``: the full-range model (faces up to about 5 m, 192 px input), about 3x slower. Its
  boxes are redrawn in the short-range model's terms (``FULL_RANGE_BOX_FIT``), so that one crop rule
  (``crop.face_box_from_detection``) frames the faces of both alike.
- ``blazeface`` (the default): near and far faces in one pass. Short range on the whole frame, full
  range on overlapping square tiles of a large frame (``tiles``: a 1280x720 frame is six 480x480 tiles,
  so a far face keeps 2.7x more pixels than in one full-range pass of the frame), merged: every
  short-range box is kept, and a full-range box only where it does not overlap a kept one (``merge``). Its
  ``detect_quick`` is the short range alone: the pipeline runs it on frames where it only has to confirm
  faces it already tracks (``app.core.pipeline``).
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Protocol

import cv2
import numpy as np

from app.core import crop

MIN_SCORE = 0.5
"""Detections below this confidence are dropped (MediaPipe's own default)."""


class FaceDetector(Protocol):
    """Finds all faces in a frame."""

    def detect(self, frame_bgr: np.ndarray) -> np.ndarray:
        """``(N, 5)`` float rows ``(x1, y1, x2, y2, score)`` in frame pixels, best first; ``(0, 5)`` for none."""
        ...

    def close(self) -> None:
        """Release the detector's resources."""
        ...


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the duration.

    MediaPipe's graph prints TFLite and absl notices from C++ while it starts, past Python's
    ``sys.stderr``; this hides them for the start-up only. Exceptions still propagate.
    """
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


FULL_RANGE_BOX_FIT = (-0.0017, 0.0888, 0.9142)
"""Where the training crops' landmark box sits relative to a BlazeFace full-range box, in
``crop.DETECTOR_BOX_FIT``'s terms: the full-range model's boxes are 6% larger than the short-range model's
and sit higher on the face. Medians over the 1,115 afw + helen_train faces it finds, measured by ``python -m
trainer calibrate-detector --detector blazeface_full`` on the model's own boxes (spread 8%, 3% and 8%)."""


def in_short_range_terms(boxes: np.ndarray, fit: tuple[float, float, float] = FULL_RANGE_BOX_FIT) -> np.ndarray:
    """Rows ``(x1, y1, x2, y2, score)`` of a detector whose boxes relate to faces by ``fit``, redrawn as the
    short-range model would draw them (square), so that ``crop.face_box_from_detection`` maps every detector's
    boxes to the same face box."""
    dx, dy, ratio = crop.DETECTOR_BOX_FIT
    rows = []
    for row in boxes:
        face = crop.face_box_from_detection(row[:4], fit)
        side = (face[2] - face[0]) / ratio
        cx, cy = (face[0] + face[2]) / 2 - dx * side, (face[1] + face[3]) / 2 - dy * side
        rows.append((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2, row[4]))
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


class BlazeFace:
    """One MediaPipe BlazeFace model: ``model_selection`` 0 is short range, 1 full range (whose boxes ``detect``
    reports in the short range's terms, ``in_short_range_terms``; ``detect_raw`` as the model draws them)."""

    def __init__(self, model_selection: int = 0, min_score: float = MIN_SCORE) -> None:
        from mediapipe.python.solutions import face_detection

        self.model_selection = model_selection
        with _native_stderr_silenced():
            self._graph = face_detection.FaceDetection(model_selection=model_selection,
                                                       min_detection_confidence=min_score)
            self._graph.process(np.zeros((64, 64, 3), np.uint8))  # finishes start-up (and its notices) here

    def detect(self, frame_bgr: np.ndarray) -> np.ndarray:
        """All faces in ``frame_bgr`` as ``(N, 5)`` rows ``(x1, y1, x2, y2, score)``, best first, boxes in the
        short-range model's terms."""
        boxes = self.detect_raw(frame_bgr)
        return boxes if self.model_selection == 0 else in_short_range_terms(boxes)

    def detect_raw(self, frame_bgr: np.ndarray) -> np.ndarray:
        """``detect`` with the boxes as the model draws them."""
        height, width = frame_bgr.shape[:2]
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        result = self._graph.process(rgb)
        rows = []
        for detection in result.detections or ():
            rel = detection.location_data.relative_bounding_box
            x1, y1 = rel.xmin * width, rel.ymin * height
            rows.append((x1, y1, x1 + rel.width * width, y1 + rel.height * height, float(detection.score[0])))
        boxes = np.array(rows, dtype=np.float64).reshape(-1, 5)
        usable = np.isfinite(boxes).all(1) & (boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 2)
        boxes = boxes[usable]
        return boxes[np.argsort(-boxes[:, 4], kind="stable")]

    def close(self) -> None:
        """Close the MediaPipe graph."""
        self._graph.close()


class BlazeFaceShort(BlazeFace):
    """BlazeFace short range: near faces (within about 2 m)."""

    def __init__(self, min_score: float = MIN_SCORE) -> None:
        super().__init__(0, min_score)


class BlazeFaceFull(BlazeFace):
    """BlazeFace full range: near and far faces (up to about 5 m), slower."""

    def __init__(self, min_score: float = MIN_SCORE) -> None:
        super().__init__(1, min_score)


NMS_IOU = 0.3
"""A full-range box overlapping a kept box by this IoU (or lying mostly inside it, ``NMS_COVER``) is the same face."""

NMS_COVER = 0.6
"""A box whose area lies this much inside a kept box (or holds this much of it) is the same face."""

TILE_SIDE = 480
"""Tiles are at least this many pixels square: the full-range model (192 px input) then sees a tile at 0.4x or
more, where it finds faces of 36 px or so that it misses in the whole of a 1280x720 frame (``python -m
app.bench_framing many``)."""


def tiles(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Square windows ``(x1, y1, x2, y2)`` that cover a ``width`` x ``height`` frame, evenly spaced and
    overlapping, at most 3 along the longer side and 2 along the shorter: of side ``TILE_SIDE``, or the longer
    side / 2.75 or the shorter / 1.75 where that is more (so that neighbours overlap); the whole frame when it
    is within 1.25 times that side both ways."""
    side = max(TILE_SIDE, int(np.ceil(max(width, height) / 2.75)), int(np.ceil(min(width, height) / 1.75)))
    if width <= 1.25 * side and height <= 1.25 * side:
        return [(0, 0, width, height)]
    side = min(side, width, height)
    xs = np.linspace(0, width - side, -(-width // side)).round().astype(int)
    ys = np.linspace(0, height - side, -(-height // side)).round().astype(int)
    return [(int(x), int(y), int(x) + side, int(y) + side) for y in ys for x in xs]


def merge(kept: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """``kept`` rows, then the rows of ``extra`` (best first) that are no face already kept (``NMS_IOU``,
    ``NMS_COVER``), best score first overall."""
    rows = list(kept)
    for row in extra[np.argsort(-extra[:, 4], kind="stable")]:
        if not any(_same_face(row, other) for other in rows):
            rows.append(row)
    boxes = np.array(rows, dtype=np.float64).reshape(-1, 5)
    return boxes[np.argsort(-boxes[:, 4], kind="stable")]


def _same_face(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether boxes ``a`` and ``b`` overlap by ``NMS_IOU`` or one lies ``NMS_COVER`` inside the other."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return False
    inter = w * h
    area_a, area_b = (a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter) >= NMS_IOU or inter / min(area_a, area_b) >= NMS_COVER


class BlazeFaceAuto:
    """Near and far faces in one pass: short range on the frame, full range on its tiles, merged."""

    def __init__(self, min_score: float = MIN_SCORE) -> None:
        self._short = BlazeFaceShort(min_score)
        self._full = BlazeFaceFull(min_score)

    def detect(self, frame_bgr: np.ndarray) -> np.ndarray:
        """Short-range detections, and the full-range ones of every tile (``tiles``) that are other faces."""
        return merge(self.detect_quick(frame_bgr), self.detect_far(frame_bgr))

    def detect_quick(self, frame_bgr: np.ndarray) -> np.ndarray:
        """Short range alone on the whole frame: near faces, at a third of ``detect``'s cost or less."""
        return self._short.detect(frame_bgr)

    def detect_far(self, frame_bgr: np.ndarray) -> np.ndarray:
        """Full range on each tile of the frame (``tiles``), duplicates where tiles overlap merged."""
        height, width = frame_bgr.shape[:2]
        found = []
        for x1, y1, x2, y2 in tiles(width, height):
            boxes = self._full.detect(frame_bgr[y1:y2, x1:x2])
            found.append(boxes + np.array([x1, y1, x1, y1, 0.0]))
        return merge(np.zeros((0, 5)), np.concatenate(found)) if len(found) > 1 else found[0]

    def close(self) -> None:
        """Close both graphs."""
        self._short.close()
        self._full.close()


DETECTORS: dict[str, type] = {
    "blazeface": BlazeFaceAuto,
    "blazeface_short": BlazeFaceShort,
    "blazeface_full": BlazeFaceFull,
}
"""Detector name → class; every class takes ``min_score`` and implements ``FaceDetector``."""


def create_detector(name: str = "blazeface", min_score: float = MIN_SCORE) -> FaceDetector:
    """The detector called ``name`` in ``DETECTORS``; ``ValueError`` naming the choices otherwise."""
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}") from None
    return cls(min_score=min_score)
