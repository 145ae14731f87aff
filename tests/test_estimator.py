"""PoseEstimator: lazy cached sessions per mode, one batched run for all faces, clear ModelErrors."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from app.core.estimator import PREFERRED_PROVIDERS, PoseEstimator, choose_providers
from app.core.model_io import FULL_FILE, ModelError
from tests.model_fixtures import INPUT_SIZE, LANDMARKS, random_models  # noqa: F401  (fixture)


class CountingSession:
    """Wraps an ONNX Runtime session and counts its ``run`` calls."""

    def __init__(self, session):
        self.session = session
        self.calls: list[int] = []

    def run(self, names, feeds):
        self.calls.append(len(next(iter(feeds.values()))))
        return self.session.run(names, feeds)


def crops(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)


def test_providers_are_chosen_best_first_from_those_available_and_end_with_cpu():
    chosen = choose_providers()
    assert chosen[-1] == "CPUExecutionProvider"
    assert all(p in PREFERRED_PROVIDERS for p in chosen)
    assert choose_providers(["NoSuchExecutionProvider"]) == ["CPUExecutionProvider"]


def test_all_faces_of_a_frame_go_through_one_run_call(random_models: Path):
    with PoseEstimator(random_models) as estimator:
        model = estimator.model("full")
        counter = CountingSession(model.session)
        model.session = counter
        out = estimator.estimate(crops(3), "full")
    assert counter.calls == [3]
    assert out.pose.shape == (3, 6) and out.pose_proj.shape == (3, 6)
    assert out.landmarks.shape == (3, LANDMARKS, 2)
    assert out.visibility.shape == (3, LANDMARKS)
    assert np.all((out.visibility >= 0) & (out.visibility <= 1))
    assert np.all((out.landmarks >= -1) & (out.landmarks <= INPUT_SIZE))


def test_pose_mode_opens_only_the_encoder_and_sessions_are_reused(random_models: Path):
    with PoseEstimator(random_models) as estimator:
        out = estimator.estimate(crops(2), "pose")
        assert out.landmarks is None and out.visibility is None and out.pose.shape == (2, 6)
        assert list(estimator._models) == ["pose"]
        first = estimator.model("pose")
        estimator.estimate(crops(1), "full")
        assert estimator.model("pose") is first
        assert estimator.provider in choose_providers()


def test_no_faces_means_empty_outputs_without_running(random_models: Path):
    with PoseEstimator(random_models) as estimator:
        out = estimator.estimate(crops(0), "full")
    assert out.pose.shape == (0, 6) and out.landmarks.shape == (0, LANDMARKS, 2)


def test_missing_models_folder_names_the_file(tmp_path: Path):
    estimator = PoseEstimator(tmp_path / "nowhere")
    with pytest.raises(ModelError, match="nowhere.*mnn_encoder.onnx") as caught:
        estimator.model("pose")
    assert "\n" not in str(caught.value)


def test_a_file_that_is_not_a_model_is_a_model_error_naming_it(tmp_path: Path):
    (tmp_path / FULL_FILE).write_bytes(b"garbage, not protobuf")
    with pytest.raises(ModelError, match="mnn_full.onnx") as caught:
        PoseEstimator(tmp_path).model("full")
    assert "\n" not in str(caught.value)


def test_the_encoder_under_the_full_model_name_is_refused(tmp_path: Path, random_models: Path):
    shutil.copy(random_models / "mnn_encoder.onnx", tmp_path / FULL_FILE)
    with pytest.raises(ModelError, match="'encoder'.*'full'"):
        PoseEstimator(tmp_path).model("full")


def test_unknown_mode_is_a_value_error(random_models: Path):
    with pytest.raises(ValueError, match="mode"):
        PoseEstimator(random_models).model("landmarks")
