"""Checkpoint files, replaced atomically: ``checkpoint.pt`` (everything ``--resume`` needs) and ``best.pt``
(the best validation weights, what export takes). Adam's moment estimates are stored in bfloat16 (fp32's
range, half its size), which keeps a 128-px run's ``checkpoint.pt`` near 33 MB, small enough to commit
and carry a long run across sessions.

Format. ``"format": 2`` checkpoints record the pose head (``config["pose_head"]``) and the pose labels of
their 300W faces (``args["pose_labels"]``); older files carry neither and are read as format 1: an Euler
head trained on PnP labels."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.mnn import MNN

FORMAT = 2
LEGACY = {"pose_head": "euler", "pose_labels": "pnp"}
"""What a format-1 checkpoint (no ``format`` key) was trained with."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` through a temporary file and an atomic rename (an interrupt leaves the old one)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint; a missing or unreadable file is a one-line ``ValueError`` naming it."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(f"{path}: not a readable checkpoint ({exc.__class__.__name__})") from exc


def model_state(model: MNN, mean_face: np.ndarray) -> dict[str, Any]:
    """The part of a checkpoint that defines a model: configuration, weights, mean face."""
    cfg = model.config
    return {
        "format": FORMAT,
        "config": {"input_size": cfg.input_size, "landmarks": cfg.landmarks, "mean": cfg.mean, "std": cfg.std,
                   "pose_head": cfg.pose_head},
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "mean_face": np.asarray(mean_face, dtype=np.float64),
    }


def model_config(state: dict[str, Any]) -> dict[str, Any]:
    """The ``MNN`` keyword arguments of a checkpoint of any format (format 1 had an Euler head)."""
    return {"pose_head": LEGACY["pose_head"], **state["config"]}


def model_from_state(state: dict[str, Any]) -> MNN:
    """The network a loaded checkpoint defines, with its weights (train mode, CPU)."""
    model = MNN(**model_config(state))
    model.load_state_dict(state["model"])
    return model


def load_model(path: Path) -> tuple[MNN, np.ndarray]:
    """The network (eval mode) and mean face stored in ``best.pt`` or ``checkpoint.pt``."""
    state = load_checkpoint(path)
    return model_from_state(state).eval(), np.asarray(state["mean_face"])


def compact_optimizer_state(state: dict[str, Any]) -> dict[str, Any]:
    """Optimizer state with its floating-point tensors (Adam's moments) in bfloat16."""
    return _map_tensors(state, lambda t: t.to(torch.bfloat16) if t.is_floating_point() and t.dim() > 0 else t)


def expand_optimizer_state(state: dict[str, Any]) -> dict[str, Any]:
    """Inverse of ``compact_optimizer_state``: bfloat16 tensors back to float32."""
    return _map_tensors(state, lambda t: t.float() if t.dtype == torch.bfloat16 else t)


def _map_tensors(value: Any, fn: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_tensors(v, fn) for v in value]
    return value
