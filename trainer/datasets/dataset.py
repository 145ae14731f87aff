"""The lazy dataset every reader builds on, and the helpers readers share (image reading, empty labels)."""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from trainer.datasets.sample import FaceSample


class FaceDataset(Sequence[FaceSample]):
    """An indexable set of annotated faces of one ``kind``.

    Construction only lists files (and parses index files that hold every annotation at once);
    ``__getitem__`` reads the image and its annotation, so opening a large dataset is cheap and a
    training loader's workers do the reading. ``names`` gives one stable name per item without
    reading images.
    """

    kind: str = ""

    def __init__(self, root: Path, names: list[str]) -> None:
        self.root = Path(root)
        self.names = names

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> FaceSample:  # type: ignore[override]
        """The ``i``-th face (negative indices count from the end)."""
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"{type(self).__name__} indices must be integers, not {type(i).__name__}")
        n = len(self)
        index = int(i) + n if i < 0 else int(i)
        if not 0 <= index < n:
            raise IndexError(f"index {i} out of range for {self.kind} dataset of {n} faces at {self.root}")
        return self._load(index)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, root={str(self.root)!r}, faces={len(self)})"

    @abstractmethod
    def _load(self, index: int) -> FaceSample:
        """Read item ``index`` (already range-checked)."""


def read_image(path: Path) -> np.ndarray:
    """The image at ``path`` as RGB uint8 ``(H, W, 3)``; greyscale files are replicated to three channels."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def as_rgb(image: np.ndarray, source: str) -> np.ndarray:
    """An in-memory RGB or greyscale array as contiguous RGB uint8 ``(H, W, 3)``; ``source`` names it in errors."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{source}: expected an HxW or HxWx3 image, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"{source}: expected uint8 pixels, got {array.dtype}")
    return np.ascontiguousarray(array)


def no_landmarks(count: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(landmarks, mask, visibility)`` for a face with ``count`` unannotated landmarks (zeros, all False)."""
    return np.zeros((count, 2), np.float32), np.zeros(count, bool), np.zeros(count, bool)
