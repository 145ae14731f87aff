"""What the trainer's commands share: one-line errors with the exit codes of ``app.core.exit_codes``."""
from __future__ import annotations

import sys

from app.core.exit_codes import ExitCode
from app.core.model_io import ModelError


def report_error(exc: Exception) -> int:
    """Print ``exc`` as one line on stderr; the exit code: ``MODEL`` for a bad model, ``USAGE`` for bad input."""
    print(f"error: {exc}", file=sys.stderr)
    return ExitCode.MODEL if isinstance(exc, ModelError) else ExitCode.USAGE
