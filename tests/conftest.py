"""Shared fixtures and settings: the ``../shared/data`` folder, skipped where absent and required under ``CI=true``;
short numpy reprs in failure messages."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


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
