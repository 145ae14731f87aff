"""Head pose from 68 landmarks: weak-perspective PnP of the inner 51 points with the model's mean face.

One definition, two uses. The trainer labels 300W-style faces with it (the MNN paper's protocol:
POSIT with a mean face; here ``pose.fit_pose``, the camera ``π`` of ``L_AE``). Full mode reports the
pose of its final landmarks (the OR's, else the heatmap peaks) with it, because that pose follows the
landmarks the face actually shows: on the training split's 121 validation faces it is 2.1° from the
labels (mean MAE) where the network's own ``fc_pose`` is 5.7° (epoch-20 models), and on turned
renders of those faces 17.6° against 22.7°. Pose-only mode keeps ``fc_pose``: it has no landmarks.

Only the inner points 17–67 are fitted: 300W's jaw points follow the visible contour, not fixed 3D
points, and bias PnP on turned faces (``../shared/CONVENTIONS.md``; HopeNet section 4.2).
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


def pnp_weights(mask: np.ndarray) -> np.ndarray:
    """Per-landmark PnP weights: annotated inner points 1, jaw line and missing points 0."""
    weights = np.zeros(len(mask))
    weights[INNER_POINTS] = 1.0
    return weights * np.asarray(mask, dtype=np.float64)


def pose_from_landmarks(landmarks: np.ndarray, mask: np.ndarray, mean_face: np.ndarray) -> np.ndarray | None:
    """The fit itself, for one face: ``(yaw, pitch, roll, tx, ty, tz)`` (radians; translation in the
    landmarks' unit) or None. The trainer labels faces with it; ``with_landmark_pose`` applies it to a batch.

    None when the layout is not the mean face's (68 points) or fewer than 6 usable inner points remain.
    """
    if len(landmarks) != len(mean_face) or len(mean_face) != LANDMARK_COUNT:
        return None
    weights = pnp_weights(np.asarray(mask, bool) & np.isfinite(landmarks).all(1))
    if (weights > 0).sum() < MIN_POINTS:
        return None
    return fit_pose(landmarks, mean_face, weights)


def with_landmark_pose(out: EstimatorOutput, info: ModelInfo) -> EstimatorOutput:
    """Full-mode ``out`` with ``pose`` replaced by ``pose_from_landmarks`` of each face's landmarks (degrees,
    crop units): how full mode reports its pose.

    ``pose_proj`` is kept. A face whose landmarks give no pose (another layout, non-finite points)
    keeps the network's ``fc_pose``.
    """
    if out.landmarks is None or len(out.landmarks) == 0:
        return out
    pose = np.array(out.pose, dtype=np.float64, copy=True)
    everything = np.ones(out.landmarks.shape[1], bool)
    for face, points in enumerate(out.landmarks):
        fitted = pose_from_landmarks(to_normalised(points, info.input_size), everything, info.mean_face)
        if fitted is not None and np.isfinite(fitted).all():
            pose[face] = np.r_[np.degrees(fitted[:3]), fitted[3:]]
    return dataclasses.replace(out, pose=pose.astype(out.pose.dtype))
