"""Full mode's pose as a teacher for ``fc_pose``: the PnP pose (``app.core.landmark_pose``, what full mode
reports) of the network's own heatmap peaks, detached, as a second pose target on every crop."""
from __future__ import annotations

import numpy as np
import torch

from app.core.crop import to_normalised
from app.core.landmark_pose import pose_from_landmarks
from trainer.mnn import heatmap_softmax


def landmark_pose_targets(heatmap_logits: torch.Tensor, mean_face: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, 6)`` PnP poses of the heatmap peaks (radians, normalised crop units) and ``(N,)`` where one exists."""
    from trainer.export import heatmap_peaks

    with torch.no_grad():
        peaks = heatmap_peaks(heatmap_softmax(heatmap_logits.detach().float())).cpu().numpy()
    size = heatmap_logits.shape[-1]
    poses, ok = np.zeros((len(peaks), 6)), np.zeros(len(peaks), bool)
    everything = np.ones(peaks.shape[1], bool)
    for k, points in enumerate(peaks):
        fitted = pose_from_landmarks(to_normalised(points, size), everything, mean_face)
        if fitted is not None and np.isfinite(fitted).all():
            poses[k], ok[k] = fitted, True
    device = heatmap_logits.device
    return torch.as_tensor(poses, dtype=torch.float32, device=device), torch.as_tensor(ok, device=device)
