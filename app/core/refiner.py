"""The occlusion-aware regressor (OR, section 3.2 of the MNN paper): heatmaps and visibilities → a valid face shape.

``trainer.train_or`` fits it and writes ``or.npz`` beside the ONNX models; ``FacePipeline`` runs it in
full mode as its refiner (``OcclusionAwareRegressor.__call__`` is the pipeline's ``Refiner`` seam).
Numpy only, vectorised over faces and trees; nothing here looks at an annotation. The per-frame
work keeps products of the shape model's size out of BLAS (``einsum`` instead): a multi-threaded
BLAS call on a busy two-core machine waits for the second core and costs far more than its arithmetic.

Algorithm, for each face:

1. Initial shape ``x⁰ = π(pose_proj, X)``: the mean 3D face ``X`` stored in ``or.npz`` posed by the
   network's ``pose_proj`` (angles to radians, ``tz`` clamped to ``pose.TZ_MIN``), in crop pixels.
2. Active landmarks: visible by the network (``visibility ≥ visibility_threshold``), not self-occluded
   at that pose, and with a usable heatmap. Self-occlusion uses a normal per mean-face landmark,
   pointing from a head centre behind the face (the centre of the face in x and y, at the depth of
   its deepest landmark, the jaw ends) to the landmark: a sphere-like head on which the jaw ends lie
   on the frontal silhouette. A landmark is self-occluded when its posed normal faces away from the
   camera by more than the stored angle beyond the silhouette (``normal_z < facing_min``). A heatmap
   with no positive finite maximum, or any NaN/inf (its maximum is then not finite), carries no
   evidence and counts as occluded: all-zero or broken heatmaps make the OR keep what it has.
3. Stage 0, the heatmap anchor: the shape model (step 5) fitted to the heatmap peaks (the network's
   ``landmarks``) of the active landmarks, then fitted again without the peaks that lie more than
   ``peak_outlier`` (mean-shape units) from that first fit. ``x⁰`` comes from ``pose_proj`` alone, and
   a pose error of a few degrees or a few percent of scale moves every landmark by more than a
   heatmap's reach; this stage puts the trees where the heatmaps can guide them. Occluded landmarks
   follow the visible ones through the shape model.
4. ``S`` stages, coarse to fine. Each stage computes the similarity ``A`` from the stored 2-D mean shape
   to the current shape (as in ERT), places a pool of ``P`` points around every landmark at
   ``x_l + A·offset`` (offsets in mean-shape units, their radius shrinking from stage to stage), and
   samples each landmark's OWN heatmap there (bilinear, zero outside the map), divided by that
   heatmap's maximum so that values lie in [0, 1] whatever the softmax's spread. A tree anchored at
   landmark ``l`` splits on differences of two of ``l``'s pool values (ERT's pixel-difference
   features, here heatmap-difference features: signs of local slopes towards the peak), and its
   leaf holds a 2-D displacement of ``l`` in mean-shape units, mapped to pixels by ``A``.
5. Occlusion rule: the displacement of a tree whose anchor landmark is not active is not added, so
   an occluded landmark receives no tree update and its heatmap is never read.
6. Valid face shape: after every stage the displacement from the stage's reference shape (in its
   mean-shape frame) is replaced by the shape model's fit to the ACTIVE landmarks' displacements: a
   stored basis ``U`` (RMS ``σ_k`` per component over the training displacements) with
   coefficients ``b = (U W Uᵀ + ν² diag(σ⁻²))⁻¹ U W d`` (``W`` selects active landmarks, ``ν`` the
   landmark noise: the posterior mean under the model's Gaussian prior), clamped to ``±c σ_k``. The
   basis holds the four similarity modes of the mean shape (shift, scale, in-plane turn) and the
   principal non-rigid modes of the training displacements. Stage 0 fits ``shape_basis`` to the
   displacement from ``x⁰``; the tree stages fit ``refine_basis`` (the same construction on what
   stage 0 leaves, ``x_true − anchor``) to the displacement from the stage-0 shape, the anchor, in
   the anchor's frame. Its prior scales are those of stage 0's residuals, a few pixels, so no run of
   tree updates can carry a face far from where the heatmaps put it.
   Occluded landmarks follow where the visible ones put the face model; a face with no active
   landmark (all-zero or NaN heatmaps) keeps ``x⁰`` exactly; no heatmap can push a shape outside
   the box of displacements seen in training.

7. Lock check: a face whose active landmarks' peaks lie a median of more than ``lock_threshold``
   from the final shape (in the anchor's frame) is one the tree stages lost (its start, from a
   ``pose_proj`` far off, left them nothing to follow); it keeps the stage-0 shape, a valid face too.

Trees that move their own landmark ("the 2-D displacements estimated by trees", section 3.2),
rather than ERT's whole-shape leaves, keep each leaf's estimation noise on its own landmark; the
explicit shape model then does what ERT's leaf averaging does implicitly (valid shapes, and
positions for occluded landmarks).

File format (``np.savez_compressed``, plain arrays, ``allow_pickle=False``), ``S`` stages, ``T`` trees
per stage, depth ``D``, ``L`` landmarks, ``P`` pool points, ``K`` shape components:
``format_version`` (int, ``FORMAT_VERSION``), ``stage_count`` (int), ``input_size`` (int, the crop the
network sees), ``visibility_threshold``, ``facing_min``, ``shape_clamp`` (``c``), ``shape_noise``
(``ν``, mean-shape units), ``peak_outlier`` and ``lock_threshold`` (floats), ``mean_face`` ``(L, 3)``, ``mean_shape`` ``(L, 2)`` (centred,
unit RMS radius), ``normals`` ``(L, 3)``, ``offsets`` ``(S, L, P, 2)``, ``anchors`` ``(S, T)``,
``feature_a``/``feature_b`` ``(S, T, 2^D − 1)`` pool indices and ``thresholds`` ``(S, T, 2^D − 1)`` of
the split nodes in heap order (go right when ``value[a] − value[b] > threshold``), ``leaves``
``(S, T, 2^D, 2)`` (shrinkage included), ``shape_basis`` ``(K, 2L)`` (orthonormal rows, coordinates
interleaved x, y), ``shape_sigma`` ``(K,)``, ``refine_basis`` ``(R, 2L)`` and ``refine_sigma`` ``(R,)``
(the tree stages' model), and ``provenance`` (a JSON string: data, seed, settings).
"""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from app.core.crop import from_normalised
from app.core.model_io import ModelError, ModelInfo
from app.core.pose import TZ_MIN, project, rotation_matrix
from app.core.results import EstimatorOutput

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
OR_FILE = "or.npz"
"""The regressor's file name in a models folder; full mode uses it whenever it is there."""
LABEL = "OR"
"""How the viewer's status bar names this refiner."""
OPERATOR_CACHE = 256
"""How many visibility patterns' shape-fit operators a regressor remembers (each ``K × 2L`` floats)."""
NEUTRAL_POSE = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
"""Stand-in ``pose_proj`` for a face whose own is not finite, so that the batch runs; that face keeps the
network's landmarks."""

_INTEGER_SCALARS = ("format_version", "stage_count", "input_size")
_FLOAT_SCALARS = ("visibility_threshold", "facing_min", "shape_clamp", "shape_noise", "peak_outlier",
                  "lock_threshold")
_ARRAYS = ("mean_face", "mean_shape", "normals", "offsets", "anchors", "feature_a", "feature_b", "thresholds",
           "leaves", "shape_basis", "shape_sigma", "refine_basis", "refine_sigma")
REQUIRED = _INTEGER_SCALARS + _FLOAT_SCALARS + _ARRAYS + ("provenance",)


class RefinerError(ModelError):
    """An ``or.npz`` that is unreadable, truncated, of another format version, or not for this model."""


@dataclass(frozen=True)
class Refinement:
    """What the OR made of a batch of ``N`` faces (crop pixels throughout).

    ``landmarks`` ``(N, L, 2)`` the refined shapes; ``initial`` ``(N, L, 2)`` the start ``x⁰``;
    ``anchor`` ``(N, L, 2)`` the stage-0 shape (the shape model fitted to the heatmap peaks);
    ``tree_steps`` ``(N, L, 2)`` the sum over stages of the displacements the trees proposed for each
    landmark (before the shape model's fit; exactly zero for a landmark that is not active);
    ``active`` ``(N, L)`` the landmarks whose trees were added (visible, not self-occluded, usable
    heatmap); ``refined`` ``(N,)`` False for a face whose ``pose_proj`` (or the ``x⁰`` it gives) was
    not finite: its ``landmarks`` are NaN and ``__call__`` keeps the network's; ``locked`` ``(N,)``
    False for a face the tree stages lost (step 7): its ``landmarks`` are its ``anchor``.
    """

    landmarks: np.ndarray
    initial: np.ndarray
    anchor: np.ndarray
    tree_steps: np.ndarray
    active: np.ndarray
    refined: np.ndarray
    locked: np.ndarray


def mean_shape_of(mean_face: np.ndarray) -> np.ndarray:
    """The 2-D reference shape of the ERT frames: the mean face seen from the front, centred, unit RMS radius."""
    shape = np.asarray(mean_face, dtype=np.float64)[:, :2]
    shape = shape - shape.mean(0)
    return shape / np.sqrt((shape ** 2).sum(1).mean())


def surface_normals(mean_face: np.ndarray) -> np.ndarray:
    """``(L, 3)`` unit normals of the mean face for the self-occlusion test (see the module docstring)."""
    face = np.asarray(mean_face, dtype=np.float64)
    centre = np.array([face[:, 0].mean(), face[:, 1].mean(), face[:, 2].min()])
    rays = face - centre
    return rays / np.maximum(np.linalg.norm(rays, axis=1, keepdims=True), 1e-12)


def pose_radians(pose_proj_deg: np.ndarray) -> np.ndarray:
    """``(N, 6)`` ``pose_proj`` as the camera wants it: angles in radians, ``tz`` at least ``TZ_MIN``."""
    pose = np.array(pose_proj_deg, dtype=np.float64).reshape(-1, 6)
    pose[:, :3] = np.radians(pose[:, :3])
    pose[:, 5] = np.maximum(pose[:, 5], TZ_MIN)
    return pose


def initial_shapes(pose_proj_deg: np.ndarray, mean_face: np.ndarray, input_size: int) -> np.ndarray:
    """``x⁰ = π(pose_proj, X)`` in crop pixels, ``(N, L, 2)``."""
    return from_normalised(project(pose_radians(pose_proj_deg), np.asarray(mean_face, dtype=np.float64)), input_size)


def self_occluded(pose_proj_deg: np.ndarray, normals: np.ndarray, facing_min: float) -> np.ndarray:
    """``(N, L)`` True where the posed mean-face normal faces away beyond ``facing_min`` (its z component)."""
    rotation = rotation_matrix(pose_radians(pose_proj_deg)[:, :3])
    return np.einsum("nj,lj->nl", rotation[:, 2, :], np.asarray(normals, dtype=np.float64)) < facing_min


def heatmap_scale(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per heatmap ``1 / max`` and whether it carries evidence (a positive, finite maximum), ``(N, L)`` each.

    A NaN or inf anywhere makes the maximum non-finite, so a broken heatmap has no evidence; its scale is 0.
    """
    n, count = heatmaps.shape[:2]
    peak = heatmaps.reshape(n, count, -1).max(-1).astype(np.float64) if heatmaps.size else np.zeros((n, count))
    evidence = np.isfinite(peak) & (peak > 0)
    scale = np.zeros((n, count))
    np.divide(1.0, peak, out=scale, where=evidence)
    return scale, evidence


def similarity(shapes: np.ndarray, mean_shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The linear part ``A`` ``(N, 2, 2)`` of the least-squares similarity from ``mean_shape`` to each of
    ``shapes`` ``(N, L, 2)``, and its inverse."""
    return _similarity(shapes, *_frame_vectors(mean_shape))


def _frame_vectors(mean_shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``mean_shape`` flattened, and turned by 90°, each over its squared norm (``similarity``'s dot products)."""
    reference = mean_shape.reshape(-1)
    turned = np.stack([-mean_shape[:, 1], mean_shape[:, 0]], 1).reshape(-1)
    norm = reference @ reference
    return reference / norm, turned / norm


def _similarity(shapes: np.ndarray, reference: np.ndarray, turned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, count = shapes.shape[:2]
    centred = (shapes - shapes.sum(1, keepdims=True) * (1.0 / count)).reshape(n, -1)
    a, b = centred @ reference, centred @ turned
    forward = np.empty((n, 2, 2))
    forward[:, 0, 0], forward[:, 0, 1], forward[:, 1, 0], forward[:, 1, 1] = a, -b, b, a
    inverse = forward.transpose(0, 2, 1) / np.maximum(a * a + b * b, 1e-12)[:, None, None]
    return forward, inverse


def apply_linear(matrices: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """``matrices`` ``(N, 2, 2)`` applied to ``vectors`` ``(N, ..., 2)``."""
    return (vectors.reshape(len(matrices), -1, 2) @ matrices.transpose(0, 2, 1)).reshape(vectors.shape)


def pool_points(shapes: np.ndarray, forward: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop-pixel x and y ``(N, L, P)`` of each landmark's pool: ``x_l + A · offset_lp``.

    Separate contiguous x and y arrays: the sampling's arithmetic runs several times faster on them than
    on strided views of an ``(..., 2)`` array.
    """
    a, b = forward[:, 0, 0, None, None], forward[:, 1, 0, None, None]
    ox, oy = offsets[..., 0], offsets[..., 1]
    return shapes[:, :, 0, None] + (a * ox - b * oy), shapes[:, :, 1, None] + (b * ox + a * oy)


def sample_bilinear(heatmaps: np.ndarray, x: np.ndarray, y: np.ndarray, input_size: int) -> np.ndarray:
    """Values of each landmark's own heatmap at the finite crop-pixel points ``x``, ``y`` ``(N, L, P)``, float64.

    Bilinear, zero outside the map. ``heatmaps`` ``(N, L, H, W)`` may be float (the network's) or uint8
    (the trainer's compressed copy); heatmap pixels cover the crop.
    """
    n, count, height, width = heatmaps.shape
    flat = heatmaps.reshape(-1)
    if (width, height) != (input_size, input_size):
        x = (x + 0.5) * (width / input_size) - 0.5
        y = (y + 0.5) * (height / input_size) - 0.5
    base = (np.arange(n * count, dtype=np.intp) * (height * width)).reshape(n, count, 1)
    if x.size and x.min() >= 0 and y.min() >= 0 and x.max() < width - 1 and y.max() < height - 1:
        # Every point has its four neighbours on the map (the usual case): no masks needed.
        corner_x, corner_y = np.floor(x), np.floor(y)
        right, down = x - corner_x, y - corner_y
        top_left = base + corner_y.astype(np.intp) * width + corner_x.astype(np.intp)
        bottom_left = top_left + width
        top = (1.0 - right) * flat[top_left] + right * flat[top_left + 1]
        bottom = (1.0 - right) * flat[bottom_left] + right * flat[bottom_left + 1]
        return (1.0 - down) * top + down * bottom
    x = np.minimum(np.maximum(x, -2.0), width + 1.0)
    y = np.minimum(np.maximum(y, -2.0), height + 1.0)
    corner_x, corner_y = np.floor(x), np.floor(y)
    right, down = x - corner_x, y - corner_y
    x0, y0 = corner_x.astype(np.intp), corner_y.astype(np.intp)
    x1, y1 = x0 + 1, y0 + 1
    # A corner outside the map weighs nothing and reads index 0 (as unsigned, negatives are out of range too).
    in_x0, in_x1 = x0.view(np.uintp) < np.uintp(width), x1.view(np.uintp) < np.uintp(width)
    in_y0, in_y1 = y0.view(np.uintp) < np.uintp(height), y1.view(np.uintp) < np.uintp(height)
    w_x0, w_x1 = np.where(in_x0, 1.0 - right, 0.0), np.where(in_x1, right, 0.0)
    w_y0, w_y1 = np.where(in_y0, 1.0 - down, 0.0), np.where(in_y1, down, 0.0)
    x0, x1 = np.where(in_x0, x0, 0), np.where(in_x1, x1, 0)
    row0, row1 = base + np.where(in_y0, y0, 0) * width, base + np.where(in_y1, y1, 0) * width
    top = w_x0 * flat[row0 + x0] + w_x1 * flat[row0 + x1]
    bottom = w_x0 * flat[row1 + x0] + w_x1 * flat[row1 + x1]
    return w_y0 * top + w_y1 * bottom


def traverse(values: np.ndarray, feature_a: np.ndarray, feature_b: np.ndarray, thresholds: np.ndarray,
             depth: int) -> np.ndarray:
    """Leaf index ``(N, T)`` of every tree for every face.

    ``values`` ``(N, V)``; ``feature_a``/``feature_b`` ``(T, 2^D − 1)`` index ``values``; a node sends a
    face right when ``values[a] − values[b] > threshold``.
    """
    n, width = values.shape
    count, nodes = feature_a.shape
    rows = (np.arange(n, dtype=np.intp) * width)[:, None, None]
    flat = values.reshape(-1)
    goes_right = ((flat[rows + feature_a] - flat[rows + feature_b]) > thresholds).reshape(-1)
    first = (np.arange(n, dtype=np.intp) * (count * nodes))[:, None] + np.arange(count, dtype=np.intp) * nodes
    node = np.zeros((n, count), dtype=np.intp)
    for _ in range(depth):
        node = 2 * node + 1 + goes_right[first + node]
    return node - nodes


def shape_fit_operators(active: np.ndarray, basis: np.ndarray, sigma: np.ndarray, noise: float) -> np.ndarray:
    """Per face ``(N, K, 2L)``: the map from a displacement to the shape model's coefficients fitted to its
    active landmarks, ``(U W Uᵀ + ν² diag(σ⁻²))⁻¹ U W`` (module docstring, step 5)."""
    weights = np.repeat(np.asarray(active, dtype=np.float64), 2, axis=1)
    weighted = basis[None] * weights[:, None, :]
    normal = weighted @ basis.T + np.diag(noise ** 2 / sigma ** 2)
    return np.linalg.solve(normal, weighted)


def fit_shape(proposed: np.ndarray, initial: np.ndarray, initial_inverse: np.ndarray, initial_forward: np.ndarray,
              operators: np.ndarray, basis: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """The valid face shape closest to ``proposed`` on its active landmarks: the shape model fitted (by
    ``operators``) to the displacement from ``initial`` in the initial frame, coefficients clamped to ``±limits``."""
    n = len(proposed)
    displacement = apply_linear(initial_inverse, proposed - initial).reshape(n, -1)
    coefficients = np.clip(np.einsum("nkj,nj->nk", operators, displacement), -limits, limits)
    return initial + apply_linear(initial_forward, np.einsum("nk,kj->nj", coefficients, basis).reshape(proposed.shape))


def heatmap_peaks(heatmaps: np.ndarray) -> np.ndarray:
    """``(N, L, 2)`` crop-pixel peaks of ``(N, L, H, W)`` heatmaps: the arg-max refined by the 3×3 weighted
    mean around it, as ``trainer.export`` computes the network's ``landmarks``; NaN where a map is broken."""
    heatmaps = np.asarray(heatmaps)
    n, count, height, width = heatmaps.shape
    flat = heatmaps.reshape(n, count, -1).astype(np.float64)
    broken = ~np.isfinite(flat).all(-1)
    flat = np.where(np.isfinite(flat), flat, 0.0)
    index = flat.argmax(-1)
    y, x = index // width, index % width
    dy, dx = np.mgrid[-1:2, -1:2].reshape(2, -1)
    ny, nx = y[..., None] + dy, x[..., None] + dx
    inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
    values = np.take_along_axis(flat, np.where(inside, ny * width + nx, 0), -1) * inside
    total = np.maximum(values.sum(-1), 1e-12)
    peaks = np.stack([x + (values * dx).sum(-1) / total, y + (values * dy).sum(-1) / total], -1).astype(np.float64)
    peaks[broken] = np.nan
    return peaks


def fit_to_peaks(peaks: np.ndarray, initial: np.ndarray, initial_inverse: np.ndarray, initial_forward: np.ndarray,
                 active: np.ndarray, operators_for: Any, basis: np.ndarray, limits: np.ndarray,
                 outlier: float) -> np.ndarray:
    """Stage 0 (module docstring, step 3): the shape model fitted to the active landmarks' ``peaks``, then
    refitted without the peaks farther than ``outlier`` (mean-shape units) from the first fit.

    ``operators_for(active)`` gives the shape-fit operators of an ``(N, L)`` pattern (``shape_fit_operators``).
    """
    usable = np.asarray(active, dtype=bool) & np.isfinite(peaks).all(-1)
    proposed = np.where(usable[..., None], peaks, initial)
    first = fit_shape(proposed, initial, initial_inverse, initial_forward, operators_for(usable), basis, limits)
    distance = np.linalg.norm(apply_linear(initial_inverse, proposed - first), axis=-1)
    inliers = usable & (distance <= outlier)
    if np.array_equal(inliers, usable):
        return first
    return fit_shape(proposed, initial, initial_inverse, initial_forward, operators_for(inliers), basis, limits)


def lost(peaks: np.ndarray, shapes: np.ndarray, inverse: np.ndarray, active: np.ndarray, threshold: float) -> np.ndarray:
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


def shape_coefficients(shapes: np.ndarray, initial: np.ndarray, mean_shape: np.ndarray,
                       basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients ``(N, K)`` of ``shapes``' displacement from ``initial`` on ``basis``, and the part of it
    ``(N, 2L)`` outside the basis' span (zero for a valid face shape)."""
    _, inverse = similarity(initial, mean_shape)
    displacement = apply_linear(inverse, shapes - initial).reshape(len(shapes), -1)
    coefficients = displacement @ basis.T
    return coefficients, displacement - coefficients @ basis


class OcclusionAwareRegressor:
    """The cascade of ``or.npz``; call it as the pipeline's refiner or use ``refine`` directly."""

    label = LABEL

    def __init__(self, arrays: Mapping[str, Any], source: str = "<in memory>") -> None:
        """Check ``arrays`` (the file format in the module docstring); ``RefinerError`` naming ``source`` if wrong."""
        self.source = str(source)
        self._arrays = self._validated(arrays)
        a = self._arrays
        self.stage_count = int(a["stage_count"])
        self.input_size = int(a["input_size"])
        self.landmarks = a["mean_face"].shape[0]
        self.trees = a["anchors"].shape[1]
        self.pool_size = a["offsets"].shape[2]
        self.depth = int(np.log2(a["leaves"].shape[2]))
        self.visibility_threshold = float(a["visibility_threshold"])
        self.facing_min = float(a["facing_min"])
        self.shape_noise = float(a["shape_noise"])
        self.peak_outlier = float(a["peak_outlier"])
        self.lock_threshold = float(a["lock_threshold"])
        self.mean_face = a["mean_face"].astype(np.float64)
        self.mean_shape = a["mean_shape"].astype(np.float64)
        self._frame = _frame_vectors(self.mean_shape)
        self.normals = a["normals"].astype(np.float64)
        self.offsets = a["offsets"].astype(np.float64)
        self.basis = a["shape_basis"].astype(np.float64)
        self.sigma = a["shape_sigma"].astype(np.float64)
        self.limits = float(a["shape_clamp"]) * self.sigma
        self.refine_basis = a["refine_basis"].astype(np.float64)
        self.refine_sigma = a["refine_sigma"].astype(np.float64)
        self.refine_limits = float(a["shape_clamp"]) * self.refine_sigma
        anchors = a["anchors"].astype(np.intp)
        self.anchors = anchors
        self.feature_a = anchors[:, :, None] * self.pool_size + a["feature_a"].astype(np.intp)
        self.feature_b = anchors[:, :, None] * self.pool_size + a["feature_b"].astype(np.intp)
        self.thresholds = a["thresholds"].astype(np.float64)
        leaves = a["leaves"].astype(np.float64).reshape(self.stage_count, self.trees * 2 ** self.depth, 2)
        # One extra all-zero row per stage: the leaf an inactive tree "lands in", so it adds nothing.
        self.leaf_rows = np.concatenate([leaves, np.zeros((self.stage_count, 1, 2))], 1)
        self._operators: dict[tuple[bool, bytes], np.ndarray] = {}
        cycle = np.tile(np.arange(self.landmarks), max(self.trees // self.landmarks, 1))
        self._tiled = [row.shape == cycle.shape and np.array_equal(row, cycle) for row in anchors]

    # --- file ------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path | str) -> "OcclusionAwareRegressor":
        """Read ``or.npz``; ``RefinerError`` naming the file if it is missing, truncated or of another version."""
        path = Path(path)
        if not path.is_file():
            raise RefinerError(f"{path}: OR file not found")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as exc:
            raise RefinerError(f"{path}: truncated or not an OR file ({type(exc).__name__}: {exc})") from None
        regressor = cls(arrays, str(path))
        log.info("%s: OR with %d stages x %d trees of depth %d", path, regressor.stage_count, regressor.trees,
                 regressor.depth)
        return regressor

    def save(self, path: Path | str) -> Path:
        """Write ``or.npz`` (atomically: a temporary file renamed into place); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **self._arrays)
        temporary = path.with_name(path.name + ".part")
        temporary.write_bytes(buffer.getvalue())
        os.replace(temporary, path)
        return path

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """Copies of the stored arrays (the file's contents)."""
        return {name: value.copy() for name, value in self._arrays.items()}

    @property
    def provenance(self) -> dict[str, Any]:
        """What the trainer recorded about this regressor (data, seed, settings)."""
        return json.loads(str(self._arrays["provenance"]))

    def _fail(self, message: str) -> RefinerError:
        return RefinerError(f"{self.source}: {message}")

    def _validated(self, arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
        missing = [name for name in REQUIRED if name not in arrays]
        if "format_version" in arrays:
            version = np.asarray(arrays["format_version"])
            if version.shape != () or version.dtype.kind not in "iu" or int(version) != FORMAT_VERSION:
                raise self._fail(f"OR format version {version.tolist()}, this runtime reads {FORMAT_VERSION}")
        if missing:
            raise self._fail(f"not a complete OR file (lacks {', '.join(missing)})")
        out = {name: np.asarray(arrays[name]) for name in REQUIRED}
        for name in _INTEGER_SCALARS:
            if out[name].shape != () or out[name].dtype.kind not in "iu":
                raise self._fail(f"{name} must be an integer scalar")
        for name in _FLOAT_SCALARS:
            if out[name].shape != () or out[name].dtype.kind not in "fiu" or not np.isfinite(out[name]):
                raise self._fail(f"{name} must be a finite number")
        if out["provenance"].shape != () or out["provenance"].dtype.kind != "U":
            raise self._fail("provenance must be a string")
        for name in _ARRAYS:
            kind = "iu" if name in ("anchors", "feature_a", "feature_b") else "f"
            if out[name].dtype.kind not in kind:
                raise self._fail(f"{name} has dtype {out[name].dtype}")
            if kind == "f" and not np.isfinite(out[name]).all():
                raise self._fail(f"{name} holds non-finite values")
        stages = int(out["stage_count"])
        count = out["mean_face"].shape[0] if out["mean_face"].ndim == 2 else -1
        expected = {"mean_face": (count, 3), "mean_shape": (count, 2), "normals": (count, 3)}
        offsets, anchors, leaves = out["offsets"].shape, out["anchors"].shape, out["leaves"].shape
        if stages < 1 or count < 1 or len(offsets) != 4 or len(anchors) != 2 or len(leaves) != 4:
            raise self._fail("array shapes do not describe a cascade")
        trees, pool, leaf_count = anchors[1], offsets[2], leaves[2]
        if leaf_count < 2 or leaf_count & (leaf_count - 1):
            raise self._fail(f"leaves per tree must be a power of two, got {leaf_count}")
        components = out["shape_basis"].shape[0] if out["shape_basis"].ndim == 2 else -1
        refine_components = out["refine_basis"].shape[0] if out["refine_basis"].ndim == 2 else -1
        expected.update({
            "offsets": (stages, count, pool, 2), "anchors": (stages, trees),
            "feature_a": (stages, trees, leaf_count - 1), "feature_b": (stages, trees, leaf_count - 1),
            "thresholds": (stages, trees, leaf_count - 1), "leaves": (stages, trees, leaf_count, 2),
            "shape_basis": (components, 2 * count), "shape_sigma": (components,),
            "refine_basis": (refine_components, 2 * count), "refine_sigma": (refine_components,),
        })
        for name, shape in expected.items():
            if out[name].shape != shape:
                raise self._fail(f"{name} has shape {out[name].shape}, expected {shape}")
        if out["anchors"].size and (out["anchors"].min() < 0 or out["anchors"].max() >= count):
            raise self._fail("anchors index landmarks that do not exist")
        for name in ("feature_a", "feature_b"):
            if out[name].size and (out[name].min() < 0 or out[name].max() >= pool):
                raise self._fail(f"{name} indexes pool points that do not exist")
        if int(out["input_size"]) < 1:
            raise self._fail("input_size must be positive")
        if (out["shape_sigma"] <= 0).any() or (out["refine_sigma"] <= 0).any() or min(float(out[name]) for name in ("shape_noise", "shape_clamp",
                                                                                "peak_outlier", "lock_threshold")) <= 0:
            raise self._fail("shape_sigma, refine_sigma, shape_noise, shape_clamp, peak_outlier and lock_threshold "
                             "must be positive")
        return out

    # --- runtime ---------------------------------------------------------------------------------

    def check(self, info: ModelInfo) -> None:
        """``RefinerError`` unless this regressor was trained for a model like ``info`` (landmarks, input size)."""
        if info.landmarks != self.landmarks or info.input_size != self.input_size:
            raise self._fail(f"trained for {self.landmarks} landmarks at {self.input_size} px; {info.path} has "
                             f"{info.landmarks} at {info.input_size} px (train it again for this model)")

    def initial_shape(self, pose_proj_deg: np.ndarray) -> np.ndarray:
        """``x⁰`` ``(N, L, 2)`` crop pixels for ``pose_proj`` in the ``model_io`` units."""
        return initial_shapes(pose_proj_deg, self.mean_face, self.input_size)

    def self_occluded(self, pose_proj_deg: np.ndarray) -> np.ndarray:
        """``(N, L)`` landmarks hidden by the face itself at ``pose_proj``."""
        return self_occluded(pose_proj_deg, self.normals, self.facing_min)

    def refine(self, heatmaps: np.ndarray, visibility: np.ndarray, pose_proj_deg: np.ndarray,
               peaks: np.ndarray | None = None) -> Refinement:
        """Run the cascade on the full model's outputs for ``N`` faces (see the module docstring).

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
        refined = np.isfinite(pose).all(1)
        safe_pose = np.where(refined[:, None], pose, NEUTRAL_POSE)
        initial = self.initial_shape(safe_pose)
        refined &= np.isfinite(initial).all((1, 2))
        safe_pose = np.where(refined[:, None], safe_pose, NEUTRAL_POSE)
        initial = np.where(refined[:, None, None], initial, self.initial_shape(NEUTRAL_POSE[None]))
        scale, evidence = heatmap_scale(heatmaps)
        active = (visibility >= self.visibility_threshold) & ~self.self_occluded(safe_pose) & evidence
        forward0, inverse0 = _similarity(initial, *self._frame)
        peaks = heatmap_peaks(heatmaps) if peaks is None else np.asarray(peaks, dtype=np.float64)
        if peaks.shape != initial.shape:
            raise ValueError(f"expected peaks {initial.shape}, got {peaks.shape}")
        with np.errstate(invalid="ignore", over="ignore"):  # broken heatmaps' samples are zeroed in tree_step
            shapes = fit_to_peaks(peaks, initial, inverse0, forward0, active, self.shape_fit_operators, self.basis,
                                  self.limits, self.peak_outlier)
            anchor, tree_steps = shapes, np.zeros_like(initial)
            forward_a, inverse_a = _similarity(anchor, *self._frame)
            operators = self.shape_fit_operators(active, refine=True)
            for stage in range(self.stage_count):
                forward, _ = _similarity(shapes, *self._frame)
                moved = apply_linear(forward, self.tree_step(stage, shapes, forward, heatmaps, scale, active))
                tree_steps += moved
                shapes = fit_shape(shapes + moved, anchor, inverse_a, forward_a, operators, self.refine_basis,
                                   self.refine_limits)
            locked = ~lost(peaks, shapes, inverse_a, active, self.lock_threshold)
        shapes = np.where(locked[:, None, None], shapes, anchor)
        shapes = np.where(refined[:, None, None], shapes, np.nan)
        return Refinement(landmarks=shapes, initial=initial, anchor=anchor, tree_steps=tree_steps, active=active,
                          refined=refined, locked=locked)

    def shape_fit_operators(self, active: np.ndarray, refine: bool = False) -> np.ndarray:
        """``shape_fit_operators`` of stage 0's model (``refine``: the tree stages') for these active landmarks
        ``(N, L)``, remembered per visibility pattern: a video's faces repeat a few patterns, and each new
        one costs a ``K×K`` solve."""
        active = np.asarray(active, dtype=bool)
        basis, sigma = (self.refine_basis, self.refine_sigma) if refine else (self.basis, self.sigma)
        keys = [(refine, np.packbits(row).tobytes()) for row in active]
        found = {key: self._operators.get(key) for key in keys}
        missing = sorted(key for key, value in found.items() if value is None)
        if missing:
            computed = shape_fit_operators(active[[keys.index(key) for key in missing]], basis, sigma,
                                           self.shape_noise)
            found.update(zip(missing, computed))
            if len(self._operators) + len(missing) > OPERATOR_CACHE:
                self._operators = {}
            self._operators.update(zip(missing, computed))
        return np.stack([found[key] for key in keys]) if keys else np.zeros((0, *basis.shape))

    def tree_step(self, stage: int, shapes: np.ndarray, forward: np.ndarray, heatmaps: np.ndarray,
                  scale: np.ndarray, active: np.ndarray) -> np.ndarray:
        """``(N, L, 2)`` mean-shape units: what the trees of ``stage`` add to each landmark (0 where not active).

        ``forward`` is the stage's similarity (``similarity(shapes, mean_shape)[0]``), ``scale`` the
        heatmaps' ``1 / max`` (``heatmap_scale``).
        """
        n = len(shapes)
        x, y = pool_points(shapes, forward, self.offsets[stage])
        values = sample_bilinear(heatmaps, x, y, self.input_size) * scale[:, :, None]
        values[~np.isfinite(values)] = 0.0
        leaves = traverse(values.reshape(n, -1), self.feature_a[stage], self.feature_b[stage],
                          self.thresholds[stage], self.depth)
        rows = np.arange(self.trees) * 2 ** self.depth + leaves
        rows = np.where(active[:, self.anchors[stage]], rows, self.leaf_rows.shape[1] - 1)
        moves = self.leaf_rows[stage][rows]
        if self._tiled[stage]:  # tree t moves landmark t mod L, as the trainer lays them out
            return moves.reshape(n, -1, self.landmarks, 2).sum(1)
        step = np.zeros((n * self.landmarks, 2))
        np.add.at(step, (np.arange(n)[:, None] * self.landmarks + self.anchors[stage]).reshape(-1),
                  moves.reshape(-1, 2))
        return step.reshape(n, self.landmarks, 2)

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
