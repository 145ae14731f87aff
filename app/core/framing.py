"""Framing from the face: the face box that the network's own output puts around a face, and when to crop again.

The detector's box is only a guess at the face (on a small face in a wide shot BlazeFace's box can be
much larger than the face and sit on the hair). Once the network has seen a crop, its output says where
the face is, in the landmark-style convention that ``crop.face_box_from_detection`` maps a detector box
to and that the crop rule (``crop.crop_square``) expects (``face_box``):

- full mode: the box of the final 68 landmarks (the training crops are the landmark box, +30%);
- pose mode: the box of the model's mean face posed by the estimate (angles, face centre and scale in
  frame pixels: ``centre + scale · (R · X)[:, :2]``, ``pose.project`` in frame terms).

Only full mode's box follows the face rather than the crop (``REFRAME_MODES``). There a face whose used
box and face-derived box overlap by less than ``REFRAME_IOU`` is cropped again, once, from the
face-derived box (``needs_reframe``; the pipeline re-runs those faces only), provided the crop framed a
face at all (``is_framed``: a box of plausible size centred in the crop), and in video each face's next
crop is carried from this box (``app.core.tracking.FaceTracker``). One re-crop corrects a box up to about
1.5 times the face and a fifth of it off-centre; a box twice the face yields landmarks spread over the crop,
which in video converge over the next frames' crops.
"""
from __future__ import annotations

import numpy as np

from app.core.crop import crop_square, landmark_box
from app.core.pose import rotation_matrix
from app.core.results import FaceEstimate
from app.core.tracking import iou_matrix

REFRAME_IOU = 0.75
"""A face whose used box overlaps its face-derived box by less than this is cropped again from the latter.
In full mode, on 11 d18 frames, a face cropped from its own landmark box overlaps the next landmark box by
0.96-0.99, one cropped from a BlazeFace box by 0.72-0.85 at full size and 0.60-0.69 at 1/4 size: a face
the detector framed well costs no second run; a carried face (next frame's crop) rarely does."""

REFRAME_MODES = ("full",)
"""The modes whose face-derived box follows the face, not the crop, so that cropping again (and carrying a
face's crop to the next frame) helps. Crops of 12 d18 frames from their landmark box shifted by ±15% of its
side, or zoomed by 1.3 and 1/1.3 (``python -m app.bench_framing follow``, medians): full mode's landmark box
stays on the face (centre within 0.016 of a side, side 0.965-1.015); pose mode's posed mean face moves with
the crop (centre offset +0.16 and -0.17, side 1.17 and 0.89), and ``fc_pose_proj``'s does likewise. Pose
mode therefore crops every face from a detection in every frame and is never cropped again."""

MIN_FACE_PX = 8.0
"""A face-derived box narrower than this (frame pixels) is no face to carry."""

SIDE_RATIO = (0.3, 2.0)
"""A face-derived box whose side is outside these multiples of the used box's is no face the crop framed."""


def posed_mean_face(estimate: FaceEstimate, mean_face: np.ndarray) -> np.ndarray:
    """``(L, 2)`` frame pixels of the model's mean face ``(L, 3)`` posed by ``estimate``'s angles, centre and scale."""
    rotation = rotation_matrix(np.radians(np.asarray(estimate.angles, dtype=np.float64)))
    posed = np.asarray(mean_face, dtype=np.float64) @ rotation.T
    return np.asarray(estimate.centre, dtype=np.float64) + estimate.scale * posed[:, :2]


def face_box(estimate: FaceEstimate, mean_face: np.ndarray) -> np.ndarray | None:
    """The landmark-style face box ``(x1, y1, x2, y2)`` the network's output puts around the face: the box of
    its landmarks (full mode) or of the posed mean face (pose mode); None where it is not finite."""
    points = estimate.landmarks if estimate.landmarks is not None else posed_mean_face(estimate, mean_face)
    points = np.asarray(points, dtype=np.float64)
    if not np.isfinite(points).all():
        return None
    return landmark_box(points)


def agreement(used_box: np.ndarray, derived_box: np.ndarray | None) -> float:
    """IoU of the box a face was cropped from and its face-derived box (0 where there is none)."""
    if derived_box is None:
        return 0.0
    return float(iou_matrix(np.asarray(used_box)[None, :4], np.asarray(derived_box)[None, :4])[0, 0])


def is_framed(used_box: np.ndarray, derived_box: np.ndarray | None) -> bool:
    """Whether the network framed a face in the crop of ``used_box``: a finite face-derived box at least
    ``MIN_FACE_PX`` wide, of a side within ``SIDE_RATIO`` of the used box's, centred inside the crop square."""
    if derived_box is None:
        return False
    side = max(derived_box[2] - derived_box[0], derived_box[3] - derived_box[1])
    used_side = max(used_box[2] - used_box[0], used_box[3] - used_box[1])
    if side < MIN_FACE_PX or not SIDE_RATIO[0] * used_side <= side <= SIDE_RATIO[1] * used_side:
        return False
    x1, y1, x2, y2 = crop_square(used_box)
    cx, cy = (derived_box[0] + derived_box[2]) / 2, (derived_box[1] + derived_box[3]) / 2
    return bool(x1 <= cx <= x2 and y1 <= cy <= y2)


def reframes(mode: str) -> bool:
    """Whether faces are cropped again from, and carried by, their face-derived box in ``mode`` (``REFRAME_MODES``)."""
    return mode in REFRAME_MODES


def needs_reframe(used_box: np.ndarray, derived_box: np.ndarray | None, min_iou: float = REFRAME_IOU) -> bool:
    """Whether a face should be cropped again from ``derived_box``: the crop framed a face (``is_framed``) whose
    box disagrees with the used box (IoU below ``min_iou``)."""
    return is_framed(used_box, derived_box) and agreement(used_box, derived_box) < min_iou
