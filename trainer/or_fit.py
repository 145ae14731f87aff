"""Fitting the occlusion-aware regressor's cascade (``app.core.or_cascade``) on recorded network outputs.

Training runs the runtime's own steps, so that each stage learns from the shapes the runtime will really
have: ``or_cascade.begin`` (``x⁰`` and the active landmarks), ``or_cascade.start`` (stage 0) and, once a
stage's trees are fitted, ``or_cascade.stage`` to advance the training shapes exactly as ``refine`` will.
Only the fitting is here. Per stage, gradient boosting as in ERT (Kazemi and Sullivan): each landmark's
target is its residual ``A⁻¹ (x_true − x)`` in the stage's mean-shape frame; each tree is anchored at a
landmark (trees cycle over the landmarks), fits only the samples where its anchor is active (elsewhere
the runtime will not add it), and its leaves hold the shrunken mean residual of that landmark. A split
node draws ``candidates`` random (pool pair, threshold) pairs, the threshold halfway between the feature
values of two random samples at the node, and keeps the one that most reduces the squared error.
Unannotated landmarks weigh nothing. Everything random comes from one ``numpy.random.Generator`` seeded
by the caller. The file is ``app.core.or_format``'s (``pack``).

The shape model comes first, from the displacements ``x_true − x⁰`` (in ``x⁰``'s frame) of the
fully annotated samples: the four similarity modes of the mean shape (shift in x and y, scale,
in-plane turn), which carry most of that energy because ``x⁰`` inherits the errors of ``pose_proj``,
then an uncentred PCA of what they leave, keeping the components that hold ``shape_energy`` of it
(only those within its numerical rank, ``numerical_rank``: the basis never exceeds ``2L`` rows).
Each component's RMS over the samples is its prior scale. Then stage 0 fits it to the network's heatmap
peaks, and the tree stages start there, with their own model built the same way from what stage 0 leaves
(``x_true − anchor``, in the anchor's frame).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from app.core import or_cascade as cascade
from app.core import or_format
from app.core.refiner import OcclusionAwareRegressor

log = logging.getLogger(__name__)

QUANTISATION = 255.0
"""Stored heatmaps are ``round(255 · h / max h)`` in uint8: a quarter of float32's memory, and the
features are max-normalised anyway."""

CHUNK = 256
"""Training samples per part where a step's temporaries grow with the samples (shape-fit operators, pool points)."""

RANK_TOLERANCE = float(np.finfo(np.float64).eps)
"""Relative rounding unit of ``numerical_rank``: float64's machine epsilon, as ``numpy.linalg.matrix_rank``."""


@dataclass(frozen=True)
class CascadeConfig:
    """Sizes and settings of the cascade. Radii are in mean-shape units (unit RMS radius: about 34 px
    at a 128 px crop), from ``radius_first`` at the first stage geometrically down to ``radius_last``.

    Trees move only their own landmark, so they need far more shrinkage than ERT's 0.1 to get anywhere in ten
    stages. How the defaults were chosen (on training data only) is in ``models/TRAINING_HISTORY.md``.
    """

    stages: int = 10
    trees_per_landmark: int = 3
    depth: int = 4
    pool_size: int = 16
    candidates: int = 50
    radius_first: float = 0.15
    radius_last: float = 0.03
    shrinkage: float = 0.5
    leaf_prior: float = 1.0
    shape_energy: float = 0.95
    """Fraction of the non-rigid displacement energy (after the similarity modes) each shape model keeps. A
    tighter model follows the noisy heatmap peaks less, but too few components cannot follow the face."""
    min_shape_components: int = 20
    """The fewest non-rigid components either shape model keeps, whatever ``shape_energy`` says: one dominant
    displacement mode can reach the energy with a handful, too few to follow a face."""
    peak_outlier: float = 0.1
    """Stage 0 leaves out peaks farther than this from its first fit (mean-shape units; about 3 px at 128)."""
    shape_clamp: float = 3.0
    lock_threshold: float = 0.15
    """A face whose active landmarks' peaks lie a median of more than this from the OR's shape (mean-shape
    units, about 5 px at 128) is one the OR lost: it keeps the network's landmarks."""
    target_clip: float = 2.0
    """Each stage's tree targets are clipped to this many pool radii (``_clip_norm``)."""
    shape_noise: float = 0.03
    """The landmark noise ``ν`` of the shape-model fit, mean-shape units (about 1 px at 128 px)."""
    visibility_threshold: float = 0.5
    self_occlusion_deg: float = 45.0
    """A landmark is self-occluded when its normal faces away by more than this beyond the silhouette."""


@dataclass
class TrainingSet:
    """What the full model made of ``N`` training crops, with their labels (crop pixels).

    ``heatmaps`` ``(N, L, H, W)`` uint8 (``quantise_heatmaps``), ``evidence`` ``(N, L)`` whether each
    heatmap had a positive finite maximum, ``visibility`` ``(N, L)`` the network's probabilities,
    ``pose_proj`` ``(N, 6)`` in the ``model_io`` units, ``landmarks`` ``(N, L, 2)`` the true positions,
    ``weights`` ``(N, L)`` True where annotated (positions outside the crop are still exact), ``peaks``
    ``(N, L, 2)`` the network's own landmarks (None: found in the stored heatmaps).
    """

    heatmaps: np.ndarray
    evidence: np.ndarray
    visibility: np.ndarray
    pose_proj: np.ndarray
    landmarks: np.ndarray
    weights: np.ndarray
    input_size: int
    peaks: np.ndarray | None = None


def quantise_heatmaps(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N, L, H, W)`` float heatmaps → uint8 ``round(255 · h / max)`` (zeros without evidence) and the evidence."""
    maxima, evidence = cascade.heatmap_maxima(heatmaps)
    scale = 1.0 / maxima
    with np.errstate(invalid="ignore", over="ignore"):  # broken maps (no evidence) become zeros
        values = heatmaps.astype(np.float32) * (QUANTISATION * scale[..., None, None]).astype(np.float32)
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(np.rint(values), 0, QUANTISATION).astype(np.uint8), evidence


def similarity_modes(mean_shape: np.ndarray) -> np.ndarray:
    """Orthonormal ``(4, 2L)`` displacements of ``mean_shape`` (coordinates interleaved x, y): shift in x,
    shift in y, scale and in-plane turn."""
    count = len(mean_shape)
    modes = np.stack([np.tile([1.0, 0.0], count), np.tile([0.0, 1.0], count), mean_shape.reshape(-1),
                      np.stack([-mean_shape[:, 1], mean_shape[:, 0]], 1).reshape(-1)])
    return np.linalg.qr(modes.T)[0].T


def numerical_rank(singular: np.ndarray, shape: tuple[int, int]) -> int:
    """How many of the descending ``singular`` values of an ``(M, N)`` matrix stand above rounding: those over
    ``RANK_TOLERANCE · S.max() · max(M, N)`` (numpy's ``matrix_rank`` convention). Beyond them the SVD's rows
    are arbitrary directions, which depend on the CPU's kernels (AVX2 against AVX-512), not on the data."""
    if len(singular) == 0 or singular[0] <= 0:
        return 0
    return int((singular > singular[0] * max(shape) * RANK_TOLERANCE).sum())


def energy_count(power: np.ndarray, energy: float) -> int:
    """The fewest leading entries of the descending ``power`` whose dropped tail holds at most ``1 − energy`` of
    the total. The tail is summed from its small end, so ``energy=1`` keeps every entry with power, whatever
    order the sum's rounding takes (a cumulative ratio can stop at 0.9999999 and never reach 1)."""
    tail = np.append(np.cumsum(power[::-1])[::-1], 0.0)
    return int((tail > (1.0 - energy) * tail[0]).sum())


def shape_basis(displacements: np.ndarray, energy: float, mean_shape: np.ndarray,
                minimum: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The similarity modes of ``mean_shape`` then the uncentred PCA of what they leave of ``displacements``
    ``(M, 2L)`` (``energy`` of it kept, and at least ``minimum`` components where the displacements span that many):
    orthonormal rows ``(K, 2L)``, ``K ≤ 2L``, and each row's coefficient RMS ``(K,)``.

    Only components within the residual's numerical rank count (``numerical_rank``; at most ``2L − 4``, since
    the residual is orthogonal to the four similarity modes): past it an SVD row is noise, and a basis with
    more than ``2L`` rows cannot be orthonormal."""
    if len(displacements) < 2:
        raise ValueError("the OR's shape basis needs at least two fully annotated training faces")
    rigid = similarity_modes(mean_shape)
    rest = displacements - (displacements @ rigid.T) @ rigid
    _, singular, rows = np.linalg.svd(rest, full_matrices=False)
    rank = min(numerical_rank(singular, rest.shape), rest.shape[1] - len(rigid))
    keep = max(energy_count(singular[:rank] ** 2, energy), min(minimum, rank))
    basis = np.concatenate([rigid, _orthonormal_beside(rigid, rows[:keep])])
    rms = np.sqrt(((displacements @ basis.T) ** 2).mean(0))
    return basis, np.maximum(rms, 1e-9)


def _orthonormal_beside(rigid: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``rows`` with the span of ``rigid`` taken out and orthonormalised again, each keeping its direction. An SVD
    row of a small singular value ``S_k`` is only accurate to about ``eps · S.max() / S_k``, which leaves it that
    far from orthogonal to the similarity modes it was computed without."""
    rows = rows - (rows @ rigid.T) @ rigid
    q, r = np.linalg.qr(rows.T)
    return (q * np.where(np.diag(r) < 0, -1.0, 1.0)).T


def fit_cascade(data: TrainingSet, mean_face: np.ndarray, config: CascadeConfig = CascadeConfig(), seed: int = 0,
                provenance: dict[str, Any] | None = None, progress: bool = True,
                on_stage: Callable[[int, np.ndarray], None] | None = None) -> OcclusionAwareRegressor:
    """Fit the OR on ``data`` (see the module docstring); deterministic for a given ``seed``.

    ``on_stage(index, shapes)``, when given, sees the training shapes ``(N, L, 2)`` the fit holds after stage 0
    (index 0, the anchor) and after each tree stage (1 to ``S``): what ``refine`` gives on the same inputs.
    """
    rng = np.random.default_rng(seed)
    mean_face = np.asarray(mean_face, dtype=np.float64)
    count = mean_face.shape[0]
    n = len(data.pose_proj)
    if n == 0 or data.heatmaps.shape[:2] != (n, count):
        raise ValueError(f"training set of {n} faces does not match {count} landmarks (heatmaps {data.heatmaps.shape})")
    settings = cascade.CascadeSettings(
        input_size=data.input_size, mean_face=mean_face, mean_shape=cascade.mean_shape_of(mean_face),
        normals=cascade.surface_normals(mean_face), visibility_threshold=config.visibility_threshold,
        facing_min=-float(np.sin(np.radians(config.self_occlusion_deg))), peak_outlier=config.peak_outlier,
        lock_threshold=config.lock_threshold)
    mean_shape = settings.mean_shape
    truth = np.asarray(data.landmarks, dtype=np.float64)
    weights = np.asarray(data.weights, dtype=np.float64)
    begun = cascade.begin(settings, data.pose_proj, data.visibility, data.evidence)
    initial, active = begun.initial, begun.active
    maxima = np.concatenate([cascade.heatmap_maxima(data.heatmaps[part])[0] for part in _chunks(n, CHUNK)])
    framed_initial = cascade.Framed.of(initial, settings)

    complete = np.asarray(data.weights, dtype=bool).all(1)
    displacement0 = cascade.apply_linear(framed_initial.inverse, truth - initial).reshape(n, -1)
    shape_model = cascade.ShapeModel(*shape_basis(displacement0[complete], config.shape_energy, mean_shape,
                                                  config.min_shape_components), config.shape_clamp, config.shape_noise)
    log.info("OR shape model: 4 similarity + %d non-rigid components (%.1f%% of the non-rigid energy, at least %d)",
             len(shape_model.basis) - 4, 100 * config.shape_energy, config.min_shape_components)

    trees = count * config.trees_per_landmark
    nodes, leaf_count = 2 ** config.depth - 1, 2 ** config.depth
    radii = np.geomspace(config.radius_first, config.radius_last, config.stages) if config.stages > 1 \
        else np.array([config.radius_first])
    out = {
        "offsets": np.zeros((config.stages, count, config.pool_size, 2), np.float32),
        "anchors": np.tile(np.arange(count, dtype=np.int32), (config.stages, config.trees_per_landmark)),
        "feature_a": np.zeros((config.stages, trees, nodes), np.int32),
        "feature_b": np.zeros((config.stages, trees, nodes), np.int32),
        "thresholds": np.zeros((config.stages, trees, nodes), np.float32),
        "leaves": np.zeros((config.stages, trees, leaf_count, 2), np.float32),
    }
    peaks = _peaks(data)
    anchor = cascade.Framed.of(np.concatenate([
        cascade.start(settings, framed_initial.part(part), active[part], peaks[part], shape_model)
        for part in _chunks(n, CHUNK)]), settings)
    displacement_a = cascade.apply_linear(anchor.inverse, truth - anchor.shapes).reshape(n, -1)
    refine_model = cascade.ShapeModel(*shape_basis(displacement_a[complete], config.shape_energy, mean_shape,
                                                   config.min_shape_components), config.shape_clamp, config.shape_noise)
    log.info("OR stage 0 (fit to the heatmap peaks): mean training error %.2f px (x0: %.2f px, peaks: %.2f px)",
             _mean_error(anchor.shapes, truth, data.weights), _mean_error(initial, truth, data.weights),
             _mean_error(np.nan_to_num(peaks), truth, data.weights))
    shapes = anchor.shapes
    if on_stage is not None:
        on_stage(0, shapes)
    stage_bar = tqdm(range(config.stages), desc="OR stages", unit="stage", disable=not progress or None)
    for stage in stage_bar:
        out["offsets"][stage] = _draw_offsets(rng, count, config.pool_size, radii[stage])
        current = cascade.Framed.of(shapes, settings)
        offsets = out["offsets"][stage].astype(np.float64)
        values = np.concatenate([cascade.pool_values(data.heatmaps[part], maxima[part], shapes[part],
                                                     current.forward[part], offsets, data.input_size)
                                 for part in _chunks(n, CHUNK)])
        residual = _clip_norm(cascade.apply_linear(current.inverse, truth - shapes), config.target_clip * radii[stage])
        _fit_stage(rng, values, residual, weights, active, config, {name: out[name][stage] for name in out})
        trees_of_stage = cascade.StageTrees.from_arrays(*(out[name][stage] for name in or_format.TREE_ARRAYS))
        shapes = np.concatenate([
            cascade.stage(settings, trees_of_stage, current.part(part), anchor.part(part), data.heatmaps[part],
                          maxima[part], active[part], refine_model.operators(active[part]), refine_model)[0]
            for part in _chunks(n, CHUNK)])
        if on_stage is not None:
            on_stage(stage + 1, shapes)
        error = _mean_error(shapes, truth, data.weights)
        stage_bar.set_postfix(error_px=f"{error:.2f}")
        log.info("OR stage %d/%d: radius %.3f, mean training error %.2f px", stage + 1, config.stages,
                 radii[stage], error)

    record = {"seed": seed, "samples": n, "config": asdict(config), **(provenance or {})}
    return OcclusionAwareRegressor(or_format.pack(settings, shape_model, refine_model, out, record))


def _chunks(n: int, size: int) -> list[slice]:
    """``range(n)`` in slices of ``size``: the training set in parts that bound the temporaries' memory."""
    return [slice(start, start + size) for start in range(0, n, size)]


def _peaks(data: TrainingSet) -> np.ndarray:
    """The network's landmarks of ``data``, or the stored heatmaps' peaks (``or_cascade.heatmap_peaks``)."""
    if data.peaks is not None:
        return np.asarray(data.peaks, dtype=np.float64)
    return np.concatenate([cascade.heatmap_peaks(data.heatmaps[part]) for part in _chunks(len(data.heatmaps), CHUNK)])


def _fit_stage(rng: np.random.Generator, values: np.ndarray, residual: np.ndarray, weights: np.ndarray,
               active: np.ndarray, config: CascadeConfig, stage: dict[str, np.ndarray]) -> None:
    """Fit one stage's trees in place in ``stage`` (views of the ``or_format.TREE_ARRAYS`` of that stage, its
    ``anchors`` set): each tree boosts on what the trees before it left of its landmark's ``residual`` ``(N, L, 2)``
    over the samples where that landmark is ``active``, from the pool ``values`` ``(N, L, P)``."""
    step = np.zeros_like(residual)
    for tree, landmark in enumerate(stage["anchors"].tolist()):
        members = np.flatnonzero(active[:, landmark])
        if len(members) == 0:
            continue
        feature_a, feature_b, thresholds, leaves, leaf = _fit_tree(
            rng, values[members, landmark], residual[members, landmark] - step[members, landmark],
            weights[members, landmark], config)
        stage["feature_a"][tree], stage["feature_b"][tree] = feature_a, feature_b
        stage["thresholds"][tree], stage["leaves"][tree] = thresholds, leaves
        step[members, landmark] += leaves[leaf]


def _draw_offsets(rng: np.random.Generator, count: int, pool: int, radius: float) -> np.ndarray:
    """``(L, P, 2)`` pool offsets uniform in a disc of ``radius``; the first of each pool is the landmark itself."""
    angle = rng.uniform(0.0, 2 * np.pi, (count, pool))
    length = radius * np.sqrt(rng.uniform(0.0, 1.0, (count, pool)))
    offsets = np.stack([length * np.cos(angle), length * np.sin(angle)], -1)
    offsets[:, 0] = 0.0
    return offsets


def _fit_tree(rng: np.random.Generator, values: np.ndarray, residual: np.ndarray, weights: np.ndarray,
              config: CascadeConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One regression tree on ``values`` ``(M, P)`` for the 2-D ``residual`` ``(M, 2)``, weighted by ``weights``.

    Returns the split nodes' pool indices a, b and thresholds ``(2^D − 1,)``, the leaves ``(2^D, 2)``
    (float32 values, as stored) and the leaf each of the ``M`` samples falls in.
    """
    depth, pool = config.depth, values.shape[1]
    nodes = 2 ** depth - 1
    feature_a = np.zeros(nodes, np.int32)
    feature_b = np.zeros(nodes, np.int32)
    thresholds = np.zeros(nodes, np.float32)
    weighted = residual * weights[:, None]
    node_of = np.zeros(len(values), np.intp)
    columns = np.arange(config.candidates)
    for node in range(nodes):
        members = np.flatnonzero(node_of == node)
        a = rng.integers(0, pool, config.candidates)
        b = (a + rng.integers(1, pool, config.candidates)) % pool
        picks = rng.integers(0, max(len(members), 1), (2, config.candidates))
        if len(members) == 0:
            feature_a[node], feature_b[node] = a[0], b[0]
            continue
        local = values[members]
        features = local[:, a] - local[:, b]
        cut = ((features[picks[0], columns] + features[picks[1], columns]) / 2).astype(np.float32).astype(np.float64)
        right = features > cut
        best = int(np.argmax(_split_gain(right, weighted[members], weights[members], config.leaf_prior)))
        feature_a[node], feature_b[node], thresholds[node] = a[best], b[best], cut[best]
        node_of[members] = 2 * node + 1 + right[:, best]
    leaf = node_of - nodes
    sums = np.stack([np.bincount(leaf, weighted[:, k], nodes + 1) for k in range(2)], 1)
    totals = np.bincount(leaf, weights, nodes + 1)[:, None]
    leaves = (config.shrinkage * sums / (totals + config.leaf_prior)).astype(np.float32)
    return feature_a, feature_b, thresholds, leaves, leaf


def _split_gain(right: np.ndarray, weighted: np.ndarray, weights: np.ndarray, prior: float) -> np.ndarray:
    """Squared-error reduction ``Σ S²/(W + prior)`` over both children, for each candidate column of ``right``."""
    side = right.astype(np.float64)
    sum_right = side.T @ weighted
    weight_right = side.T @ weights
    sum_left = weighted.sum(0) - sum_right
    weight_left = weights.sum() - weight_right
    return ((sum_right ** 2).sum(1) / (weight_right + prior) + (sum_left ** 2).sum(1) / (weight_left + prior))


def _clip_norm(vectors: np.ndarray, limit: float) -> np.ndarray:
    """``vectors`` ``(..., 2)`` shortened to at most ``limit`` long: a tree cannot see farther than its pool,
    so a residual beyond it is a face the heatmaps lost, not something to learn."""
    length = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors * np.minimum(1.0, limit / np.maximum(length, 1e-12))


def _mean_error(shapes: np.ndarray, truth: np.ndarray, weights: np.ndarray) -> float:
    distance = np.linalg.norm(shapes - truth, axis=-1)
    w = np.asarray(weights, dtype=np.float64)
    return float((distance * w).sum() / max(w.sum(), 1.0))
