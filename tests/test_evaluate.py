"""``trainer.evaluate --crop detector``: held-out faces cropped from the app's detector box, not their landmark box."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from app.core.crop import face_box_from_detection
from tests.conftest import require_shared
from tests.model_fixtures import random_models  # noqa: F401  (fixture)
from trainer.evaluate import detected_box, mae_by_yaw_band


def test_detector_crop_takes_the_detection_over_the_annotated_face_not_the_best_scored_one():
    face = np.array([100.0, 100.0, 200.0, 200.0])
    other = np.array([400.0, 50.0, 520.0, 170.0, 0.99])
    this = np.array([105.0, 95.0, 205.0, 195.0, 0.80])
    chosen = detected_box(np.stack([other, this]), face)
    np.testing.assert_allclose(chosen, face_box_from_detection(this[:4]))


def test_detector_crop_counts_a_face_no_detection_overlaps_as_undetected():
    face = np.array([100.0, 100.0, 200.0, 200.0])
    elsewhere = np.array([[400.0, 50.0, 520.0, 170.0, 0.99]])
    assert detected_box(elsewhere, face) is None
    assert detected_box(np.zeros((0, 5)), face) is None


def test_detector_crop_without_an_annotated_box_takes_the_best_score():
    rows = np.array([[10.0, 10.0, 60.0, 60.0, 0.9], [100.0, 100.0, 200.0, 200.0, 0.6]])
    np.testing.assert_allclose(detected_box(rows, None), face_box_from_detection(rows[0, :4]))


def test_evaluate_with_detector_crops_scores_helen_faces_from_the_apps_detector(random_models, tmp_path):
    helen_test = require_shared("300w", "helen_test")
    runs = {}
    for crop in ("dataset", "detector"):
        out = tmp_path / f"{crop}.json"
        result = subprocess.run([sys.executable, "-m", "trainer", "evaluate", "--model", str(random_models),
                                 "--data", f"300w:{helen_test}", "--limit", "3", "--crop", crop, "--json", str(out)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
        runs[crop] = json.loads(out.read_text())["datasets"][0]
    detector = runs["detector"]
    assert detector["crop"] == "detector" and runs["dataset"]["crop"] == "dataset"
    assert detector["undetected"] == 0 and detector["pose_faces"] == 3
    assert detector["mae"] != runs["dataset"]["mae"]
    assert detector["visibility"]["recall_at_80_precision"] is None
    assert runs["dataset"]["visibility"]["recall_at_80_precision"] is not None


def test_evaluate_refuses_an_unknown_crop_with_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "trainer", "evaluate", "--data", "300w:x", "--crop", "centre"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "--crop" in result.stderr


def test_yaw_bands_count_a_face_at_their_lower_edge_and_report_empty_bands_as_null():
    true = np.array([[45.0, 0.0, 0.0], [-10.0, 5.0, 0.0], [30.0, 0.0, 0.0], [-60.0, 0.0, 0.0]])
    pred = true + np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [4.0, 0.0, 0.0], [0.0, 0.0, 6.0]])
    bands = mae_by_yaw_band(pred, true)
    assert list(bands) == ["0-30", "30-60", "60-90"]
    assert bands["0-30"]["faces"] == 1 and bands["0-30"]["mae"]["pitch"] == 3.0
    assert bands["30-60"]["faces"] == 2 and bands["30-60"]["mae"]["yaw"] == 3.0     # 45 and 30
    assert bands["60-90"]["faces"] == 1 and bands["60-90"]["mae"]["roll"] == 6.0
    empty = mae_by_yaw_band(pred[:2], true[:2])["60-90"]
    assert empty == {"faces": 0, "mae": None}


def test_yaw_bands_of_no_faces_are_all_null():
    bands = mae_by_yaw_band(np.zeros((0, 3)), np.zeros((0, 3)))
    assert all(band == {"faces": 0, "mae": None} for band in bands.values())


def test_evaluate_reports_pose_mae_by_yaw_band_in_both_modes(random_models, tmp_path):
    aflw = require_shared("aflw2000_mini")
    for mode in ("pose", "full"):
        out = tmp_path / f"{mode}.json"
        result = subprocess.run([sys.executable, "-m", "trainer", "evaluate", "--model", str(random_models),
                                 "--mode", mode, "--data", f"aflw2000:{aflw}", "--limit", "4", "--json", str(out)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
        entry = json.loads(out.read_text())["datasets"][0]
        bands = entry["mae_by_yaw_band"]
        assert sum(band["faces"] for band in bands.values()) == entry["pose_faces"] == 4
        assert ("mae_fc_pose_by_yaw_band" in entry) == (mode == "full")
        assert f"({mode}) pose MAE by |yaw| 0-30:" in result.stdout
