"""Runs the exported MNN models with ONNX Runtime: sessions, execution providers, and the one per-face path.

``PoseEstimator`` opens ``mnn_encoder.onnx`` for pose-only mode and ``mnn_full.onnx`` for full mode,
each on first use, and keeps both; switching mode after both have been used costs nothing. Every
face of a frame goes through the network in one ``run`` call. The model's metadata, not this module,
says the input size, normalisation and landmark count (``model_io``).

``PoseEstimator.estimate_faces(frame, face_boxes, mode, refiner)`` is the one path from face boxes to
faces in frame coordinates (``FaceEstimate``): crop by the crop rule (``crop.py``), run the network,
in full mode refine the landmarks and fit the pose to them, map everything back to the frame. The
pipeline, evaluation, quantisation and the detector calibration all go through it (as insightface's
``model_zoo`` models' ``get(img, face)`` crop, infer and un-warp in one call).

``estimate_faces_batch`` runs the faces of several frames in one ``run`` call, each frame's faces
as ``estimate_faces`` would give them: on a GPU, where one call of many crops costs about what one
of a few does, a caller that holds several frames (``process``) keeps it busy that way.

Providers: TensorRT, then CUDA, where they can run here, then CPU (``app.core.providers`` probes
each quietly, so a machine without CUDA prints none of ONNX Runtime's load errors); one log line
says which provider a session really uses and why not a better one. ONNX Runtime's own console
messages are silenced (severity 3: errors only reach us as exceptions).

Precision: ``auto`` (the default) runs fp32 on TensorRT or CUDA. On the CPU it runs a mode's INT8
variant (``mnn_*.int8.onnx``) where ``precision.json`` (written by ``trainer.quantize``, still naming
the fp32 file as it is now by SHA-256) judged INT8 accurate enough and INT8 runs at least
``precision.MIN_SPEEDUP`` times faster on this CPU: a short speed check at the mode's first use,
cached per CPU, ONNX Runtime version and model files (``app.core.precision``). Anything else,
including a missing or malformed ``precision.json``, means fp32. ``fp32`` and ``int8`` force one.
One log line per mode says which precision it runs and why.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnxruntime as ort

from app.core import crop, model_io, providers as execution
from app.core.landmark_pose import with_landmark_pose
from app.core.model_io import MODES, ModelError, ModelInfo, check_mode
from app.core.precision import PRECISION_ENV, SpeedCheck, cache_path, check_speed, decide, read_accuracy
from app.core.results import EstimatorOutput, FaceEstimate
from app.core import quality

log = logging.getLogger(__name__)

ORT_SEVERITY_ERROR = 3
ort.set_default_logger_severity(ORT_SEVERITY_ERROR)

PREFERRED_PROVIDERS = execution.ORDER
"""Execution providers in order of preference; those that cannot run here are skipped."""

DEFAULT_MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
"""``models/`` at the project root, where ``trainer.export`` puts the models by default."""

Refiner = Callable[[np.ndarray, EstimatorOutput, ModelInfo], EstimatorOutput]
"""The seam for the occlusion-aware regressor (OR): given the normalised batch, the full model's
outputs and its metadata, return refined outputs. Applied in full mode only, timed as ``refine``."""

_announced: set[str] = set()
_announce_lock = threading.Lock()


def _announce_once(level: int, message: str) -> None:
    """Log ``message`` the first time it comes up in this process only."""
    with _announce_lock:
        if message in _announced:
            return
        _announced.add(message)
    log.log(level, message)


def ms_since(start: float) -> float:
    """Milliseconds since ``start`` (a ``time.perf_counter()`` reading): how every stage of a frame is timed."""
    return (time.perf_counter() - start) * 1000.0


def provider_choice(requested: Sequence[str] | str | None = None) -> execution.Choice:
    """The providers to ask ONNX Runtime for, best first, always ending with CPU, and why (``providers.Choice``).

    ``requested``: None for the best that can run here; a ``--provider`` choice (``auto``, ``cpu``, ``cuda``,
    ``tensorrt``; an accelerator named that cannot run is a ``providers.ProviderError``); or provider names,
    which narrow the choice (a name this ONNX Runtime build lacks is skipped with a warning).
    """
    if requested is None:
        return execution.usable(PREFERRED_PROVIDERS)
    if isinstance(requested, str):
        return execution.choose(requested)
    wanted = list(requested)
    unknown = [p for p in wanted if p not in ort.get_available_providers()]
    if unknown:
        _announce_once(logging.WARNING, f"ONNX Runtime lacks {', '.join(unknown)}; skipping it")
    return execution.usable([p for p in wanted if p not in unknown])


def choose_providers(requested: Sequence[str] | str | None = None) -> list[str]:
    """``provider_choice(requested).providers`` as a list."""
    return list(provider_choice(requested).providers)


def _input_size(path: Path) -> int:
    """The square input size of the model at ``path`` (its metadata), read through a bare CPU session; TensorRT
    needs it before its own session opens, to build one engine for every batch size."""
    options = ort.SessionOptions()
    options.log_severity_level = ORT_SEVERITY_ERROR
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(str(path), options, providers=[execution.CPU])
        return ModelInfo.from_metadata(path, session.get_modelmeta().custom_metadata_map).input_size
    except ModelError:
        raise
    except Exception as exc:  # ONNX Runtime raises several exception types for unreadable files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a loadable ONNX model ({first_line})") from None


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
        asked: list = list(providers)
        if asked and asked[0] == execution.TENSORRT:
            asked[0] = (execution.TENSORRT, execution.provider_options(
                execution.TENSORRT, cache_path().parent / "tensorrt", _input_size(self.path)))
        # ONNX Runtime prints an "EP Error" banner (a Python print) when an accelerator fails to start and it
        # falls back; ``PoseEstimator.model`` logs the fallback as one line instead.
        quiet = contextlib.redirect_stdout(io.StringIO()) if asked[:1] != [execution.CPU] else contextlib.nullcontext()
        try:
            with quiet:
                self.session = ort.InferenceSession(str(self.path), options, providers=asked)
        except Exception as exc:  # ONNX Runtime raises several exception types for unreadable files
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{self.path}: not a loadable ONNX model ({first_line})") from None
        self.info = ModelInfo.from_metadata(self.path, self.session.get_modelmeta().custom_metadata_map)
        if self.info.variant != variant:
            raise ModelError(f"{self.path}: holds the {self.info.variant!r} model, expected {variant!r}")
        inputs = self.session.get_inputs()
        if [i.name for i in inputs] != [model_io.INPUT_NAME]:
            raise ModelError(f"{self.path}: inputs {[i.name for i in inputs]}, expected [{model_io.INPUT_NAME!r}]")
        declared = {o.name: o for o in self.session.get_outputs()}
        lacking = [name for name in outputs if name not in declared]
        if lacking:
            raise ModelError(f"{self.path}: lacks output(s) {', '.join(lacking)}")
        model_io.check_tensors(self.info, inputs, [declared[name] for name in outputs])
        self.output_names = list(outputs)
        batch = inputs[0].shape[0]
        self.max_batch: int | None = batch if isinstance(batch, int) and batch > 0 else None
        self.provider = self.session.get_providers()[0]
        if self.provider == execution.TENSORRT:
            self.max_batch = min(self.max_batch or execution.TENSORRT_MAX_BATCH, execution.TENSORRT_MAX_BATCH)

    @property
    def precision(self) -> str:
        """``int8`` for a variant written by ``trainer.quantize``, else ``fp32`` (from the metadata)."""
        return self.info.precision

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs by name for the normalised input ``(N, 3, S, S)``; a fixed-batch model runs in chunks."""
        if self.max_batch is None or len(batch) <= self.max_batch:
            values = self.session.run(self.output_names, {model_io.INPUT_NAME: batch})
            return dict(zip(self.output_names, values))
        parts = [self.run(batch[i:i + self.max_batch]) for i in range(0, len(batch), self.max_batch)]
        return {name: np.concatenate([p[name] for p in parts]) for name in self.output_names}


class PoseEstimator:
    """The MNN models of one folder, opened lazily per mode; ``estimate`` runs a batch of face crops.

    ``precision``: ``auto`` (INT8 on the CPU where ``precision.json`` judged it accurate enough and a speed
    check found it fast enough on this CPU; ``app.core.precision``), ``fp32`` or ``int8``. ``auto`` yields to
    ``$MNN_PRECISION`` (``fp32`` or ``int8``) where that is set. ``providers``: see ``provider_choice``; a
    ``--provider`` choice of ``cuda`` or ``tensorrt`` that cannot run is a ``providers.ProviderError``, here
    or when a session falls back to the CPU.
    """

    def __init__(self, models_dir: Path | str = DEFAULT_MODELS_DIR, providers: Sequence[str] | str | None = None,
                 precision: str = "auto") -> None:
        if precision == "auto":
            precision = os.environ.get(PRECISION_ENV) or "auto"
        if precision not in model_io.PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(model_io.PRECISIONS)}")
        self.models_dir = Path(models_dir)
        self._choice = provider_choice(providers)
        self.providers = list(self._choice.providers)
        self._strict = isinstance(providers, str) and providers in ("cuda", "tensorrt")
        self.requested_precision = precision
        self._models: dict[str, OnnxModel] = {}
        self._why: dict[str, str] = {}
        self._speed: dict[str, SpeedCheck | None] = {}
        self._scorers: dict[str, quality.ModeScorer | None] = {}
        self._lock = threading.Lock()

    def model(self, mode: str) -> OnnxModel:
        """The session for ``mode`` (``pose`` or ``full``), opened on first use; ``ModelError`` if unusable."""
        check_mode(mode)
        with self._lock:
            if mode not in self._models:
                model, why = self._open(mode)
                if self._strict and model.provider != self.providers[0]:
                    raise execution.ProviderError(f"{self.providers[0]} did not start for {model.path.name} "
                                                  f"(ONNX Runtime fell back to {model.provider})")
                if model.provider == self.providers[0]:
                    note = self._choice.note
                elif model.provider == execution.CPU:
                    note = f"{self.providers[0]} did not start"
                else:
                    note = ""
                _announce_once(logging.INFO, execution.describe(model.provider, note))
                _announce_once(logging.INFO, f"{mode} mode runs {model.path.name} ({model.precision}: {why})")
                self._models[mode] = model
                self._why[mode] = why
                self._scorers[mode] = quality.scorer_for(self.models_dir, mode)
            return self._models[mode]

    def _scorer(self, mode: str) -> quality.ModeScorer | None:
        """The quality scorer of ``mode``, read with its model (``quality.scorer_for``; None without one)."""
        self.model(mode)
        return self._scorers[mode]

    def _open(self, mode: str) -> tuple[OnnxModel, str]:
        """The mode's session at the requested precision, and why that precision."""
        filename, variant, outputs = MODES[mode]
        fp32_path, int8_path = self.models_dir / filename, self.models_dir / model_io.int8_file(filename)
        if self.requested_precision == "int8":
            if not int8_path.is_file():
                raise ModelError(f"{int8_path}: INT8 model not found (python -m trainer quantize writes it)")
            return OnnxModel(int8_path, variant, outputs, self.providers), "asked for"
        if self.requested_precision == "fp32":
            return OnnxModel(fp32_path, variant, outputs, self.providers), "asked for"
        fell_back: OnnxModel | None = None
        if self.providers[0] != "CPUExecutionProvider":
            model = OnnxModel(fp32_path, variant, outputs, self.providers)
            if model.provider != "CPUExecutionProvider":
                return model, f"auto on {model.provider}"
            fell_back = model  # the accelerator did not start: on the CPU after all, where INT8 may qualify
        accuracy = read_accuracy(self.models_dir, mode)
        speed, opened = None, {}
        if accuracy.accurate and int8_path.is_file():
            cpu = ["CPUExecutionProvider"]
            speed, opened = check_speed(fp32_path, int8_path, lambda path: OnnxModel(path, variant, outputs, cpu),
                                        fell_back)
        elif accuracy.accurate:
            accuracy = replace(accuracy, accurate=False, why=f"{int8_path.name} is missing")
        chosen, why = decide(accuracy, speed)
        self._speed[mode] = speed
        path = int8_path if chosen == "int8" else fp32_path
        model = opened.get(path) or (fell_back if chosen == "fp32" and fell_back is not None
                                     else OnnxModel(path, variant, outputs, ["CPUExecutionProvider"]))
        return model, f"auto on the CPU, {why}"

    def precision(self, mode: str) -> str:
        """``fp32`` or ``int8``: what the ``mode`` model runs at (opens it if need be)."""
        return self.model(mode).precision

    def precision_reason(self, mode: str) -> str:
        """Why ``mode`` runs at its precision, as its log line says (opens it if need be)."""
        self.model(mode)
        return self._why[mode]

    def speed_check(self, mode: str) -> SpeedCheck | None:
        """The speed check ``auto`` chose ``mode``'s precision by on the CPU (opens it if need be); None where
        there was none (forced precision, an accelerator, no accurate INT8 variant)."""
        self.model(mode)
        return self._speed.get(mode)

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

    def estimate_faces(self, frame_bgr: np.ndarray, face_boxes: np.ndarray, mode: str,
                       refiner: Refiner | None = None, timings: dict[str, float] | None = None) -> list[FaceEstimate]:
        """The faces in ``face_boxes`` ``(N, 4)`` (landmark-style, ``crop.face_box_from_detection`` for a
        detector's) of one BGR frame, in frame coordinates, all run in one batch.

        Full mode replaces the landmarks with ``refiner``'s where one is given and reports the pose of
        the final landmarks (``landmark_pose.with_landmark_pose``). ``timings`` receives the stages in
        milliseconds: ``crop`` (cropping, normalising and mapping the results back to the frame),
        ``infer`` (the ONNX Runtime run alone) and, in full mode with faces, ``refine`` (refiner and fit).
        """
        return self.estimate_faces_batch([frame_bgr], [face_boxes], mode, refiner, timings)[0]

    def estimate_faces_batch(self, frames_bgr: Sequence[np.ndarray], boxes_per_frame: Sequence[np.ndarray], mode: str,
                             refiner: Refiner | None = None,
                             timings: dict[str, float] | None = None) -> list[list[FaceEstimate]]:
        """``estimate_faces`` for several frames at once: the faces of all ``frames_bgr`` (``boxes_per_frame[k]``
        ``(N_k, 4)`` for frame ``k``) go through the network, the refiner and the pose fit as one batch, and
        come back as one list per frame, the faces of each as ``estimate_faces`` gives them. ``timings`` gets
        the stages of the whole batch."""
        if len(frames_bgr) != len(boxes_per_frame):
            raise ValueError(f"{len(frames_bgr)} frames but {len(boxes_per_frame)} box arrays")
        info = self.info(mode)
        size = info.input_size
        stages: dict[str, float] = {}
        start = time.perf_counter()
        boxes = [np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in boxes_per_frame]
        cropped = [crop.crop_faces(frame, frame_boxes, size) for frame, frame_boxes in zip(frames_bgr, boxes)]
        crops = (np.concatenate([c for c, _ in cropped]) if cropped
                 else np.zeros((0, size, size, 3), np.uint8))
        transforms = [t for _, frame_transforms in cropped for t in frame_transforms]
        batch = model_io.to_input(crops, info)
        stages["crop"] = ms_since(start)

        start = time.perf_counter()
        network = self.run(batch, mode)
        stages["infer"] = ms_since(start)
        final = network
        if mode == "full" and len(batch):
            start = time.perf_counter()
            final = with_landmark_pose(network if refiner is None else refiner(batch, network, info), info)
            stages["refine"] = ms_since(start)

        start = time.perf_counter()
        scores = quality.score(self._scorer(mode), mode, network, final, info)
        faces: list[list[FaceEstimate]] = []
        first = 0
        for frame_boxes in boxes:
            faces.append([self._face(frame_boxes[k, :4], transforms[first + k], network, final, first + k, size,
                                     scores) for k in range(len(frame_boxes))])
            first += len(frame_boxes)
        stages["crop"] += ms_since(start)
        if timings is not None:
            timings.update(stages)
        return faces

    @staticmethod
    def _face(box: np.ndarray, transform: np.ndarray, network: EstimatorOutput, final: EstimatorOutput,
              i: int, size: int, scores: tuple[np.ndarray, np.ndarray]) -> FaceEstimate:
        """Face ``i`` of a batch mapped back to the frame through its crop's ``transform``, with its quality and
        validity from ``scores`` (``quality.score``)."""
        centre, scale = crop.translation_to_frame(final.pose[i, 3:6], transform, size)
        return FaceEstimate(
            box=np.array(box, dtype=np.float64), square=crop.crop_square(box),
            angles=final.pose[i, :3].astype(np.float64), centre=centre, scale=scale,
            landmarks=None if final.landmarks is None else crop.unwarp_points(final.landmarks[i], transform),
            visibility=None if final.visibility is None else final.visibility[i].astype(np.float64),
            network_angles=network.pose[i, :3].astype(np.float64),
            network_landmarks=(None if network.landmarks is None
                               else crop.unwarp_points(network.landmarks[i], transform)),
            quality=float(scores[0][i]), valid=bool(scores[1][i]))

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
            self._scorers.clear()
            self._why.clear()
            self._speed.clear()

    def __enter__(self) -> "PoseEstimator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
