"""The model's mean 3D face, built from ``bfm68.txt`` and saved with the model (checkpoint and ONNX metadata)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from trainer.landmark_layouts import IBUG68

DEFAULT_SOURCE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mean_face" / "bfm68.txt"


def build_mean_face(source: Path = DEFAULT_SOURCE, symmetrise: bool = True) -> np.ndarray:
    """``(68, 3)`` mean face in ``app.core.pose``'s frame: centred, unit RMS radius, mirror-symmetric.

    Symmetrising (averaging with its mirror image under the landmark permutation) makes mirror
    augmentation exact: the mirrored face's pose is the original's with yaw and roll negated.
    """
    points = np.loadtxt(source, dtype=np.float64)
    if points.shape != (68, 3):
        raise ValueError(f"{source}: expected 68 rows of x y z, got shape {points.shape}")
    points = points - points.mean(0)
    if symmetrise:
        mirrored = points[IBUG68.flip_array()] * np.array([-1.0, 1.0, 1.0])
        points = (points + mirrored) / 2
        points = points - points.mean(0)
    return points / np.sqrt((points ** 2).sum(1).mean())
