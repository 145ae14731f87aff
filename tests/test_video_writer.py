"""VideoWriter (and the recorder built on it): H.264 that decodes, odd sizes padded, the same bytes for the
same frames, one-line errors, and OpenCV's mp4v with a warning where libx264 is missing."""
from __future__ import annotations

import logging
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from app.core import video_writer
from app.core.recorder import RecorderError, VideoRecorder
from app.core.video_writer import VideoWriteError, VideoWriter
from tests.conftest import require_shared


def d18_frames(count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(require_shared("videos", "d18.mp4")))
    frames = [capture.read()[1] for _ in range(count)]
    capture.release()
    return frames


def decoded(path: Path) -> tuple[str, list[np.ndarray]]:
    """The codec and the BGR frames of a video, decoded with PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.name, [f.to_ndarray(format="bgr24") for f in container.decode(stream)]


def write_all(path: Path, frames: list[np.ndarray], fps: float = 30.0) -> VideoWriter:
    with VideoWriter(path, fps) as writer:
        for frame in frames:
            writer.write(frame)
    return writer


def test_writes_h264_that_decodes_with_every_frame_at_its_size(tmp_path):
    frames = d18_frames(12)
    writer = write_all(tmp_path / "out.mp4", frames)
    assert writer.codec == "h264" and writer.frames_written == 12
    codec, back = decoded(tmp_path / "out.mp4")
    assert codec == "h264" and len(back) == 12 and back[0].shape == (480, 480, 3)
    assert np.abs(back[5].astype(int) - frames[5]).mean() < 4  # lossy, but the same picture


def test_odd_sizes_are_padded_by_one_pixel_on_the_right_and_at_the_bottom(tmp_path):
    frame = np.zeros((5, 7, 3), np.uint8)
    frame[:, -1] = 200  # the last column, repeated into the padding
    write_all(tmp_path / "odd.mp4", [frame] * 3)
    codec, back = decoded(tmp_path / "odd.mp4")
    assert codec == "h264" and len(back) == 3 and back[0].shape == (6, 8, 3)
    assert back[0][:, 7].mean() > 150 and back[0][:, :5].mean() < 50


def test_a_1x1_video_is_written_as_2x2(tmp_path):
    write_all(tmp_path / "tiny.mp4", [np.full((1, 1, 3), 128, np.uint8)] * 4)
    codec, back = decoded(tmp_path / "tiny.mp4")
    assert codec == "h264" and len(back) == 4 and back[0].shape == (2, 2, 3)


def test_the_same_frames_give_the_same_bytes(tmp_path):
    frames = d18_frames(8)
    write_all(tmp_path / "one.mp4", frames)
    write_all(tmp_path / "two.mp4", frames)
    assert (tmp_path / "one.mp4").read_bytes() == (tmp_path / "two.mp4").read_bytes()


def test_without_libx264_it_writes_mp4v_and_says_so_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(video_writer, "h264_available", lambda: False)
    monkeypatch.setattr(video_writer, "_warned_fallback", False)
    frames = d18_frames(3)
    with caplog.at_level(logging.WARNING, logger="app.core.video_writer"):
        assert write_all(tmp_path / "a.mp4", frames).codec == "mp4v"
        write_all(tmp_path / "b.mp4", frames)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "mp4v" in warnings[0] and "libx264" in warnings[0]
    codec, back = decoded(tmp_path / "a.mp4")
    assert codec == "mpeg4" and len(back) == 3


def test_a_file_that_cannot_be_written_is_a_one_line_error_naming_it(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    with pytest.raises(VideoWriteError) as caught:
        VideoWriter(blocker / "out.mp4", 30.0).write(np.zeros((4, 4, 3), np.uint8))
    assert str(caught.value) == f"{blocker / 'out.mp4'}: cannot be written ({blocker} is not a folder)"

    folder = tmp_path / "folder.mp4"
    folder.mkdir()
    writer = VideoWriter(folder, 30.0)
    with pytest.raises(VideoWriteError) as caught:
        for frame in d18_frames(30):  # the encoder holds a few frames before the first write
            writer.write(frame)
        writer.close()
    assert str(caught.value) == f"{folder}: cannot be written (Is a directory)"


def test_frames_must_keep_the_first_frames_size(tmp_path):
    with VideoWriter(tmp_path / "out.mp4", 30.0) as writer:
        writer.write(np.zeros((8, 8, 3), np.uint8))
        with pytest.raises(ValueError, match="differs"):
            writer.write(np.zeros((8, 10, 3), np.uint8))


def test_the_recorder_keeps_its_api_and_records_h264_also_into_avi(tmp_path):
    assert RecorderError is VideoWriteError
    for name in ("clip.mp4", "clip.avi"):
        recorder = VideoRecorder(tmp_path / name, 25.0)
        for frame in d18_frames(5):
            recorder.write(frame)
        recorder.close()
        recorder.close()
        assert recorder.frames_written == 5
        capture = cv2.VideoCapture(str(tmp_path / name))
        count = 0
        while capture.read()[0]:
            count += 1
        capture.release()
        assert count == 5 and decoded(tmp_path / name)[0] == "h264"
        with pytest.raises(ValueError, match="closed"):
            recorder.write(np.zeros((480, 480, 3), np.uint8))
