"""The Basel Face Model and 3DDFA_V2's regressor from ``../shared/data/face3d``: a face's 62 parameters from a box.

Training material only (``face3d/README.md``): never shipped, never called by the app, never run on
``helen_test``. Everything here is in the project's image-like model frame (x right, y down, z towards
the viewer; the BFM's y-up frame with y negated) so that ``app.core.pose.rotation_matrix`` poses it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from app.core.pose import matrix_to_angles

FACE3D = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "face3d"
INPUT_SIZE = 120
FLIP_Y = np.diag([1.0, -1.0, 1.0])


@dataclass(frozen=True)
class RegressedFace:
    """The regressor's fit of one face in its photograph: ``angles`` (yaw, pitch, roll) radians in
    ``app.core.pose``'s convention, ``scale`` pixels per BFM unit, ``shift`` ``(2,)`` where the model's
    origin projects (0-based pixels), ``coefficients`` ``(50,)`` 40 shape then 10 expression."""

    angles: np.ndarray
    scale: float
    shift: np.ndarray
    coefficients: np.ndarray


class Face3D:
    """BFM bases (68-point shape and expression, dense mean mesh) and the regressor, loaded once."""

    def __init__(self, folder: Path = FACE3D) -> None:
        import onnxruntime

        bfm = np.load(folder / "bfm68.npz")
        dense = np.load(folder / "bfm_dense_mean.npz")
        params = np.load(folder / "tddfa_v2_params.npz")
        flip = np.tile([1.0, -1.0, 1.0], 68)[:, None]
        self.mean68 = (bfm["u"].astype(np.float64) * flip[:, 0]).reshape(68, 3)
        self.basis = np.hstack([bfm["w_shp"], bfm["w_exp"]]).astype(np.float64) * flip    # (204, 50)
        self.dense_vertices = dense["vertices"].astype(np.float64) @ FLIP_Y
        self.triangles = dense["triangles"].astype(np.int64)
        self.keypoints = dense["keypoints68"].astype(np.int64)
        self.param_mean = params["param_mean"].astype(np.float64)
        self.param_std = params["param_std"].astype(np.float64)
        self._session = onnxruntime.InferenceSession(str(folder / "tddfa_v2_mb05.onnx"),
                                                     providers=["CPUExecutionProvider"])

    def shape68(self, coefficients: np.ndarray) -> np.ndarray:
        """The 68 model-frame points ``(68, 3)`` of shape and expression ``coefficients`` ``(50,)``."""
        return self.mean68 + (self.basis @ np.asarray(coefficients, np.float64)).reshape(68, 3)

    def regress(self, image_bgr: np.ndarray, box: np.ndarray) -> RegressedFace:
        """The regressor's fit from a box ``(x1, y1, x2, y2)`` (0-based pixels; the 68 landmarks' min/max,
        the crop policy the recipe was verified with), read out as ``face3d/README.md`` steps 1–6."""
        x1, y1, x2, y2 = (float(v) for v in box)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        side = np.sqrt(2.0) * max(x2 - x1, y2 - y1)
        sx, sy = cx - side / 2, cy - side / 2
        crop = _crop(image_bgr, round(sx), round(sy), round(sx + side), round(sy + side))
        crop = cv2.resize(crop, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
        blob = ((crop.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        output = self._session.run(None, {"input": blob})[0][0].astype(np.float64)
        param = output * self.param_std + self.param_mean
        camera = param[:12].reshape(3, 4)
        k = side / INPUT_SIZE
        # Image x = k (A0 · X_up + t0 - 1) + sx, y = k (120 - A1 · X_up - t1) + sy, with X_up = F X.
        affine = k * np.stack([camera[0, :3] @ FLIP_Y, -camera[1, :3] @ FLIP_Y])
        norms = np.linalg.norm(affine, axis=1)
        r1, r2 = affine[0] / norms[0], affine[1] / norms[1]
        u, _, vt = np.linalg.svd(np.stack([r1, r2, np.cross(r1, r2)]))
        rotation = u @ vt
        shift = np.array([k * (camera[0, 3] - 1.0) + sx, k * (INPUT_SIZE - camera[1, 3]) + sy])
        return RegressedFace(angles=matrix_to_angles(rotation), scale=float(norms.mean()), shift=shift,
                             coefficients=param[12:62].copy())


def _crop(image: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """``image[y1:y2, x1:x2]`` with zeros where the window leaves the image."""
    height, width = image.shape[:2]
    out = np.zeros((y2 - y1, x2 - x1) + image.shape[2:], image.dtype)
    sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    if sx2 > sx1 and sy2 > sy1:
        out[sy1 - y1:sy2 - y1, sx1 - x1:sx2 - x1] = image[sy1:sy2, sx1:sx2]
    return out
