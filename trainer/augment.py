"""Training crops: the plain crop of a sample and the paper's random augmentation of it (section 4.2).

One crop is one ``cv2.warpAffine`` from the original image: the in-plane rotation (±45°), scaling
(±15%), translation (±5% of the crop square's side) and mirroring are composed into a single affine
by ``app.core.crop.crop_transform`` on the jittered square. Then, on the crop only, each HSV channel
is multiplied by a factor in [0.5, 1.5] and, with some probability, one synthetic rectangle hides part
of the face. Everything random is drawn from the ``numpy.random.Generator`` passed in, so equal seeds
give equal crops.

Labels after augmentation:

- ``mask``: annotated in the sample AND inside the crop. The paper labels landmarks that fall outside
  the crop as missing (its ``w = 0``), which is what lets the heatmap loss live with large jitter.
  "Inside" means the landmark's pixel ``floor(x + 0.5)`` lies in the crop: ``-0.5 <= x < size - 0.5``.
- ``visibility``: the sample's visibility AND not under the synthetic occluder (a landmark is under it
  when its pixel is one the rectangle fills). The occluder leaves ``mask`` alone: the landmark is
  still annotated, only hidden. Visibility is meaningful only where ``mask`` is True.
- ``pose``: weak-perspective PnP (``app.core.landmark_pose.pose_from_landmarks``) on the crop's landmarks
  in normalised crop coordinates, so ``tx, ty, tz`` are the crop's, as ``app.core.pose.project``
  wants. PnP uses the sample's annotation mask, not the in-crop mask: a landmark pushed out of the
  crop is still known exactly (the warp is a similarity), and fitting all annotated points gives the
  same label a crop of the whole face would. Where the sample carries a pose (AFLW2000 / 300W-LP style
  data, degrees) its angles win, turned with ``app.core.pose.transform_angles``; the translation then
  still comes from PnP when the landmarks allow it, and otherwise from the sample box: the mean face
  posed with the sample's angles is placed so that its landmark box matches the sample box (exact
  for a landmark box, a fair guess for other boxes).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from app.core.crop import crop_square as crop_rule, crop_transform, to_normalised, warp_image, warp_points
from app.core.landmark_pose import pose_from_landmarks
from app.core.pose import project, transform_angles
from trainer.datasets.sample import FaceSample
from trainer.landmark_layouts import layout_for

HUE_RANGE = 180
"""OpenCV's 8-bit hue runs over 0..179 (degrees halved)."""


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentation; the defaults are the paper's (section 4.2).

    ``rotation_deg``, ``scale`` and ``translation`` are half-ranges of uniform draws (translation as a
    fraction of the crop square's side, per axis); ``mirror`` and ``occlusion`` are probabilities.
    The occluder's sides are each a uniform fraction of the crop side in ``occluder_size``; its centre
    falls uniformly in ``[-occluder_spread, occluder_spread]²`` of normalised crop coordinates, which
    keeps it on the face (the face's box spans about ±1/1.3 of the crop). It is filled with uniform
    noise with probability ``occluder_noise`` and with one random colour otherwise.
    """

    rotation_deg: float = 45.0
    scale: float = 0.15
    translation: float = 0.05
    mirror: float = 0.5
    hsv_low: float = 0.5
    hsv_high: float = 1.5
    occlusion: float = 0.5
    occluder_size: tuple[float, float] = (0.15, 0.5)
    occluder_spread: float = 0.5
    occluder_noise: float = 0.5


@dataclass(frozen=True)
class Occluder:
    """A synthetic rectangle: ``box`` ``(x1, y1, x2, y2)`` in normalised crop coordinates, filled with
    ``colour`` (RGB) or, when ``colour`` is None, with uniform noise drawn from ``noise_seed``."""

    box: tuple[float, float, float, float]
    colour: tuple[int, int, int] | None = None
    noise_seed: int = 0


@dataclass(frozen=True)
class Augmentation:
    """One drawn augmentation. The identity (the defaults) gives the plain crop.

    ``angle_deg`` turns the content counter-clockwise on screen; ``zoom`` > 1 makes the face larger
    (the crop square's side is divided by it); ``shift`` moves the crop square by that fraction of its
    side (so the face moves the other way); ``hsv`` multiplies the H, S and V channels.
    """

    angle_deg: float = 0.0
    zoom: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    mirror: bool = False
    hsv: tuple[float, float, float] = (1.0, 1.0, 1.0)
    occluder: Occluder | None = None


@dataclass(frozen=True)
class TrainingCrop:
    """One network input with its labels (see the module docstring for what each label means).

    ``image`` ``(S, S, 3)`` uint8 RGB; ``landmarks`` ``(L, 2)`` float32 crop pixels; ``mask``,
    ``visibility`` ``(L,)`` bool; ``pose`` ``(6,)`` float32 yaw, pitch, roll (radians), tx, ty, tz
    (normalised crop coordinates), zeros when ``has_pose`` is False.
    """

    image: np.ndarray
    landmarks: np.ndarray
    mask: np.ndarray
    visibility: np.ndarray
    pose: np.ndarray
    has_pose: bool
    name: str


def draw_augmentation(rng: np.random.Generator, config: AugmentConfig = AugmentConfig()) -> Augmentation:
    """Draw one random augmentation from ``config``'s ranges."""
    angle = float(rng.uniform(-config.rotation_deg, config.rotation_deg))
    zoom = float(rng.uniform(1.0 - config.scale, 1.0 + config.scale))
    shift = tuple(float(v) for v in rng.uniform(-config.translation, config.translation, 2))
    mirror = bool(rng.random() < config.mirror)
    hsv = tuple(float(v) for v in rng.uniform(config.hsv_low, config.hsv_high, 3))
    occluder = None
    if rng.random() < config.occlusion:
        half = rng.uniform(*config.occluder_size, 2)  # full side as a fraction of the crop = half side normalised
        centre = rng.uniform(-config.occluder_spread, config.occluder_spread, 2)
        box = (float(centre[0] - half[0]), float(centre[1] - half[1]),
               float(centre[0] + half[0]), float(centre[1] + half[1]))
        colour = None
        if rng.random() >= config.occluder_noise:
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        occluder = Occluder(box, colour, int(rng.integers(0, 2**31)))
    return Augmentation(angle, zoom, shift, mirror, hsv, occluder)


def make_crop(sample: FaceSample, size: int, mean_face: np.ndarray, rng: np.random.Generator | None = None,
              config: AugmentConfig = AugmentConfig()) -> TrainingCrop:
    """The ``size``² training crop of ``sample``: randomly augmented from ``rng``, or the plain crop
    (the app's crop rule, ``app.core.crop.crop_square``, used for validation and evaluation) when ``rng`` is None."""
    augmentation = Augmentation() if rng is None else draw_augmentation(rng, config)
    return apply_augmentation(sample, size, mean_face, augmentation)


def crop_square(sample: FaceSample, augmentation: Augmentation = Augmentation()) -> np.ndarray:
    """The frame square ``(x1, y1, x2, y2)`` that the crop shows before rotation: the app's crop rule
    (``app.core.crop.crop_square``) on the sample box, shifted and zoomed by ``augmentation``."""
    if sample.box is None:
        raise ValueError(f"sample {sample.name!r} has no box and cannot be cropped")
    return crop_rule(sample.box, augmentation.shift, augmentation.zoom)


def apply_augmentation(sample: FaceSample, size: int, mean_face: np.ndarray,
                       augmentation: Augmentation) -> TrainingCrop:
    """The ``size``² crop of ``sample`` under one given ``augmentation`` (``make_crop`` draws it)."""
    transform = crop_transform(crop_square(sample, augmentation), size, augmentation.angle_deg,
                               augmentation.mirror)
    image = warp_image(np.ascontiguousarray(sample.image), transform, size)
    landmarks = warp_points(sample.landmarks, transform).reshape(-1, 2)
    annotated = np.asarray(sample.mask, dtype=bool)
    visibility = np.asarray(sample.visibility, dtype=bool)
    if augmentation.mirror and len(landmarks):
        flip = layout_for(len(landmarks)).flip_array()
        landmarks, annotated, visibility = landmarks[flip], annotated[flip], visibility[flip]

    if augmentation.hsv != (1.0, 1.0, 1.0):
        image = scale_hsv(image, augmentation.hsv)
    pixels = np.floor(landmarks + 0.5).astype(np.int64)
    inside = ((pixels >= 0) & (pixels < size)).all(1)
    if augmentation.occluder is not None:
        covered = paint_occluder(image, augmentation.occluder)
        hidden = np.zeros(len(landmarks), dtype=bool)
        hidden[inside] = covered[pixels[inside, 1], pixels[inside, 0]]
        visibility = visibility & ~hidden

    pose, has_pose = _pose_label(sample, landmarks, annotated, transform, size, mean_face, augmentation)
    return TrainingCrop(
        image=image,
        landmarks=landmarks.astype(np.float32),
        mask=annotated & inside,
        visibility=visibility,
        pose=pose.astype(np.float32),
        has_pose=has_pose,
        name=sample.name,
    )


def scale_hsv(image: np.ndarray, factors: tuple[float, float, float]) -> np.ndarray:
    """RGB uint8 ``image`` with its H, S and V channels multiplied by ``factors``.

    S and V are clipped to 0..255. Hue is an angle with red at 0, where skin tones sit on both sides of
    OpenCV's 0/179 seam; it is scaled as a signed angle about red (−90..89) and wrapped back into
    0..179, so skin changes hue smoothly instead of jumping across the colour wheel at the seam.
    """
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    levels = np.arange(256, dtype=np.float64)
    signed_hue = np.where(levels < HUE_RANGE / 2, levels, levels - HUE_RANGE)
    hue = np.mod(np.rint(signed_hue * factors[0]), HUE_RANGE)
    tables = [hue] + [np.clip(np.rint(levels * f), 0, 255) for f in factors[1:]]
    channels = [cv2.LUT(hsv[..., k], tables[k].astype(np.uint8)) for k in range(3)]
    return cv2.cvtColor(cv2.merge(channels), cv2.COLOR_HSV2RGB)


def paint_occluder(image: np.ndarray, occluder: Occluder) -> np.ndarray:
    """Fill ``occluder``'s rectangle in the square ``image`` (in place); return the ``(S, S)`` bool
    map of the pixels it filled."""
    size = image.shape[0]
    x1, y1, x2, y2 = (int(np.clip(np.rint((v + 1.0) * size / 2), 0, size)) for v in occluder.box)
    covered = np.zeros(image.shape[:2], dtype=bool)
    covered[y1:y2, x1:x2] = True
    if occluder.colour is None:
        noise = np.random.default_rng(occluder.noise_seed).integers(0, 256, (y2 - y1, x2 - x1, 3))
        image[y1:y2, x1:x2] = noise.astype(np.uint8)
    else:
        image[y1:y2, x1:x2] = occluder.colour
    return covered


def _pose_label(sample: FaceSample, landmarks: np.ndarray, annotated: np.ndarray, transform: np.ndarray,
                size: int, mean_face: np.ndarray, augmentation: Augmentation) -> tuple[np.ndarray, bool]:
    """The crop's pose label (see the module docstring) and whether there is one."""
    fitted = None
    if len(landmarks):
        fitted = pose_from_landmarks(to_normalised(landmarks, size), annotated, mean_face)
    if sample.pose is None:
        return (np.zeros(6), False) if fitted is None else (fitted, True)
    angles = transform_angles(np.radians(np.asarray(sample.pose, dtype=np.float64)),
                              augmentation.angle_deg, augmentation.mirror)
    translation = fitted[3:] if fitted is not None else _box_translation(sample, transform, size, mean_face)
    return np.concatenate([angles, translation]), True


def _box_translation(sample: FaceSample, transform: np.ndarray, size: int, mean_face: np.ndarray) -> np.ndarray:
    """``(tx, ty, tz)`` in the crop for a sample with a pose but too few landmarks for PnP.

    The mean face, posed with the sample's angles in the original frame, is scaled and placed so that
    its landmark box's longer side and centre match the sample box's; that placement is then moved
    into the crop. Exact when the box is the landmark box of a face shaped like the mean face.
    """
    x1, y1, x2, y2 = np.asarray(sample.box, dtype=np.float64)[:4]
    posed = project(np.concatenate([np.radians(np.asarray(sample.pose, dtype=np.float64)), [0.0, 0.0, 1.0]]),
                    mean_face)
    low, high = posed.min(0), posed.max(0)
    pixels_per_unit = max(x2 - x1, y2 - y1) / float((high - low).max())
    origin = np.array([(x1 + x2) / 2, (y1 + y2) / 2]) - pixels_per_unit * (low + high) / 2
    centre = to_normalised(warp_points(origin, transform), size)
    crop_scale = np.sqrt(abs(np.linalg.det(transform[:, :2])))
    return np.array([centre[0], centre[1], size / (2.0 * pixels_per_unit * crop_scale)])
