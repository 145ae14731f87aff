"""Long videos as frame ranges: planning, keyframe-safe seeking, ids across seams, merging rows and segments."""
from __future__ import annotations

import csv
from pathlib import Path

import av
import numpy as np
import pytest

from app.core import process
from app.core.frame_ranges import (FrameRange, concat_segments, draw_range, match_seam, merge_ranges, parts_dir,
                                   plan_ranges, range_done, remove_parts, run_range)
from app.core.pipeline import FacePipeline
from app.core.video import VideoSource, keyframe_indices
from tests.conftest import require_shared


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_video_within_the_threshold_is_one_range_and_a_longer_one_splits_evenly_with_warmup():
    assert plan_ranges(1800, 1800, 30) == [FrameRange(0, 0, 1800, 0)]
    ranges = plan_ranges(1000, 400, 30)
    assert [(r.start, r.end, r.warmup_start) for r in ranges] == [(0, 333, 0), (333, 667, 303), (667, 1000, 637)]


def test_seeking_lands_on_the_frame_sequential_reading_gives_across_a_keyframe():
    video = require_shared("videos", "d3.mp4")
    assert keyframe_indices(video) == [0, 250]
    with VideoSource(video) as source:
        frames = {index: frame for index, _, frame in source if 240 <= index < 262}
    for target in (240, 249, 250, 251, 261):
        with VideoSource(video) as source:
            source.seek(target)
            index, time_s, frame = source.read()
            assert index == target and time_s == pytest.approx(target / source.fps)
            assert np.array_equal(frame, frames[target]), target


def test_faces_keep_their_ids_across_a_seam_by_box_overlap():
    box = np.array([100.0, 100.0, 200.0, 200.0])
    other = np.array([300.0, 100.0, 400.0, 200.0])
    written = {8: [(4, box), (7, other)], 9: [(4, box + 2), (7, other)]}
    warm = {8: [(1, other + 1), (2, box)], 9: [(1, other), (2, box + 3)]}
    assert match_seam(written, warm) == {1: 7, 2: 4}
    assert match_seam(written, {9: [(1, np.array([600.0, 600.0, 700.0, 700.0]))]}) == {}


@pytest.fixture(scope="module")
def split_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[FrameRange]]:
    """d18's first 60 frames processed whole (the command) and as three ranges, merged."""
    video = require_shared("videos", "d18.mp4")
    out = tmp_path_factory.mktemp("ranges")
    assert process.main([str(video), "--out", str(out / "whole"), "--max-frames", "60"]) == 0
    options = process.parse_options([str(video), "--out", str(out / "split"), "--max-frames", "60"])
    ranges = plan_ranges(60, 25, 10)
    with FacePipeline() as pipeline:
        for rng in ranges:
            run_range(video, options, pipeline, rng)
    assert run_range(video, options, None, ranges[1])["range"]["start"] == 20  # done: reused, nothing processed
    merge_ranges(video, options, ranges, [range_done(options.out, "d18", r) for r in ranges])
    concat_segments([draw_range(video, options, r) for r in ranges], out / "split" / "d18.annotated.mp4")
    return video, out, ranges


def test_ranges_merge_into_every_frame_once_in_order_with_one_face_id(split_run):
    _, out, _ = split_run
    whole, split = rows(out / "whole" / "d18.csv"), rows(out / "split" / "d18.csv")
    assert [r["frame"] for r in split] == [r["frame"] for r in whole] == [str(i) for i in range(60)]
    assert {r["face_id"] for r in split} == {"1"}
    assert [r["time_s"] for r in split] == [r["time_s"] for r in whole]
    assert split[:20] == whole[:20]  # the first range starts where the whole run does
    worst = max(abs(float(a[k]) - float(b[k])) for a, b in zip(split, whole) for k in ("yaw", "pitch", "roll"))
    assert worst < 5.0  # later ranges start from a warm-up: what a frame owes to earlier ones is close, not equal


def test_segments_join_into_one_h264_video_of_every_frame_without_reencoding(split_run):
    _, out, ranges = split_run
    with av.open(str(out / "split" / "d18.annotated.mp4")) as container:
        stream = container.streams.video[0]
        decoded = list(container.decode(stream))
        assert stream.codec_context.name == "h264" and len(decoded) == 60
        assert [f.pts for f in decoded] == sorted(f.pts for f in decoded)
    packets = 0
    for rng in ranges:
        with av.open(str(parts_dir(out / "split", "d18") / f"{rng.number:05d}.mp4")) as segment:
            packets += sum(1 for p in segment.demux(segment.streams.video[0]) if p.size)
    assert packets == 60
    remove_parts(out / "split", "d18")
    assert not parts_dir(out / "split", "d18").exists()
