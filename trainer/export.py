"""``python -m trainer export``: write ``mnn_encoder.onnx`` and ``mnn_full.onnx`` from a checkpoint.

Both follow ``app.core.model_io``: angles leave the graph in degrees, landmarks in crop pixels
(heatmap peak refined by the probability-weighted mean of its 3×3 neighbourhood), visibility as a
probability, plus the softmax heatmaps the occlusion-aware regressor samples. Each file is
self-contained (weights inside), opset 17, dynamic batch, with its configuration and mean face
in the metadata.
"""
from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from app.core import model_io
from trainer.mean_face import build_mean_face
from trainer.mnn import MNN, heatmap_softmax

OPSET = 17
log = logging.getLogger(__name__)


def _degrees(pose: torch.Tensor) -> torch.Tensor:
    return torch.cat([pose[:, :3] * (180.0 / math.pi), pose[:, 3:]], 1)


def heatmap_peaks(heatmaps: torch.Tensor) -> torch.Tensor:
    """``(N, L, 2)`` crop-pixel landmark positions: arg-max refined by the 3×3 weighted mean around it."""
    n, l, h, w = heatmaps.shape
    index = torch.argmax(heatmaps.reshape(n, l, h * w), -1)
    y, x = index // w, index % w
    padded = nn.functional.pad(heatmaps, (1, 1, 1, 1)).reshape(n, l, (h + 2) * (w + 2))
    dy = torch.tensor([-1, -1, -1, 0, 0, 0, 1, 1, 1], device=heatmaps.device)
    dx = torch.tensor([-1, 0, 1, -1, 0, 1, -1, 0, 1], device=heatmaps.device)
    neighbours = (y[..., None] + 1 + dy) * (w + 2) + (x[..., None] + 1 + dx)
    weights = torch.gather(padded, 2, neighbours)
    total = weights.sum(-1).clamp(min=1e-12)
    off_x = (weights * dx.to(weights.dtype)).sum(-1) / total
    off_y = (weights * dy.to(weights.dtype)).sum(-1) / total
    return torch.stack([x.to(weights.dtype) + off_x, y.to(weights.dtype) + off_y], -1)


class EncoderExport(nn.Module):
    """Image → ``pose``, ``pose_proj`` (degrees)."""

    def __init__(self, model: MNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, pose, pose_proj = self.model.forward_encoder(image)
        return _degrees(pose), _degrees(pose_proj)


class FullExport(nn.Module):
    """Image → ``pose``, ``pose_proj``, ``landmarks``, ``visibility``, ``heatmaps``."""

    def __init__(self, model: MNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(image)
        heatmaps = heatmap_softmax(out.heatmap_logits)
        return (_degrees(out.pose), _degrees(out.pose_proj), heatmap_peaks(heatmaps),
                torch.sigmoid(out.visibility_logits), heatmaps)


def _export_one(module: nn.Module, path: Path, outputs: tuple[str, ...], input_size: int, metadata: dict[str, str]) -> None:
    dummy = torch.zeros(1, 3, input_size, input_size)
    axes = {model_io.INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in outputs}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's notes on constant folding and deprecation
        torch.onnx.export(module, (dummy,), str(path), input_names=[model_io.INPUT_NAME], output_names=list(outputs),
                          opset_version=OPSET, dynamic_axes=axes, dynamo=False, do_constant_folding=True)
    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "mnn-headpose trainer"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def export_models(model: MNN, mean_face: np.ndarray, out_dir: Path) -> tuple[Path, Path]:
    """Write both ONNX models of ``model`` into ``out_dir``; returns their paths. ``model`` is left in eval mode
    (the wrappers are put in eval mode too, since the exporter restores each wrapper's mode on the way out)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    cfg = model.config
    paths = out_dir / model_io.ENCODER_FILE, out_dir / model_io.FULL_FILE
    for variant, wrapper, path, outputs in (
        ("encoder", EncoderExport(model).eval(), paths[0], model_io.ENCODER_OUTPUTS),
        ("full", FullExport(model).eval(), paths[1], model_io.FULL_OUTPUTS),
    ):
        meta = model_io.build_metadata(variant, cfg.input_size, cfg.landmarks, np.array(cfg.mean), np.array(cfg.std), mean_face)
        _export_one(wrapper, path, outputs, cfg.input_size, meta)
        log.info("wrote %s", path)
    return paths


def export_random_models(out_dir: Path, input_size: int = 64, landmarks: int = 68, seed: int = 0) -> tuple[Path, Path]:
    """Export a freshly initialised network (for tests of the runtime before a trained model exists)."""
    torch.manual_seed(seed)
    return export_models(MNN(input_size, landmarks), build_mean_face(), out_dir)
