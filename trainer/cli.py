"""What the trainer's commands share: the `--data KIND:PATH` argument, one-line errors with the exit codes of
``app.core.exit_codes``."""
from __future__ import annotations

import argparse
import sys

from app.core.exit_codes import ExitCode
from app.core.model_io import ModelError


def report_error(exc: Exception) -> int:
    """Print ``exc`` as one line on stderr; the exit code: ``MODEL`` for a bad model, ``USAGE`` for bad input."""
    print(f"error: {exc}", file=sys.stderr)
    return ExitCode.MODEL if isinstance(exc, ModelError) else ExitCode.USAGE


def add_data_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """``--data KIND:PATH``, required and repeatable: the datasets a command reads (``trainer.datasets.registry``)."""
    parser.add_argument("--data", action="append", required=True, metavar="KIND:PATH", help=help)
