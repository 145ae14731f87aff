"""``FrameRate``: the live rate follows frame intervals smoothly; the mean counts frames over the time since start."""
from __future__ import annotations

import pytest

from app.core.frame_rate import FrameRate


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_live_rate_starts_at_the_first_interval_then_moves_a_tenth_of_the_way_to_each_new_one():
    clock = FakeClock()
    rate = FrameRate(clock=clock)
    assert rate.tick() == 0.0  # one frame: no interval yet
    clock.now += 0.1
    assert rate.tick() == pytest.approx(10.0)
    clock.now += 0.05
    assert rate.tick() == pytest.approx(0.9 * 10.0 + 0.1 * 20.0)
    assert rate.frames == 3


def test_the_mean_is_frames_over_the_seconds_since_start_and_none_before_a_frame():
    clock = FakeClock()
    rate = FrameRate(clock=clock)
    assert rate.mean() is None
    for _ in range(30):
        clock.now += 0.04
        rate.tick()
    clock.now += 0.3
    assert rate.mean() == 20.0  # 30 frames in 1.5 s
