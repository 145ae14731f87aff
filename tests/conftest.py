"""Shared fixtures and settings: the ``../shared/data`` folder, skipped where absent and required under ``CI=true``;
short numpy reprs in failure messages."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# The suite runs fp32 wherever a caller asks for "auto", so that its figures do not depend on this CPU's INT8
# speed (app.core.precision; the tests of that choice clear it). Subprocesses inherit it.
os.environ.setdefault("MNN_PRECISION", "fp32")


def pytest_configure(config: pytest.Config) -> None:
    """Arrays in assertion messages print as a few corner values: a failing landmark or basis comparison would
    otherwise dump every element (pytest does not truncate explanations under ``CI=true``)."""
    np.set_printoptions(threshold=64, edgeitems=3)


def require_shared(*parts: str) -> Path:
    """Path under ``../shared/data``; skips the test (or, called at import, the module) where it is absent,
    fails under ``CI=true``."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        message = f"{path} is absent (the shared data folder beside the project)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message, allow_module_level=True)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ``../shared/data`` folder."""
    return require_shared()


def read_frames(video: str, count: int) -> list[np.ndarray]:
    """The first ``count`` frames of ``../shared/data/videos/VIDEO`` (BGR), read with OpenCV."""
    import cv2

    capture = cv2.VideoCapture(str(require_shared("videos", video)))
    frames = []
    for _ in range(count):
        ok, frame = capture.read()
        assert ok, f"{video}: frame {len(frames)} does not decode"
        frames.append(frame)
    capture.release()
    return frames


@pytest.fixture(scope="session")
def d18_frame() -> np.ndarray:
    """The first frame of ``d18.mp4``: one frontal face."""
    return read_frames("d18.mp4", 1)[0]
