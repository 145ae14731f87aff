"""Recording a stream of annotated frames to a video file, for the viewer's record button.

A ``VideoWriter`` (``app/core/video_writer.py``: H.264, opened on the first frame, when the frame
size is known) that also logs where the recording goes and how many frames it holds.
"""
from __future__ import annotations

import logging

import numpy as np

from app.core.video_writer import VideoWriteError, VideoWriter

log = logging.getLogger(__name__)

RecorderError = VideoWriteError
"""The video file could not be opened or written (one line naming it and why)."""


class VideoRecorder(VideoWriter):
    """Writes BGR frames of one size to ``path`` at ``fps``; a context manager, ``close`` finishes the file."""

    def write(self, frame_bgr: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 frame; every frame must have the first frame's size."""
        opening = self.codec is None
        super().write(frame_bgr)
        if opening:
            log.info("recording %dx%d at %.1f fps to %s", frame_bgr.shape[1], frame_bgr.shape[0], self.fps, self.path)

    def close(self) -> None:
        """Finish the file; safe to call twice. A closed recorder takes no more frames."""
        was_open = self.codec is not None and not self.closed
        super().close()
        if was_open:
            log.info("recorded %d frames to %s", self.frames_written, self.path)
