"""The PyQt6 viewer, offscreen: frames arrive and show, live mode switching, clean shutdown, in-window
messages for a missing camera or models, snapshots, recording and file drops.

Runs on ``d18.mp4`` with 64 px randomly initialised models from ``trainer.export``; plain pytest
with a module ``QApplication`` (no pytest-qt).
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterator

import cv2
import numpy as np
import pytest
from PyQt6.QtCore import QEventLoop, QTimer, QMimeData, QPoint, QPointF, Qt, QUrl
from PyQt6.QtGui import QDragEnterEvent, QDropEvent
from PyQt6.QtTest import QTest
from PyQt6.QtWidgets import QApplication, QMessageBox, QWidget

from app.core.model_io import ENCODER_FILE
from app.core.pipeline import FrameResult
from app.core.video import VideoError
from app.ui import camera_menu
from app.ui.application import ensure_application
from app.ui.main_window import MainWindow, run_viewer, status_text
from tests.conftest import require_shared

TIMEOUT_S = 30.0
VIDEO_SIZE = (480, 480)
"""d18.mp4's width and height."""


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT_S) -> bool:
    """Run the Qt event loop until ``condition()`` holds or ``timeout`` seconds pass."""
    app = QApplication.instance()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.fixture(scope="module")
def qapp() -> QApplication:
    return ensure_application([])


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer.export import export_random_models

    out = tmp_path_factory.mktemp("models")
    export_random_models(out, input_size=64, landmarks=68)
    return out


@pytest.fixture
def video() -> Path:
    return require_shared("videos", "d18.mp4")


@pytest.fixture
def window(qapp: QApplication, models_dir: Path) -> Iterator[MainWindow]:
    win = MainWindow(models_dir)
    win.show()
    yield win
    win.close()
    win.deleteLater()
    qapp.processEvents()


def playing(window: MainWindow, video: Path, frames: int = 3) -> MainWindow:
    """Open ``video`` and wait until ``frames`` annotated frames have been shown."""
    window.open_source(video)
    assert wait_until(lambda: window.frames_shown >= frames), window.view.message() or "no frames arrived"
    return window


def test_frames_of_the_video_are_shown_at_its_aspect_ratio(window: MainWindow, video: Path) -> None:
    playing(window, video)
    pixmap = window.view.pixmap()
    assert pixmap is not None and not pixmap.isNull()
    assert (pixmap.width(), pixmap.height()) == VIDEO_SIZE
    target = window.view.target_rect()
    assert abs(target.width() - target.height()) <= 1  # a square video stays square on screen
    assert window.view.message() == ""
    assert isinstance(window.last_result, FrameResult)
    assert "FPS" in window.stats_label.text() and "mode pose" in window.stats_label.text()


def test_m_key_and_mode_button_switch_the_running_pipeline(window: MainWindow, video: Path) -> None:
    playing(window, video)
    window.activateWindow()
    QTest.qWaitForWindowActive(window)
    QTest.keyClick(window, Qt.Key.Key_M)
    assert window.mode == "full"
    assert wait_until(lambda: window.last_result.mode == "full")
    assert window.worker.pipeline_mode == "full"
    assert all(face.landmarks is not None for face in window.last_result.faces)

    window.mode_action.trigger()
    assert window.mode == "pose"
    assert wait_until(lambda: window.last_result.mode == "pose")
    assert window.worker.pipeline_mode == "pose"


def test_closing_the_window_stops_the_worker_thread(window: MainWindow, video: Path) -> None:
    playing(window, video)
    worker = window.worker
    assert worker.isRunning()
    start = time.monotonic()
    window.close()
    assert not worker.isRunning()
    assert time.monotonic() - start < 5.0


def test_a_camera_that_does_not_exist_gives_a_message_in_the_window(window: MainWindow) -> None:
    window.open_source("97")
    assert wait_until(lambda: "camera 97: cannot be opened" in window.view.message())
    assert "camera 97: cannot be opened" in window.statusBar().currentMessage()
    assert wait_until(lambda: not window.worker.isRunning())
    assert window.view.pixmap() is None


def test_a_missing_models_folder_gives_a_message_in_the_window(qapp: QApplication, tmp_path: Path,
                                                               video: Path) -> None:
    win = MainWindow(tmp_path / "no-models")
    win.show()
    try:
        win.open_source(video)
        assert wait_until(lambda: "models cannot be loaded" in win.view.message())
        assert "no-models" in win.view.message()
        assert wait_until(lambda: not win.worker.isRunning())
        assert win.frames_shown == 0
    finally:
        win.close()


def test_snapshot_writes_the_annotated_frame_as_png(window: MainWindow, video: Path, tmp_path: Path) -> None:
    playing(window, video)
    path = tmp_path / "snapshot.png"
    assert window.save_snapshot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imread(str(path))
    assert image.shape == (*VIDEO_SIZE[::-1], 3)
    assert np.array_equal(image, window.last_frame)  # PNG is lossless: exactly the frame on screen


def test_recording_writes_a_playable_video_of_the_annotated_stream(window: MainWindow, video: Path,
                                                                   tmp_path: Path) -> None:
    playing(window, video)
    path = tmp_path / "recording.mp4"
    assert window.start_recording(path)
    assert window.record_action.isChecked()
    shown = window.frames_shown
    assert wait_until(lambda: window.frames_shown >= shown + 8)
    written = window.stop_recording()
    assert written > 0
    assert not window.record_action.isChecked()

    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    assert len(frames) == written
    assert frames[0].shape == (*VIDEO_SIZE[::-1], 3)


def drag_and_drop(widget: QWidget, mime: QMimeData) -> bool:
    """Send a drag-enter and, if the widget accepts it, the drop, as a real drag does; whether it was taken."""
    enter = QDragEnterEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, drop)
    return drop.isAccepted()


def test_dropping_a_video_file_on_the_view_opens_it(window: MainWindow, video: Path) -> None:
    text = QMimeData()
    text.setText("not a file")
    assert not drag_and_drop(window.view, text)
    assert window.source is None

    files = QMimeData()
    files.setUrls([QUrl.fromLocalFile(str(video))])
    assert drag_and_drop(window.view, files)
    assert window.source == video
    assert wait_until(lambda: window.frames_shown >= 1)


def test_overlay_and_smoothing_keys_flip_their_settings(window: MainWindow) -> None:
    window.activateWindow()
    QTest.qWaitForWindowActive(window)
    for key, attribute in ((Qt.Key.Key_L, "landmarks"), (Qt.Key.Key_A, "axes"), (Qt.Key.Key_B, "box")):
        before = getattr(window.overlay, attribute)
        QTest.keyClick(window, key)
        assert getattr(window.overlay, attribute) is not before
    smoothing = window.smoothing
    QTest.keyClick(window, Qt.Key.Key_S)
    assert window.smoothing is not smoothing and window.smooth_action.isChecked() is not smoothing


def test_a_mode_whose_model_is_missing_is_refused_and_the_video_carries_on(
        qapp: QApplication, models_dir: Path, tmp_path: Path, video: Path) -> None:
    encoder_only = tmp_path / "encoder-only"
    encoder_only.mkdir()
    shutil.copy(models_dir / ENCODER_FILE, encoder_only / ENCODER_FILE)
    win = MainWindow(encoder_only)
    win.show()
    try:
        playing(win, video)
        win.set_mode("full")
        assert wait_until(lambda: "Cannot switch to full mode" in win.statusBar().currentMessage())
        assert win.mode == "pose" and not win.mode_action.isChecked()
        assert any(isinstance(w, QMessageBox) and w.isVisible() for w in win.findChildren(QMessageBox))
        shown = win.frames_shown
        assert wait_until(lambda: win.frames_shown > shown + 2)
        assert win.last_result.mode == "pose" and win.worker.isRunning()
    finally:
        win.close()


def test_closing_the_window_while_recording_finishes_the_file(window: MainWindow, video: Path,
                                                              tmp_path: Path) -> None:
    playing(window, video)
    path = tmp_path / "closing.avi"
    window.start_recording(path)
    shown = window.frames_shown
    assert wait_until(lambda: window.frames_shown >= shown + 3)
    window.close()
    capture = cv2.VideoCapture(str(path))
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape == (*VIDEO_SIZE[::-1], 3)


def test_camera_menu_lists_the_cameras_that_open_and_the_one_in_use(
        qapp: QApplication, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[int] = []

    class OnlyCameraTwo:
        def __init__(self, index: int) -> None:
            opened.append(index)
            if index != 2:
                raise VideoError(f"camera {index}: cannot be opened as a video")

        def close(self) -> None:
            pass

    monkeypatch.setattr(camera_menu, "VideoSource", OnlyCameraTwo)
    assert camera_menu.available_cameras(4, in_use=0) == [0, 2]
    assert 0 not in opened  # the camera in use is not opened a second time

    menu = camera_menu.CameraMenu(count=4)
    chosen: list[int] = []
    menu.camera_chosen.connect(chosen.append)
    menu.refresh()
    assert [a.text() for a in menu.actions()] == ["Camera 2"]
    menu.actions()[0].trigger()
    assert chosen == [2]

    menu.count = 2
    menu.refresh()
    assert [(a.text(), a.isEnabled()) for a in menu.actions()] == [("No camera found", False)]


def test_run_viewer_opens_the_source_and_returns_the_event_loops_exit_code(
        qapp: QApplication, models_dir: Path, video: Path) -> None:
    args = SimpleNamespace(source=str(video), mode="full", models=models_dir, smooth=True)
    seen: list[MainWindow] = []
    deadline = time.monotonic() + TIMEOUT_S

    def check() -> None:
        windows = [w for w in qapp.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if windows and windows[0].frames_shown >= 2:
            seen.append(windows[0])
            windows[0].close()
            qapp.exit(7)
        elif time.monotonic() > deadline:
            qapp.exit(99)
        else:
            QTimer.singleShot(50, check)

    QTimer.singleShot(50, check)
    assert run_viewer(args) == 7
    window = seen[0]
    assert window.source == video and window.mode == "full" and window.smoothing
    assert window.last_result.mode == "full"
    assert window.worker is None  # closing stopped and released it
    window.deleteLater()


def test_status_text_names_rate_stages_provider_mode_and_faces() -> None:
    result = FrameResult(index=0, time_s=0.0, faces=(), timings_ms={"detect": 4.25, "infer": 1.5}, mode="full")
    text = status_text(29.96, result, "CUDAExecutionProvider", recording=True)
    assert "30.0 FPS" in text
    assert "detect 4.2 ms" in text or "detect 4.3 ms" in text
    assert "infer 1.5 ms" in text
    assert "CUDA" in text and "ExecutionProvider" not in text
    assert "mode full" in text and "0 faces" in text and "REC" in text


def test_status_text_names_the_precision_the_network_ran_at() -> None:
    result = FrameResult(index=0, time_s=0.0, faces=(), timings_ms={}, mode="pose", precision="int8")
    assert "mode pose int8" in status_text(30.0, result, "CPUExecutionProvider", recording=False)


def test_status_text_says_when_the_occlusion_aware_regressor_places_the_landmarks() -> None:
    refined = FrameResult(index=0, time_s=0.0, faces=(), timings_ms={"refine": 2.0}, mode="full", refiner="OR")
    plain = FrameResult(index=0, time_s=0.0, faces=(), timings_ms={}, mode="full")
    assert "mode full + OR" in status_text(30.0, refined, "CPUExecutionProvider", recording=False)
    assert "OR" not in status_text(30.0, plain, "CPUExecutionProvider", recording=False)
