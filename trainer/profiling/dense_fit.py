"""A face's 3D fit for dense profiling: the regressor's fit refined to the annotated 68 landmarks, and the
dense mean face deformed to it.

Refinement. Gauss–Newton on a scaled-orthographic camera (rotation, scale, image shift: the pose stays
an exact rotation, so the label of a turned render is exactly the composed rotation) and the 40 shape +
10 expression coefficients, from the regressor's values, minimising the annotated points' pixel error
plus a prior ``((α − mean) / std)²`` with the regressor's parameter statistics. The 300W jaw points
(0–16) follow the visible contour rather than fixed points of the face, so they weigh half.

Dense shape. Only the dense *mean* face exists (``face3d/README.md``), so the fitted 68 points move it:
their 3D displacements from the mean 68 are interpolated over the dense vertices by a thin-plate
(biharmonic, ``φ(r) = r`` in 3D) radial basis function with an affine part. It is exact at the 68
keypoints (the rendered landmarks are the fitted ones), the smoothest interpolant in the bending-energy
sense, and its affine part carries the face's proportions (width, height, depth) to the forehead, ears
and neck, which have no keypoint; a decaying kernel (Gaussian, inverse distance) would leave those at
the mean face's proportions and tear the mesh where the keypoints stop.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import RBFInterpolator

from app.core.crop import landmark_box
from app.core.pose import matrix_to_angles, rotation_matrix
from trainer.profiling.face3d import Face3D

JAW_WEIGHT = 0.5
PRIOR_WEIGHT = 1.0
"""Pixels² of landmark error one standard deviation of a coefficient costs."""
ITERATIONS = 15
TPS_UNIT = 1e4
"""BFM units per interpolation unit (about a centimetre), to keep the RBF system well scaled."""


@dataclass(frozen=True)
class DenseFit:
    """A face posed in its photograph: ``angles`` (yaw, pitch, roll) radians, ``scale`` pixels per BFM
    unit, ``shift`` where the model origin projects (0-based pixels), ``coefficients`` ``(50,)``,
    ``shape68`` ``(68, 3)`` the fitted model-frame keypoints, ``rms_px`` the weighted landmark residual,
    ``landmarks`` ``(68, 2)`` the annotated points it was fitted to."""

    angles: np.ndarray
    scale: float
    shift: np.ndarray
    coefficients: np.ndarray
    shape68: np.ndarray
    rms_px: float
    landmarks: np.ndarray

    def pose_points(self, points: np.ndarray) -> np.ndarray:
        """Model-frame points posed into the photograph: x, y pixels (0-based), depth in pixels towards the viewer."""
        posed = self.scale * np.asarray(points, np.float64) @ rotation_matrix(self.angles).T
        posed[:, :2] += self.shift
        return posed


def fit_dense(image_rgb: np.ndarray, landmarks: np.ndarray, model: Face3D) -> DenseFit:
    """Regress a face from its annotated landmarks' box, then refine pose and coefficients to those landmarks."""
    points = np.asarray(landmarks, np.float64)
    if points.shape != (68, 2) or not np.isfinite(points).all():
        raise ValueError(f"fit_dense needs 68 finite landmarks, got shape {points.shape}")
    regressed = model.regress(np.ascontiguousarray(image_rgb[..., ::-1]), landmark_box(points))
    return refine(points, model, regressed.angles, regressed.scale, regressed.shift, regressed.coefficients)


def fit_from_angles(landmarks: np.ndarray, model: Face3D, angles: np.ndarray) -> DenseFit:
    """The same refinement started from given angles (e.g. the PnP label) and the mean coefficients, without
    the regressor: a fit for faces the regressor must not see (``helen_test``, whose renders it was trained on)."""
    x = np.asarray(landmarks, np.float64)
    coefficients = model.param_mean[12:62]
    projected = (model.shape68(coefficients) @ rotation_matrix(np.asarray(angles, np.float64)).T)[:, :2]
    centred_p, centred_x = projected - projected.mean(0), x - x.mean(0)
    scale = float((centred_p * centred_x).sum() / (centred_p ** 2).sum())
    shift = x.mean(0) - scale * projected.mean(0)
    return refine(x, model, angles, scale, shift, coefficients)


def refine(landmarks: np.ndarray, model: Face3D, angles: np.ndarray, scale: float, shift: np.ndarray,
           coefficients: np.ndarray, iterations: int = ITERATIONS) -> DenseFit:
    """Gauss–Newton (lightly damped) on rotation, scale, shift and the 50 coefficients against ``landmarks``."""
    x = np.asarray(landmarks, np.float64)
    weights = np.ones(68)
    weights[:17] = JAW_WEIGHT
    sw = np.sqrt(weights)[:, None]
    prior_mean, prior_std = model.param_mean[12:62], model.param_std[12:62]
    rot = rotation_matrix(np.asarray(angles, np.float64))
    s, t, alpha = float(scale), np.asarray(shift, np.float64).copy(), np.asarray(coefficients, np.float64).copy()
    basis = model.basis.reshape(68, 3, 50)
    prior_rows = np.sqrt(PRIOR_WEIGHT) / prior_std
    for _ in range(iterations):
        shape = model.shape68(alpha)
        v = shape @ rot.T
        residual = s * v[:, :2] + t - x
        jac = np.zeros((68, 2, 56))
        jac[:, 0, 1], jac[:, 0, 2] = s * v[:, 2], -s * v[:, 1]
        jac[:, 1, 0], jac[:, 1, 2] = -s * v[:, 2], s * v[:, 0]
        jac[:, :, 3] = v[:, :2]
        jac[:, 0, 4] = jac[:, 1, 5] = 1.0
        jac[:, :, 6:] = s * np.einsum("ij,njk->nik", rot[:2], basis)
        j_data = (jac * sw[..., None]).reshape(-1, 56)
        r_data = (residual * sw).ravel()
        j_prior = np.zeros((50, 56))
        j_prior[:, 6:] = np.diag(prior_rows)
        r_prior = prior_rows * (alpha - prior_mean)
        j = np.vstack([j_data, j_prior])
        r = np.concatenate([r_data, r_prior])
        normal = j.T @ j
        normal[np.diag_indices(56)] *= 1.0 + 1e-3
        delta = np.linalg.solve(normal, -j.T @ r)
        rot = _rodrigues(delta[:3]) @ rot
        s = max(s + delta[3], 1e-9)
        t = t + delta[4:6]
        alpha = alpha + delta[6:]
    shape = model.shape68(alpha)
    residual = s * (shape @ rot.T)[:, :2] + t - x
    rms = float(np.sqrt((weights * (residual ** 2).sum(1)).sum() / weights.sum()))
    return DenseFit(angles=matrix_to_angles(rot), scale=s, shift=t, coefficients=alpha, shape68=shape, rms_px=rms,
                    landmarks=x.copy())


def deform_dense(model: Face3D, shape68: np.ndarray) -> np.ndarray:
    """The dense mean face ``(V, 3)`` moved so its 68 keypoints land on ``shape68`` (thin-plate RBF, see above)."""
    displacement = np.asarray(shape68, np.float64) - model.mean68
    spline = RBFInterpolator(model.mean68 / TPS_UNIT, displacement / TPS_UNIT, kernel="linear", degree=1)
    return model.dense_vertices + TPS_UNIT * spline(model.dense_vertices / TPS_UNIT)


def _rodrigues(omega: np.ndarray) -> np.ndarray:
    """The rotation of the axis-angle vector ``omega``."""
    angle = float(np.linalg.norm(omega))
    if angle < 1e-15:
        return np.eye(3)
    k = np.asarray(omega) / angle
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross
