"""Rendering a textured triangle mesh by per-triangle affine warps in depth order, and landmark self-occlusion.

Each triangle's pixels take the photograph through the affine map that carries the triangle's target
corners onto its texture corners. Triangles are painted far to near into an owner map (one
``cv2.fillConvexPoly`` each, the painter's algorithm); the owner map then selects, per pixel, its
triangle's affine, and one ``cv2.remap`` samples the photograph. Neighbouring triangles share corners,
so their affines agree along shared edges and the warp is continuous: no seams, one resampling.
Pixels no triangle covers show the photograph moved by the output's ``pan`` (the identity map when
there is none); samples that fall outside the photograph are mirrored back into it.
"""
from __future__ import annotations

import cv2
import numpy as np

SUBPIXEL_BITS = 4
"""``cv2.fillConvexPoly`` fixed-point precision for triangle corners (1/16 pixel)."""


def render_triangles(image: np.ndarray, texture: np.ndarray, target: np.ndarray, triangles: np.ndarray,
                     order: np.ndarray, pan: np.ndarray | tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``image`` by the mesh: ``(rendered image, owner map)``.

    ``texture`` and ``target`` ``(V, 2)`` are each vertex's pixel position in ``image`` and in the
    output (same size); ``triangles`` ``(T, 3)`` vertex indices; ``order`` the triangle indices to
    paint, far to near (later ones cover earlier ones; triangles left out are not drawn). Output
    pixel ``q`` that no triangle covers shows ``image`` at ``q + pan``. The owner map ``(H, W)``
    int32 holds the triangle that owns each pixel, -1 where none does.
    """
    height, width = image.shape[:2]
    owner = np.full((height, width), -1, np.int32)
    affine, drawable = _target_to_texture(np.asarray(texture, np.float64), np.asarray(target, np.float64),
                                          triangles)
    corners = np.rint(np.asarray(target, np.float64)[triangles] * (1 << SUBPIXEL_BITS)).astype(np.int32)
    for t in np.asarray(order, dtype=np.int64):
        if drawable[t]:
            cv2.fillConvexPoly(owner, corners[t], int(t), lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)
    map_x, map_y = _maps(owner, affine, np.asarray(pan, np.float64))
    rendered = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return rendered, owner


def _target_to_texture(texture: np.ndarray, target: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-triangle 2×3 affines from output pixels to texture pixels, and which triangles have area to draw.

    Written out (the map of the target edge vectors onto the texture edge vectors) rather than as
    batched 3×3 solves, which cost ten times more for the few hundred triangles of a head.
    """
    d0, d1, d2 = (target[triangles[:, k]] for k in range(3))
    s0, s1, s2 = (texture[triangles[:, k]] for k in range(3))
    e1, e2 = d1 - d0, d2 - d0
    det = _cross(e1, e2)
    drawable = np.abs(det) > 1e-6
    inv_det = np.where(drawable, 1.0 / np.where(drawable, det, 1.0), 0.0)
    # Inverse of the target edge matrix [e1 e2] (columns), then linear = [f1 f2] @ inverse.
    rows = [np.stack([e2[:, 1], -e2[:, 0]], -1), np.stack([-e1[:, 1], e1[:, 0]], -1)]
    inverse = np.stack(rows, 1) * inv_det[:, None, None]
    f = np.stack([s1 - s0, s2 - s0], -1)                    # (T, 2, 2): columns are the texture edges
    linear = f @ inverse
    offset = s0 - np.einsum("tij,tj->ti", linear, d0)
    return np.concatenate([linear, offset[:, :, None]], -1).astype(np.float32), drawable


def _maps(owner: np.ndarray, affine: np.ndarray, pan: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps: each owned pixel through its triangle's affine, the rest moved by ``pan``."""
    height, width = owner.shape
    xs = np.arange(width, dtype=np.float32)[None]
    ys = np.arange(height, dtype=np.float32)[:, None]
    shift = np.zeros((1, 2, 3), np.float32)
    shift[0, 0, 0] = shift[0, 1, 1] = 1.0
    shift[0, :, 2] = pan
    table = np.concatenate([shift, affine]).reshape(-1, 6)  # owner -1 → row 0, the shift
    c = table[owner + 1]                                    # (H, W, 6)
    map_x = c[..., 0] * xs + c[..., 1] * ys + c[..., 2]
    map_y = c[..., 3] * xs + c[..., 4] * ys + c[..., 5]
    return map_x, map_y


def facing(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Which triangles are counter-clockwise in the image (x right, y down) — face the camera for a mesh
    oriented counter-clockwise on its outside."""
    a, b, c = (np.asarray(points, np.float64)[triangles[:, k], :2] for k in range(3))
    return _cross(b - a, c - a) > 0


def depth_order(points: np.ndarray, triangles: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Indices of the ``keep`` triangles sorted far to near by their corners' mean depth (z towards the viewer)."""
    depth = np.asarray(points, np.float64)[triangles, 2].mean(1)
    chosen = np.flatnonzero(keep)
    return chosen[np.argsort(depth[chosen], kind="stable")]


def occluded_vertices(points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray, front: np.ndarray,
                      tolerance: float, occluders: np.ndarray | None = None,
                      beyond_silhouette_deg: float = 10.0) -> np.ndarray:
    """Which of the mesh ``vertices`` (indices) are hidden from the camera by the mesh itself.

    A vertex is hidden when a camera-facing triangle among ``occluders`` (all triangles when None)
    that does not touch it covers it in the image and lies more than ``tolerance`` (pixels of depth)
    in front of it there — a z-buffer test at the vertex, independent of the painting order — or when
    the surface around it faces away from the camera by more than ``beyond_silhouette_deg`` (its
    area-weighted normal; a vertex on the silhouette, as 300W's contour points are, stays visible).
    """
    pts = np.asarray(points, np.float64)
    covering = front if occluders is None else front & occluders
    tri = triangles[covering]
    a, b, c = pts[tri[:, 0]], pts[tri[:, 1]], pts[tri[:, 2]]
    area = _cross(b[:, :2] - a[:, :2], c[:, :2] - a[:, :2])
    usable = np.abs(area) > 1e-9
    tri, a, b, c, area = tri[usable], a[usable], b[usable], c[usable], area[usable]
    vertices = np.asarray(vertices)
    p = pts[vertices][:, None]                              # (N, 1, 3) against (T, 3) corners
    w_a = _cross(b[:, :2] - p[..., :2], c[:, :2] - p[..., :2]) / area
    w_b = _cross(c[:, :2] - p[..., :2], a[:, :2] - p[..., :2]) / area
    w_c = 1.0 - w_a - w_b
    touching = (tri[None] == vertices[:, None, None]).any(-1)
    inside = (w_a > 1e-6) & (w_b > 1e-6) & (w_c > 1e-6) & ~touching
    depth = w_a * a[:, 2] + w_b * b[:, 2] + w_c * c[:, 2]
    hidden = (inside & (depth > p[..., 2] + tolerance)).any(1)
    normals = vertex_normals(pts, triangles)[vertices]
    facing_away = normals[:, 2] < -np.sin(np.radians(beyond_silhouette_deg))
    return hidden | facing_away


def vertex_normals(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unit area-weighted vertex normals ``(V, 3)``; z > 0 towards the camera for a mesh whose camera-facing
    triangles are counter-clockwise in the image (zeros for vertices in no triangle)."""
    pts = np.asarray(points, np.float64)
    face = np.cross(pts[triangles[:, 1]] - pts[triangles[:, 0]], pts[triangles[:, 2]] - pts[triangles[:, 0]])
    normals = np.zeros_like(pts)
    for k in range(3):
        np.add.at(normals, triangles[:, k], face)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]
