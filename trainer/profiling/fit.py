"""Per-face 3D fit for profiling: the pose of a photographed face and a 3D shape that projects onto its landmarks.

The pose is the training labels' PnP (``app.core.landmark_pose.pose_from_landmarks``: weak perspective,
the model's mean face, inner points 17–67). The shape is the mean face moved, point by point, the
least distance that makes it project onto the annotated landmarks: each point keeps the mean face's
depth along the camera's viewing direction and takes its image-plane position from the annotation.
That is the minimiser of ``‖π(p, s) − x‖² + λ ‖s − m‖²`` per point with a small ``λ``, which is what
"depths from the mean face, regularised" means here; the jaw points (which 300W places on the
visible contour) are fitted the same way, so the mesh's outline follows the photographed outline.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.core.landmark_pose import pose_from_landmarks
from app.core.pose import rotation_matrix

REGULARISATION = 1e-3
"""``λ`` relative to the image-plane term: the fitted points miss the annotation by this fraction of
their distance from the posed mean face (0.1%, hundredths of a pixel)."""


@dataclass(frozen=True)
class FaceFit:
    """A face's pose and 3D shape in its photograph.

    ``pose`` is ``(yaw, pitch, roll, tx, ty, tz)``: radians, then ``app.core.pose.project``'s
    translation in image pixels (``tz`` = mean-face units per pixel). ``shape`` ``(68, 3)`` is the
    fitted face in the mean face's frame. ``warp`` ``(3, 4)`` is an affine map of the mean face's
    frame taking the mean face close to ``shape`` (``proportions_warp``); it carries points that are
    not landmarks (forehead, ears, neck) along with the face's proportions.
    """

    pose: np.ndarray
    shape: np.ndarray
    warp: np.ndarray

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """Model-frame points ``(N, 3)`` posed into the photograph: x, y pixels, z pixels towards the viewer."""
        return pose_points(self.pose, points)

    def deform(self, points: np.ndarray) -> np.ndarray:
        """Model-frame points of the mean face's surroundings moved by ``warp`` to this face's proportions."""
        pts = np.asarray(points, dtype=np.float64)
        return pts @ self.warp[:, :3].T + self.warp[:, 3]


def pose_points(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Model-frame points posed by ``pose`` (translation in pixels): image x, y and depth z, all in pixels.

    The x, y columns equal ``app.core.pose.project(pose, points)``; z is the depth along the viewing
    direction (towards the viewer) relative to the model origin's.
    """
    rot = rotation_matrix(np.asarray(pose, dtype=np.float64))
    posed = np.asarray(points, dtype=np.float64) @ rot.T / pose[5]
    posed[:, :2] += pose[3:5]
    return posed


def fit_face(landmarks: np.ndarray, mean_face: np.ndarray, regularisation: float = REGULARISATION) -> FaceFit:
    """Fit pose and shape to 68 annotated pixel ``landmarks`` (0-based); ValueError if PnP is impossible."""
    x = np.asarray(landmarks, dtype=np.float64)
    mean = np.asarray(mean_face, dtype=np.float64)
    pose = pose_from_landmarks(x, np.ones(len(x), bool), mean)
    if pose is None:
        raise ValueError(f"fit_face needs {len(mean)} landmarks, got {len(x)}")
    camera = rotation_matrix(pose)[:2] / pose[5]
    lam = regularisation / pose[5] ** 2
    normal = camera.T @ camera + lam * np.eye(3)
    rhs = (x - pose[3:5]) @ camera + lam * mean
    shape = np.linalg.solve(normal, rhs.T).T
    return FaceFit(pose=pose, shape=shape, warp=proportions_warp(mean, shape))


def proportions_warp(mean_face: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """``(3, 4)`` affine map of the model frame: the least-squares 2D affine of (x, y) taking the mean
    face onto ``shape``, with depth scaled by that affine's mean scale.

    Depth is kept out of the fit on purpose: the 300W points differ from the Basel points in a way
    that a full 3D affine would explain by mixing depth into height (about 0.15 y per unit of z),
    which is harmless on the face but shears the back of the head, three units deep, out of place.
    """
    design = np.hstack([mean_face[:, :2], np.ones((len(mean_face), 1))])
    planar, *_ = np.linalg.lstsq(design, shape[:, :2], rcond=None)      # (3, 2)
    depth_scale = float(np.sqrt(abs(np.linalg.det(planar[:2]))))
    warp = np.zeros((3, 4))
    warp[:2, :2] = planar[:2].T
    warp[:2, 3] = planar[2]
    warp[2, 2] = depth_scale
    warp[2, 3] = float(np.mean(shape[:, 2] - depth_scale * mean_face[:, 2]))
    return warp
