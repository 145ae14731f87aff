"""The meshes a profiled face is drawn with: the head (68 landmarks plus a head surface around them) and the background.

Head. The 68 landmarks cover the face; the rest of the head (forehead, crown, temples, ears, the back
of the head, under the chin, the neck) is a lofted surface around the mean face: horizontal ellipses
stacked from the crown to the neck (``LOFT``), sampled every ``COLUMN_STEP_DEG`` around. Every head
vertex has a parameter ``(φ, y)`` — the angle around the vertical axis (0 facing the viewer, growing
to the image right) and the height — and one triangulation (Delaunay in that plane) serves every face
and pose. Triangles are oriented counter-clockwise in the parameter plane, so a triangle faces the
camera exactly when its image is counter-clockwise too (back-face test without normals).

Texture. A landmark samples the photograph where it is annotated. A surface vertex samples where it
projects when it faces the camera in the photograph. One that does not (the back of the head, the
ear on the far side) has no texture of its own: it samples the band just outside the photographed
head outline, farther out the farther it lies behind the silhouette, so the hidden half of the head
continues whatever surrounds the head's outline — usually hair — continuously from the silhouette
on (stretched, as 300W-LP's are). Mirroring the visible side inwards instead put slivers of cheek
on the back of the head.

Background. The area between the head's outline and a ring of anchors around it (held fixed) is
warped radially from the photograph's outline to the rendered outline, so background bends around
the turned head instead of tearing; outside the ring the photograph is unchanged (up to the output's
pan, see ``turn``).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay

from app.core.pose import rotation_matrix
from trainer.profiling.fit import FaceFit

LANDMARKS = 68

HEAD_CENTRE = np.array([0.0, -0.8, -1.2])
"""The head's centre of rotation in the mean face's frame (unit-RMS face, y down, z to the viewer):
behind the eyes at about ear depth, the middle of the skull."""

LOFT = np.array([
    # y,     half-width, half-depth, depth of centre
    [-2.30, 0.00, 0.00, -1.15],
    [-2.05, 0.68, 0.85, -1.20],
    [-1.75, 0.98, 1.20, -1.20],
    [-1.45, 1.16, 1.40, -1.18],
    [-1.22, 1.20, 1.48, -1.16],
    [-0.85, 1.18, 1.52, -1.15],
    [-0.45, 1.18, 1.50, -1.18],
    [-0.05, 1.15, 1.40, -1.25],
    [0.35, 1.05, 1.22, -1.32],
    [0.75, 0.90, 1.00, -1.35],
    [1.15, 0.78, 0.86, -1.35],
    [1.65, 0.74, 0.82, -1.30],
    [2.30, 0.76, 0.84, -1.25],
    [3.00, 0.85, 0.90, -1.25],
])
"""Head surface rows in the mean face's frame: height y, the horizontal ellipse's half-width (x) and
half-depth (z), and its centre's depth. Adult head proportions at the mean face's scale (its outer
eye corners are 1.39 units apart, about 9 cm): crown 3.5 units above the chin, skull 3 units deep,
neck 1.5 wide. At the face's height the surface is no wider than the jaw points at the ears, so that
it wraps round the face rather than standing out in front of the ears."""

COLUMN_STEP_DEG = 15.0
FACE_MARGIN = 0.12
"""Surface vertices closer than this (parameter-plane units) to the face outline are left out: the
landmarks cover the face, and vertices hugging the outline would make slivers."""
PARAM_RADIUS = 1.3
"""Parameter-plane scale of φ (radians) against y, about the head's radius, so Delaunay sees arc lengths."""
HIDDEN_BAND = 0.5
"""The band outside the photographed head outline that textures the hidden half of the head, as a
fraction of the head's projected radius (see ``_outside_texture``)."""
JAW = list(range(0, 17))
BROWS_REVERSED = list(range(26, 16, -1))


@dataclass(frozen=True)
class HeadTopology:
    """The head mesh shared by every face: vertices ``0..67`` are the landmarks, the rest surface points.

    ``model`` ``(V, 3)`` canonical positions (the mean face and the loft); ``param`` ``(V, 2)`` their
    ``(φ, y)``; ``triangles`` ``(T, 3)`` counter-clockwise in the parameter plane.
    """

    model: np.ndarray
    param: np.ndarray
    triangles: np.ndarray

    @property
    def surface(self) -> slice:
        """The surface (non-landmark) vertices."""
        return slice(LANDMARKS, len(self.model))


def loft_rows(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half-width, half-depth and centre depth of the head surface at heights ``y`` (clamped to the loft)."""
    y = np.asarray(y, dtype=np.float64)
    return tuple(np.interp(y, LOFT[:, 0], LOFT[:, k]) for k in (1, 2, 3))


def loft_points(phi: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Head-surface points ``(N, 3)`` in the mean face's frame at angles ``phi`` (radians) and heights ``y``."""
    phi, y = np.broadcast_arrays(np.asarray(phi, np.float64), np.asarray(y, np.float64))
    half_width, half_depth, centre = loft_rows(y)
    return np.stack([half_width * np.sin(phi), y, centre + half_depth * np.cos(phi)], -1)


def surface_angle(points: np.ndarray) -> np.ndarray:
    """The parameter ``φ`` (radians) of model-frame points: their angle around the loft's axis at their height."""
    half_width, half_depth, centre = loft_rows(points[:, 1])
    return np.arctan2(points[:, 0] / np.maximum(half_width, 1e-6),
                      (points[:, 2] - centre) / np.maximum(half_depth, 1e-6))


def head_topology(mean_face: np.ndarray) -> HeadTopology:
    """Landmarks plus loft grid vertices outside the face, triangulated in the ``(φ, y)`` plane."""
    mean = np.asarray(mean_face, dtype=np.float64)
    if mean.shape != (LANDMARKS, 3):
        raise ValueError(f"head_topology needs the (68, 3) mean face, got {mean.shape}")
    face_param = np.stack([surface_angle(mean), mean[:, 1]], -1)
    phi = np.radians(np.arange(-180.0, 180.0 + 1e-9, COLUMN_STEP_DEG))
    grid_phi, grid_y = np.meshgrid(phi, LOFT[:, 0])
    grid = np.stack([grid_phi.ravel(), grid_y.ravel()], -1)
    outline = face_param[JAW + BROWS_REVERSED] * [PARAM_RADIUS, 1.0]
    contour = outline.astype(np.float32)
    inside = np.array([cv2.pointPolygonTest(contour, (float(p[0] * PARAM_RADIUS), float(p[1])), True) for p in grid])
    grid = grid[inside < -FACE_MARGIN]                     # pointPolygonTest: distance, negative outside
    param = np.vstack([face_param, grid])
    model = np.vstack([mean, loft_points(grid[:, 0], grid[:, 1])])
    plane = param * [PARAM_RADIUS, 1.0]
    triangles = Delaunay(plane).simplices.astype(np.int64)
    a, b, c = plane[triangles[:, 0]], plane[triangles[:, 1]], plane[triangles[:, 2]]
    clockwise = _cross(b - a, c - a) < 0
    triangles[clockwise] = triangles[clockwise][:, [0, 2, 1]]
    return HeadTopology(model=model, param=param, triangles=triangles)


@dataclass(frozen=True)
class HeadMesh:
    """One face's head mesh in its photograph: ``points`` ``(V, 3)`` image-frame positions (pixels, z to
    the viewer), ``texture`` ``(V, 2)`` where each vertex samples the photograph, ``model`` ``(V, 3)``
    the fitted model-frame positions, ``centre`` ``(3,)`` the head's centre of rotation (image frame)."""

    topology: HeadTopology
    model: np.ndarray
    points: np.ndarray
    texture: np.ndarray
    centre: np.ndarray


def head_mesh(fit: FaceFit, landmarks: np.ndarray, topology: HeadTopology) -> HeadMesh:
    """The head mesh of a fitted face: landmarks at their fitted 3D positions, textured from their annotations."""
    surface = topology.param[topology.surface]
    model = np.vstack([fit.shape, fit.deform(topology.model[topology.surface])])
    points = fit.to_image(model)
    texture = points[:, :2].copy()
    texture[:LANDMARKS] = np.asarray(landmarks, dtype=np.float64)
    hidden = np.flatnonzero(_beyond_silhouette(fit, surface) > 0)
    if len(hidden):
        texture[LANDMARKS + hidden] = _outside_texture(fit, surface[hidden])
    centre = fit.to_image(fit.deform(HEAD_CENTRE[None]))[0]
    return HeadMesh(topology=topology, model=model, points=points, texture=texture, centre=centre)


def _silhouette_angles(fit: FaceFit, param: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ψ, φ − ψ wrapped)`` per surface vertex: ``ψ`` the photograph's camera direction as a loft angle.

    With the horizontal normal of the loft ellipse, a vertex at ``φ`` faces the camera when
    ``|φ − ψ| < 90°``; the silhouette of its row lies at ``ψ ± 90°``.
    """
    view = rotation_matrix(fit.pose).T @ np.array([0.0, 0.0, 1.0])
    view = np.linalg.inv(fit.warp[:, :3]) @ view           # normals transform by the inverse transpose
    half_width, half_depth, _ = loft_rows(param[:, 1])
    psi = np.arctan2(view[0] / np.maximum(half_width, 1e-6), view[2] / np.maximum(half_depth, 1e-6))
    return psi, _wrap(param[:, 0] - psi)


def _beyond_silhouette(fit: FaceFit, param: np.ndarray) -> np.ndarray:
    """How far (radians) each surface vertex lies beyond its row's silhouette in the photograph; ≤ 0 when
    it faces the camera (the crown, a single point, counts as facing it)."""
    half_width = loft_rows(param[:, 1])[0]
    _, offset = _silhouette_angles(fit, param)
    return np.where(half_width > 0, np.abs(offset) - np.pi / 2, -1.0)


def _outside_texture(fit: FaceFit, param: np.ndarray) -> np.ndarray:
    """Texture positions for surface vertices hidden in the photograph: just outside its head outline.

    The vertex ``δ`` beyond its row's silhouette samples the photograph on the line from the row's
    axis through the silhouette point, ``HIDDEN_BAND · δ / 90°`` of the row's projected radius
    outside the silhouette (at most 1.5 times that): the back of the head continues the hair (or
    whatever surrounds the head) seen around the outline, continuously from the silhouette on.
    """
    psi, offset = _silhouette_angles(fit, param)
    beyond = np.abs(offset) - np.pi / 2
    rim_angle = psi + np.sign(offset) * np.pi / 2
    rim = fit.to_image(fit.deform(loft_points(rim_angle, param[:, 1])))[:, :2]
    centre_depth = loft_rows(param[:, 1])[2]
    axis = fit.to_image(fit.deform(np.stack([np.zeros(len(param)), param[:, 1], centre_depth], -1)))[:, :2]
    outward = rim - axis
    reach = HIDDEN_BAND * np.clip(beyond / (np.pi / 2), 0.0, 1.5)
    return rim + outward * reach[:, None]


@dataclass(frozen=True)
class BackgroundMesh:
    """Background triangles: ``texture`` and ``target`` ``(V, 2)`` pixel positions, ``triangles`` ``(T, 3)``."""

    texture: np.ndarray
    target: np.ndarray
    triangles: np.ndarray


def background_mesh(centre: np.ndarray, source_outline: np.ndarray, target_outline: np.ndarray,
                    directions: int = 48, ring: float = 1.5) -> BackgroundMesh:
    """The radial warp that moves the background from the photographed head outline to the rendered one.

    ``centre`` ``(2,)`` is the head centre in the image (fixed by the turn); the outlines are point
    sets whose convex hulls stand for the head. Along each of ``directions`` rays the hull's radius
    moves from its source to its target value, the anchors at ``ring`` times the larger radius stay
    put, and the head's inside is scaled to fit (it shows only where the turned head leaves a gap).
    """
    c = np.asarray(centre, dtype=np.float64)[:2]
    angles = np.linspace(0.0, 2 * np.pi, directions, endpoint=False)
    rays = np.stack([np.cos(angles), np.sin(angles)], -1)
    r_source = _hull_radius(c, source_outline, rays)
    r_target = _hull_radius(c, target_outline, rays)
    r_anchor = ring * np.maximum(r_source, r_target)
    texture = np.vstack([c, c + r_source[:, None] * rays, c + r_anchor[:, None] * rays])
    target = np.vstack([c, c + r_target[:, None] * rays, c + r_anchor[:, None] * rays])
    k = np.arange(directions)
    nxt = (k + 1) % directions
    inner, outer = 1 + k, 1 + directions + k
    inner_next, outer_next = 1 + nxt, 1 + directions + nxt
    fan = np.stack([np.zeros(directions, np.int64), inner, inner_next], -1)
    band_a = np.stack([inner, outer, outer_next], -1)
    band_b = np.stack([inner, outer_next, inner_next], -1)
    return BackgroundMesh(texture=texture, target=target, triangles=np.vstack([fan, band_a, band_b]))


def _hull_radius(centre: np.ndarray, points: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """Distance from ``centre`` to the convex hull's boundary of ``points`` along each unit ray."""
    hull = cv2.convexHull(np.asarray(points, dtype=np.float32)[:, :2]).reshape(-1, 2).astype(np.float64) - centre
    a, b = hull, np.roll(hull, -1, axis=0)
    edge = b - a
    # Solve t·ray = a + s·edge for each ray and edge: t is the radius where the ray crosses the edge.
    denom = _cross(rays[:, None], edge[None])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = _cross(a[None], edge[None]) / denom
        s = _cross(a[None], rays[:, None]) / denom
    valid = (np.abs(denom) > 1e-12) & (s >= -1e-9) & (s <= 1 + 1e-9) & (t > 0)
    radius = np.where(valid, t, 0.0).max(1)
    return np.maximum(radius, 1.0)


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def _wrap(angle: np.ndarray) -> np.ndarray:
    return np.mod(angle + np.pi, 2 * np.pi) - np.pi
