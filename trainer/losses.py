"""The four MNN losses (eqs. 1–5) with the landmark mask w̃.

Conventions: pose vectors are ``(yaw, pitch, roll, tx, ty, tz)`` with angles in radians and
translation in normalised crop coordinates, and ``π`` is ``app.core.pose.project`` — both defined
there, once. Landmarks are in normalised crop coordinates for ``L_AE`` and in crop pixels for the
heatmap targets. Sums over images (the paper's Σᵢ) are means over the batch, which only rescales
the learning rate. ``L_CE(h)`` is reported as the KL divergence to the target heatmap, i.e. eq. 3
minus the target's entropy: the same gradients, and 0 at the ground truth.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from app.core.pose import TZ_MIN, project, rotation_matrix
from trainer.rotation import geodesic_angle

HEATMAP_SIGMA_AT_128 = 1.5
"""Standard deviation in pixels of the Gaussian target heatmap at a 128 input; it scales with the input."""


@dataclass(frozen=True)
class LossWeights:
    """α of eq. 5, set so that each term is of similar size near convergence (the paper's recipe):
    pose errors of ~0.1 (radians, crop units), reprojection ~0.03, heatmap KL ~1, visibility ~0.2.
    Phase 1 (landmark pre-training) uses only the heatmap term."""

    pose: float = 10.0
    pose_proj: float = 30.0
    heatmap: float = 1.0
    visibility: float = 2.0


def _mask_weights(mask: torch.Tensor) -> torch.Tensor:
    """w̃ / ‖w̃‖₁ per image; an image with no annotated landmark contributes nothing."""
    w = mask.float()
    return w / w.sum(-1, keepdim=True).clamp(min=1.0)


def loss_pose(pred: torch.Tensor, target: torch.Tensor, has_pose: torch.Tensor) -> torch.Tensor:
    """L_ED (eq. 1): Euclidean distance between pose vectors, over images with a pose label."""
    per_image = torch.linalg.vector_norm(pred - target, dim=-1)
    keep = has_pose.float()
    return (per_image * keep).sum() / keep.sum().clamp(min=1.0)


def loss_pose_rotation(rotation: torch.Tensor, translation: torch.Tensor, target: torch.Tensor,
                       has_pose: torch.Tensor) -> torch.Tensor:
    """L_ED for a 6D head: ``‖(θ, Δt)‖`` with θ the geodesic angle between the predicted ``rotation`` and the
    label's, over images with a pose label; equal to eq. 1 for small errors, and smooth at yaw ±90°.

    It takes the head's rotation and translation, never its Euler read-out: a path through ``asin`` and
    ``atan2`` would turn even a zero gradient into NaN at yaw ±90°."""
    theta = geodesic_angle(rotation, rotation_matrix(target, torch).to(rotation.dtype))
    shift = ((translation - target[:, 3:]) ** 2).sum(-1)
    per_image = torch.sqrt(theta ** 2 + shift + 1e-12)
    keep = has_pose.float()
    return (per_image * keep).sum() / keep.sum().clamp(min=1.0)


def loss_pose_proj(pred: torch.Tensor, landmarks: torch.Tensor, mask: torch.Tensor, mean_face: torch.Tensor) -> torch.Tensor:
    """L_AE (eq. 2): mask-weighted distance between landmarks and the mean face posed by ``pred`` and projected."""
    pose = torch.cat([pred[:, :5], pred[:, 5:6].clamp(min=TZ_MIN)], 1)
    projected = project(pose, mean_face.to(pred.dtype), torch)
    dist = torch.linalg.vector_norm(projected - landmarks, dim=-1)
    per_image = (_mask_weights(mask) * dist).sum(-1)
    return per_image.mean()


def target_heatmaps(landmarks_px: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Normalised Gaussian heatmaps ``(N, L, size, size)`` centred on crop-pixel landmarks."""
    coords = torch.arange(size, dtype=landmarks_px.dtype, device=landmarks_px.device)
    gx = torch.exp(-((coords[None, None] - landmarks_px[..., 0:1]) ** 2) / (2 * sigma ** 2))
    gy = torch.exp(-((coords[None, None] - landmarks_px[..., 1:2]) ** 2) / (2 * sigma ** 2))
    maps = gy[..., :, None] * gx[..., None, :]
    return maps / maps.sum((-1, -2), keepdim=True).clamp(min=1e-12)


def loss_heatmap(logits: torch.Tensor, landmarks_px: torch.Tensor, mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """L_CE(h) (eq. 3) as KL(target ‖ softmax heatmap), mask-weighted over landmarks."""
    n, l, h, w = logits.shape
    log_prob = F.log_softmax(logits.reshape(n, l, h * w), -1)
    target = target_heatmaps(landmarks_px, h, sigma).reshape(n, l, h * w)
    kl = (target * (torch.log(target.clamp(min=1e-12)) - log_prob)).sum(-1)
    return (_mask_weights(mask) * kl).sum(-1).mean()


def loss_visibility(logits: torch.Tensor, visibility: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L_CE(v) (eq. 4): two-class cross-entropy of visible/occluded, mask-weighted over landmarks."""
    ce = F.binary_cross_entropy_with_logits(logits, visibility.float(), reduction="none")
    return (_mask_weights(mask) * ce).sum(-1).mean()


def heatmap_sigma(input_size: int) -> float:
    """Target-heatmap σ in pixels for an input size."""
    return HEATMAP_SIGMA_AT_128 * input_size / 128
