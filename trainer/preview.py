"""Contact sheet of augmented training crops, to look at what the network is trained on.

``python -m trainer preview --data 300w:../shared/data/300w/afw --out sheet.png [--size 128] [--count 32]
[--seed 0]`` draws ``count`` faces at random from the datasets, augments each with ``make_crop`` and
lays the crops out in a grid. Annotated landmarks inside the crop are drawn green when visible and
red when occluded; the pose label is drawn as the head's axes (x magenta, y yellow, z cyan) from where
the label puts the face, with yaw/pitch/roll in degrees under each crop. The layout's first outer eye
corner (iBUG point 36, the eye on the image's left) is ringed in white: after a correct mirror it is
still on the image's left. A wrong colour order, points off the face, un-permuted mirrored points or
axes that do not follow the face show at a glance.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import cv2
import numpy as np

from app.core.crop import from_normalised
from app.core.pose import axes_endpoints
from trainer.augment import AugmentConfig, TrainingCrop, make_crop
from trainer.datasets.sample import FaceSample
from trainer.landmark_layouts import LAYOUTS
from trainer.mean_face import build_mean_face

log = logging.getLogger(__name__)

VISIBLE = (0, 220, 0)
OCCLUDED = (255, 0, 0)
MARKED_CORNER = (255, 255, 255)
AXIS_COLOURS = ((255, 0, 255), (255, 230, 0), (0, 230, 255))
CAPTION_HEIGHT = 14


def draw_crop(crop: TrainingCrop) -> np.ndarray:
    """A copy of ``crop.image`` (RGB) with its landmarks, pose axes and a caption strip below."""
    size = crop.image.shape[0]
    tile = np.ascontiguousarray(crop.image.copy())
    radius = max(1, size // 96)
    if crop.has_pose:
        centre = from_normalised(crop.pose[3:5].astype(np.float64), size)
        ends = axes_endpoints(np.degrees(crop.pose[:3]), centre, size / 4)
        for end, colour in zip(ends, AXIS_COLOURS):
            cv2.line(tile, _point(centre), _point(end), colour, 1, cv2.LINE_AA)
    for (x, y), labelled, visible in zip(crop.landmarks, crop.mask, crop.visibility):
        if labelled:
            cv2.circle(tile, _point((x, y)), radius, VISIBLE if visible else OCCLUDED, -1, cv2.LINE_AA)
    if len(crop.landmarks) in LAYOUTS:
        corner = LAYOUTS[len(crop.landmarks)].outer_eyes[0]
        if crop.mask[corner]:
            cv2.circle(tile, _point(crop.landmarks[corner]), radius + 3, MARKED_CORNER, 1, cv2.LINE_AA)
    caption = np.zeros((CAPTION_HEIGHT, size, 3), np.uint8)
    if crop.has_pose:
        text = "y{:+.0f} p{:+.0f} r{:+.0f}".format(*np.degrees(crop.pose[:3]))
    else:
        text = "no pose"
    cv2.putText(caption, text, (2, CAPTION_HEIGHT - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 255, 255), 1,
                cv2.LINE_AA)
    return np.vstack([tile, caption])


def contact_sheet(tiles: Sequence[np.ndarray], columns: int | None = None) -> np.ndarray:
    """Equal-sized RGB ``tiles`` laid out row by row with a 2-pixel grey gutter."""
    if not tiles:
        raise ValueError("contact_sheet needs at least one tile")
    columns = columns or math.ceil(math.sqrt(len(tiles) * 2))
    rows = math.ceil(len(tiles) / columns)
    height, width = tiles[0].shape[:2]
    gutter = 2
    sheet = np.full((rows * (height + gutter) + gutter, columns * (width + gutter) + gutter, 3), 64, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        y, x = gutter + r * (height + gutter), gutter + c * (width + gutter)
        sheet[y:y + height, x:x + width] = tile
    return sheet


def pick_samples(datasets: Sequence[Sequence[FaceSample]], count: int,
                 rng: np.random.Generator) -> list[FaceSample]:
    """``count`` faces drawn without replacement from all ``datasets`` together (fewer if they hold fewer)."""
    index = [(d, i) for d, dataset in enumerate(datasets) for i in range(len(dataset))]
    chosen = rng.choice(len(index), size=min(count, len(index)), replace=False)
    return [datasets[index[k][0]][index[k][1]] for k in chosen]


def build_sheet(datasets: Sequence[Sequence[FaceSample]], size: int, count: int, seed: int,
                config: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """The RGB contact sheet of ``count`` augmented crops, all randomness from ``seed``."""
    rng = np.random.default_rng(seed)
    mean_face = build_mean_face()
    tiles = []
    for sample in pick_samples(datasets, count, rng):
        if sample.box is None:
            log.warning("skipping %s: no box to crop", sample.name)
            continue
        tiles.append(draw_crop(make_crop(sample, size, mean_face, rng, config)))
    return contact_sheet(tiles)


def _point(xy: Sequence[float]) -> tuple[int, int]:
    return int(round(float(xy[0]))), int(round(float(xy[1])))
