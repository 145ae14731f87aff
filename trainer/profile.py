"""Synthesise turned heads from 300W-style faces (face profiling, as 300W-LP was made from 300W).

``python -m trainer profile --data 300w:../shared/data/300w/afw --data 300w:../shared/data/300w/helen_train
--out runs/profiled [--mesh dense|bfm68] [--per-face 8] [--yaw-max 90] [--yaw-min 0] [--pitch-max 15] [--seed 0]
[--limit N]`` fits each face in 3D, textures it from its photograph, turns it to ``--per-face`` sampled
poses and renders each. Two meshes:

- ``dense`` (the default): the Basel Face Model's dense face (53,215 vertices), fitted by 3DDFA_V2's
  regressor refined to the annotated landmarks (``trainer.profiling.dense_fit``), z-buffered with its
  background following it (``trainer.profiling.dense_render``), as 300W-LP was made. Training faces
  only (300W ``afw``, ``helen_train``): the regressor was trained on renders of ``helen_test``.
  Target pitch is clipped to ±30°. Pose_Para's ``tx, ty`` are where the BFM origin projects and its
  scale is pixels per BFM unit, as in AFLW2000-3D.
- ``bfm68``: the 68-point mean face with a lofted head around it (``trainer.profiling.fit``, ``mesh``,
  ``turn``), which draws the side of the head from the band around the photographed outline.

Every rendering is written as ``OUT/<dataset folder>/<face>_<k>.jpg`` with a ``.mat`` in the AFLW2000-3D /
300W-LP layout, so ``open_dataset("aflw2000:OUT")`` (alias ``300w-lp``) reads it back, plus ``OUT/contact_sheet.png``
(each row a face's plain training crop, then crops of four of its turns; landmarks green where
visible, red where self-occluded; the pose axes as in ``trainer.preview``) and ``OUT/summary.json``.

Choices:

- Poses. Per face, ``--per-face`` target yaws are drawn one in each of as many equal strata of
  ``[-yaw-max, yaw-max]`` (so every face covers the whole range and the set's yaw histogram is flat),
  or, with ``--yaw-min``, of ``[-yaw-max, -yaw-min] ∪ [yaw-min, yaw-max]`` (large poses only, leaving
  near-frontal faces to the photographs themselves); pitch is the face's own plus a uniform offset in
  ``±pitch-max``, roll the face's own.
- Unseen texture. A head turned far from its photographed pose shows surfaces the photograph does not
  have. The face is mirrored first (image and landmarks, as a mirror augmentation) when that puts its
  yaw on the target's side, so it turns the shorter way, away from the side the photograph shows: the
  far side of the face, which the photograph foreshortens, goes out of view, and what comes into view
  is the side and back of the head. With ``bfm68`` those are textured from the band just outside the
  photographed head outline (usually hair), stretched (``trainer.profiling.mesh``); with ``dense``, from
  the mirror side or the nearest skin the photograph shows (``trainer.profiling.dense_render``). Faces turned back towards
  frontal (targets between the photographed yaw and its mirror) show their foreshortened side
  stretched, as 300W-LP's do.
- Background (``bfm68``; ``dense`` is described in ``trainer.profiling.dense_render``). Held by a ring
  of fixed anchors around the head and bent radially between the old and the new outline; the neck
  twists progressively so the shoulders stay put. The output is panned to keep the face's landmark box
  where it was (the head turns about its neck and would otherwise swing the face out of the picture);
  the strip uncovered at one edge is the photograph mirrored.
- Landmarks (contour convention). The labels are the turned 3D landmarks projected, jaw points (0–16)
  included: fixed 3D points of the face, AFLW2000-3D's ``pt3d_68`` convention, which the aflw2000
  reader reads; not 300W's convention of moving the jaw points onto the visible contour. On turned
  faces the far jaw points then lie behind the face and are marked occluded; their heatmap targets
  (``trainer.losses`` keeps occluded-but-annotated points) are their true hidden positions, as for
  AFLW2000-3D, and ``L_AE`` on them agrees with the mean face, which is a fixed set of 3D points. PnP
  pose labels use only points 17–67 and do not see the choice. The photographs' own jaw points
  (contour convention) seed the fitted 3D jaw, so on faces photographed turned the fitted far jaw
  lies on the photographed outline rather than on the bone: a bias of a few pixels in those points.
- Visibility (``bfm68``; ``dense`` tests its z-buffer at each keypoint). Self-occlusion, a z-buffer test
  at each landmark: occluded when a camera-facing triangle of the face mesh lies in front of it, or when
  the surface around it faces away from the camera by more than 10° (``render.occluded_vertices``,
  ``turn``). Far-side points go first (the far ear-level jaw point at about 15° of yaw, the far eye by
  60–75°); at 90° about 30 of the 68 are occluded.
- Pose (figures for ``bfm68``). The written angles are the target angles: the rotation applied composed
  with the fitted pose (the turn is a rigid rotation of the fitted 3D face, so this is the rendered
  head's pose exactly). PnP on the rendered landmarks drifts from it by the fitted shape's difference
  from the mean face seen from a new side (median 1.8° of rotation for |yaw| < 30°, 2° to 60°, 4.5° near
  90°, over afw); on a face shaped like the mean face it recovers it to 0.1°
  (``tests/test_profile.py``). ``Pose_Para`` = [pitch, yaw, roll (radians, ``app.core.pose``'s
  convention), tx, ty (where the mean face's origin projects, 1-based pixels like ``pt3d_68``), 0, scale
  (pixels per mean-face unit)]. ``pt3d_68`` rows: x, y (1-based pixels) and depth (pixels, towards the
  viewer).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import scipy.io
from tqdm import tqdm

from trainer.augment import make_crop
from trainer.datasets.registry import open_dataset, parse_spec
from trainer.datasets.sample import FaceSample
from trainer.landmark_layouts import IBUG68
from trainer.mean_face import build_mean_face
from trainer.preview import contact_sheet, draw_crop
from trainer.profiling.dense_fit import fit_dense
from trainer.profiling.dense_render import DenseFace, DenseRender, DenseTexturer
from trainer.profiling.face3d import Face3D
from trainer.profiling.fit import FaceFit, fit_face
from trainer.profiling.mesh import HeadMesh, HeadTopology, head_mesh, head_topology
from trainer.profiling.turn import TurnedFace, turn_face

log = logging.getLogger(__name__)

JPEG_QUALITY = 95
SHEET_FACES = 12
SHEET_TURNS = 4
SHEET_CROP = 128
MESHES = ("dense", "bfm68")
DENSE_PITCH_LIMIT_DEG = 30.0
HELD_OUT_FROM_REGRESSOR = ("helen_test",)
"""Folders the dense fit refuses: 3DDFA_V2's regressor was trained on 300W-LP, rendered from them."""


@dataclass(frozen=True)
class ProfileSettings:
    """What to generate: ``per_face`` turns per face, target |yaw| in ``[yaw_min_deg, yaw_max_deg]`` on
    either side, pitch offset in ``±pitch_max_deg``, all randomness from ``seed``."""

    per_face: int = 8
    yaw_max_deg: float = 90.0
    pitch_max_deg: float = 15.0
    seed: int = 0
    yaw_min_deg: float = 0.0
    mesh: str = "dense"


def draw_targets(rng: np.random.Generator, settings: ProfileSettings) -> np.ndarray:
    """``(per_face, 2)`` target yaw and pitch offset in degrees: one yaw uniform in each of ``per_face``
    equal strata of ``[-yaw_max, -yaw_min] ∪ [yaw_min, yaw_max]``, the pitch offset uniform in ``±pitch_max``."""
    n = settings.per_face
    width = settings.yaw_max_deg - settings.yaw_min_deg
    edges = np.linspace(0.0, 2.0 * width, n + 1)
    u = edges[:-1] + rng.random(n) * np.diff(edges)
    yaw = np.where(u < width, u - settings.yaw_max_deg, u - width + settings.yaw_min_deg)
    pitch = rng.uniform(-settings.pitch_max_deg, settings.pitch_max_deg, n)
    return np.stack([yaw, pitch], -1)


def mirror_face(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The photograph flipped left-right with its 68 landmarks moved and renumbered (iBUG mirror order)."""
    flipped = np.ascontiguousarray(image[:, ::-1])
    points = np.asarray(landmarks, np.float64)[IBUG68.flip_array()].copy()
    points[:, 0] = image.shape[1] - 1 - points[:, 0]
    return flipped, points


@dataclass(frozen=True)
class Profiled:
    """One turned face ready to write: the rendering, the name of its source face, whether it was mirrored."""

    turned: TurnedFace | DenseRender
    source: str
    mirrored: bool


class FaceProfiler:
    """Turns one photographed face to any pose; fits it on construction (ValueError where PnP cannot)
    and its mirror image once, when first needed."""

    def __init__(self, sample: FaceSample, mean_face: np.ndarray, topology: HeadTopology) -> None:
        if len(sample.landmarks) != len(mean_face):
            raise ValueError(f"{sample.name}: profiling needs {len(mean_face)} landmarks, got {len(sample.landmarks)}")
        self.sample = sample
        self._mean_face = mean_face
        self._topology = topology
        self._fits: dict[bool, tuple[np.ndarray, FaceFit, HeadMesh]] = {}
        self._fitted(False)

    @property
    def pose(self) -> np.ndarray:
        """The photographed face's fitted pose (radians, pixels)."""
        return self._fitted(False)[1].pose

    def _fitted(self, mirrored: bool) -> tuple[np.ndarray, FaceFit, HeadMesh]:
        if mirrored not in self._fits:
            image, landmarks = self.sample.image, np.asarray(self.sample.landmarks, np.float64)
            if mirrored:
                image, landmarks = mirror_face(image, landmarks)
            fit = fit_face(landmarks, self._mean_face)
            self._fits[mirrored] = (image, fit, head_mesh(fit, landmarks, self._topology))
        return self._fits[mirrored]

    def turn(self, yaw_deg: float, pitch_offset_deg: float) -> Profiled:
        """The face turned to ``yaw_deg`` and its own pitch plus ``pitch_offset_deg`` (roll kept), from the
        photograph or its mirror image, whichever has its yaw on the target's side."""
        mirrored = bool(yaw_deg * self.pose[0] < 0)
        image, fit, mesh = self._fitted(mirrored)
        target = np.array([np.radians(yaw_deg), fit.pose[1] + np.radians(pitch_offset_deg), fit.pose[2]])
        return Profiled(turn_face(image, mesh, fit, target), self.sample.name, mirrored)


class DenseProfiler:
    """Turns one photographed face to any pose with the dense face; fits it on construction and its mirror
    image once, when first needed (the same shorter-way rule as ``FaceProfiler``)."""

    def __init__(self, sample: FaceSample, texturer: DenseTexturer) -> None:
        if len(sample.landmarks) != 68:
            raise ValueError(f"{sample.name}: dense profiling needs 68 landmarks, got {len(sample.landmarks)}")
        self.sample = sample
        self._texturer = texturer
        self._faces: dict[bool, DenseFace] = {}
        self._textured(False)

    @property
    def pose(self) -> np.ndarray:
        """The photographed face's fitted (yaw, pitch, roll) in radians."""
        return self._textured(False).fit.angles

    def _textured(self, mirrored: bool) -> DenseFace:
        if mirrored not in self._faces:
            image, landmarks = self.sample.image, np.asarray(self.sample.landmarks, np.float64)
            if mirrored:
                image, landmarks = mirror_face(image, landmarks)
            fit = fit_dense(image, landmarks, self._texturer.model)
            self._faces[mirrored] = self._texturer.texture(fit, image)
        return self._faces[mirrored]

    def turn(self, yaw_deg: float, pitch_offset_deg: float) -> Profiled:
        """The face turned to ``yaw_deg`` and its own pitch plus ``pitch_offset_deg`` (within ±30°, roll
        kept), from the photograph or its mirror image, whichever has its yaw on the target's side."""
        mirrored = bool(yaw_deg * self.pose[0] < 0)
        face = self._textured(mirrored)
        limit = np.radians(DENSE_PITCH_LIMIT_DEG)
        pitch = float(np.clip(face.fit.angles[1] + np.radians(pitch_offset_deg), -limit, limit))
        target = np.array([np.radians(yaw_deg), pitch, face.fit.angles[2]])
        return Profiled(self._texturer.render(face, target), self.sample.name, mirrored)

    def render(self, yaw_deg: float, pitch_deg: float) -> DenseRender:
        """The face at exactly ``yaw_deg`` and ``pitch_deg`` (roll its own), turned the shorter way as ``turn``."""
        face = self._textured(bool(yaw_deg * self.pose[0] < 0))
        return self._texturer.render(face, np.array([np.radians(yaw_deg), np.radians(pitch_deg), face.fit.angles[2]]))


def face_mat(profiled: Profiled) -> dict[str, np.ndarray | str]:
    """The ``.mat`` contents of one turned face (AFLW2000-3D / 300W-LP layout; see the module docstring)."""
    turned = profiled.turned
    yaw, pitch, roll, tx, ty, tz = turned.pose
    return {
        "Pose_Para": np.array([[pitch, yaw, roll, tx + 1.0, ty + 1.0, 0.0, 1.0 / tz]]),
        "pt3d_68": np.vstack([turned.points[:, 0] + 1.0, turned.points[:, 1] + 1.0, turned.points[:, 2]]),
        "visibility_68": turned.visibility.astype(np.uint8)[None],
        "source": profiled.source,
        "mirrored": np.array([[int(profiled.mirrored)]], np.uint8),
    }


def write_face(path: Path, profiled: Profiled) -> None:
    """Write ``path.jpg`` and ``path.mat`` for one turned face."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(profiled.turned.image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path.with_suffix(".jpg")), bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise OSError(f"could not write {path.with_suffix('.jpg')}")
    scipy.io.savemat(str(path.with_suffix(".mat")), face_mat(profiled), do_compression=True)


@dataclass(frozen=True)
class ProfileRun:
    """What a run wrote: ``written`` (output name without suffix, source face name) pairs, the target
    yaws in degrees, faces skipped, and the mean milliseconds per written image (render + write)."""

    written: list[tuple[str, str]]
    yaws_deg: np.ndarray
    skipped: list[str]
    ms_per_image: float


def profile_datasets(specs: Sequence[str], out: Path, settings: ProfileSettings = ProfileSettings(),
                     limit: int | None = None, progress: bool = True) -> ProfileRun:
    """Turn every face of the datasets ``specs`` (at most ``limit`` faces in all) and write them under ``out``.

    Face ``i`` of dataset ``d`` draws its poses from ``default_rng([seed, d, i])``: equal seeds give
    equal outputs whatever ``limit`` is.
    """
    if settings.mesh not in MESHES:
        raise ValueError(f"unknown mesh {settings.mesh!r}; choose one of {', '.join(MESHES)}")
    if settings.mesh == "dense":
        held_out = [spec for spec in specs if parse_spec(spec)[1].name in HELD_OUT_FROM_REGRESSOR]
        if held_out:
            raise ValueError(f"the dense fit's regressor was trained on renders of {', '.join(held_out)}: "
                             "profile training faces only")
        texturer = DenseTexturer(Face3D())

        def make_profiler(sample: FaceSample) -> FaceProfiler | DenseProfiler:
            return DenseProfiler(sample, texturer)
    else:
        mean_face = build_mean_face()
        topology = head_topology(mean_face)

        def make_profiler(sample: FaceSample) -> FaceProfiler | DenseProfiler:
            return FaceProfiler(sample, mean_face, topology)
    jobs = []
    for d, spec in enumerate(specs):
        _, path = parse_spec(spec)
        dataset = open_dataset(spec)
        jobs += [(d, path.name, dataset, i) for i in range(len(dataset))]
    jobs = jobs[:limit] if limit is not None else jobs
    written, yaws, skipped = [], [], []
    busy = 0.0
    bar = tqdm(jobs, desc="profiling", unit="face", disable=not progress)
    for d, tag, dataset, i in bar:
        sample = dataset[i]
        rng = np.random.default_rng([settings.seed, d, i])
        try:
            profiler = make_profiler(sample)
        except (ValueError, np.linalg.LinAlgError) as error:
            log.warning("skipping %s: %s", sample.name, error)
            skipped.append(sample.name)
            continue
        for k, (yaw, pitch) in enumerate(draw_targets(rng, settings)):
            start = time.perf_counter()
            name = f"{tag}/{sample.name}_{k}"
            try:
                profiled = profiler.turn(float(yaw), float(pitch))
            except (ValueError, np.linalg.LinAlgError, cv2.error) as error:
                log.warning("skipping turn %d of %s: %s", k, sample.name, error)
                continue
            write_face(out / name, profiled)
            busy += time.perf_counter() - start
            written.append((name, f"{tag}/{sample.name}"))
            yaws.append(yaw)
        bar.set_postfix(ms_per_image=f"{1000 * busy / max(len(written), 1):.0f}")
    return ProfileRun(written, np.asarray(yaws), skipped, 1000 * busy / max(len(written), 1))


def build_contact_sheet(specs: Sequence[str], out: Path, run: ProfileRun, faces: int = SHEET_FACES,
                        turns: int = SHEET_TURNS, size: int = SHEET_CROP) -> np.ndarray:
    """Rows of ``faces`` faces spread over the run: the original's plain training crop, then plain crops
    of ``turns`` of its turnings (spread in yaw), read back through the aflw2000 reader."""
    mean_face = build_mean_face()
    generated = open_dataset(f"aflw2000:{out}")
    index = {name: k for k, name in enumerate(generated.names)}
    originals = {}
    for spec in specs:
        _, path = parse_spec(spec)
        dataset = open_dataset(spec)
        originals.update({f"{path.name}/{name}": (dataset, k) for k, name in enumerate(dataset.names)})
    by_source: dict[str, list[str]] = {}
    for name, source in run.written:
        by_source.setdefault(source, []).append(name)
    sources = list(by_source)
    chosen = [sources[int(k)] for k in np.unique(np.linspace(0, len(sources) - 1, min(faces, len(sources))).round())]
    tiles = []
    for source in chosen:
        dataset, k = originals[source]
        row = [draw_crop(make_crop(dataset[k], size, mean_face))]
        outputs = [generated[index[name]] for name in by_source[source]]
        outputs.sort(key=lambda s: float(s.pose[0]))
        picks = np.unique(np.linspace(0, len(outputs) - 1, min(turns, len(outputs))).round()).astype(int)
        row += [draw_crop(make_crop(outputs[p], size, mean_face)) for p in picks]
        row += [np.zeros_like(row[0])] * (turns + 1 - len(row))
        tiles += row
    return contact_sheet(tiles, columns=turns + 1)
