"""A contact sheet of dense-profiled faces at fixed poses, for looking at the renders.

``python -m trainer pose-sheet --data 300w:../shared/data/300w/afw --faces 3 --out sheet.png``
renders each of ``--faces`` faces (spread over the dataset) at yaw 0, 45, 70 and 90° and at pitch ±30°
(its own roll), beside its photograph, as ``trainer.profile --mesh dense`` does (from the photograph or its
mirror image, whichever turns the shorter way), as training crops with landmarks (green visible, red hidden)
and pose axes (``trainer.preview.draw_crop``).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.core.crop import landmark_box
from trainer.augment import make_crop
from trainer.datasets.sample import FaceSample
from trainer.mean_face import build_mean_face
from trainer.preview import contact_sheet, draw_crop
from trainer.profiling.dense_render import DenseRender, DenseTexturer
from trainer.profiling.face3d import Face3D

SHEET_POSES = ((0.0, 0.0), (45.0, 0.0), (70.0, 0.0), (90.0, 0.0), (0.0, 30.0), (0.0, -30.0))
"""(yaw, pitch) in degrees of each column after the photograph."""


def render_sample(render: DenseRender, name: str) -> FaceSample:
    """A render as a dataset sample (pose in degrees), so it crops and draws like training data."""
    landmarks = render.landmarks.astype(np.float32)
    return FaceSample(image=render.image, landmarks=landmarks, mask=np.ones(68, bool), visibility=render.visibility,
                      pose=np.degrees(render.pose[:3]).astype(np.float32), box=landmark_box(landmarks), name=name)


def pose_sheet(samples: Sequence[FaceSample], poses: Sequence[tuple[float, float]] = SHEET_POSES,
               size: int = 160) -> np.ndarray:
    """RGB sheet: one row per face, its photograph's plain crop then its renders at ``poses`` (roll its own)."""
    from trainer.profile import DenseProfiler

    texturer = DenseTexturer(Face3D())
    mean_face = build_mean_face()
    tiles = []
    for sample in samples:
        profiler = DenseProfiler(sample, texturer)
        tiles.append(draw_crop(make_crop(sample, size, mean_face)))
        for yaw, pitch in poses:
            render = profiler.render(yaw, pitch)
            tiles.append(draw_crop(make_crop(render_sample(render, sample.name), size, mean_face)))
    return contact_sheet(tiles, columns=len(poses) + 1)
