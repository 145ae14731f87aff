"""The results CSV: fixed-point numbers without ``-0``, rows read back as the faces written, readable errors; the
``quality`` and ``valid`` columns, and CSVs written before them."""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from app.core.exit_codes import UsageError
from app.core.results import FaceResult, FrameResult
from app.core.results_csv import CsvLog, csv_columns, frame_rows, read_results, resume_from_csv

LANDMARKS = 3


def _face(face_id: int, landmarks: bool) -> FaceResult:
    return FaceResult(face_id=face_id, box=np.array([10.25, 20.5, 60.75, 80.0]) + face_id, score=0.875,
                      yaw=12.5, pitch=-3.25, roll=0.5, centre=np.array([35.25, 50.5]), scale=18.125,
                      landmarks=np.array([[11.0, 21.0], [30.5, 40.25], [50.0, 70.0]]) if landmarks else None,
                      visibility=np.array([0.25, 0.5, 1.0]) if landmarks else None)


def test_csv_numbers_never_print_minus_zero():
    face = FaceResult(face_id=1, box=np.array([-0.001, 10.0, 20.0, 30.0]), score=0.9, yaw=-0.00001, pitch=-0.0,
                      roll=-1e-7, centre=np.array([-1e-9, 0.5]), scale=-0.0, landmarks=None, visibility=None)
    row = frame_rows(FrameResult(0, 0.0, (face,), {}, "pose"), 68)[0]
    assert not any(value.startswith("-0") and float(value) == 0 for value in row), row
    assert row[5] == "0.00" and row[9:12] == ["0.0000"] * 3 and row[12] == "0.00" and row[14] == "0.000"


@pytest.mark.parametrize("mode", ["pose", "full"])
def test_rows_written_by_csv_log_read_back_as_the_same_frames_and_faces(tmp_path: Path, mode: str):
    path = tmp_path / "run.csv"
    written = [FrameResult(0, 0.0, (_face(1, mode == "full"), _face(2, mode == "full")), {"detect": 1.0}, mode),
               FrameResult(1, 0.0333, (), {}, mode),
               FrameResult(2, 0.0667, (_face(1, mode == "full"),), {}, mode)]
    log = CsvLog(path, csv_columns(mode, LANDMARKS), LANDMARKS, append=False)
    for frame in written:
        log.write(frame)
    log.close()

    read = read_results(path)
    assert [(f.index, f.time_s, f.mode, len(f.faces)) for f in read] == [(0, 0.0, mode, 2), (1, 0.0333, mode, 0),
                                                                          (2, 0.0667, mode, 1)]
    for before, after in zip((face for f in written for face in f.faces), (face for f in read for face in f.faces)):
        assert (after.face_id, after.score, after.yaw, after.pitch, after.roll) == \
            (before.face_id, before.score, before.yaw, before.pitch, before.roll)
        np.testing.assert_array_equal(after.box, before.box)
        np.testing.assert_array_equal(after.centre, before.centre)
        assert after.scale == before.scale
        if mode == "full":
            np.testing.assert_array_equal(after.landmarks, before.landmarks)
            np.testing.assert_array_equal(after.visibility, before.visibility)
        else:
            assert after.landmarks is None and after.visibility is None


def test_reading_a_csv_of_other_columns_names_the_file_and_what_is_missing(tmp_path: Path):
    path = tmp_path / "other.csv"
    path.write_text("frame,time_s,detected,yaw\n0,0.0,1,5\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"other\.csv: missing column\(s\) face_id"):
        read_results(path)


def test_reading_a_row_that_is_not_a_number_names_the_file_and_line(tmp_path: Path):
    path = tmp_path / "bad.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(csv_columns("pose", 0))
        writer.writerows(frame_rows(FrameResult(0, 0.0, (_face(1, False),), {}, "pose"), 0))
        writer.writerow(["1", "0.0333", "1", "1", "0.9", "0", "0", "9", "9", "left", "0", "0", "0", "0", "1"])
    with pytest.raises(ValueError, match=r"bad\.csv: line 3"):
        read_results(path)


@pytest.mark.parametrize("mode", ["pose", "full"])
def test_quality_and_valid_are_written_after_the_pose_and_read_back(tmp_path: Path, mode: str):
    path = tmp_path / "run.csv"
    judged = dataclasses.replace(_face(1, mode == "full"), quality=0.03125, valid=False)
    unscored = _face(2, mode == "full")  # no quality scorer in use: quality NaN, valid
    log = CsvLog(path, csv_columns(mode, LANDMARKS), LANDMARKS, append=False)
    log.write(FrameResult(0, 0.0, (judged, unscored), {}, mode))
    log.close()

    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert list(rows[0])[15:17] == ["quality", "valid"]
    assert (rows[0]["quality"], rows[0]["valid"]) == ("0.0312", "0")
    assert (rows[1]["quality"], rows[1]["valid"]) == ("", "1")
    first, second = read_results(path)[0].faces
    assert first.quality == pytest.approx(0.0312) and first.valid is False
    assert np.isnan(second.quality) and second.valid is True


def test_a_csv_written_before_the_quality_columns_still_reads_back_as_valid_faces(tmp_path: Path):
    path = tmp_path / "old.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(csv_columns("pose", 0, quality=False))
        writer.writerow(["0", "0.0000", "1", "1", "0.9", "0", "0", "9", "9", "5", "0", "0", "4", "4", "1"])
    (face,) = read_results(path)[0].faces
    assert face.yaw == 5.0 and face.valid is True and np.isnan(face.quality)


def test_resuming_a_csv_written_before_the_quality_columns_is_refused_and_left_alone(tmp_path: Path):
    path = tmp_path / "old.csv"
    text = ",".join(csv_columns("pose", 0, quality=False)) + "\n0,0.0000,0" + "," * 12 + "\n"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UsageError, match=r"old\.csv: written before the quality and valid columns"):
        resume_from_csv(path, csv_columns("pose", 0), "pose", complete=False, keep_faces=False)
    assert path.read_text(encoding="utf-8") == text


def test_resume_counts_the_invalid_faces_already_written(tmp_path: Path):
    path = tmp_path / "run.csv"
    log = CsvLog(path, csv_columns("pose", 0), 0, append=False)
    log.write(FrameResult(0, 0.0, (dataclasses.replace(_face(1, False), quality=0.01, valid=False),
                                   dataclasses.replace(_face(2, False), quality=0.9)), {}, "pose"))
    log.write(FrameResult(1, 0.0333, (), {}, "pose"))
    log.close()
    state = resume_from_csv(path, csv_columns("pose", 0), "pose", complete=True, keep_faces=False)
    assert (state.faces, state.invalid_faces) == (2, 1)
