"""The contract between the exported ONNX models and everything that runs them.

``trainer.export`` writes it; ``app.core.estimator`` and ``trainer.evaluate`` read it; nothing else
names an input, an output or a metadata key.

Input ``image``: float32 ``(N, 3, S, S)``, RGB, ``(pixel / 255 − mean) / std`` per channel.
Outputs, all float32:

- ``pose`` ``(N, 6)``: ``fc_pose`` — yaw, pitch, roll in degrees, tx, ty, tz (``pose.py``).
- ``pose_proj`` ``(N, 6)``: ``fc_pose_proj``, same units; OR starts from ``π(pose_proj, mean face)``.
- full model only: ``landmarks`` ``(N, L, 2)`` crop pixels (heatmap peak, sub-pixel refined),
  ``visibility`` ``(N, L)`` probability that the landmark is visible, ``heatmaps`` ``(N, L, S, S)``
  the softmax heatmaps OR samples its features from.

``check_tensors`` holds a model to these shapes when it opens (fixed sizes only; the batch is free).

Metadata (``custom_metadata_map``, all strings): ``input_size``, ``landmarks``, ``mean`` and
``std`` (JSON lists), ``color`` (``RGB``), ``mean_face`` (JSON ``L×3`` list, the model's mean face
in ``pose.py``'s frame), ``variant`` (``encoder`` or ``full``), ``format_version``; optional
``precision`` (``int8`` in the variants ``trainer.quantize`` writes, absent meaning ``fp32``).

``precision.json`` beside the models (format ``PRECISION_FORMAT``) is ``trainer.quantize``'s record,
per mode under ``modes``, of the INT8 variant (``mnn_encoder.int8.onnx``, ``mnn_full.int8.onnx``)
against fp32: ``int8_accurate`` (it loses at most ``rule.max_mae_loss_deg`` of pose MAE on held-out
training faces: ``fp32_mae``, ``int8_mae``, ``mae_loss``), and ``fp32_size`` and ``fp32_sha256``, the
fp32 file it judged, so that a re-exported model voids it. Its ``fp32_ms``, ``int8_ms`` and
``speedup`` are the machine that quantised's, for reference only: whether INT8 is fast enough is
measured on the machine in use (``app.core.precision``).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

FORMAT_VERSION = "1"
ENCODER_FILE = "mnn_encoder.onnx"
FULL_FILE = "mnn_full.onnx"
INPUT_NAME = "image"
ENCODER_OUTPUTS = ("pose", "pose_proj")
FULL_OUTPUTS = ("pose", "pose_proj", "landmarks", "visibility", "heatmaps")
REQUIRED_METADATA = ("input_size", "landmarks", "mean", "std", "color", "mean_face", "variant", "format_version")
PRECISION_KEY = "precision"
PRECISIONS = ("auto", "fp32", "int8")
"""What a caller may ask for: ``auto`` (INT8 on the CPU where accurate and fast enough there), or either one."""
PRECISION_FILE = "precision.json"
PRECISION_FORMAT = "2"
"""Format 2 records ``int8_accurate`` per mode; format 1 recorded a machine-bound ``int8_chosen``."""

MODES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "pose": (ENCODER_FILE, "encoder", ENCODER_OUTPUTS),
    "full": (FULL_FILE, "full", FULL_OUTPUTS),
}
"""Mode → (model file, metadata ``variant``, outputs it must have): ``pose`` runs the encoder only,
``full`` the full model (landmarks and visibility too)."""


def check_mode(mode: str) -> str:
    """``mode`` itself when it is one of ``MODES``; else a ``ValueError`` naming the modes there are."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return mode


def int8_file(filename: str) -> str:
    """``mnn_encoder.onnx`` → ``mnn_encoder.int8.onnx``: the INT8 variant's name beside its fp32 model."""
    return filename.removesuffix(".onnx") + ".int8.onnx"


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks; ``precision.json`` pins the fp32 model with it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelError(RuntimeError):
    """A model file that is missing, unreadable or not one of ours."""


@dataclass(frozen=True)
class ModelInfo:
    """What a model's metadata says about how to feed it and read it."""

    path: Path
    variant: str
    input_size: int
    landmarks: int
    mean: np.ndarray
    std: np.ndarray
    mean_face: np.ndarray
    precision: str = "fp32"
    """``int8`` for a variant written by ``trainer.quantize``, else ``fp32``."""

    @staticmethod
    def from_metadata(path: Path, metadata: dict[str, str]) -> "ModelInfo":
        """Parse ``custom_metadata_map``; a missing key or another format version is a ``ModelError``."""
        missing = [k for k in REQUIRED_METADATA if k not in metadata]
        if missing:
            raise ModelError(f"{path}: not an MNN model (metadata lacks {', '.join(missing)})")
        if metadata["format_version"] != FORMAT_VERSION:
            raise ModelError(f"{path}: model format {metadata['format_version']}, this runtime reads {FORMAT_VERSION}")
        return ModelInfo(
            path=Path(path),
            variant=metadata["variant"],
            input_size=int(metadata["input_size"]),
            landmarks=int(metadata["landmarks"]),
            mean=np.asarray(json.loads(metadata["mean"]), dtype=np.float32),
            std=np.asarray(json.loads(metadata["std"]), dtype=np.float32),
            mean_face=np.asarray(json.loads(metadata["mean_face"]), dtype=np.float64),
            precision=metadata.get(PRECISION_KEY, "fp32"),
        )


class TensorSpec(Protocol):
    """A graph input or output as ONNX Runtime describes it (``onnxruntime.NodeArg``)."""

    name: str
    shape: Sequence[int | str | None] | None
    type: str


TENSOR_TYPE = "tensor(float)"
_RUNTIME = "the runtime needs"
_METADATA = "its metadata says"


def contract_shapes(info: ModelInfo) -> dict[str, tuple[tuple[str, int | None, str], ...]]:
    """Per input or output name, its dimensions as ``(what, size, who says so)``; ``None`` for the batch,
    which may be anything. Sizes come from this module's contract or from the model's own metadata."""
    size, count = info.input_size, info.landmarks
    batch = ("batch", None, "")
    pose = (batch, ("width", 6, _RUNTIME))
    return {
        INPUT_NAME: (batch, ("channel count", 3, _RUNTIME), ("height", size, _METADATA), ("width", size, _METADATA)),
        "pose": pose,
        "pose_proj": pose,
        "landmarks": (batch, ("landmark count", count, _METADATA), ("coordinate count", 2, _RUNTIME)),
        "visibility": (batch, ("landmark count", count, _METADATA)),
        "heatmaps": (batch, ("landmark count", count, _METADATA), ("height", size, _METADATA),
                     ("width", size, _METADATA)),
    }


def check_tensors(info: ModelInfo, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> None:
    """``ModelError`` naming the file and the first tensor whose element type, rank or fixed size contradicts
    the contract or the metadata: caught when the model opens, not as a traceback at its first inference.
    Symbolic sizes (a dynamic batch) and unknown shapes pass."""
    contract = contract_shapes(info)
    for kind, specs in (("input", inputs), ("output", outputs)):
        for spec in specs:
            dims = contract.get(spec.name)
            if dims is None:
                continue
            where = f"{info.path}: {kind} {spec.name!r}"
            if spec.type != TENSOR_TYPE:
                raise ModelError(f"{where} is {spec.type}, {_RUNTIME} {TENSOR_TYPE}")
            shape = list(spec.shape or [])
            if shape and len(shape) != len(dims):
                names = ", ".join(what for what, _, _ in dims)
                raise ModelError(f"{where} has {len(shape)} dimensions, {_RUNTIME} {len(dims)} ({names})")
            for actual, (what, wanted, source) in zip(shape, dims):
                if isinstance(actual, int) and actual > 0 and wanted is not None and actual != wanted:
                    raise ModelError(f"{where} has {what} {actual}, {source} {wanted}")


def build_metadata(variant: str, input_size: int, landmarks: int, mean: np.ndarray, std: np.ndarray,
                   mean_face: np.ndarray) -> dict[str, str]:
    """The metadata ``trainer.export`` writes into each model."""
    return {
        "variant": variant,
        "input_size": str(int(input_size)),
        "landmarks": str(int(landmarks)),
        "mean": json.dumps([float(v) for v in mean]),
        "std": json.dumps([float(v) for v in std]),
        "color": "RGB",
        "mean_face": json.dumps(np.round(np.asarray(mean_face, dtype=np.float64), 6).tolist()),
        "format_version": FORMAT_VERSION,
    }


def normalise_crops(crops_rgb: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(N, S, S, 3)`` uint8 RGB → ``(N, 3, S, S)`` float32 ``(pixel / 255 − mean) / std``; the trainer uses it too."""
    x = np.asarray(crops_rgb).astype(np.float32) * np.float32(1.0 / 255.0)
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def to_input(crops_rgb: np.ndarray, info: ModelInfo) -> np.ndarray:
    """``(N, S, S, 3)`` uint8 RGB crops → the model's normalised ``(N, 3, S, S)`` float32 input."""
    crops = np.asarray(crops_rgb)
    if crops.ndim != 4 or crops.shape[1:] != (info.input_size, info.input_size, 3):
        raise ValueError(f"crops must be (N, {info.input_size}, {info.input_size}, 3), got {crops.shape}")
    return normalise_crops(crops, info.mean, info.std)
