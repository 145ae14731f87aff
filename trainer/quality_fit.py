"""``python -m trainer fit-quality``: fit the face-quality scorer (``models/quality.json``, ``app.core.quality``).

    python -m trainer fit-quality --model models/ --data 300w:../shared/data/300w/afw \\
        --data 300w:../shared/data/300w/helen_train

Crops, per training photograph (a 300W file; files cut from one AFW/HELEN photograph, ``NAME_1``,
``NAME_2``, count as one photograph):

- faces: the annotated face by the app's crop rule from its landmark box, and ``--loose`` mis-framed
  copies (box centre moved up to ``LOOSE_SHIFT`` of its side, side scaled by ``LOOSE_SCALE``): a loosely
  framed face is still a face;
- non-faces: ``--background`` square boxes drawn at random (side ``BACKGROUND_SIDE`` of the photograph's
  shorter side, inside it) whose crop square shows at most ``MAX_FACE_SHOWN`` of any face box: the
  annotated one, and every face MediaPipe (the app's detector) finds in the photograph, since AFW
  photographs show other people.

Every crop runs through the app's ``PoseEstimator`` in both modes (fp32, the OR in full mode where
``or.npz`` is there), as ``estimate_faces`` runs it, and gives the features of ``app.core.quality``. The
photographs are split (seeded) into a fit part and a held-out part. On the fit part, per mode: each feature's
AUC (faces against non-faces), then a logistic model on the features (forward selection, at most
``--max-features``, kept while the fit part's 5-fold AUC rises by at least 0.001) and the threshold: the
quality below which ``--max-face-invalid`` of the fit part's faces (plain and loose) fall. The held-out part
gives the figures that judge it: the share of non-face crops invalid and of faces invalid. ``--test`` runs
evaluation faces (``helen_test``) through ``estimate_faces`` with the new file, cropped from their landmark
box and from the app's detector box: the share invalid, reported only, never fitted on.

Running the network over the 1,207 training photographs (4,828 crops, both modes) is most of the time:
about 30 minutes on the shared 2-core CPU; ``--features FILE`` keeps the crops' features, so that a refit
(another ``--max-face-invalid``, ``--max-features``) reads them back in seconds. A re-exported model needs
a fresh run (its features change).

Exit codes: 0 done, 2 bad arguments or data, 4 model missing or invalid.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.stats import rankdata
from tqdm import tqdm

from app.core import crop, model_io, quality
from app.core.detector import create_detector
from app.core.estimator import PoseEstimator, Refiner
from app.core.landmark_pose import with_landmark_pose
from app.core.model_io import MODES
from app.core.results import EstimatorOutput
from trainer.datasets.dataset import FaceDataset
from trainer.evaluate import detected_box, refiner_beside

log = logging.getLogger(__name__)

LOOSE_SHIFT = 0.1
LOOSE_SCALE = (0.85, 1.3)
BACKGROUND_SIDE = (0.15, 0.5)
MAX_FACE_SHOWN = 0.3
KINDS = ("face", "loose", "background")


@dataclass
class CropSet:
    """Features of every crop: ``features[mode]`` ``(N, F)``, ``kind`` index into ``KINDS``, ``photo`` its group."""

    features: dict[str, np.ndarray]
    kind: np.ndarray
    photo: np.ndarray

    @property
    def is_face(self) -> np.ndarray:
        return self.kind != KINDS.index("background")

    def subset(self, keep: np.ndarray) -> "CropSet":
        return CropSet({m: f[keep] for m, f in self.features.items()}, self.kind[keep], self.photo[keep])

    def save(self, path: Path) -> None:
        np.savez(path, kind=self.kind, photo=self.photo, **{f"features_{m}": f for m, f in self.features.items()})

    @staticmethod
    def load(path: Path) -> "CropSet":
        with np.load(path) as data:
            return CropSet({m: data[f"features_{m}"] for m in MODES if f"features_{m}" in data}, data["kind"],
                           data["photo"])


def photo_key(dataset: int, name: str) -> str:
    """The photograph a 300W file was cut from: ``NAME_2`` → ``NAME`` (per dataset)."""
    stem = Path(name).name
    base, sep, suffix = stem.rpartition("_")
    return f"{dataset}/{base if sep and suffix.isdigit() else stem}"


def held_out_photos(photos: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """``(N,)`` True for the crops whose photograph is in the held-out part (``fraction`` of them, seeded)."""
    names = np.unique(photos)
    order = np.random.default_rng([seed, 2]).permutation(len(names))
    held = set(names[order[:int(round(fraction * len(names)))]])
    return np.array([p in held for p in photos], bool)


def loose_box(rng: np.random.Generator, box: np.ndarray) -> np.ndarray:
    """``box`` moved by up to ``LOOSE_SHIFT`` of its side and scaled by ``LOOSE_SCALE``, as a square."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * rng.uniform(*LOOSE_SCALE)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    cx, cy = cx + rng.uniform(-LOOSE_SHIFT, LOOSE_SHIFT) * side, cy + rng.uniform(-LOOSE_SHIFT, LOOSE_SHIFT) * side
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def face_shown(square: np.ndarray, faces: np.ndarray) -> float:
    """The largest share of any face box's area that ``square`` covers."""
    if len(faces) == 0:
        return 0.0
    w = np.clip(np.minimum(square[2], faces[:, 2]) - np.maximum(square[0], faces[:, 0]), 0, None)
    h = np.clip(np.minimum(square[3], faces[:, 3]) - np.maximum(square[1], faces[:, 1]), 0, None)
    area = np.maximum((faces[:, 2] - faces[:, 0]) * (faces[:, 3] - faces[:, 1]), 1e-9)
    return float((w * h / area).max())


def background_boxes(rng: np.random.Generator, shape: tuple[int, ...], faces: np.ndarray, count: int,
                     tries: int = 200) -> list[np.ndarray]:
    """Up to ``count`` random square boxes inside an image of ``shape`` whose crop squares show at most
    ``MAX_FACE_SHOWN`` of any of ``faces``."""
    height, width = shape[:2]
    found: list[np.ndarray] = []
    for _ in range(tries):
        if len(found) == count:
            break
        side = rng.uniform(*BACKGROUND_SIDE) * min(height, width)
        x1, y1 = rng.uniform(0, width - side), rng.uniform(0, height - side)
        box = np.array([x1, y1, x1 + side, y1 + side])
        if face_shown(crop.crop_square(box), faces) <= MAX_FACE_SHOWN:
            found.append(box)
    return found


def network_outputs(estimator: PoseEstimator, frame_bgr: np.ndarray, boxes: np.ndarray, mode: str,
                    refiner: Refiner | None) -> tuple[EstimatorOutput, EstimatorOutput]:
    """What ``PoseEstimator.estimate_faces`` computes before mapping back to the frame: the network's outputs
    for ``boxes`` by the crop rule and, in full mode, those after the refiner and the landmark pose."""
    info = estimator.info(mode)
    crops, _ = crop.crop_faces(frame_bgr, boxes, info.input_size)
    batch = model_io.to_input(crops, info)
    network = estimator.run(batch, mode)
    if mode != "full":
        return network, network
    return network, with_landmark_pose(network if refiner is None else refiner(batch, network, info), info)


def collect(estimator: PoseEstimator, datasets: list[FaceDataset], loose: int, background: int,
            seed: int, limit: int | None) -> CropSet:
    """Run every crop (faces, loose faces, backgrounds) of every photograph through both modes."""
    refiner = refiner_beside(estimator, estimator.info("full"))
    detector = create_detector("blazeface")
    features: dict[str, list[np.ndarray]] = {mode: [] for mode in MODES}
    kinds: list[int] = []
    photos: list[str] = []
    try:
        for d, dataset in enumerate(datasets):
            count = len(dataset) if limit is None else min(limit, len(dataset))
            for index in tqdm(range(count), desc=f"crops of {dataset.root.name}", unit="photo"):
                sample = dataset[index]
                if sample.box is None:
                    continue
                frame = cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR)
                rng = np.random.default_rng([seed, d, index])
                found = detector.detect(frame)
                faces = np.array([sample.box, *(crop.face_box_from_detection(b) for b in found)], np.float64)
                boxes = [np.asarray(sample.box, np.float64)] + [loose_box(rng, faces[0]) for _ in range(loose)]
                boxes += background_boxes(rng, frame.shape, faces, background)
                kind = [0] + [1] * loose + [2] * (len(boxes) - 1 - loose)
                for mode in MODES:
                    network, final = network_outputs(estimator, frame, np.stack(boxes), mode, refiner)
                    features[mode].append(quality.features(network, final, estimator.info(mode), mode))
                kinds += kind
                photos += [photo_key(d, sample.name)] * len(boxes)
    finally:
        detector.close()
    return CropSet({mode: np.concatenate(f) for mode, f in features.items()}, np.array(kinds), np.array(photos))


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a positive scores above a negative (ties half), by ranks."""
    ranks = rankdata(np.r_[positive, negative])
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iterations: int = 50) -> tuple[np.ndarray, float]:
    """Weights and bias of an L2-regularised logistic regression on standardised ``x`` (Newton's method), the
    two classes weighted equally."""
    n, f = x.shape
    weight = np.where(y, 0.5 / max(y.sum(), 1), 0.5 / max((~y).sum(), 1))
    design = np.c_[x, np.ones(n)]
    theta = np.zeros(f + 1)
    penalty = np.r_[np.full(f, l2), 0.0]
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ theta, -30, 30)))
        gradient = design.T @ (weight * (p - y)) + penalty * theta
        hessian = (design * (weight * p * (1 - p))[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return theta[:f], float(theta[f])


def fit_scorer(x: np.ndarray, y: np.ndarray, names: tuple[str, ...], chosen: list[int],
               max_face_invalid: float) -> quality.ModeScorer:
    """The logistic scorer on the ``chosen`` features, its threshold leaving ``max_face_invalid`` faces invalid."""
    part = x[:, chosen]
    mean, scale = part.mean(0), part.std(0) + 1e-12
    weights, bias = fit_logistic((part - mean) / scale, y)
    scorer = quality.ModeScorer(tuple(names[i] for i in chosen), mean, scale, weights, bias, 0.0)
    scores = scorer.quality(x, "full" if len(names) == len(quality.FULL_FEATURES) else "pose")
    threshold = float(np.quantile(scores[y], max_face_invalid, method="lower"))
    return quality.ModeScorer(scorer.features, mean, scale, weights, bias, threshold)


def cross_validated_auc(x: np.ndarray, y: np.ndarray, photos: np.ndarray, chosen: list[int], folds: int = 5) -> float:
    """AUC of the logistic model on ``chosen`` features, each photograph's crops scored by a model fitted
    without them (``folds`` groups of photographs)."""
    names = np.unique(photos)
    fold_of = dict(zip(names, np.random.default_rng(7).permutation(len(names)) % folds))
    fold = np.array([fold_of[p] for p in photos])
    scores = np.zeros(len(y))
    for k in range(folds):
        train, test = fold != k, fold == k
        part = x[train][:, chosen]
        mean, scale = part.mean(0), part.std(0) + 1e-12
        weights, bias = fit_logistic((part - mean) / scale, y[train])
        scores[test] = bias + ((x[test][:, chosen] - mean) / scale) @ weights
    return auc(scores[y], scores[~y])


def select_features(x: np.ndarray, y: np.ndarray, photos: np.ndarray, max_features: int,
                    min_gain: float = 1e-3) -> tuple[list[int], list[dict]]:
    """Forward selection by cross-validated AUC: the best feature, then the one that raises it most while it rises
    by ``min_gain``."""
    chosen: list[int] = []
    steps: list[dict] = []
    best = 0.5
    while len(chosen) < max_features:
        trials = {i: cross_validated_auc(x, y, photos, chosen + [i]) for i in range(x.shape[1]) if i not in chosen}
        pick = max(trials, key=trials.get)
        if chosen and trials[pick] < best + min_gain:
            break
        chosen.append(pick)
        best = trials[pick]
        steps.append({"added": int(pick), "cv_auc": round(best, 4)})
    return chosen, steps


def invalid_shares(scorer: quality.ModeScorer, crops: CropSet, mode: str) -> dict[str, float | int]:
    """Share of each kind of crop the scorer calls invalid, and their counts."""
    valid = scorer.quality(crops.features[mode], mode) >= scorer.threshold
    figures: dict[str, float | int] = {}
    for k, name in enumerate(KINDS):
        of_kind = crops.kind == k
        figures[f"{name}_crops"] = int(of_kind.sum())
        figures[f"{name}_invalid"] = round(float((~valid[of_kind]).mean()), 4) if of_kind.any() else float("nan")
    return figures


def fit_modes(crops: CropSet, held_out: np.ndarray, max_features: int,
              max_face_invalid: float) -> tuple[dict[str, quality.ModeScorer], dict]:
    """Per mode: feature AUCs and the selection on the fit part, the scorer, and its figures on both parts."""
    fit, test = crops.subset(~held_out), crops.subset(held_out)
    scorers, report = {}, {}
    for mode, x in fit.features.items():
        names = quality.feature_names(mode)
        finite = np.isfinite(x).all(1)
        x, y, photos = x[finite], fit.is_face[finite], fit.photo[finite]
        single = {}
        for i, name in enumerate(names):
            value = auc(x[y, i], x[~y, i])
            single[name] = round(max(value, 1 - value), 4)
        chosen, steps = select_features(x, y, photos, max_features)
        scorer = fit_scorer(x, y, names, chosen, max_face_invalid)
        scorers[mode] = scorer
        test_scores = scorer.quality(test.features[mode], mode)
        report[mode] = {
            "feature_auc_fit": single,
            "selection": [{"feature": names[s["added"]], "cv_auc": s["cv_auc"]} for s in steps],
            "scorer": scorer.to_json(),
            "fit": invalid_shares(scorer, fit, mode),
            "held_out": invalid_shares(scorer, test, mode),
            "held_out_auc": round(auc(test_scores[test.is_face], test_scores[~test.is_face]), 4),
            "dropped_non_finite_fit": int((~finite).sum()),
        }
    return scorers, report


def evaluate_faces(estimator: PoseEstimator, dataset: FaceDataset, limit: int | None = None) -> dict[str, dict]:
    """Per crop (``landmarks``: each face cropped from its landmark box; ``detector``: from the app's detector box
    over it, as the app crops) and mode, the share of ``dataset``'s faces that ``estimate_faces`` (the app's path,
    with ``quality.json`` and the OR of the estimator's models folder) calls invalid."""
    refiner = refiner_beside(estimator, estimator.info("full"))
    detector = create_detector("blazeface")
    valid: dict[tuple[str, str], list[bool]] = {}
    quality_of: dict[tuple[str, str], list[float]] = {}
    missed = 0
    count = len(dataset) if limit is None else min(limit, len(dataset))
    try:
        for index in tqdm(range(count), desc=f"faces of {dataset.root.name}", unit="face"):
            sample = dataset[index]
            if sample.box is None:
                continue
            frame = cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR)
            boxes = {"landmarks": np.asarray(sample.box, np.float64), "detector": detected_box(detector.detect(frame),
                                                                                              sample.box)}
            missed += boxes["detector"] is None
            for crop_from, box in boxes.items():
                if box is None:
                    continue
                for mode in MODES:
                    face = estimator.estimate_faces(frame, box[None], mode, refiner if mode == "full" else None)[0]
                    valid.setdefault((crop_from, mode), []).append(face.valid)
                    quality_of.setdefault((crop_from, mode), []).append(face.quality)
    finally:
        detector.close()
    figures: dict[str, dict] = {"detector_missed": {"faces": missed}}
    for (crop_from, mode), flags in valid.items():
        invalid = ~np.array(flags)
        figures.setdefault(crop_from, {})[mode] = {
            "faces": len(flags), "invalid": int(invalid.sum()), "invalid_share": round(float(invalid.mean()), 4),
            "median_quality": round(float(np.nanmedian(quality_of[(crop_from, mode)])), 4)}
    return figures
