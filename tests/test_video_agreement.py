"""``trainer.video_agreement``: 3DDFA_V2's angle convention, its CSV reader, frame pairing and the command."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from app.core import pose
from tests.conftest import require_shared
from tests.model_fixtures import random_models  # noqa: F401  (fixture)
from trainer.commands.video_agreement import main
from trainer.video_agreement import (AngleTrack, agreement, read_3ddfa_csv, read_process_csv, rotation_difference,
                                     signed_turn, tddfa_to_ours, turned_from_camera)

F = np.diag([1.0, -1.0, 1.0])


def tddfa_calc_pose(rotation_up: np.ndarray, scale: float = 0.7) -> tuple[float, float, float]:
    """3DDFA_V2's ``calc_pose`` (``P2sRt`` then ``matrix2angle``, cleardusk/3DDFA_V2 ``utils/pose.py``)
    on the affine camera ``scale * R``; returns (yaw, pitch, roll) in degrees as it does."""
    p = scale * rotation_up
    r1, r2 = p[0] / np.linalg.norm(p[0]), p[1] / np.linalg.norm(p[1])
    r = np.stack([r1, r2, np.cross(r1, r2)])
    if r[2, 0] > 0.998:
        x, y, z = np.pi / 2, math.atan2(-r[0, 1], -r[0, 2]), 0.0
    elif r[2, 0] < -0.998:
        x, y, z = -np.pi / 2, math.atan2(r[0, 1], r[0, 2]), 0.0
    else:
        x = math.asin(r[2, 0])
        y = math.atan2(r[2, 1] / math.cos(x), r[2, 2] / math.cos(x))
        z = math.atan2(r[1, 0] / math.cos(x), r[0, 0] / math.cos(x))
    return math.degrees(x), math.degrees(y), math.degrees(z)


def through_3ddfa(ours: tuple[float, float, float]) -> np.ndarray:
    """Our angles → pose.py's rotation → 3DDFA_V2's ``calc_pose`` → its CSV row → ``tddfa_to_ours``."""
    rotation_up = F @ pose.rotation_matrix(np.radians(ours)) @ F  # pose.py's R_up, the y-up frame 3DDFA_V2 uses
    yaw, pitch, roll = tddfa_calc_pose(rotation_up)
    return tddfa_to_ours(np.array([[pitch, yaw, roll]]))[0]  # the CSV's column order


@pytest.mark.parametrize("ours", [(0.0, 0.0, 0.0), (22.0, -4.0, -6.0), (-35.0, 20.0, 12.0), (57.0, 80.0, 70.0),
                                  (-75.0, -30.0, 45.0), (88.0, 10.0, 0.0), (-87.0, 30.0, -10.0)])
def test_a_pose_py_rotation_read_by_3ddfa_calc_pose_converts_back_to_our_angles(ours):
    np.testing.assert_allclose(through_3ddfa(ours), ours, atol=1e-6)


def test_within_3ddfa_gimbal_branch_the_conversion_keeps_the_rotation_to_within_its_approximation():
    # |R20| > 0.998 makes matrix2angle assume exact lock (roll 0), which costs up to acos(0.998) ≈ 3.6°.
    ours = (-89.0, 5.0, -3.0)
    assert rotation_difference(np.array([ours]), through_3ddfa(ours)[None])[0] < 3.7


def test_for_small_angles_3ddfa_yaw_is_kept_and_pitch_and_roll_are_negated():
    converted = tddfa_to_ours(np.array([[0.5, 1.0, -0.4]]))[0]  # 3DDFA_V2 pitch, yaw, roll
    np.testing.assert_allclose(converted, [1.0, -0.5, 0.4], atol=0.02)


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_reference_reader_rejects_missing_columns_naming_the_file(tmp_path):
    path = _write(tmp_path / "ref.csv", "frame,timestamp,pitch,yaw\n0,0.0,1.0,2.0\n")
    with pytest.raises(ValueError, match=r"ref\.csv: missing column\(s\) roll"):
        read_3ddfa_csv(path)


def test_reference_reader_rejects_a_cell_that_is_not_a_number_with_its_line(tmp_path):
    path = _write(tmp_path / "ref.csv", "frame,timestamp,pitch,yaw,roll\n0,0.0,1,2,3\n1,0.1,x,2,3\n")
    with pytest.raises(ValueError, match=r"ref\.csv: line 3: pitch"):
        read_3ddfa_csv(path)


def test_process_csv_reader_keeps_the_largest_face_and_nan_for_a_frame_without_one(tmp_path):
    header = "frame,time_s,detected,face_id,score,x1,y1,x2,y2,yaw,pitch,roll,cx,cy,scale\n"
    path = _write(tmp_path / "ours.csv", header
                  + "0,0.0000,1,1,0.9,0,0,10,10,5,0,0,0,0,1\n"
                  + "0,0.0000,1,2,0.9,0,0,50,50,30,1,2,0,0,1\n"
                  + "1,0.0333,0,,,,,,,,,,,,\n")
    track = read_process_csv(path)
    assert track.frames.tolist() == [0, 1]
    np.testing.assert_allclose(track.angles[0], [30, 1, 2])
    assert np.isnan(track.angles[1]).all()


def _track(frames, angles, fps=60.0):
    frames = np.asarray(frames)
    return AngleTrack(frames, frames / fps, np.asarray(angles, dtype=np.float64).reshape(-1, 3))


def test_agreement_pairs_frames_by_index_and_counts_the_frames_left_out():
    ours = _track([0, 1, 2, 3, 4], [[0, 0, 0], [10, 0, 0], [np.nan] * 3, [20, 2, 0], [30, 0, -4]])
    reference = _track([1, 2, 3, 4, 5, 6], [[12, 0, 0], [0, 0, 0], [20, 0, 0], [30, 0, 0], [0, 0, 0], [0, 0, 0]])
    result = agreement(ours, reference)
    assert result["frames_compared"] == 3  # frames 1, 3, 4
    assert result["left_out"] == {"no_face": 1, "not_in_reference": 1, "not_in_video": 2}
    assert result["mean_abs_diff_deg"]["yaw"] == pytest.approx(2 / 3, abs=1e-3)  # rounded to 3 decimals
    assert result["mean_abs_diff_deg"]["pitch"] == pytest.approx(2 / 3, abs=1e-3)
    assert result["mean_abs_diff_deg"]["roll"] == pytest.approx(4 / 3, abs=1e-3)
    assert result["median_abs_diff_deg"]["yaw"] == pytest.approx(0.0)


def test_agreement_breaks_rotation_difference_and_side_down_by_how_far_the_reference_face_is_turned():
    ours = _track([0, 1, 2, 3], [[10, 0, 0], [-50, 0, 0], [40, 0, 0], [80, 0, 0]])
    reference = _track([0, 1, 2, 3], [[12, 0, 0], [50, 0, 0], [55, 0, 0], [89, 0, 0]])
    bands = {tuple(b["reference_turn_deg"]): b for b in agreement(ours, reference)["by_reference_turn"]}
    assert [b["frames"] for b in bands.values()] == [1, 2, 0, 0, 1, 0]
    assert bands[(0.0, 30.0)]["rotation_diff_deg"] == pytest.approx(2.0)
    assert bands[(30.0, 60.0)]["same_side"] == pytest.approx(0.5)
    assert bands[(30.0, 60.0)]["our_turn_deg"] == pytest.approx(45.0)
    assert bands[(30.0, 60.0)]["rotation_diff_deg"] == pytest.approx((100.0 + 15.0) / 2)
    assert bands[(60.0, 75.0)]["rotation_diff_deg"] is None
    assert bands[(85.0, 95.0)]["reference_turn_mean_deg"] == pytest.approx(89.0)


def test_a_profile_looking_up_counts_as_turned_ninety_degrees_whatever_its_euler_yaw():
    # 3DDFA_V2's frame-400-like reading of a profile that looks up: Euler yaw 57°, yet the face looks
    # sideways and up, 90° from the camera.
    assert turned_from_camera(np.array([[90.0, 35.0, 0.0]]))[0] == pytest.approx(90.0, abs=1e-6)
    assert turned_from_camera(np.array([[57.0, 93.0, 71.0]]))[0] == pytest.approx(90.0, abs=3.0)
    assert turned_from_camera(np.array([[0.0, 0.0, 40.0]]))[0] == pytest.approx(0.0, abs=1e-6)


def test_signed_turn_is_yaw_for_a_face_that_only_turns_and_keeps_its_side_on_a_profile_that_looks_up():
    np.testing.assert_allclose(signed_turn(np.array([[30.0, 0, 0], [-70.0, 0, 0]])), [30.0, -70.0], atol=1e-9)
    assert signed_turn(np.array([[57.0, 93.0, 71.0]]))[0] == pytest.approx(90.0, abs=3.0)
    assert signed_turn(np.array([[-57.0, 93.0, -71.0]]))[0] == pytest.approx(-90.0, abs=3.0)


def test_angle_differences_wrap_around_180_degrees():
    result = agreement(_track([0], [[0, 0, 179]]), _track([0], [[0, 0, -179]]))
    assert result["mean_abs_diff_deg"]["roll"] == pytest.approx(2.0)


def test_agreement_refuses_tracks_whose_timestamps_disagree():
    ours = _track([0, 1, 2], np.zeros((3, 3)), fps=60.0)
    reference = _track([0, 1, 2], np.zeros((3, 3)), fps=30.0)
    with pytest.raises(ValueError, match="timestamps disagree"):
        agreement(ours, reference)


def test_the_shared_3ddfa_csv_has_1019_rows_with_its_columns():
    path = require_shared("videos", "side_large_pose.3ddfa_v2.csv")
    assert path.read_text(encoding="utf-8").splitlines()[0] == "frame,timestamp,pitch,yaw,roll"
    track = read_3ddfa_csv(path)
    assert len(track.frames) == 1019
    assert track.frames.tolist() == list(range(1019))
    assert np.all(np.abs(track.angles[:, 0]) <= 90.0)


def test_a_missing_video_exits_2_with_one_line_naming_it(tmp_path, capsys):
    reference = require_shared("videos", "side_large_pose.3ddfa_v2.csv")
    code = main(["--video", str(tmp_path / "nope.mp4"), "--reference", str(reference),
                 "--plot", str(tmp_path / "p.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nope.mp4: no such file" in err[0]


def test_evaluate_takes_video_and_reference_together_and_names_a_missing_video(tmp_path, capsys, random_models):
    from trainer.commands.evaluate import main as evaluate_main

    helen_test = require_shared("300w", "helen_test")
    reference = require_shared("videos", "side_large_pose.3ddfa_v2.csv")
    alone = evaluate_main(["--model", str(random_models), "--data", f"300w:{helen_test}", "--limit", "1",
                           "--video", str(tmp_path / "nope.mp4")])
    assert alone == 2 and "--video and --reference go together" in capsys.readouterr().err
    missing = evaluate_main(["--model", str(random_models), "--data", f"300w:{helen_test}", "--limit", "1",
                             "--video", str(tmp_path / "nope.mp4"), "--reference", str(reference)])
    err = capsys.readouterr().err.strip().splitlines()
    assert missing == 2 and "nope.mp4: no such file" in err[-1]


def test_a_malformed_reference_exits_2_naming_it(tmp_path, capsys):
    reference = _write(tmp_path / "bad.csv", "frame,yaw\n0,1\n")
    code = main(["--video", str(tmp_path / "v.mp4"), "--reference", str(reference), "--plot", str(tmp_path / "p.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "bad.csv: missing column(s)" in err[0]


def test_the_command_runs_the_app_pipeline_on_the_first_frames_and_writes_json_csv_and_plot(
        random_models, tmp_path, capsys):  # noqa: F811
    video = require_shared("videos", "side_large_pose.mp4")
    reference = require_shared("videos", "side_large_pose.3ddfa_v2.csv")
    plot, ours_csv = tmp_path / "plot.png", tmp_path / "ours.csv"
    code = main(["--model", str(random_models), "--video", str(video), "--reference", str(reference),
                 "--plot", str(plot), "--csv", str(ours_csv), "--max-frames", "3"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["frames_compared"] + result["left_out"]["no_face"] == 3
    assert result["left_out"]["not_in_video"] == 1016
    assert result["input_size"] == 64
    assert plot.stat().st_size > 0 and read_process_csv(ours_csv).frames.tolist() == [0, 1, 2]
