"""Rotations in torch for the pose head: the 6D representation (Zhou et al., CVPR 2019), its matrix, the
matrix's Euler angles, and the geodesic angle between two rotations.

Euler angles in this convention put yaw in the middle (``app.core.pose``): at yaw ±90° pitch and roll
share one axis (gimbal lock) and a loss on the angles loses its gradient's meaning there. The 6D vector
(two columns of the matrix, made orthonormal by Gram–Schmidt) is continuous everywhere, so the network
predicts it and the loss compares matrices; the Euler angles are only read out for the models' contract.
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
"""The 6D vector of the identity rotation: its first column, then its second."""
_CHORD_EPS = 1e-12
_SIN_MAX = 1.0 - 1e-6


def rot6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """``(N, 3, 3)`` rotations whose first two columns are ``x[:, :3]`` and ``x[:, 3:6]`` made orthonormal."""
    b1 = F.normalize(x[..., 0:3], dim=-1, eps=1e-8)
    a2 = x[..., 3:6]
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1, eps=1e-8)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], -1)


def matrix_to_rot6d(rotation: torch.Tensor) -> torch.Tensor:
    """The 6D vector of rotations ``(..., 3, 3)``: the first column, then the second."""
    return torch.cat([rotation[..., :, 0], rotation[..., :, 1]], -1)


def matrix_to_angles(rotation: torch.Tensor) -> torch.Tensor:
    """(yaw, pitch, roll) radians of image-like-frame rotations: ``app.core.pose.matrix_to_angles`` in torch.

    With ``F = diag(1, -1, 1)`` and ``m = (F R F)ᵀ``: ``m[i, j] = ±R[j, i]``, the sign negative when exactly
    one of ``i, j`` is 1; written out so that the ONNX graph holds only gathers, atan2 and asin.
    """
    m20, m21, m22 = rotation[..., 0, 2], -rotation[..., 1, 2], rotation[..., 2, 2]
    m10, m00 = -rotation[..., 0, 1], rotation[..., 0, 0]
    pitch = torch.atan2(m21, m22)
    yaw = torch.asin(torch.clamp(-m20, -1.0, 1.0))
    roll = torch.atan2(m10, m00)
    return torch.stack([yaw, pitch, roll], -1)


def geodesic_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The angle (radians, 0..π) of ``aᵀ b`` for rotations ``(..., 3, 3)``, from the chord ``‖a − b‖_F = √8 sin(θ/2)``.

    Through the chord rather than ``acos((tr − 1) / 2)``: accurate and with a finite gradient at θ = 0, where
    the trace form has neither; the ``asin`` argument is capped just below 1, so θ = π is finite too.
    """
    chord = torch.sqrt(((a - b) ** 2).sum((-1, -2)) + _CHORD_EPS)
    return 2.0 * torch.asin(torch.clamp(chord / math.sqrt(8.0), max=_SIN_MAX))
