"""The occlusion-aware regressor (OR, section 3.2 of the MNN paper) at run time: heatmaps and visibilities → a
valid face shape.

``trainer.train_or`` fits it and writes ``or.npz`` (``app.core.or_format``) beside the ONNX models;
``FacePipeline`` runs it in full mode as its refiner (``OcclusionAwareRegressor.__call__`` is the
pipeline's ``Refiner`` seam). The cascade itself, steps 1–6, is ``app.core.or_cascade``'s, which the
trainer runs too; this module adds what only the runtime does: a face whose pose is not finite keeps the
network's landmarks, the shape-fit operators are remembered per visibility pattern, and step 7 below.

7. Lock check: a face whose active landmarks' peaks lie a median of more than ``lock_threshold`` from
   the final shape (in the anchor's frame) is one the tree stages lost (its start, from a ``pose_proj``
   far off, left them nothing to follow); it keeps the stage-0 shape, a valid face too.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from app.core import or_cascade as cascade
from app.core import or_format
from app.core.model_io import ModelInfo
from app.core.or_cascade import apply_linear, heatmap_peaks
from app.core.or_format import FORMAT_VERSION, OR_FILE, RefinerError
from app.core.results import EstimatorOutput

__all__ = ["FORMAT_VERSION", "LABEL", "OR_FILE", "OcclusionAwareRegressor", "Refinement", "RefinerError", "lost"]

log = logging.getLogger(__name__)

LABEL = "OR"
"""How the viewer's status bar names this refiner."""
OPERATOR_CACHE = 256
"""How many visibility patterns' shape-fit operators a regressor remembers (each ``K × 2L`` floats)."""


@dataclass(frozen=True)
class Refinement:
    """What the OR made of a batch of ``N`` faces (crop pixels throughout).

    ``landmarks`` ``(N, L, 2)`` the refined shapes; ``initial`` ``(N, L, 2)`` the start ``x⁰``;
    ``anchor`` ``(N, L, 2)`` the stage-0 shape (the shape model fitted to the heatmap peaks);
    ``stages`` ``(S + 1, N, L, 2)`` the shape after stage 0 (the anchor) and after each tree stage, before
    the lock check; ``tree_steps`` ``(N, L, 2)`` the sum over stages of the displacements the trees proposed
    for each landmark (before the shape model's fit; exactly zero for a landmark that is not active);
    ``active`` ``(N, L)`` the landmarks whose trees were added (visible, not self-occluded, usable
    heatmap); ``refined`` ``(N,)`` False for a face whose ``pose_proj`` (or the ``x⁰`` it gives) was
    not finite: its ``landmarks`` are NaN and ``__call__`` keeps the network's; ``locked`` ``(N,)``
    False for a face the tree stages lost (step 7): its ``landmarks`` are its ``anchor``.
    """

    landmarks: np.ndarray
    initial: np.ndarray
    anchor: np.ndarray
    stages: np.ndarray
    tree_steps: np.ndarray
    active: np.ndarray
    refined: np.ndarray
    locked: np.ndarray


def lost(peaks: np.ndarray, shapes: np.ndarray, inverse: np.ndarray, active: np.ndarray,
         threshold: float) -> np.ndarray:
    """``(N,)`` faces whose active landmarks' ``peaks`` lie a median of more than ``threshold`` (mean-shape
    units, through ``inverse``) from ``shapes``; a face without a usable peak is not lost."""
    usable = np.asarray(active, dtype=bool) & np.isfinite(peaks).all(-1)
    distance = np.linalg.norm(apply_linear(inverse, np.where(usable[..., None], peaks - shapes, 0.0)), axis=-1)
    ordered = np.sort(np.where(usable, distance, np.inf), axis=1)
    counts = usable.sum(1)
    rows = np.arange(len(shapes))
    low, high = ordered[rows, np.maximum(counts - 1, 0) // 2], ordered[rows, np.maximum(counts, 1) // 2]
    median = np.where(counts % 2 == 1, low, (low + high) / 2)
    return (counts > 0) & (median > threshold)


class OcclusionAwareRegressor:
    """The cascade of ``or.npz``; call it as the pipeline's refiner or use ``refine`` directly."""

    label = LABEL

    def __init__(self, arrays: Mapping[str, Any], source: str = "<in memory>") -> None:
        """Check ``arrays`` (``or_format``); ``RefinerError`` naming ``source`` if wrong."""
        self.source = str(source)
        self._arrays = or_format.validate(arrays, self.source)
        self.settings, self.shape_model, self.refine_model, self.stages = or_format.unpack(self._arrays)
        self.stage_count = len(self.stages)
        self.input_size = self.settings.input_size
        self.landmarks = self.settings.landmarks
        self.trees = self._arrays["anchors"].shape[1]
        self.pool_size = self._arrays["offsets"].shape[2]
        self.depth = self.stages[0].depth
        self._operators: dict[tuple[bool, bytes], np.ndarray] = {}

    # --- file ------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path | str) -> "OcclusionAwareRegressor":
        """Read ``or.npz``; ``RefinerError`` naming the file if it is missing, truncated, pickled, malformed or of
        another version."""
        regressor = cls(or_format.read(path), str(path))
        log.info("%s: OR with %d stages x %d trees of depth %d", path, regressor.stage_count, regressor.trees,
                 regressor.depth)
        return regressor

    def save(self, path: Path | str) -> Path:
        """Write ``or.npz`` (atomically: a temporary file renamed into place); returns the path."""
        return or_format.write(self._arrays, path)

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """Copies of the stored arrays (the file's contents)."""
        return {name: value.copy() for name, value in self._arrays.items()}

    @property
    def provenance(self) -> dict[str, Any]:
        """What the trainer recorded about this regressor (data, seed, settings)."""
        return or_format.provenance(self._arrays)

    # --- runtime ---------------------------------------------------------------------------------

    def check(self, info: ModelInfo) -> None:
        """``RefinerError`` unless this regressor was trained for a model like ``info`` (landmarks, input size)."""
        if info.landmarks != self.landmarks or info.input_size != self.input_size:
            raise RefinerError(f"{self.source}: trained for {self.landmarks} landmarks at {self.input_size} px; "
                               f"{info.path} has {info.landmarks} at {info.input_size} px (train it again for "
                               f"this model)")

    def self_occluded(self, pose_proj_deg: np.ndarray) -> np.ndarray:
        """``(N, L)`` landmarks hidden by the face itself at ``pose_proj``."""
        return cascade.self_occluded(pose_proj_deg, self.settings.normals, self.settings.facing_min)

    def refine(self, heatmaps: np.ndarray, visibility: np.ndarray, pose_proj_deg: np.ndarray,
               peaks: np.ndarray | None = None) -> Refinement:
        """Run the cascade on the full model's outputs for ``N`` faces (``or_cascade``, then step 7).

        ``peaks`` ``(N, L, 2)`` are the network's landmarks (crop pixels); by default they are found in
        ``heatmaps`` the way the exported model finds them (``heatmap_peaks``).
        """
        heatmaps = np.asarray(heatmaps)
        visibility = np.asarray(visibility, dtype=np.float64)
        pose = np.asarray(pose_proj_deg, dtype=np.float64).reshape(-1, 6)
        n, count = len(pose), self.landmarks
        if heatmaps.ndim != 4 or heatmaps.shape[:2] != (n, count) or visibility.shape != (n, count):
            raise ValueError(f"expected heatmaps (N, {count}, H, W) and visibility (N, {count}) for {n} faces, "
                             f"got {heatmaps.shape} and {visibility.shape}")
        maxima, evidence = cascade.heatmap_maxima(heatmaps)
        begun = cascade.begin(self.settings, pose, visibility, evidence)
        initial, active = begun.initial, begun.active
        peaks = heatmap_peaks(heatmaps) if peaks is None else np.asarray(peaks, dtype=np.float64)
        if peaks.shape != initial.shape:
            raise ValueError(f"expected peaks {initial.shape}, got {peaks.shape}")
        with np.errstate(invalid="ignore", over="ignore"):  # broken heatmaps' samples are zeroed in pool_values
            anchor = cascade.start(self.settings, cascade.Framed.of(initial, self.settings), active, peaks,
                                   self.shape_model, self.shape_fit_operators)
            framed_anchor = cascade.Framed.of(anchor, self.settings)
            shapes, history, tree_steps = anchor, [anchor], np.zeros_like(initial)
            operators = self.shape_fit_operators(active, refine=True)
            for trees in self.stages:
                shapes, moved = cascade.stage(self.settings, trees, cascade.Framed.of(shapes, self.settings),
                                              framed_anchor, heatmaps, maxima, active, operators, self.refine_model)
                tree_steps += moved
                history.append(shapes)
            locked = ~lost(peaks, shapes, framed_anchor.inverse, active, self.settings.lock_threshold)
        landmarks = np.where(locked[:, None, None], shapes, anchor)
        landmarks = np.where(begun.refined[:, None, None], landmarks, np.nan)
        return Refinement(landmarks=landmarks, initial=initial, anchor=anchor, stages=np.stack(history),
                          tree_steps=tree_steps, active=active, refined=begun.refined, locked=locked)

    def shape_fit_operators(self, active: np.ndarray, refine: bool = False) -> np.ndarray:
        """The shape-fit operators of stage 0's model (``refine``: the tree stages') for these active landmarks
        ``(N, L)``, remembered per visibility pattern: a video's faces repeat a few patterns, and each new
        one costs a ``K×K`` solve."""
        active = np.asarray(active, dtype=bool)
        model = self.refine_model if refine else self.shape_model
        keys = [(refine, np.packbits(row).tobytes()) for row in active]
        found = {key: self._operators.get(key) for key in keys}
        missing = sorted(key for key, value in found.items() if value is None)
        if missing:
            computed = model.operators(active[[keys.index(key) for key in missing]])
            found.update(zip(missing, computed))
            if len(self._operators) + len(missing) > OPERATOR_CACHE:
                self._operators = {}
            self._operators.update(zip(missing, computed))
        return np.stack([found[key] for key in keys]) if keys else np.zeros((0, *model.basis.shape))

    def __call__(self, batch: np.ndarray | None, out: EstimatorOutput, info: ModelInfo) -> EstimatorOutput:
        """The pipeline's refiner seam: ``out`` with its landmarks replaced by the OR's (crop pixels).

        ``batch`` (the network input) is not needed: the OR reads the heatmaps, visibilities and
        ``pose_proj``. Faces whose ``pose_proj`` is not finite keep the network's landmarks.
        """
        self.check(info)
        if out.heatmaps is None or out.visibility is None or out.landmarks is None:
            raise ValueError("the OR needs the full model's outputs (heatmaps, visibility, landmarks)")
        if len(out.pose_proj) == 0:
            return out
        result = self.refine(out.heatmaps, out.visibility, out.pose_proj, out.landmarks)
        landmarks = np.where(result.refined[:, None, None], result.landmarks, out.landmarks)
        return dataclasses.replace(out, landmarks=landmarks.astype(np.float32))
