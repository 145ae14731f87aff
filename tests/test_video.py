"""VideoSource: frame indices and times, decode failures counted and skipped, clear errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.core.video import VideoError, VideoSource, parse_source
from tests.conftest import require_shared


def test_reads_every_frame_of_a_good_file_with_index_and_time():
    path = require_shared("videos", "d18.mp4")
    with VideoSource(path) as source:
        assert source.fps == pytest.approx(30.0)
        assert source.frame_count == 216
        items = []
        while (item := source.read()) is not None:
            items.append(item)
        assert source.read() is None
    assert [i for i, _, _ in items] == list(range(216))
    assert items[30][1] == pytest.approx(1.0)
    assert items[0][2].shape == (480, 480, 3) and items[0][2].dtype == np.uint8
    assert source.decoded == 216 and source.failed == 0


def test_damaged_file_yields_what_decodes_and_counts_the_rest_as_failed():
    path = require_shared("videos", "obama_truncated.mp4")
    with VideoSource(path) as source:
        indices = []
        while (item := source.read()) is not None:
            indices.append(item[0])
    assert source.frame_count == 158
    assert indices == list(range(55))
    assert source.decoded == 55
    assert source.failed == 158 - 55


def test_missing_file_is_a_one_line_video_error(tmp_path: Path):
    with pytest.raises(VideoError, match="no such file") as caught:
        VideoSource(tmp_path / "absent.mp4")
    assert "\n" not in str(caught.value)


def test_file_that_is_not_a_video_is_a_video_error(tmp_path: Path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video\n")
    with pytest.raises(VideoError, match="notes.mp4"):
        VideoSource(path)


def test_digits_select_a_camera_and_anything_else_a_file():
    assert parse_source(0) == 0
    assert parse_source("1") == 1
    assert parse_source("clip.mp4") == Path("clip.mp4")



class VanishedCamera:
    """A capture whose device has gone after opening: every grab fails at once."""

    def __init__(self, index: int) -> None:
        self.reads = 0

    def isOpened(self) -> bool:
        return True

    def get(self, prop: int) -> float:
        return 0.0

    def read(self):
        self.reads += 1
        return False, None

    def release(self) -> None:
        pass


def test_a_camera_that_stops_delivering_ends_the_stream_instead_of_hanging(monkeypatch):
    import app.core.video as video

    monkeypatch.setattr(video, "CAMERA_RETRY_S", 0.0)
    with VideoSource(0, open_capture=VanishedCamera) as source:
        assert source.is_camera and source.frame_count is None
        assert source.read() is None
        assert source.ended and source.failed == video.CAMERA_FAILURE_LIMIT
        assert source.read() is None
        assert source._capture.reads == video.CAMERA_FAILURE_LIMIT
