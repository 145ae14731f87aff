"""Creating the ``QApplication`` in a process that has imported OpenCV.

The non-headless ``opencv-contrib-python`` wheel (which mediapipe brings) sets
``QT_QPA_PLATFORM_PLUGIN_PATH`` and ``QT_QPA_FONTDIR`` to its own bundled Qt 5 plugins and fonts
when ``cv2`` is imported. PyQt6's Qt 6 would search that folder for its platform plugin first and
can fail to start ("could not load the Qt platform plugin xcb"), so those two variables are
removed, where they point into the ``cv2`` package, before the application is created.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from PyQt6.QtWidgets import QApplication

log = logging.getLogger(__name__)

OPENCV_QT_VARIABLES = ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR")


def drop_opencv_qt_paths() -> list[str]:
    """Remove the Qt variables that point into the ``cv2`` package; returns the names removed."""
    removed = []
    for name in OPENCV_QT_VARIABLES:
        value = os.environ.get(name)
        if value and "cv2" in Path(value).parts:
            del os.environ[name]
            removed.append(name)
    if removed:
        log.debug("removed OpenCV's %s so that PyQt6 finds its own plugins", ", ".join(removed))
    return removed


def ensure_application(argv: list[str] | None = None) -> QApplication:
    """The process's ``QApplication``, created (after ``drop_opencv_qt_paths``) if there is none yet."""
    existing = QApplication.instance()
    if existing is not None:
        return existing  # type: ignore[return-value]
    drop_opencv_qt_paths()
    app = QApplication(sys.argv[:1] if argv is None else argv)
    app.setApplicationName("MNN head pose")
    return app
