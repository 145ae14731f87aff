"""Runs the exported MNN models with ONNX Runtime: sessions, execution providers, batched inference.

``PoseEstimator`` opens ``mnn_encoder.onnx`` for pose-only mode and ``mnn_full.onnx`` for full mode,
each on first use, and keeps both; switching mode after both have been used costs nothing. Every
face of a frame goes through the network in one ``run`` call. The model's metadata, not this module,
says the input size, normalisation and landmark count (``model_io``).

Providers: TensorRT, then CUDA, where ONNX Runtime offers them, then CPU; ``choose_providers`` is the
one place that decides, and one log line says which provider a session really uses. ONNX Runtime's
own console messages are silenced (severity 3: errors only reach us as exceptions).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from app.core import model_io
from app.core.model_io import ModelError, ModelInfo

log = logging.getLogger(__name__)

ORT_SEVERITY_ERROR = 3
ort.set_default_logger_severity(ORT_SEVERITY_ERROR)

MODES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "pose": (model_io.ENCODER_FILE, "encoder", model_io.ENCODER_OUTPUTS),
    "full": (model_io.FULL_FILE, "full", model_io.FULL_OUTPUTS),
}
"""Mode → (model file, metadata ``variant``, outputs it must have)."""

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
"""Execution providers in order of preference; those ONNX Runtime lacks are skipped."""

DEFAULT_MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
"""``models/`` at the project root, where ``trainer.export`` puts the models by default."""

_announced: set[str] = set()
_announce_lock = threading.Lock()


def _announce_once(level: int, message: str) -> None:
    """Log ``message`` the first time it comes up in this process only."""
    with _announce_lock:
        if message in _announced:
            return
        _announced.add(message)
    log.log(level, message)


def choose_providers(requested: Sequence[str] | None = None) -> list[str]:
    """The providers to ask ONNX Runtime for, best first, always ending with CPU.

    ``requested`` narrows the choice (e.g. ``["CPUExecutionProvider"]`` for a CPU-only run); a
    requested provider this ONNX Runtime build lacks is skipped with a warning.
    """
    available = ort.get_available_providers()
    wanted = list(PREFERRED_PROVIDERS if requested is None else requested)
    missing = [p for p in wanted if p not in available]
    if requested is not None and missing:
        _announce_once(logging.WARNING, f"ONNX Runtime lacks {', '.join(missing)}; skipping it")
    chosen = [p for p in wanted if p in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


@dataclass(frozen=True)
class EstimatorOutput:
    """The network's outputs for a batch of ``N`` crops, in the ``model_io`` units.

    ``pose`` and ``pose_proj`` are ``(N, 6)``: yaw, pitch, roll in degrees, then tx, ty, tz.
    Full mode adds ``landmarks`` ``(N, L, 2)`` in crop pixels, ``visibility`` ``(N, L)`` and
    ``heatmaps`` ``(N, L, S, S)``; pose-only mode leaves them ``None``.
    """

    pose: np.ndarray
    pose_proj: np.ndarray
    landmarks: np.ndarray | None = None
    visibility: np.ndarray | None = None
    heatmaps: np.ndarray | None = None


class OnnxModel:
    """One ONNX Runtime session with its checked contract: input name, outputs, metadata."""

    def __init__(self, path: Path, variant: str, outputs: tuple[str, ...], providers: Sequence[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            where = self.path.parent
            detail = "models directory not found" if not where.is_dir() else "model file not found"
            raise ModelError(f"{self.path}: {detail}")
        options = ort.SessionOptions()
        options.log_severity_level = ORT_SEVERITY_ERROR
        # Idle ONNX Runtime threads would otherwise spin after each run, taking the cores from the
        # detector and the regressor that run between inferences in the same frame.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=list(providers))
        except Exception as exc:  # ONNX Runtime raises several exception types for unreadable files
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{self.path}: not a loadable ONNX model ({first_line})") from None
        self.info = ModelInfo.from_metadata(self.path, self.session.get_modelmeta().custom_metadata_map)
        if self.info.variant != variant:
            raise ModelError(f"{self.path}: holds the {self.info.variant!r} model, expected {variant!r}")
        inputs = self.session.get_inputs()
        if [i.name for i in inputs] != [model_io.INPUT_NAME]:
            raise ModelError(f"{self.path}: inputs {[i.name for i in inputs]}, expected [{model_io.INPUT_NAME!r}]")
        names = [o.name for o in self.session.get_outputs()]
        lacking = [name for name in outputs if name not in names]
        if lacking:
            raise ModelError(f"{self.path}: lacks output(s) {', '.join(lacking)}")
        self.output_names = list(outputs)
        batch = inputs[0].shape[0]
        self.max_batch: int | None = batch if isinstance(batch, int) and batch > 0 else None
        self.provider = self.session.get_providers()[0]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs by name for the normalised input ``(N, 3, S, S)``; a fixed-batch model runs in chunks."""
        if self.max_batch is None or len(batch) <= self.max_batch:
            values = self.session.run(self.output_names, {model_io.INPUT_NAME: batch})
            return dict(zip(self.output_names, values))
        parts = [self.run(batch[i:i + self.max_batch]) for i in range(0, len(batch), self.max_batch)]
        return {name: np.concatenate([p[name] for p in parts]) for name in self.output_names}


class PoseEstimator:
    """The MNN models of one folder, opened lazily per mode; ``estimate`` runs a batch of face crops."""

    def __init__(self, models_dir: Path | str = DEFAULT_MODELS_DIR, providers: Sequence[str] | None = None) -> None:
        self.models_dir = Path(models_dir)
        self.providers = choose_providers(providers)
        self._models: dict[str, OnnxModel] = {}
        self._lock = threading.Lock()

    def model(self, mode: str) -> OnnxModel:
        """The session for ``mode`` (``pose`` or ``full``), opened on first use; ``ModelError`` if unusable."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        with self._lock:
            if mode not in self._models:
                filename, variant, outputs = MODES[mode]
                model = OnnxModel(self.models_dir / filename, variant, outputs, self.providers)
                fallback = model.provider == "CPUExecutionProvider" and self.providers[0] != model.provider
                note = f" ({self.providers[0]} did not start)" if fallback else ""
                _announce_once(logging.INFO, f"ONNX Runtime uses {model.provider}{note}")
                self._models[mode] = model
            return self._models[mode]

    def info(self, mode: str) -> ModelInfo:
        """What the ``mode`` model's metadata says (input size, landmarks, normalisation, mean face)."""
        return self.model(mode).info

    @property
    def provider(self) -> str:
        """The provider the most recently opened session uses, or the first choice before any is open."""
        with self._lock:
            models = list(self._models.values())
        return models[-1].provider if models else self.providers[0]

    def estimate(self, crops_rgb: np.ndarray, mode: str) -> EstimatorOutput:
        """Outputs for ``(N, S, S, 3)`` uint8 RGB crops in one batched run (``N`` may be 0)."""
        return self.run(model_io.to_input(crops_rgb, self.info(mode)), mode)

    def run(self, batch: np.ndarray, mode: str) -> EstimatorOutput:
        """Outputs for an already normalised ``(N, 3, S, S)`` batch (``model_io.to_input``)."""
        model = self.model(mode)
        if len(batch) == 0:
            return self._empty(model.info, mode)
        out = model.run(batch)
        return EstimatorOutput(out["pose"], out["pose_proj"], out.get("landmarks"), out.get("visibility"),
                               out.get("heatmaps"))

    @staticmethod
    def _empty(info: ModelInfo, mode: str) -> EstimatorOutput:
        empty_pose = np.zeros((0, 6), np.float32)
        if mode == "pose":
            return EstimatorOutput(empty_pose, empty_pose)
        size, count = info.input_size, info.landmarks
        return EstimatorOutput(empty_pose, empty_pose, np.zeros((0, count, 2), np.float32),
                               np.zeros((0, count), np.float32), np.zeros((0, count, size, size), np.float32))

    def close(self) -> None:
        """Drop the sessions (ONNX Runtime frees them with their last reference)."""
        with self._lock:
            self._models.clear()

    def __enter__(self) -> "PoseEstimator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
