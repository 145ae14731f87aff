"""``python -m trainer calibrate-detector``: how the app's face-detector boxes sit relative to landmark boxes.

The network is trained on crops of the landmark box (+30%, square) but the app crops detector boxes.
This measures, on training faces, the landmark box's centre offset (in detector-box widths and
heights) and its side over the detector box's side (``app.core.crop.detector_box_fit``, the inverse of
the mapping the app crops by), as medians; ``app.core.crop.DETECTOR_BOX_FIT`` holds the result so the
app's crops match the training crops.
"""
from __future__ import annotations


import cv2
import numpy as np
from tqdm import tqdm

from app.core.crop import detector_box_fit
from app.core.detector import create_detector
from trainer.datasets.registry import open_dataset


def box_relations(specs: list[str], detector_name: str = "blazeface") -> np.ndarray:
    """Rows ``(dx, dy, side ratio)`` per face whose nearest detection lies within half a face of its landmark box."""
    detector = create_detector(detector_name)
    rows = []
    detect = getattr(detector, "detect_raw", detector.detect)  # the boxes as the model draws them
    try:
        for spec in specs:
            dataset = open_dataset(spec)
            for i in tqdm(range(len(dataset)), desc=spec, unit="face"):
                sample = dataset[i]
                frame = cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR)
                found = detect(frame)
                if len(found) == 0:
                    continue
                box = np.asarray(sample.box, dtype=np.float64)
                centre, side = (box[:2] + box[2:4]) / 2, max(box[2] - box[0], box[3] - box[1])
                centres = (found[:, :2] + found[:, 2:4]) / 2
                best = int(np.argmin(np.linalg.norm(centres - centre, axis=1)))
                if np.linalg.norm(centres[best] - centre) > side / 2:
                    continue
                rows.append(detector_box_fit(found[best, :4], box))
    finally:
        detector.close()
    return np.asarray(rows)
