"""INT8 variants: the metadata contract survives quantisation, and ``precision="auto"`` follows precision.json's
accuracy verdict (the speed half, measured on the machine in use, is injected here; ``tests/test_precision.py``)."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from app.core import model_io, precision
from app.core.estimator import PoseEstimator
from app.core.exit_codes import ExitCode
from app.core.model_io import ENCODER_FILE, FULL_FILE, ModelError, file_sha256, int8_file
from app.core.precision import SpeedCheck
from tests.conftest import require_shared
from tests.model_fixtures import INPUT_SIZE, LANDMARKS, random_models  # noqa: F401  (fixture)
from trainer import quantize
from trainer.commands.quantize import main as quantize_main

CPU = ["CPUExecutionProvider"]


def crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def quantized(random_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The random fp32 models with their INT8 variants beside them (calibrated on random crops)."""
    out = tmp_path_factory.mktemp("quantized")
    for name in (ENCODER_FILE, FULL_FILE):
        shutil.copy(random_models / name, out / name)
        quantize.quantize_model(out / name, out / int8_file(name), crops(8))
    return out


@pytest.fixture(autouse=True)
def fast_int8_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test's speed cache is a temporary file, ``auto`` is not overridden, and the speed check finds INT8
    3x faster without timing."""
    monkeypatch.setenv(precision.CACHE_ENV, str(tmp_path / "speed_cache.json"))
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)
    monkeypatch.setattr(precision, "time_variants", lambda *args, **kwargs: SpeedCheck(30.0, 10.0, 20))


@pytest.fixture
def models(quantized: Path, tmp_path: Path) -> Path:
    """A private copy of ``quantized`` that a test may add a precision.json to or change."""
    target = tmp_path / "models"
    shutil.copytree(quantized, target)
    return target


def write_record(models: Path, accurate: bool = True, sha: str | None = None) -> None:
    """A precision.json judging INT8 accurate (or not) for both modes, pinned to the current fp32 files unless
    ``sha``."""
    modes = {mode: {"int8_accurate": accurate, "mae_loss": 0.02 if accurate else 0.5,
                    "fp32_size": (models / name).stat().st_size, "fp32_sha256": sha or file_sha256(models / name)}
             for mode, name in (("pose", ENCODER_FILE), ("full", FULL_FILE))}
    (models / model_io.PRECISION_FILE).write_text(json.dumps({"format_version": model_io.PRECISION_FORMAT,
                                                              "modes": modes}))


def test_int8_models_carry_all_fp32_metadata_plus_precision_int8(quantized: Path):
    for name in (ENCODER_FILE, FULL_FILE):
        fp32 = quantize.read_metadata(quantized / name)
        assert "precision" not in fp32
        assert quantize.read_metadata(quantized / int8_file(name)) == {**fp32, "precision": "int8"}


def test_int8_models_pass_the_contract_check_and_run_through_the_estimator(quantized: Path):
    with PoseEstimator(quantized, CPU, precision="int8") as estimator:
        out = estimator.estimate(crops(3, seed=1), "full")
        assert estimator.model("full").path.name == int8_file(FULL_FILE)
        assert estimator.precision("full") == "int8" and estimator.precision("pose") == "int8"
        assert estimator.info("full").precision == "int8"
        assert out.pose.shape == (3, 6) and out.landmarks.shape == (3, LANDMARKS, 2)
        assert np.isfinite(out.pose).all() and np.isfinite(out.heatmaps).all()


def test_heads_and_everything_after_them_stay_fp32(quantized: Path):
    graph = onnx.load(str(quantized / int8_file(FULL_FILE))).graph
    producers = {out: node for node in graph.node for out in node.output}
    for output in model_io.FULL_OUTPUTS:
        assert producers[output].op_type not in ("DequantizeLinear", "QuantizeLinear")
    heads = [n for n in graph.node if "/fc_" in n.name]
    assert heads and all(n.op_type == "Conv" for n in heads)
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)


def test_bottleneck_stages_stay_fp32_while_earlier_stages_are_quantised(quantized: Path):
    graph = onnx.load(str(quantized / int8_file(ENCODER_FILE))).graph
    producers = {out: node for node in graph.node for out in node.output}
    convs = [n for n in graph.node if n.op_type == "Conv" and "/fc_" not in n.name]

    def quantised(node: onnx.NodeProto) -> bool:
        return node.input[1] in producers and producers[node.input[1]].op_type == "DequantizeLinear"

    deep = [n for n in convs if f"/down.{quantize.FP32_STAGES_FROM}/" in n.name]
    assert deep and not any(quantised(n) for n in deep)
    assert [n.name for n in convs if quantised(n)] and all(quantised(n) for n in convs if "/down.0/" in n.name)


def test_auto_runs_int8_on_a_cpu_where_it_is_faster_when_precision_json_judged_it_accurate(models: Path):
    write_record(models, accurate=True)
    with PoseEstimator(models, CPU) as estimator:
        assert estimator.precision("pose") == "int8" and estimator.precision("full") == "int8"
        assert estimator.model("pose").path.name == int8_file(ENCODER_FILE)


def test_auto_runs_fp32_when_precision_json_judged_int8_inaccurate(models: Path):
    write_record(models, accurate=False)
    with PoseEstimator(models, CPU) as estimator:
        assert estimator.precision("pose") == "fp32"
        assert estimator.model("pose").path.name == ENCODER_FILE


def test_auto_runs_fp32_when_the_fp32_model_changed_since_it_was_quantised(models: Path):
    write_record(models, accurate=True, sha="0" * 64)
    with PoseEstimator(models, CPU) as estimator:
        assert estimator.precision("full") == "fp32"


def test_auto_runs_fp32_without_precision_json_or_without_the_int8_file(models: Path):
    with PoseEstimator(models, CPU) as estimator:
        assert estimator.precision("pose") == "fp32"
    write_record(models, accurate=True)
    (models / int8_file(FULL_FILE)).unlink()
    with PoseEstimator(models, CPU) as estimator:
        assert estimator.precision("full") == "fp32" and estimator.precision("pose") == "int8"


@pytest.mark.parametrize("text", [
    "{not json", "[]", '{"format_version": "2", "modes": {"pose": {"int8_accurate": "yes"}}}',
    '{"format_version": "2", "modes": {"pose": {"int8_accurate": true, "fp32_size": 1}}}',
    '{"format_version": "1", "modes": {"pose": {"int8_chosen": true}}}'])
def test_malformed_precision_json_means_fp32_with_one_warning(models: Path, text: str,
                                                               caplog: pytest.LogCaptureFixture):
    (models / model_io.PRECISION_FILE).write_text(text)
    with caplog.at_level(logging.WARNING), PoseEstimator(models, CPU) as estimator:
        assert estimator.precision("pose") == "fp32"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and model_io.PRECISION_FILE in r.getMessage()]
    assert len(warnings) == 1


def test_fp32_forces_fp32_even_where_int8_would_be_chosen(models: Path):
    write_record(models, accurate=True)
    with PoseEstimator(models, CPU, precision="fp32") as estimator:
        assert estimator.precision("pose") == "fp32"


def test_forcing_int8_without_the_file_is_a_model_error_naming_it(random_models: Path):
    with pytest.raises(ModelError, match=int8_file(ENCODER_FILE).replace(".", r"\.")):
        PoseEstimator(random_models, CPU, precision="int8").model("pose")


def test_unknown_precision_is_a_value_error(random_models: Path):
    with pytest.raises(ValueError, match="precision"):
        PoseEstimator(random_models, precision="fp16")


def test_quantize_command_writes_both_int8_models_and_a_precision_json(random_models: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture):
    afw = require_shared("300w", "afw")
    for name in (ENCODER_FILE, FULL_FILE):
        shutil.copy(random_models / name, tmp_path / name)
    code = quantize_main(["--model", str(tmp_path), "--data", f"300w:{afw}", "--calibration-faces", "4", "--runs", "2"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    record = json.loads((tmp_path / model_io.PRECISION_FILE).read_text())
    assert printed == record
    assert record["calibration"]["faces"] == 4 and record["validation_faces"] > 0
    assert record["format_version"] == model_io.PRECISION_FORMAT
    assert record["rule"] == {"max_mae_loss_deg": quantize.MAX_MAE_LOSS}
    for mode, name in (("pose", ENCODER_FILE), ("full", FULL_FILE)):
        entry = record["modes"][mode]
        assert (tmp_path / int8_file(name)).is_file()
        assert entry["fp32_sha256"] == file_sha256(tmp_path / name)
        assert entry["fp32_ms"] > 0 and entry["int8_ms"] > 0 and "int8_chosen" not in entry
        assert entry["int8_accurate"] == (entry["mae_loss"] <= quantize.MAX_MAE_LOSS)
        with PoseEstimator(tmp_path, CPU) as estimator:  # INT8 3x faster here (injected)
            assert estimator.precision(mode) == ("int8" if entry["int8_accurate"] else "fp32")


def test_quantize_command_without_models_is_one_line_and_exit_4(tmp_path: Path, capsys: pytest.CaptureFixture):
    code = quantize_main(["--model", str(tmp_path / "none"), "--data", f"300w:{tmp_path}"])
    assert code == ExitCode.MODEL
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and ENCODER_FILE in err
