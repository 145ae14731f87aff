"""The PyQt6 viewer, offscreen: frames arrive and show, live mode switching, clean shutdown, in-window
messages for a missing camera or models, snapshots, recording, file drops, the pose plot and the face
it follows, the Landmarks action's state, and where the save dialogs open.

Runs on ``d18.mp4`` (and, for choosing between two faces, ``d18.mp4`` and ``d12.mp4`` side by side)
with 64 px randomly initialised models from ``trainer.export``; plain pytest with a module
``QApplication`` (no pytest-qt).
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import math
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
from app.core.results import FaceResult, FrameResult
from app.core.video import VideoError
from app.ui import camera_menu, main_window
from app.ui.angle_plot import (PLOT_WINDOW_S, SELECTION_LOST_S, AngleAxis, AnglePlot, FaceFollower, Sample,
                               readout_html)
from app.ui.application import ensure_application
from app.ui.main_window import MainWindow, run_viewer, status_text
from tests.conftest import ROOT, require_shared

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
    stats = window.stats_label.text()
    assert "FPS" in stats and "mode pose" in stats
    assert "infer" in stats and "overlay" in stats and " ms" in stats  # stage times live in the status bar


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
    window.set_mode("full")  # landmarks exist, and their key works, in full mode only
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
        assert win.landmarks_action.isEnabled()  # full mode asked for ...
        assert wait_until(lambda: "Cannot switch to full mode" in win.statusBar().currentMessage())
        assert win.mode == "pose" and not win.mode_action.isChecked()
        assert not win.landmarks_action.isEnabled()  # ... and refused: back to pose mode, without landmarks
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


# --- the pose plot and the face it follows -------------------------------------------------------


def face(face_id: int, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0,
         box: tuple[float, float, float, float] = (0, 0, 10, 10)) -> FaceResult:
    return FaceResult(face_id=face_id, box=np.array(box, dtype=np.float64), score=0.9, yaw=yaw, pitch=pitch,
                      roll=roll, centre=np.zeros(2), scale=1.0, landmarks=None, visibility=None)


def frame(time_s: float, *faces: FaceResult) -> FrameResult:
    return FrameResult(index=round(time_s * 30), time_s=time_s, faces=faces, timings_ms={}, mode="pose")


def view_menu_action(window: MainWindow, text: str):
    """The View menu's entry called ``text`` (ampersands ignored), as a user would find it."""
    menus = [a.menu() for a in window.menuBar().actions() if a.menu() is not None]
    view = next(m for m in menus if m.title().replace("&", "") == "View")
    return next(a for a in view.actions() if a.text().replace("&", "") == text)


def test_the_pose_plot_is_shown_and_hidden_from_the_view_menu_and_plots_the_face_shown(
        window: MainWindow, video: Path) -> None:
    action = view_menu_action(window, "Pose plot")
    assert action.isCheckable() and action.shortcut().toString() == "P"
    assert not window.plot_dock.isVisible() and not action.isChecked()
    action.trigger()
    assert window.plot_dock.isVisible() and action.isChecked() and window.angle_plot.isVisible()

    playing(window, video, frames=5)
    plot = window.angle_plot
    latest = plot.samples[-1]
    assert latest.time_s == window.last_result.time_s
    followed = min(window.last_result.faces, key=lambda f: f.face_id)  # nothing clicked: the lowest id
    assert (latest.face_id, latest.yaw, latest.pitch, latest.roll) == (
        followed.face_id, followed.yaw, followed.pitch, followed.roll)

    def drawn_up_to_date() -> bool:
        times, yaws = plot.curve_data("yaw")
        newest = plot.samples[-1]
        return times.size > 1 and times[-1] == newest.time_s and yaws[-1] == newest.yaw

    assert wait_until(drawn_up_to_date)  # the timer has drawn the newest sample
    times, pitches = plot.curve_data("pitch")
    assert np.allclose(pitches, [s.pitch for s in plot.samples if s.time_s >= times[0]][:pitches.size])

    action.trigger()
    assert not window.plot_dock.isVisible() and not action.isChecked()
    window.activateWindow()
    QTest.qWaitForWindowActive(window)
    QTest.keyClick(window, Qt.Key.Key_P)
    assert window.plot_dock.isVisible() and action.isChecked()


def test_opening_a_source_clears_the_plot_and_the_selection(window: MainWindow, video: Path) -> None:
    window.angle_plot.add(frame(50.0, face(7, yaw=10.0)))
    window.select_face(7)
    window.open_source(video)
    assert len(window.angle_plot.samples) == 0 and window.selected_face is None
    assert wait_until(lambda: window.frames_shown >= 1)
    assert window.angle_plot.samples[0].time_s < 1.0


@pytest.fixture(scope="module")
def two_faces_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``d18.mp4`` and ``d12.mp4`` side by side (960 x 480, 5 s): two faces at once."""
    left = cv2.VideoCapture(str(require_shared("videos", "d18.mp4")))
    right = cv2.VideoCapture(str(require_shared("videos", "d12.mp4")))
    path = tmp_path_factory.mktemp("two-faces") / "two_faces.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (960, 480))
    for _ in range(150):
        ok_left, a = left.read()
        ok_right, b = right.read()
        if not (ok_left and ok_right):
            break
        writer.write(np.hstack([cv2.resize(a, (480, 480)), cv2.resize(b, (480, 480))]))
    writer.release()
    left.release()
    right.release()
    return path


def click_frame_point(window: MainWindow, x: float, y: float) -> None:
    point = window.view.frame_to_widget(x, y).toPoint()
    QTest.mouseClick(window.view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point)


def test_clicking_a_face_selects_it_and_the_plot_follows_it(window: MainWindow, two_faces_video: Path) -> None:
    window.plot_action.setChecked(True)
    window.open_source(two_faces_video)
    assert wait_until(lambda: window.last_result is not None and len(window.last_result.faces) == 2)
    assert window.selected_face is None and window.angle_plot.samples[-1].face_id == min(
        f.face_id for f in window.last_result.faces)

    chosen = max(window.last_result.faces, key=lambda f: f.face_id)  # not the one followed by default
    x1, y1, x2, y2 = chosen.box[:4]
    click_frame_point(window, (x1 + x2) / 2, (y1 + y2) / 2)
    assert window.selected_face == chosen.face_id
    assert window.view.highlight() is not None

    shown = window.frames_shown
    assert wait_until(lambda: window.frames_shown >= shown + 3)
    sample = window.angle_plot.samples[-1]
    now = next((f for f in window.last_result.faces if f.face_id == chosen.face_id), None)
    if now is None:
        assert math.isnan(sample.yaw)  # missing for a moment: a gap, not another face
    else:
        assert (sample.face_id, sample.yaw, sample.roll) == (chosen.face_id, now.yaw, now.roll)
        assert window.view.highlight() == tuple(float(v) for v in now.box[:4])

    click_frame_point(window, 2, 2)  # beside every box: back to the lowest id
    assert window.selected_face is None and window.view.highlight() is None


def test_a_selected_face_that_is_missing_leaves_a_gap_then_the_lowest_id_is_followed(qapp: QApplication) -> None:
    follower = FaceFollower()
    assert follower.follow(frame(0.0, face(3), face(2))).face_id == 2  # nothing selected: the lowest id
    follower.select(3)
    assert follower.follow(frame(0.1, face(2), face(3))).face_id == 3
    assert follower.follow(frame(0.2, face(2))) is None  # missing: a gap
    assert follower.follow(frame(0.1 + SELECTION_LOST_S, face(2))) is None
    assert follower.follow(frame(0.2 + SELECTION_LOST_S, face(2))).face_id == 2  # gone for good
    assert follower.selected is None

    plot = AnglePlot()
    plot.add(frame(0.0, face(1, yaw=5.0)))
    plot.add(frame(0.1))
    assert math.isnan(plot.samples[-1].yaw) and plot.samples[-1].face_id is None
    plot.add(frame(0.2, face(1, yaw=6.0)))
    plot.add(frame(0.3, face(1, yaw=7.0), face(4, yaw=-30.0)))
    plot.select(4)
    plot.add(frame(0.4, face(1, yaw=8.0), face(4, yaw=-31.0)))  # another face: its curve starts afresh
    before, gap, after = list(plot.samples)[-3:]
    assert (before.face_id, before.yaw) == (1, 7.0) and (after.face_id, after.yaw) == (4, -31.0)
    assert gap.face_id is None and math.isnan(gap.yaw) and gap.time_s == after.time_s


def test_the_plot_keeps_the_last_ten_seconds_and_redraws_at_most_15_times_a_second(qapp: QApplication) -> None:
    plot = AnglePlot()
    plot.show()
    qapp.processEvents()
    redraws = plot.redraws
    for k in range(400):
        plot.add(frame(k / 30, face(1, yaw=float(k))))
    assert plot.redraws == redraws  # adding samples draws nothing
    newest = 399 / 30
    assert plot.samples[-1].time_s == newest
    assert newest - PLOT_WINDOW_S - 1e-9 <= plot.samples[0].time_s <= newest - PLOT_WINDOW_S + 1 / 30

    start, added = time.monotonic(), 400
    while time.monotonic() - start < 1.0:
        plot.add(frame(added / 30, face(1, yaw=float(added))))
        added += 1
        qapp.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
        time.sleep(0.004)
    drawn = plot.redraws - redraws
    assert added > 100 and 1 <= drawn <= 16
    plot.close()


def test_angles_in_the_plot_never_read_minus_zero(qapp: QApplication) -> None:
    text = readout_html(Sample(1.0, 1, yaw=-0.3, pitch=-0.49, roll=-12.0), selected=True)
    assert "-0°" not in text and "+0°" in text and "-12°" in text
    axis = AngleAxis(orientation="left")
    assert axis.tickStrings([-1e-9, 10.0, -20.0], 1.0, 10.0) == ["0", "10", "-20"]
    assert "-0.0" not in axis.tickStrings([-1e-9, 0.5], 1.0, 0.5)


# --- the Landmarks action and the save dialogs -------------------------------------------------


def test_the_landmarks_action_is_disabled_in_pose_mode_and_enabled_in_full_mode(window: MainWindow,
                                                                                 video: Path) -> None:
    assert window.mode == "pose" and not window.landmarks_action.isEnabled()
    window.activateWindow()
    QTest.qWaitForWindowActive(window)
    before = window.overlay.landmarks
    QTest.keyClick(window, Qt.Key.Key_L)
    assert window.overlay.landmarks is before  # a greyed action does nothing
    playing(window, video)
    QTest.keyClick(window, Qt.Key.Key_M)
    assert window.mode == "full" and window.landmarks_action.isEnabled()
    assert wait_until(lambda: window.last_result.mode == "full")
    window.mode_action.trigger()
    assert window.mode == "pose" and not window.landmarks_action.isEnabled()


def test_the_snapshot_and_record_dialogs_open_in_the_users_folders_not_the_project(
        window: MainWindow, video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def no_choice(parent: QWidget, caption: str, directory: str, *rest: object) -> tuple[str, str]:
        asked.append(directory)
        return "", ""

    monkeypatch.chdir(ROOT)  # where a bare file name would land
    monkeypatch.setattr(main_window.QFileDialog, "getSaveFileName", no_choice)
    window.last_frame = np.zeros((4, 4, 3), np.uint8)
    window.choose_snapshot_file()
    playing(window, video, frames=1)
    window.record_action.trigger()
    assert not window.record_action.isChecked()  # nothing chosen, nothing recorded
    assert len(asked) == 2 and asked[0].endswith(".png") and asked[1].endswith(".mp4")
    for directory in asked:
        folder = Path(directory).resolve().parent
        assert folder.is_dir()
        assert not folder.is_relative_to(ROOT.resolve()), folder


def test_the_save_folders_fall_back_to_home_where_the_users_folder_is_missing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pictures = main_window.QStandardPaths.StandardLocation.PicturesLocation
    monkeypatch.setattr(main_window.QStandardPaths, "writableLocation", lambda kind: str(tmp_path / "absent"))
    assert main_window.user_folder(pictures) == Path.home()
    monkeypatch.setattr(main_window.QStandardPaths, "writableLocation", lambda kind: str(tmp_path))
    assert main_window.user_folder(pictures) == tmp_path
