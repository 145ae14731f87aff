"""``python -m trainer train-or``: fit the occlusion-aware regressor (OR) on the exported full model's outputs.

    python -m trainer train-or --model models/ --data 300w:../shared/data/300w/afw \\
        --data 300w:../shared/data/300w/helen_train --out models/or.npz

Each training face is cropped ``--copies`` times: once plainly (as the app and the evaluation crop
it) and ``copies − 1`` times with the training augmentation (``trainer.augment``: rotation, scale,
shift, mirror, colour, synthetic occluders), each copy's augmentation drawn from a generator seeded
by ``--seed`` and the face, so runs are repeatable. ``mnn_full.onnx`` runs on every crop through the
app's own ``PoseEstimator``; its heatmaps (kept as uint8, max-normalised: see ``trainer.or_fit``),
visibilities, ``pose_proj`` and landmarks (heatmap peaks), and the crop's true landmarks, are what
the cascade is fitted on, so the regressor learns from the network's real errors. The fp32 model is
used (not an INT8 variant), as ``trainer.evaluate`` uses it.

``--val-fraction`` of the faces (drawn with the seed) are held out of the fit and cropped plainly; the
command reports their NME (inter-ocular, percent) for the network alone and with the fitted OR. Only
training data goes in here: evaluation data belongs to ``trainer.evaluate``.

Exit codes: 0 done, 2 bad arguments or data, 4 model missing or invalid.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from app.core import refiner as orr
from app.core.estimator import PoseEstimator
from trainer.augment import AugmentConfig, Augmentation, apply_augmentation, draw_augmentation
from trainer.datasets.dataset import FaceDataset
from trainer.landmark_layouts import layout_for
from trainer.metrics import face_nme, normalisers
from trainer.or_fit import TrainingSet, quantise_heatmaps

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceRef:
    """One training face: which dataset (index into the ``--data`` list) and which item of it."""

    dataset: int
    index: int


def list_faces(datasets: list[FaceDataset], limit: int | None) -> list[FaceRef]:
    """Every face of every dataset, or the first ``limit`` of each."""
    return [FaceRef(d, i) for d, dataset in enumerate(datasets)
            for i in range(len(dataset) if limit is None else min(limit, len(dataset)))]


def split_faces(faces: list[FaceRef], val_fraction: float, seed: int) -> tuple[list[FaceRef], list[FaceRef]]:
    """Faces to fit on and faces held out, drawn with ``seed``."""
    order = np.random.default_rng([seed, 1]).permutation(len(faces))
    held = int(round(val_fraction * len(faces)))
    return [faces[i] for i in sorted(order[held:])], [faces[i] for i in sorted(order[:held])]


def face_crops(dataset: FaceDataset, face: FaceRef, size: int, mean_face: np.ndarray, copies: int, seed: int,
               config: AugmentConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The ``copies`` crops of one face (the plain crop first): RGB images ``(K, S, S, 3)``, true landmarks
    ``(K, L, 2)`` and annotation masks ``(K, L)``; None for a face without a box or landmarks."""
    sample = dataset[face.index]
    if sample.box is None or not np.asarray(sample.mask).any():
        return None
    rng = np.random.default_rng([seed, face.dataset, face.index])
    images, landmarks, masks = [], [], []
    for copy in range(copies):
        augmentation = Augmentation() if copy == 0 else draw_augmentation(rng, config)
        crop = apply_augmentation(sample, size, mean_face, augmentation)
        annotated = np.asarray(sample.mask, dtype=bool)
        if augmentation.mirror:
            annotated = annotated[layout_for(len(annotated)).flip_array()]
        images.append(crop.image)
        landmarks.append(crop.landmarks)
        masks.append(annotated)
    return np.stack(images), np.stack(landmarks), np.stack(masks)


def collect(estimator: PoseEstimator, datasets: list[FaceDataset], faces: list[FaceRef], copies: int, seed: int,
            max_bytes: float) -> TrainingSet:
    """Run the full model over the crops of ``faces`` and keep what the cascade is fitted on."""
    info = estimator.info("full")
    size, count = info.input_size, info.landmarks
    capacity = len(faces) * copies
    needed = capacity * count * size * size
    if needed > max_bytes:
        raise ValueError(f"{capacity} crops need {needed / 2**30:.1f} GiB of heatmaps, over the "
                         f"{max_bytes / 2**30:.1f} GiB allowed: lower --copies or --limit, or raise --max-heatmap-gb")
    log.info("running %s on %d crops (%d faces x %d copies); heatmaps take %.2f GiB", info.path.name, capacity,
             len(faces), copies, needed / 2**30)
    heatmaps = np.zeros((capacity, count, size, size), np.uint8)
    evidence = np.zeros((capacity, count), bool)
    visibility = np.zeros((capacity, count), np.float32)
    pose_proj = np.zeros((capacity, 6), np.float64)
    landmarks = np.zeros((capacity, count, 2), np.float64)
    weights = np.zeros((capacity, count), bool)
    peaks = np.zeros((capacity, count, 2), np.float64)
    filled = skipped = 0
    config = AugmentConfig()
    for face in tqdm(faces, desc="network outputs", unit="face"):
        crops = face_crops(datasets[face.dataset], face, size, info.mean_face, copies, seed, config)
        if crops is None or crops[1].shape[1] != count:
            skipped += 1
            continue
        images, truth, masks = crops
        out = estimator.estimate(images, "full")
        part = slice(filled, filled + len(images))
        heatmaps[part], evidence[part] = quantise_heatmaps(out.heatmaps)
        visibility[part], pose_proj[part] = out.visibility, out.pose_proj
        landmarks[part], weights[part], peaks[part] = truth, masks, out.landmarks
        filled += len(images)
    if skipped:
        log.warning("skipped %d faces without a box, without landmarks or with another landmark count than %d",
                    skipped, count)
    if filled == 0:
        raise ValueError("no usable training face (each needs a box and annotated landmarks)")
    return TrainingSet(heatmaps[:filled], evidence[:filled], visibility[:filled], pose_proj[:filled],
                       landmarks[:filled], weights[:filled], size, peaks[:filled])


def validate(estimator: PoseEstimator, regressor: orr.OcclusionAwareRegressor, datasets: list[FaceDataset],
             faces: list[FaceRef]) -> dict[str, float | int] | None:
    """Mean inter-ocular NME (percent, crop pixels) of the network alone and with the OR on the plain crops of
    held-out ``faces``; None when there are none."""
    info = estimator.info("full")
    network, refined = [], []
    for face in tqdm(faces, desc="held-out faces", unit="face"):
        crops = face_crops(datasets[face.dataset], face, info.input_size, info.mean_face, 1, 0, AugmentConfig())
        if crops is None or crops[1].shape[1] != info.landmarks:
            continue
        images, truth, masks = crops
        out = estimator.estimate(images, "full")
        better = regressor(None, out, info)
        layout = layout_for(info.landmarks)
        norm = normalisers(truth[0], np.array([*truth[0].min(0), *truth[0].max(0)]), layout)["inter_ocular"]
        network.append(face_nme(out.landmarks[0], truth[0], masks[0], norm))
        refined.append(face_nme(better.landmarks[0], truth[0], masks[0], norm))
    if not network:
        return None
    return {"faces": len(network), "nme_mnn": float(np.mean(network)), "nme_mnn_or": float(np.mean(refined))}
