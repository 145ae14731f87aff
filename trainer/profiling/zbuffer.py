"""A z-buffer rasteriser for dense triangle meshes in numpy: which triangle, and where in it, each pixel sees.

Built for the 105,840 triangles of the dense face at crop resolution, where most triangles cover less
than a pixel: every triangle's bounding box of pixel centres is enumerated at once (no Python loop over
triangles), each candidate pixel keeps its barycentric weights when it lies inside, and the nearest
candidate per pixel wins (one sort). Orthographic depth is affine in the image, so the interpolated
depth is exact. No back-face culling: the dense mesh's winding is not consistent (about 3% of its
triangles are flipped), and the depth test alone is right either way.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EDGE_EPSILON = 1e-7
"""Barycentric slack so that pixel centres on a shared edge belong to one triangle or both, never neither."""


@dataclass(frozen=True)
class Raster:
    """Per-pixel result ``(H, W)``: ``triangle`` the nearest triangle's index (-1 where none), ``weights``
    ``(H, W, 3)`` its barycentric weights there, ``depth`` its depth (towards the viewer; -inf where none)."""

    triangle: np.ndarray
    weights: np.ndarray
    depth: np.ndarray

    @property
    def covered(self) -> np.ndarray:
        """Pixels some triangle covers."""
        return self.triangle >= 0

    def interpolate(self, values: np.ndarray, triangles: np.ndarray) -> np.ndarray:
        """Per-vertex ``values`` ``(V, C)`` interpolated at every covered pixel: ``(H, W, C)``, zeros elsewhere."""
        out = np.zeros(self.triangle.shape + (values.shape[1],), np.float64)
        rows, cols = np.nonzero(self.covered)
        corners = triangles[self.triangle[rows, cols]]
        w = self.weights[rows, cols]
        out[rows, cols] = np.einsum("nk,nkc->nc", w, values[corners])
        return out


def rasterise(points: np.ndarray, triangles: np.ndarray, shape: tuple[int, int]) -> Raster:
    """Z-buffer ``triangles`` of ``points`` ``(V, 3)`` (x, y pixels with centres at integers, z towards the
    viewer) into an image of ``shape`` ``(H, W)``."""
    height, width = shape
    pts = np.asarray(points, np.float64)
    tri = np.asarray(triangles, np.int64)
    a, b, c = pts[tri[:, 0]], pts[tri[:, 1]], pts[tri[:, 2]]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    corners_xy = np.stack([a[:, :2], b[:, :2], c[:, :2]], 1)
    low = np.ceil(corners_xy.min(1)).astype(np.int64)
    high = np.floor(corners_xy.max(1)).astype(np.int64)
    low = np.maximum(low, 0)
    high = np.minimum(high, [width - 1, height - 1])
    span = high - low + 1
    count = np.where((np.abs(area) > 1e-12) & (span > 0).all(1), span[:, 0] * span[:, 1], 0)
    keep = np.flatnonzero(count)
    triangle = np.full(shape, -1, np.int64)
    weights = np.zeros(shape + (3,), np.float64)
    depth = np.full(shape, -np.inf)
    if not len(keep):
        return Raster(triangle, weights, depth)
    count = count[keep]
    owner = np.repeat(keep, count)
    starts = np.cumsum(count) - count
    local = np.arange(int(count.sum())) - np.repeat(starts, count)
    nx = span[owner, 0]
    px = low[owner, 0] + local % nx
    py = low[owner, 1] + local // nx
    ax, ay, bx, by, cx, cy = a[owner, 0], a[owner, 1], b[owner, 0], b[owner, 1], c[owner, 0], c[owner, 1]
    inv = 1.0 / area[owner]
    w_a = ((bx - px) * (cy - py) - (by - py) * (cx - px)) * inv
    w_b = ((cx - px) * (ay - py) - (cy - py) * (ax - px)) * inv
    w_c = 1.0 - w_a - w_b
    inside = (w_a >= -EDGE_EPSILON) & (w_b >= -EDGE_EPSILON) & (w_c >= -EDGE_EPSILON)
    owner, px, py = owner[inside], px[inside], py[inside]
    w = np.stack([w_a[inside], w_b[inside], w_c[inside]], 1)
    z = (w * np.stack([a[owner, 2], b[owner, 2], c[owner, 2]], 1)).sum(1)
    pixel = py * width + px
    order = np.lexsort((-z, pixel))
    first = order[np.r_[True, pixel[order][1:] != pixel[order][:-1]]]
    flat = pixel[first]
    triangle.ravel()[flat] = owner[first]
    weights.reshape(-1, 3)[flat] = w[first]
    depth.ravel()[flat] = z[first]
    return Raster(triangle, weights, depth)


def visible_points(points: np.ndarray, raster: Raster, tolerance: float) -> np.ndarray:
    """Which ``points`` ``(N, 3)`` the z-buffer sees: inside the image and no surface more than ``tolerance``
    (depth units) in front of them at their pixel (sampled at the nearest pixel centre and its 4-neighbours,
    the least depth of which counts, so a point on a silhouette edge is not hidden by a neighbouring pixel)."""
    pts = np.asarray(points, np.float64)
    height, width = raster.depth.shape
    x = np.rint(pts[:, 0]).astype(np.int64)
    y = np.rint(pts[:, 1]).astype(np.int64)
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    front = np.full(len(pts), np.inf)
    for dx, dy in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
        xs, ys = np.clip(x + dx, 0, width - 1), np.clip(y + dy, 0, height - 1)
        front = np.minimum(front, raster.depth[ys, xs])
    return inside & (front <= pts[:, 2] + tolerance)
