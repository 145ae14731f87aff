"""Face crops: the box the network sees, the warp into it, and the way back to frame coordinates.

Coordinates follow OpenCV: pixel centres at integers, 0-based. A crop is described by a 2×3
affine ``M`` from frame to crop pixels; ``warp_points`` and ``unwarp_points`` move landmarks both
ways. Normalised crop coordinates (the pose camera's, see ``pose.py``) put the crop's outer pixel
edges at -1 and +1.
"""
from __future__ import annotations

import cv2
import numpy as np

ENLARGE = 1.3
"""A detector or landmark box is enlarged by 30% and made square before cropping (the paper's protocol)."""


DETECTOR_BOX_FIT = (-0.0044, 0.0466, 0.9736)
"""Where the training crops' landmark box sits relative to a BlazeFace box: centre offset (dx, dy) in
detector-box widths and heights, and the ratio of sides. Medians over the 1,207 afw + helen_train
faces, measured by ``python -m trainer.calibrate_detector`` (spread 2%, 4% and 7%, inside the
training augmentation's ±5% shift and ±15% scale)."""


def face_box_from_detection(box: np.ndarray, fit: tuple[float, float, float] = DETECTOR_BOX_FIT) -> np.ndarray:
    """The landmark-style face box ``(x1, y1, x2, y2)`` that a detector box stands for, so that the app
    crops faces the way the network was trained."""
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)[:4]
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2 + fit[0] * w, (y1 + y2) / 2 + fit[1] * h
    half = max(w, h) * fit[2] / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


def square_box(box: np.ndarray, enlarge: float = ENLARGE) -> np.ndarray:
    """Square ``(x1, y1, x2, y2)`` centred on ``box`` whose side is the box's longer side × ``enlarge``."""
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)[:4]
    side = max(x2 - x1, y2 - y1) * enlarge
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def landmark_box(landmarks: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The rectangle ``(x1, y1, x2, y2)`` enclosing the (annotated) landmarks."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if mask is not None:
        pts = pts[np.asarray(mask, dtype=bool)]
    if len(pts) == 0:
        raise ValueError("landmark_box needs at least one annotated landmark")
    return np.array([*pts.min(0), *pts.max(0)])


def crop_transform(square: np.ndarray, size: int, angle_deg: float = 0.0, mirror: bool = False) -> np.ndarray:
    """2×3 affine from frame pixels to a ``size``² crop of ``square``, rotated by ``angle_deg`` about its centre.

    The square's outer edges map to the crop's outer pixel edges; a positive angle turns the image
    content counter-clockwise as seen on screen; ``mirror`` flips the crop left-right.
    """
    x1, y1, x2, y2 = np.asarray(square, dtype=np.float64)[:4]
    scale = size / (x2 - x1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    a = np.radians(angle_deg)
    c, s = np.cos(a) * scale, np.sin(a) * scale
    linear = np.array([[c, s], [-s, c]])
    if mirror:
        linear = np.array([[-1.0, 0.0], [0.0, 1.0]]) @ linear
    centre_out = np.array([size / 2 - 0.5, size / 2 - 0.5])
    offset = centre_out - linear @ np.array([cx, cy])
    return np.hstack([linear, offset[:, None]])


def warp_image(image: np.ndarray, transform: np.ndarray, size: int) -> np.ndarray:
    """The ``size``² crop of ``image`` under ``transform``, borders replicated, bilinear."""
    return cv2.warpAffine(image, transform, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def warp_points(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Frame → crop pixel coordinates for ``(..., 2)`` points."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ transform[:, :2].T + transform[:, 2]


def unwarp_points(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Crop → frame pixel coordinates for ``(..., 2)`` points; inverse of ``warp_points``."""
    return warp_points(points, cv2.invertAffineTransform(transform))


def to_normalised(points: np.ndarray, size: int) -> np.ndarray:
    """Crop pixels → normalised crop coordinates (outer pixel edges at ±1)."""
    return (2.0 * np.asarray(points, dtype=np.float64) + 1.0) / size - 1.0


def from_normalised(points: np.ndarray, size: int) -> np.ndarray:
    """Normalised crop coordinates → crop pixels; inverse of ``to_normalised``."""
    return ((np.asarray(points, dtype=np.float64) + 1.0) * size - 1.0) / 2.0
