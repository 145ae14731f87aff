"""Face detectors behind one small interface, chosen by name from ``DETECTORS``.

A detector takes a BGR frame and returns every face it finds as rows ``(x1, y1, x2, y2, score)`` in
frame pixels, best score first. The implementations are MediaPipe's BlazeFace models, which
mediapipe 0.10.21 bundles:

- ``blazeface_short``: the short-range model (faces within about 2 m, 128 px input). Fast, and the
  more confident of the two on near faces such as a webcam user's.
- ``blazeface_full``: the full-range model (faces up to about 5 m, 192 px input), about 3× slower.
- ``blazeface`` (the default): short range, and full range on the frames where short range finds
  nothing. Near faces, the common case, cost the short model only; a lone far face is still found.
  A frame that holds a near face and a far one gets the near one only; choose ``blazeface_full``
  for scenes of distant people.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Protocol

import cv2
import numpy as np

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


class BlazeFace:
    """One MediaPipe BlazeFace model: ``model_selection`` 0 is short range, 1 full range."""

    def __init__(self, model_selection: int = 0, min_score: float = MIN_SCORE) -> None:
        from mediapipe.python.solutions import face_detection

        self.model_selection = model_selection
        with _native_stderr_silenced():
            self._graph = face_detection.FaceDetection(model_selection=model_selection,
                                                       min_detection_confidence=min_score)
            self._graph.process(np.zeros((64, 64, 3), np.uint8))  # finishes start-up (and its notices) here

    def detect(self, frame_bgr: np.ndarray) -> np.ndarray:
        """All faces in ``frame_bgr`` as ``(N, 5)`` rows ``(x1, y1, x2, y2, score)``, best first."""
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


class BlazeFaceAuto:
    """Short range first; full range only on frames where short range finds no face."""

    def __init__(self, min_score: float = MIN_SCORE) -> None:
        self._short = BlazeFaceShort(min_score)
        self._full: BlazeFaceFull | None = None
        self._min_score = min_score

    def detect(self, frame_bgr: np.ndarray) -> np.ndarray:
        """Short-range detections, or full-range ones when there are none."""
        boxes = self._short.detect(frame_bgr)
        if len(boxes):
            return boxes
        if self._full is None:
            self._full = BlazeFaceFull(self._min_score)
        return self._full.detect(frame_bgr)

    def close(self) -> None:
        """Close both graphs."""
        self._short.close()
        if self._full is not None:
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
