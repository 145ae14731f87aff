"""Randomly initialised MNN models exported by ``trainer.export``, for runtime tests.

Import the ``random_models`` fixture into a test module. The export runs once per test session
(about two seconds), whichever modules ask for it; its outputs are meaningless numbers in the
right shapes and units, which is all the runtime's tests need.
"""
from __future__ import annotations

from pathlib import Path

import pytest

INPUT_SIZE = 64
LANDMARKS = 68
_exported: dict[str, Path] = {}


@pytest.fixture(scope="session")
def random_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``mnn_encoder.onnx`` and ``mnn_full.onnx`` (64 px input, 68 landmarks)."""
    if "dir" not in _exported:
        from trainer.export import export_random_models

        out = tmp_path_factory.mktemp("random_models")
        export_random_models(out, input_size=INPUT_SIZE, landmarks=LANDMARKS)
        _exported["dir"] = out
    return _exported["dir"]
