"""The runtime: video, detection, crops, ONNX inference and overlays; no Qt, no torch.

What a library user needs is exported here, each name imported on first use (PEP 562), so that
``import app.core`` stays light and a pure-numpy module of the package never loads ONNX Runtime.
README.md's "As a library" shows them at work (``tests/test_public_api.py`` runs that example).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.core.estimator import DEFAULT_MODELS_DIR
    from app.core.model_io import MODES, ModelError
    from app.core.overlay import draw_overlay
    from app.core.pipeline import FacePipeline, FrameLoop
    from app.core.pose import format_angle
    from app.core.results import FaceEstimate, FaceResult, FrameResult
    from app.core.video import VideoError, VideoSource

_EXPORTS: dict[str, str] = {
    "FacePipeline": "app.core.pipeline",
    "FrameLoop": "app.core.pipeline",
    "FaceResult": "app.core.results",
    "FaceEstimate": "app.core.results",
    "FrameResult": "app.core.results",
    "VideoSource": "app.core.video",
    "VideoError": "app.core.video",
    "ModelError": "app.core.model_io",
    "MODES": "app.core.model_io",
    "DEFAULT_MODELS_DIR": "app.core.estimator",
    "draw_overlay": "app.core.overlay",
    "format_angle": "app.core.pose",
}
"""Each public name and the module that defines it."""

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """The exported ``name``, imported from its module on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's attributes with the exported names, which exist before their first use."""
    return sorted(set(globals()) | set(__all__))
