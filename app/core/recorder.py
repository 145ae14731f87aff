"""Recording a stream of annotated frames to a video file, for the viewer's record button.

The writer opens on the first frame, because only then are the frame size known; the codec follows
the file's suffix (``.avi`` → Motion-JPEG, anything else → MPEG-4 Part 2 ``mp4v``), the two that
the opencv-contrib wheel can write without an external encoder.
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

CODECS = {".avi": "MJPG"}
DEFAULT_CODEC = "mp4v"


class RecorderError(RuntimeError):
    """The video file could not be opened for writing."""


class VideoRecorder:
    """Writes BGR frames of one size to ``path`` at ``fps``; a context manager, ``close`` finishes the file."""

    def __init__(self, path: str | Path, fps: float) -> None:
        if not fps or fps <= 0 or not np.isfinite(fps):
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        self.fps = float(fps)
        self.frames_written = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._closed = False

    def write(self, frame_bgr: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 frame; every frame must have the first frame's size."""
        if self._closed:
            raise ValueError(f"the recording {self.path} is closed")
        frame = np.asarray(frame_bgr)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frames must be (H, W, 3) uint8 BGR, got {frame.shape} {frame.dtype}")
        size = (frame.shape[1], frame.shape[0])
        if self._writer is None:
            self._open(size)
        elif size != self._size:
            raise ValueError(f"frame size {size} differs from the recording's {self._size}")
        self._writer.write(np.ascontiguousarray(frame))
        self.frames_written += 1

    def _open(self, size: tuple[int, int]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        codec = CODECS.get(self.path.suffix.lower(), DEFAULT_CODEC)
        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*codec), self.fps, size)
        if not writer.isOpened():
            raise RecorderError(f"cannot write {codec} video to {self.path}")
        self._writer, self._size = writer, size
        log.info("recording %dx%d at %.1f fps to %s", size[0], size[1], self.fps, self.path)

    def close(self) -> None:
        """Finish the file; safe to call twice. A closed recorder takes no more frames."""
        self._closed = True
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            log.info("recorded %d frames to %s", self.frames_written, self.path)

    def __enter__(self) -> "VideoRecorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
