"""``python -m app.bench_framing small|many|detector|follow``: faces at every distance, as JSON.

- ``small``: frames of shared videos shrunk to 1/4 and 1/8 and placed off-centre on a 1280x720 grey
  canvas, processed as a video (tracking on) against the same frames processed at full size. Per video,
  scale and mode: the share of frames whose face is found, whose pose is within 3° of the full-size
  reading (largest of the three angle differences), and whose box is within 10% of the landmark box
  (the full-size full-mode landmarks' box moved onto the canvas; each edge within 10% of its side).
- ``many``: 20 faces (cells of a 5x4 grid on a 1280x720 frame, each a shared video playing) over
  ``--frames`` frames: the share of face-frames found, frames with all 20 found, the share of frames
  the least-found face is found in, the distinct ids and the most ids one face got; and the median
  milliseconds per frame (``FacePipeline.process`` end to end) with 1, 5 and 20 of the cells filled, per mode.
- ``detector``: median milliseconds of one call of each detector on a 480x480 frame and on 1280x720.
- ``follow``: whether a mode's face-derived box (``app.core.framing.face_box``) follows the face or the
  crop: d18 frames cropped from their landmark box shifted by ±15% of its side, or zoomed by 1.3 and
  1/1.3; the face-derived box's centre offset from the landmark box's and its side, in landmark-box sides
  (a box that follows the face: offset 0, side 1; one that follows the crop: offset ±0.15, side 1.3, 0.77).
  Needs this checkout's ``app.core.framing``.

``small``, ``many`` and ``detector`` use only ``FacePipeline``'s and ``create_detector``'s public interface, so
the same file runs against an older checkout (``cd OLD && PYTHONPATH=OLD python /path/to/bench_framing.py ...``)
for a before/after comparison in one session; there ``FaceResult.box`` is the detector's box, not the face box,
so ``box_within`` is not comparable.
Exit codes (``app.core.exit_codes``): 2 bad arguments or a missing shared video, 4 model missing or invalid.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

from app.native_logs import quiet_native_logs

quiet_native_logs()

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from app.bench_report import run_and_report  # noqa: E402
from app.core.crop import face_box_from_detection, landmark_box  # noqa: E402
from app.core.detector import create_detector  # noqa: E402
from app.core.estimator import DEFAULT_MODELS_DIR  # noqa: E402
from app.core.exit_codes import ExitCode  # noqa: E402
from app.core.pipeline import FacePipeline  # noqa: E402
from app.core.pose import wrap_degrees  # noqa: E402

VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"
CANVAS = (1280, 720)
GREY = 114
POSE_TOLERANCE_DEG = 3.0
BOX_TOLERANCE = 0.10
PLACES = ((0.72, 0.34), (0.27, 0.62), (0.58, 0.7))
"""Where each video's shrunk frames are centred on the canvas (fractions of its width and height)."""


def read_video(name: str, count: int, stride: int = 1) -> list[np.ndarray]:
    """Up to ``count`` frames of a shared video, every ``stride``-th from the first."""
    capture = cv2.VideoCapture(str(VIDEOS / name))
    frames, index = [], 0
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        if index % stride == 0:
            frames.append(frame)
        index += 1
    capture.release()
    return frames


def place(frame: np.ndarray, factor: float, where: tuple[float, float]) -> tuple[np.ndarray, float, np.ndarray]:
    """``frame`` shrunk by ``factor`` on a grey canvas, centred at ``where``; with the exact scale and offset
    that map full-size pixel centres onto the canvas (``x' = a·x + b``)."""
    height, width = frame.shape[:2]
    new_w, new_h = round(width * factor), round(height * factor)
    small = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_AREA)
    canvas = np.full((CANVAS[1], CANVAS[0], 3), GREY, np.uint8)
    x0, y0 = round(where[0] * CANVAS[0] - new_w / 2), round(where[1] * CANVAS[1] - new_h / 2)
    canvas[y0:y0 + new_h, x0:x0 + new_w] = small
    a = new_w / width
    return canvas, a, np.array([x0 + (a - 1) / 2, y0 + (a - 1) / 2])


def run_video(pipeline: FacePipeline, frames: list[np.ndarray]) -> list[tuple]:
    """Each frame's faces as ``process`` reports them, one frame after the other."""
    pipeline.reset_tracks()
    return [pipeline.process(frame, i, i / 30).faces for i, frame in enumerate(frames)]


def nearest(faces: tuple, point: np.ndarray):
    """The face whose box centre is nearest ``point``, or None."""
    if not faces:
        return None
    return min(faces, key=lambda f: float(np.hypot(*((f.box[:2] + f.box[2:4]) / 2 - point))))


def small_faces(models: Path, videos: list[str], frames: int, factors: list[float], detector: str) -> dict:
    """The ``small`` benchmark."""
    report: dict = {"canvas": list(CANVAS), "pose_tolerance_deg": POSE_TOLERANCE_DEG,
                    "box_tolerance": BOX_TOLERANCE, "videos": {}}
    with FacePipeline(models, mode="full", detector=detector) as full_pipe, \
            FacePipeline(models, mode="pose", detector=detector) as pose_pipe:
        pipes = {"pose": pose_pipe, "full": full_pipe}
        for v, name in enumerate(videos):
            total = int(cv2.VideoCapture(str(VIDEOS / name)).get(cv2.CAP_PROP_FRAME_COUNT))
            clip = read_video(name, frames, max(1, total // frames))
            reference = {mode: run_video(pipe, clip) for mode, pipe in pipes.items()}
            centre = np.array([clip[0].shape[1] / 2, clip[0].shape[0] / 2])
            ref_full = [nearest(faces, centre) for faces in reference["full"]]
            ref_boxes = [None if f is None else landmark_box(f.landmarks) for f in ref_full]
            entry: dict = {"frames": len(clip), "frame_size": [clip[0].shape[1], clip[0].shape[0]]}
            for factor in factors:
                placed = [place(frame, factor, PLACES[v % len(PLACES)]) for frame in clip]
                canvases = [p[0] for p in placed]
                a, b = placed[0][1], placed[0][2]
                for mode, pipe in pipes.items():
                    start = time.perf_counter()
                    results = run_video(pipe, canvases)
                    elapsed = time.perf_counter() - start
                    refs = [nearest(faces, centre) for faces in reference[mode]]
                    entry[f"{mode}@1/{round(1 / factor)}"] = _score(results, refs, ref_boxes, a, b, elapsed)
            report["videos"][name] = entry
    return report


def _score(results: list, refs: list, ref_boxes: list, a: float, b: np.ndarray, elapsed: float) -> dict:
    """Found, pose-within and box-within shares of one shrunk run against its full-size reading."""
    found = pose_ok = box_ok = compared = 0
    errors, box_errors, ids = [], [], set()
    for faces, ref, ref_box in zip(results, refs, ref_boxes):
        if ref is None or ref_box is None:
            continue
        compared += 1
        box = ref_box * a + np.r_[b, b]
        face = nearest(faces, (box[:2] + box[2:]) / 2)
        if face is None or not _overlaps(face.box, box):
            continue
        found += 1
        ids.add(face.face_id)
        error = float(np.abs(wrap_degrees(np.array([face.yaw - ref.yaw, face.pitch - ref.pitch,
                                                    face.roll - ref.roll]))).max())
        side = max(box[2] - box[0], box[3] - box[1])
        box_error = float(np.abs(np.asarray(face.box[:4]) - box).max() / side)
        errors.append(error)
        box_errors.append(box_error)
        pose_ok += error <= POSE_TOLERANCE_DEG
        box_ok += box_error <= BOX_TOLERANCE
    share = (lambda n: round(n / compared, 3)) if compared else (lambda n: None)
    return {"frames": compared, "found": share(found), "pose_within": share(pose_ok), "box_within": share(box_ok),
            "median_pose_error_deg": round(statistics.median(errors), 2) if errors else None,
            "p95_pose_error_deg": round(float(np.percentile(errors, 95)), 2) if errors else None,
            "median_box_error": round(statistics.median(box_errors), 3) if box_errors else None,
            "face_ids": len(ids), "ms_per_frame": round(elapsed * 1000 / max(len(results), 1), 1)}


def _overlaps(box: np.ndarray, other: np.ndarray) -> bool:
    """Whether the centre of ``box`` lies inside ``other``."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return bool(other[0] <= cx <= other[2] and other[1] <= cy <= other[3])


GRID = (5, 4)
CELL_FACE = 180
MANY_VIDEOS = ("d3.mp4", "d6.mp4", "d9.mp4", "d12.mp4", "d18.mp4", "d19.mp4")


def tiled_frames(count: int, faces: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``count`` 1280x720 frames with the first ``faces`` cells of a 5x4 grid each playing a shared video
    (180x180, other cells grey), and each filled cell's rectangle."""
    clips = {name: read_video(name, count + 80) for name in MANY_VIDEOS}
    cell_w, cell_h = CANVAS[0] // GRID[0], CANVAS[1] // GRID[1]
    cells = []
    for k in range(faces):
        row, col = divmod(k, GRID[0])
        x0, y0 = col * cell_w + (cell_w - CELL_FACE) // 2, row * cell_h + (cell_h - CELL_FACE) // 2
        cells.append(np.array([x0, y0, x0 + CELL_FACE, y0 + CELL_FACE], dtype=np.float64))
    frames = []
    for t in range(count):
        canvas = np.full((CANVAS[1], CANVAS[0], 3), GREY, np.uint8)
        for k, (x0, y0, x1, y1) in enumerate(c.astype(int) for c in cells):
            clip = clips[MANY_VIDEOS[k % len(MANY_VIDEOS)]]
            source = clip[(t + 13 * k) % len(clip)]
            canvas[y0:y1, x0:x1] = cv2.resize(source, (CELL_FACE, CELL_FACE), interpolation=cv2.INTER_AREA)
        frames.append(canvas)
    return frames, cells


def many_faces(models: Path, frames: int, detector: str) -> dict:
    """The ``many`` benchmark."""
    report: dict = {"canvas": list(CANVAS), "frames": frames, "detector": detector, "modes": {}}
    tiled = {n: tiled_frames(frames, n) for n in (1, 5, 20)}
    for mode in ("pose", "full"):
        with FacePipeline(models, mode=mode, detector=detector) as pipeline:
            pipeline.load(mode)
            entry: dict = {"ms_per_frame": {}}
            for n, (clip, cells) in tiled.items():
                pipeline.reset_tracks()
                pipeline.process(clip[0], 0, 0.0)  # warm-up, not measured
                pipeline.reset_tracks()
                times, found, all_found, ids_per_cell = [], 0, 0, [set() for _ in cells]
                hits_per_cell = [0] * len(cells)
                ids: set[int] = set()
                for i, frame in enumerate(clip):
                    start = time.perf_counter()
                    faces = pipeline.process(frame, i, i / 30).faces
                    times.append((time.perf_counter() - start) * 1000)
                    hit = 0
                    for k, cell in enumerate(cells):
                        inside = [f for f in faces if _overlaps(f.box, cell)]
                        if inside:
                            hit += 1
                            hits_per_cell[k] += 1
                            ids_per_cell[k].update(f.face_id for f in inside)
                    ids.update(f.face_id for f in faces)
                    found += hit
                    all_found += hit == len(cells)
                entry["ms_per_frame"][str(n)] = round(statistics.median(times), 1)
                if n == 20:
                    entry.update({"found": round(found / (len(cells) * len(clip)), 3),
                                  "frames_all_found": round(all_found / len(clip), 3),
                                  "least_found_face": round(min(hits_per_cell) / len(clip), 3),
                                  "face_ids": len(ids), "max_ids_per_face": max(len(s) for s in ids_per_cell)})
            report["modes"][mode] = entry
    return report


def detector_speed(names: list[str], repeats: int) -> dict:
    """The ``detector`` benchmark: median ms per call on a d18 frame (480x480) and on a 1280x720 canvas."""
    frame = read_video("d18.mp4", 1)[0]
    wide = place(frame, 0.25, PLACES[0])[0]
    report: dict = {}
    for name in names:
        detector = create_detector(name)
        try:
            entry = {}
            for label, image in (("480x480", frame), ("1280x720", wide)):
                detector.detect(image)
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    found = detector.detect(image)
                    times.append((time.perf_counter() - start) * 1000)
                entry[label] = {"ms": round(statistics.median(times), 2), "faces": len(found)}
            quick = getattr(detector, "detect_quick", None)
            if quick is not None:
                quick(frame)
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    quick(frame)
                    times.append((time.perf_counter() - start) * 1000)
                entry["quick_480x480_ms"] = round(statistics.median(times), 2)
            report[name] = entry
        finally:
            detector.close()
    return report


def follow(models: Path, frames: int) -> dict:
    """The ``follow`` benchmark."""
    from app.core import framing
    from app.core.estimator import PoseEstimator

    moves = {"shift +0.15": (0.15, 1.0), "shift -0.15": (-0.15, 1.0),
             "zoom 1.3": (0.0, 1.3), "zoom 1/1.3": (0.0, 1 / 1.3)}
    found: dict = {mode: {name: [] for name in moves} for mode in ("pose", "full")}
    detector = create_detector("blazeface")
    with PoseEstimator(models) as estimator:
        mean_face = estimator.info("pose").mean_face
        for frame in read_video("d18.mp4", frames, 216 // frames):
            detections = detector.detect(frame)
            if not len(detections):
                continue
            (reference,) = estimator.estimate_faces(frame, face_box_from_detection(detections[0])[None], "full")
            face = landmark_box(reference.landmarks)
            side = face[2] - face[0]
            for name, (dx, zoom) in moves.items():
                centre = (face[:2] + face[2:]) / 2 + [dx * side, 0.0]
                box = np.r_[centre - zoom * side / 2, centre + zoom * side / 2]
                for mode in found:
                    (estimate,) = estimator.estimate_faces(frame, box[None], mode)
                    derived = framing.face_box(estimate, mean_face)
                    offset = ((derived[0] + derived[2]) - (face[0] + face[2])) / 2 / side
                    found[mode][name].append((offset, (derived[2] - derived[0]) / side))
    detector.close()
    return {mode: {name: {"centre_offset": round(float(np.median([v[0] for v in values])), 3),
                          "side": round(float(np.median([v[1] for v in values])), 3), "frames": len(values)}
                   for name, values in moves_found.items()}
            for mode, moves_found in found.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one benchmark and print its JSON; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m app.bench_framing", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("small", "many", "detector", "follow"))
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS_DIR, metavar="DIR")
    parser.add_argument("--detector", default="blazeface")
    parser.add_argument("--videos", nargs="+", default=["d18.mp4", "d3.mp4", "d6.mp4"])
    parser.add_argument("--frames", type=int, default=None,
                        help="frames per video (small: 60, spread over the video) or in all (many: 100)")
    parser.add_argument("--factors", type=float, nargs="+", default=[0.25, 0.125])
    parser.add_argument("--detectors", nargs="+", default=["blazeface_short", "blazeface_full", "blazeface"])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the JSON here")
    args = parser.parse_args(argv)
    wanted = args.videos if args.what == "small" else list(MANY_VIDEOS) if args.what == "many" else ["d18.mp4"]
    missing = [name for name in wanted if not (VIDEOS / name).is_file()]
    if missing:
        print(f"error: {VIDEOS / missing[0]}: no such file", file=sys.stderr)
        return ExitCode.USAGE
    def compute() -> dict:
        if args.what == "small":
            return small_faces(args.models, args.videos, args.frames or 60, args.factors, args.detector)
        if args.what == "many":
            return many_faces(args.models, args.frames or 100, args.detector)
        if args.what == "follow":
            return follow(args.models, args.frames or 12)
        return detector_speed(args.detectors, args.repeats)

    return run_and_report(compute, args.json)

if __name__ == "__main__":
    sys.exit(main())
