"""Fitting the OR: repeatable for a seed, the fit's shapes are the runtime's stage by stage; ``trainer.train_or`` and
``trainer.evaluate`` end to end on a random model."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.core import or_cascade as cascade
from app.core import refiner as orr
from tests.conftest import require_shared
from tests.model_fixtures import INPUT_SIZE, LANDMARKS, random_models  # noqa: F401  (fixture)
from trainer.datasets.registry import open_dataset
from trainer.mean_face import build_mean_face
from trainer.or_fit import (CascadeConfig, TrainingSet, fit_cascade, quantise_heatmaps, shape_basis,
                            similarity_modes)
from trainer.train_or import FaceRef, collect

SMALL = ["--copies", "2", "--stages", "2", "--trees-per-landmark", "1", "--depth", "2"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True)


def _noisy_training_set(seed: int, mean_face: np.ndarray, n: int = 40) -> TrainingSet:
    rng = np.random.default_rng(seed)
    pose = np.column_stack([rng.uniform(-20, 20, (n, 3)), rng.uniform(-0.05, 0.05, (n, 2)), np.full(n, 1.5)])
    truth = cascade.initial_shapes(pose, mean_face, INPUT_SIZE) + rng.normal(0, 1.5, (n, LANDMARKS, 2))
    heatmaps, evidence = quantise_heatmaps(rng.random((n, LANDMARKS, INPUT_SIZE, INPUT_SIZE), dtype=np.float32))
    visibility = rng.uniform(0.3, 1.0, (n, LANDMARKS)).astype(np.float32)
    return TrainingSet(heatmaps, evidence, visibility, pose, truth, np.ones((n, LANDMARKS), bool), INPUT_SIZE)


def test_fitting_is_deterministic_for_a_fixed_seed():
    mean_face = build_mean_face(require_shared("mean_face", "bfm68.txt"))
    data = _noisy_training_set(0, mean_face)
    config = CascadeConfig(stages=2, trees_per_landmark=1, depth=3)
    first = fit_cascade(data, mean_face, config, seed=7, progress=False).arrays
    second = fit_cascade(data, mean_face, config, seed=7, progress=False).arrays
    other = fit_cascade(data, mean_face, config, seed=8, progress=False).arrays
    assert first.keys() == second.keys()
    assert all(np.array_equal(first[k], second[k]) for k in first)
    assert not np.array_equal(first["offsets"], other["offsets"])
    assert not np.array_equal(first["leaves"], other["leaves"])


def test_on_real_faces_the_fit_holds_at_every_stage_the_shapes_refine_computes(random_models):
    """The network's outputs on afw crops (plain and augmented, as ``train_or`` makes them): after stage 0 and after
    each tree stage, ``refine`` on the same inputs gives the shapes the fit held, its active landmarks included."""
    from app.core.estimator import PoseEstimator

    afw = open_dataset(f"300w:{require_shared('300w', 'afw')}")
    with PoseEstimator(random_models, ["CPUExecutionProvider"]) as estimator:
        mean_face = estimator.info("full").mean_face
        data = collect(estimator, [afw], [FaceRef(0, index) for index in range(6)], 2, 3, 2 ** 30)
    held: list[np.ndarray] = []
    regressor = fit_cascade(data, mean_face, CascadeConfig(stages=3, trees_per_landmark=1, depth=3), seed=5,
                            progress=False, on_stage=lambda index, shapes: held.append(shapes.copy()))
    result = regressor.refine(data.heatmaps, data.visibility, data.pose_proj, data.peaks)
    assert result.refined.all() and 0 < result.active.sum() < result.active.size  # some landmarks count, not all
    assert len(held) == regressor.stage_count + 1 == len(result.stages)
    for index, shapes in enumerate(held):
        np.testing.assert_allclose(result.stages[index], shapes, rtol=0, atol=1e-9, err_msg=f"after stage {index}")
    assert np.abs(held[-1] - held[0]).max() > 1e-3  # the tree stages moved the shapes


def test_a_lower_shape_energy_keeps_fewer_components_that_still_hold_that_energy():
    mean_face = build_mean_face(require_shared("mean_face", "bfm68.txt"))
    mean_shape = cascade.mean_shape_of(mean_face)
    rng = np.random.default_rng(0)
    displacements = rng.normal(0, 1, (200, 2 * LANDMARKS)) * np.geomspace(1, 0.01, 2 * LANDMARKS)
    counts = {}
    for energy in (0.8, 0.95, 1.0):
        basis, sigma = shape_basis(displacements, energy, mean_shape)
        assert np.allclose(basis @ basis.T, np.eye(len(basis)), atol=1e-9)
        rest = displacements - (displacements @ basis[:4].T) @ basis[:4]
        kept = ((rest @ basis[4:].T) ** 2).sum() / (rest ** 2).sum()
        assert kept >= energy - 1e-9
        counts[energy] = len(basis) - 4
    assert counts[0.8] < counts[0.95] < counts[1.0]


def test_a_shape_energy_of_one_keeps_every_residual_component_and_no_more():
    """One dominant mode and 131 whose powers (2.5e-17 of it) vanish in a running sum but not in numpy's pairwise
    total: a cumulative ratio never reaches 1 on any CPU. The basis must stop at the residual's rank, 2L − 4."""
    mean_face = build_mean_face(require_shared("mean_face", "bfm68.txt"))
    mean_shape = cascade.mean_shape_of(mean_face)
    rng = np.random.default_rng(2)
    rigid = similarity_modes(mean_shape)
    free = rng.normal(0, 1, (2 * LANDMARKS, 2 * LANDMARKS))
    free = np.linalg.qr((free - (free @ rigid.T) @ rigid).T)[0].T[: 2 * LANDMARKS - 4]
    mixing = np.linalg.qr(rng.normal(0, 1, (200, 2 * LANDMARKS - 4)))[0]
    strengths = np.r_[1.0, np.full(2 * LANDMARKS - 5, 5e-9)]
    displacements = (mixing * strengths) @ free
    for energy, components in ((0.95, 1), (1.0, 2 * LANDMARKS - 4)):
        basis, sigma = shape_basis(displacements, energy, mean_shape)
        assert len(basis) - 4 == components and len(sigma) == len(basis)
        assert np.allclose(basis @ basis.T, np.eye(len(basis)), atol=1e-9)


def test_the_shape_model_keeps_its_minimum_of_components_when_one_mode_holds_the_energy():
    mean_face = build_mean_face(require_shared("mean_face", "bfm68.txt"))
    mean_shape = cascade.mean_shape_of(mean_face)
    rng = np.random.default_rng(1)
    dominant = rng.normal(0, 1, 2 * LANDMARKS)
    displacements = np.outer(rng.normal(0, 10, 200), dominant) + rng.normal(0, 0.1, (200, 2 * LANDMARKS))
    assert len(shape_basis(displacements, 0.95, mean_shape)[0]) - 4 < 3
    basis, sigma = shape_basis(displacements, 0.95, mean_shape, minimum=20)
    assert len(basis) - 4 == 20 and len(sigma) == len(basis)
    assert np.allclose(basis @ basis.T, np.eye(len(basis)), atol=1e-9)
    rank_two = np.outer(rng.normal(0, 1, 200), dominant) + np.outer(rng.normal(0, 1, 200), rng.normal(0, 1, 2 * LANDMARKS))
    basis, _ = shape_basis(rank_two, 0.95, mean_shape, minimum=20)
    assert len(basis) - 4 <= 2 and np.allclose(basis @ basis.T, np.eye(len(basis)), atol=1e-9)


def test_train_or_refuses_a_shape_energy_outside_zero_to_one(random_models, tmp_path):
    afw = require_shared("300w", "afw")
    for energy in ("0", "1.5"):
        result = _run("-m", "trainer", "train-or", "--model", str(random_models), "--data", f"300w:{afw}",
                      "--limit", "4", "--shape-energy", energy, "--out", str(tmp_path / "or.npz"))
        assert result.returncode == 2
        assert "--shape-energy" in result.stderr and not (tmp_path / "or.npz").exists()


@pytest.fixture(scope="module")
def trained_or(random_models, tmp_path_factory) -> Path:
    afw = require_shared("300w", "afw")
    out = tmp_path_factory.mktemp("or") / "or.npz"
    result = _run("-m", "trainer", "train-or", "--model", str(random_models), "--data", f"300w:{afw}", "--limit", "4",
                  *SMALL, "--val-fraction", "0.25", "--seed", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "MNN+OR" in result.stdout
    return out


def test_train_or_fits_the_network_outputs_of_augmented_training_faces(trained_or):
    regressor = orr.OcclusionAwareRegressor.load(trained_or)
    assert (regressor.stage_count, regressor.trees, regressor.depth) == (2, LANDMARKS, 2)
    assert regressor.input_size == INPUT_SIZE
    provenance = regressor.provenance
    assert provenance["seed"] == 3 and provenance["copies"] == 2
    assert provenance["fit_faces"] == 3 and provenance["held_out_faces"] == 1
    assert provenance["samples"] == 6
    assert set(provenance["validation"]) == {"faces", "nme_mnn", "nme_mnn_or"}


def test_train_or_writes_the_same_file_for_the_same_seed(random_models, trained_or, tmp_path):
    afw = require_shared("300w", "afw")
    again = tmp_path / "or.npz"
    result = _run("-m", "trainer", "train-or", "--model", str(random_models), "--data", f"300w:{afw}", "--limit", "4",
                  *SMALL, "--val-fraction", "0.25", "--seed", "3", "--out", str(again))
    assert result.returncode == 0, result.stderr[-2000:]
    first, second = orr.OcclusionAwareRegressor.load(trained_or).arrays, orr.OcclusionAwareRegressor.load(again).arrays
    assert all(np.array_equal(first[k], second[k]) for k in first)


def test_train_or_refuses_more_heatmaps_than_the_memory_allowed(random_models, tmp_path):
    afw = require_shared("300w", "afw")
    result = _run("-m", "trainer", "train-or", "--model", str(random_models), "--data", f"300w:{afw}", "--limit", "4",
                  "--max-heatmap-gb", "0.0001", "--out", str(tmp_path / "or.npz"))
    assert result.returncode == 2
    assert "GiB" in result.stderr and not (tmp_path / "or.npz").exists()


def test_train_or_names_a_missing_model(tmp_path):
    afw = require_shared("300w", "afw")
    result = _run("-m", "trainer", "train-or", "--model", str(tmp_path / "none"), "--data", f"300w:{afw}",
                  "--out", str(tmp_path / "or.npz"))
    assert result.returncode == 4
    assert "mnn_full.onnx" in result.stderr


def test_evaluate_reports_mnn_and_mnn_or_side_by_side(random_models, trained_or, tmp_path):
    helen_test = require_shared("300w", "helen_test")
    models = tmp_path / "models"
    shutil.copytree(random_models, models)
    runs = {}
    for with_or in (False, True):
        if with_or:
            shutil.copy(trained_or, models / orr.OR_FILE)
        out = tmp_path / f"eval_{with_or}.json"
        result = _run("-m", "trainer", "evaluate", "--model", str(models), "--data", f"300w:{helen_test}",
                      "--limit", "2", "--json", str(out))
        assert result.returncode == 0, result.stderr[-2000:]
        runs[with_or] = json.loads(out.read_text())["datasets"][0]
    assert runs[False]["nme_or"] is None and runs[False]["refiner"] is None
    assert runs[True]["refiner"] == "or.npz"
    assert runs[True]["nme"] == runs[False]["nme"]
    assert set(runs[True]["nme_or"]) == set(runs[True]["nme"]) == {"inter_ocular", "inter_pupil", "box_height"}
    assert runs[True]["nme_or"] != runs[True]["nme"]
