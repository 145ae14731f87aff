"""One Euro filter: less jitter on a still signal, follows a step, per-face state."""
from __future__ import annotations

import numpy as np

from app.core.pose import wrap_degrees
from app.core.smoothing import FaceSmoother, OneEuroFilter, OneEuroParams


def run_filter(filt: OneEuroFilter, values: np.ndarray, fps: float = 30.0) -> np.ndarray:
    return np.array([filt(np.array([v]), i / fps)[0] for i, v in enumerate(values)])


def test_reduces_jitter_on_a_noisy_constant_signal():
    rng = np.random.default_rng(0)
    noisy = 10.0 + rng.normal(0.0, 1.0, 300)
    smoothed = run_filter(OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=0.05)), noisy)
    assert np.std(smoothed[30:]) < 0.5 * np.std(noisy[30:])
    assert abs(np.mean(smoothed[30:]) - 10.0) < 0.3


def test_follows_a_step_within_half_a_second():
    signal = np.r_[np.zeros(60), np.full(60, 30.0)]
    out = run_filter(OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=0.05)), signal)
    assert out[59] == 0.0
    assert 0.0 < out[60] < 30.0
    assert abs(out[60 + 15] - 30.0) < 1.5


def test_face_smoother_keeps_separate_state_per_face_and_forgets_lost_faces():
    smoother = FaceSmoother()
    smoother.smooth(1, 0.0, {"angles": np.array([0.0, 0.0, 0.0])})
    first_of_2 = smoother.smooth(2, 0.0, {"angles": np.array([50.0, 0.0, 0.0])})
    assert first_of_2["angles"][0] == 50.0
    after = smoother.smooth(1, 1 / 30, {"angles": np.array([10.0, 0.0, 0.0]), "landmarks": None})
    assert 0.0 < after["angles"][0] < 10.0 and after["landmarks"] is None
    smoother.forget([2])
    restarted = smoother.smooth(1, 2 / 30, {"angles": np.array([20.0, 0.0, 0.0])})
    assert restarted["angles"][0] == 20.0


def test_angles_are_smoothed_across_the_180_degree_wrap():
    smoother = FaceSmoother()
    smoother.smooth(1, 0.0, {"angles": np.array([0.0, 0.0, 179.0])})
    out = smoother.smooth(1, 1 / 30, {"angles": np.array([0.0, 0.0, -179.0])})["angles"][2]
    assert abs(wrap_degrees(out - 179.0)) < 2.0
