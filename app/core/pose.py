"""Head-pose conventions: Euler angles, rotation matrices, the weak-perspective camera and drawn axes.

This module is the one owner of the pose convention; the trainer, the runtime and the overlay call it.

Frames. Points are stored image-like (as ``bfm68.txt`` and AFLW2000-3D ``pt3d_68``): x to the image
right, y down, z towards the viewer. Angles follow 300W-LP/AFLW2000 ``Pose_Para`` = [pitch, yaw,
roll]: with y negated (a right-handed, y-up frame) the rotation that poses the mean face is
``R_up = (Rz(roll) @ Ry(yaw) @ Rx(pitch)).T``; in the stored image-like frame it is
``R = F @ R_up @ F`` with ``F = diag(1, -1, 1)`` (``../shared/CONVENTIONS.md``, checked in tests).

Pose vector. ``p = (yaw, pitch, roll, tx, ty, tz)``: angles in radians inside the network (degrees
everywhere outside it), translation in normalised crop coordinates.

Camera ``π``. Weak perspective on the normalised crop (x, y in [-1, 1], y down, see ``crop.py``):
``π(p, X) = (R X)[:, :2] / tz + (tx, ty)``; ``tz`` is the face's distance in units of the mean face
(scale ``1 / tz``), ``tx, ty`` where the face centre projects. Weak perspective is what POSIT
(the paper's labeller) assumes and keeps ``L_AE`` smooth.

The functions that the trainer differentiates take ``xp`` (``numpy`` or ``torch``) so that one
definition serves both.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

TZ_MIN = 0.05
"""Smallest distance ``tz`` a network prediction is clamped to before ``project``; keeps ``1 / tz`` finite."""


def wrap_degrees(angles: Any) -> np.ndarray:
    """Angles in degrees brought into [-180, 180): the one rule for angle differences and wrapped smoothing."""
    return (np.asarray(angles, dtype=np.float64) + 180.0) % 360.0 - 180.0


def rotation_matrix(angles: Any, xp: Any = np) -> Any:
    """Rotation (image-like frame) for ``angles[..., :3]`` = (yaw, pitch, roll) in radians."""
    yaw, pitch, roll = angles[..., 0], angles[..., 1], angles[..., 2]
    cy, sy = xp.cos(yaw), xp.sin(yaw)
    cp, sp = xp.cos(pitch), xp.sin(pitch)
    cr, sr = xp.cos(roll), xp.sin(roll)
    # M = Rz(roll) @ Ry(yaw) @ Rx(pitch) written out; the pose is F @ M.T @ F.
    m00, m01, m02 = cr * cy, cr * sy * sp - sr * cp, cr * sy * cp + sr * sp
    m10, m11, m12 = sr * cy, sr * sy * sp + cr * cp, sr * sy * cp - cr * sp
    m20, m21, m22 = -sy, cy * sp, cy * cp
    rows = [
        [m00, -m10, m20],
        [-m01, m11, -m21],
        [m02, -m12, m22],
    ]
    return xp.stack([xp.stack(r, -1) for r in rows], -2)


def matrix_to_angles(rotation: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) in radians of an image-like-frame rotation; inverse of ``rotation_matrix``."""
    f = np.diag([1.0, -1.0, 1.0])
    m = (f @ np.asarray(rotation, dtype=np.float64) @ f).swapaxes(-1, -2)
    pitch = np.arctan2(m[..., 2, 1], m[..., 2, 2])
    yaw = np.arcsin(np.clip(-m[..., 2, 0], -1.0, 1.0))
    roll = np.arctan2(m[..., 1, 0], m[..., 0, 0])
    return np.stack([yaw, pitch, roll], -1)


def project(pose: Any, points3d: Any, xp: Any = np) -> Any:
    """The camera ``π``: mean-face points ``(L, 3)`` posed by ``pose[..., 6]`` → ``(..., L, 2)`` crop coords."""
    rot = rotation_matrix(pose, xp)
    posed = points3d @ rot.swapaxes(-1, -2)
    return posed[..., :2] / pose[..., 5:6, None] + pose[..., None, 3:5]


def fit_pose(points2d: np.ndarray, points3d: np.ndarray, weights: np.ndarray | None = None,
             iterations: int = 12) -> np.ndarray:
    """Weak-perspective PnP: the pose ``p`` (radians) minimising ``Σ w ‖x − π(p, X)‖²``.

    ``points2d`` may be in any unit (normalised crop coordinates for labels); the returned ``tz``
    and ``tx, ty`` are in that unit.
    Initialised from the least-squares affine camera made orthonormal (POSIT's scaled-orthographic
    model), then refined by Gauss–Newton with analytic derivatives: a small rotation ``ω`` applied on
    the left of ``R``, the scale ``1 / tz`` and ``(tx, ty)``. Cheap enough (about 1.5 ms for 51 points
    on a busy core of the 2-core CPU) to run on every face in full mode.
    """
    x = np.asarray(points2d, dtype=np.float64)
    big_x = np.asarray(points3d, dtype=np.float64)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = (w > 0) & np.isfinite(x).all(1)
    if keep.sum() < 4:
        raise ValueError(f"fit_pose needs at least 4 weighted landmarks, got {int(keep.sum())}")
    x, big_x, w = x[keep], big_x[keep], w[keep]
    # Fit in centred, unit-spread coordinates for conditioning; map back at the end.
    centre = np.average(x, 0, w)
    spread = float(np.sqrt(np.average(((x - centre) ** 2).sum(1), weights=w))) or 1.0
    x = (x - centre) / spread
    rot, scale, shift = _affine_initial_camera(x, big_x, w)
    sw = np.sqrt(w)[:, None, None]
    jac = np.zeros((len(x), 2, 6))
    jac[:, 0, 4] = jac[:, 1, 5] = 1.0
    for _ in range(iterations):
        v = big_x @ rot.T
        residual = scale * v[:, :2] + shift - x
        # d(ω × v)/dω for the image rows: row 0 is (0, v2, −v1), row 1 is (−v2, 0, v0).
        jac[:, 0, 1], jac[:, 0, 2] = scale * v[:, 2], -scale * v[:, 1]
        jac[:, 1, 0], jac[:, 1, 2] = -scale * v[:, 2], scale * v[:, 0]
        jac[:, :, 3] = v[:, :2]
        j = (jac * sw).reshape(-1, 6)
        delta = np.linalg.solve(j.T @ j, -j.T @ (residual[..., None] * sw).ravel())
        rot = cv2.Rodrigues(delta[:3])[0] @ rot
        scale, shift = max(scale + delta[3], 1e-6), shift + delta[4:]
        if np.abs(delta).max() < 1e-9:
            break
    return np.concatenate([matrix_to_angles(rot), centre + spread * shift, [1.0 / (scale * spread)]])


def _affine_initial_camera(x: np.ndarray, big_x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Scaled-orthographic camera (rotation, scale, shift) from the weighted least-squares affine ``x ≈ A X + b``."""
    xc = x - np.average(x, 0, w)
    bc = big_x - np.average(big_x, 0, w)
    sw = np.sqrt(w)[:, None]
    affine, *_ = np.linalg.lstsq(bc * sw, xc * sw, rcond=None)
    r1, r2 = affine[:, 0], affine[:, 1]
    scale = (np.linalg.norm(r1) + np.linalg.norm(r2)) / 2
    u, _, vt = np.linalg.svd(np.stack([r1, r2, np.cross(r1, r2) / scale]))
    rot = u @ vt
    if np.linalg.det(rot) < 0:
        rot = u @ np.diag([1.0, 1.0, -1.0]) @ vt
    shift = np.average(x, 0, w) - scale * (rot @ np.average(big_x, 0, w))[:2]
    return rot, float(scale), shift


def facing_direction(angles: Any) -> np.ndarray:
    """Unit vectors ``(..., 3)`` (image-like frame) along which faces with ``angles[..., :3]`` (radians)
    look: ``(0, 0, 1)`` at the viewer, negative x towards the image left, negative y up."""
    return rotation_matrix(np.asarray(angles, dtype=np.float64))[..., :, 2]


def axes_endpoints(angles_deg: np.ndarray, centre: np.ndarray, length: float) -> np.ndarray:
    """Image end points ``(3, 2)`` of the head's x (right), y (up) and z (facing) axes drawn from ``centre``."""
    rot = rotation_matrix(np.radians(np.asarray(angles_deg, dtype=np.float64)))
    head_axes = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    directions = (rot @ head_axes.T).T[:, :2]
    return np.asarray(centre, dtype=np.float64)[None] + length * directions


def transform_angles(angles: np.ndarray, in_plane_deg: float = 0.0, mirror: bool = False) -> np.ndarray:
    """(yaw, pitch, roll) radians after the image is turned ``in_plane_deg`` (counter-clockwise on screen)
    and then, if ``mirror``, flipped left-right, matching ``crop.crop_transform``."""
    a = np.radians(in_plane_deg)
    turn = np.array([[np.cos(a), np.sin(a), 0.0], [-np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    rot = turn @ rotation_matrix(np.asarray(angles, dtype=np.float64))
    if mirror:
        flip = np.diag([-1.0, 1.0, 1.0])
        rot = flip @ rot @ flip
    return matrix_to_angles(rot)


def format_angle(degrees: float, decimals: int = 0, signed: bool = False) -> str:
    """``degrees`` as text with ``decimals`` places, never ``-0``: a value that rounds to zero prints as zero
    (``signed`` puts ``+`` before positive values, as the overlay labels do)."""
    value = round(float(degrees), decimals)
    if value == 0:
        value = 0.0
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"
