"""COFW ``.mat`` files (``COFW_train_color.mat`` / ``COFW_test_color.mat``): 29 landmarks with occlusion flags.

Layout (MATLAB v5 as released): a cell array of images (``IsTr`` / ``IsT``; RGB or greyscale
uint8), ``phisTr`` / ``phisT`` ``(N, 87)`` = 29 x, 29 y, 29 flags (1 = occluded) in 1-based pixels,
and ``bboxesTr`` / ``bboxesT`` ``(N, 4)`` = x, y, w, h. The whole file is loaded at construction
(COFW is small); only the RGB conversion happens per item.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import scipy.io

from trainer.datasets.dataset import FaceDataset, as_rgb
from trainer.datasets.sample import FaceSample

log = logging.getLogger(__name__)

LANDMARKS = 29
SPLITS = (("IsT", "phisT", "bboxesT"), ("IsTr", "phisTr", "bboxesTr"))
"""(images, shapes, boxes) variable names of the test and the training file."""


def load_cofw(path: Path) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """``(images, phis (N, 87), boxes (N, 4))`` as stored in a COFW ``.mat`` (MATLAB v5)."""
    try:
        mat = scipy.io.loadmat(str(path))
    except NotImplementedError:
        raise ValueError(f"{path}: MATLAB v7.3 (HDF5) files are not supported; re-save it as v7 "
                         "(MATLAB or Octave: load it, then save(..., '-v7'))") from None
    except Exception as error:  # scipy raises several types for damaged or foreign files
        raise ValueError(f"{path}: not a readable MATLAB file ({error})") from None
    keys = next((k for k in SPLITS if all(name in mat for name in k)), None)
    if keys is None:
        expected = " or ".join("/".join(k) for k in SPLITS)
        raise ValueError(f"{path}: not a COFW file (expected variables {expected})")
    cells, phis, boxes = (mat[name] for name in keys)
    images = list(np.asarray(cells, dtype=object).ravel())
    phis = np.asarray(phis, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64)
    if phis.shape != (len(images), 3 * LANDMARKS) or boxes.shape != (len(images), 4):
        raise ValueError(f"{path}: {len(images)} images but {keys[1]} {phis.shape} and {keys[2]} {boxes.shape} "
                         f"(expected ({len(images)}, {3 * LANDMARKS}) and ({len(images)}, 4))")
    return images, phis, boxes


class CofwDataset(FaceDataset):
    """The faces of one COFW ``.mat``; ``root`` is the file, names are ``STEM/NNNN`` (0-based index).

    Landmarks and box are moved from 1-based to 0-based pixels; every landmark is annotated,
    ``visibility`` is the complement of the occlusion flag; the box ``(x, y, w, h)`` becomes
    ``(x - 1, y - 1, x - 1 + w, y - 1 + h)``.
    """

    kind = "cofw"

    def __init__(self, path: Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"cofw file {path} does not exist (pass the .mat file itself)")
        self._images, phis, boxes = load_cofw(path)
        self._landmarks = np.stack([phis[:, :LANDMARKS], phis[:, LANDMARKS:2 * LANDMARKS]], -1) - 1.0
        self._visibility = phis[:, 2 * LANDMARKS:] == 0
        x1y1 = boxes[:, :2] - 1.0
        self._boxes = np.concatenate([x1y1, x1y1 + boxes[:, 2:]], 1)
        super().__init__(path, [f"{path.stem}/{i:04d}" for i in range(len(self._images))])
        log.info("cofw: %d faces in %s", len(self), path)

    def _load(self, index: int) -> FaceSample:
        return FaceSample(
            image=as_rgb(self._images[index], f"{self.root} image {index}"),
            landmarks=self._landmarks[index].astype(np.float32),
            mask=np.ones(LANDMARKS, bool),
            visibility=self._visibility[index].copy(),
            pose=None,
            box=self._boxes[index].astype(np.float32),
            name=self.names[index],
        )
