"""The occlusion-aware regressor's cascade (OR, section 3.2 of the MNN paper), written once.

``app.core.refiner`` runs it on the full model's outputs; ``trainer.or_fit`` fits it by calling the same
steps (``begin``, ``start``, ``stage``) on its training faces, so that each stage learns from the shapes
the runtime will really have. Numpy only, vectorised over faces and trees; nothing here looks at an
annotation. The per-frame work keeps products of the shape model's size out of BLAS (``einsum`` instead):
a multi-threaded BLAS call on a busy two-core machine waits for the second core and costs far more than
its arithmetic.

For each face:

1. Initial shape ``x⁰ = π(pose_proj, X)``: the mean 3D face ``X`` posed by the network's ``pose_proj``
   (angles to radians, ``tz`` clamped to ``pose.TZ_MIN``), in crop pixels (``begin``).
2. Active landmarks (``active_landmarks``): visible by the network (``visibility ≥ visibility_threshold``),
   not self-occluded at that pose, and with a usable heatmap. Self-occlusion uses a normal per mean-face
   landmark, pointing from a head centre behind the face (the centre of the face in x and y, at the
   depth of its deepest landmark, the jaw ends) to the landmark: a sphere-like head on which the jaw
   ends lie on the frontal silhouette. A landmark is self-occluded when its posed normal faces away
   from the camera by more than the stored angle beyond the silhouette (``normal_z < facing_min``). A
   heatmap with no positive finite maximum, or any NaN/inf (its maximum is then not finite), carries
   no evidence and counts as occluded: all-zero or broken heatmaps make the OR keep what it has.
3. Stage 0, the heatmap anchor (``start``): the shape model (step 6) fitted to the heatmap peaks (the
   network's ``landmarks``) of the active landmarks, then fitted again without the peaks that lie more
   than ``peak_outlier`` (mean-shape units) from that first fit. ``x⁰`` comes from ``pose_proj`` alone,
   and a pose error of a few degrees or a few percent of scale moves every landmark by more than a
   heatmap's reach; this stage puts the trees where the heatmaps can guide them. Occluded landmarks
   follow the visible ones through the shape model.
4. ``S`` tree stages, coarse to fine (``stage``). Each computes the similarity ``A`` from the 2-D mean
   shape to the current shape (as in ERT), places a pool of ``P`` points around every landmark at
   ``x_l + A·offset`` (offsets in mean-shape units, their radius shrinking from stage to stage), and
   samples each landmark's OWN heatmap there (bilinear, zero outside the map), divided by that
   heatmap's maximum so that values lie in [0, 1] whatever the softmax's spread. A tree anchored at
   landmark ``l`` splits on differences of two of ``l``'s pool values (ERT's pixel-difference features,
   here heatmap-difference features: signs of local slopes towards the peak), and its leaf holds a 2-D
   displacement of ``l`` in mean-shape units, mapped to pixels by ``A``.
5. Occlusion rule: the displacement of a tree whose anchor landmark is not active is not added, so an
   occluded landmark receives no tree update and its heatmap is never read.
6. Valid face shape: after every stage the displacement from the stage's reference shape (in its
   mean-shape frame) is replaced by the shape model's fit to the ACTIVE landmarks' displacements
   (``ShapeModel``): a basis ``U`` (RMS ``σ_k`` per component over the training displacements) with
   coefficients ``b = (U W Uᵀ + ν² diag(σ⁻²))⁻¹ U W d`` (``W`` selects active landmarks, ``ν`` the
   landmark noise: the posterior mean under the model's Gaussian prior), clamped to ``±c σ_k``. The
   basis holds the four similarity modes of the mean shape (shift, scale, in-plane turn) and the
   principal non-rigid modes of the training displacements. Stage 0 fits its model to the displacement
   from ``x⁰``; the tree stages fit theirs (the same construction on what stage 0 leaves,
   ``x_true − anchor``) to the displacement from the stage-0 shape, the anchor, in the anchor's frame.
   Its prior scales are those of stage 0's residuals, a few pixels, so no run of tree updates can carry
   a face far from where the heatmaps put it. A face with no active landmark keeps ``x⁰`` exactly; no
   heatmap can push a shape outside the box of displacements seen in training.

Trees that move their own landmark ("the 2-D displacements estimated by trees", section 3.2), rather
than ERT's whole-shape leaves, keep each leaf's estimation noise on its own landmark; the explicit shape
model then does what ERT's leaf averaging does implicitly (valid shapes, and positions for occluded
landmarks).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from app.core.crop import from_normalised
from app.core.pose import TZ_MIN, project, rotation_matrix

NEUTRAL_POSE = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
"""Stand-in ``pose_proj`` for a face whose own is not finite, so that the batch runs; that face keeps the
network's landmarks."""


@dataclass(frozen=True)
class CascadeSettings:
    """What every step shares: the crop size, the mean face ``(L, 3)``, its 2-D frame ``mean_shape`` ``(L, 2)``
    (``mean_shape_of``), the normals of the self-occlusion test ``(L, 3)`` (``surface_normals``), and the
    thresholds of steps 2, 3 and the runtime's lock check (mean-shape units)."""

    input_size: int
    mean_face: np.ndarray
    mean_shape: np.ndarray
    normals: np.ndarray
    visibility_threshold: float
    facing_min: float
    peak_outlier: float
    lock_threshold: float
    frame_vectors: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False, compare=False)
    """``frame_vectors(mean_shape)``, once: ``Framed.of`` runs per stage and per frame."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "frame_vectors", frame_vectors(self.mean_shape))

    @property
    def landmarks(self) -> int:
        return len(self.mean_face)


@dataclass(frozen=True)
class ShapeModel:
    """A shape model (step 6): orthonormal rows ``basis`` ``(K, 2L)`` (coordinates interleaved x, y), prior
    RMS ``sigma`` ``(K,)``, the clamp ``c`` and the landmark noise ``ν`` (mean-shape units)."""

    basis: np.ndarray
    sigma: np.ndarray
    clamp: float
    noise: float

    @property
    def limits(self) -> np.ndarray:
        """``(K,)`` the coefficients' bounds, ``c σ_k``."""
        return self.clamp * self.sigma

    def operators(self, active: np.ndarray) -> np.ndarray:
        """``shape_fit_operators`` of this model for the active landmarks ``(N, L)``."""
        return shape_fit_operators(active, self.basis, self.sigma, self.noise)


@dataclass(frozen=True)
class StageTrees:
    """One tree stage (step 4), ready to run: pool ``offsets`` ``(L, P, 2)``, each tree's anchor landmark
    ``anchors`` ``(T,)``, its split nodes' pool indices into the flattened ``(L·P)`` pool values
    ``feature_a``/``feature_b`` and ``thresholds`` ``(T, 2^D − 1)`` (heap order), and ``leaf_rows``
    ``(T·2^D + 1, 2)``: every tree's leaves, then an all-zero row, the leaf an inactive tree lands in."""

    offsets: np.ndarray
    anchors: np.ndarray
    feature_a: np.ndarray
    feature_b: np.ndarray
    thresholds: np.ndarray
    leaf_rows: np.ndarray
    depth: int
    tiled: bool
    """Whether tree ``t`` moves landmark ``t mod L`` (as the trainer lays them out): sums need no scatter."""

    @classmethod
    def from_arrays(cls, offsets: np.ndarray, anchors: np.ndarray, feature_a: np.ndarray, feature_b: np.ndarray,
                    thresholds: np.ndarray, leaves: np.ndarray) -> "StageTrees":
        """One stage of the file's arrays (``or_format``): offsets ``(L, P, 2)``, anchors ``(T,)``, per-landmark
        pool indices and thresholds ``(T, 2^D − 1)``, leaves ``(T, 2^D, 2)``."""
        count, pool = offsets.shape[:2]
        anchors = np.asarray(anchors).astype(np.intp)
        leaf_count = leaves.shape[1]
        cycle = np.tile(np.arange(count), max(len(anchors) // count, 1))
        rows = np.concatenate([leaves.astype(np.float64).reshape(-1, 2), np.zeros((1, 2))])
        return cls(offsets=offsets.astype(np.float64), anchors=anchors,
                   feature_a=anchors[:, None] * pool + feature_a.astype(np.intp),
                   feature_b=anchors[:, None] * pool + feature_b.astype(np.intp),
                   thresholds=thresholds.astype(np.float64), leaf_rows=rows, depth=int(np.log2(leaf_count)),
                   tiled=anchors.shape == cycle.shape and bool(np.array_equal(anchors, cycle)))

    def step(self, shapes: np.ndarray, forward: np.ndarray, heatmaps: np.ndarray, maxima: np.ndarray,
             active: np.ndarray, input_size: int) -> np.ndarray:
        """``(N, L, 2)`` mean-shape units: what these trees add to each landmark (0 where not active).

        ``forward`` is the stage's similarity (``similarity(shapes, mean_shape)[0]``), ``maxima`` the
        heatmaps' maxima (``heatmap_maxima``).
        """
        n, count = shapes.shape[:2]
        values = pool_values(heatmaps, maxima, shapes, forward, self.offsets, input_size)
        leaves = traverse(values.reshape(n, -1), self.feature_a, self.feature_b, self.thresholds, self.depth)
        rows = np.arange(len(self.anchors)) * 2 ** self.depth + leaves
        rows = np.where(active[:, self.anchors], rows, len(self.leaf_rows) - 1)
        moves = self.leaf_rows[rows]
        if self.tiled:
            return moves.reshape(n, -1, count, 2).sum(1)
        step = np.zeros((n * count, 2))
        np.add.at(step, (np.arange(n)[:, None] * count + self.anchors).reshape(-1), moves.reshape(-1, 2))
        return step.reshape(n, count, 2)


@dataclass(frozen=True)
class Framed:
    """Shapes ``(N, L, 2)`` with their ERT frames (``similarity`` to the mean shape): ``forward`` ``(N, 2, 2)`` and
    ``inverse``. Made once over a whole batch and sliced (``part``): ``similarity``'s products go through BLAS,
    whose last bits can depend on how many rows it is given, so a frame is computed once per batch."""

    shapes: np.ndarray
    forward: np.ndarray
    inverse: np.ndarray

    @classmethod
    def of(cls, shapes: np.ndarray, settings: CascadeSettings) -> "Framed":
        return cls(shapes, *_similarity(shapes, *settings.frame_vectors))

    def part(self, rows: slice) -> "Framed":
        return Framed(self.shapes[rows], self.forward[rows], self.inverse[rows])


@dataclass(frozen=True)
class Start:
    """Where the cascade starts for ``N`` faces (steps 1 and 2): ``initial`` ``(N, L, 2)`` the start ``x⁰``
    (crop pixels), ``active`` ``(N, L)`` the landmarks whose trees count, ``refined`` ``(N,)`` False for a face
    whose ``pose_proj`` (or the ``x⁰`` it gives) is not finite: it starts from ``NEUTRAL_POSE`` instead."""

    initial: np.ndarray
    active: np.ndarray
    refined: np.ndarray


def begin(settings: CascadeSettings, pose_proj_deg: np.ndarray, visibility: np.ndarray,
          evidence: np.ndarray) -> Start:
    """Steps 1 and 2 for ``N`` faces: ``pose_proj`` ``(N, 6)`` in the ``model_io`` units, the network's
    ``visibility`` ``(N, L)`` and each heatmap's ``evidence`` ``(N, L)`` (``heatmap_maxima``)."""
    pose = np.asarray(pose_proj_deg, dtype=np.float64).reshape(-1, 6)
    refined = np.isfinite(pose).all(1)
    safe_pose = np.where(refined[:, None], pose, NEUTRAL_POSE)
    initial = initial_shapes(safe_pose, settings.mean_face, settings.input_size)
    refined &= np.isfinite(initial).all((1, 2))
    safe_pose = np.where(refined[:, None], safe_pose, NEUTRAL_POSE)
    initial = np.where(refined[:, None, None], initial,
                       initial_shapes(NEUTRAL_POSE[None], settings.mean_face, settings.input_size))
    return Start(initial=initial, active=active_landmarks(settings, safe_pose, visibility, evidence),
                 refined=refined)


def active_landmarks(settings: CascadeSettings, pose_proj_deg: np.ndarray, visibility: np.ndarray,
                     evidence: np.ndarray) -> np.ndarray:
    """``(N, L)`` step 2: visible, not self-occluded at ``pose_proj`` (finite), and a heatmap with evidence."""
    return ((np.asarray(visibility, dtype=np.float64) >= settings.visibility_threshold)
            & ~self_occluded(pose_proj_deg, settings.normals, settings.facing_min) & np.asarray(evidence, bool))


def start(settings: CascadeSettings, initial: Framed, active: np.ndarray, peaks: np.ndarray, model: ShapeModel,
          operators_for: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Step 3: the stage-0 shapes ``(N, L, 2)`` (the anchor), ``model`` fitted to the active landmarks' ``peaks``
    around ``initial`` (``fit_to_peaks``). ``operators_for`` (default ``model.operators``) may remember them."""
    return fit_to_peaks(peaks, initial.shapes, initial.inverse, initial.forward, active,
                        operators_for or model.operators, model.basis, model.limits, settings.peak_outlier)


def stage(settings: CascadeSettings, trees: StageTrees, current: Framed, anchor: Framed, heatmaps: np.ndarray,
          maxima: np.ndarray, active: np.ndarray, operators: np.ndarray,
          model: ShapeModel) -> tuple[np.ndarray, np.ndarray]:
    """Steps 4–6 for one tree stage: the next shapes ``(N, L, 2)``, and the trees' displacements ``(N, L, 2)``
    (crop pixels, before the shape model's fit). ``operators`` are ``model``'s for ``active``; the fit is to the
    displacement from ``anchor`` (the stage-0 shapes) in the anchor's frame."""
    moved = apply_linear(current.forward, trees.step(current.shapes, current.forward, heatmaps, maxima, active,
                                                     settings.input_size))
    return fit_shape(current.shapes + moved, anchor.shapes, anchor.inverse, anchor.forward, operators, model.basis,
                     model.limits), moved


# --- kernels ---------------------------------------------------------------------------------------


def mean_shape_of(mean_face: np.ndarray) -> np.ndarray:
    """The 2-D reference shape of the ERT frames: the mean face seen from the front, centred, unit RMS radius."""
    shape = np.asarray(mean_face, dtype=np.float64)[:, :2]
    shape = shape - shape.mean(0)
    return shape / np.sqrt((shape ** 2).sum(1).mean())


def surface_normals(mean_face: np.ndarray) -> np.ndarray:
    """``(L, 3)`` unit normals of the mean face for the self-occlusion test (module docstring, step 2)."""
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


def heatmap_maxima(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per heatmap its maximum (``inf`` where it carries no evidence, so that a value divided by it is 0) and
    whether it carries evidence (a positive, finite maximum), ``(N, L)`` each.

    A NaN or inf anywhere makes the maximum non-finite, so a broken heatmap has no evidence.
    """
    n, count = heatmaps.shape[:2]
    peak = heatmaps.reshape(n, count, -1).max(-1).astype(np.float64) if heatmaps.size else np.zeros((n, count))
    evidence = np.isfinite(peak) & (peak > 0)
    return np.where(evidence, peak, np.inf), evidence


def similarity(shapes: np.ndarray, mean_shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The linear part ``A`` ``(N, 2, 2)`` of the least-squares similarity from ``mean_shape`` to each of
    ``shapes`` ``(N, L, 2)``, and its inverse."""
    return _similarity(shapes, *frame_vectors(mean_shape))


def frame_vectors(mean_shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def pool_values(heatmaps: np.ndarray, maxima: np.ndarray, shapes: np.ndarray, forward: np.ndarray,
                offsets: np.ndarray, input_size: int) -> np.ndarray:
    """``(N, L, P)`` each landmark's own heatmap at its pool (``pool_points``) over that heatmap's maximum, in
    [0, 1]; 0 for a heatmap without evidence or a broken value."""
    x, y = pool_points(shapes, forward, offsets)
    values = sample_bilinear(heatmaps, x, y, input_size) / maxima[:, :, None]
    values[~np.isfinite(values)] = 0.0
    return values


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
    active landmarks, ``(U W Uᵀ + ν² diag(σ⁻²))⁻¹ U W`` (module docstring, step 6)."""
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


def shape_coefficients(shapes: np.ndarray, initial: np.ndarray, mean_shape: np.ndarray,
                       basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients ``(N, K)`` of ``shapes``' displacement from ``initial`` on ``basis``, and the part of it
    ``(N, 2L)`` outside the basis' span (zero for a valid face shape)."""
    _, inverse = similarity(initial, mean_shape)
    displacement = apply_linear(inverse, shapes - initial).reshape(len(shapes), -1)
    coefficients = displacement @ basis.T
    return coefficients, displacement - coefficients @ basis
