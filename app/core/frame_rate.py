"""Frames per second of a running loop: the live readout the viewer shows and the mean a run's summary gives."""
from __future__ import annotations

import time
from typing import Callable

SMOOTHING = 0.1
"""Weight of the newest frame interval in the exponential average behind the live rate."""


class FrameRate:
    """Counts frames as they are done; ``current`` is the exponential average of recent intervals (steady on
    screen, yet following a change of speed), ``mean`` the frames since it was made over the time since."""

    def __init__(self, smoothing: float = SMOOTHING, clock: Callable[[], float] = time.perf_counter) -> None:
        self.smoothing = smoothing
        self._clock = clock
        self._started = clock()
        self._last: float | None = None
        self.current = 0.0
        """Frames per second, averaged over recent intervals; 0 before the second frame."""
        self.frames = 0

    def tick(self) -> float:
        """Count one more frame done now; returns ``current``."""
        now = self._clock()
        if self._last is not None:
            interval = now - self._last
            if interval > 0:
                rate = 1.0 / interval
                self.current = rate if self.current == 0 else (1 - self.smoothing) * self.current + self.smoothing * rate
        self._last = now
        self.frames += 1
        return self.current

    def mean(self) -> float | None:
        """Frames counted per second from when this was made until now, rounded to 0.01; None before the
        first frame."""
        elapsed = self._clock() - self._started
        return round(self.frames / elapsed, 2) if elapsed > 0 and self.frames else None
