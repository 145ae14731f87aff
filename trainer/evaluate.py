"""``python -m trainer evaluate``: the exported ONNX models on held-out data, through the app's own runtime.

Each face goes through the app's own per-face path, ``PoseEstimator.estimate_faces`` (cropped by
``app.core.crop``'s rule: box +30%, square; the network; in full mode the refiner and the pose of the
final landmarks; all mapped back to the image). The box is the dataset's (the landmark box, the paper's
protocol, cropped as training crops it) or, for data without one (BIWI, AFLW2000 images without
landmarks), the app's face detector's best detection mapped to a landmark box as the app maps it.
``--crop detector`` takes the detector's box for every face, as the app does on video: figures for
what a user gets, crop errors included. A face the detector misses, or whose box no detection
overlaps, counts as ``undetected`` and is not scored; the synthetic-occluder recall below needs the
landmark box and is left out. Reported per dataset:

- pose MAE (yaw, pitch, roll, mean) against the dataset's pose, or, for landmark-only data such as
  300W, against the PnP pose of the ground-truth landmarks with the model's own mean face;
- NME in percent with three normalisers (outer-eye corners, pupils, box height): ``nme`` for the
  network alone (MNN, heatmap peaks) and, when the models folder holds ``or.npz``, ``nme_or`` for
  MNN+OR (the occlusion-aware regressor, ``app.core.refiner``) on the same faces, side by side;
- pose MAE per |yaw| band of the ground truth (``YAW_BANDS``: 0–30°, 30–60°, 60–90°; a band's lower
  edge belongs to it, the last takes everything from 60° on), beside the means: ``mae_by_yaw_band``
  (and, in full mode, ``mae_fc_pose_by_yaw_band``), each band ``{"faces": n, "mae": {...}}`` with
  ``mae`` null where the band is empty;
- recall of occluded landmarks at 80% precision. Data without occlusion labels (300W) are scored on
  copies of each face with one synthetic rectangular occluder, seeded, drawn as in training.

``--video`` with ``--reference`` adds the per-frame agreement with 3DDFA_V2 on a video (mean absolute
difference per angle after matching conventions, and the rotation difference): ``trainer.video_agreement``.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from app.core.crop import face_box_from_detection
from app.core.detector import create_detector
from app.core.estimator import PoseEstimator
from app.core.landmark_pose import pose_from_landmarks
from app.core.model_io import ModelInfo
from app.core.refiner import OR_FILE, OcclusionAwareRegressor
from app.core.tracking import iou_matrix
from trainer.augment import AugmentConfig, Augmentation, apply_augmentation, draw_augmentation
from trainer.datasets.registry import open_dataset
from trainer.datasets.sample import FaceSample
from trainer.landmark_layouts import layout_for
from trainer.metrics import face_nme, normalisers, pose_mae, recall_at_precision

log = logging.getLogger(__name__)
OCCLUSION_SEED = 0
CROPS = ("dataset", "detector")
"""Where ``evaluate_dataset`` takes each face's box: the dataset's landmark box, or the app's detector."""
MATCH_IOU = 0.3
"""Least overlap of a detection with the annotated face's box for ``--crop detector`` to score it."""
YAW_BANDS = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.0))
"""|yaw| bands (degrees, of the ground truth) the pose MAE is also reported by."""


def band_name(low: float, high: float) -> str:
    """A band's key in the results, e.g. ``30-60``."""
    return f"{low:g}-{high:g}"


def mae_by_yaw_band(pred_deg: np.ndarray, true_deg: np.ndarray) -> dict[str, dict[str, Any]]:
    """Pose MAE per ``YAW_BANDS`` band of the true |yaw|: ``{"0-30": {"faces": n, "mae": {...} or None}, ...}``.

    A face belongs to the band whose lower edge it reaches (yaw 30 counts in 30–60); the last band
    also takes |yaw| beyond its upper edge, so every face counts once.
    """
    pred = np.asarray(pred_deg, np.float64).reshape(-1, 3)
    true = np.asarray(true_deg, np.float64).reshape(-1, 3)
    magnitude = np.abs(true[:, 0])
    bands: dict[str, dict[str, Any]] = {}
    for k, (low, high) in enumerate(YAW_BANDS):
        last = k == len(YAW_BANDS) - 1
        rows = (magnitude >= low) & ((magnitude < high) | last)
        count = int(rows.sum())
        bands[band_name(low, high)] = {"faces": count, "mae": pose_mae(pred[rows], true[rows]) if count else None}
    return bands


def band_line(bands: dict[str, dict[str, Any]]) -> str:
    """The bands as one line of text: mean MAE and face count per band (``-`` where empty)."""
    parts = (f"|yaw| {name}: {'-' if band['mae'] is None else format(band['mae']['mean'], '.2f')} (n={band['faces']})"
             for name, band in bands.items())
    return "  ".join(parts)


def truth_pose(sample: FaceSample, mean_face: np.ndarray) -> np.ndarray | None:
    """Ground-truth (yaw, pitch, roll) in degrees: the dataset's, else PnP of its landmarks."""
    if sample.pose is not None:
        return np.asarray(sample.pose, dtype=np.float64)
    if len(sample.landmarks) == len(mean_face) and sample.mask.any():
        fitted = pose_from_landmarks(sample.landmarks, sample.mask, mean_face)
        return None if fitted is None else np.degrees(fitted[:3])
    return None


def _occluded_copy(sample: FaceSample, size: int, mean_face: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A plain crop of ``sample`` with one seeded synthetic occluder: image, mask, visibility labels."""
    rng = np.random.default_rng([OCCLUSION_SEED, index])
    occluder = draw_augmentation(rng, replace(AugmentConfig(), occlusion=1.0)).occluder
    crop = apply_augmentation(sample, size, mean_face, Augmentation(occluder=occluder))
    return crop.image, crop.mask, crop.visibility


def detected_box(detections: np.ndarray, annotated: np.ndarray | None) -> np.ndarray | None:
    """The landmark-style box of the detection that stands for the annotated face, as the app maps it.

    With an annotated box, the detection overlapping it most (IoU ≥ ``MATCH_IOU``), so that another
    person in the photograph is never scored against this face's labels; without one, the best score.
    """
    if len(detections) == 0:
        return None
    boxes = np.array([face_box_from_detection(row[:4]) for row in detections])
    if annotated is None:
        return boxes[0]
    overlap = iou_matrix(boxes, np.asarray(annotated)[None])[:, 0]
    best = int(np.argmax(overlap))
    return boxes[best] if overlap[best] >= MATCH_IOU else None


def refiner_beside(estimator: PoseEstimator, info: ModelInfo) -> OcclusionAwareRegressor | None:
    """The occlusion-aware regressor beside the models, checked against the full model, or None without one."""
    path = estimator.models_dir / OR_FILE
    if not path.is_file():
        return None
    regressor = OcclusionAwareRegressor.load(path)
    regressor.check(info)
    return regressor


def evaluate_dataset(estimator: PoseEstimator, spec: str, mode: str, limit: int | None = None,
                     detector_name: str = "blazeface", crop: str = "dataset") -> dict[str, Any]:
    """All metrics for one ``KIND:PATH`` dataset, each face cropped from the box that ``crop`` names."""
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}; choose one of {', '.join(CROPS)}")
    dataset = open_dataset(spec)
    info = estimator.info(mode)
    size, mean_face = info.input_size, info.mean_face
    refiner = refiner_beside(estimator, info) if mode == "full" else None
    detector = None
    pred_pose, network_pose, true_pose = [], [], []
    nme: dict[str, list[float]] = {"inter_ocular": [], "inter_pupil": [], "box_height": []}
    nme_or: dict[str, list[float]] = {key: [] for key in nme}
    vis_scores, vis_labels = [], []
    synthetic = True
    missed = 0
    count = len(dataset) if limit is None else min(limit, len(dataset))
    for index in tqdm(range(count), desc=spec, unit="face"):
        sample = dataset[index]
        frame = cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR)
        box = sample.box if crop == "dataset" else None
        if box is None:
            detector = detector or create_detector(detector_name)
            box = detected_box(detector.detect(frame), sample.box)
            if box is None:
                missed += 1
                continue
        (face,) = estimator.estimate_faces(frame, np.asarray([box]), mode, refiner)
        truth = truth_pose(sample, mean_face)
        if truth is not None:
            pred_pose.append(face.angles)
            network_pose.append(face.network_angles)
            true_pose.append(truth)
        if mode != "full" or not sample.mask.any():
            continue
        layout = layout_for(len(sample.landmarks))
        refined = None if refiner is None else face.landmarks
        for key, norm in normalisers(sample.landmarks, sample.box if sample.box is not None else box, layout).items():
            nme[key].append(face_nme(face.network_landmarks, sample.landmarks, sample.mask, norm))
            if refined is not None:
                nme_or[key].append(face_nme(refined, sample.landmarks, sample.mask, norm))
        if not np.array_equal(sample.visibility, sample.mask):
            synthetic = False
            vis_scores.append(1.0 - face.visibility[sample.mask])
            vis_labels.append(~sample.visibility[sample.mask])
        elif sample.box is not None and crop == "dataset":
            image, mask, visible = _occluded_copy(sample, size, mean_face, index)
            occluded_out = estimator.estimate(image[None], mode)
            vis_scores.append(1.0 - occluded_out.visibility[0][mask])
            vis_labels.append(~visible[mask])
    result: dict[str, Any] = {"data": spec, "faces": count, "undetected": missed, "mode": mode, "crop": crop,
                              "pose_faces": len(true_pose),
                              "mae": pose_mae(np.array(pred_pose), np.array(true_pose)) if true_pose else None,
                              "mae_by_yaw_band": mae_by_yaw_band(np.array(pred_pose), np.array(true_pose))}
    if mode == "full":
        result["pose_source"] = ("PnP of the final landmarks' rigid points "
                                 "(app.core.landmark_pose.rigid_pose_from_landmarks)")
        result["mae_fc_pose"] = pose_mae(np.array(network_pose), np.array(true_pose)) if true_pose else None
        result["mae_fc_pose_by_yaw_band"] = mae_by_yaw_band(np.array(network_pose), np.array(true_pose))
        result["nme"] = {k: float(np.mean(v)) for k, v in nme.items()} if nme["inter_ocular"] else None
        result["nme_or"] = {k: float(np.mean(v)) for k, v in nme_or.items()} if nme_or["inter_ocular"] else None
        result["refiner"] = None if refiner is None else OR_FILE
        if result["nme"] is not None and result["nme_or"] is not None:
            side_by_side = (f"{k} MNN {result['nme'][k]:.3f} | MNN+OR {result['nme_or'][k]:.3f}" for k in nme)
            log.info("%s NME %%: %s", spec, "  ".join(side_by_side))
        recall = (recall_at_precision(np.concatenate(vis_scores), np.concatenate(vis_labels))
                  if vis_scores else None)
        protocol = None if recall is None else "synthetic occluder per face, seed 0" if synthetic else "dataset labels"
        result["visibility"] = {"recall_at_80_precision": recall, "protocol": protocol}
    if detector is not None:
        detector.close()
    return result
