"""Progress of a batch of ``run_app.py process``: one overall bar on a terminal, one line per finished video otherwise.

The bar counts frames over every input (the frames in each file's header, up to ``--max-frames``), with the
rate and the time left, and says how many videos are done. Where stderr is not a terminal (a log file, CI)
there is no bar: each video that finishes prints one line, so a log shows what was done without carriage
returns.
"""
from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm


class BatchProgress:
    """Frames and videos done across a batch; ``frames`` as they are processed, ``finished`` once per video."""

    def __init__(self, videos: int, frames: int | None, stream: TextIO | None = None,
                 terminal: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.videos = videos
        self.done = 0
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self._bar: tqdm | None = None
        if self.terminal:
            self._bar = tqdm(total=frames or None, unit="frame", file=self.stream, dynamic_ncols=True,
                             desc=self._description(), smoothing=0.1)

    def _description(self) -> str:
        return f"videos {self.done}/{self.videos}"

    def set_total(self, frames: int | None) -> None:
        """The frames the whole batch holds, once known (the bar's 100%)."""
        if self._bar is not None:
            self._bar.total = frames or None
            self._bar.refresh()

    def frames(self, count: int) -> None:
        """``count`` more frames processed (or redrawn, or skipped) somewhere in the batch."""
        if self._bar is not None and count:
            self._bar.update(count)

    def finished(self, line: str) -> None:
        """One video is done; ``line`` says how it went (printed only where there is no bar)."""
        self.done += 1
        if self._bar is not None:
            self._bar.set_description_str(self._description())
        else:
            print(f"[{self.done}/{self.videos}] {line}", file=self.stream, flush=True)

    def close(self) -> None:
        """Finish the bar (a no-op without one)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
