"""The pose-stability benchmark: full mode's frame-to-frame yaw jumps and its gap from pose mode on videos."""
from __future__ import annotations

import json

import pytest

from app.core.exit_codes import ExitCode
from tests.conftest import require_shared
from trainer.pose_stability import jump_p99, main, stability


def test_a_yaw_jump_across_180_degrees_counts_as_the_short_way_round() -> None:
    track = {0: (179.0, 0.0, 0.0), 1: (-179.0, 0.0, 0.0), 2: (-178.0, 0.0, 0.0)}
    assert jump_p99(track) == pytest.approx(1.99, abs=0.011)


def test_frames_apart_are_not_a_jump() -> None:
    assert jump_p99({0: (0.0, 0.0, 0.0), 5: (40.0, 0.0, 0.0)}) is None


def test_modes_are_compared_on_the_frames_both_found_a_face() -> None:
    full = {0: (12.0, 1.0, 0.0), 1: (0.0, 2.0, 0.0), 2: (50.0, 0.0, 0.0)}
    pose = {0: (0.0, 0.0, 0.0), 1: (0.0, 0.0, 1.0), 3: (0.0, 0.0, 0.0)}
    figures = stability({"full": full, "pose": pose})
    assert figures["frames_both"] == 2
    assert figures["mode_mad"] == {"yaw": 6.0, "pitch": 1.5, "roll": 0.5}
    assert figures["share_yaw_gap_over_10"] == 0.5


def test_the_command_runs_both_modes_of_the_app_on_a_video(capsys: pytest.CaptureFixture[str]) -> None:
    video = require_shared("videos", "d18.mp4")
    assert main(["--videos", str(video), "--max-frames", "3"]) == ExitCode.OK
    report = json.loads(capsys.readouterr().out)
    figures = report["videos"]["d18.mp4"]
    assert figures["frames_full"] == figures["frames_pose"] == figures["frames_both"] == 3
    assert set(figures["mode_mad"]) == {"yaw", "pitch", "roll"}
    assert report["mode_mad_mean_over_videos"] == figures["mode_mad"]
    assert "expressions" not in report


def test_a_missing_video_is_a_usage_error_naming_it(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.mp4"
    assert main(["--videos", str(missing)]) == ExitCode.USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0]
