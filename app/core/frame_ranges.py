"""A long video processed as frame ranges, each on its own (a Ray task), then merged into the files a whole run writes.

``plan_ranges`` cuts a video of more than ``split_frames`` frames into ranges of about that length. Each range
(``run_range``) seeks to ``WARMUP_FRAMES`` before its first frame (``VideoSource.seek``, keyframe-safe) and
processes those frames without writing them, so that what a frame's result owes to earlier frames (tracks,
crops carried from the previous frame's face, smoothing) has built up by the seam; it writes its own frames'
rows to a partial CSV, and the faces it met in the warm-up to a partial JSON, in ``DIR/.NAME.parts/`` (a
folder of the output folder, which every node sees). A range whose JSON is there is done: a rerun or a retry
reuses it.

``merge_ranges`` then joins the partial CSVs in order into ``NAME.csv``. The face ids of each range start at 1;
at each seam the warm-up's faces are matched to the rows the previous range wrote for the same frames, by box
overlap (IoU of at least ``SEAM_IOU``, the most frames first), so that a face carries its id across the seam;
a face met nowhere before gets the next new id, in the order the faces first appear, as one tracker would give
them. The annotated video is drawn per range from the merged rows (``draw_range``, no network, as a resumed
run redraws) into H.264 segments, which ``concat_segments`` joins by copying their packets (PyAV, no
re-encoding). The partial files are removed once the video's outputs are written.
"""
from __future__ import annotations

import csv
import io
import json
import math
import shutil
import statistics
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.core.exit_codes import cannot_write
from app.core.overlay import draw_overlay
from app.core.pipeline import FacePipeline
from app.core.results import FrameResult
from app.core.results_csv import CsvLog, csv_columns, read_results
from app.core.tracking import iou_matrix
from app.core.video import VideoSource
from app.core.video_writer import VideoWriter

SPLIT_FRAMES = 1800
"""Videos of more frames than this (a minute at 30 fps) are split into ranges of about this many frames: long
enough that the warm-up costs little, short enough that an hour of video keeps dozens of workers busy."""

WARMUP_FRAMES = 30
"""Frames processed, not written, before each range's first frame (a second at 30 fps)."""

SEAM_IOU = 0.5
"""The box overlap at which a face of a range's warm-up is the face the previous range wrote in that frame."""


@dataclass(frozen=True)
class FrameRange:
    """Frames ``start`` to ``end`` (excluded) of a video, processed from ``warmup_start``."""

    number: int
    start: int
    end: int
    warmup_start: int


def plan_ranges(frame_count: int, split_frames: int = SPLIT_FRAMES, warmup: int = WARMUP_FRAMES) -> list[FrameRange]:
    """The ranges of a video of ``frame_count`` frames: one for a video of at most ``split_frames``, else ranges of
    equal length (within a frame) of at most ``split_frames`` each."""
    if frame_count <= split_frames:
        return [FrameRange(0, 0, frame_count, 0)]
    count = math.ceil(frame_count / split_frames)
    bounds = [round(i * frame_count / count) for i in range(count + 1)]
    return [FrameRange(i, bounds[i], bounds[i + 1], max(0, bounds[i] - warmup)) for i in range(count)]


def parts_dir(out: Path, name: str) -> Path:
    """The folder of a video's partial files, in the output folder."""
    return Path(out) / f".{name}.parts"


def _part(out: Path, name: str, number: int, suffix: str) -> Path:
    return parts_dir(out, name) / f"{number:05d}{suffix}"


def range_done(out: Path, name: str, rng: FrameRange, mode: str | None = None) -> dict | None:
    """The record of a range already processed (its JSON, for the same frames and, if given, ``mode``), else None."""
    path = _part(out, name, rng.number, ".json")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    same = record.get("range") == asdict(rng) and (mode is None or record.get("mode") == mode)
    return record if same and _part(out, name, rng.number, ".csv").is_file() else None


def run_range(path: Path, options: Any, pipeline: FacePipeline, rng: FrameRange) -> dict:
    """Process one range of ``path`` into its partial CSV and JSON (written beside, then renamed, the JSON last);
    returns the JSON's record. A range already done is not processed again."""
    name = Path(path).stem
    done = range_done(options.out, name, rng, options.mode)
    if done is not None:
        return done
    info = pipeline.load(options.mode)
    columns = csv_columns(options.mode, info.landmarks)
    folder = parts_dir(options.out, name)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = _part(options.out, name, rng.number, ".csv"), _part(options.out, name, rng.number, ".json")
    csv_tmp = csv_path.with_suffix(".csv.tmp")
    start_time = time.monotonic()
    warm: dict[int, list[list[float]]] = {}
    timings: dict[str, list[float]] = defaultdict(list)
    frames = faces = decoded = 0
    stopped_early = False
    with VideoSource(path) as source:
        pipeline.reset_tracks()
        source.seek(rng.warmup_start)
        log = CsvLog(csv_tmp, columns, info.landmarks, append=False)
        try:
            while (item := source.read()) is not None:
                index, time_s, frame = item
                if options.max_frames is not None and index >= options.max_frames:
                    stopped_early = True
                    break
                if index >= rng.end:
                    break
                began = time.perf_counter()
                result = pipeline.process(frame, index, time_s)
                if index < rng.start:
                    warm[index] = [[f.face_id, *map(float, f.box)] for f in result.faces]
                    continue
                decoded += 1
                log.write(result)
                frames += 1
                faces += len(result.faces)
                timings["total"].append((time.perf_counter() - began) * 1000.0)
                for key, value in result.timings_ms.items():
                    timings[key].append(value)
        finally:
            log.close()
        fps = source.fps
        ended = source.ended and not stopped_early
    record = {"range": asdict(rng), "mode": options.mode, "frames": frames, "faces": faces, "decoded": decoded,
              "ended": bool(ended), "fps": fps, "warm": {str(k): v for k, v in warm.items()},
              "timings": dict(timings), "seconds": round(time.monotonic() - start_time, 3)}
    csv_tmp.replace(csv_path)
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    tmp.replace(json_path)
    return record


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, list(reader)


def match_seam(written: dict[int, list[tuple[int, np.ndarray]]], warm: dict[int, list[tuple[int, np.ndarray]]]
               ) -> dict[int, int]:
    """Local id of the new range -> id written by the previous range, from the frames both hold: each pair of
    faces whose boxes overlap by ``SEAM_IOU`` in a frame is a vote; pairs taken most votes first, each id once."""
    votes: dict[tuple[int, int], int] = defaultdict(int)
    for index, faces in warm.items():
        before = written.get(index, [])
        if not faces or not before:
            continue
        overlap = iou_matrix(np.stack([b for _, b in faces]), np.stack([b for _, b in before]))
        for i, (local, _) in enumerate(faces):
            for j, (known, _) in enumerate(before):
                if overlap[i, j] >= SEAM_IOU:
                    votes[(local, known)] += 1
    mapping: dict[int, int] = {}
    for (local, known), _ in sorted(votes.items(), key=lambda item: (-item[1], item[0])):
        if local not in mapping and known not in mapping.values():
            mapping[local] = known
    return mapping


def merge_ranges(path: Path, options: Any, ranges: list[FrameRange], records: list[dict]) -> dict:
    """Join the ranges' partial CSVs into ``NAME.csv`` with face ids carried across the seams; returns counts and
    timings for the summary (``frames``, ``faces``, ``face_ids``, ``decoded``, ``median_ms``, ``fps``)."""
    name = Path(path).stem
    out_csv = Path(options.out) / f"{name}.csv"
    header: list[str] = []
    merged: list[list[str]] = []
    written: dict[int, list[tuple[int, np.ndarray]]] = {}
    next_id = 1
    for rng, record in zip(ranges, records):
        header, rows = _rows(_part(options.out, name, rng.number, ".csv"))
        column = {c: i for i, c in enumerate(header)}
        warm = {int(k): [(int(f[0]), np.array(f[1:5])) for f in v] for k, v in record["warm"].items()}
        mapping = match_seam(written, warm)
        for row in rows:
            if row[column["detected"]] != "1":
                continue
            local = int(row[column["face_id"]])
            if local not in mapping:
                mapping[local] = next_id
            next_id = max(next_id, mapping[local] + 1)
        written = {}
        for row in rows:
            if row[column["detected"]] == "1":
                row[column["face_id"]] = str(mapping[int(row[column["face_id"]])])
                box = np.array([float(row[column[k]]) for k in ("x1", "y1", "x2", "y2")])
                written.setdefault(int(row[column["frame"]]), []).append((int(row[column["face_id"]]), box))
            merged.append(row)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(merged)
    try:
        out_csv.write_text(buffer.getvalue(), encoding="utf-8")
    except OSError as error:
        raise cannot_write(out_csv, error) from error
    column = {c: i for i, c in enumerate(header)}
    face_rows = [r for r in merged if r[column["detected"]] == "1"]
    timings: dict[str, list[float]] = defaultdict(list)
    for record in records:
        for key, values in record["timings"].items():
            timings[key] += values
    total_ms = sum(timings.pop("total", []))
    frames = sum(r["frames"] for r in records)
    invalid = sum(1 for r in face_rows if r[column["valid"]] == "0") if "valid" in column else 0
    return {"frames": frames, "faces": len(face_rows), "face_ids": len({r[column["face_id"]] for r in face_rows}),
            "invalid_faces": invalid,
            "decoded": sum(r["decoded"] for r in records), "ended": bool(records[-1]["ended"]),
            "median_ms": {k: round(statistics.median(v), 3) for k, v in timings.items() if v},
            "fps": round(frames * 1000.0 / total_ms, 2) if total_ms else 0.0, "csv": str(out_csv)}


def segment_path(out: Path, name: str, rng: FrameRange) -> Path:
    """The annotated segment of one range, among the partial files."""
    return _part(out, name, rng.number, ".mp4")


def draw_range(path: Path, options: Any, rng: FrameRange) -> Path:
    """Draw one range's frames with the merged CSV's faces (no network) into its H.264 segment; returns it."""
    name = Path(path).stem
    by_frame = {r.index: r for r in read_results(Path(options.out) / f"{name}.csv") if rng.start <= r.index < rng.end}
    segment = segment_path(options.out, name, rng)
    tmp = segment.with_suffix(".tmp.mp4")
    with VideoSource(path) as source:
        source.seek(rng.start)
        with VideoWriter(tmp, source.fps) as writer:
            while (item := source.read()) is not None and item[0] < rng.end:
                index, time_s, frame = item
                if options.max_frames is not None and index >= options.max_frames:
                    break
                writer.write(draw_overlay(frame, by_frame.get(index, FrameResult(index, time_s, (), {}, options.mode))))
    tmp.replace(segment)
    return segment


def concat_segments(segments: list[Path], target: Path) -> None:
    """Join H.264 segments of one size and rate into ``target`` by copying their packets, each segment's time
    stamps moved past the previous ones' (no re-encoding)."""
    import av

    tmp = target.with_suffix(".tmp" + target.suffix)
    with av.open(str(tmp), "w") as output:
        stream_out = None
        offset = 0
        for segment in segments:
            with av.open(str(segment)) as source:
                stream_in = source.streams.video[0]
                if stream_out is None:
                    stream_out = output.add_stream_from_template(stream_in)
                step = int(round(1 / (stream_in.average_rate * stream_in.time_base))) if stream_in.average_rate else 1
                end = offset
                for packet in source.demux(stream_in):
                    if packet.dts is None:
                        continue
                    packet.pts += offset
                    packet.dts += offset
                    end = max(end, packet.pts + (packet.duration or step))
                    packet.stream = stream_out
                    output.mux(packet)
                offset = end
    tmp.replace(target)


def remove_parts(out: Path, name: str) -> None:
    """Remove a video's partial files once its outputs are written."""
    shutil.rmtree(parts_dir(out, name), ignore_errors=True)
