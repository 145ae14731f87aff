"""Turning a fitted face to a new pose: the rendered photograph and its labels (landmarks, self-occlusion, pose).

The head turns rigidly about its centre of rotation (``mesh.HEAD_CENTRE``) by the rotation that takes
the fitted pose's rotation to the target's, ``R_turn = R_target · R_fittedᵀ`` (image frame), so the
composed pose has exactly the target angles; its translation is where the turned model origin
projects, and its scale is unchanged (a weak-perspective camera does not see the head move in depth).

The output follows the face: it is panned so that the turned landmarks' box keeps the photographed
box's centre (a head turning about its neck swings the face sideways, up to a face width at 90°,
which would otherwise leave the image). The pan moves everything, background included, like a camera
following the face; the strip it uncovers at one edge is the photograph mirrored.

Landmark labels are the turned fitted 3D landmarks projected: for the jaw (0–16) these are fixed 3D
points of the face (the AFLW2000-3D ``pt3d_68`` convention), not the 300W contour convention of the
photographs; see ``trainer.profile`` for why. Visibility is the face mesh's own z-buffer at each
landmark (``render.occluded_vertices``): a landmark is hidden by the face in front of it, or when all
the surface around it faces away. The rest of the head (hair, ears, neck) is only a rough shape around
the face, slightly in front of the 300W jaw points at the ears, so it is not let hide landmarks; if it
were, jaw points 0 and 16, which 300W puts on the visible outline, would be hidden in most untouched
photographs.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from app.core.pose import rotation_matrix
from trainer.profiling.fit import FaceFit
from trainer.profiling.mesh import LANDMARKS, HeadMesh, background_mesh
from trainer.profiling.render import depth_order, facing, occluded_vertices, render_triangles

NECK_TWIST = (1.3, 3.0)
"""Heights (mean-face units, y down) between which the neck's share of the turn falls from all to none:
the head turns on the neck, the shoulders and clothes below stay where they are."""
OCCLUSION_TOLERANCE = 0.03
"""Depth margin, in mean-face units (about 2 mm), by which a surface must lie in front of a landmark to hide it."""


@dataclass(frozen=True)
class TurnedFace:
    """A face rendered at a new pose.

    ``image`` RGB uint8 (the photograph's size); ``landmarks`` ``(68, 2)`` 0-based pixels;
    ``points`` ``(68, 3)`` the same with depth (pixels, towards the viewer); ``vertices`` ``(V, 3)``
    every head-mesh vertex turned (the landmarks first); ``visibility`` ``(68,)``
    True where no part of the head hides the landmark; ``pose`` ``(yaw, pitch, roll, tx, ty, tz)`` in
    radians and pixels as ``FaceFit.pose``; ``pan`` ``(2,)`` where the output's origin lies in the
    photograph's pixels (output = photograph frame minus ``pan``); ``owner`` the renderer's owner
    map, ``head_triangles`` the offset of the head's triangles in it (smaller indices are
    background), ``front`` which head triangles face the camera.
    """

    image: np.ndarray
    landmarks: np.ndarray
    points: np.ndarray
    vertices: np.ndarray
    visibility: np.ndarray
    pose: np.ndarray
    pan: np.ndarray
    owner: np.ndarray
    head_triangles: int
    front: np.ndarray


def turn_rotation(source_angles: np.ndarray, target_angles: np.ndarray) -> np.ndarray:
    """The image-frame rotation that takes a head posed at ``source_angles`` to ``target_angles`` (radians)."""
    target = rotation_matrix(np.asarray(target_angles, np.float64))
    return target @ rotation_matrix(np.asarray(source_angles, np.float64)).T


def turn_points(points: np.ndarray, rotation: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Image-frame points ``(N, 3)`` turned by ``rotation`` about ``centre`` ``(3,)``."""
    c = np.asarray(centre, np.float64)
    return (np.asarray(points, np.float64) - c) @ rotation.T + c


def twist_shares(heights: np.ndarray) -> np.ndarray:
    """The share of the head's turn that vertices at model heights ``heights`` follow (1 down to the
    jaw, falling linearly to 0 at the base of the neck)."""
    top, base = NECK_TWIST
    return np.clip((base - np.asarray(heights, np.float64)) / (base - top), 0.0, 1.0)


def twist_points(points: np.ndarray, rotation: np.ndarray, centre: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """``turn_points`` with each point turned by its ``shares`` fraction of ``rotation``'s angle (same axis)."""
    axis_angle, _ = cv2.Rodrigues(np.asarray(rotation, np.float64))
    turned = np.empty((len(points), 3))
    for share in np.unique(shares):
        rows = shares == share
        partial, _ = cv2.Rodrigues(axis_angle * float(share))
        turned[rows] = turn_points(np.asarray(points)[rows], partial, centre)
    return turned


def turn_face(image: np.ndarray, mesh: HeadMesh, fit: FaceFit, target_angles: np.ndarray) -> TurnedFace:
    """Render ``image``'s fitted head turned to ``target_angles`` (yaw, pitch, roll radians) with its labels."""
    rotation = turn_rotation(fit.pose[:3], target_angles)
    shares = twist_shares(mesh.topology.param[:, 1])
    shares[:LANDMARKS] = 1.0
    turned = twist_points(mesh.points, rotation, mesh.centre, shares)
    origin = turn_points(np.array([[fit.pose[3], fit.pose[4], 0.0]]), rotation, mesh.centre)[0]
    pan = _box_centre(turned[:LANDMARKS]) - _box_centre(mesh.points[:LANDMARKS])
    rendered, owner, offset, front = render_head(image, mesh.texture, mesh.points, turned, mesh.centre,
                                                 mesh.topology.triangles, pan)
    triangles = mesh.topology.triangles
    hidden = occluded_vertices(turned, np.arange(LANDMARKS), triangles, front, OCCLUSION_TOLERANCE / fit.pose[5],
                               occluders=(triangles < LANDMARKS).all(1))
    turned[:, :2] -= pan
    pose = np.concatenate([np.asarray(target_angles, np.float64), origin[:2] - pan, [fit.pose[5]]])
    return TurnedFace(image=rendered, landmarks=turned[:LANDMARKS, :2].copy(), points=turned[:LANDMARKS].copy(),
                      vertices=turned, visibility=~hidden, pose=pose, pan=pan, owner=owner,
                      head_triangles=offset, front=front)


def _box_centre(points: np.ndarray) -> np.ndarray:
    return (points[:, :2].min(0) + points[:, :2].max(0)) / 2


def render_head(image: np.ndarray, texture: np.ndarray, source: np.ndarray, target: np.ndarray, centre: np.ndarray,
                triangles: np.ndarray, pan: np.ndarray | tuple[float, float] = (0.0, 0.0)
                ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Draw a head mesh moved from ``source`` to ``target`` over its bent background, the output panned by ``pan``.

    ``source``, ``target`` ``(V, 3)``, the head ``centre`` and ``texture`` ``(V, 2)`` (where each vertex
    samples ``image``) are in ``image``'s pixel frame (depth towards the viewer);
    output pixel ``q`` shows that frame's point ``q + pan``. Returns the rendered image, the owner
    map, the index of the first head triangle in it and which head triangles face the camera.
    Background triangles are drawn first (the inner fan, then the band out to the fixed anchors),
    then the head triangles that face away (sliver fill), then the camera-facing ones far to near.
    """
    pan = np.asarray(pan, np.float64)
    front = facing(target, triangles)
    # The background starts where the head's texture ends: the photographed outline, or farther out
    # where the turned head's visible edge samples the band outside it (the hidden half of the head).
    seen = np.unique(triangles[front])
    outline = np.vstack([source[:, :2], texture[seen]])
    background = background_mesh(np.asarray(centre)[:2], outline, target[:, :2])
    # Triangles facing away go first, far to near, only to fill slivers where the rough head surface
    # folds at the face's outline; the camera-facing ones then cover them, far to near.
    head_order = np.concatenate([depth_order(target, triangles, ~front), depth_order(target, triangles, front)])
    offset = len(background.triangles)
    base = len(background.texture)
    rendered, owner = render_triangles(
        image,
        np.vstack([background.texture, texture]),
        np.vstack([background.target, target[:, :2]]) - pan,
        np.vstack([background.triangles, triangles + base]),
        np.concatenate([np.arange(offset), head_order + offset]),
        pan,
    )
    return rendered, owner, offset, front
