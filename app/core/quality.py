"""Face quality: how face-like and well framed each crop is, so that a detection of something else comes out invalid.

A few features of the network's own outputs (``features``), combined by a logistic model whose parameters
``python -m trainer fit-quality`` writes to ``models/quality.json`` (``QUALITY_FILE``), one model per mode:

- both modes: the disagreement of the encoder's two pose heads, ``fc_pose`` and ``fc_pose_proj`` (rotation
  angle between them, shift of the face centre, ratio of the scales), and where and how large ``fc_pose``
  puts the face in the crop (a face cropped by the crop rule sits centred, at one size);
- full mode adds the heatmaps' peak height (mean over landmarks), the distance of the final landmarks'
  shape from the posed mean face (RMS, in mean-face units), the angle between the landmark pose and
  ``fc_pose`` and the mean visibility.

``quality`` is the model's probability (0–1) that the crop is a face; ``valid`` is ``quality >= threshold``,
the threshold chosen on the training split (``trainer.quality_fit``). ``quality.json`` names the fp32 model
file each mode was fitted on by SHA-256: where the file is absent, names another model, or does not read,
every face gets ``quality`` NaN (an empty CSV cell) and ``valid`` True, with one log line saying why.
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.core.crop import to_normalised
from app.core.landmark_pose import INNER_POINTS
from app.core.model_io import MODES, ModelInfo, check_mode, file_sha256
from app.core.pose import TZ_MIN, project, rotation_matrix
from app.core.results import EstimatorOutput

log = logging.getLogger(__name__)

QUALITY_FILE = "quality.json"
QUALITY_FORMAT = "1"

POSE_FEATURES = ("heads_angle", "heads_shift", "heads_scale", "face_offset", "face_size")
"""Features of the encoder's outputs, in both modes: ``heads_angle`` degrees between the rotations of
``fc_pose`` and ``fc_pose_proj``; ``heads_shift`` the distance between their face centres and ``heads_scale``
``|log(tz / tz_proj)|``; ``face_offset`` how far ``fc_pose`` puts the face centre from the crop's centre
(normalised crop units) and ``face_size`` ``log tz``."""
FULL_FEATURES = POSE_FEATURES + ("heatmap_peak", "shape_distance", "landmark_head_angle", "visibility")
"""Full mode adds: ``heatmap_peak`` the mean over landmarks of ``log(max · S²)`` of each softmax heatmap (0 for a
flat map); ``shape_distance`` the RMS distance of the final inner landmarks from the mean face posed at
their fitted pose, in mean-face units; ``landmark_head_angle`` degrees between that pose and ``fc_pose``;
``visibility`` the mean visibility."""


def feature_names(mode: str) -> tuple[str, ...]:
    """The features ``features`` computes in ``mode``, in its column order."""
    return FULL_FEATURES if check_mode(mode) == "full" else POSE_FEATURES


def rotation_angle(a_deg: np.ndarray, b_deg: np.ndarray) -> np.ndarray:
    """Degrees of the rotation between two ``(N, 3)`` yaw, pitch, roll poses (the geodesic distance)."""
    ra = rotation_matrix(np.radians(np.asarray(a_deg, dtype=np.float64)))
    rb = rotation_matrix(np.radians(np.asarray(b_deg, dtype=np.float64)))
    cosine = (np.einsum("nij,nij->n", ra, rb) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def features(network: EstimatorOutput, final: EstimatorOutput, info: ModelInfo, mode: str) -> np.ndarray:
    """``(N, F)`` features of ``N`` faces, in ``POSE_FEATURES`` or ``FULL_FEATURES`` order: ``network`` is the
    network's outputs, ``final`` the same after the refiner and the landmark pose (equal in pose mode)."""
    pose, proj = np.asarray(network.pose, np.float64), np.asarray(network.pose_proj, np.float64)
    tz, tz_proj = np.maximum(pose[:, 5], TZ_MIN), np.maximum(proj[:, 5], TZ_MIN)
    columns = [rotation_angle(pose[:, :3], proj[:, :3]), np.linalg.norm(pose[:, 3:5] - proj[:, 3:5], axis=1),
               np.abs(np.log(tz / tz_proj)), np.linalg.norm(pose[:, 3:5], axis=1), np.log(tz)]
    if check_mode(mode) == "full":
        heatmaps = np.asarray(network.heatmaps)
        size = heatmaps.shape[-1] * heatmaps.shape[-2]
        peaks = heatmaps.reshape(*heatmaps.shape[:2], -1).max(axis=2).astype(np.float64)
        columns.append(np.log(np.maximum(peaks * size, 1.0)).mean(axis=1))
        landmark_pose = np.asarray(final.pose, np.float64)
        posed = np.asarray(project(np.c_[np.radians(landmark_pose[:, :3]), landmark_pose[:, 3:5],
                                         np.maximum(landmark_pose[:, 5:6], TZ_MIN)], info.mean_face))
        points = to_normalised(np.asarray(final.landmarks, np.float64), info.input_size)
        gap = (points - posed)[:, INNER_POINTS]
        rms = np.sqrt(np.mean(np.sum(gap ** 2, axis=2), axis=1))
        columns.append(rms * np.maximum(landmark_pose[:, 5], TZ_MIN))
        columns.append(rotation_angle(landmark_pose[:, :3], pose[:, :3]))
        columns.append(np.asarray(final.visibility, np.float64).mean(axis=1))
    return np.stack(columns, axis=1) if len(pose) else np.zeros((0, len(columns)))


@dataclass(frozen=True)
class ModeScorer:
    """One mode's logistic model: ``quality = σ(bias + Σ weights · (x − mean) / scale)`` over ``features``."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float

    def quality(self, x: np.ndarray, mode: str) -> np.ndarray:
        """``(N,)`` quality of ``(N, F)`` features (all of ``mode``'s, in order); 0 where any is not finite."""
        names = feature_names(mode)
        chosen = np.asarray(x, np.float64)[:, [names.index(name) for name in self.features]]
        logit = self.bias + ((chosen - self.mean) / self.scale) @ self.weights
        with np.errstate(over="ignore", invalid="ignore"):
            score = 1.0 / (1.0 + np.exp(-logit))
        return np.where(np.isfinite(score), score, 0.0)

    def to_json(self) -> dict:
        return {"features": list(self.features), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "weights": self.weights.tolist(), "bias": float(self.bias), "threshold": float(self.threshold)}

    @staticmethod
    def from_json(data: dict, mode: str) -> "ModeScorer":
        names = tuple(data["features"])
        known = feature_names(mode)
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise ValueError(f"{mode} mode: unknown feature(s) {', '.join(unknown) or '(none)'}")
        arrays = [np.asarray(data[key], np.float64) for key in ("mean", "scale", "weights")]
        if any(a.shape != (len(names),) for a in arrays) or not (arrays[1] > 0).all():
            raise ValueError(f"{mode} mode: mean, scale and weights must be {len(names)} numbers, scales positive")
        return ModeScorer(names, *arrays, float(data["bias"]), float(data["threshold"]))


def write(path: Path, scorers: dict[str, ModeScorer], models_dir: Path, provenance: dict) -> Path:
    """Write ``quality.json``: per mode the scorer and the fp32 model file it was fitted on (name, SHA-256)."""
    modes = {mode: {**scorer.to_json(), "model_file": MODES[mode][0],
                    "model_sha256": file_sha256(Path(models_dir) / MODES[mode][0])}
             for mode, scorer in scorers.items()}
    text = json.dumps({"format": QUALITY_FORMAT, "modes": modes, "provenance": provenance}, indent=1)
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text + "\n", encoding="utf-8")
    temporary.replace(path)
    return path


def read_scorer(models_dir: Path, mode: str) -> tuple[ModeScorer | None, str]:
    """``mode``'s scorer from ``models_dir/quality.json`` and a line saying why there is none where there is none."""
    path = Path(models_dir) / QUALITY_FILE
    if not path.is_file():
        return None, f"{path} not found (python -m trainer fit-quality writes it)"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != QUALITY_FORMAT:
            return None, f"{path}: format {data.get('format')!r}, this runtime reads {QUALITY_FORMAT}"
        entry = data["modes"].get(mode)
        if entry is None:
            return None, f"{path} has no {mode}-mode scorer"
        model_file = Path(models_dir) / MODES[mode][0]
        if not model_file.is_file() or entry.get("model_sha256") != file_sha256(model_file):
            return None, f"{path}: fitted on another {MODES[mode][0]} (run python -m trainer fit-quality again)"
        return ModeScorer.from_json(entry, mode), ""
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return None, f"{path}: not a quality file ({error})"


_cache: dict[tuple, ModeScorer | None] = {}
_cache_lock = threading.Lock()


def _signature(models_dir: Path, mode: str) -> tuple:
    """What ``read_scorer``'s answer depends on: both files' size and modification time."""
    stats = []
    for name in (QUALITY_FILE, MODES[mode][0]):
        try:
            stat = (Path(models_dir) / name).stat()
            stats.append((stat.st_size, stat.st_mtime_ns))
        except OSError:
            stats.append(None)
    return (str(Path(models_dir).resolve()), mode, *stats)


def scorer_for(models_dir: Path, mode: str) -> ModeScorer | None:
    """``read_scorer``'s scorer, read once per state of the files; the reason for none is logged once."""
    key = _signature(models_dir, mode)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    scorer, why = read_scorer(models_dir, mode)
    if scorer is None:
        log.warning("face quality off in %s mode: %s; every face counts as valid", mode, why)
    with _cache_lock:
        _cache[key] = scorer
    return scorer


def score(scorer: ModeScorer | None, mode: str, network: EstimatorOutput, final: EstimatorOutput,
          info: ModelInfo) -> tuple[np.ndarray, np.ndarray]:
    """``(N,)`` quality and ``(N,)`` validity of a batch's faces by ``scorer`` (``scorer_for``); NaN and True
    without one (``quality.json`` absent or unusable)."""
    count = len(network.pose)
    if scorer is None or not count:
        return np.full(count, np.nan), np.ones(count, bool)
    quality = scorer.quality(features(network, final, info, mode), mode)
    return quality, quality >= scorer.threshold
