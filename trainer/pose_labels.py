"""Pose labels from landmarks: weak-perspective PnP of a face's 68 landmarks with the model's mean face.

The fit itself is ``app.core.landmark_pose`` (full mode reports the same fit of its own landmarks);
this module checks it against datasets that carry their own pose.
"""
from __future__ import annotations

import numpy as np

from app.core.landmark_pose import pose_from_landmarks


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
