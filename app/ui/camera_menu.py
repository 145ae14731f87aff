"""The Camera menu: lists the camera indices that open, probed each time the menu is shown.

Cameras come and go (a USB webcam unplugged), so the list is rebuilt on ``aboutToShow`` rather than
once at start-up. Probing opens each index with ``app.core.video.VideoSource`` and closes it again;
the index the viewer is using is listed without probing, since a busy camera may refuse a second
open.
"""
from __future__ import annotations

import logging

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtGui import QAction, QActionGroup
from PyQt6.QtWidgets import QMenu, QWidget

from app.core.video import VideoError, VideoSource

log = logging.getLogger(__name__)

MAX_CAMERAS = 6
"""Indices ``0 .. MAX_CAMERAS - 1`` are probed."""


def available_cameras(count: int = MAX_CAMERAS, in_use: int | None = None) -> list[int]:
    """The camera indices below ``count`` that open; ``in_use`` is listed without being opened."""
    found = []
    for index in range(count):
        if index == in_use:
            found.append(index)
            continue
        try:
            VideoSource(index).close()
        except VideoError:
            continue
        found.append(index)
    log.debug("cameras that open: %s", found)
    return found


class CameraMenu(QMenu):
    """A menu of the cameras that open; choosing one emits ``camera_chosen(index)``."""

    camera_chosen = pyqtSignal(int)

    def __init__(self, title: str = "&Camera", parent: QWidget | None = None, count: int = MAX_CAMERAS) -> None:
        """``count``: how many indices, from 0, are probed."""
        super().__init__(title, parent)
        self.count = count
        self.active: int | None = None
        self._group = QActionGroup(self)
        self._group.setExclusive(True)
        self.aboutToShow.connect(self.refresh)

    def refresh(self) -> None:
        """Probe the cameras again and rebuild the entries."""
        self.clear()
        for action in self._group.actions():
            self._group.removeAction(action)
        cameras = available_cameras(self.count, in_use=self.active)
        if not cameras:
            none = self.addAction("No camera found")
            none.setEnabled(False)
            return
        for index in cameras:
            action = QAction(f"Camera {index}", self)
            action.setCheckable(True)
            action.setChecked(index == self.active)
            action.triggered.connect(lambda _checked=False, i=index: self.camera_chosen.emit(i))
            self._group.addAction(action)
            self.addAction(action)
