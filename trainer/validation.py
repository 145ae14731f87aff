"""What validation holds and reports: the split's validation faces, the renders of those same faces, and
the pose MAE of ``fc_pose`` on each (by |yaw| band for the renders), logged every epoch.

Renders name their source (``trainer.profile`` writes ``<source name>_<k>``), so a render of a validation
face is held out of training and validates instead: checkpoints are chosen on data no step has seen.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from trainer.evaluate import YAW_BANDS, band_name
from trainer.metrics import pose_mae

log = logging.getLogger(__name__)


def render_source(name: str) -> str:
    """The source face's file stem of a render named ``…/<source>_<k>``."""
    return Path(name).name.rsplit("_", 1)[0]


def split_synthetic(synthetic: list, val_items: list) -> tuple[list, list]:
    """``synthetic`` items as (rendered from a training face, rendered from a validation face); sources match
    on the file stem."""
    held = {Path(ds.names[i]).name for ds, i in val_items}
    train, val = [], []
    for ds, i in synthetic:
        (val if render_source(ds.names[i]) in held else train).append((ds, i))
    if val:
        log.info("%d synthetic faces rendered from validation faces validate instead of training", len(val))
    return train, val


def pose_report(pred_deg: np.ndarray, true_deg: np.ndarray, has_pose: np.ndarray, n_faces: int) -> dict[str, float]:
    """Mean pose MAE (degrees) over the rows with a pose label: of the first ``n_faces`` rows (validation
    faces) and of the rest (their renders), the renders also per |yaw| band of the label; NaN where empty."""
    pred, true = np.asarray(pred_deg, np.float64).reshape(-1, 3), np.asarray(true_deg, np.float64).reshape(-1, 3)
    keep = np.asarray(has_pose, bool)
    faces = keep[:n_faces]
    report = {"mae": pose_mae(pred[:n_faces][faces], true[:n_faces][faces])["mean"] if faces.any() else float("nan")}
    renders_pred, renders_true = pred[n_faces:][keep[n_faces:]], true[n_faces:][keep[n_faces:]]
    report["renders_mae"] = pose_mae(renders_pred, renders_true)["mean"] if len(renders_true) else float("nan")
    yaw = np.abs(renders_true[:, 0])
    for k, (low, high) in enumerate(YAW_BANDS):
        rows = (yaw >= low) & ((yaw < high) | (k == len(YAW_BANDS) - 1))
        report[f"renders_mae_{band_name(low, high)}"] = (pose_mae(renders_pred[rows], renders_true[rows])["mean"]
                                                         if rows.any() else float("nan"))
    return report
