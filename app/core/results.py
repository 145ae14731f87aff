"""The data the runtime hands around: the network's outputs for a batch of crops, and faces and frames.

Plain frozen dataclasses over numpy, importing nothing heavier, so that pure-numpy modules
(``landmark_pose``, ``refiner``), the overlay and the trainer's data workers can use them without
loading ONNX Runtime or MediaPipe. ``ModelInfo``, what a model's metadata says, stays in ``model_io``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EstimatorOutput:
    """The network's outputs for a batch of ``N`` crops, in the ``model_io`` units.

    ``pose`` and ``pose_proj`` are ``(N, 6)``: yaw, pitch, roll in degrees, then tx, ty, tz.
    Full mode adds ``landmarks`` ``(N, L, 2)`` in crop pixels, ``visibility`` ``(N, L)`` and
    ``heatmaps`` ``(N, L, S, S)``; pose-only mode leaves them ``None``.
    """

    pose: np.ndarray
    pose_proj: np.ndarray
    landmarks: np.ndarray | None = None
    visibility: np.ndarray | None = None
    heatmaps: np.ndarray | None = None


@dataclass(frozen=True)
class FaceEstimate:
    """What the network, the refiner and the pose fit make of one face box, in frame coordinates
    (``PoseEstimator.estimate_faces``, the one per-face path).

    ``angles`` is the pose the app reports: the network's ``fc_pose`` in pose-only mode, the pose of
    the final landmarks in full mode; ``network_angles`` and ``network_landmarks`` are the network's
    own, before the refiner and the fit (evaluation scores both).
    """

    box: np.ndarray
    """``(4,)`` x1, y1, x2, y2 in frame pixels: the face box that was cropped."""
    square: np.ndarray
    """``(4,)`` the crop square in frame pixels (``crop.crop_square`` of ``box``)."""
    angles: np.ndarray
    """``(3,)`` yaw, pitch, roll in degrees, ``pose.py``'s convention."""
    centre: np.ndarray
    """``(2,)`` frame pixels where the pose projects the mean face's origin (the face centre)."""
    scale: float
    """Frame pixels per mean-face unit (the mean face's outer eye corners are 1.39 units apart)."""
    landmarks: np.ndarray | None
    """``(L, 2)`` frame pixels, the refiner's where there is one; full mode only."""
    visibility: np.ndarray | None
    """``(L,)`` probability that each landmark is visible, full mode only."""
    network_angles: np.ndarray
    """``(3,)`` degrees: the network's ``fc_pose`` (equal to ``angles`` in pose-only mode)."""
    network_landmarks: np.ndarray | None
    """``(L, 2)`` frame pixels: the network's heatmap peaks, before the refiner; full mode only."""
    quality: float = math.nan
    """0–1, how face-like and well framed the crop is (``app.core.quality``); NaN without ``quality.json``."""
    valid: bool = True
    """Whether ``quality`` clears the threshold fitted with it: False for a crop judged not to be a face."""


@dataclass(frozen=True)
class FaceResult:
    """One face in one frame: its tracked id, the box it was cropped from, detector score, pose, and (full mode)
    landmarks."""

    face_id: int
    box: np.ndarray
    """``(4,)`` x1, y1, x2, y2 in frame pixels: the face box the pose was cropped from (landmark-style,
    ``tracking.py``)."""
    score: float
    """Confidence of the face's latest detection, 0-1 (a carried face keeps its last detection's)."""
    yaw: float
    pitch: float
    roll: float
    """Angles in degrees, ``pose.py``'s convention."""
    centre: np.ndarray
    """``(2,)`` frame pixels where the pose projects the face centre (``FaceEstimate.centre``)."""
    scale: float
    """Frame pixels per mean-face unit (``FaceEstimate.scale``)."""
    landmarks: np.ndarray | None
    """``(L, 2)`` frame pixels, full mode only."""
    visibility: np.ndarray | None
    """``(L,)`` probability that each landmark is visible, full mode only."""
    quality: float = math.nan
    """``FaceEstimate.quality``: 0–1, NaN where no quality scorer is in use."""
    valid: bool = True
    """``FaceEstimate.valid``: False for a detection judged not to be a face (drawn grey)."""


@dataclass(frozen=True)
class FrameResult:
    """Every face found in one frame, with the time each stage took."""

    index: int
    time_s: float
    faces: tuple[FaceResult, ...]
    timings_ms: dict[str, float]
    mode: str
    refiner: str | None = None
    """The label of the refiner that placed the landmarks (``"OR"``), or None (pose mode, or none in use)."""
    precision: str | None = None
    """``fp32`` or ``int8``: what the network ran at for this frame (None where no network ran)."""
