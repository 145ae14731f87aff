"""Pose labels from landmarks: weak-perspective PnP of a face's 68 landmarks with the model's mean face.

The fit itself is ``app.core.landmark_pose`` (full mode reports the same fit of its own landmarks);
this module checks it against datasets that carry their own pose.
"""
from __future__ import annotations

import numpy as np

from app.core.landmark_pose import pose_from_landmarks


def label_errors(spec: str) -> dict[str, float | int]:
    """MAE (degrees) of the PnP labels against a dataset's own pose, over faces that have both."""
    from trainer.datasets.registry import open_dataset
    from trainer.mean_face import build_mean_face
    from trainer.metrics import pose_mae

    mean_face = build_mean_face()
    fitted, truth = [], []
    for sample in open_dataset(spec):
        if sample.pose is None or not sample.mask.any():
            continue
        pose = pose_from_landmarks(sample.landmarks, sample.mask, mean_face)
        if pose is not None:
            fitted.append(np.degrees(pose[:3]))
            truth.append(sample.pose)
    return {"faces": len(fitted), **pose_mae(np.array(fitted), np.array(truth))}


def label_agreement(spec: str, limit: int | None = None) -> dict[str, object]:
    """Pairwise MAE (degrees) of pose labels over a dataset's 68-landmark faces (at most ``limit``): the
    dataset's own (``Pose_Para`` for AFLW2000-3D; pairs with it only over faces that have one), the PnP
    label, the dense 3D fit (3DDFA_V2's regressor from the landmark box, refined to the landmarks:
    ``trainer.profiling.dense_fit``), the regressor alone, and the refinement started from the PnP label
    instead of the regressor (``fit_from_pnp``, the regressor-free fit).

    Refuses ``helen_test``: the regressor was trained on renders of it (``fit_from_pnp`` alone would not
    need it, but this comparison runs both).
    """
    from trainer.datasets.registry import open_dataset
    from trainer.mean_face import build_mean_face
    from trainer.metrics import pose_mae
    from trainer.profiling.dense_fit import fit_dense, fit_from_angles
    from trainer.profiling.face3d import Face3D

    if "helen_test" in spec:
        raise ValueError("the dense fit's regressor was trained on renders of helen_test")
    mean_face, model = build_mean_face(), Face3D()
    names = ("dataset", "pnp", "fit", "regressor", "fit_from_pnp")
    labels: dict[str, list[np.ndarray]] = {name: [] for name in names}
    dataset = open_dataset(spec)
    for index in range(len(dataset) if limit is None else min(limit, len(dataset))):
        sample = dataset[index]
        if len(sample.landmarks) != 68 or not sample.mask.all():
            continue
        pnp = pose_from_landmarks(sample.landmarks, sample.mask, mean_face)
        if pnp is None:
            continue
        box = np.r_[sample.landmarks.min(0), sample.landmarks.max(0)]
        regressed = model.regress(np.ascontiguousarray(sample.image[..., ::-1]), box)
        labels["dataset"].append(np.full(3, np.nan) if sample.pose is None else np.asarray(sample.pose, np.float64))
        labels["pnp"].append(np.degrees(pnp[:3]))
        labels["fit"].append(np.degrees(fit_dense(sample.image, sample.landmarks, model).angles))
        labels["regressor"].append(np.degrees(regressed.angles))
        labels["fit_from_pnp"].append(np.degrees(fit_from_angles(sample.landmarks, model, pnp[:3]).angles))
    arrays = {name: np.array(rows).reshape(-1, 3) for name, rows in labels.items()}
    posed = np.isfinite(arrays["dataset"]).all(1)
    result: dict[str, object] = {"faces": len(posed), "faces_with_pose": int(posed.sum())}
    pairs = [("pnp", "fit"), ("fit_from_pnp", "fit"), ("regressor", "fit")]
    if posed.any():
        pairs += [("pnp", "dataset"), ("fit", "dataset"), ("regressor", "dataset"), ("fit_from_pnp", "dataset")]
    for a, b in pairs:
        rows = posed if "dataset" in (a, b) else np.ones(len(posed), bool)
        result[f"{a}_vs_{b}"] = pose_mae(arrays[a][rows], arrays[b][rows])
    return result
