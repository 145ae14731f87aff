"""300W-style folders: ``NAME.jpg``/``NAME.png`` with ``NAME.pts`` (iBUG 68 landmarks, no pose, no occlusion)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from app.core.crop import landmark_box
from trainer.datasets.dataset import FaceDataset, read_image
from trainer.datasets.sample import FaceSample

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg")


def read_pts(path: Path) -> np.ndarray:
    """The ``(n_points, 2)`` coordinates of a ``.pts`` file exactly as written (1-based pixels in 300W)."""
    try:
        lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: malformed .pts file (not text)") from error
    header = {}
    body_start = None
    for k, line in enumerate(lines):
        if line == "{":
            body_start = k + 1
            break
        key, _, value = line.partition(":")
        header[key.strip()] = value.strip()
    try:
        count = int(header["n_points"])
    except (KeyError, ValueError):
        raise ValueError(f"{path}: malformed .pts file (no 'n_points:' header line before '{{')") from None
    if body_start is None or "}" not in lines[body_start:]:
        raise ValueError(f"{path}: malformed .pts file (landmarks must sit between '{{' and '}}')")
    body = lines[body_start:lines.index("}", body_start)]
    try:
        points = np.array([[float(v) for v in line.split()] for line in body], dtype=np.float64)
    except ValueError:
        raise ValueError(f"{path}: malformed .pts file (non-numeric landmark line)") from None
    if points.shape != (count, 2):
        raise ValueError(f"{path}: malformed .pts file (n_points is {count} but found {len(body)} 'x y' lines)")
    return points


class W300Dataset(FaceDataset):
    """Every ``.pts`` under ``root`` (searched recursively) with the image of the same name beside it.

    Landmarks are converted from the files' 1-based pixels to 0-based (minus 1). All landmarks are
    annotated and, lacking occlusion labels, marked visible; the box is their enclosing rectangle.
    """

    kind = "300w"

    def __init__(self, root: Path) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"300w folder {root} does not exist")
        files = sorted(p for p in root.rglob("*") if p.is_file())
        by_stem = {(p.with_suffix(""), p.suffix.lower()): p for p in files}
        pts = [p for p in files if p.suffix.lower() == ".pts"]
        if not pts:
            raise FileNotFoundError(f"no .pts files under {root}")
        self._pts: list[Path] = []
        self._images: list[Path] = []
        for path in pts:
            found = (by_stem.get((path.with_suffix(""), suffix)) for suffix in IMAGE_SUFFIXES)
            image = next((p for p in found if p is not None), None)
            if image is None:
                raise FileNotFoundError(f"{path} has no image of the same name ({', '.join(IMAGE_SUFFIXES)})")
            self._pts.append(path)
            self._images.append(image)
        super().__init__(root, [p.relative_to(root).with_suffix("").as_posix() for p in self._pts])
        log.info("300w: %d faces under %s", len(self), root)

    def landmarks(self, index: int) -> np.ndarray:
        """Face ``index``'s landmarks ``(68, 2)`` (0-based pixels) without reading its image."""
        return (read_pts(self._pts[index]) - 1.0).astype(np.float32)

    def _load(self, index: int) -> FaceSample:
        landmarks = self.landmarks(index)
        count = len(landmarks)
        return FaceSample(
            image=read_image(self._images[index]),
            landmarks=landmarks,
            mask=np.ones(count, bool),
            visibility=np.ones(count, bool),
            pose=None,
            box=landmark_box(landmarks).astype(np.float32),
            name=self.names[index],
        )
