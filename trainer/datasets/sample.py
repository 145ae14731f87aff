"""The one sample type every dataset reader returns."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FaceSample:
    """One annotated face in its original image.

    ``landmarks`` are 0-based pixel coordinates with pixel centres at integers (OpenCV's), ``(L, 2)``
    float32, ``L = 0`` for a dataset without landmarks. ``mask`` is True where a landmark is
    annotated, ``visibility`` True where it is visible (equal to ``mask`` when the dataset has no
    occlusion labels). ``pose`` is ``(yaw, pitch, roll)`` in degrees in ``app.core.pose``'s
    convention, or None. ``box`` is ``(x1, y1, x2, y2)``, or None when the dataset gives no box and
    no landmarks (the evaluator then runs the app's face detector).
    """

    image: np.ndarray
    landmarks: np.ndarray
    mask: np.ndarray
    visibility: np.ndarray
    pose: np.ndarray | None
    box: np.ndarray | None
    name: str
