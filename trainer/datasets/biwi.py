"""BIWI Kinect head pose frames: ``frame_XXXXX_rgb.png`` with ``frame_XXXXX_pose.txt`` or ``frame_XXXXX_pose.bin``.

BIWI's pose and ours. The database's annotation is the head's rigid motion in the Kinect depth
camera frame, ``X_cam = R X_head + T`` (mm). The ``.txt`` form stores ``R`` (three rows) then ``T``;
the ``.bin`` form stores ``T`` then Euler angles (pitch, yaw, roll) in degrees, which the code
released with the database turns back into ``R = Rx(pitch) @ Ry(yaw) @ Rz(roll)``
(``euler_to_rotation_matrix`` in its ``rigid_motion.hpp``; the frontal head there faces ``-z``).

The camera frame is OpenCV-like: x right, y down, z away from the camera. Our image-like frame
(``app.core.pose``) differs by the sign of z, so ``R_ours = Fz @ R @ Fz`` with ``Fz = diag(1, 1, -1)``,
which is ``Rx(-pitch) @ Ry(-yaw) @ Rz(roll)``; ``rotation_matrix(yaw', pitch', roll')`` expands to
``Rx(pitch') @ Ry(-yaw') @ Rz(roll')``, hence ``(yaw', pitch', roll') = (yaw, -pitch, roll)``.

What is certain: the ``.bin`` layout (six float32, read back from the files; the head centre lies
about 880 mm in front of the camera) and the Euler order of the released code. Derived under an
assumption: the sign flips, which rest on the camera frame being x right / y down. Measured on
``biwi_mini`` (``tests/test_readers.py`` pins all of it):

- the head centre, projected with a nominal Kinect focal length (525 px), falls within 12 px of the
  face MediaPipe finds (frame 166: 359, 260 vs 352, 270); a mirrored x or an upward y would miss by
  70 or 40 px, so the frame is x right / y down and the RGB frames are not mirrored;
- a MediaPipe face mesh rigidly fitted to the BFM mean face gives pitch +10° to +12° where BIWI
  says -9.5° to -10.3°, and yaw rising -4° → +4° where BIWI's rises -1.4° → +6.6°.

Roll stays within ±1.5° on those frames, so its sign rests on the derivation alone, and on
HopeNet's BIWI loader (natanielruiz/deep-head-pose, ``code/datasets.py``), which turns the ``.txt``
matrix into the same ``(yaw, -pitch, roll)`` for a network trained on 300W-LP ``Pose_Para``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from app.core.pose import matrix_to_angles
from trainer.datasets.dataset import FaceDataset, no_landmarks, read_image
from trainer.datasets.sample import FaceSample

log = logging.getLogger(__name__)

FRAME_SUFFIX = "_rgb.png"
POSE_SUFFIXES = ("_pose.txt", "_pose.bin")
CAMERA_TO_IMAGE_FRAME = np.diag([1.0, 1.0, -1.0])
"""BIWI's camera frame (x right, y down, z away) → our image-like frame (z towards the viewer)."""


def biwi_angles_to_pose(pitch: float, yaw: float, roll: float) -> tuple[float, float, float]:
    """Our ``(yaw, pitch, roll)`` for BIWI ``.bin`` angles (any unit, kept); see the module docstring."""
    return yaw, -pitch, roll


def biwi_matrix_to_pose(rotation: np.ndarray) -> np.ndarray:
    """Our ``(yaw, pitch, roll)`` degrees for a BIWI ``.txt`` rotation (camera frame, ``X_cam = R X_head + T``)."""
    rot = CAMERA_TO_IMAGE_FRAME @ np.asarray(rotation, dtype=np.float64) @ CAMERA_TO_IMAGE_FRAME
    return np.degrees(matrix_to_angles(rot))


def read_biwi_pose(path: Path) -> np.ndarray:
    """Our ``(yaw, pitch, roll)`` degrees float32 from a BIWI ``_pose.bin`` or ``_pose.txt`` file."""
    path = Path(path)
    if path.suffix == ".bin":
        values = np.fromfile(path, dtype="<f4")
        if values.size != 6:
            raise ValueError(f"{path}: expected six float32 (centre x, y, z, pitch, yaw, roll), got {values.size}")
        return np.asarray(biwi_angles_to_pose(*values[3:6].astype(np.float64)), dtype=np.float32)
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"{path}: non-numeric BIWI pose file") from None
    if values.size != 12:
        raise ValueError(f"{path}: expected a 3x3 rotation then a translation (12 numbers), got {values.size}")
    rotation = values[:9].reshape(3, 3)
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-3) or np.linalg.det(rotation) < 0:
        raise ValueError(f"{path}: the 3x3 block is not a rotation matrix")
    return biwi_matrix_to_pose(rotation).astype(np.float32)


class BiwiDataset(FaceDataset):
    """Every ``*_rgb.png`` under ``root`` (recursively) with a pose file beside it (``.txt`` preferred).

    No landmarks (``L = 0``) and no box: the evaluator runs the face detector, as the BIWI
    benchmarks do.
    """

    kind = "biwi"

    def __init__(self, root: Path) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"biwi folder {root} does not exist")
        self._frames: list[Path] = []
        self._poses: list[Path] = []
        skipped = 0
        for frame in sorted(root.rglob("*" + FRAME_SUFFIX)):
            stem = frame.name[: -len(FRAME_SUFFIX)]
            candidates = (frame.with_name(stem + suffix) for suffix in POSE_SUFFIXES)
            pose = next((p for p in candidates if p.is_file()), None)
            if pose is None:
                skipped += 1
                continue
            self._frames.append(frame)
            self._poses.append(pose)
        if not self._frames:
            raise FileNotFoundError(f"no *{FRAME_SUFFIX} frame with a pose file under {root}")
        if skipped:
            log.warning("biwi: %d frames under %s have no pose file and are left out", skipped, root)
        names = [f.relative_to(root).as_posix()[: -len(FRAME_SUFFIX)] for f in self._frames]
        super().__init__(root, names)
        log.info("biwi: %d frames under %s", len(self), root)

    def _load(self, index: int) -> FaceSample:
        landmarks, mask, visibility = no_landmarks()
        return FaceSample(
            image=read_image(self._frames[index]),
            landmarks=landmarks,
            mask=mask,
            visibility=visibility,
            pose=read_biwi_pose(self._poses[index]),
            box=None,
            name=self.names[index],
        )
