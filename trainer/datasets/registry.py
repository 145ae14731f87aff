"""Dataset specs ``KIND:PATH`` and the table that maps each kind to its reader."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from trainer.datasets.aflw2000 import Aflw2000Dataset
from trainer.datasets.biwi import BiwiDataset
from trainer.datasets.cofw import CofwDataset
from trainer.datasets.dataset import FaceDataset
from trainer.datasets.w300 import W300Dataset
from trainer.datasets.wflw import WflwDataset

READERS: dict[str, Callable[[Path], FaceDataset]] = {
    "300w": W300Dataset,
    "aflw2000": Aflw2000Dataset,
    "biwi": BiwiDataset,
    "cofw": CofwDataset,
    "wflw": WflwDataset,
}
KINDS: tuple[str, ...] = tuple(READERS)
ALIASES = {"300w-lp": "aflw2000"}
"""Other names for a kind: 300W-LP has AFLW2000-3D's ``.jpg`` + ``.mat`` layout."""


class DatasetPathError(FileNotFoundError, ValueError):
    """A spec's path does not exist; both a ``FileNotFoundError`` and a ``ValueError`` (a bad spec)."""


def parse_spec(spec: str) -> tuple[str, Path]:
    """``"KIND:PATH"`` → ``(kind, path)`` with aliases resolved; ValueError for a bad kind or a missing path."""
    kind, sep, path = spec.partition(":")
    kind = ALIASES.get(kind.strip().lower(), kind.strip().lower())
    if not sep or not path.strip():
        raise ValueError(f"dataset spec {spec!r} must be KIND:PATH with KIND one of {', '.join(KINDS)}")
    if kind not in READERS:
        known = ", ".join([*KINDS, *ALIASES])
        raise ValueError(f"unknown dataset kind {kind!r} in {spec!r}; known kinds: {known}")
    location = Path(path.strip()).expanduser()
    if not location.exists():
        raise DatasetPathError(f"dataset path {location} in {spec!r} does not exist")
    return kind, location


def open_dataset(spec: str) -> FaceDataset:
    """The dataset named by ``"KIND:PATH"`` (e.g. ``"300w:../shared/data/300w/afw"``); images are read lazily."""
    kind, path = parse_spec(spec)
    return READERS[kind](path)
