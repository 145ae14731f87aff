"""``python -m trainer step-time``: seconds per phase-2 training step (forward, four losses, backward, Adam);
``--encoder-only`` times the step of an encoder-only epoch (pose losses, the decoder not run)."""
from __future__ import annotations

import time

import numpy as np
import torch

from trainer.losses import LossWeights, heatmap_sigma
from trainer.mean_face import build_mean_face
from trainer.mnn import MNN
from trainer.train import compute_losses, weighted_total


def time_steps(input_size: int, batch_size: int, steps: int, device: torch.device, encoder_only: bool = False,
               pose_head: str = "rot6d") -> dict[str, float | str | bool]:
    """Median wall time of ``steps`` training steps on random data (after one warm-up step)."""
    torch.manual_seed(0)
    model = MNN(input_size, 68, pose_head=pose_head).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    mean_face = torch.as_tensor(build_mean_face(), dtype=torch.float32, device=device)
    batch = {
        "image": torch.randn(batch_size, 3, input_size, input_size),
        "landmarks_px": torch.rand(batch_size, 68, 2) * input_size,
        "mask": torch.ones(batch_size, 68, dtype=torch.bool),
        "visibility": torch.ones(batch_size, 68, dtype=torch.bool),
        "pose": torch.zeros(batch_size, 6),
        "has_pose": torch.ones(batch_size, dtype=torch.bool),
    }
    batch["landmarks"] = batch["landmarks_px"] / input_size * 2 - 1
    batch = {k: v.to(device) for k, v in batch.items()}
    times = []
    for step in range(steps + 1):
        started = time.perf_counter()
        losses = compute_losses(model, batch, mean_face, heatmap_sigma(input_size), decoder=not encoder_only)
        loss = weighted_total(losses, 2, LossWeights())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - started)
    step_s = float(np.median(times))
    return {"input_size": input_size, "batch_size": batch_size, "device": str(device), "threads": torch.get_num_threads(),
            "pose_head": pose_head, "encoder_only": encoder_only, "step_s": round(step_s, 4), "per_image_s": round(step_s / batch_size, 4)}
