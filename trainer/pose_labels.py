"""Pose labels from landmarks: weak-perspective PnP of a face's 68 landmarks with the model's mean face.

The paper labels 300W-style data with POSIT and a mean face; we fit ``app.core.pose.fit_pose`` (the
same camera ``π`` that ``L_AE`` uses). Only the 51 inner points (17–67) are used: the 300W jaw
points follow the visible contour, not fixed 3D points, and bias PnP on turned faces
(``../shared/CONVENTIONS.md``; HopeNet section 4.2).
"""
from __future__ import annotations

import numpy as np

from app.core.pose import fit_pose

INNER_POINTS = slice(17, 68)


def pnp_weights(mask: np.ndarray) -> np.ndarray:
    """Per-landmark PnP weights: annotated inner points 1, jaw line and missing points 0."""
    weights = np.zeros(len(mask))
    weights[INNER_POINTS] = 1.0
    return weights * np.asarray(mask, dtype=np.float64)


def pose_from_landmarks(landmarks: np.ndarray, mask: np.ndarray, mean_face: np.ndarray) -> np.ndarray | None:
    """``(yaw, pitch, roll, tx, ty, tz)`` (radians; translation in the landmarks' unit) or None.

    None when the layout is not the mean face's (68 points) or fewer than 6 inner points are annotated.
    """
    if len(landmarks) != len(mean_face):
        return None
    weights = pnp_weights(mask)
    if (weights > 0).sum() < 6:
        return None
    return fit_pose(landmarks, mean_face, weights)


def label_errors(spec: str) -> dict[str, float | int]:
    """MAE (degrees) of the PnP labels against a dataset's own pose, over faces that have both."""
    from trainer.datasets.registry import open_dataset
    from trainer.mean_face import build_mean_face
    from trainer.metrics import pose_mae

    mean_face = build_mean_face()
    fitted, truth = [], []
    for sample in open_dataset(spec):
        if sample.pose is None or not sample.mask.any():
            continue
        pose = pose_from_landmarks(sample.landmarks, sample.mask, mean_face)
        if pose is not None:
            fitted.append(np.degrees(pose[:3]))
            truth.append(sample.pose)
    return {"faces": len(fitted), **pose_mae(np.array(fitted), np.array(truth))}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m trainer.pose_labels",
                                     description="How close PnP labels from landmarks come to a dataset's pose labels.")
    parser.add_argument("--data", required=True, metavar="KIND:PATH", help="data with landmarks and pose, e.g. aflw2000:…")
    args = parser.parse_args(argv)
    print(json.dumps(label_errors(args.data)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
