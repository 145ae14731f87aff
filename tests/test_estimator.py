"""PoseEstimator: lazy cached sessions per mode, one batched run for all faces, clear ModelErrors."""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from app.core.estimator import DEFAULT_MODELS_DIR, PREFERRED_PROVIDERS, PoseEstimator, choose_providers
from app.core.model_io import ENCODER_FILE, FULL_FILE, ModelError
from app.core.refiner import OcclusionAwareRegressor
from tests.conftest import ROOT, read_frames, require_shared
from tests.model_fixtures import INPUT_SIZE, LANDMARKS, random_models  # noqa: F401  (fixture)


class CountingSession:
    """Wraps an ONNX Runtime session and counts its ``run`` calls."""

    def __init__(self, session):
        self.session = session
        self.calls: list[int] = []

    def run(self, names, feeds):
        self.calls.append(len(next(iter(feeds.values()))))
        return self.session.run(names, feeds)


def edited_models(random_models: Path, out: Path, filename: str, edit: Callable[[onnx.ModelProto], None]) -> Path:
    """A copy of the random models' folder in ``out`` whose ``filename`` went through ``edit``."""
    shutil.copytree(random_models, out)
    model = onnx.load(str(random_models / filename))
    edit(model)
    onnx.save(model, str(out / filename))
    return out


def set_metadata(key: str, value: str) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        next(p for p in model.metadata_props if p.key == key).value = value
    return edit


def narrow_pose(model: onnx.ModelProto) -> None:
    """``pose`` cut to its first two columns by a Slice node, its declared shape ``(batch, 2)``."""
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["pose_wide" if name == "pose" else name for name in node.output]
        node.input[:] = ["pose_wide" if name == "pose" else name for name in node.input]
    for name, value in (("pose_starts", 0), ("pose_ends", 2), ("pose_axes", 1)):
        graph.initializer.append(numpy_helper.from_array(np.array([value], np.int64), name))
    graph.node.append(helper.make_node("Slice", ["pose_wide", "pose_starts", "pose_ends", "pose_axes"], ["pose"]))
    next(o for o in graph.output if o.name == "pose").type.tensor_type.shape.dim[1].dim_value = 2


def drop_heatmaps(model: onnx.ModelProto) -> None:
    outputs = [o for o in model.graph.output if o.name != "heatmaps"]
    del model.graph.output[:]
    model.graph.output.extend(outputs)


def crops(n: int, size: int = INPUT_SIZE) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


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


@pytest.mark.parametrize("filename, edit, mode, message", [
    (ENCODER_FILE, narrow_pose, "pose", "output 'pose' has width 2, the runtime needs 6"),
    (ENCODER_FILE, set_metadata("input_size", "128"), "pose",
     f"input 'image' has height {INPUT_SIZE}, its metadata says 128"),
    (FULL_FILE, set_metadata("landmarks", "67"), "full",
     f"output 'landmarks' has landmark count {LANDMARKS}, its metadata says 67"),
    (FULL_FILE, drop_heatmaps, "full", "lacks output(s) heatmaps"),
], ids=["pose_width", "input_size", "landmark_count", "missing_output"])
def test_a_model_whose_tensors_contradict_its_metadata_is_refused_when_it_opens(
        random_models: Path, tmp_path: Path, filename: str, edit, mode: str, message: str):
    models = edited_models(random_models, tmp_path / "models", filename, edit)
    with pytest.raises(ModelError) as caught:
        PoseEstimator(models).model(mode)
    assert str(caught.value) == f"{models / filename}: {message}"


def test_process_exits_4_with_one_line_for_a_model_that_contradicts_its_metadata(random_models: Path,
                                                                                  tmp_path: Path):
    models = edited_models(random_models, tmp_path / "models", ENCODER_FILE, narrow_pose)
    video = require_shared("videos", "d18.mp4")
    result = subprocess.run([sys.executable, str(ROOT / "run_app.py"), "process", str(video), "--out",
                             str(tmp_path / "out"), "--models", str(models), "--no-video"],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 4
    assert result.stderr.strip().splitlines() == [
        f"error: {models / ENCODER_FILE}: output 'pose' has width 2, the runtime needs 6"]
    assert not (tmp_path / "out" / "d18.csv").exists()


def test_estimate_faces_of_no_boxes_is_no_faces_with_crop_and_infer_timed(random_models):
    timings: dict[str, float] = {}
    with PoseEstimator(random_models) as estimator:
        faces = estimator.estimate_faces(np.zeros((120, 160, 3), np.uint8), np.zeros((0, 4)), "full", timings=timings)
    assert faces == [] and set(timings) == {"crop", "infer"}


def _same_faces(batched, alone) -> list[str]:
    """Names of the fields (``face k: field``) where two lists of ``FaceEstimate`` differ at all (NaN equal to NaN)."""
    differ = []
    assert len(batched) == len(alone)
    for k, (a, b) in enumerate(zip(batched, alone)):
        for field in dataclasses.fields(a):
            x, y = getattr(a, field.name), getattr(b, field.name)
            same = (x is None and y is None) or (x is not None and y is not None and np.array_equal(x, y, equal_nan=True))
            if not same:
                differ.append(f"face {k}: {field.name}")
    return differ


@pytest.mark.parametrize("mode", ["pose", "full"])
def test_faces_of_several_frames_in_one_run_equal_those_of_one_frame_at_a_time(mode: str):
    frames = [read_frames("d18.mp4", 1)[0], read_frames("s20.mp4", 1)[0], read_frames("d3.mp4", 1)[0]]
    boxes = [np.array([[200.0, 80.0, 420.0, 330.0], [40.0, 60.0, 160.0, 190.0]]), np.zeros((0, 4)),
             np.array([[120.5, 90.25, 300.0, 280.0]])]
    refiner = OcclusionAwareRegressor.load(DEFAULT_MODELS_DIR / "or.npz") if mode == "full" else None
    with PoseEstimator(DEFAULT_MODELS_DIR, precision="fp32") as estimator:
        model = estimator.model(mode)
        counter = CountingSession(model.session)
        model.session = counter
        batched = estimator.estimate_faces_batch(frames, boxes, mode, refiner)
        alone = [estimator.estimate_faces(frame, frame_boxes, mode, refiner)
                 for frame, frame_boxes in zip(frames, boxes)]
    assert counter.calls == [3, 2, 1]
    assert [len(faces) for faces in batched] == [2, 0, 1]
    for frame_batched, frame_alone in zip(batched, alone):
        assert _same_faces(frame_batched, frame_alone) == []


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("mode", ["pose", "full"])
def test_each_shipped_model_takes_any_batch_and_gives_each_crop_its_batch_of_one_outputs(mode: str, precision: str):
    with PoseEstimator(DEFAULT_MODELS_DIR, precision=precision) as estimator:
        model = estimator.model(mode)
        assert model.max_batch is None and model.session.get_inputs()[0].shape[0] == "batch"
        batch = crops(3, estimator.info(mode).input_size)
        together = estimator.estimate(batch, mode)
        alone = [estimator.estimate(batch[i:i + 1], mode) for i in range(3)]
    for name in ("pose", "pose_proj", "landmarks", "visibility"):
        if getattr(together, name) is not None:
            np.testing.assert_allclose(getattr(together, name), np.concatenate([getattr(a, name) for a in alone]),
                                       rtol=1e-5, atol=1e-5, err_msg=name)
