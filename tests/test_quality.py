"""Face quality (``app.core.quality``, ``models/quality.json``): a real face valid and regions of a real video frame
without a face invalid, in both modes, through the app's pipeline; no scorer (absent, or fitted on another model)
means every face valid with an empty quality; ``fit-quality`` writes a file the app reads, from the same features
the app computes."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from app.core import quality
from app.core.estimator import DEFAULT_MODELS_DIR, PoseEstimator
from app.core.model_io import MODES
from app.core.pipeline import QUALITY_CHECK_EVERY, FacePipeline, face_boxes_of
from tests.conftest import read_frames, require_shared
from tests.model_fixtures import random_models  # noqa: F401  (fixture)

NON_FACE_BOXES = np.array([[0.0, 0.0, 250.0, 250.0],  # the window and curtain, top left
                           [1040.0, 0.0, 1190.0, 150.0],  # the wall, top right
                           [1040.0, 120.0, 1190.0, 270.0]])  # the wall and hanging chair, right
"""Detector-style boxes of ``s18.mp4``'s first frame (1280×720) that show no face (the woman's head is at x 640–900,
y 150–400)."""


def non_face_grid() -> np.ndarray:
    """Squares of 250 px tiling ``s18.mp4``'s first frame, less those near the woman's head and neck."""
    boxes = []
    for side in (250,):
        for y in range(0, 720 - side + 1, 120):
            for x in range(0, 1280 - side + 1, 130):
                if not (x + side > 560 and x < 960 and y < 520):
                    boxes.append([x, y, x + side, y + side])
    return np.array(boxes, float)


@pytest.fixture(scope="module")
def s18_frame() -> np.ndarray:
    return read_frames("s18.mp4", 1)[0]


@pytest.mark.parametrize("mode", ["pose", "full"])
def test_a_real_face_is_valid_and_regions_of_a_frame_without_a_face_are_invalid(d18_frame, s18_frame, mode):
    assert (DEFAULT_MODELS_DIR / quality.QUALITY_FILE).is_file(), "models/quality.json is shipped with the models"
    with FacePipeline(DEFAULT_MODELS_DIR, mode=mode, precision="fp32") as pipeline:
        faces = pipeline.process(d18_frame).faces + pipeline.process(s18_frame).faces
        non_faces = pipeline.estimate(s18_frame, NON_FACE_BOXES)
    assert len(faces) == 2
    for face in faces:
        assert face.valid and 0.0 <= face.quality <= 1.0, (mode, face.quality)
    for estimate in non_faces:
        assert not estimate.valid and 0.0 <= estimate.quality <= 1.0, (mode, estimate.quality)
    assert max(e.quality for e in non_faces) < min(f.quality for f in faces)


@pytest.mark.parametrize("mode", ["pose", "full"])
def test_every_region_of_a_frame_away_from_the_face_is_invalid_in_both_modes(s18_frame, mode):
    boxes = non_face_grid()
    with FacePipeline(DEFAULT_MODELS_DIR, mode=mode, precision="fp32") as pipeline:
        estimates = pipeline.estimate(s18_frame, boxes)
    assert len(boxes) == 12 and [e.valid for e in estimates] == [False] * len(boxes)


def test_the_encoder_alone_lets_some_non_faces_through_which_pose_modes_full_network_check_catches(s18_frame):
    boxes = face_boxes_of(non_face_grid())
    with PoseEstimator(DEFAULT_MODELS_DIR, precision="fp32") as estimator:
        encoder_only = estimator.estimate_faces(s18_frame, boxes, "pose")
    with FacePipeline(DEFAULT_MODELS_DIR, mode="pose", precision="fp32") as pipeline:
        unchecked = pipeline.estimate(s18_frame, non_face_grid(), check_quality=False)
    assert any(e.valid for e in encoder_only)
    assert [e.valid for e in unchecked] == [e.valid for e in encoder_only]


def test_pose_mode_checks_a_faces_quality_with_the_full_network_when_new_and_every_so_many_frames(d18_frame):
    darker = (d18_frame * 0.6).astype(np.uint8)
    with FacePipeline(DEFAULT_MODELS_DIR, mode="pose", precision="fp32") as pipeline:
        first = pipeline.process(d18_frame, 0)
        kept = pipeline.process(darker, 1)
        checked_again = pipeline.process(darker, QUALITY_CHECK_EVERY)
        full = pipeline.estimate(darker, np.array([[*first.faces[0].box]]), "full")[0]
    assert "quality" in first.timings_ms and "quality" not in kept.timings_ms
    assert "quality" in checked_again.timings_ms
    assert kept.faces[0].face_id == first.faces[0].face_id == checked_again.faces[0].face_id
    assert kept.faces[0].quality == first.faces[0].quality != checked_again.faces[0].quality
    assert all(f.valid for f in (first.faces[0], kept.faces[0], checked_again.faces[0]))
    assert full.valid


def _models_copy(source: Path, into: Path) -> Path:
    """A folder holding links to ``source``'s two models (and nothing else)."""
    into.mkdir()
    for filename, _, _ in MODES.values():
        (into / filename).symlink_to(source / filename)
    return into


def _reject_everything(models: Path) -> None:
    """A ``quality.json`` for ``models`` whose scorers call every crop invalid (quality σ(−10))."""
    scorer = quality.ModeScorer(("heads_angle",), np.zeros(1), np.ones(1), np.zeros(1), -10.0, 0.5)
    quality.write(models / quality.QUALITY_FILE, {mode: scorer for mode in MODES}, models, {})


@pytest.mark.parametrize("mode", ["pose", "full"])
def test_without_quality_json_every_face_is_valid_with_no_quality(random_models, d18_frame, tmp_path, mode):
    models = _models_copy(random_models, tmp_path / "models")
    with PoseEstimator(models, precision="fp32") as estimator:
        faces = estimator.estimate_faces(d18_frame, np.array([[150.0, 120.0, 330.0, 300.0], [0, 0, 60, 60]]), mode)
    assert [f.valid for f in faces] == [True, True] and all(math.isnan(f.quality) for f in faces)


@pytest.mark.parametrize("mode", ["pose", "full"])
def test_quality_json_of_these_models_is_applied_and_of_other_models_ignored(random_models, d18_frame, tmp_path,
                                                                             mode):
    models = _models_copy(random_models, tmp_path / "models")
    _reject_everything(models)
    box = np.array([[150.0, 120.0, 330.0, 300.0]])
    with PoseEstimator(models, precision="fp32") as estimator:
        (face,) = estimator.estimate_faces(d18_frame, box, mode)
    assert not face.valid and face.quality == pytest.approx(1 / (1 + math.exp(10)))

    data = json.loads((models / quality.QUALITY_FILE).read_text())
    data["modes"][mode]["model_sha256"] = "0" * 64  # as if fitted on the model before a re-export
    (models / quality.QUALITY_FILE).write_text(json.dumps(data))
    with PoseEstimator(models, precision="fp32") as estimator:
        (face,) = estimator.estimate_faces(d18_frame, box, mode)
    assert face.valid and math.isnan(face.quality)


def test_a_malformed_quality_json_is_ignored_with_every_face_valid(random_models, d18_frame, tmp_path):
    models = _models_copy(random_models, tmp_path / "models")
    (models / quality.QUALITY_FILE).write_text('{"format": "1", "modes": {"pose": {"features": ["nonsense"]}}}')
    with PoseEstimator(models, precision="fp32") as estimator:
        (face,) = estimator.estimate_faces(d18_frame, np.array([[150.0, 120.0, 330.0, 300.0]]), "pose")
    assert face.valid and math.isnan(face.quality)


def test_fit_quality_writes_a_scorer_the_app_reads_from_the_features_the_app_computes(random_models, d18_frame,
                                                                                      tmp_path, capsys):
    from trainer.commands.fit_quality import main
    from trainer.datasets.w300 import W300Dataset
    from trainer.quality_fit import network_outputs, photo_key

    afw = require_shared("300w", "afw")
    models = _models_copy(random_models, tmp_path / "models")
    assert main(["--model", str(models), "--data", f"300w:{afw}", "--limit", "5", "--held-out", "0.25",
                 "--max-features", "2"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    names = W300Dataset(afw).names[:5]
    assert set(report["modes"]) == set(MODES) and report["photos"] == len({photo_key(0, n) for n in names}) < 5
    boxes = np.array([[150.0, 120.0, 330.0, 300.0], [0.0, 0.0, 90.0, 90.0]])
    with PoseEstimator(models, precision="fp32") as estimator:
        for mode in MODES:
            scorer, why = quality.read_scorer(models, mode)
            assert scorer is not None, why
            faces = estimator.estimate_faces(d18_frame, boxes, mode)
            network, final = network_outputs(estimator, d18_frame, boxes, mode, None)
            expected = scorer.quality(quality.features(network, final, estimator.info(mode), mode), mode)
            np.testing.assert_allclose([f.quality for f in faces], expected, rtol=1e-6)
            assert [f.valid for f in faces] == list(expected >= scorer.threshold)


def test_the_models_folder_ships_a_quality_json_fitted_on_its_models():
    for mode in MODES:
        scorer, why = quality.read_scorer(DEFAULT_MODELS_DIR, mode)
        assert scorer is not None, why
        assert 1 <= len(scorer.features) <= 4 and 0.0 < scorer.threshold < 1.0



def test_run_stats_count_the_invalid_faces_of_each_frame():
    from app.core.process import RunStats
    from app.core.results import FaceResult, FrameResult

    def face(face_id: int, valid: bool) -> FaceResult:
        return FaceResult(face_id=face_id, box=np.zeros(4), score=0.9, yaw=0.0, pitch=0.0, roll=0.0,
                          centre=np.zeros(2), scale=1.0, landmarks=None, visibility=None, quality=0.5, valid=valid)

    stats = RunStats()
    stats.add(FrameResult(0, 0.0, (face(1, True), face(2, False)), {}, "pose"))
    stats.add(FrameResult(1, 0.04, (face(2, False),), {}, "pose"))
    stats.add(FrameResult(2, 0.08, (), {}, "pose"))
    assert (stats.frames, stats.faces, stats.invalid_faces) == (3, 3, 2)
