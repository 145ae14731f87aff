"""The occlusion-aware regressor: recovery, the occlusion rule, valid shapes, a slow reference, fitting and refining
stage by stage, the file, the app.

Heatmaps here are synthetic: softmax-like Gaussians at known points, so that the right answer is known.
The cascade of the module fixture is fitted on faces whose true shape is the rigid ``x⁰`` plus a known
displacement field (three fixed modes with random weights per face).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.bench import benchmark
from app.core import or_cascade as cascade_steps
from app.core import or_format
from app.core import refiner as orr
from app.core.crop import from_normalised
from app.core.model_io import ModelError, ModelInfo
from app.core.pipeline import FacePipeline
from app.core.pose import TZ_MIN, project, rotation_matrix
from app.core.process import main as process_main
from app.core.results import EstimatorOutput
from tests.conftest import require_shared
from tests.model_fixtures import INPUT_SIZE, LANDMARKS, random_models  # noqa: F401  (fixture)
from trainer.landmark_layouts import IBUG68
from trainer.mean_face import build_mean_face
from trainer.or_fit import CascadeConfig, TrainingSet, fit_cascade, quantise_heatmaps

SIZE = INPUT_SIZE
CONFIG = CascadeConfig(stages=6, trees_per_landmark=2, depth=3, shrinkage=0.5)


def gaussian_heatmaps(points: np.ndarray, size: int, sigma: float = 1.5 * SIZE / 128) -> np.ndarray:
    """``(N, L, S, S)`` float32 Gaussians centred on ``points`` ``(N, L, 2)``, each summing to one like a softmax."""
    grid = np.arange(size, dtype=np.float64)
    gx = np.exp(-(grid - points[..., 0:1]) ** 2 / (2 * sigma ** 2))
    gy = np.exp(-(grid - points[..., 1:2]) ** 2 / (2 * sigma ** 2))
    maps = gy[..., :, None] * gx[..., None, :]
    return (maps / np.maximum(maps.sum((-1, -2), keepdims=True), 1e-300)).astype(np.float32)


def displacement_modes(mean_face: np.ndarray) -> np.ndarray:
    """Three fixed displacement fields ``(3, L, 2)`` in mean-shape units: jaw and lower lip down, all right,
    and a fixed random field."""
    modes = np.zeros((3, len(mean_face), 2))
    modes[0, 5:12, 1] = 0.15
    modes[0, 55:60, 1] = 0.15
    modes[1, :, 0] = 0.1
    modes[2] = np.random.default_rng(123).normal(0.0, 0.05, (len(mean_face), 2))
    return modes


def synthetic_faces(rng: np.random.Generator, n: int, mean_face: np.ndarray,
                    yaw_range: float = 30.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``pose_proj`` (degrees), true shapes ``x⁰ + A·Σ c_k mode_k`` (crop px) and their heatmaps."""
    pose = np.column_stack([rng.uniform(-yaw_range, yaw_range, n), rng.uniform(-15, 15, n), rng.uniform(-20, 20, n),
                            rng.uniform(-0.05, 0.05, (n, 2)), 1.54 * rng.uniform(0.9, 1.1, n)])
    initial = cascade_steps.initial_shapes(pose, mean_face, SIZE)
    forward, _ = cascade_steps.similarity(initial, cascade_steps.mean_shape_of(mean_face))
    field = np.einsum("nk,klj->nlj", rng.uniform(-1.0, 1.0, (n, 3)), displacement_modes(mean_face))
    truth = initial + cascade_steps.apply_linear(forward, field)
    return pose, truth, gaussian_heatmaps(truth, SIZE)


@pytest.fixture(scope="module")
def mean_face() -> np.ndarray:
    return build_mean_face(require_shared("mean_face", "bfm68.txt"))


@pytest.fixture(scope="module")
def fitted(mean_face: np.ndarray) -> tuple[orr.OcclusionAwareRegressor, TrainingSet, list[np.ndarray]]:
    """The cascade fitted on 300 synthetic faces (more than ``or_fit.CHUNK``), its training set, and the shapes the
    fit held after stage 0 and after each tree stage."""
    pose, truth, heatmaps = synthetic_faces(np.random.default_rng(0), 300, mean_face)
    stored, evidence = quantise_heatmaps(heatmaps)
    data = TrainingSet(stored, evidence, np.ones((300, LANDMARKS), np.float32), pose, truth,
                       np.ones((300, LANDMARKS), bool), SIZE)
    held: list[np.ndarray] = []
    regressor = fit_cascade(data, mean_face, CONFIG, seed=0, progress=False,
                            on_stage=lambda index, shapes: held.append(shapes.copy()))
    return regressor, data, held


@pytest.fixture(scope="module")
def cascade(fitted) -> orr.OcclusionAwareRegressor:
    return fitted[0]


@pytest.fixture(scope="module")
def held_out(mean_face: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return synthetic_faces(np.random.default_rng(1), 20, mean_face)


def _start_and_end_errors(result: orr.Refinement, truth: np.ndarray) -> tuple[float, float]:
    """Mean landmark error (crop pixels) of the start ``x⁰`` and of the refined shapes."""
    return tuple(float(np.linalg.norm(shapes - truth, axis=-1).mean()) for shapes in (result.initial, result.landmarks))


def test_the_cascade_recovers_a_known_synthetic_displacement_field(cascade, held_out):
    pose, truth, heatmaps = held_out
    before, after = _start_and_end_errors(cascade.refine(heatmaps, np.ones((20, LANDMARKS)), pose), truth)
    assert before > 1.0
    assert after < 0.15 * before and after < 0.3


def test_an_occluded_landmark_receives_no_tree_updates_and_its_heatmap_is_never_read(cascade, held_out):
    pose, truth, heatmaps = held_out
    visibility = np.ones((20, LANDMARKS))
    visible = cascade.refine(heatmaps, visibility, pose)
    occluded_landmark = 57
    visibility[:, occluded_landmark] = 0.1
    occluded = cascade.refine(heatmaps, visibility, pose)
    assert np.abs(visible.tree_steps[:, occluded_landmark]).max() > 0.02  # stage 0 leaves the trees little to do
    assert not occluded.active[:, occluded_landmark].any()
    assert np.array_equal(occluded.tree_steps[:, occluded_landmark], np.zeros((20, 2)))
    junk = heatmaps.copy()
    junk[:, occluded_landmark] = np.random.default_rng(2).random(junk.shape[2:])
    assert np.array_equal(cascade.refine(junk, visibility, pose).landmarks, occluded.landmarks)
    # The shape model still places it from the visible landmarks, better than the rigid start.
    start = np.linalg.norm(occluded.initial[:, occluded_landmark] - truth[:, occluded_landmark], axis=-1).mean()
    placed = np.linalg.norm(occluded.landmarks[:, occluded_landmark] - truth[:, occluded_landmark], axis=-1).mean()
    assert placed < 0.5 * start


def _stage_zero_only(cascade: orr.OcclusionAwareRegressor) -> orr.OcclusionAwareRegressor:
    arrays = cascade.arrays
    arrays["leaves"] = np.zeros_like(arrays["leaves"])
    return orr.OcclusionAwareRegressor(arrays)


def test_stage_zero_pulls_a_misposed_start_onto_the_heatmap_peaks(cascade, held_out):
    pose, truth, heatmaps = held_out
    misposed = pose.copy()
    misposed[:, 3] += 0.03  # x0 shifted right by about 1 px at 64 px, beyond what the trees were shown
    misposed[:, 5] *= 1.05
    before, after = _start_and_end_errors(_stage_zero_only(cascade).refine(heatmaps, np.ones((20, LANDMARKS)),
                                                                           misposed), truth)
    assert before > 1.5
    assert after < 0.3 * before and after < 0.5


def test_a_stray_peak_is_left_out_of_the_stage_zero_fit(cascade, held_out):
    pose, truth, heatmaps = held_out
    stray = truth.copy()
    stray[:, 30] += (12.0, -9.0)
    result = _stage_zero_only(cascade).refine(gaussian_heatmaps(stray, SIZE), np.ones((20, LANDMARKS)), pose)
    clean = _stage_zero_only(cascade).refine(heatmaps, np.ones((20, LANDMARKS)), pose)
    assert np.linalg.norm(result.landmarks[:, 30] - truth[:, 30], axis=-1).max() < 1.0
    assert np.abs(result.landmarks - clean.landmarks).max() < 0.5


def test_a_face_the_trees_lose_keeps_its_stage_zero_shape(cascade, held_out):
    pose, truth, _ = held_out
    far = truth[:2].copy()
    far[0] = far[0] * 0.4 + 0.3 * SIZE  # face 0's heatmaps show a much smaller face elsewhere in the crop
    result = cascade.refine(gaussian_heatmaps(far, SIZE), np.ones((2, LANDMARKS)), pose[:2])
    assert result.locked.tolist() == [False, True] and result.refined.all()
    assert np.array_equal(result.landmarks[0], result.anchor[0])
    assert np.linalg.norm(result.landmarks[1] - truth[1], axis=-1).mean() < 0.5


def test_heatmap_peaks_match_the_exported_models_landmarks(random_models):
    from app.core.estimator import PoseEstimator

    crops = np.random.default_rng(4).integers(0, 256, (3, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    with PoseEstimator(random_models, ["CPUExecutionProvider"]) as estimator:
        out = estimator.estimate(crops, "full")
    np.testing.assert_allclose(cascade_steps.heatmap_peaks(out.heatmaps), out.landmarks, atol=1e-3)


def test_self_occlusion_hides_the_far_side_at_large_yaw_and_nothing_when_frontal(cascade):
    poses = np.array([[0.0, 0, 0, 0, 0, 1.5], [80.0, 0, 0, 0, 0, 1.5], [-80.0, 0, 0, 0, 0, 1.5]])
    hidden = cascade.self_occluded(poses)
    assert not hidden[0].any()
    assert 0 < hidden[1].sum() < LANDMARKS // 2
    assert np.array_equal(hidden[1], hidden[2][IBUG68.flip_array()])


@pytest.mark.parametrize("case", ["all zero", "NaN", "inf pixels", "-inf pixels", "one peak off the image"])
def test_adversarial_heatmaps_keep_a_valid_face_near_the_start(cascade, held_out, case):
    pose, truth, heatmaps = held_out
    if case == "all zero":
        heatmaps = np.zeros_like(heatmaps)
    elif case == "NaN":
        heatmaps = np.full_like(heatmaps, np.nan)
    elif case.endswith("inf pixels"):
        heatmaps = heatmaps.copy()
        heatmaps[:, :, ::3, ::3] = -np.inf if case.startswith("-") else np.inf
    else:
        off = truth.copy()
        off[..., 0] = -0.4 * SIZE
        heatmaps = gaussian_heatmaps(off, SIZE, sigma=0.2 * SIZE)
    result = cascade.refine(heatmaps, np.ones((20, LANDMARKS)), pose)
    assert np.isfinite(result.landmarks).all()
    for shapes, reference, model in ((result.anchor, result.initial, cascade.shape_model),
                                     (result.landmarks, result.anchor, cascade.refine_model)):
        coefficients, outside = cascade_steps.shape_coefficients(shapes, reference, cascade.settings.mean_shape,
                                                                 model.basis)
        assert (np.abs(coefficients) <= model.limits * (1 + 1e-9) + 1e-12).all()
        assert np.abs(outside).max() < 1e-9
    face_width = np.ptp(result.initial[..., 0], axis=1)
    assert (np.linalg.norm(result.landmarks - result.initial, axis=-1).max(1) < 0.5 * face_width).all()
    if case in ("all zero", "NaN", "inf pixels"):  # no usable heatmap: no evidence, the start is kept
        assert np.array_equal(result.landmarks, result.initial)


def reference_refine(arrays: dict[str, np.ndarray], heatmaps: np.ndarray, visibility: np.ndarray,
                     pose_proj: np.ndarray) -> np.ndarray:
    """The OR written plainly, one face, tree, node and pixel at a time, straight from the file's arrays."""
    stages, size = int(arrays["stage_count"]), int(arrays["input_size"])
    mean_face, mean_shape, normals = arrays["mean_face"], arrays["mean_shape"], arrays["normals"]
    count, trees, depth = len(mean_face), arrays["anchors"].shape[1], int(np.log2(arrays["leaves"].shape[2]))
    clamp, noise = float(arrays["shape_clamp"]), float(arrays["shape_noise"])

    def frame(shape: np.ndarray) -> np.ndarray:
        centre = shape.mean(0)
        dot = cross = norm = 0.0
        for l in range(count):
            x, y = shape[l] - centre
            mx, my = mean_shape[l]
            dot, cross, norm = dot + mx * x + my * y, cross + mx * y - my * x, norm + mx * mx + my * my
        return np.array([[dot / norm, -cross / norm], [cross / norm, dot / norm]])

    def pixel(heatmap: np.ndarray, point: np.ndarray) -> float:
        value = 0.0
        x0, y0 = int(np.floor(point[0])), int(np.floor(point[1]))
        for cx in (x0, x0 + 1):
            for cy in (y0, y0 + 1):
                if 0 <= cx < heatmap.shape[1] and 0 <= cy < heatmap.shape[0]:
                    value += (1 - abs(point[0] - cx)) * (1 - abs(point[1] - cy)) * float(heatmap[cy, cx])
        return value

    results = []
    for face in range(len(pose_proj)):
        pose = np.array(pose_proj[face], dtype=np.float64)
        pose[:3] = np.radians(pose[:3])
        pose[5] = max(pose[5], TZ_MIN)
        initial = from_normalised(project(pose, mean_face), size)
        rotation = rotation_matrix(pose[:3])
        peaks = [float(heatmaps[face, l].max()) for l in range(count)]
        active = [visibility[face, l] >= float(arrays["visibility_threshold"])
                  and rotation[2] @ normals[l] >= float(arrays["facing_min"])
                  and np.isfinite(peaks[l]) and peaks[l] > 0 for l in range(count)]
        def fit(proposed: np.ndarray, mask: list[bool], reference: np.ndarray, model: str) -> np.ndarray:
            basis, sigma = arrays[f"{model}_basis"], arrays[f"{model}_sigma"]
            start = frame(reference)
            weights = np.repeat(np.array(mask, dtype=np.float64), 2)
            normal = (basis * weights) @ basis.T + np.diag(noise ** 2 / sigma ** 2)
            displacement = (np.linalg.inv(start) @ (proposed - reference).T).T.reshape(-1)
            coefficients = np.linalg.solve(normal, (basis * weights) @ displacement)
            coefficients = np.minimum(np.maximum(coefficients, -clamp * sigma), clamp * sigma)
            return reference + (start @ (coefficients @ basis).reshape(count, 2).T).T

        found = initial.copy()
        for l in range(count):
            heatmap = heatmaps[face, l].astype(np.float64)
            y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
            total = sx = sy = 0.0
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    if 0 <= y + dy < heatmap.shape[0] and 0 <= x + dx < heatmap.shape[1]:
                        value = heatmap[y + dy, x + dx]
                        total, sx, sy = total + value, sx + value * dx, sy + value * dy
            if active[l]:
                found[l] = (x + sx / max(total, 1e-12), y + sy / max(total, 1e-12))
        shape = fit(found, active, initial, "shape")
        distance = np.linalg.norm((np.linalg.inv(frame(initial)) @ (found - shape).T).T, axis=1)
        inliers = [active[l] and distance[l] <= float(arrays["peak_outlier"]) for l in range(count)]
        if inliers != active:
            shape = fit(found, inliers, initial, "shape")
        stage0 = shape.copy()
        for stage in range(stages):
            move = frame(shape)
            proposed = shape.copy()
            for tree in range(trees):
                anchor = arrays["anchors"][stage, tree]
                if not active[anchor]:
                    continue
                values = [pixel(heatmaps[face, anchor], shape[anchor] + move @ offset) / peaks[anchor]
                          for offset in arrays["offsets"][stage, anchor].astype(np.float64)]
                node = 0
                for _ in range(depth):
                    a, b = arrays["feature_a"][stage, tree, node], arrays["feature_b"][stage, tree, node]
                    node = 2 * node + 1 + int(values[a] - values[b] > float(arrays["thresholds"][stage, tree, node]))
                proposed[anchor] += move @ arrays["leaves"][stage, tree, node - (2 ** depth - 1)].astype(np.float64)
            shape = fit(proposed, active, stage0, "refine")
        gaps = [np.linalg.norm(np.linalg.inv(frame(stage0)) @ (found[l] - shape[l])) for l in range(count) if active[l]]
        if gaps and np.median(gaps) > float(arrays["lock_threshold"]):
            shape = stage0
        results.append(shape)
    return np.array(results)


def test_the_vectorised_runtime_equals_the_slow_reference(cascade, held_out):
    pose, truth, heatmaps = held_out
    pose, heatmaps = pose[:3].copy(), heatmaps[:3] + 2e-4 * np.random.default_rng(3).random(heatmaps[:3].shape)
    pose[2, 0] = 75.0  # a large yaw: some landmarks self-occluded
    pose[1, 3] = 0.4  # near the right edge: some pool points fall off the heatmap
    heatmaps = heatmaps.astype(np.float32)
    heatmaps[1, 10] = np.nan
    visibility = np.ones((3, LANDMARKS))
    visibility[0, [20, 40, 60]] = 0.2
    fast = cascade.refine(heatmaps, visibility, pose)
    assert not fast.active.all() and fast.active.sum() > LANDMARKS
    slow = reference_refine(cascade.arrays, heatmaps, visibility, pose)
    np.testing.assert_allclose(fast.landmarks, slow, rtol=0, atol=1e-9)
    for face in range(3):  # one at a time, faces away from the edge take the sampler's unmasked path
        alone = cascade.refine(heatmaps[face:face + 1], visibility[face:face + 1], pose[face:face + 1])
        np.testing.assert_allclose(alone.landmarks[0], slow[face], rtol=0, atol=1e-9)


def test_fitting_and_refining_hold_the_same_shapes_stage_by_stage(fitted):
    """``refine`` on the training inputs computes, after stage 0 and after each tree stage, the shapes the fit held
    there: the fit advances its shapes with the runtime's own steps."""
    regressor, data, held = fitted
    peaks = np.concatenate([cascade_steps.heatmap_peaks(data.heatmaps[i:i + 50]) for i in range(0, 300, 50)])
    result = regressor.refine(data.heatmaps, data.visibility, data.pose_proj, peaks)
    assert len(held) == regressor.stage_count + 1 == len(result.stages)
    assert result.refined.all()
    for index, shapes in enumerate(held):
        np.testing.assert_allclose(result.stages[index], shapes, rtol=0, atol=1e-9, err_msg=f"after stage {index}")
    assert np.abs(held[0] - result.initial).max() > 1.0 and np.abs(held[-1] - held[0]).max() > 1e-3  # both moved


def test_a_saved_regressor_loads_back_to_the_same_results(cascade, held_out, tmp_path):
    pose, _, heatmaps = held_out
    loaded = orr.OcclusionAwareRegressor.load(cascade.save(tmp_path / "or.npz"))
    assert loaded.provenance["seed"] == 0
    assert np.array_equal(loaded.refine(heatmaps, np.ones((20, LANDMARKS)), pose).landmarks,
                          cascade.refine(heatmaps, np.ones((20, LANDMARKS)), pose).landmarks)


def test_a_file_of_another_version_fails_naming_the_file(cascade, tmp_path):
    path = tmp_path / "or.npz"
    np.savez(path, **{**cascade.arrays, "format_version": np.int64(orr.FORMAT_VERSION + 1)})
    with pytest.raises(orr.RefinerError, match=f"{path}.*version {orr.FORMAT_VERSION + 1}"):
        orr.OcclusionAwareRegressor.load(path)


def test_a_truncated_file_fails_naming_the_file(cascade, tmp_path):
    whole = cascade.save(tmp_path / "whole.npz").read_bytes()
    path = tmp_path / "or.npz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(orr.RefinerError, match=f"{path}: truncated"):
        orr.OcclusionAwareRegressor.load(path)


def test_a_file_holding_pickled_objects_is_refused(cascade, tmp_path):
    path = tmp_path / "or.npz"
    np.savez(path, **{**cascade.arrays, "provenance": np.array([{"seed": 0}], dtype=object)})
    with pytest.raises(orr.RefinerError, match=f"{path}: truncated or not an OR file.*allow_pickle"):
        orr.OcclusionAwareRegressor.load(path)


def test_a_malformed_file_fails_naming_what_is_wrong(cascade):
    arrays = cascade.arrays
    for name, value, message in (("leaves", arrays["leaves"][:, :, :3], "power of two"),
                                 ("feature_a", arrays["feature_a"] + 1000, "feature_a indexes pool points"),
                                 ("shape_sigma", -arrays["shape_sigma"], "must be positive"),
                                 ("thresholds", arrays["thresholds"].astype(np.int32), "thresholds has dtype")):
        with pytest.raises(orr.RefinerError, match=f"<in memory>: .*{message}"):
            orr.OcclusionAwareRegressor({**arrays, name: value})
    with pytest.raises(ValueError, match="share one clamp"):
        or_format.pack(cascade.settings, cascade.shape_model,
                       cascade_steps.ShapeModel(cascade.refine_model.basis, cascade.refine_model.sigma, 2.0, 0.03),
                       {name: arrays[name] for name in or_format.TREE_ARRAYS}, {})


def test_a_file_lacking_arrays_fails_naming_them(cascade, tmp_path):
    path = tmp_path / "or.npz"
    np.savez(path, **{k: v for k, v in cascade.arrays.items() if k != "leaves"})
    with pytest.raises(orr.RefinerError, match=f"{path}.*lacks leaves"):
        orr.OcclusionAwareRegressor.load(path)


def _info(mean_face: np.ndarray, input_size: int = SIZE) -> ModelInfo:
    return ModelInfo(path=Path("mnn_full.onnx"), variant="full", input_size=input_size, landmarks=LANDMARKS,
                     mean=np.zeros(3, np.float32), std=np.ones(3, np.float32), mean_face=mean_face)


def test_as_the_pipeline_refiner_it_replaces_landmarks_and_keeps_faces_without_a_finite_pose(cascade, held_out,
                                                                                             mean_face):
    pose, truth, heatmaps = held_out
    pose = pose[:2].copy()
    pose[1, 5] = np.nan
    network = cascade_steps.heatmap_peaks(heatmaps[:2]).astype(np.float32)
    network[1] = 7.0
    out = EstimatorOutput(pose.astype(np.float32), pose.astype(np.float32), network,
                          np.ones((2, LANDMARKS), np.float32), heatmaps[:2])
    refined = cascade(None, out, _info(mean_face))
    assert refined.landmarks.dtype == np.float32
    assert np.linalg.norm(refined.landmarks[0] - truth[0], axis=-1).mean() < 0.5
    assert np.array_equal(refined.landmarks[1], network[1])
    assert refined.visibility is out.visibility and refined.pose is out.pose
    with pytest.raises(orr.RefinerError, match="trained for 68 landmarks at 64 px"):
        cascade(None, out, _info(mean_face, input_size=128))


@pytest.fixture()
def models_with_or(random_models, cascade, tmp_path) -> Path:
    folder = tmp_path / "models"
    shutil.copytree(random_models, folder)
    cascade.save(folder / orr.OR_FILE)
    return folder


def test_full_mode_uses_or_npz_when_present_and_says_so(models_with_or, d18_frame):
    frame = d18_frame
    with FacePipeline(models_with_or, mode="full") as pipeline:
        assert pipeline.refiner_name == "or.npz"
        full = pipeline.process(frame)
        pipeline.set_mode("pose")
        pose = pipeline.process(frame)
    assert len(full.faces) == 1 and full.refiner == "OR" and "refine" in full.timings_ms
    assert np.isfinite(full.faces[0].landmarks).all()
    assert pose.refiner is None and "refine" not in pose.timings_ms


def test_a_broken_or_npz_is_a_model_error_in_full_mode_only(models_with_or):
    (models_with_or / orr.OR_FILE).write_bytes(b"PK\x03\x04 not really a zip")
    with FacePipeline(models_with_or, mode="pose") as pipeline:
        pipeline.load("pose")
        with pytest.raises(ModelError, match="or.npz: truncated or not an OR file"):
            pipeline.load("full")


def test_the_summary_and_the_benchmark_name_the_refiner(models_with_or, tmp_path):
    video = require_shared("videos", "d18.mp4")
    out = tmp_path / "out"
    assert process_main([str(video), "--out", str(out), "--mode", "full", "--models", str(models_with_or),
                         "--max-frames", "2", "--no-video"]) == 0
    assert json.loads((out / "d18.summary.json").read_text())["refiner"] == "or.npz"
    report = benchmark(video, "full", frames=2, models=models_with_or, warmup=1)
    assert report["refiner"] == "or.npz" and report["refine_ms_per_face"] > 0
    assert benchmark(video, "pose", frames=1, models=models_with_or, warmup=0)["refiner"] is None
