"""The viewer's main window and ``run_viewer``, the entry point behind ``run_app.py``.

The window only arranges widgets and forwards the user's choices: one ``FrameWorker`` at a time
runs the open source through ``app.core`` in its own thread and hands back annotated frames, which
``VideoView`` shows, and whose poses ``AnglePlot`` (a dock under the video) plots for the face the user
clicked. Keys: ``M`` pose/full, ``S`` smoothing, ``L`` landmarks (full mode only), ``A`` axes, ``B``
boxes, ``P`` pose plot, ``R`` record, ``Ctrl+S`` snapshot, ``Ctrl+O`` open a file, ``Ctrl+Q`` quit.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from PyQt6.QtCore import QStandardPaths, Qt
from PyQt6.QtGui import QAction, QCloseEvent, QKeySequence
from PyQt6.QtWidgets import (QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox, QToolBar, QToolButton,
                             QWidget)

from app.core.model_io import check_mode
from app.core.results import FaceResult, FrameResult
from app.core.video import parse_source
from app.ui.angle_plot import AnglePlot
from app.ui.application import ensure_application
from app.ui.camera_menu import CameraMenu
from app.ui.video_view import VideoView, bgr_to_qimage
from app.ui.worker import FrameWorker, OverlayOptions, describe_source

log = logging.getLogger(__name__)

VIDEO_FILTER = "Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v);;All files (*)"
IDLE_MESSAGE = "Open a video file (Ctrl+O), drop one here, or choose a camera from the Camera menu."
PLOT_HEIGHT = 240
"""Pixels the pose plot's dock takes under the video when first shown (the user can drag its edge)."""
LANDMARKS_TIP = "Draw the landmarks (full mode only)"


def user_folder(kind: QStandardPaths.StandardLocation) -> Path:
    """The user's folder of ``kind`` (pictures, movies) where it exists, else the home folder: where the save
    dialogs open, never the folder the app was started from."""
    location = QStandardPaths.writableLocation(kind)
    if location and Path(location).is_dir():
        return Path(location)
    return Path.home()


def face_at(faces: tuple[FaceResult, ...], x: float, y: float) -> FaceResult | None:
    """The face whose box holds frame pixel ``(x, y)``; the smallest box where they overlap, ``None`` off them."""
    inside = [f for f in faces if f.box[0] <= x <= f.box[2] and f.box[1] <= y <= f.box[3]]
    return min(inside, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), default=None)


def one_line(message: str) -> str:
    """A multi-line message for the status bar: paragraphs joined by dashes, lines by spaces."""
    paragraphs = [" ".join(p.split()) for p in message.split("\n\n")]
    return " — ".join(p for p in paragraphs if p)


def status_text(fps: float, result: FrameResult | None, provider: str, recording: bool) -> str:
    """The permanent status-bar readout: rate, per-stage milliseconds, provider, mode and precision (``+ OR``
    when the occlusion-aware regressor places the landmarks), faces."""
    parts = [f"{fps:5.1f} FPS"]
    if result is not None:
        stages = "  ".join(f"{name} {ms:.1f} ms" for name, ms in result.timings_ms.items())
        if stages:
            parts.append(stages)
    if provider:
        parts.append(provider.removesuffix("ExecutionProvider"))
    if result is not None:
        precision = f" {result.precision}" if result.precision else ""
        parts.append(f"mode {result.mode}{precision}" + (f" + {result.refiner}" if result.refiner else ""))
        parts.append(f"{len(result.faces)} face{'' if len(result.faces) == 1 else 's'}")
    if recording:
        parts.append("● REC")
    return "  |  ".join(parts)


class MainWindow(QMainWindow):
    """Video with overlays, the toggles, source choice, recording, snapshots and a status bar."""

    def __init__(self, models_dir: Path, mode: str = "pose", smooth: bool = False, realtime: bool = True,
                 provider: str = "auto", parent: QWidget | None = None) -> None:
        """``realtime`` plays files at their own frame rate (off: as fast as they compute); ``provider`` is
        the execution provider asked for (``providers.CHOICES``)."""
        super().__init__(parent)
        check_mode(mode)
        self.models_dir = Path(models_dir)
        self.realtime = realtime
        self.provider_choice = provider
        self.overlay = OverlayOptions()
        self.worker: FrameWorker | None = None
        self.source: int | Path | None = None
        self.last_frame: np.ndarray | None = None
        self.last_result: FrameResult | None = None
        self.frames_shown = 0
        self._mode = mode
        self._smooth = smooth
        self._provider = ""
        self._fps = 0.0

        self.setWindowTitle("MNN head pose")
        self.view = VideoView(self)
        self.view.file_dropped.connect(self.open_source)
        self.view.frame_clicked.connect(self._on_video_clicked)
        self.setCentralWidget(self.view)
        self.angle_plot = AnglePlot(self)
        self.plot_dock = QDockWidget("Pose plot", self)
        self.plot_dock.setObjectName("posePlot")
        self.plot_dock.setWidget(self.angle_plot)
        self.plot_dock.setAllowedAreas(Qt.DockWidgetArea.BottomDockWidgetArea | Qt.DockWidgetArea.TopDockWidgetArea)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.plot_dock)
        self.resizeDocks([self.plot_dock], [PLOT_HEIGHT], Qt.Orientation.Vertical)
        self.plot_dock.hide()
        self.stats_label = QLabel(self)
        self.statusBar().addPermanentWidget(self.stats_label)
        self._build_actions()
        self._build_menus_and_toolbar()
        self._show_mode()
        self.view.show_message(IDLE_MESSAGE)
        self._refresh_stats()
        self.resize(960, 720)

    # --- construction ---------------------------------------------------------------------------

    def _action(self, text: str, shortcut: str | QKeySequence.StandardKey | None, slot: Any,
                checkable: bool = False, checked: bool = False, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.setCheckable(checkable)
        if checkable:
            action.setChecked(checked)
            action.toggled.connect(slot)
        else:
            action.triggered.connect(slot)
        action.setToolTip(f"{tip or text} ({action.shortcut().toString()})" if shortcut else tip or text)
        self.addAction(action)  # shortcuts work with the toolbar hidden too
        return action

    def _build_actions(self) -> None:
        self.open_action = self._action("&Open video…", QKeySequence.StandardKey.Open, self.choose_file)
        self.quit_action = self._action("&Quit", "Ctrl+Q", self.close)
        self.mode_action = self._action(self._mode_label(), "M", self._on_mode_toggled, checkable=True,
                                        checked=self._mode == "full",
                                        tip="Pose only (encoder) or full model with landmarks")
        self.smooth_action = self._action("&Smoothing", "S", self._on_smoothing_toggled, checkable=True,
                                          checked=self._smooth, tip="Temporal smoothing of the pose")
        self.landmarks_action = self._action("&Landmarks", "L", self._on_landmarks_toggled, checkable=True,
                                             checked=self.overlay.landmarks, tip=LANDMARKS_TIP)
        self.axes_action = self._action("&Axes", "A", self._on_axes_toggled, checkable=True,
                                        checked=self.overlay.axes)
        self.box_action = self._action("&Boxes", "B", self._on_box_toggled, checkable=True,
                                       checked=self.overlay.box)
        self.record_action = self._action("&Record", "R", self._on_record_toggled, checkable=True,
                                          tip="Record the annotated video to a file")
        self.snapshot_action = self._action("Sna&pshot", "Ctrl+S", self.choose_snapshot_file,
                                            tip="Save the annotated frame as PNG")
        self.plot_action = self.plot_dock.toggleViewAction()  # checked while the dock shows, its close button too
        self.plot_action.setText("Pose &plot")
        self.plot_action.setShortcut(QKeySequence("P"))
        self.plot_action.setToolTip("Yaw, pitch and roll of the selected face over the last seconds (P)")
        self.addAction(self.plot_action)

    def _build_menus_and_toolbar(self) -> None:
        menu_bar = self.menuBar()
        file_menu = menu_bar.addMenu("&File")
        file_menu.addActions([self.open_action, self.snapshot_action, self.record_action])
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        self.camera_menu = CameraMenu(parent=self)
        self.camera_menu.camera_chosen.connect(self.open_source)
        menu_bar.addMenu(self.camera_menu)
        view_menu = menu_bar.addMenu("&View")
        view_menu.addActions([self.mode_action, self.smooth_action, self.landmarks_action, self.axes_action,
                              self.box_action])
        view_menu.addSeparator()
        view_menu.addAction(self.plot_action)

        toolbar = QToolBar("Controls", self)
        toolbar.setObjectName("controls")
        toolbar.setMovable(False)
        toolbar.addAction(self.open_action)
        toolbar.addAction(self.camera_menu.menuAction())
        camera_button = toolbar.widgetForAction(self.camera_menu.menuAction())
        if isinstance(camera_button, QToolButton):
            camera_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        toolbar.addSeparator()
        toolbar.addActions([self.mode_action, self.smooth_action, self.landmarks_action, self.axes_action,
                            self.box_action, self.plot_action])
        toolbar.addSeparator()
        toolbar.addActions([self.record_action, self.snapshot_action])
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, toolbar)

    def _mode_label(self) -> str:
        return f"&Mode: {self._mode}"

    # --- sources --------------------------------------------------------------------------------

    def open_source(self, source: int | str | Path) -> None:
        """Stop the running source, if any, and start ``source`` (a camera index or a file)."""
        source = parse_source(source)
        self._stop_worker()
        self.source = source
        self.last_frame, self.last_result = None, None
        self._fps, self._provider = 0.0, ""
        self.view.clear_frame()
        self.angle_plot.clear()
        self.view.show_message(f"Opening {describe_source(source)}…")
        self.camera_menu.active = source if isinstance(source, int) else None
        self.setWindowTitle(f"MNN head pose — {describe_source(source)}")
        worker = FrameWorker(source, self.models_dir, mode=self._mode, smooth=self._smooth, overlay=self.overlay,
                             realtime=self.realtime, provider=self.provider_choice, parent=self)
        worker.opened.connect(self._on_opened)
        worker.frame_ready.connect(self._on_frame)
        worker.failed.connect(self._on_failed)
        worker.mode_changed.connect(self._on_mode_changed)
        worker.mode_failed.connect(self._on_mode_failed)
        worker.ended.connect(self._on_ended)
        worker.recording_failed.connect(self._on_recording_failed)
        self.worker = worker
        worker.start()
        self._refresh_stats()

    def choose_file(self) -> None:
        """Ask for a video file and open it."""
        start = self.source.parent if isinstance(self.source, Path) else user_folder(
            QStandardPaths.StandardLocation.MoviesLocation)
        path, _ = QFileDialog.getOpenFileName(self, "Open video", str(start), VIDEO_FILTER)
        if path:
            self.open_source(Path(path))

    def _stop_worker(self) -> None:
        worker, self.worker = self.worker, None
        if worker is None:
            return
        worker.stop()
        worker.deleteLater()
        self._set_recording_checked(False)

    # --- worker signals (GUI thread) ------------------------------------------------------------

    def _from_current_worker(self) -> bool:
        """Signals queued by a worker that has since been replaced are ignored."""
        return self.worker is not None and self.sender() is self.worker

    def _on_opened(self, provider: str, source_fps: float) -> None:
        if not self._from_current_worker():
            return
        self._provider = provider
        self.view.clear_message()
        self.statusBar().showMessage(f"Playing {describe_source(self.source)} ({source_fps:.0f} fps source)", 5000)
        self._refresh_stats()

    def _on_frame(self, frame_bgr: np.ndarray, result: FrameResult, fps: float) -> None:
        if not self._from_current_worker():
            return
        self.view.set_frame(frame_bgr)
        self.last_frame, self.last_result, self._fps = frame_bgr, result, fps
        self.frames_shown += 1
        self.angle_plot.add(result)
        self._outline_selected_face()
        self._refresh_stats()
        self.worker.frame_shown()

    # --- the selected face ----------------------------------------------------------------------

    @property
    def selected_face(self) -> int | None:
        """The id of the face the user clicked (the plot follows it); ``None``: the plot follows the lowest id."""
        return self.angle_plot.selected

    def select_face(self, face_id: int | None) -> None:
        """Plot ``face_id`` from the next frame on (``None``: the lowest face id)."""
        self.angle_plot.select(face_id)
        self._outline_selected_face()
        self.statusBar().showMessage(f"Plotting face #{face_id}" if face_id is not None
                                     else "Plotting the face with the lowest id", 3000)

    def _on_video_clicked(self, x: float, y: float) -> None:
        """A click on a face's box selects that face; a click beside every box goes back to the lowest id."""
        faces = self.last_result.faces if self.last_result is not None else ()
        face = face_at(faces, x, y)
        self.select_face(face.face_id if face is not None else None)

    def _outline_selected_face(self) -> None:
        selected = self.angle_plot.selected
        faces = self.last_result.faces if self.last_result is not None else ()
        box = next((f.box for f in faces if f.face_id == selected), None) if selected is not None else None
        self.view.set_highlight(None if box is None else tuple(box[:4]))

    def _on_failed(self, message: str) -> None:
        if not self._from_current_worker():
            return
        log.warning("%s", message)
        self.view.show_message(message)
        self.statusBar().showMessage(one_line(message))
        self._set_recording_checked(False)

    def _on_ended(self, message: str) -> None:
        if not self._from_current_worker():
            return
        self.statusBar().showMessage(message)
        self._set_recording_checked(False)

    def _on_recording_failed(self, message: str) -> None:
        if not self._from_current_worker():
            return
        self._set_recording_checked(False)
        self.statusBar().showMessage(f"Recording stopped: {message}")

    def _refresh_stats(self) -> None:
        recording = self.worker is not None and self.worker.recording
        self.stats_label.setText(status_text(self._fps, self.last_result, self._provider, recording))

    # --- toggles --------------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """The mode asked for: ``pose`` (encoder only) or ``full`` (with landmarks)."""
        return self._mode

    def set_mode(self, mode: str) -> None:
        """Switch to ``mode`` from the next frame; the worker reports back if its model cannot be opened."""
        check_mode(mode)
        self._mode = mode
        if self.worker is not None:
            self.worker.set_mode(mode)
        self._show_mode()

    def _show_mode(self) -> None:
        """The mode action, and the Landmarks action greyed out in pose mode, which has no landmarks."""
        self.mode_action.blockSignals(True)
        self.mode_action.setChecked(self._mode == "full")
        self.mode_action.blockSignals(False)
        self.mode_action.setText(self._mode_label())
        self.landmarks_action.setEnabled(self._mode == "full")
        self._refresh_stats()

    def _on_mode_changed(self, mode: str) -> None:
        if self._from_current_worker():
            self.statusBar().showMessage(f"{mode} mode", 2000)

    def _on_mode_failed(self, mode: str, message: str) -> None:
        if not self._from_current_worker():
            return
        self._mode = self.worker.mode
        self._show_mode()
        self.statusBar().showMessage(one_line(f"Cannot switch to {mode} mode: {message}"))
        box = QMessageBox(QMessageBox.Icon.Warning, "Mode unavailable", f"Cannot switch to {mode} mode:\n{message}",
                          QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def toggle_mode(self) -> None:
        """Pose ↔ full."""
        self.set_mode("pose" if self._mode == "full" else "full")

    def _on_mode_toggled(self, checked: bool) -> None:
        self.set_mode("full" if checked else "pose")

    @property
    def smoothing(self) -> bool:
        """Whether temporal smoothing of the pose is asked for."""
        return self._smooth

    def _on_smoothing_toggled(self, checked: bool) -> None:
        self._smooth = checked
        if self.worker is not None:
            self.worker.set_smoothing(checked)
        self.statusBar().showMessage(f"Smoothing {'on' if checked else 'off'}", 2000)

    def _on_landmarks_toggled(self, checked: bool) -> None:
        self.overlay.landmarks = checked

    def _on_axes_toggled(self, checked: bool) -> None:
        self.overlay.axes = checked

    def _on_box_toggled(self, checked: bool) -> None:
        self.overlay.box = checked

    # --- snapshot and recording -----------------------------------------------------------------

    def save_snapshot(self, path: Path) -> bool:
        """Write the annotated frame shown now to ``path`` as PNG; ``False`` when there is none or it fails."""
        if self.last_frame is None:
            self.statusBar().showMessage("No frame to save yet", 3000)
            return False
        path = Path(path)
        ok = bgr_to_qimage(self.last_frame).save(str(path), "PNG")
        self.statusBar().showMessage(f"Saved {path}" if ok else f"Could not write {path}", 5000)
        if not ok:
            log.warning("could not write the snapshot %s", path)
        return ok

    def choose_snapshot_file(self) -> None:
        """Ask where to save the snapshot, then save it."""
        if self.last_frame is None:
            self.statusBar().showMessage("No frame to save yet", 3000)
            return
        folder = user_folder(QStandardPaths.StandardLocation.PicturesLocation)
        default = folder / f"snapshot-{time.strftime('%Y%m%d-%H%M%S')}.png"
        path, _ = QFileDialog.getSaveFileName(self, "Save snapshot", str(default), "PNG images (*.png)")
        if path:
            self.save_snapshot(Path(path).with_suffix(".png"))

    def start_recording(self, path: Path) -> bool:
        """Record the annotated stream to ``path`` (``.mp4`` or ``.avi``) from the next frame on."""
        if self.worker is None or not self.worker.isRunning():
            self.statusBar().showMessage("Nothing is playing to record", 3000)
            self._set_recording_checked(False)
            return False
        self.worker.start_recording(Path(path))
        self._set_recording_checked(True)
        self.statusBar().showMessage(f"Recording to {path}")
        self._refresh_stats()
        return True

    def stop_recording(self) -> int:
        """Finish the recording; returns the number of frames written."""
        frames = self.worker.stop_recording() if self.worker is not None else 0
        self._set_recording_checked(False)
        self.statusBar().showMessage(f"Recording finished: {frames} frames", 5000)
        self._refresh_stats()
        return frames

    def _on_record_toggled(self, checked: bool) -> None:
        if not checked:
            self.stop_recording()
            return
        folder = user_folder(QStandardPaths.StandardLocation.MoviesLocation)
        default = folder / f"recording-{time.strftime('%Y%m%d-%H%M%S')}.mp4"
        path, _ = QFileDialog.getSaveFileName(self, "Record to", str(default),
                                              "MPEG-4 video (*.mp4);;AVI video (*.avi)")
        if not path:
            self._set_recording_checked(False)
            return
        path = Path(path)
        if path.suffix.lower() not in (".mp4", ".avi"):
            path = path.with_suffix(".mp4")
        self.start_recording(path)

    def _set_recording_checked(self, checked: bool) -> None:
        self.record_action.blockSignals(True)
        self.record_action.setChecked(checked)
        self.record_action.blockSignals(False)
        self._refresh_stats()

    # --- closing --------------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        """Stop the worker (it finishes any recording) and wait for it before the window goes."""
        self._stop_worker()
        event.accept()


def run_viewer(args: Any) -> int:
    """Show the viewer for ``args`` (``source``, ``mode``, ``models``, ``smooth``, ``provider``) and run the
    event loop.

    ``source`` ``None`` opens the window with nothing playing; ``"0"`` is camera 0; any other
    string is a file path. Returns the application's exit code.
    """
    app = ensure_application()
    window = MainWindow(Path(args.models), mode=args.mode, smooth=bool(args.smooth),
                        provider=getattr(args, "provider", "auto"))
    window.show()
    if args.source is not None:
        window.open_source(args.source)
    return app.exec()
