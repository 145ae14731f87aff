"""Silence the native libraries' own console chatter before they load, for the command-line entry points.

OpenCV, its FFmpeg backend and MediaPipe's C++ core print warnings straight to the process's stderr
(``moov atom not found``, camera probing, TFLite delegate notices). The commands promise one clear
line per error, so they call ``quiet_native_logs()`` before ``cv2`` or ``mediapipe`` is imported:
these libraries read the settings once, at import. Errors still reach the user as exceptions.
"""
from __future__ import annotations

import os

_SETTINGS = {
    "OPENCV_LOG_LEVEL": "OFF",
    "OPENCV_FFMPEG_LOGLEVEL": "-8",
    "GLOG_minloglevel": "2",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


def quiet_native_logs() -> None:
    """Set the libraries' log-level variables, keeping any the user has set."""
    for key, value in _SETTINGS.items():
        os.environ.setdefault(key, value)
