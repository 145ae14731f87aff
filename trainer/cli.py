"""What the trainer's commands share: one-line errors with the documented exit codes."""
from __future__ import annotations

import sys

from app.core.model_io import ModelError

MODEL_ERROR_EXIT = 4
BAD_INPUT_EXIT = 2


def report_error(exc: Exception) -> int:
    """Print ``exc`` as one line on stderr; the exit code: 4 for a bad model, 2 for bad input."""
    print(f"error: {exc}", file=sys.stderr)
    return MODEL_ERROR_EXIT if isinstance(exc, ModelError) else BAD_INPUT_EXIT
