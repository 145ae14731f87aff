"""Face crops: the one crop rule, the warp into a crop, and the way back to frame coordinates.

The crop rule (``crop_square``): a face box, landmark-style as the training data label faces, is
made square on its longer side and enlarged by 30%; training may then shift and zoom that square.
A detector box first becomes the face box it stands for (``face_box_from_detection``). The runtime
(``app.core.estimator``), evaluation, quantisation and training all crop by this rule.

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
faces, measured by ``python -m trainer calibrate-detector`` (spread 2%, 4% and 7%, inside the
training augmentation's ±5% shift and ±15% scale)."""


def face_box_from_detection(box: np.ndarray, fit: tuple[float, float, float] = DETECTOR_BOX_FIT) -> np.ndarray:
    """The landmark-style face box ``(x1, y1, x2, y2)`` that a detector box stands for, so that the app
    crops faces the way the network was trained."""
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)[:4]
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2 + fit[0] * w, (y1 + y2) / 2 + fit[1] * h
    half = max(w, h) * fit[2] / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


def detector_box_fit(detector_box: np.ndarray, face_box: np.ndarray) -> np.ndarray:
    """``(dx, dy, side ratio)`` of ``face_box`` relative to ``detector_box``, in ``DETECTOR_BOX_FIT``'s terms:
    what ``face_box_from_detection`` undoes (``trainer.calibrate_detector`` takes the medians)."""
    x1, y1, x2, y2 = np.asarray(detector_box, dtype=np.float64)[:4]
    f1, g1, f2, g2 = np.asarray(face_box, dtype=np.float64)[:4]
    w, h = x2 - x1, y2 - y1
    return np.array([((f1 + f2) - (x1 + x2)) / 2 / w, ((g1 + g2) - (y1 + y2)) / 2 / h,
                     max(f2 - f1, g2 - g1) / max(w, h)])


def crop_square(face_box: np.ndarray, shift: tuple[float, float] = (0.0, 0.0), zoom: float = 1.0) -> np.ndarray:
    """The crop rule: the frame square ``(x1, y1, x2, y2)`` a face is cropped to, before any rotation.

    ``face_box`` (landmark-style, ``face_box_from_detection`` for a detector's) made square on its
    longer side and enlarged by ``ENLARGE``; training moves its centre by ``shift`` (fractions of that
    side) and divides its side by ``zoom``.
    """
    x1, y1, x2, y2 = np.asarray(face_box, dtype=np.float64)[:4]
    side = max(x2 - x1, y2 - y1) * ENLARGE
    cx = (x1 + x2) / 2 + shift[0] * side
    cy = (y1 + y2) / 2 + shift[1] * side
    half = side / zoom / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


def crop_faces(frame_bgr: np.ndarray, face_boxes: np.ndarray, size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(N, size, size, 3)`` RGB crops of ``face_boxes`` by the crop rule (``crop_square``), with each
    crop's frame → crop affine (``unwarp_points`` maps model outputs back)."""
    transforms = [crop_transform(crop_square(box), size) for box in face_boxes]
    crops = np.zeros((len(transforms), size, size, 3), np.uint8)
    for i, transform in enumerate(transforms):
        crops[i] = cv2.cvtColor(warp_image(frame_bgr, transform, size), cv2.COLOR_BGR2RGB)
    return crops, transforms


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


def translation_to_frame(translation: np.ndarray, transform: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """The pose camera's ``(tx, ty, tz)`` of a ``size``² crop (normalised crop coordinates, ``tz`` in mean-face
    units, ``pose.py``) in frame terms: the face centre ``(cx, cy)`` in frame pixels, where the camera
    projects the mean face's origin, and the scale in frame pixels per mean-face unit.

    For a crop of the square ``(x1, y1, x2, y2)`` with side ``s``, unrotated:
    ``cx = (x1 + x2) / 2 + tx · s / 2``, ``cy = (y1 + y2) / 2 + ty · s / 2``, ``scale = s / (2 · tz)``.
    """
    tx, ty, tz = np.asarray(translation, dtype=np.float64)[:3]
    centre = unwarp_points(from_normalised(np.array([tx, ty]), size), transform)
    frame_per_crop_pixel = 1.0 / np.sqrt(abs(np.linalg.det(np.asarray(transform, dtype=np.float64)[:, :2])))
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = float(size / (2.0 * tz) * frame_per_crop_pixel)
    return centre, scale
