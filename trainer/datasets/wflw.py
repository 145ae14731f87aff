"""WFLW annotation files (``list_98pt_rect_attr_train.txt`` / ``..._test.txt``): 98 landmarks, box and attributes.

Each line: 196 numbers (98 ``x y`` pairs), the box ``x_min y_min x_max y_max``, six attribute flags
(pose, expression, illumination, make-up, occlusion, blur) and the image path relative to
``WFLW_images``. In the released layout that folder sits beside ``WFLW_annotations``:
``ROOT/WFLW_annotations/list_98pt_rect_attr_train_test/FILE.txt`` and ``ROOT/WFLW_images/<path>``,
so it is looked for next to the annotation file and up to two folder levels above it.
Coordinates are taken as written (0-based pixels, as the public WFLW loaders use them).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from trainer.datasets.dataset import FaceDataset, read_image
from trainer.datasets.sample import FaceSample

log = logging.getLogger(__name__)

LANDMARKS = 98
ATTRIBUTES = ("pose", "expression", "illumination", "make-up", "occlusion", "blur")
IMAGES_FOLDER = "WFLW_images"
_FIELDS = 2 * LANDMARKS + 4 + len(ATTRIBUTES) + 1


def find_images_folder(annotation: Path) -> Path:
    """The ``WFLW_images`` folder for ``annotation``: beside it or up to two levels above its folder."""
    folders = [annotation.parent, *list(annotation.parent.parents)[:2]]
    for folder in folders:
        if (folder / IMAGES_FOLDER).is_dir():
            return folder / IMAGES_FOLDER
    searched = ", ".join(str(f) for f in folders)
    raise FileNotFoundError(f"no {IMAGES_FOLDER} folder for {annotation} (looked in {searched})")


def read_wflw_annotations(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``(landmarks (N, 98, 2), boxes (N, 4), attributes (N, 6) bool, image paths)`` of one annotation file."""
    landmarks, boxes, attributes, images = [], [], [], []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != _FIELDS:
            raise ValueError(f"{path} line {number}: expected {_FIELDS} fields "
                             f"(196 coordinates, 4 box, 6 attributes, image path), got {len(fields)}")
        try:
            values = np.array(fields[:-1], dtype=np.float64)
        except ValueError:
            raise ValueError(f"{path} line {number}: non-numeric coordinate, box or attribute") from None
        landmarks.append(values[:2 * LANDMARKS].reshape(LANDMARKS, 2))
        boxes.append(values[2 * LANDMARKS:2 * LANDMARKS + 4])
        attributes.append(values[2 * LANDMARKS + 4:] != 0)
        images.append(fields[-1])
    if not images:
        raise ValueError(f"{path}: no annotation lines")
    return np.stack(landmarks), np.stack(boxes), np.stack(attributes), images


class WflwDataset(FaceDataset):
    """The faces of one WFLW annotation file; ``root`` is that file.

    Names are the image path without extension plus ``_K``, the face's index within its image
    (WFLW images can hold several annotated faces). ``attributes`` ``(N, 6)`` bool gives the six
    subset flags in ``ATTRIBUTES`` order for per-subset evaluation. Every landmark is annotated and
    marked visible (WFLW's occlusion label is per face, not per landmark).
    """

    kind = "wflw"

    def __init__(self, path: Path) -> None:
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"wflw path {path} is a folder; pass the annotation file "
                             "(e.g. WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_test.txt)")
        if not path.is_file():
            raise FileNotFoundError(f"wflw annotation file {path} does not exist")
        self.images_folder = find_images_folder(path)
        self._landmarks, self._boxes, self.attributes, relative = read_wflw_annotations(path)
        self._images = [self.images_folder / r for r in relative]
        seen: dict[str, int] = {}
        names = []
        for r in relative:
            stem = Path(r).with_suffix("").as_posix()
            names.append(f"{stem}_{seen.get(stem, 0)}")
            seen[stem] = seen.get(stem, 0) + 1
        super().__init__(path, names)
        log.info("wflw: %d faces in %s, images under %s", len(self), path, self.images_folder)

    def _load(self, index: int) -> FaceSample:
        return FaceSample(
            image=read_image(self._images[index]),
            landmarks=self._landmarks[index].astype(np.float32),
            mask=np.ones(LANDMARKS, bool),
            visibility=np.ones(LANDMARKS, bool),
            pose=None,
            box=self._boxes[index].astype(np.float32),
            name=self.names[index],
        )
