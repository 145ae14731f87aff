"""AFLW2000-3D and 300W-LP folders: ``NAME.jpg`` with its 3DDFA fitting ``NAME.mat``, optional ``labels.csv``.

Pose. ``Pose_Para = [pitch, yaw, roll, tx, ty, tz, scale]`` in radians is the project's angle
convention (``app.core.pose``), so the sample's pose is ``degrees(Pose_Para[[1, 0, 2]])``.

Landmarks. ``pt3d_68`` (AFLW2000-3D) or, failing that, a 68-column ``pt2d`` (300W-LP) are taken as
1-based MATLAB pixel coordinates and shifted by -1. Evidence: the labels come from Zhu et al.'s
MATLAB 3DDFA fitting, whose projection flips y as ``H + 1 - y`` (the 1-based flip; 3DDFA's Python
port keeps ``std_size + 1 - y``). PRNet's/face3d's Python re-projection uses ``h - 1 - y`` instead,
so the offset is an assumption worth one pixel, below the annotation noise; nothing in the files
fixes it.

Visibility. AFLW2000-3D and 300W-LP have no occlusion labels: annotated points are marked visible.
A ``.mat`` may add ``visibility_68`` (68 values, non-zero = visible), as the synthetic turned faces of
``python -m trainer profile`` do to carry self-occlusion; the sample's visibility is then that.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import scipy.io

from app.core.crop import landmark_box
from trainer.datasets.dataset import FaceDataset, no_landmarks, read_image
from trainer.datasets.sample import FaceSample

log = logging.getLogger(__name__)

LANDMARKS = 68
LABELS_FILE = "labels.csv"
LABEL_COLUMNS = ("image", "yaw_deg", "pitch_deg", "roll_deg")


def pose_from_pose_para(pose_para: np.ndarray) -> np.ndarray:
    """``(yaw, pitch, roll)`` degrees float32 from a 3DDFA ``Pose_Para`` (``[pitch, yaw, roll, ...]`` radians)."""
    p = np.asarray(pose_para, dtype=np.float64).ravel()
    return np.degrees(p[[1, 0, 2]]).astype(np.float32)


def read_labels(path: Path) -> dict[str, np.ndarray]:
    """``labels.csv`` rows as ``{image stem: (yaw, pitch, roll) degrees}``."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in LABEL_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing columns {', '.join(missing)}")
        try:
            return {
                row["image"]: np.array([row["yaw_deg"], row["pitch_deg"], row["roll_deg"]], dtype=np.float32)
                for row in reader
            }
        except ValueError as error:
            raise ValueError(f"{path}: non-numeric angle at line {reader.line_num} ({error})") from None


def read_fitting(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(pose degrees, 0-based (68, 2) landmarks or None, (68,) bool visibility or None)`` from one
    AFLW2000-3D / 300W-LP ``.mat`` (visibility only where the file has ``visibility_68``)."""
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as error:  # scipy raises several types for damaged or foreign files
        raise ValueError(f"{path}: not a readable MATLAB file ({error})") from None
    pose_para = mat.get("Pose_Para")
    if pose_para is None or np.size(pose_para) < 3:
        raise ValueError(f"{path}: no Pose_Para")
    points = None
    if np.shape(mat.get("pt3d_68")) == (3, LANDMARKS):
        points = mat["pt3d_68"][:2].T
    elif np.shape(mat.get("pt2d")) == (2, LANDMARKS):
        points = mat["pt2d"].T
    landmarks = None if points is None else (np.asarray(points, np.float64) - 1.0).astype(np.float32)
    visibility = None
    if "visibility_68" in mat:
        if np.size(mat["visibility_68"]) != LANDMARKS:
            raise ValueError(f"{path}: visibility_68 has {np.size(mat['visibility_68'])} values, expected {LANDMARKS}")
        visibility = np.asarray(mat["visibility_68"]).ravel() != 0
    return pose_from_pose_para(pose_para), landmarks, visibility


class Aflw2000Dataset(FaceDataset):
    """Every ``.jpg`` under ``root`` (recursively) that has a ``.mat`` beside it or a row in ``root/labels.csv``.

    The ``.mat`` gives pose and 68 landmarks; an image known only from ``labels.csv`` gets its pose
    from there and 68 unannotated landmarks (mask False) with no box.
    """

    kind = "aflw2000"

    def __init__(self, root: Path) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"aflw2000 folder {root} does not exist")
        labels_path = root / LABELS_FILE
        self._labels = read_labels(labels_path) if labels_path.is_file() else {}
        self._images: list[Path] = []
        self._mats: list[Path | None] = []
        for image in sorted(root.rglob("*.jpg")):
            mat = image.with_suffix(".mat")
            has_mat = mat.is_file()
            if has_mat or image.stem in self._labels:
                self._images.append(image)
                self._mats.append(mat if has_mat else None)
        if not self._images:
            raise FileNotFoundError(f"no .jpg with a .mat or a {LABELS_FILE} row under {root}")
        super().__init__(root, [p.relative_to(root).with_suffix("").as_posix() for p in self._images])
        log.info("aflw2000: %d faces under %s (%d with .mat)", len(self), root,
                 sum(m is not None for m in self._mats))

    def _load(self, index: int) -> FaceSample:
        mat = self._mats[index]
        landmarks = visibility = None
        if mat is not None:
            pose, landmarks, visibility = read_fitting(mat)
        else:
            pose = self._labels[self._images[index].stem]
        if landmarks is None:
            landmarks, mask, visibility = no_landmarks(LANDMARKS)
            box = None
        else:
            mask = np.ones(LANDMARKS, bool)
            visibility = mask.copy() if visibility is None else visibility
            box = landmark_box(landmarks).astype(np.float32)
        return FaceSample(
            image=read_image(self._images[index]),
            landmarks=landmarks,
            mask=mask,
            visibility=visibility,
            pose=pose,
            box=box,
            name=self.names[index],
        )
