"""Face tracks across frames: stable ids, and each face's next crop carried from the face itself.

As face trackers do (MediaPipe's face mesh, dlib's correlation tracker pipelines), a face found once is
followed by what the network makes of it: after each frame the pipeline hands every track its
face-derived box (``app.core.framing``), and the next frame crops there, without the detector. The
detector is still needed to find new faces, to confirm the tracked ones and to find lost ones again:

- a *carried* track is cropped and reported every frame from its carried box;
- a full detector pass (``needs_full_pass``: no carried track, a lost one waiting, or every
  ``full_every`` frames) matches its boxes to every track by IoU (``min_iou``, greedy, highest first;
  a detection lying mostly over a carried face, as a detector box twice the face does, is that face).
  A carried track it does not find is lost: it is no longer reported, but keeps its id for
  ``max_missed`` frames in case a detection finds it again. A far face (one the quick pass did not find)
  whose crop still frames a face is carried through up to ``max_unconfirmed`` full passes in a row that miss
  it (full range does not find a small face in every frame), with a full pass every frame meanwhile. An
  unmatched detection starts a new track with a new id (ids are never reused);
- a quick pass (the near-face detector alone) confirms carried tracks and adds new faces, and asks
  for a full pass when it misses a face that a quick pass found before (``quick_missed``).

Without ``carry`` (pose mode, whose output does not say where the face is, ``app.core.framing``) every
face is cropped from its detection in the frame: a near face that the detector misses is lost at once,
an unconfirmed far face is cropped from its latest detection.
A carried track whose crop no longer frames a face (``carry`` with None) is lost the same way. Boxes
are landmark-style face boxes (``crop.face_box_from_detection`` of a detection), the boxes the crop
rule takes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.core.crop import face_box_from_detection


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


NEW_FACE_COVER = 0.5
"""A detection whose face box holds this share of a carried face's box is that face, not a new one."""
NEAR_CENTRE = 0.5
"""A detection whose box centre lies within this share of a carried face's box side of that face's centre, at
a side between 2/3 and 3/2 of it, is that face too: the detector's two ranges can box one face differently
enough between frames (a 0.45-side jump at IoU 0.28 in ``app.bench_framing many``) to miss both other tests."""


@dataclass
class _Track:
    face_id: int
    box: np.ndarray
    seen: np.ndarray
    """The face box of the track's latest detection (matched as well as ``box``, should the carried box drift)."""
    score: float = 0.0
    carried: bool = True
    quick: bool = False
    missed: int = 0
    unconfirmed: int = 0


@dataclass(frozen=True)
class Assignment:
    """One face to crop this frame: its id, the face box to crop, and the score of its latest detection."""

    face_id: int
    box: np.ndarray
    score: float
    detected: bool
    """Whether a detection of this frame found it (else it is carried from the previous frame)."""


class FaceTracker:
    """Ids and carried crops of the faces in a video; ``assign`` once per frame, then ``carry``."""

    def __init__(self, min_iou: float = 0.3, max_missed: int = 10, full_every: int = 20, max_unconfirmed: int = 3,
                 first_id: int = 1) -> None:
        self.min_iou = min_iou
        self.max_missed = max_missed
        self.full_every = full_every
        self.max_unconfirmed = max_unconfirmed
        self._next_id = first_id
        self._tracks: list[_Track] = []
        self._since_full = full_every

    def needs_full_pass(self, carry: bool = True) -> bool:
        """Whether this frame needs the whole detector: no face carried, a lost face waiting to be found
        again, or ``full_every`` frames since the last full pass; without ``carry`` (every face must be
        detected in every frame), also any face that the quick pass did not find last time."""
        carried = [t for t in self._tracks if t.carried]
        if not carried or len(carried) < len(self._tracks) or self._since_full + 1 >= self.full_every:
            return True
        if any(t.unconfirmed for t in carried):
            return True
        return not carry and not all(t.quick for t in carried)

    def quick_missed(self, detections: np.ndarray) -> bool:
        """Whether a quick pass's ``detections`` miss a carried face that a quick pass found before."""
        quick = [t for t in self._tracks if t.carried and t.quick]
        if not quick:
            return False
        boxes = _face_boxes(detections)
        if not len(boxes):
            return True
        return bool((_overlap(boxes, quick).max(0) < self.min_iou).any())

    def assign(self, detections: np.ndarray | None, full: bool = True, quick: bool | np.ndarray = False,
               carry: bool = True) -> list[Assignment]:
        """The faces to crop this frame, by id: carried tracks and the ``detections`` ``(N, 5)`` (None where
        the detector did not run) matched to them or new. ``full``: the detections are a full pass (a carried
        track it misses is lost); ``quick``: they come from the quick pass (or, per row, which of them do).
        ``carry``: a found track keeps the box carried from its face (else it is cropped from this frame's
        detection)."""
        self._since_full = 0 if detections is not None and full else self._since_full + 1
        detected: set[int] = set()
        if detections is not None:
            rows = np.asarray(detections, dtype=np.float64).reshape(-1, 5)
            detected = self._match(rows, full, np.broadcast_to(np.asarray(quick, bool), len(rows)), carry)
        for track in self._tracks:
            if not track.carried and track.face_id not in detected:
                track.missed += 1
        self._tracks = [t for t in self._tracks if t.carried or t.missed <= self.max_missed]
        return [Assignment(t.face_id, t.box.copy(), t.score, t.face_id in detected)
                for t in sorted(self._tracks, key=lambda t: t.face_id) if t.carried]

    def _match(self, detections: np.ndarray, full: bool, quick: np.ndarray, carry: bool) -> set[int]:
        """Match ``detections`` to the tracks, start new ones; the ids found."""
        boxes = _face_boxes(detections)
        used: set[int] = set()
        found: dict[int, _Track] = {}
        if len(boxes) and self._tracks:
            overlap = _overlap(boxes, self._tracks)
            for flat in np.argsort(-overlap, axis=None, kind="stable"):
                i, j = (int(k) for k in np.unravel_index(flat, overlap.shape))
                if overlap[i, j] < self.min_iou:
                    break
                track = self._tracks[j]
                if i in used or track.face_id in found:
                    continue
                self._found(track, boxes[i], detections[i, 4], bool(quick[i]), carry)
                used.add(i)
                found[track.face_id] = track
        carried = [t for t in self._tracks if t.carried]
        for i in range(len(boxes)):
            if i in used:
                continue
            cover = [max(_cover(boxes[i], t.box), NEW_FACE_COVER if _near(boxes[i], t.box) else 0.0)
                     for t in carried]
            if cover and max(cover) >= NEW_FACE_COVER:
                track = carried[int(np.argmax(cover))]
                if track.face_id not in found:
                    self._found(track, boxes[i], detections[i, 4], bool(quick[i]), carry)
                    found[track.face_id] = track
                continue
            track = self._new_track(boxes[i], float(detections[i, 4]), bool(quick[i]))
            found[track.face_id] = track
        if full:
            for track in self._tracks:
                if track.carried and track.face_id not in found:
                    track.unconfirmed += 1
                    if track.quick or track.unconfirmed > self.max_unconfirmed:
                        track.carried, track.missed, track.unconfirmed = False, 0, 0
                    elif not carry:
                        track.box = track.seen.copy()
        return set(found)

    @staticmethod
    def _found(track: _Track, box: np.ndarray, score: float, quick: bool, carry: bool) -> None:
        """A detection found ``track``: a carried track keeps its carried box (with ``carry``), a lost one (or
        any, without) is cropped from ``box``."""
        if not track.carried or not carry:
            track.box, track.carried = box.copy(), True
        track.seen = box.copy()
        track.score, track.missed, track.quick, track.unconfirmed = float(score), 0, quick, 0

    def carry(self, face_ids: list[int], boxes: list[np.ndarray | None]) -> list[bool]:
        """After the frame: each face's next crop is its face-derived box, None for a face its crop did not
        frame (lost). A face whose box repeats an older face's (IoU over 0.5) is that face: the younger track
        is dropped. Returns, per face, whether it stays (False: a duplicate to leave out of the results)."""
        tracks = {t.face_id: t for t in self._tracks}
        keep = [True] * len(face_ids)
        kept_boxes: list[np.ndarray] = []
        for k in np.argsort(face_ids, kind="stable"):
            track, box = tracks.get(face_ids[k]), boxes[k]
            if track is None:
                continue
            if box is None:
                track.carried, track.missed = False, 0
                continue
            if kept_boxes and iou_matrix(box[None], np.stack(kept_boxes)).max() > 0.5:
                keep[k] = False
                self._tracks.remove(track)
                continue
            track.box = np.asarray(box, dtype=np.float64)[:4].copy()
            kept_boxes.append(track.box)
        return keep

    def seed(self, boxes: np.ndarray, ids: list[int]) -> None:
        """Start from known faces (a resumed run's last frame), to be found again by the detector; new ids
        continue after the largest."""
        boxes = as_boxes(boxes)
        self._tracks = [_Track(int(i), b.copy(), b.copy(), carried=False) for b, i in zip(boxes, ids)]
        if ids:
            self._next_id = max(self._next_id, max(ids) + 1)

    def reserve_ids(self, last_used: int) -> None:
        """Never hand out an id up to ``last_used`` (ids already written by an earlier run)."""
        self._next_id = max(self._next_id, last_used + 1)

    @property
    def live_ids(self) -> list[int]:
        """Ids of the tracks currently kept (carried or waiting to be found again)."""
        return [t.face_id for t in self._tracks]

    def _new_track(self, box: np.ndarray, score: float, quick: bool) -> _Track:
        track = _Track(self._next_id, box.copy(), box.copy(), score, quick=quick)
        self._next_id += 1
        self._tracks.append(track)
        return track

    def reset(self) -> None:
        """Forget every track; ids keep counting up."""
        self._tracks = []
        self._since_full = self.full_every


def _overlap(boxes: np.ndarray, tracks: list[_Track]) -> np.ndarray:
    """IoU ``(N, M)`` of face boxes with tracks: the larger of the overlap with the carried box and with the
    box of the track's latest detection."""
    carried = iou_matrix(boxes, np.stack([t.box for t in tracks]))
    return np.maximum(carried, iou_matrix(boxes, np.stack([t.seen for t in tracks])))


def _face_boxes(detections: np.ndarray) -> np.ndarray:
    """``(N, 4)`` face boxes (``crop.face_box_from_detection``) of detector rows ``(N, 4+)``."""
    rows = as_boxes(detections)
    return np.array([face_box_from_detection(row) for row in rows]).reshape(-1, 4)


def _near(box: np.ndarray, other: np.ndarray) -> bool:
    """Whether ``box`` is centred within ``NEAR_CENTRE`` of ``other``'s side of its centre, at a like size."""
    side, other_side = max(box[2] - box[0], box[3] - box[1]), max(other[2] - other[0], other[3] - other[1])
    if other_side <= 0 or not 2 / 3 <= side / other_side <= 3 / 2:
        return False
    shift = np.hypot((box[0] + box[2] - other[0] - other[2]) / 2, (box[1] + box[3] - other[1] - other[3]) / 2)
    return bool(shift <= NEAR_CENTRE * other_side)


def _cover(box: np.ndarray, other: np.ndarray) -> float:
    """The share of ``other``'s area that ``box`` holds."""
    w = min(box[2], other[2]) - max(box[0], other[0])
    h = min(box[3], other[3]) - max(box[1], other[1])
    area = (other[2] - other[0]) * (other[3] - other[1])
    return float(max(w, 0.0) * max(h, 0.0) / area) if area > 0 else 0.0
