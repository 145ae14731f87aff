"""The viewer's worker thread: one source through ``app.core``'s ``FrameLoop``, off the GUI thread.

Modelled on the Qt for Python ``mandelbrot.py`` example: the thread owns no widgets; it emits each
finished frame (the annotated BGR array and its ``FrameResult``) and the GUI thread turns it into a
pixmap; ``stop()`` sets a flag, asks the loop to stop and waits; nothing calls ``terminate()``.

Opening the source, loading the models, detection, inference, drawing the overlay and writing the
recording all happen here, so the window stays responsive. When the GUI is still busy with the last
frame, newer frames are not queued behind it: they are processed (and recorded) but not emitted,
so the display always shows the latest frame and the event queue never grows.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QObject, QThread, pyqtSignal

from app.core.model_io import ModelError, check_mode
from app.core.frame_rate import FrameRate
from app.core.overlay import draw_timed
from app.core.pipeline import FacePipeline, FrameLoop
from app.core.providers import ProviderError
from app.core.recorder import RecorderError, VideoRecorder
from app.core.results import FrameResult
from app.core.video import VideoError, VideoSource

log = logging.getLogger(__name__)

SOURCE_HINT = "Choose a camera from the Camera menu, open a file (Ctrl+O) or drop one here."
MODELS_HINT = "Export models with `python -m trainer export` and pass their folder with --models."

@dataclass
class OverlayOptions:
    """What the overlay draws; the GUI thread flips these and the worker reads them each frame."""

    axes: bool = True
    landmarks: bool = True
    box: bool = True


def describe_source(source: int | Path) -> str:
    """How the window names a source: ``camera 0`` or the file's name."""
    return f"camera {source}" if isinstance(source, int) else Path(source).name


class FrameWorker(QThread):
    """Runs ``source`` through a ``FacePipeline`` until the stream ends or ``stop()`` is called.

    Signals (all delivered queued to the GUI thread):

    - ``opened(provider, source_fps)`` once the models are loaded and the source is open;
    - ``frame_ready(frame_bgr, result, fps)`` with the annotated frame, its result and the
      processing rate;
    - ``failed(message)`` when the source or the models cannot be used, or the camera goes away;
    - ``mode_changed(mode)`` when the pipeline has switched mode, ``mode_failed(mode, message)``
      when the model of the mode asked for cannot be opened (the old mode carries on);
    - ``ended(message)`` when a file has been played to its end;
    - ``recording_failed(message)`` when the recording file cannot be written.
    """

    opened = pyqtSignal(str, float)
    frame_ready = pyqtSignal(object, object, float)
    failed = pyqtSignal(str)
    mode_changed = pyqtSignal(str)
    mode_failed = pyqtSignal(str, str)
    ended = pyqtSignal(str)
    recording_failed = pyqtSignal(str)

    def __init__(self, source: int | Path, models_dir: Path, mode: str = "pose", smooth: bool = False,
                 overlay: OverlayOptions | None = None, realtime: bool = True, provider: str = "auto",
                 parent: QObject | None = None) -> None:
        """``realtime`` paces a file at its own frame rate instead of as fast as it computes; ``provider``
        is a ``providers.CHOICES`` name."""
        super().__init__(parent)
        self.provider_choice = provider
        self.source = source
        self.models_dir = Path(models_dir)
        self.overlay = overlay if overlay is not None else OverlayOptions()
        self.realtime = realtime
        self._mode = mode
        self._smooth = smooth
        self._lock = threading.Lock()
        self._recording_lock = threading.Lock()
        """Held while a frame is written and while the recorder is swapped, so no write meets a closed file."""
        self._abort = threading.Event()
        self._display_free = threading.Event()
        self._display_free.set()
        self._loop: FrameLoop | None = None
        self._pipeline: FacePipeline | None = None
        self._recorder: VideoRecorder | None = None
        self._source_fps = 0.0
        self._is_camera = isinstance(source, int)
        self._rate = FrameRate(clock=time.monotonic)
        self._clock_start: float | None = None

    # --- called from the GUI thread -------------------------------------------------------------

    @property
    def mode(self) -> str:
        """The mode asked for last; the worker switches the pipeline to it before the next frame."""
        return self._mode

    def set_mode(self, mode: str) -> None:
        """Ask for ``pose`` or ``full``; the worker thread opens that model (``mode_failed`` if it cannot)
        and switches, so a slow model load never blocks the GUI. ``ValueError`` for an unknown mode."""
        self._mode = check_mode(mode)

    @property
    def pipeline_mode(self) -> str | None:
        """The mode the pipeline runs in now; ``None`` while no pipeline is open."""
        pipeline = self._pipeline
        return pipeline.mode if pipeline is not None else None

    def set_smoothing(self, enabled: bool) -> None:
        """Turn temporal smoothing of the pose on or off from the next frame (the pipeline's setter is thread-safe)."""
        with self._lock:
            self._smooth = enabled
            pipeline = self._pipeline
        if pipeline is not None:
            pipeline.set_smoothing(enabled)

    @property
    def provider(self) -> str:
        """The ONNX Runtime execution provider in use; empty until the models are loaded."""
        pipeline = self._pipeline
        return pipeline.provider if pipeline is not None else ""

    def frame_shown(self) -> None:
        """The GUI has taken the last emitted frame; the next one may be emitted."""
        self._display_free.set()

    def start_recording(self, path: Path) -> None:
        """Record the annotated frames from the next one on to ``path``; replaces a recording under way."""
        recorder = VideoRecorder(path, self._recording_fps())
        with self._recording_lock:
            previous, self._recorder = self._recorder, recorder
            if previous is not None:
                previous.close()

    def stop_recording(self) -> int:
        """Finish the recording, if any; returns how many frames it holds."""
        with self._recording_lock:
            recorder, self._recorder = self._recorder, None
            if recorder is None:
                return 0
            recorder.close()
            return recorder.frames_written

    @property
    def frames_processed(self) -> int:
        """How many frames the loop has processed so far."""
        return self._rate.frames

    @property
    def recording(self) -> bool:
        """Whether frames are being recorded."""
        return self._recorder is not None

    def stop(self) -> None:
        """Ask the loop to stop and wait until the thread has finished (never ``terminate()``)."""
        with self._lock:
            self._abort.set()
            loop = self._loop
        if loop is not None:
            loop.request_stop()
        self.wait()

    # --- the thread -----------------------------------------------------------------------------

    def _recording_fps(self) -> float:
        """A file records at its own rate; a camera at the rate frames are processed, so playback keeps time."""
        if self._is_camera and self._rate.current > 0:
            return round(self._rate.current, 2)
        return self._source_fps if self._source_fps > 0 else 30.0

    def run(self) -> None:
        """Open the models and the source, run the frame loop, report how it ended."""
        name = describe_source(self.source)
        try:
            with FacePipeline(self.models_dir, mode=self._mode, smooth=self._smooth,
                              providers=self.provider_choice) as pipeline, \
                    VideoSource(self.source) as video:
                with self._lock:
                    if self._abort.is_set():
                        return
                    self._pipeline = pipeline
                    self._source_fps = video.fps
                    loop = FrameLoop(video, pipeline)
                    self._loop = loop
                    pipeline.set_smoothing(self._smooth)
                pipeline.load()
                self._apply_requested_mode(pipeline)
                log.info("%s opened (%.1f fps) with %s on %s", name, video.fps, self.models_dir, pipeline.provider)
                self.opened.emit(pipeline.provider, float(video.fps))
                loop.run(self._on_frame)
                if self._abort.is_set():
                    return
                if video.is_camera:
                    self.failed.emit(f"{name} stopped delivering frames.\n\n{SOURCE_HINT}")
                else:
                    note = f" ({video.failed} frames did not decode)" if video.failed else ""
                    self.ended.emit(f"End of {name}{note}.")
        except ModelError as error:
            log.warning("models unusable: %s", error)
            self.failed.emit(f"The models cannot be loaded:\n{error}\n\n{MODELS_HINT}")
        except ProviderError as error:
            log.warning("execution provider unusable: %s", error)
            self.failed.emit(f"The models cannot run as asked:\n{error}")
        except VideoError as error:
            log.warning("source unusable: %s", error)
            self.failed.emit(f"{error}\n\n{SOURCE_HINT}")
        except Exception as error:  # a worker thread must report, not take the application down
            log.exception("the frame worker for %s failed", name)
            self.failed.emit(f"Processing {name} failed:\n{type(error).__name__}: {error}")
        finally:
            with self._lock:
                self._loop = None
                self._pipeline = None
            self.stop_recording()

    def _apply_requested_mode(self, pipeline: FacePipeline) -> None:
        """Switch the pipeline to the mode asked for, opening its model here rather than in the GUI thread."""
        wanted = self._mode
        if wanted == pipeline.mode:
            return
        try:
            pipeline.load(wanted)
        except ModelError as error:
            log.warning("cannot switch to %s mode: %s", wanted, error)
            if self._mode == wanted:
                self._mode = pipeline.mode
            self.mode_failed.emit(wanted, str(error))
            return
        pipeline.set_mode(wanted)
        log.info("switched to %s mode", wanted)
        self.mode_changed.emit(wanted)

    def _on_frame(self, frame_bgr: np.ndarray, result: FrameResult) -> None:
        """Called by ``FrameLoop`` for each processed frame, in this thread."""
        if self._abort.is_set():
            return
        pipeline = self._pipeline
        if pipeline is not None:
            self._apply_requested_mode(pipeline)
        self._pace(result.time_s)
        self._rate.tick()
        recording = self._recorder is not None
        show = self._display_free.is_set()
        if not recording and not show:
            return
        options = self.overlay
        # the rate and stage times go to the status bar (``frame_ready``'s fps and result), not into the frame
        annotated, result = draw_timed(frame_bgr, result, show_axes=options.axes, show_landmarks=options.landmarks,
                                       show_box=options.box)
        if recording:
            self._record(annotated)
        if show:
            self._display_free.clear()
            self.frame_ready.emit(annotated, result, self._rate.current)

    def _record(self, frame: np.ndarray) -> None:
        with self._recording_lock:
            recorder = self._recorder
            if recorder is None:
                return
            try:
                recorder.write(frame)
            except (RecorderError, ValueError) as error:
                log.warning("recording stopped: %s", error)
                self._recorder = None
                recorder.close()
                self.recording_failed.emit(str(error))

    def _pace(self, time_s: float) -> None:
        """Hold a file's frame until its time comes, so that it plays at its own speed."""
        if not self.realtime or self._is_camera:
            return
        now = time.monotonic()
        if self._clock_start is None:
            self._clock_start = now - time_s
        delay = self._clock_start + time_s - now
        if delay > 0:
            self._abort.wait(delay)
        elif delay < -0.5:
            self._clock_start = now - time_s  # fell behind (slow model): resynchronise instead of racing
