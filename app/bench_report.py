"""What the benchmark commands share: the JSON report they print (and save with ``--json``), and the errors
they turn into one line on stderr and an exit code."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

from app.core.exit_codes import ExitCode
from app.core.model_io import ModelError
from app.core.providers import ProviderError
from app.core.video import VideoError

ERRORS: tuple[tuple[type[Exception], ExitCode], ...] = (
    (ProviderError, ExitCode.PROVIDER), (VideoError, ExitCode.INPUT), (ModelError, ExitCode.MODEL))
"""The failures every benchmark reports as ``error: MESSAGE`` with its exit code."""


def run_and_report(compute: Callable[[], dict], json_path: Path | None = None) -> int:
    """Print ``compute()``'s report as JSON (also written to ``json_path`` if given); returns the exit code."""
    try:
        report = compute()
    except tuple(kind for kind, _ in ERRORS) as error:
        print(f"error: {error}", file=sys.stderr)
        return next(code for kind, code in ERRORS if isinstance(error, kind))
    text = json.dumps(report, indent=2)
    print(text)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text + "\n", encoding="utf-8")
    return ExitCode.OK
