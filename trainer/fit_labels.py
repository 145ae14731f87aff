"""Pose labels of 300W photographs by the 3D fit, in ``Pose_Para``'s convention like the renders and AFLW2000.

PnP with the mean face (``app.core.landmark_pose``) labelled these faces until now; it sits 1.89° from
``Pose_Para`` on AFLW2000's faces where the 3D fit (``trainer.profiling.dense_fit.fit_from_angles``, started
from the PnP pose, shape and expression fitted too) sits 0.58°. The fit runs once per face, from the
annotation alone, and is cached in the run folder; training reads the cache, so data-loading workers never
refit. A fitted face becomes a sample *with* a pose, so ``trainer.augment`` turns its angles through
``app.core.pose.transform_angles`` for each crop's in-plane rotation and mirror, and takes the crop's
translation from PnP, as for AFLW2000 samples.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from app.core.landmark_pose import pose_from_landmarks
from trainer.datasets.dataset import FaceDataset
from trainer.datasets.sample import FaceSample
from trainer.datasets.w300 import W300Dataset

log = logging.getLogger(__name__)
CACHE_FILE = "pose_labels_fit.npz"
LABELS = ("fit", "pnp")


def face_key(dataset: FaceDataset, index: int) -> str:
    """``FOLDER/NAME``: the dataset folder's name and the face's, as ``trainer.profile`` names a render's source."""
    return f"{Path(dataset.root).name}/{dataset.names[index]}"


def fit_pose_degrees(landmarks: np.ndarray, mean_face: np.ndarray, model: object) -> np.ndarray:
    """(yaw, pitch, roll) degrees of the 3D fit of 68 annotated landmarks, started from their PnP pose."""
    from trainer.profiling.dense_fit import fit_from_angles

    start = pose_from_landmarks(np.asarray(landmarks, np.float64), np.ones(len(landmarks), bool), mean_face)
    if start is None:
        raise ValueError(f"the fit needs 68 landmarks, got {len(landmarks)}")
    return np.degrees(fit_from_angles(landmarks, model, start[:3]).angles)


def fitted_angles(items: list[tuple[FaceDataset, int]], cache: Path, mean_face: np.ndarray) -> dict[str, np.ndarray]:
    """Fit angles (degrees) of the 300W faces among ``items``, read from ``cache`` and completed there."""
    cache = Path(cache)
    angles: dict[str, np.ndarray] = {}
    if cache.exists():
        with np.load(cache) as f:
            angles = dict(zip(f["keys"].tolist(), f["angles"]))
    todo = [(ds, i) for ds, i in items if isinstance(ds, W300Dataset) and face_key(ds, i) not in angles]
    if todo:
        from trainer.profiling.face3d import Face3D

        model = Face3D()
        for ds, i in tqdm(todo, desc="3D fit of pose labels", unit="face", leave=False):
            try:
                angles[face_key(ds, i)] = fit_pose_degrees(ds.landmarks(i), mean_face, model)
            except ValueError as error:
                log.warning("%s keeps its PnP label: %s", face_key(ds, i), error)
        keys = sorted(angles)
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, keys=np.array(keys), angles=np.array([angles[k] for k in keys]).reshape(-1, 3))
        tmp.replace(cache)
        log.info("fitted the pose labels of %d faces into %s", len(todo), cache)
    return angles


class FitPoseDataset(FaceDataset):
    """``base`` with each face's ``pose`` set to its fitted angles (faces without a fit keep ``pose=None``)."""

    def __init__(self, base: FaceDataset, angles: dict[str, np.ndarray]) -> None:
        super().__init__(base.root, base.names)
        self.kind, self.base = base.kind, base
        self.angles = {i: angles[face_key(base, i)] for i in range(len(base)) if face_key(base, i) in angles}

    def _load(self, index: int) -> FaceSample:
        sample = self.base[index]
        pose = self.angles.get(index)
        return sample if pose is None else dataclasses.replace(sample, pose=np.asarray(pose, np.float64))


def label_items(items: list[tuple[FaceDataset, int]], labels: str, cache: Path,
                mean_face: np.ndarray) -> list[tuple[FaceDataset, int]]:
    """``items`` with their 300W faces labelled by ``labels``: ``fit`` puts them in a ``FitPoseDataset`` (one
    per dataset; same names and order), ``pnp`` leaves them to the per-crop PnP of ``trainer.augment``."""
    if labels not in LABELS:
        raise ValueError(f"pose labels must be one of {', '.join(LABELS)}, got {labels!r}")
    if labels == "pnp" or not any(isinstance(ds, W300Dataset) for ds, _ in items):
        return items
    angles = fitted_angles(items, cache, mean_face)
    wrapped: dict[int, FaceDataset] = {}
    for ds, _ in items:
        if isinstance(ds, W300Dataset) and id(ds) not in wrapped:
            wrapped[id(ds)] = FitPoseDataset(ds, angles)
    return [(wrapped.get(id(ds), ds), i) for ds, i in items]
