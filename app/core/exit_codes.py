"""The exit codes of every command (``run_app.py process``, ``app.bench``, the trainer's tools), defined once,
with the errors that stand for them, so that one failure exits alike whichever command meets it."""
from __future__ import annotations

import enum
from pathlib import Path


class ExitCode(enum.IntEnum):
    """What a command's exit status means; ``process --help`` words each for its own case (``EXIT_MEANINGS``)."""

    OK = 0
    USAGE = 2
    """Bad arguments or input: a missing file, a malformed CSV, outputs that would be overwritten."""
    INPUT = 3
    """An input that cannot be read as a video or an image."""
    MODEL = 4
    """A model file missing or invalid (``model_io.ModelError``)."""
    OUTPUT = 5
    """An output file that cannot be written."""
    PROVIDER = 6
    """An execution provider asked for by name (``--provider cuda`` or ``tensorrt``) that cannot run here
    (``providers.ProviderError``)."""
    WORKER = 7
    """A worker process (``process --workers``, a Ray task) that died and was not replaced in time."""
    INTERRUPTED = 130
    """Ctrl-C or SIGTERM."""


class UsageError(Exception):
    """Bad arguments or inputs: ``ExitCode.USAGE``."""


class OutputError(Exception):
    """An output file that cannot be written: ``ExitCode.OUTPUT``. The message is one line naming it and why."""


def cannot_write(path: Path, error: OSError) -> OutputError:
    """The ``OutputError`` for ``path``, with the system's reason (``strerror``)."""
    return OutputError(f"{path}: cannot be written ({error.strerror or error})")
