"""Per-frame head-pose processing and the Qt-free frame loop that the viewer and the headless command share.

``FacePipeline.process`` turns one BGR frame into a ``FrameResult``: find the faces (the tracker's
faces and the detector's, ``app.core.tracking.FaceTracker``), hand their face boxes to
``PoseEstimator.estimate_faces`` (crop, one batched run, refine, pose, back to frame pixels), then
smooth, when asked, the frame-relative values.

Framing from the face (``app.core.framing``), full mode: a face whose landmark box disagrees with the box
it was cropped from is cropped again from its landmark box (one more run, for those faces only), and in
video each face's next crop is carried from this frame's landmark box, as face trackers do; a new face
starts from the face box its detector box stands for (``crop.face_box_from_detection``). Pose mode crops
every face from this frame's detection: the encoder's pose follows the crop more than the face.

The detector runs every frame. The quick pass (BlazeFace short range) confirms the faces it found
before and finds new near faces; the whole detector (``blazeface``: short range and tiled full range,
merged) runs on the first frame, every ``FaceTracker.full_every`` frames (20: a new far face is found
within two thirds of a second at 30 fps), while a face is lost (not found, or its crop framed no face; its id
waits ``max_missed`` frames), where the quick pass misses a face it found before, and in pose mode
whenever a face is one the quick pass does not find. ``FaceResult.box`` is the face box the reported pose
was cropped from (landmark-style, the crop rule's input); ``score`` the confidence of the face's latest
detection (this frame's where it was detected, else the one that found or last confirmed it).

``FrameLoop`` pulls frames from a ``VideoSource`` through a pipeline until the source ends or someone
requests a stop, and keeps the latest frame and result for whoever wants to look (the viewer's display
timer).

Stages timed in ``FrameResult.timings_ms``: ``decode`` (added by ``FrameLoop``), ``detect``
(detector and tracker), ``crop`` (warp and normalisation, and mapping the outputs back to the frame),
``infer`` (the ONNX Runtime run alone), ``refine`` (full mode only: the refiner, and the pose fitted to
the final landmarks), ``quality`` (pose mode, frames with a full-network quality check), ``smooth`` (only
with smoothing on: the One Euro filters) and ``overlay`` (added by whoever draws).

Quality (``app.core.quality``): full mode scores every face from its heatmaps. The encoder alone cannot tell
faces from non-faces well (its two pose heads' agreement flags about a quarter of non-face crops), so pose
mode takes each face's ``quality`` and ``valid`` from the full network too, run on that face alone when
its id is new and then every ``QUALITY_CHECK_EVERY`` frames; between checks a face keeps its latest. Where
the full model cannot be opened, pose mode keeps the encoder's own score (one warning).

Full mode refines landmarks with the occlusion-aware regressor (``app.core.refiner``) whenever the
models folder holds ``or.npz``: it is read on the first full-mode use, and a file that is truncated,
of another version or trained for another model is a ``ModelError`` naming it. Its pose is then the
PnP pose of those landmarks (``app.core.landmark_pose``), not the network's ``fc_pose``, which
pose-only mode reports.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from app.core import crop, framing
from app.core.detector import MIN_SCORE, create_detector, merge
from app.core.estimator import DEFAULT_MODELS_DIR, PoseEstimator, Refiner, ms_since
from app.core.model_io import ModelError, ModelInfo, check_mode
from app.core.refiner import OR_FILE, OcclusionAwareRegressor
from app.core.results import FaceEstimate, FaceResult, FrameResult
from app.core.smoothing import FaceSmoother
from app.core.tracking import Assignment, FaceTracker
from app.core.video import VideoSource

log = logging.getLogger(__name__)

AUTO_REFINER = "auto"
QUALITY_CHECK_EVERY = 150
"""Pose mode: frames between two full-network quality checks of one face (5 s at 30 fps). A check costs one
full-network run for that face, about four pose-mode frames' time; a face is checked when its id is new, which is
when a detector's false positive starts, so the checks in between only catch a face that stops being one."""
"""``FacePipeline(refiner=AUTO_REFINER)``: use ``or.npz`` from the models folder when it is there."""


def check_frame(frame_bgr: np.ndarray) -> None:
    """``ValueError`` unless ``frame_bgr`` is a non-empty ``(H, W, 3)`` uint8 image."""
    if not isinstance(frame_bgr, np.ndarray):
        raise ValueError(f"frame must be a numpy array, got {type(frame_bgr).__name__}")
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.shape[0] == 0 or frame_bgr.shape[1] == 0:
        raise ValueError(f"frame must be an (H, W, 3) BGR image, got shape {frame_bgr.shape}")
    if frame_bgr.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got {frame_bgr.dtype}")


def face_boxes_of(detector_boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` face boxes (``crop.face_box_from_detection``) of detector boxes ``(N, 4+)``: what the app crops."""
    return np.array([crop.face_box_from_detection(row[:4]) for row in detector_boxes]).reshape(-1, 4)


class FacePipeline:
    """Detector, tracker, ONNX models and optional smoothing, run on one frame at a time.

    ``set_mode`` and ``set_smoothing`` may be called from another thread; they take effect on the
    next frame. The model of a mode is opened on its first frame (``load`` opens it up front).
    ``refiner``: ``AUTO_REFINER`` (the default) uses ``models_dir/or.npz`` when it exists, None uses
    none, or pass any ``Refiner`` callable. ``precision``: ``auto`` (the INT8 variant on the CPU where
    ``precision.json`` judged it accurate and it runs fast enough here), ``fp32`` or ``int8`` (``app.core.precision``).
    """

    def __init__(self, models_dir: Path = DEFAULT_MODELS_DIR, mode: str = "pose", smooth: bool = False,
                 detector: str = "blazeface", providers: Sequence[str] | str | None = None,
                 refiner: Refiner | str | None = AUTO_REFINER, min_score: float = MIN_SCORE,
                 precision: str = "auto") -> None:
        check_mode(mode)
        self._mode = mode
        self._smooth = smooth
        self._restart_filters = False
        self._settings_lock = threading.Lock()
        self._estimator = PoseEstimator(models_dir, providers, precision=precision)
        self._detector = create_detector(detector, min_score)
        self._tracker = FaceTracker()
        self._smoother = FaceSmoother()
        self._checks: dict[int, tuple[int, float, bool]] = {}
        """Pose mode: face id -> (frame index, quality, valid) of its latest full-network check."""
        self._full_checks = True
        self._refiner_lock = threading.Lock()
        self._refiner_file: Path | None = None
        self.refiner: Refiner | None = None
        if refiner == AUTO_REFINER:
            candidate = Path(models_dir) / OR_FILE
            self._refiner_file = candidate if candidate.is_file() else None
        elif isinstance(refiner, str):
            raise ValueError(f"refiner must be a callable, None or {AUTO_REFINER!r}, got {refiner!r}")
        else:
            self.refiner = refiner

    @property
    def mode(self) -> str:
        """``pose`` (encoder only) or ``full`` (landmarks and visibility too)."""
        with self._settings_lock:
            return self._mode

    def set_mode(self, mode: str) -> None:
        """Switch mode from the next frame on; ``ValueError`` for an unknown mode."""
        with self._settings_lock:
            self._mode = check_mode(mode)

    @property
    def smoothing(self) -> bool:
        """Whether per-face One Euro smoothing is on."""
        with self._settings_lock:
            return self._smooth

    def set_smoothing(self, enabled: bool) -> None:
        """Turn smoothing on or off from the next frame on; turning it on starts the filters afresh."""
        with self._settings_lock:
            self._restart_filters = self._restart_filters or (enabled and not self._smooth)
            self._smooth = bool(enabled)

    @property
    def provider(self) -> str:
        """The ONNX Runtime execution provider in use, e.g. ``CPUExecutionProvider``."""
        return self._estimator.provider

    def precision(self, mode: str | None = None) -> str:
        """``fp32`` or ``int8``: what the ``mode`` model (default: the current mode's) runs at."""
        return self._estimator.precision(mode or self.mode)

    @property
    def tracker(self) -> FaceTracker:
        """The face tracker (a resumed run seeds it with the ids it already wrote)."""
        return self._tracker

    def reset_tracks(self) -> None:
        """Forget every face (a new video starts): ids start again at 1 and the filters afresh."""
        self._tracker = FaceTracker()
        self._smoother.reset()
        self._checks.clear()

    def load(self, mode: str | None = None) -> ModelInfo:
        """Open the model of ``mode`` (default: the current one) now, and in full mode the refiner;
        ``ModelError`` if either is unusable."""
        mode = mode or self.mode
        info = self._estimator.info(mode)
        if mode == "full":
            self._full_mode_refiner(info)
        return info

    def _full_mode_refiner(self, info: ModelInfo) -> Refiner | None:
        """The refiner for full mode, reading ``or.npz`` on first use and checking it against the model."""
        with self._refiner_lock:
            if self._refiner_file is not None:
                regressor = OcclusionAwareRegressor.load(self._refiner_file)
                regressor.check(info)
                self.refiner, self._refiner_file = regressor, None
            return self.refiner

    @property
    def refiner_name(self) -> str | None:
        """What refines full-mode landmarks: ``or.npz`` (or the callable's ``label`` or type name), or None."""
        with self._refiner_lock:
            if self._refiner_file is not None:
                return self._refiner_file.name
            refiner = self.refiner
        if refiner is None:
            return None
        return Path(refiner.source).name if isinstance(refiner, OcclusionAwareRegressor) else _label(refiner)

    def process(self, frame_bgr: np.ndarray, index: int = 0, time_s: float = 0.0) -> FrameResult:
        """All faces of one BGR frame; ``ValueError`` for something that is not an ``(H, W, 3)`` uint8 image."""
        check_frame(frame_bgr)
        with self._settings_lock:
            mode, smooth, restart = self._mode, self._smooth, self._restart_filters
            self._restart_filters = False
        if restart:
            self._smoother.reset()
        timings: dict[str, float] = {}

        start = time.perf_counter()
        assigned = self._assign(frame_bgr, carry=framing.reframes(mode))
        timings["detect"] = ms_since(start)

        refiner = self._refiner_for(mode)
        boxes = np.array([a.box for a in assigned]).reshape(-1, 4)
        estimates, boxes, derived = self._framed(frame_bgr, boxes, mode, refiner, timings)
        keep = self._tracker.carry([a.face_id for a in assigned], derived)
        report = [i for i, a in enumerate(assigned) if keep[i] and (a.detected or derived[i] is not None)]
        detections = np.array([[*boxes[i], assigned[i].score] for i in report]).reshape(-1, 5)
        ids, estimates = [assigned[i].face_id for i in report], [estimates[i] for i in report]
        if mode == "pose":
            estimates = self._checked(frame_bgr, detections[:, :4], estimates, ids, index, timings)
        faces = self._faces(detections, ids, estimates, time_s, smooth, timings)
        return FrameResult(index=index, time_s=time_s, faces=faces, timings_ms=timings, mode=mode,
                           refiner=None if refiner is None else _label(refiner), precision=self.precision(mode))

    def _assign(self, frame_bgr: np.ndarray, carry: bool) -> list[Assignment]:
        """This frame's faces from the tracker, after the detector pass it needs: the quick pass where the
        detector has one and the tracker does not need the whole detector, else (or where the quick pass
        misses a face it found before) the whole detector. ``carry``: faces are cropped from their carried
        boxes (full mode), else from this frame's detections (pose mode)."""
        quick = getattr(self._detector, "detect_quick", None)
        far = getattr(self._detector, "detect_far", None)
        if quick is None or far is None:
            return self._tracker.assign(self._detector.detect(frame_bgr), full=True, carry=carry)
        near = quick(frame_bgr)
        if not self._tracker.needs_full_pass(carry) and not self._tracker.quick_missed(near):
            return self._tracker.assign(near, full=False, quick=True, carry=carry)
        detections = merge(near, far(frame_bgr))
        from_near = np.array([any(np.array_equal(row, other) for other in near) for row in detections], bool)
        return self._tracker.assign(detections, full=True, quick=from_near, carry=carry)

    def _framed(self, frame_bgr: np.ndarray, boxes: np.ndarray, mode: str, refiner: Refiner | None,
                timings: dict[str, float] | None = None
                ) -> tuple[list[FaceEstimate], np.ndarray, list[np.ndarray | None]]:
        """The faces in face boxes ``(N, 4)``, in full mode those whose face-derived box disagrees with theirs
        cropped again from it (``framing.needs_reframe``); with the boxes finally cropped and each face's
        face-derived box (None where the crop framed no face, ``framing.is_framed``, or the face is not
        ``valid``). ``timings`` sums both runs' stages."""
        mean_face = self._estimator.info(mode).mean_face
        boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        estimates = self._estimator.estimate_faces(frame_bgr, boxes, mode, refiner, timings)
        derived = [framing.face_box(e, mean_face) for e in estimates]
        reframe = framing.reframes(mode)
        again = [i for i in range(len(boxes)) if reframe and framing.needs_reframe(boxes[i], derived[i])]
        if again:
            stages: dict[str, float] = {}
            redone = self._estimator.estimate_faces(frame_bgr, np.stack([derived[i] for i in again]), mode,
                                                    refiner, stages)
            for i, estimate in zip(again, redone):
                boxes[i], estimates[i] = derived[i], estimate
                derived[i] = framing.face_box(estimate, mean_face)
            if timings is not None:
                for key, value in stages.items():
                    timings[key] = timings.get(key, 0.0) + value
        framed = [d if e.valid and framing.is_framed(b, d) else None
                  for e, b, d in zip(estimates, boxes, derived)]
        return estimates, boxes, framed

    def estimate(self, frame_bgr: np.ndarray, detector_boxes: np.ndarray,
                 mode: str | None = None, check_quality: bool = True) -> list[FaceEstimate]:
        """The faces in detector boxes ``(N, 4)`` of one BGR frame, as ``process`` finds faces the detector found
        (re-framed where the network's output disagrees with the box), before tracking and smoothing (default:
        the current mode, with its refiner). In pose mode ``check_quality`` runs the full network on every box
        for ``quality`` and ``valid`` (off: the encoder's own score, and the speed of pose mode)."""
        check_frame(frame_bgr)
        mode = mode or self.mode
        estimates, boxes, _ = self._framed(frame_bgr, face_boxes_of(detector_boxes), mode, self._refiner_for(mode))
        return self._checked(frame_bgr, boxes, estimates) if mode == "pose" and check_quality else estimates

    def _checked(self, frame_bgr: np.ndarray, boxes: np.ndarray, estimates: list[FaceEstimate],
                 face_ids: list[int] | None = None, index: int = 0,
                 timings: dict[str, float] | None = None) -> list[FaceEstimate]:
        """Pose-mode ``estimates`` with the quality and validity the full network gives their face boxes
        ``(N, 4)``: checked now for faces without ``face_ids`` (every face), a new id, or a check
        ``QUALITY_CHECK_EVERY`` or more frames old (or from a later frame: another video), else the latest.
        ``timings`` gets the checks' milliseconds as ``quality``."""
        if not estimates or not self._full_checks:
            return estimates
        due = [i for i in range(len(estimates)) if face_ids is None or face_ids[i] not in self._checks
               or not 0 <= index - self._checks[face_ids[i]][0] < QUALITY_CHECK_EVERY]
        if due:
            start = time.perf_counter()
            try:
                checked = self._estimator.estimate_faces(frame_bgr, boxes[due], "full")
            except ModelError as error:
                log.warning("pose mode keeps the encoder's quality score: the full model cannot be used (%s)", error)
                self._full_checks = False
                return estimates
            if timings is not None:
                timings["quality"] = ms_since(start)
            found = {i: (index, c.quality, c.valid) for i, c in zip(due, checked)}
            if face_ids is None:
                return [dataclasses.replace(e, quality=found[i][1], valid=found[i][2])
                        for i, e in enumerate(estimates)]
            for i, result in found.items():
                self._checks[face_ids[i]] = result
            live = set(self._tracker.live_ids) | set(face_ids)
            for gone in [face_id for face_id in self._checks if face_id not in live]:
                del self._checks[gone]
        return [dataclasses.replace(e, quality=self._checks[f][1], valid=self._checks[f][2])
                for e, f in zip(estimates, face_ids)]

    def _refiner_for(self, mode: str) -> Refiner | None:
        """The landmark refiner ``mode`` runs with: the full mode's (``_full_mode_refiner``), none in pose mode."""
        return self._full_mode_refiner(self._estimator.info(mode)) if mode == "full" else None

    def _faces(self, detections: np.ndarray, ids: list[int], estimates: list[FaceEstimate], time_s: float,
               smooth: bool, timings: dict[str, float]) -> tuple[FaceResult, ...]:
        """The frame's ``FaceResult``s, their frame-relative values smoothed when asked (timed as ``smooth``)."""
        start = time.perf_counter()
        faces = []
        for i, (face_id, estimate) in enumerate(zip(ids, estimates)):
            values: dict[str, np.ndarray | None] = {
                "box": detections[i, :4].astype(np.float64), "angles": estimate.angles,
                "centre": estimate.centre, "scale": np.array([estimate.scale]), "landmarks": estimate.landmarks,
            }
            if smooth:
                values = self._smoother.smooth(face_id, time_s, values)
            angles = values["angles"]
            faces.append(FaceResult(
                face_id=face_id, box=values["box"], score=float(detections[i, 4]),
                yaw=float(angles[0]), pitch=float(angles[1]), roll=float(angles[2]),
                centre=values["centre"], scale=float(values["scale"][0]), landmarks=values["landmarks"],
                visibility=estimate.visibility, quality=estimate.quality, valid=estimate.valid))
        if smooth:
            self._smoother.forget(self._tracker.live_ids)
            timings["smooth"] = ms_since(start)
        return tuple(faces)

    def close(self) -> None:
        """Release the detector and the ONNX sessions."""
        self._detector.close()
        self._estimator.close()

    def __enter__(self) -> "FacePipeline":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _label(refiner: Refiner) -> str:
    """How a refiner is named to the user: its ``label`` attribute (``"OR"``), else its type's name."""
    return str(getattr(refiner, "label", type(refiner).__name__))


class FrameLoop:
    """Reads a source through a pipeline until the source ends or ``request_stop`` is called.

    The loop runs in the caller's thread (the viewer's worker thread, or the main thread of the
    headless command); ``request_stop`` and ``latest`` are safe from any other thread. A stop
    request is final: a stopped loop's ``run`` returns at once.
    """

    def __init__(self, source: VideoSource, pipeline: FacePipeline, max_frames: int | None = None) -> None:
        self.source = source
        self.pipeline = pipeline
        self.max_frames = max_frames
        self._stop = threading.Event()
        self._latest_lock = threading.Lock()
        self._latest: tuple[np.ndarray, FrameResult] | None = None

    def run(self, on_frame: Callable[[np.ndarray, FrameResult], None],
            on_skipped: Callable[[int, float, np.ndarray], None] | None = None, start_index: int = 0) -> None:
        """Process frames, calling ``on_frame(frame_bgr, result)`` for each, until the end or a stop request.

        Frames with an index below ``start_index`` are decoded but not processed: they go to
        ``on_skipped(index, time_s, frame_bgr)`` if given (a resumed run redraws them). Frames
        with an index of ``max_frames`` or more end the loop.
        """
        while not self._stop.is_set():
            start = time.perf_counter()
            item = self.source.read()
            decode_ms = ms_since(start)
            if item is None:
                break
            index, time_s, frame = item
            if self.max_frames is not None and index >= self.max_frames:
                break
            if index < start_index:
                if on_skipped is not None:
                    on_skipped(index, time_s, frame)
                continue
            result = self.pipeline.process(frame, index, time_s)
            result = dataclasses.replace(result, timings_ms={"decode": decode_ms, **result.timings_ms})
            with self._latest_lock:
                self._latest = (frame, result)
            on_frame(frame, result)

    def request_stop(self) -> None:
        """Ask the loop to end after the frame in hand."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        """Whether ``request_stop`` has been called."""
        return self._stop.is_set()

    def latest(self) -> tuple[np.ndarray, FrameResult] | None:
        """The most recent frame and its result, or ``None`` before the first one."""
        with self._latest_lock:
            return self._latest
