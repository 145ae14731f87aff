"""Head pose from 68 landmarks with the model's mean face: the training labels' fit, and full mode's pose.

Two fits, both weak-perspective PnP (``pose.fit_pose``) of the landmarks with the mean face:

- ``pose_from_landmarks``: the 51 inner points 17–67 alike. It labels the 300W training faces (the MNN
  paper's protocol) and ``helen_test`` in ``trainer.evaluate``, and starts the 3D fit of
  ``trainer.fit_labels``; it stays as it is, since models were trained on it. The jaw line is left out
  because 300W's jaw points follow the visible contour, not fixed 3D points (HopeNet section 4.2).
- ``rigid_pose_from_landmarks``: full mode's reported pose. Expressions move the mouth, not the skull: with
  the mouth in the fit an open or pursed mouth turned the head (on ``videos/d6.mp4`` 46% of frames read a
  yaw more than 10° from pose mode's). It weighs the points that move least with an expression
  (``RIGID_WEIGHTS``: nose 2, eyes 1, brows 0.5, mouth and jaw 0), then expresses the pose in the
  frontal frame below. On the training split's 121 validation faces, from the shipped full model's
  landmarks, it is 2.96° from their 3D-fit labels where the 51-point fit is 3.57° (but 2.69° against 1.99°
  from the 51-point fit of their annotations, which favours the 51-point fit by construction).

Frontal (pitch 0, and yaw and roll 0) is the frame of the Basel Face Model, whose mean is the model's mean
face (``bfm68.txt``, within 0.1° of ``face3d``'s BFM frame): the frame of AFLW2000-3D and 300W-LP
``Pose_Para``, of 3DDFA_V2 and of the 3D-fit pose labels (``trainer.fit_labels``, shape and expression
fitted too). 300W's rigid points are not the BFM's vertices (brows and nose are annotated elsewhere), so
their fit with the mean face alone reads the head 2.64° more raised than the 3D fit does (mean over the
1,207 300W training faces); ``FRONTAL_PITCH_DEG`` takes that off full mode's pitch, and nothing else.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from app.core.crop import to_normalised
from app.core.model_io import ModelInfo
from app.core.pose import fit_pose
from app.core.results import EstimatorOutput

INNER_POINTS = slice(17, 68)
LANDMARK_COUNT = 68
MIN_POINTS = 6

BROWS, NOSE, EYES, MOUTH = slice(17, 27), slice(27, 36), slice(36, 48), slice(48, 68)
RIGID_WEIGHTS = np.zeros(LANDMARK_COUNT)
"""Per-landmark weights of full mode's fit (iBUG 68 order). Chosen on the training split's 121 validation
faces, among mouth 0–1, mouth corners 0–1, brows 0.5–1 and nose 1–2, for the least sum of the error against
their 3D-fit pose labels and of the pose change when the BFM expression basis (2 standard deviations of
3DDFA_V2's expression coefficients) moves their landmarks: 3.19° + 0.85°, where the 51 points alike give
3.48° + 3.08°."""
RIGID_WEIGHTS[BROWS], RIGID_WEIGHTS[NOSE], RIGID_WEIGHTS[EYES], RIGID_WEIGHTS[MOUTH] = 0.5, 2.0, 1.0, 0.0

FRONTAL_PITCH_DEG = -2.6
"""Added to the rigid points' pitch (degrees) to express it in the frontal frame: the mean difference between
that pitch and the 3D-fit labels' on the 1,207 300W training faces, taken off. On the validation faces'
full-mode landmarks it takes the pitch error against their 3D-fit labels from 4.96° to 4.45°."""


def pnp_weights(mask: np.ndarray) -> np.ndarray:
    """Per-landmark weights of the labels' fit: annotated inner points 1, jaw line and missing points 0."""
    weights = np.zeros(len(mask))
    weights[INNER_POINTS] = 1.0
    return weights * np.asarray(mask, dtype=np.float64)


def _usable(landmarks: np.ndarray, mask: np.ndarray, mean_face: np.ndarray) -> np.ndarray | None:
    """``mask`` with non-finite points removed, or None where the layout is not the mean face's 68 points."""
    if len(landmarks) != len(mean_face) or len(mean_face) != LANDMARK_COUNT:
        return None
    return np.asarray(mask, bool) & np.isfinite(landmarks).all(1)


def pose_from_landmarks(landmarks: np.ndarray, mask: np.ndarray, mean_face: np.ndarray) -> np.ndarray | None:
    """The labels' fit, for one face: ``(yaw, pitch, roll, tx, ty, tz)`` (radians; translation in the
    landmarks' unit) or None.

    None when the layout is not the mean face's (68 points) or fewer than 6 usable inner points remain.
    """
    usable = _usable(landmarks, mask, mean_face)
    if usable is None:
        return None
    weights = pnp_weights(usable)
    if (weights > 0).sum() < MIN_POINTS:
        return None
    return fit_pose(landmarks, mean_face, weights)


def to_frontal_frame(angles: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) radians of the rigid points' fit in the frontal frame: pitch + ``FRONTAL_PITCH_DEG``
    (a turn about the camera's x axis before the head's yaw and roll, so yaw and roll stay as fitted)."""
    return np.asarray(angles, np.float64) + np.radians([0.0, FRONTAL_PITCH_DEG, 0.0])


def rigid_pose_from_landmarks(landmarks: np.ndarray, mask: np.ndarray, mean_face: np.ndarray) -> np.ndarray | None:
    """Full mode's fit, for one face: ``(yaw, pitch, roll, tx, ty, tz)`` as ``pose_from_landmarks`` gives them,
    from ``RIGID_WEIGHTS`` and in the frontal frame; an open mouth does not turn it.

    None when the layout is not the mean face's (68 points) or fewer than 6 usable weighted points remain.
    """
    usable = _usable(landmarks, mask, mean_face)
    if usable is None:
        return None
    weights = RIGID_WEIGHTS * usable
    if (weights > 0).sum() < MIN_POINTS:
        return None
    pose = fit_pose(landmarks, mean_face, weights)
    return np.r_[to_frontal_frame(pose[:3]), pose[3:]]


def with_landmark_pose(out: EstimatorOutput, info: ModelInfo) -> EstimatorOutput:
    """Full-mode ``out`` with ``pose`` replaced by ``rigid_pose_from_landmarks`` of each face's landmarks
    (degrees, crop units): how full mode reports its pose.

    ``pose_proj`` is kept. A face whose landmarks give no pose (another layout, non-finite points)
    keeps the network's ``fc_pose``.
    """
    if out.landmarks is None or len(out.landmarks) == 0:
        return out
    pose = np.array(out.pose, dtype=np.float64, copy=True)
    everything = np.ones(out.landmarks.shape[1], bool)
    for face, points in enumerate(out.landmarks):
        fitted = rigid_pose_from_landmarks(to_normalised(points, info.input_size), everything, info.mean_face)
        if fitted is not None and np.isfinite(fitted).all():
            pose[face] = np.r_[np.degrees(fitted[:3]), fitted[3:]]
    return dataclasses.replace(out, pose=pose.astype(out.pose.dtype))
