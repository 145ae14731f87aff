"""Frame sources: a camera by index or a video file, read one decoded frame at a time.

Frames that fail to decode are counted and skipped, never fatal: a damaged file yields what decodes
and ``failed`` says how much did not. A camera that stops delivering frames ends the stream after
a bounded number of failed grabs instead of hanging or raising.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

log = logging.getLogger(__name__)

FILE_FAILURE_LIMIT = 30
"""Consecutive failed reads after which a file is taken to decode no further (the rest counts as failed)."""

CAMERA_FAILURE_LIMIT = 50
"""Consecutive failed grabs after which a camera is taken to be gone and the stream ends."""

CAMERA_RETRY_S = 0.02
"""Pause between failed camera grabs, so that the limit above spans about a second."""


class VideoError(RuntimeError):
    """A source that cannot be opened; the message is one line naming it."""


def parse_source(source: int | str | Path) -> int | Path:
    """A camera index for an integer or an all-digit string, otherwise a file path."""
    if isinstance(source, int):
        return source
    text = str(source)
    return int(text) if text.isdigit() else Path(text)


class VideoSource:
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
        if not self.is_camera and self.frame_count is None and not self._probe_first_frame():
            raise VideoError(f"{self.name}: not a readable video (no frame decodes)")

    def _probe_first_frame(self) -> bool:
        """Whether a file of unknown length decodes at least one frame; rewinds afterwards."""
        ok = self._capture.grab()
        self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        return bool(ok)

    def read(self) -> tuple[int, float, np.ndarray] | None:
        """The next decoded frame as ``(index, time_s, frame_bgr)``, or ``None`` at the end of the stream."""
        if self._ended:
            return None
        return self._read_camera() if self.is_camera else self._read_file()

    def _read_file(self) -> tuple[int, float, np.ndarray] | None:
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

    @property
    def ended(self) -> bool:
        """Whether ``read()`` has reached the end of the stream."""
        return self._ended

    def close(self) -> None:
        """Release the capture; safe to call twice."""
        self._capture.release()
        self._ended = True

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
