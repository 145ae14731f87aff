"""Writing BGR frames to a video file: the one place the app encodes video (headless outputs, the viewer's recordings).

H.264 (libx264, ``yuv420p``) through PyAV, the codec browsers and phones play, into the container the
file's suffix names (``.mp4`` as a rule). The same frames give the same bytes: OpenCV converts BGR to
``yuv420p`` and x264 runs a fixed number of slice threads, without macroblock-tree rate control (with
it, or with frame threads, the bytes change from run to run; and they depend on the thread count).
``yuv420p`` needs an even width and height: a frame of odd size is padded by one pixel on the right
or at the bottom, repeating the edge (a 1×1 video is written as 2×2). Where PyAV or its libx264 is
missing, OpenCV's MPEG-4 Part 2 (``mp4v``) writer takes over, with one warning saying so.

Every failure is a ``VideoWriteError`` whose message is one line naming the file and the reason. The
encoder holds a few frames and the muxer buffers its writes, so a file that cannot take them (a full
disk) may say so some frames later, or on ``close``.
"""
from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

H264_CODEC = "libx264"
H264_OPTIONS = {"preset": "veryfast", "crf": "23", "x264-params": "mbtree=0"}
"""x264 settings: ``veryfast`` keeps pace with the pipeline on large frames; CRF 23 is x264's default quality.
Macroblock-tree rate control is off: with it, the same frames encode to other bytes from run to run."""
H264_THREADS = 4
"""Slice threads, fixed rather than "as many as there are cores": x264's output depends on their number."""
FALLBACK_FOURCC = "mp4v"

_warned_fallback = False


class VideoWriteError(RuntimeError):
    """A video file that cannot be opened or written; the message is one line naming it and why."""


def h264_available() -> bool:
    """Whether PyAV is installed with an ``libx264`` encoder."""
    try:
        import av
    except ImportError:
        return False
    return H264_CODEC in av.codecs_available


def even_size(frame_bgr: np.ndarray) -> np.ndarray:
    """``frame_bgr`` padded by one pixel on the right and/or at the bottom (the edge repeated) where its
    width or height is odd; an even-sized frame is returned as it is."""
    height, width = frame_bgr.shape[:2]
    bottom, right = height % 2, width % 2
    if not bottom and not right:
        return frame_bgr
    return cv2.copyMakeBorder(frame_bgr, 0, bottom, 0, right, cv2.BORDER_REPLICATE)


def _reason(error: BaseException) -> str:
    """The OS's or the library's words for ``error``, without the file name it may repeat."""
    strerror = getattr(error, "strerror", None)
    return str(strerror) if strerror else (str(error).splitlines()[0] if str(error) else type(error).__name__)


class VideoWriter:
    """Writes BGR frames of one size to ``path`` at ``fps``; a context manager, ``close`` finishes the file.

    The file is opened on the first frame, whose size every later frame must have. ``codec`` is
    ``h264`` or ``mp4v`` once open: what the file holds.
    """

    def __init__(self, path: str | Path, fps: float) -> None:
        if not fps or fps <= 0 or not np.isfinite(fps):
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        self.fps = float(fps)
        self.frames_written = 0
        self.codec: str | None = None
        self._size: tuple[int, int] | None = None
        self._container = None
        self._stream = None
        self._cv_writer: cv2.VideoWriter | None = None
        self._closed = False

    def write(self, frame_bgr: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 BGR frame; ``VideoWriteError`` if the file cannot take it."""
        if self._closed:
            raise ValueError(f"the video {self.path} is closed")
        frame = np.asarray(frame_bgr)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or frame.size == 0:
            raise ValueError(f"frames must be (H, W, 3) uint8 BGR, got {frame.shape} {frame.dtype}")
        size = (frame.shape[1], frame.shape[0])
        if self._size is None:
            self._open(size)
        elif size != self._size:
            raise ValueError(f"frame size {size} differs from the video's {self._size}")
        frame = np.ascontiguousarray(even_size(frame))
        if self._cv_writer is not None:
            self._cv_writer.write(frame)
        else:
            self._encode(frame)
        self.frames_written += 1

    def _open(self, size: tuple[int, int]) -> None:
        folder = self.path.parent
        if folder.exists() and not folder.is_dir():
            raise VideoWriteError(f"{self.path}: cannot be written ({folder} is not a folder)")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise VideoWriteError(f"{self.path}: cannot be written ({_reason(error)})") from error
        width, height = size[0] + size[0] % 2, size[1] + size[1] % 2
        if h264_available():
            self._open_h264(width, height)
        else:
            self._open_fallback(width, height)
        self._size = size
        log.debug("writing %dx%d %s at %.2f fps to %s", width, height, self.codec, self.fps, self.path)

    def _open_h264(self, width: int, height: int) -> None:
        import av

        try:
            container = av.open(str(self.path), "w")
        except (OSError, av.error.FFmpegError, ValueError) as error:
            raise VideoWriteError(f"{self.path}: cannot be written ({_reason(error)})") from error
        try:
            rate = Fraction(self.fps).limit_denominator(1001)
            stream = container.add_stream(H264_CODEC, rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.thread_type = "SLICE"
            stream.codec_context.thread_count = H264_THREADS
            stream.codec_context.options = dict(H264_OPTIONS)
            stream.codec_context.time_base = 1 / rate
            stream.codec_context.open()
        except (OSError, av.error.FFmpegError, ValueError) as error:
            container.close()
            raise VideoWriteError(f"{self.path}: cannot be written as H.264 ({_reason(error)})") from error
        self._container, self._stream, self.codec = container, stream, "h264"

    def _open_fallback(self, width: int, height: int) -> None:
        global _warned_fallback
        if not _warned_fallback:
            log.warning("PyAV with libx264 is not available: writing videos as MPEG-4 Part 2 (mp4v), "
                        "which browsers do not play")
            _warned_fallback = True
        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*FALLBACK_FOURCC), self.fps, (width, height))
        if not writer.isOpened():
            raise VideoWriteError(f"{self.path}: cannot be written (OpenCV's {FALLBACK_FOURCC} writer does not "
                                  f"open a {width}x{height} video here)")
        self._cv_writer, self.codec = writer, FALLBACK_FOURCC

    def _encode(self, frame: np.ndarray | None) -> None:
        """Encode and mux ``frame``, or flush the encoder for ``None``."""
        import av

        try:
            if frame is None:
                packets = self._stream.encode(None)
            else:
                video_frame = av.VideoFrame.from_ndarray(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
                video_frame.pts = self.frames_written
                packets = self._stream.encode(video_frame)
            self._container.mux(packets)
        except (OSError, av.error.FFmpegError, ValueError) as error:
            raise VideoWriteError(f"{self.path}: cannot be written ({_reason(error)})") from error

    @property
    def closed(self) -> bool:
        """Whether ``close`` has been called."""
        return self._closed

    def close(self) -> None:
        """Finish the file; safe to call twice. ``VideoWriteError`` if its end cannot be written (the file
        is closed all the same)."""
        if self._closed:
            return
        self._closed = True
        if self._cv_writer is not None:
            self._cv_writer.release()
            self._cv_writer = None
        if self._container is not None:
            import av

            try:
                self._encode(None)
            finally:
                container, self._container = self._container, None
                try:
                    container.close()
                except (OSError, av.error.FFmpegError) as error:
                    raise VideoWriteError(f"{self.path}: cannot be written ({_reason(error)})") from error

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
