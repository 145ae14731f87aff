"""Temporal smoothing of per-face outputs with the One Euro filter (Casiez et al., CHI 2012).

The One Euro filter is a low-pass filter whose cut-off rises with the signal's speed: a still head
loses its frame-to-frame jitter, a turning head is followed with little lag. ``OneEuroFilter``
filters one vector; ``FaceSmoother`` keeps one filter per face id and per quantity (angles, face
centre, scale, box, landmarks), each with parameters in that quantity's units. Every quantity is
frame-relative (degrees, frame pixels), so a filter follows the face, not its crop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from app.core.pose import wrap_degrees

DEFAULT_DT = 1.0 / 30.0
"""Time step assumed when timestamps do not advance (frames processed without a clock)."""


@dataclass(frozen=True)
class OneEuroParams:
    """``min_cutoff`` (Hz): smoothing of a still signal; ``beta``: how fast the cut-off rises with speed
    (per signal unit per second); ``d_cutoff`` (Hz): smoothing of the speed estimate."""

    min_cutoff: float = 1.0
    beta: float = 0.0
    d_cutoff: float = 1.0


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One Euro filter over a vector; each element is filtered on its own."""

    def __init__(self, params: OneEuroParams = OneEuroParams()) -> None:
        self.params = params
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """The filtered value of sample ``x`` taken at time ``t`` seconds."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t if self._t is not None and t > self._t else DEFAULT_DT
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(self.params.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.params.min_cutoff + self.params.beta * np.abs(self._dx)
        self._x = self._x + _alpha(cutoff, dt) * (x - self._x)
        self._t = t
        return self._x.copy()

    @property
    def last(self) -> np.ndarray | None:
        """The last filtered value, ``None`` before the first sample."""
        return None if self._x is None else self._x.copy()


SMOOTHING_PARAMS: dict[str, OneEuroParams] = {
    "angles": OneEuroParams(min_cutoff=1.0, beta=0.05),  # degrees
    "centre": OneEuroParams(min_cutoff=1.0, beta=0.01),  # frame pixels
    "scale": OneEuroParams(min_cutoff=1.0, beta=0.01),  # frame pixels per mean-face unit
    "box": OneEuroParams(min_cutoff=1.0, beta=0.01),  # pixels
    "landmarks": OneEuroParams(min_cutoff=1.0, beta=0.01),  # pixels
}
"""Filter parameters per quantity, in its units; a quantity not named here passes through unfiltered."""

ANGLE_KEYS = frozenset({"angles"})
"""Quantities in degrees that wrap at ±180: filtered on the unwrapped value, returned wrapped."""


class FaceSmoother:
    """Per-face-id One Euro filters; ``forget`` drops the filters of faces no longer tracked."""

    def __init__(self, params: dict[str, OneEuroParams] | None = None) -> None:
        self.params = dict(SMOOTHING_PARAMS if params is None else params)
        self._filters: dict[tuple[int, str], OneEuroFilter] = {}

    def smooth(self, face_id: int, t: float, values: dict[str, np.ndarray | None]) -> dict[str, np.ndarray | None]:
        """Filtered copies of ``values`` for face ``face_id`` at time ``t``; ``None`` entries stay ``None``."""
        out: dict[str, np.ndarray | None] = {}
        for key, value in values.items():
            if value is None or key not in self.params:
                out[key] = value
                continue
            filt = self._filters.setdefault((face_id, key), OneEuroFilter(self.params[key]))
            x = np.asarray(value, dtype=np.float64)
            if key in ANGLE_KEYS and filt.last is not None and filt.last.shape == x.shape:
                x = filt.last + wrap_degrees(x - filt.last)
            y = filt(x, t)
            out[key] = wrap_degrees(y) if key in ANGLE_KEYS else y
        return out

    def forget(self, live_ids: list[int] | set[int]) -> None:
        """Drop the filters of every face id not in ``live_ids``."""
        live = set(live_ids)
        self._filters = {k: f for k, f in self._filters.items() if k[0] in live}

    def reset(self) -> None:
        """Drop every filter."""
        self._filters = {}
