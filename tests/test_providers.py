"""Execution providers: probed quietly, TensorRT then CUDA then CPU, one clean line, a named one that cannot run
is an error with its own exit code."""
from __future__ import annotations

import subprocess
import sys

import pytest

from app.core import providers
from app.core.estimator import DEFAULT_MODELS_DIR, PoseEstimator, choose_providers
from app.core.exit_codes import ExitCode
from tests.conftest import ROOT

CUDA_PROBLEM = providers.problem(providers.CUDA)
needs_no_cuda = pytest.mark.skipif(CUDA_PROBLEM is None, reason="CUDA runs on this machine")

OPEN_POSE_MODE = ("import logging; logging.basicConfig(level=logging.INFO, format='%(message)s');"
                  "from app.core.estimator import PoseEstimator;"
                  f"PoseEstimator({str(DEFAULT_MODELS_DIR)!r}, precision='fp32').model('pose')")


def test_opening_a_model_prints_one_provider_line_and_none_of_onnx_runtimes_load_errors():
    shown = subprocess.run([sys.executable, "-c", OPEN_POSE_MODE], capture_output=True, text=True, cwd=ROOT,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr
    lines = (shown.stdout + shown.stderr).strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("ONNX Runtime uses "), lines
    assert lines[1] == "pose mode runs mnn_encoder.onnx (fp32: asked for)"


@needs_no_cuda
def test_without_cuda_the_provider_line_says_why_the_cpu_runs():
    with PoseEstimator(DEFAULT_MODELS_DIR, precision="fp32") as estimator:
        assert estimator.model("pose").provider == providers.CPU
    assert providers.choose("auto") == providers.Choice((providers.CPU,), CUDA_PROBLEM)
    assert providers.describe(providers.CPU, CUDA_PROBLEM) == f"ONNX Runtime uses CPUExecutionProvider ({CUDA_PROBLEM})"
    assert CUDA_PROBLEM.startswith(("no CUDA device", "CUDA libraries missing", "this onnxruntime package"))


def test_auto_keeps_the_preferred_order_of_those_that_can_run_and_ends_with_the_cpu():
    chosen = providers.choose("auto").providers
    assert chosen[-1] == providers.CPU
    assert list(chosen) == [p for p in providers.ORDER if p in chosen]
    assert all(providers.problem(p) is None for p in chosen)
    assert providers.choose("cpu").providers == (providers.CPU,)
    assert choose_providers("cpu") == [providers.CPU]


@needs_no_cuda
@pytest.mark.parametrize("choice", ["cuda", "tensorrt"])
def test_an_accelerator_asked_for_by_name_that_cannot_run_is_an_error_naming_why(choice: str):
    with pytest.raises(providers.ProviderError, match=f"--provider {choice}: .* cannot run here"):
        PoseEstimator(DEFAULT_MODELS_DIR, providers=choice)


def test_an_unknown_choice_is_a_value_error():
    with pytest.raises(ValueError, match="unknown provider 'gpu'"):
        providers.choose("gpu")


@needs_no_cuda
def test_the_benchmark_asked_for_cuda_here_exits_6_with_one_line():
    shown = subprocess.run([sys.executable, "-m", "app.bench", "--inference-only", "--provider", "cuda"],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert shown.returncode == ExitCode.PROVIDER == 6
    assert shown.stdout == ""
    assert shown.stderr.strip().splitlines() == [f"error: --provider cuda: CUDA cannot run here ({CUDA_PROBLEM})"]


def test_tensorrt_builds_one_cached_engine_for_every_batch_up_to_its_maximum(tmp_path):
    options = providers.provider_options(providers.TENSORRT, tmp_path, 128)
    assert options["trt_profile_min_shapes"] == "image:1x3x128x128"
    assert options["trt_profile_max_shapes"] == f"image:{providers.TENSORRT_MAX_BATCH}x3x128x128"
    assert options["trt_engine_cache_enable"] == "True" and options["trt_engine_cache_path"] == str(tmp_path)
    assert providers.provider_options(providers.CUDA, tmp_path, 128) == {}
