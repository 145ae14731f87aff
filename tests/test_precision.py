"""INT8 or fp32 for the CPU in use: the decision, the speed cache and its keys, with injected timings.

Only the last test times the real models, and it asserts no speed: that a cache entry with positive
timings is written (speed is measured by ``app.bench``, never by tests).
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from app.core import precision
from app.core.estimator import DEFAULT_MODELS_DIR, PoseEstimator
from app.core.model_io import ENCODER_FILE, FULL_FILE, PRECISION_FILE, PRECISION_FORMAT, ModelInfo, int8_file
from app.core.precision import Accuracy, SpeedCheck
from tests.model_fixtures import random_models  # noqa: F401  (fixture)

CPU = ["CPUExecutionProvider"]
FAST = SpeedCheck(fp32_ms=30.0, int8_ms=10.0, runs=20)
SLOW = SpeedCheck(fp32_ms=30.0, int8_ms=25.0, runs=20)


@pytest.fixture(autouse=True)
def cache_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's speed cache is its own temporary file, never the user's; ``auto`` is not overridden."""
    path = tmp_path / "cache" / "precision.json"
    monkeypatch.setenv(precision.CACHE_ENV, str(path))
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)
    return path


class Timings:
    """Stands in for ``precision.time_variants``: returns ``check`` and counts the measurements."""

    def __init__(self, check: SpeedCheck) -> None:
        self.check, self.calls = check, 0

    def __call__(self, fp32, int8, *args, **kwargs) -> SpeedCheck:
        self.calls += 1
        assert fp32.precision == "fp32" and int8.precision == "int8"
        return self.check


@pytest.fixture
def timings(monkeypatch: pytest.MonkeyPatch) -> Timings:
    fake = Timings(FAST)
    monkeypatch.setattr(precision, "time_variants", fake)
    return fake


def set_metadata(path: Path, **extra: str) -> None:
    model = onnx.load(str(path))
    for key, value in extra.items():
        entry = next((p for p in model.metadata_props if p.key == key), None) or model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def write_record(models: Path, accurate: bool = True, mae_loss: float = 0.02) -> None:
    """A format-2 precision.json judging INT8 accurate (or not) for both modes, pinned to the fp32 files."""
    modes = {mode: {"int8_accurate": accurate, "mae_loss": mae_loss, "fp32_size": (models / name).stat().st_size,
                    "fp32_sha256": precision.cached_sha256(models / name)}
             for mode, name in (("pose", ENCODER_FILE), ("full", FULL_FILE))}
    (models / PRECISION_FILE).write_text(json.dumps({"format_version": PRECISION_FORMAT, "modes": modes}))


@pytest.fixture
def models(random_models: Path, tmp_path: Path) -> Path:
    """The random fp32 models with stand-in INT8 variants (copies marked ``precision=int8``) and a record
    judging INT8 accurate."""
    target = tmp_path / "models"
    shutil.copytree(random_models, target)
    for name in (ENCODER_FILE, FULL_FILE):
        shutil.copy(target / name, target / int8_file(name))
        set_metadata(target / int8_file(name), precision="int8")
    write_record(target)
    return target


def entries(cache_file: Path) -> list[dict]:
    data = json.loads(cache_file.read_text())
    assert data["format_version"] == precision.CACHE_FORMAT
    return data["entries"]


# The decision, from injected figures.

@pytest.mark.parametrize("check, cached, expected", [
    (SpeedCheck(30.0, 10.0, 20), False, "int8"),
    (SpeedCheck(30.0, 20.0, 20), False, "int8"),  # exactly the threshold (1.5x)
    (SpeedCheck(30.0, 20.1, 20), False, "fp32"),
    (SpeedCheck(30.0, 29.0, 20), True, "fp32"),
    (SpeedCheck(30.0, 40.0, 5), True, "fp32"),   # INT8 slower
])
def test_int8_is_chosen_where_accurate_and_at_least_min_speedup_faster(check: SpeedCheck, cached: bool,
                                                                       expected: str):
    check = SpeedCheck(check.fp32_ms, check.int8_ms, check.runs, cached)
    chosen, why = precision.decide(Accuracy(True, "+0.02° MAE"), check, min_speedup=1.5)
    assert chosen == expected
    assert f"{check.speedup:.1f}x" in why and ("cached" if cached else "measured now") in why


def test_an_inaccurate_int8_variant_is_never_chosen_however_fast():
    chosen, why = precision.decide(Accuracy(False, "int8 loses 0.50° of pose MAE"), SpeedCheck(100.0, 1.0, 20))
    assert (chosen, why) == ("fp32", "int8 loses 0.50° of pose MAE")
    assert precision.decide(Accuracy(True, "ok"), None)[0] == "fp32"


def test_the_threshold_is_below_the_old_two_times():
    assert 1.0 < precision.MIN_SPEEDUP < 2.0


class FakeModel:
    """A model whose run takes ``ms`` on a fake clock."""

    def __init__(self, clock: list[float], ms: float) -> None:
        self.clock, self.ms, self.runs = clock, ms, 0
        self.info = ModelInfo(Path("fake.onnx"), "encoder", 8, 5, np.zeros(3, np.float32), np.ones(3, np.float32),
                              np.zeros((5, 3)))

    def run(self, batch: np.ndarray) -> dict:
        assert batch.shape == (1, 3, 8, 8) and batch.dtype == np.float32
        self.runs += 1
        self.clock[0] += self.ms / 1000.0
        return {}


def test_time_variants_takes_medians_after_warmup_and_stops_at_the_budget():
    clock = [0.0]
    fp32, int8 = FakeModel(clock, 30.0), FakeModel(clock, 10.0)
    check = precision.time_variants(fp32, int8, warmup=3, runs=20, budget_s=10.0, clock=lambda: clock[0])
    assert (check.fp32_ms, check.int8_ms, check.runs) == (pytest.approx(30.0), pytest.approx(10.0), 20)
    assert fp32.runs == int8.runs == 23 and check.speedup == pytest.approx(3.0)

    clock[0] = 0.0
    slow, slower = FakeModel(clock, 400.0), FakeModel(clock, 400.0)
    check = precision.time_variants(slow, slower, warmup=3, runs=20, budget_s=2.0, clock=lambda: clock[0])
    assert check.runs == precision.MIN_TIMED_RUNS and slow.runs == 3 + precision.MIN_TIMED_RUNS


# The estimator with the speed cache.

def test_auto_measures_once_then_reads_the_cache(models: Path, timings: Timings, cache_file: Path):
    with PoseEstimator(models, CPU) as estimator:
        assert estimator.precision("pose") == "int8"
        assert estimator.model("pose").path.name == int8_file(ENCODER_FILE)
        assert "3.0x faster than fp32 on this CPU, measured now" in estimator.precision_reason("pose")
    assert timings.calls == 1
    (entry,) = entries(cache_file)
    assert entry["fp32_ms"] == 30.0 and entry["int8_ms"] == 10.0 and entry["runs"] == 20
    assert entry["key"]["cpu"] == precision.cpu_identity()
    assert entry["key"]["fp32_sha256"] == precision.cached_sha256(models / ENCODER_FILE)
    assert entry["key"]["int8_sha256"] == precision.cached_sha256(models / int8_file(ENCODER_FILE))
    with PoseEstimator(models, CPU) as estimator:
        assert estimator.precision("pose") == "int8"
        assert "cached" in estimator.precision_reason("pose")
        assert estimator.speed_check("pose").cached
    assert timings.calls == 1


def test_each_mode_is_measured_and_cached_on_its_own(models: Path, timings: Timings, cache_file: Path):
    with PoseEstimator(models, CPU) as estimator:
        estimator.model("pose")
        estimator.model("full")
    assert timings.calls == 2 and len(entries(cache_file)) == 2


def test_too_small_a_speedup_here_runs_fp32(models: Path, timings: Timings):
    timings.check = SLOW
    with PoseEstimator(models, CPU) as estimator:
        assert estimator.precision("full") == "fp32"
        assert "only 1.2x faster" in estimator.precision_reason("full")


def test_another_cpu_model_or_flags_are_measured_afresh(models: Path, timings: Timings, cache_file: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    PoseEstimator(models, CPU).model("pose")
    monkeypatch.setattr(precision, "_proc_cpuinfo", lambda: ("Some Other CPU @ 2.0GHz", {"avx2"}))
    PoseEstimator(models, CPU).model("pose")
    monkeypatch.setattr(precision, "_proc_cpuinfo", lambda: ("Some Other CPU @ 2.0GHz", {"avx2", "avx512_vnni"}))
    PoseEstimator(models, CPU).model("pose")
    assert timings.calls == 3
    assert [e["key"]["cpu"]["flags"] for e in entries(cache_file)][1:] == [["avx2"], ["avx2", "avx512_vnni"]]
    PoseEstimator(models, CPU).model("pose")
    assert timings.calls == 3


def test_another_model_file_or_onnxruntime_version_is_measured_afresh(models: Path, timings: Timings,
                                                                     cache_file: Path,
                                                                     monkeypatch: pytest.MonkeyPatch):
    PoseEstimator(models, CPU).model("pose")
    set_metadata(models / int8_file(ENCODER_FILE), note="requantised")
    PoseEstimator(models, CPU).model("pose")
    assert timings.calls == 2
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "__version__", "0.0.1")
    PoseEstimator(models, CPU).model("pose")
    assert timings.calls == 3 and len(entries(cache_file)) == 3


@pytest.mark.parametrize("text", ["{not json", "[]", '{"format_version": "1", "entries": 3}',
                                  '{"format_version": "99", "entries": []}', ""])
def test_a_corrupt_cache_file_is_remeasured_and_rewritten(models: Path, timings: Timings, cache_file: Path,
                                                          text: str, caplog: pytest.LogCaptureFixture):
    cache_file.parent.mkdir(parents=True)
    cache_file.write_text(text)
    with caplog.at_level(logging.WARNING):
        assert PoseEstimator(models, CPU).precision("pose") == "int8"
    assert timings.calls == 1 and len(entries(cache_file)) == 1
    assert any("speed cache" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


@pytest.mark.parametrize("bad", [{"fp32_ms": -1.0}, {"int8_ms": "fast"}, {"int8_ms": 0}, {"runs": None}])
def test_a_corrupt_entry_is_remeasured_and_replaced(models: Path, timings: Timings, cache_file: Path, bad: dict):
    PoseEstimator(models, CPU).model("pose")
    data = json.loads(cache_file.read_text())
    data["entries"][0].update(bad)
    cache_file.write_text(json.dumps(data))
    assert PoseEstimator(models, CPU).precision("pose") == "int8"
    assert timings.calls == 2
    (entry,) = entries(cache_file)
    assert entry["fp32_ms"] == 30.0 and entry["int8_ms"] == 10.0


def test_a_cache_that_cannot_be_written_warns_and_still_chooses(models: Path, timings: Timings, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv(precision.CACHE_ENV, str(blocker / "precision.json"))
    with caplog.at_level(logging.WARNING):
        assert PoseEstimator(models, CPU).precision("pose") == "int8"
    assert any("cannot write the speed cache" in r.getMessage() for r in caplog.records)


def test_no_measurement_where_int8_is_not_accurate_missing_or_forced(models: Path, timings: Timings):
    write_record(models, accurate=False, mae_loss=0.5)
    with PoseEstimator(models, CPU) as estimator:
        assert estimator.precision("pose") == "fp32"
        assert "loses 0.50°" in estimator.precision_reason("pose") and estimator.speed_check("pose") is None
    write_record(models)
    (models / int8_file(FULL_FILE)).unlink()
    with PoseEstimator(models, CPU) as estimator:
        assert estimator.precision("full") == "fp32"
        assert "missing" in estimator.precision_reason("full")
    for forced in ("fp32", "int8"):
        with PoseEstimator(models, CPU, precision=forced) as estimator:
            assert estimator.precision("pose") == forced and estimator.speed_check("pose") is None
    assert timings.calls == 0


def test_a_format_1_record_means_fp32_with_one_warning(models: Path, timings: Timings,
                                                       caplog: pytest.LogCaptureFixture):
    record = json.loads((models / PRECISION_FILE).read_text())
    (models / PRECISION_FILE).write_text(json.dumps({**record, "format_version": "1"}))
    with caplog.at_level(logging.WARNING):
        assert PoseEstimator(models, CPU).precision("pose") == "fp32"
    assert [r for r in caplog.records if "trainer quantize" in r.getMessage()]
    assert timings.calls == 0


# Where the cache lives and what identifies the CPU.

def test_the_cache_lives_in_the_user_cache_folder_unless_overridden(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path):
    assert precision.cache_path() == tmp_path / "cache" / "precision.json"
    monkeypatch.delenv(precision.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if precision.sys.platform.startswith("linux"):
        assert precision.cache_path() == tmp_path / "xdg" / "mnn-headpose" / "precision.json"
    assert DEFAULT_MODELS_DIR not in precision.cache_path().parents


def test_cpu_identity_names_the_model_and_only_the_flags_that_matter(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(precision, "_proc_cpuinfo", lambda: ("Intel Xeon", {"fpu", "sse2", "avx2", "amx_int8"}))
    identity = precision.cpu_identity()
    assert identity["model"] == "Intel Xeon" and identity["flags"] == ["avx2", "amx_int8"] and identity["cores"] >= 1
    monkeypatch.setattr(precision, "_proc_cpuinfo", lambda: (None, set()))
    monkeypatch.setattr(precision.platform, "processor", lambda: "arm")
    assert precision.cpu_identity()["model"] == "arm" and precision.cpu_identity()["flags"] == []


# One real measurement.

def test_a_real_speed_check_on_the_shipped_models_writes_positive_timings(cache_file: Path):
    for name in (ENCODER_FILE, int8_file(ENCODER_FILE), PRECISION_FILE):
        if not (DEFAULT_MODELS_DIR / name).is_file():
            pytest.skip(f"models/{name} is absent")
    if not precision.read_accuracy(DEFAULT_MODELS_DIR, "pose").accurate:
        pytest.skip("models/precision.json does not judge the shipped INT8 encoder accurate")
    with PoseEstimator(DEFAULT_MODELS_DIR, CPU) as estimator:
        assert estimator.precision("pose") in ("fp32", "int8")
        check = estimator.speed_check("pose")
    assert check is not None and not check.cached
    (entry,) = entries(cache_file)
    assert entry["fp32_ms"] > 0 and entry["int8_ms"] > 0 and entry["runs"] >= precision.MIN_TIMED_RUNS


def test_the_environment_replaces_auto_but_not_an_explicit_precision(models: Path, timings: Timings,
                                                                      monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(precision.PRECISION_ENV, "fp32")
    with PoseEstimator(models, CPU) as estimator:
        assert estimator.precision("pose") == "fp32"
    with PoseEstimator(models, CPU, precision="int8") as estimator:
        assert estimator.precision("pose") == "int8"
    assert timings.calls == 0
