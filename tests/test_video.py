"""VideoSource and ImageSource: frame indices and times, decode failures counted and skipped, clear errors."""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from app.core.video import ImageSource, VideoError, VideoSource, open_source, parse_source
from tests.conftest import require_shared


def test_reads_every_frame_of_a_good_file_with_index_and_time():
    path = require_shared("videos", "d18.mp4")
    with VideoSource(path) as source:
        assert source.fps == pytest.approx(30.0)
        assert source.frame_count == 216
        items = list(source)  # iterating is read() until None
        assert source.read() is None and source.ended
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


def raw_mjpeg(path: Path, frames: int = 6) -> Path:
    """A raw MJPEG stream (no container, so no frame count) whose frame ``i`` is grey level ``40 * i``."""
    with av.open(str(path), "w", format="mjpeg") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        for i in range(frames):
            image = np.full((48, 64, 3), 40 * i, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuvj420p")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_a_stream_of_unknown_length_loses_no_frame_and_keeps_exact_indices(tmp_path: Path):
    path = raw_mjpeg(tmp_path / "stream.mjpeg")
    capture = cv2.VideoCapture(str(path))
    reference = []
    while (item := capture.read())[0]:
        reference.append(item[1])
    capture.release()
    assert len(reference) == 6
    with VideoSource(path) as source:
        assert source.frame_count is None
        items = []
        while (item := source.read()) is not None:
            items.append(item)
    assert [index for index, _, _ in items] == list(range(6))
    assert [time_s for _, time_s, _ in items] == pytest.approx([i / source.fps for i in range(6)])
    for (_, _, frame), expected in zip(items, reference):
        assert np.array_equal(frame, expected)
    assert [round(float(frame.mean()) / 40) for _, _, frame in items] == list(range(6))
    assert source.decoded == 6 and source.failed == 0


def test_an_image_is_one_frame_at_index_0_and_time_0():
    path = require_shared("biwi_mini", "hpdb", "01", "frame_00166_rgb.png")
    with open_source(path) as source:
        assert isinstance(source, ImageSource)
        assert (source.width, source.height, source.frame_count) == (640, 480, 1)
        index, time_s, frame = source.read()
        assert (index, time_s) == (0, 0.0) and np.array_equal(frame, cv2.imread(str(path)))
        assert not source.ended
        assert source.read() is None and source.ended
    assert isinstance(open_source(require_shared("videos", "d18.mp4")), VideoSource)


def test_an_image_that_does_not_decode_is_a_video_error_naming_it(tmp_path: Path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    with pytest.raises(VideoError) as caught:
        open_source(path)
    assert str(caught.value) == f"{path}: not a readable image (it does not decode)"


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
