"""Stable face ids across frames by greedy IoU matching of detector boxes.

Each frame's boxes are matched to the live tracks, highest overlap first; a box that overlaps no
track by ``min_iou`` starts a new track with a new id, and a track unmatched for more than
``max_missed`` frames is dropped (its id is never reused). This is enough for the few, slowly
moving faces of a head-pose video; it does not re-identify a face that leaves and comes back.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def as_boxes(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` float boxes from ``(N, 4+)`` rows (a score column is dropped) or an empty array."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4))
    return np.atleast_2d(arr)[:, :4]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` ``(N, 4+)`` with every box in ``b`` ``(M, 4+)``."""
    a, b = as_boxes(a), as_boxes(b)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


@dataclass
class _Track:
    face_id: int
    box: np.ndarray
    missed: int = 0


class IouTracker:
    """Assigns each detected box the id of the track it continues, or a fresh id."""

    def __init__(self, min_iou: float = 0.3, max_missed: int = 10, first_id: int = 1) -> None:
        self.min_iou = min_iou
        self.max_missed = max_missed
        self._next_id = first_id
        self._tracks: list[_Track] = []

    def update(self, boxes: np.ndarray) -> list[int]:
        """Ids for ``boxes`` ``(N, 4+)`` in their order; call once per frame, with an empty array for none."""
        boxes = as_boxes(boxes)
        ids: list[int | None] = [None] * len(boxes)
        matched_tracks: set[int] = set()
        if len(boxes) and self._tracks:
            overlap = iou_matrix(boxes, np.stack([t.box for t in self._tracks]))
            for flat in np.argsort(-overlap, axis=None, kind="stable"):
                i, j = np.unravel_index(flat, overlap.shape)
                if overlap[i, j] < self.min_iou:
                    break
                if ids[i] is not None or j in matched_tracks:
                    continue
                track = self._tracks[j]
                track.box, track.missed = boxes[i].copy(), 0
                ids[i] = track.face_id
                matched_tracks.add(int(j))
        for j, track in enumerate(self._tracks):
            if j not in matched_tracks:
                track.missed += 1
        self._tracks = [t for t in self._tracks if t.missed <= self.max_missed]
        for i, face_id in enumerate(ids):
            if face_id is None:
                ids[i] = self._new_track(boxes[i])
        return [int(i) for i in ids]

    def seed(self, boxes: np.ndarray, ids: list[int]) -> None:
        """Start from known tracks (a resumed run's last frame); new ids continue after the largest."""
        boxes = as_boxes(boxes)
        self._tracks = [_Track(int(i), b.copy()) for b, i in zip(boxes, ids)]
        if ids:
            self._next_id = max(self._next_id, max(ids) + 1)

    def reserve_ids(self, last_used: int) -> None:
        """Never hand out an id up to ``last_used`` (ids already written by an earlier run)."""
        self._next_id = max(self._next_id, last_used + 1)

    @property
    def live_ids(self) -> list[int]:
        """Ids of the tracks currently kept."""
        return [t.face_id for t in self._tracks]

    def _new_track(self, box: np.ndarray) -> int:
        face_id = self._next_id
        self._next_id += 1
        self._tracks.append(_Track(face_id, box.copy()))
        return face_id

    def reset(self) -> None:
        """Forget every track; ids keep counting up."""
        self._tracks = []
