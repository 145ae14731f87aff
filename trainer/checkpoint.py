"""Checkpoint files: one file per run, replaced atomically, holding everything ``--resume`` and export need."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.mnn import MNN


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
        "config": {"input_size": cfg.input_size, "landmarks": cfg.landmarks, "mean": cfg.mean, "std": cfg.std},
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "mean_face": np.asarray(mean_face, dtype=np.float64),
    }


def load_model(path: Path) -> tuple[MNN, np.ndarray]:
    """The network (eval mode) and mean face stored in a checkpoint; prefers its best weights when present."""
    state = load_checkpoint(path)
    weights = state.get("best_model") or state["model"]
    model = MNN(**state["config"])
    model.load_state_dict(weights)
    return model.eval(), np.asarray(state["mean_face"])
