"""``python -m trainer quantize``: INT8 variants of the ONNX models for the CPU, and whether the app runs them.

Each of ``mnn_encoder.onnx`` (pose mode) and ``mnn_full.onnx`` (full mode) is statically quantised
with ONNX Runtime (``quant_pre_process``, then ``quantize_static`` calibrated on crops of up to
``--calibration-faces`` training faces, drawn with a seed from the training side of
``trainer.train.split_items(…, seed=0)``; give ``--data`` in training's order) and written beside it
as ``mnn_*.int8.onnx`` with all the fp32 metadata plus ``precision=int8``. Then, on the CPU provider
with the app's session options: latency at batch 1 (warm-up, then the median of ``--runs``, fp32
and INT8 interleaved so that a busy CPU slows both alike) and pose MAE on the split's validation
faces (never calibrated on), labelled as ``trainer.evaluate`` labels them; in full mode the pose is
what the app reports there, the PnP pose of the OR's landmarks (``or.npz`` beside the fp32 models,
fitted on fp32 outputs, runs on both). INT8 is accurate enough for a mode (``int8_accurate``)
when it loses at most ``MAX_MAE_LOSS``° of mean MAE. ``precision.json`` records the figures, that
verdict and the fp32 file's size and SHA-256 (for ``PoseEstimator(precision="auto")``), and
``fp32_int8_angle_diff``, the mean |Δ| of the angles between the two on the same faces, which MAE
against labels several degrees off can hide. The latencies are this machine's, for reference: the
speed half of the choice is measured by the app on the machine in use (``app.core.precision``).

Scheme: QDQ (ONNX Runtime's recommended format), uint8 activations and int8 weights per tensor,
MinMax calibration. Only the backbone is quantised (``QUANTISED_OPS``): the heads (``fc_*``) and all
after them stay fp32, since 8-bit pose outputs would step the angles by about a degree and 8-bit
heatmap logits blunt the softmax; so do the encoder's bottleneck stages (``FP32_STAGES_FROM`` on) and
the decoder's concatenations, whose rounding cost degrees of pose. The speed-up depends on the CPU,
hence only the accuracy verdict here and a speed check on each machine. The experiments behind these
choices: ``models/TRAINING_HISTORY.md``, "INT8 quantisation".
"""
from __future__ import annotations

import json
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quant_pre_process, quantize_static)
from tqdm import tqdm

from app.core import model_io
from app.core.crop import crop_faces
from app.core.estimator import PoseEstimator, Refiner
from app.core.model_io import MODES, ModelError, ModelInfo
from app.core.precision import cpu_identity
from trainer.datasets.registry import open_dataset
from trainer.datasets.sample import FaceSample
from trainer.evaluate import refiner_beside, truth_pose
from trainer.metrics import pose_mae
from trainer.train import split_items

log = logging.getLogger(__name__)

MAX_MAE_LOSS = 0.3
"""Degrees of mean pose MAE (yaw, pitch, roll) INT8 may lose against fp32 and still count as accurate enough."""
CALIBRATION_FACES = 256
CALIBRATION_BATCH = 8
SPLIT_SEED = 0
QUANTISED_OPS = ("Conv", "ConvTranspose", "Add", "MaxPool", "Resize", "Relu")
FP32_STAGES_FROM = 5
"""Encoder stages (``down.K``, ``enc_blocks.K``) from this index on stay fp32: pose is sensitive to their rounding."""
HEAD_PREFIX = "fc_"
"""The heads are the convolutions named after ``MNN``'s ``fc_*`` modules; they and what follows stay fp32."""
CPU = ["CPUExecutionProvider"]


@dataclass(frozen=True)
class Scheme:
    """How to quantise: ONNX Runtime's format, per-channel weights, activation type."""

    quant_format: QuantFormat = QuantFormat.QDQ
    per_channel: bool = False
    activation_type: QuantType = QuantType.QUInt8

    def describe(self) -> dict[str, Any]:
        return {"format": self.quant_format.name, "per_channel": self.per_channel,
                "activations": self.activation_type.name, "weights": QuantType.QInt8.name,
                "calibration": "MinMax", "quantised_ops": list(QUANTISED_OPS),
                "fp32": f"heads ({HEAD_PREFIX}*) onward; encoder stages {FP32_STAGES_FROM} on"}


def face_crop(sample: FaceSample, size: int) -> np.ndarray | None:
    """The ``(size, size, 3)`` RGB crop the app's per-face path feeds the network for ``sample``
    (``app.core.crop.crop_faces`` of its box), or None without a box."""
    if sample.box is None:
        return None
    crops, _ = crop_faces(cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR), np.asarray([sample.box]), size)
    return crops[0]


def split_samples(specs: Sequence[str], seed: int = SPLIT_SEED) -> tuple[list, list]:
    """``(training, validation)`` items of ``specs`` exactly as ``trainer.train`` splits them."""
    return split_items([open_dataset(spec) for spec in specs], seed, None)


def calibration_crops(items: list, count: int, size: int, seed: int) -> np.ndarray:
    """``(N, size, size, 3)`` crops of up to ``count`` of ``items`` drawn with ``seed``."""
    order = np.random.default_rng(seed).permutation(len(items))[:count]
    crops = [face_crop(items[i][0][items[i][1]], size) for i in tqdm(order, desc="calibration crops", unit="face")]
    crops = [c for c in crops if c is not None]
    if not crops:
        raise ValueError("no training face with a box to calibrate on")
    return np.stack(crops)


class CropReader(CalibrationDataReader):
    """Feeds normalised calibration crops to ONNX Runtime's calibrator, a batch at a time, with a progress bar."""

    def __init__(self, crops: np.ndarray, info: ModelInfo, label: str) -> None:
        self.crops, self.info, self.label = crops, info, label
        self._batches: Iterator[np.ndarray] | None = None

    def _iterate(self) -> Iterator[np.ndarray]:
        starts = range(0, len(self.crops), CALIBRATION_BATCH)
        for start in tqdm(starts, desc=f"calibrating {self.label}", unit="batch"):
            yield model_io.to_input(self.crops[start:start + CALIBRATION_BATCH], self.info)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._batches is None:
            self._batches = self._iterate()
        batch = next(self._batches, None)
        return None if batch is None else {model_io.INPUT_NAME: batch}

    def rewind(self) -> None:
        self._batches = None


def fp32_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the head convolutions and every node downstream of them: left in fp32."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    stack = [n for n in model.graph.node if n.op_type == "Conv" and f"/{HEAD_PREFIX}" in n.name]
    if not stack:
        raise ModelError(f"{model.graph.name}: no {HEAD_PREFIX}* head convolutions to keep in fp32")
    seen: dict[str, None] = {}
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen[node.name] = None
        stack.extend(c for out in node.output for c in consumers.get(out, []))
    return list(seen)


def bottleneck_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes in the encoder stages from ``FP32_STAGES_FROM`` on: left in fp32, downstream not."""
    def stage(name: str) -> int | None:
        for part in name.split("/"):
            prefix, _, index = part.rpartition(".")
            if prefix in ("down", "enc_blocks") and index.isdigit():
                return int(index)
        return None

    return [n.name for n in model.graph.node if (k := stage(n.name)) is not None and k >= FP32_STAGES_FROM]


def read_metadata(path: Path) -> dict[str, str]:
    """The custom metadata of an ONNX file; ``ModelError`` if it is not one."""
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf and onnx raise several types for a damaged file
        raise ModelError(f"{path}: not a loadable ONNX model ({type(exc).__name__})") from None
    return {p.key: p.value for p in proto.metadata_props}


def write_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Replace ``path``'s custom metadata with ``metadata`` (quantisation drops it)."""
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def quantize_model(fp32_path: Path, int8_path: Path, crops: np.ndarray, scheme: Scheme = Scheme()) -> None:
    """Write the INT8 variant of ``fp32_path`` to ``int8_path``, calibrated on ``crops``, with its metadata."""
    metadata = read_metadata(fp32_path)
    info = ModelInfo.from_metadata(fp32_path, metadata)
    with tempfile.TemporaryDirectory(prefix="quantize.") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared))
        keep = fp32_nodes(graph) + bottleneck_nodes(graph)
        quantize_static(str(prepared), str(int8_path), CropReader(crops, info, fp32_path.name),
                        quant_format=scheme.quant_format, per_channel=scheme.per_channel,
                        activation_type=scheme.activation_type, weight_type=QuantType.QInt8,
                        op_types_to_quantize=list(QUANTISED_OPS), nodes_to_exclude=keep,
                        calibrate_method=CalibrationMethod.MinMax, calibration_providers=CPU)
    write_metadata(int8_path, {**metadata, model_io.PRECISION_KEY: "int8"})


def latencies_ms(estimators: Sequence[PoseEstimator], mode: str, runs: int, warmup: int = 10) -> list[float]:
    """Median ms of one batch-1 run of each estimator's ``mode`` model, the runs interleaved."""
    models = [e.model(mode) for e in estimators]
    rng = np.random.default_rng(0)
    size = models[0].info.input_size
    batch = model_io.to_input(rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8), models[0].info)
    times: list[list[float]] = [[] for _ in models]
    for index in range(warmup + runs):
        for model, series in zip(models, times):
            start = time.perf_counter()
            model.run(batch)
            if index >= warmup:
                series.append((time.perf_counter() - start) * 1000.0)
    return [statistics.median(series) for series in times]


def validation_faces(items: list, mean_face: np.ndarray) -> tuple[list, np.ndarray]:
    """The validation items whose face has a box and a pose label, and those labels (yaw, pitch, roll degrees)."""
    kept, truths = [], []
    for dataset, index in tqdm(items, desc="validation faces", unit="face"):
        sample = dataset[index]
        truth = truth_pose(sample, mean_face)
        if sample.box is not None and truth is not None:
            kept.append((dataset, index))
            truths.append(truth)
    if not kept:
        raise ValueError("no validation face with a box and a pose label")
    return kept, np.stack(truths)


def predict_angles(estimator: PoseEstimator, mode: str, items: list, refiner: Refiner | None = None) -> np.ndarray:
    """``(N, 3)`` yaw, pitch, roll in degrees for the faces of ``items``, one face per run as evaluation runs
    them, through the app's per-face path (``PoseEstimator.estimate_faces``): in full mode the pose of the
    final landmarks (``refiner``'s when given), what the app reports."""
    def angles(dataset: Any, index: int) -> np.ndarray:
        sample = dataset[index]
        frame = cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR)
        return estimator.estimate_faces(frame, np.asarray([sample.box]), mode, refiner)[0].angles

    return np.stack([angles(dataset, index) for dataset, index in items])


def assess(models_dir: Path, out_dir: Path, mode: str, items: list, truths: np.ndarray,
           runs: int) -> dict[str, Any]:
    """fp32 against INT8 for one mode: latency (this machine's, for reference), validation MAE, the accuracy
    verdict, and the fp32 file's identity."""
    fp32_file = MODES[mode][0]
    fp32 = PoseEstimator(models_dir, CPU, precision="fp32")
    int8 = PoseEstimator(out_dir, CPU, precision="int8")
    fp32_ms, int8_ms = latencies_ms([fp32, int8], mode, runs)
    refiner = refiner_beside(fp32, fp32.info(mode)) if mode == "full" else None
    fp32_pred, int8_pred = predict_angles(fp32, mode, items, refiner), predict_angles(int8, mode, items, refiner)
    fp32_mae, int8_mae = pose_mae(fp32_pred, truths)["mean"], pose_mae(int8_pred, truths)["mean"]
    speedup, loss = fp32_ms / int8_ms, int8_mae - fp32_mae
    return {
        "fp32_file": fp32_file, "int8_file": model_io.int8_file(fp32_file),
        "fp32_ms": round(fp32_ms, 3), "int8_ms": round(int8_ms, 3), "speedup": round(speedup, 3),
        "fp32_mae": round(fp32_mae, 4), "int8_mae": round(int8_mae, 4), "mae_loss": round(loss, 4),
        "fp32_int8_angle_diff": round(float(np.abs(int8_pred - fp32_pred).mean()), 4),
        "int8_accurate": bool(loss <= MAX_MAE_LOSS),
        "fp32_size": (models_dir / fp32_file).stat().st_size,
        "fp32_sha256": model_io.file_sha256(models_dir / fp32_file),
    }


def quantize_all(models_dir: Path, specs: Sequence[str], out_dir: Path, calibration_faces: int = CALIBRATION_FACES,
                 seed: int = 0, runs: int = 50, split_seed: int = SPLIT_SEED) -> dict[str, Any]:
    """Quantise both models, measure them and write ``precision.json`` into ``out_dir``; returns its content."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for filename, _, _ in MODES.values():
        if not (models_dir / filename).is_file():
            raise ModelError(f"{models_dir / filename}: model file not found")
    train_items, val_items = split_samples(specs, split_seed)
    infos = {mode: ModelInfo.from_metadata(models_dir / name, read_metadata(models_dir / name))
             for mode, (name, _, _) in MODES.items()}
    crops_by_size: dict[int, np.ndarray] = {}
    val_by_size: dict[int, tuple[list, np.ndarray]] = {}
    record: dict[str, Any] = {"format_version": model_io.PRECISION_FORMAT,
                              "rule": {"max_mae_loss_deg": MAX_MAE_LOSS},
                              "scheme": Scheme().describe(), "data": list(specs), "split_seed": split_seed,
                              "modes": {}}
    for mode, (filename, _, _) in MODES.items():
        size = infos[mode].input_size
        if size not in crops_by_size:
            crops_by_size[size] = calibration_crops(train_items, calibration_faces, size, seed)
            val_by_size[size] = validation_faces(val_items, infos[mode].mean_face)
        quantize_model(models_dir / filename, out_dir / model_io.int8_file(filename), crops_by_size[size])
        log.info("wrote %s", out_dir / model_io.int8_file(filename))
        record["modes"][mode] = assess(models_dir, out_dir, mode, *val_by_size[size], runs)
    sizes = sorted(crops_by_size)
    record["calibration"] = {"faces": int(len(crops_by_size[sizes[0]])), "seed": seed, "from": "training split"}
    record["validation_faces"] = int(len(val_by_size[sizes[0]][0]))
    record["timing"] = {"provider": CPU[0], "batch": 1, "runs": runs, "statistic": "median ms",
                        "cpu": cpu_identity(), "use": "reference only; the app measures the machine in use"}
    (out_dir / model_io.PRECISION_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record
