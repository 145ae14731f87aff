"""Frame sources: a camera by index, a video file, or a still image, read one decoded frame at a time.

Frames that fail to decode are counted and skipped, never fatal: a damaged file yields what decodes
and ``failed`` says how much did not. A camera that stops delivering frames ends the stream after
a bounded number of failed grabs instead of hanging or raising. A still image is a one-frame
source (``ImageSource``); ``open_source`` tells images from videos by the file's suffix
(``IMAGE_SUFFIXES``), not by its content, so that a damaged ``.png`` is reported as an image that
does not decode rather than tried as a video.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Self

import cv2
import numpy as np

log = logging.getLogger(__name__)

FILE_FAILURE_LIMIT = 30
"""Consecutive failed reads after which a file is taken to decode no further (the rest counts as failed)."""

CAMERA_FAILURE_LIMIT = 50
"""Consecutive failed grabs after which a camera is taken to be gone and the stream ends."""

CAMERA_RETRY_S = 0.02
"""Pause between failed camera grabs, so that the limit above spans about a second."""

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
"""Files read as one still image (``ImageSource``); compared in lower case."""

VIDEO_SUFFIXES = (".avi", ".flv", ".m4v", ".mjpeg", ".mjpg", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".ts",
                  ".webm", ".wmv")
"""Files taken for videos when a folder is given as input (any other file given by name is tried as a video)."""


class VideoError(RuntimeError):
    """A source that cannot be opened; the message is one line naming it."""


def parse_source(source: int | str | Path) -> int | Path:
    """A camera index for an integer or an all-digit string, otherwise a file path."""
    if isinstance(source, int):
        return source
    text = str(source)
    return int(text) if text.isdigit() else Path(text)


class FrameSource:
    """What every source shares: ``read()`` one ``(index, time_s, frame_bgr)`` at a time until ``None``,
    iteration over those frames, ``ended``, and ``close()`` on leaving a ``with`` block."""

    _ended = False

    def read(self) -> tuple[int, float, np.ndarray] | None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @property
    def ended(self) -> bool:
        """Whether ``read()`` has reached the end of the stream."""
        return self._ended

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        """``read()``'s frames, ``(index, time_s, frame_bgr)``, until the end of the stream."""
        while (item := self.read()) is not None:
            yield item

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoSource(FrameSource):
    """Decoded BGR frames from a camera or a file, with the index and time of each.

    ``read()`` returns ``(index, time_s, frame_bgr)``. For a file the index counts every frame the
    file holds, undecodable ones included, so that ``time_s = index / fps`` and a resumed run meets
    the same indices again. For a camera, ``time_s`` is the wall-clock time since opening.
    """

    def __init__(self, source: int | str | Path, open_capture: Callable[[int | str], Any] = cv2.VideoCapture) -> None:
        """Open ``source``; ``open_capture`` makes the ``cv2.VideoCapture``-like reader (tests pass a stand-in)."""
        self.source = parse_source(source)
        self.is_camera = isinstance(self.source, int)
        self.name = f"camera {self.source}" if self.is_camera else str(self.source)
        if not self.is_camera and not Path(self.source).is_file():
            raise VideoError(f"{self.name}: no such file")
        self._capture = open_capture(self.source if self.is_camera else str(self.source))
        if not self._capture.isOpened():
            self._capture.release()
            raise VideoError(f"{self.name}: cannot be opened as a video")
        fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps: float = fps if np.isfinite(fps) and fps > 0 else 30.0
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count: int | None = count if count > 0 and not self.is_camera else None
        self.width = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.decoded = 0
        self.failed = 0
        self._next_index = 0
        self._ended = False
        self._start = time.monotonic()
        self._first_frame: np.ndarray | None = None
        self._keyframes: list[int] | None = None
        if not self.is_camera and self.frame_count is None and not self._probe_first_frame():
            raise VideoError(f"{self.name}: not a readable video (no frame decodes)")

    def seek(self, index: int) -> None:
        """Make the next ``read()`` return frame ``index`` of a file, keyframe-safe: the reader is placed on the
        last keyframe at or before ``index`` (``keyframe_indices``; an H.264 frame decodes only from there) and
        the frames in between are decoded and dropped. Frames passed over count neither as decoded nor as failed.
        ``ValueError`` for a camera or a file of unknown length."""
        if self.is_camera or self.frame_count is None:
            raise ValueError(f"{self.name}: only a file with a frame count can seek")
        index = max(0, min(int(index), self.frame_count))
        if self._keyframes is None:
            self._keyframes = keyframe_indices(Path(self.source))
        key = max([k for k in self._keyframes if k <= index] or [0])
        if key <= self._next_index <= index:
            pass
        elif key == 0:
            self._capture.release()
            self._capture = cv2.VideoCapture(str(self.source))
            self._next_index = 0
        else:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, key)
            self._next_index = key
        self._ended = False
        misses = 0
        while self._next_index < index and misses < FILE_FAILURE_LIMIT:
            ok = self._capture.grab()
            self._next_index += 1
            misses = 0 if ok else misses + 1

    def _probe_first_frame(self) -> bool:
        """Whether a file of unknown length decodes at least one frame. The frame is kept and handed out
        as frame 0: such a stream (raw MJPEG, say) may not rewind, and seeking back to 0 can silently
        leave it where it is, which would drop that frame and shift every later index."""
        ok, frame = self._capture.read()
        if not ok or frame is None:
            return False
        self._first_frame = frame
        return True

    def read(self) -> tuple[int, float, np.ndarray] | None:
        """The next decoded frame as ``(index, time_s, frame_bgr)``, or ``None`` at the end of the stream."""
        if self._ended:
            return None
        return self._read_camera() if self.is_camera else self._read_file()

    def _read_file(self) -> tuple[int, float, np.ndarray] | None:
        if self._first_frame is not None:
            frame, self._first_frame = self._first_frame, None
            self._next_index, self.decoded = 1, 1
            return 0, 0.0, frame
        misses = 0
        while self.frame_count is None or self._next_index < self.frame_count:
            index = self._next_index
            ok, frame = self._capture.read()
            if ok and frame is not None:
                self._next_index += 1
                self.decoded += 1
                return index, index / self.fps, frame
            if self.frame_count is None:
                break
            self._next_index += 1
            self.failed += 1
            misses += 1
            if misses >= FILE_FAILURE_LIMIT:
                break
        if self.frame_count is not None and self._next_index < self.frame_count:
            self.failed += self.frame_count - self._next_index
            log.debug("%s: nothing decodes after frame %d; %d of %d frames failed in all",
                        self.name, self._next_index - misses - 1, self.failed, self.frame_count)
            self._next_index = self.frame_count
        self._ended = True
        return None

    def _read_camera(self) -> tuple[int, float, np.ndarray] | None:
        for attempt in range(CAMERA_FAILURE_LIMIT):
            ok, frame = self._capture.read()
            if ok and frame is not None:
                index = self._next_index
                self._next_index += 1
                self.decoded += 1
                return index, time.monotonic() - self._start, frame
            self.failed += 1
            time.sleep(CAMERA_RETRY_S)
        log.warning("%s: no frame in %d attempts; ending the stream", self.name, CAMERA_FAILURE_LIMIT)
        self._ended = True
        return None

    def close(self) -> None:
        """Release the capture; safe to call twice."""
        self._capture.release()
        self._first_frame = None
        self._ended = True


def keyframe_indices(path: Path) -> list[int]:
    """The indices (presentation order) of a video file's keyframes, read from its packets without decoding
    (PyAV); ``[0]`` where PyAV cannot read the file, so that a seek decodes from the start."""
    try:
        import av
    except ImportError:
        return [0]
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stamps, keys = [], set()
            for packet in container.demux(stream):
                if packet.pts is None:
                    continue
                stamps.append(packet.pts)
                if packet.is_keyframe:
                    keys.add(packet.pts)
    except (OSError, IndexError, ValueError, av.error.FFmpegError):
        return [0]
    order = {pts: i for i, pts in enumerate(sorted(stamps))}
    return sorted({order[pts] for pts in keys}) or [0]


def is_image(path: str | Path) -> bool:
    """Whether ``path`` names a still image, by its suffix (``IMAGE_SUFFIXES``)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


class ImageSource(FrameSource):
    """A still image as a source of one frame: index 0 at time 0, with ``VideoSource``'s attributes.

    ``VideoError`` (one line naming the file) where the file is missing or does not decode as an image.
    """

    is_camera = False
    fps = 1.0
    frame_count = 1

    def __init__(self, path: str | Path) -> None:
        self.source = Path(path)
        self.name = str(self.source)
        if not self.source.is_file():
            raise VideoError(f"{self.name}: no such file")
        try:
            data = np.fromfile(self.source, np.uint8)
        except OSError as error:
            raise VideoError(f"{self.name}: cannot be read ({error.strerror})") from error
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if image is None or image.size == 0:
            raise VideoError(f"{self.name}: not a readable image (it does not decode)")
        self._frame: np.ndarray | None = image
        self._ended = False
        self.height, self.width = image.shape[:2]
        self.decoded = 1
        self.failed = 0

    def read(self) -> tuple[int, float, np.ndarray] | None:
        """The image as ``(0, 0.0, frame_bgr)`` the first time, then ``None``."""
        frame, self._frame = self._frame, None
        if frame is None:
            self._ended = True
            return None
        return 0, 0.0, frame

    def close(self) -> None:
        """Drop the image; safe to call twice."""
        self._frame = None
        self._ended = True


def open_source(path: str | Path) -> VideoSource | ImageSource:
    """An ``ImageSource`` for a file with an image suffix, else a ``VideoSource``; ``VideoError`` if unreadable."""
    return ImageSource(path) if is_image(path) else VideoSource(path)
