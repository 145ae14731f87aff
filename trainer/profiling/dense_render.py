"""Dense-face profiling: a fitted dense face textured from its photograph, turned to a new pose and rendered
with a z-buffer over a background that follows it (as 300W-LP was made; Zhu et al., 3DDFA "face profiling").

Texture. Each dense vertex samples the photograph where the fitted camera projects it. The photograph
*sees* a vertex when the source view's z-buffer shows it (nothing nearer at its pixel), its surface
faces the camera by more than ``GRAZING`` (grazing surfaces smear one pixel over many), and it projects
inside the photographed face's outline (the annotated jaw line and a forehead above the brows): the
mean face's ears and cheeks beyond the jaw line rarely lie on this person's, and sampled background
there. A vertex it does not see takes the texture of its mirror vertex when that one is seen (the face
is nearly symmetric), failing that the nearest seen vertex's, smoothed over the mesh so that the
patches blend: the skin at the photographed outline stretched over the side of the head and under the
jaw, as in 300W-LP. (Keeping such a vertex's own projection, which lies just outside the photographed
outline, put shards of background on the jaw and neck wherever the fitted outline overshot the real one.)

Rendering. The turned face is z-buffered (``zbuffer.rasterise``); each covered pixel interpolates its
triangle's texture positions, and one ``cv2.remap`` samples the photograph for the face and the
background together, so no pixel is left unpainted.

Background. A 2D warp anchored at two rings around the head's centre of rotation (which keeps its
image position): the face outline (per direction, the farthest pixel the face covers) moves from the
photograph's to the render's; a ring ``OUTER_RING`` times farther out, and everything beyond it up to
the image border, stays put. Between them, each ray is stretched linearly; inside the new outline,
pixels the turned face leaves uncovered (in front of a profile's nose, under its chin) take the
photograph just outside the old outline, so the background stretches over them instead of showing
the old face or a hole.

Labels. The pose is the target rotation exactly (the fitted face is rotated rigidly by it about its
centre). The landmarks are the fitted 68 3D keypoints turned and projected, hidden ones included where
they fall (AFLW2000-3D's ``pt3d_68`` convention, not the visible silhouette); visibility is the
z-buffer test at each keypoint.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np
import scipy.ndimage
import scipy.sparse
from scipy.spatial import cKDTree

from app.core.pose import rotation_matrix
from trainer.profiling.dense_fit import DenseFit, deform_dense
from trainer.profiling.face3d import Face3D
from trainer.profiling.zbuffer import rasterise, visible_points

GRAZING = 0.15
"""Least cosine between a vertex normal and the view direction for the photograph to texture it (81°)."""
VISIBILITY_TOLERANCE = 0.02
"""Depth margin, as a fraction of the face's outer-eye-corner distance, by which a surface must lie in
front of a point to hide it (absorbs the z-buffer's sampling at the point's pixel)."""
RING_BINS = 180
"""Directions around the head's centre in which the background warp's rings are sampled (2° each)."""
OUTER_RING = 1.6
"""The fixed ring's radius over the larger of the two face outlines', per direction."""
JAW_MARGIN = 4000.0
"""How far below the jaw line (BFM units, about 4 mm) the rendered face reaches (``face_triangles``)."""
FOREHEAD = 0.6
"""How far above the brows the photographed face reaches, as a share of the chin-to-brow height (the
hairline, about): texture above it is hair or background, which the mesh's forehead should not take."""
OUTLINE_SLACK_PX = 2.0
"""Pixels outside the annotated outline a vertex may still project to and be seen (the annotation's noise)."""
SMOOTHING_STEPS = 30
"""Neighbour-averaging passes over the texture of vertices the photograph does not see (``smooth_unseen``)."""
PINHOLE_PX = 9
"""Gaps in the rendered face up to about this width (pixels) are filled from the face, not the background."""
OUTLINE_MARGIN = 1.04
"""How far beyond the photographed face outline the background starts, as a radius factor."""


@dataclass(frozen=True)
class DenseFace:
    """A fitted face's dense mesh, textured: ``vertices`` ``(V, 3)`` model frame, ``texture`` ``(V, 2)``
    where each samples the photograph, ``seen`` ``(V,)`` whether the photograph shows it, ``centre``
    ``(3,)`` the model-frame centre of rotation, ``image`` the photograph (RGB), ``covered`` ``(H, W)``
    the pixels the face covers in it."""

    fit: DenseFit
    vertices: np.ndarray
    texture: np.ndarray
    seen: np.ndarray
    centre: np.ndarray
    image: np.ndarray
    covered: np.ndarray


@dataclass(frozen=True)
class DenseRender:
    """A face rendered at a new pose, with the fields ``trainer.profile.face_mat`` writes: ``image`` RGB;
    ``landmarks`` ``(68, 2)`` and ``points`` ``(68, 3)`` 0-based pixels (depth towards the viewer);
    ``visibility`` ``(68,)``; ``pose`` ``(yaw, pitch, roll, tx, ty, tz)``: radians, where the model origin
    projects, and ``tz`` BFM units per pixel; ``covered`` ``(H, W)`` the pixels the face covers."""

    image: np.ndarray
    landmarks: np.ndarray
    points: np.ndarray
    visibility: np.ndarray
    pose: np.ndarray
    covered: np.ndarray


def face_triangles(model: Face3D, margin: float = JAW_MARGIN) -> np.ndarray:
    """The dense mesh's triangles above the jaw line: its neck flap (a third of its height below the chin in
    the mean face, 24% of its vertices) is cut off.

    The flap is the mean neck, not this person's: textured from the photograph it took in background
    wherever the real neck is narrower, and turned up it showed those shards under the chin. Without it
    the background warp shows the photographed neck there. A vertex is kept when it lies no more than
    ``margin`` (BFM units) below the jaw polyline of the mean 68 points 0–16 in the frontal (x, y) plane;
    beside the jaw (the ears) the line drops to the height of points 3 and 13, keeping the ear lobes.
    """
    vertices, jaw = model.dense_vertices, model.mean68[:17]
    line_x = np.r_[jaw[0, 0] - 1.0, jaw[:, 0], jaw[16, 0] + 1.0]
    line_y = np.r_[jaw[3, 1], jaw[:, 1], jaw[13, 1]]
    keep = vertices[:, 1] <= np.interp(vertices[:, 0], line_x, line_y) + margin
    keep[model.keypoints] = True
    return model.triangles[keep[model.triangles].all(1)]


class DenseTexturer:
    """What texturing needs once per model: the face's triangles, which vertices they use, each vertex's
    mirror vertex and the mesh's neighbour averaging."""

    def __init__(self, model: Face3D) -> None:
        self.model = model
        self.triangles = face_triangles(model)
        self.in_mesh = np.zeros(len(model.dense_vertices), bool)
        self.in_mesh[self.triangles.ravel()] = True
        self.averaging = neighbour_mean(self.triangles, len(model.dense_vertices))
        mirrored = model.dense_vertices * [-1.0, 1.0, 1.0]
        self.mirror = cKDTree(model.dense_vertices).query(mirrored)[1]

    def texture(self, fit: DenseFit, image: np.ndarray) -> DenseFace:
        """The fitted face's dense mesh textured from ``image`` (RGB, the photograph ``fit`` was made on)."""
        vertices = deform_dense(self.model, fit.shape68)
        posed = fit.pose_points(vertices)
        raster = rasterise(posed, self.triangles, image.shape[:2])
        normals = vertex_normals(vertices, self.triangles) @ rotation_matrix(fit.angles).T
        seen = visible_points(posed, raster, self._tolerance(fit)) & (normals[:, 2] > GRAZING)
        seen &= inside_outline(posed[:, :2], fit.landmarks, image.shape[:2]) & self.in_mesh
        texture = posed[:, :2].copy()
        from_mirror = ~seen & seen[self.mirror]
        texture[from_mirror] = texture[self.mirror[from_mirror]]
        unseen = ~seen & ~from_mirror
        if unseen.any() and seen.any():
            nearest = cKDTree(vertices[seen]).query(vertices[unseen])[1]
            texture[unseen] = texture[np.flatnonzero(seen)[nearest]]
            texture = smooth_unseen(texture, ~unseen, self.averaging)
        centre = (vertices.min(0) + vertices.max(0)) / 2
        return DenseFace(fit=fit, vertices=vertices, texture=texture, seen=seen, centre=centre, image=image,
                         covered=raster.covered)

    def _tolerance(self, fit: DenseFit) -> float:
        eyes = fit.shape68[36] - fit.shape68[45]
        return VISIBILITY_TOLERANCE * fit.scale * float(np.linalg.norm(eyes))

    def render(self, face: DenseFace, target_angles: np.ndarray) -> DenseRender:
        """``face`` turned to ``target_angles`` (yaw, pitch, roll radians) about its centre and rendered in
        its photograph's frame, with its labels."""
        fit = face.fit
        target = np.asarray(target_angles, np.float64)
        source_rot, target_rot = rotation_matrix(fit.angles), rotation_matrix(target)
        shift = fit.shift + fit.scale * ((source_rot - target_rot) @ face.centre)[:2]
        turned = replace(fit, angles=target, shift=shift)
        posed = turned.pose_points(face.vertices)
        height, width = face.image.shape[:2]
        raster = rasterise(posed, self.triangles, (height, width))
        centre = fit.pose_points(face.centre[None])[0, :2]
        map_xy = background_map(centre, face.covered, raster.covered)
        covered = raster.covered
        map_xy[covered] = raster.interpolate(face.texture, self.triangles)[covered]
        covered = fill_pinholes(map_xy, covered)
        maps = map_xy.astype(np.float32)
        rendered = cv2.remap(face.image, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT_101)
        keypoints = posed[self.model.keypoints]
        visible = visible_points(keypoints, raster, self._tolerance(fit))
        pose = np.concatenate([target, shift, [1.0 / fit.scale]])
        return DenseRender(image=rendered, landmarks=keypoints[:, :2].copy(), points=keypoints, visibility=visible,
                           pose=pose, covered=covered)


def face_outline(landmarks: np.ndarray) -> np.ndarray:
    """The photographed face's outline ``(27, 2)``: the annotated jaw line (points 0–16), then the brows
    (26 back to 17) lifted by ``FOREHEAD`` of the chin-to-brow height along the face's up direction."""
    points = np.asarray(landmarks, np.float64)
    brows = points[26:16:-1]
    up = points[17:27].mean(0) - points[8]
    return np.vstack([points[:17], brows + FOREHEAD * up])


def inside_outline(points: np.ndarray, landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Which image ``points`` ``(N, 2)`` fall on the face outline's filled mask (image ``shape``, grown by
    ``OUTLINE_SLACK_PX``); points outside the image are outside."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.rint(face_outline(landmarks) * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    size = 2 * int(OUTLINE_SLACK_PX) + 1
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    x, y = np.rint(points[:, 0]).astype(np.int64), np.rint(points[:, 1]).astype(np.int64)
    inside = (x >= 0) & (x < shape[1]) & (y >= 0) & (y < shape[0])
    inside[inside] = mask[y[inside], x[inside]] > 0
    return inside


def neighbour_mean(triangles: np.ndarray, count: int) -> scipy.sparse.csr_matrix:
    """``(count, count)`` sparse matrix taking per-vertex values to the mean over each vertex's mesh neighbours
    (rows of vertices in no triangle are zero)."""
    edges = ((0, 1), (1, 2), (2, 0), (1, 0), (2, 1), (0, 2))
    rows = np.concatenate([triangles[:, a] for a, _ in edges])
    cols = np.concatenate([triangles[:, b] for _, b in edges])
    adjacency = scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(count, count))
    adjacency.data[:] = 1.0                                  # an edge shared by two triangles counts once
    degree = np.asarray(adjacency.sum(1)).ravel()
    return scipy.sparse.diags(1.0 / np.maximum(degree, 1.0)) @ adjacency


def smooth_unseen(texture: np.ndarray, fixed: np.ndarray, averaging: scipy.sparse.csr_matrix,
                  steps: int = SMOOTHING_STEPS) -> np.ndarray:
    """``texture`` with the entries not ``fixed`` replaced ``steps`` times by their mesh neighbours' mean
    (``averaging`` from ``neighbour_mean``): blends the patches that nearest-vertex texturing leaves,
    keeping the seen vertices' own texture."""
    free = ~fixed & (np.asarray(averaging.sum(1)).ravel() > 0)
    out = texture.copy()
    for _ in range(steps):
        out[free] = (averaging @ out)[free]
    return out


def fill_pinholes(map_xy: np.ndarray, covered: np.ndarray, size: int = PINHOLE_PX) -> np.ndarray:
    """Give the uncovered pixels that the face encloses, or that a closing of ``covered`` (``size`` pixels)
    fills — gaps in the mesh such as the ear's concha — the photograph position of their nearest covered
    pixel, in place; returns the coverage with them."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    closed = cv2.morphologyEx(covered.astype(np.uint8), cv2.MORPH_CLOSE, kernel) > 0
    holes = scipy.ndimage.binary_fill_holes(closed) & ~covered
    if holes.any():
        _, (rows, cols) = scipy.ndimage.distance_transform_edt(~covered, return_indices=True)
        map_xy[holes] = map_xy[rows[holes], cols[holes]]
    return covered | holes


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unit outward vertex normals ``(V, 3)`` of the dense face (model frame, image-like axes).

    The stored winding points inwards for most triangles in the BFM's y-up frame; negating y flips it
    to outwards. The area-weighted sum is then made to point away from the head's middle wherever it
    points into it, which also rights the vertices of the few flipped triangles."""
    v = np.asarray(vertices, np.float64)
    face = np.cross(v[triangles[:, 1]] - v[triangles[:, 0]], v[triangles[:, 2]] - v[triangles[:, 0]])
    normals = np.zeros_like(v)
    for k in range(3):
        np.add.at(normals, triangles[:, k], face)
    middle = (v.min(0) + v.max(0)) / 2 - [0.0, 0.0, np.ptp(v[:, 2])]
    flip = ((normals * (v - middle)).sum(1) < 0)
    normals[flip] *= -1
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)


def outline_radii(centre: np.ndarray, covered: np.ndarray, bins: int = RING_BINS) -> np.ndarray:
    """Per direction around ``centre`` (``bins`` equal angles from the +x axis), the farthest covered pixel's
    distance; directions with none interpolate their neighbours round the circle."""
    ys, xs = np.nonzero(covered)
    radii = np.zeros(bins)
    if not len(xs):
        return radii
    dx, dy = xs - centre[0], ys - centre[1]
    k = (np.floor((np.arctan2(dy, dx) + np.pi) / (2 * np.pi) * bins).astype(np.int64)) % bins
    np.maximum.at(radii, k, np.hypot(dx, dy) + 0.5)
    empty = radii == 0
    if empty.any() and (~empty).any():
        index = np.arange(bins)
        known = index[~empty]
        radii[empty] = np.interp(index[empty], known, radii[known], period=bins)
    return radii


def background_map(centre: np.ndarray, source_covered: np.ndarray, target_covered: np.ndarray) -> np.ndarray:
    """``(H, W, 2)`` photograph positions for every output pixel: the two-ring background warp (module docstring)
    about ``centre``, from the photographed face's coverage to the render's."""
    height, width = source_covered.shape
    source_r = outline_radii(centre, source_covered) * OUTLINE_MARGIN
    target_r = outline_radii(centre, target_covered)
    outer_r = OUTER_RING * np.maximum(source_r, target_r)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    dx, dy = xs - centre[0], ys - centre[1]
    distance = np.hypot(dx, dy)
    position = (np.arctan2(dy, dx) + np.pi) / (2 * np.pi) * RING_BINS - 0.5
    index = np.arange(RING_BINS + 1)

    def at(radii: np.ndarray) -> np.ndarray:
        return np.interp(position % RING_BINS, index, np.r_[radii, radii[0]])

    rs, rt, ro = at(source_r), at(target_r), at(outer_r)
    share = np.clip((distance - rt) / np.maximum(ro - rt, 1e-6), 0.0, 1.0)
    radius = np.where(distance >= ro, distance, rs + share * (ro - rs))
    scale = np.divide(radius, distance, out=np.ones_like(distance), where=distance > 1e-9)
    return np.stack([centre[0] + dx * scale, centre[1] + dy * scale], -1)
