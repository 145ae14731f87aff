"""The paper's evaluation metrics: pose MAE (eq. 6), landmark NME (eq. 7), visibility recall at 80% precision."""
from __future__ import annotations

import numpy as np

from app.core.pose import wrap_degrees
from trainer.landmark_layouts import LandmarkLayout


def angle_errors(pred_deg: np.ndarray, true_deg: np.ndarray) -> np.ndarray:
    """Absolute angle differences in degrees, wrapped into [0, 180]."""
    return np.abs(wrap_degrees(np.asarray(pred_deg, dtype=np.float64) - np.asarray(true_deg, dtype=np.float64)))


def pose_mae(pred_deg: np.ndarray, true_deg: np.ndarray) -> dict[str, float]:
    """MAE of yaw, pitch, roll (columns in that order) and their mean."""
    errors = angle_errors(pred_deg, true_deg).reshape(-1, 3)
    per_angle = errors.mean(0) if len(errors) else np.full(3, np.nan)
    return {"yaw": float(per_angle[0]), "pitch": float(per_angle[1]), "roll": float(per_angle[2]),
            "mean": float(per_angle.mean())}


def normalisers(landmarks: np.ndarray, box: np.ndarray, layout: LandmarkLayout) -> dict[str, float]:
    """Per-face NME denominators: outer-eye-corner distance, pupil distance (eye-point means), box height."""
    pts = np.asarray(landmarks, dtype=np.float64)
    left, right = pts[list(layout.left_eye)].mean(0), pts[list(layout.right_eye)].mean(0)
    return {
        "inter_ocular": float(np.linalg.norm(pts[layout.outer_eyes[0]] - pts[layout.outer_eyes[1]])),
        "inter_pupil": float(np.linalg.norm(left - right)),
        "box_height": float(box[3] - box[1]),
    }


def face_nme(pred: np.ndarray, true: np.ndarray, mask: np.ndarray, norm: float) -> float:
    """Eq. 7 for one face: mask-weighted mean point error over ``norm``, in percent."""
    w = np.asarray(mask, dtype=np.float64)
    dist = np.linalg.norm(np.asarray(pred, dtype=np.float64) - np.asarray(true, dtype=np.float64), axis=-1)
    return float(100.0 * (w * dist).sum() / max(w.sum(), 1.0) / norm)


def recall_at_precision(occlusion_scores: np.ndarray, occluded: np.ndarray, precision: float = 0.8) -> float | None:
    """Largest recall of occluded landmarks at a threshold whose precision is at least ``precision``.

    ``occlusion_scores`` rank landmarks by how occluded the model thinks they are (1 − visibility);
    None when there is no occluded landmark to find.
    """
    labels = np.asarray(occluded, dtype=bool).ravel()
    if labels.sum() == 0:
        return None
    order = np.argsort(-np.asarray(occlusion_scores, dtype=np.float64).ravel(), kind="stable")
    hits = np.cumsum(labels[order])
    ranks = np.arange(1, len(labels) + 1)
    prec, rec = hits / ranks, hits / labels.sum()
    ok = prec >= precision
    return float(rec[ok].max()) if ok.any() else 0.0
