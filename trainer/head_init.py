"""A 6D pose head for a network trained with an Euler head, starting from what the old head predicted.

Every weight but ``fc_pose`` carries over; the translation rows of ``fc_pose`` are copied. The 6D rows are
fitted by ridge least squares from the bottleneck features of given crops to the 6D vectors of the old
head's own rotations on them: the best linear start from the trained features, where a re-initialised
layer would predict the identity for every face and pull the encoder about while it relearns the pose.
The least-squares start is then refined by a few hundred Adam steps on the geodesic angle itself (the
features fixed, so this costs milliseconds), since the 6D vector is not a linear function of Euler angles.
"""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch

from app.core.pose import rotation_matrix
from trainer.mnn import MNN
from trainer.rotation import geodesic_angle, matrix_to_rot6d, rot6d_to_matrix

RIDGE = 1e-3
"""Ridge weight relative to the mean squared feature, so that a few hundred crops fit 257 unknowns stably."""
REFINE_STEPS = 300
REFINE_LR = 1e-3


def bottleneck_features(model: MNN, images: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """The ``(N, C)`` features ``fc_pose`` reads, in eval mode (running BatchNorm statistics)."""
    model.eval()
    chunks = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            skips, *_ = model.encode(images[start:start + batch])
            chunks.append(skips[-1].flatten(1))
    return torch.cat(chunks)


def to_rot6d_head(old: MNN, images: torch.Tensor) -> tuple[MNN, float]:
    """``old`` (Euler head) as a 6D-head network fitted on ``images`` (normalised crops), and the mean
    geodesic gap in degrees between the two heads' rotations on those crops."""
    if old.config.pose_head != "euler":
        raise ValueError(f"expected an Euler pose head, got {old.config.pose_head!r}")
    config = asdict(old.config) | {"pose_head": "rot6d"}
    new = MNN(**config)
    state = {k: v for k, v in old.state_dict().items() if not k.startswith("fc_pose.")}
    new.load_state_dict(state, strict=False)
    features = bottleneck_features(old, images).double()
    weight, bias = old.fc_pose.weight.detach().flatten(1).double(), old.fc_pose.bias.detach().double()
    old_pose = features @ weight.T + bias
    target = matrix_to_rot6d(rotation_matrix(old_pose[:, :3], torch))
    design = torch.cat([features, torch.ones(len(features), 1, dtype=features.dtype)], 1)
    gram = design.T @ design
    gram += RIDGE * float(features.pow(2).mean()) * len(features) * torch.eye(len(gram), dtype=gram.dtype)
    solution = refine_on_angle(design, torch.linalg.solve(gram, design.T @ target),
                               rotation_matrix(old_pose[:, :3], torch))
    with torch.no_grad():
        new.fc_pose.weight[:6] = solution[:-1].T.reshape(6, -1, 1, 1).float()
        new.fc_pose.bias[:6] = solution[-1].float()
        new.fc_pose.weight[6:] = old.fc_pose.weight[3:]
        new.fc_pose.bias[6:] = old.fc_pose.bias[3:]
    fitted = rot6d_to_matrix((design @ solution).float())
    gap = geodesic_angle(fitted, rotation_matrix(old_pose[:, :3], torch).float())
    return new, float(np.degrees(gap.mean()))


def refine_on_angle(design: torch.Tensor, solution: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``solution`` ``(C + 1, 6)`` moved by Adam to lower the mean geodesic angle of ``rot6d(design @ solution)``
    from ``target`` rotations, keeping the ridge's pull towards small weights."""
    weights = solution.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([weights], lr=REFINE_LR)
    scale = float(design[:, :-1].pow(2).mean()) * RIDGE
    for _ in range(REFINE_STEPS):
        optimizer.zero_grad()
        loss = geodesic_angle(rot6d_to_matrix(design @ weights), target).mean() + scale * weights[:-1].pow(2).sum()
        loss.backward()
        optimizer.step()
    return weights.detach()
