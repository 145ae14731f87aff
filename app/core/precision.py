"""INT8 or fp32 on the CPU in use: ``precision.json``'s accuracy verdict and a speed check measured here.

The two halves of the choice come from two places. Accuracy does not depend on the machine:
``trainer.quantize`` measures how much pose MAE the INT8 variant loses against fp32 on held-out
training faces and records in ``precision.json`` whether that loss is acceptable (``int8_accurate``),
tied to the fp32 file it judged by size and SHA-256. Speed does: INT8 convolutions are fast where
the CPU has 8-bit dot-product instructions (AVX-512 VNNI, AVX-VNNI, AMX) and barely faster where it
has only AVX2. So the first time a mode runs on a CPU, ``PoseEstimator(precision="auto")`` times
both variants on one fixed batch-1 input (``WARMUP_RUNS`` warm-up runs, then the median of up to
``TIMED_RUNS`` interleaved runs, cut short after ``BUDGET_S`` seconds) and keeps the figures in a
user cache file (``cache_path``: ``$MNN_PRECISION_CACHE``, else the XDG cache folder), keyed by the
CPU (model name, the instruction-set flags that matter for INT8, usable cores), the ONNX Runtime
version and both model files' SHA-256: another CPU, another runtime or another model is measured
afresh. INT8 runs where it is accurate enough and at least ``MIN_SPEEDUP`` times faster here.

A cache file that cannot be read or parsed, or an entry whose figures are not positive numbers, is
measured again and rewritten; a cache that cannot be written costs a warning and a measurement at
the next start, never an error. Nothing here touches the models folder.
"""
from __future__ import annotations

import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from app.core import model_io

log = logging.getLogger(__name__)

MIN_SPEEDUP = 1.5
"""How many times faster than fp32 the INT8 variant must run here (batch 1, inference alone) to be chosen.
Below it the gain is within what a busy CPU's timings swing by, and no more than the detector and the
rest of the frame would let through end to end; see README.md, "Precision on the CPU"."""
WARMUP_RUNS = 3
TIMED_RUNS = 20
MIN_TIMED_RUNS = 5
BUDGET_S = 2.0
"""Seconds the timed runs of one mode may take in all; past it the check stops after ``MIN_TIMED_RUNS``."""
CACHE_ENV = "MNN_PRECISION_CACHE"
"""Environment variable naming the speed cache file (tests point it at a temporary file)."""
PRECISION_ENV = "MNN_PRECISION"
"""Environment variable that replaces a caller's ``auto`` with ``fp32`` or ``int8``: one switch for
reproducible figures across machines (the test suite sets ``fp32``)."""
CACHE_DIR_NAME = "mnn-headpose"
CACHE_FILE = "precision.json"
CACHE_FORMAT = "1"
MAX_CACHE_ENTRIES = 64
"""Entries kept in the cache file, newest last: other CPUs and models stay until this many are newer."""
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
               "asimddp", "i8mm", "sve")
"""CPU flags (``/proc/cpuinfo``) that change how fast INT8 runs against fp32: x86 vector widths, 8-bit dot
products and tile units; on Arm, the dot-product and int8 matrix extensions."""
CPU_PROVIDER = "CPUExecutionProvider"
BATCH = 1

_warned: set[str] = set()
_cache_lock = threading.Lock()
_sha_memo: dict[tuple[str, int, int], str] = {}


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


class Runnable(Protocol):
    """What the speed check needs of a model: its metadata and one run (``estimator.OnnxModel``)."""

    info: model_io.ModelInfo

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class Accuracy:
    """``precision.json``'s verdict for one mode: whether INT8 is accurate enough, and why (for the log line)."""

    accurate: bool
    why: str


@dataclass(frozen=True)
class SpeedCheck:
    """Median milliseconds of one batch-1 run of each variant on this CPU; ``cached`` when read, not measured."""

    fp32_ms: float
    int8_ms: float
    runs: int
    cached: bool = False

    @property
    def speedup(self) -> float:
        """How many times faster INT8 ran than fp32."""
        return self.fp32_ms / self.int8_ms


def cached_sha256(path: Path) -> str:
    """``model_io.file_sha256`` of ``path``, computed once per size and modification time in this process."""
    stat = Path(path).stat()
    memo_key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if memo_key not in _sha_memo:
        _sha_memo[memo_key] = model_io.file_sha256(Path(path))
    return _sha_memo[memo_key]


def read_accuracy(models_dir: Path, mode: str) -> Accuracy:
    """Whether ``precision.json`` in ``models_dir`` lets ``mode`` run INT8: the record judged INT8 accurate
    enough and the fp32 file is the one it judged (size and SHA-256). A missing record means no; a malformed
    one or another format logs one warning and means no."""
    filename = model_io.MODES[mode][0]
    record_path = Path(models_dir) / model_io.PRECISION_FILE
    if not record_path.is_file():
        return Accuracy(False, f"no {model_io.PRECISION_FILE}")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            raise TypeError("not a JSON object")
        version = record.get("format_version")
        if version != model_io.PRECISION_FORMAT:
            raise ValueError(f"format {version}, this runtime reads {model_io.PRECISION_FORMAT}; "
                             "rerun python -m trainer quantize")
        entry = record["modes"][mode]
        accurate, size, sha, loss = entry["int8_accurate"], entry["fp32_size"], entry["fp32_sha256"], entry["mae_loss"]
        if (not isinstance(accurate, bool) or not isinstance(size, int) or not isinstance(sha, str)
                or not isinstance(loss, (int, float))):
            raise TypeError("int8_accurate, fp32_size, fp32_sha256 or mae_loss has the wrong type")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        _warn_once(f"{record_path}: malformed ({type(exc).__name__}: {exc}); using fp32")
        return Accuracy(False, f"malformed {model_io.PRECISION_FILE}")
    fp32_path = Path(models_dir) / filename
    if not fp32_path.is_file() or fp32_path.stat().st_size != size or cached_sha256(fp32_path) != sha:
        return Accuracy(False, f"{model_io.PRECISION_FILE} is stale ({filename} changed since it was quantised)")
    if not accurate:
        return Accuracy(False, f"int8 loses {loss:.2f}° of pose MAE ({model_io.PRECISION_FILE})")
    return Accuracy(True, f"{loss:+.2f}° MAE")


def _proc_cpuinfo() -> tuple[str | None, set[str]]:
    """The first ``model name`` (x86) or ``Hardware``/``CPU part`` line of ``/proc/cpuinfo`` and its flags."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, set()
    name, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and name is None:
            name = value.strip()
        elif key in ("hardware", "cpu part") and name is None:
            name = f"{key} {value.strip()}"
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return name, flags


def usable_cores() -> int:
    """CPUs this process may run on (its affinity, where the platform says), else ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_identity() -> dict[str, Any]:
    """The CPU as the speed cache knows it: model name, the ``SPEED_FLAGS`` it has, usable cores."""
    name, flags = _proc_cpuinfo()
    if not name:
        name = platform.processor() or platform.machine() or "unknown"
    return {"model": name, "flags": [f for f in SPEED_FLAGS if f in flags], "cores": usable_cores()}


def speed_key(fp32_path: Path, int8_path: Path) -> dict[str, Any]:
    """What a speed measurement holds for: this CPU, this ONNX Runtime, these two model files, batch 1."""
    import onnxruntime as ort

    return {"cpu": cpu_identity(), "onnxruntime": ort.__version__, "provider": CPU_PROVIDER, "batch": BATCH,
            "fp32_sha256": cached_sha256(fp32_path), "int8_sha256": cached_sha256(int8_path)}


def cache_path() -> Path:
    """``$MNN_PRECISION_CACHE``, else ``precision.json`` in ``$XDG_CACHE_HOME/mnn-headpose`` (``~/.cache``
    by default; ``%LOCALAPPDATA%`` on Windows, ``~/Library/Caches`` on macOS)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / CACHE_DIR_NAME / CACHE_FILE


def _read_entries(path: Path) -> list[dict[str, Any]]:
    """The cache's entries; a missing file is none, an unreadable or malformed one is none with a warning."""
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format_version") != CACHE_FORMAT:
            raise ValueError(f"not a format {CACHE_FORMAT} speed cache")
        entries = data["entries"]
        if not isinstance(entries, list):
            raise TypeError("entries is not a list")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        _warn_once(f"{path}: unreadable speed cache ({type(exc).__name__}: {exc}); measuring again")
        return []
    return [e for e in entries if isinstance(e, dict)]


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def cached_speed(key: dict[str, Any], path: Path | None = None) -> SpeedCheck | None:
    """The cached measurement for ``key``, or None where there is none or it is not usable (then it is remeasured)."""
    path = cache_path() if path is None else path
    with _cache_lock:
        entries = _read_entries(path)
    for entry in reversed(entries):
        if entry.get("key") == key:
            fp32_ms, int8_ms, runs = entry.get("fp32_ms"), entry.get("int8_ms"), entry.get("runs")
            if _positive(fp32_ms) and _positive(int8_ms) and isinstance(runs, int) and runs > 0:
                return SpeedCheck(float(fp32_ms), float(int8_ms), runs, cached=True)
            return None
    return None


def store_speed(key: dict[str, Any], check: SpeedCheck, path: Path | None = None) -> None:
    """Record ``check`` for ``key`` (replacing an older entry for it), written atomically; a failure warns."""
    path = cache_path() if path is None else path
    entry = {"key": key, "fp32_ms": round(check.fp32_ms, 3), "int8_ms": round(check.int8_ms, 3),
             "speedup": round(check.speedup, 3), "runs": check.runs,
             "measured": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with _cache_lock:
        entries = [e for e in _read_entries(path) if e.get("key") != key] + [entry]
        text = json.dumps({"format_version": CACHE_FORMAT, "entries": entries[-MAX_CACHE_ENTRIES:]}, indent=2)
        temporary: Path | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp", delete=False) as handle:
                temporary = Path(handle.name)
                handle.write(text + "\n")
            os.replace(temporary, path)
        except OSError as exc:
            if temporary is not None:
                temporary.unlink(missing_ok=True)
            _warn_once(f"{path}: cannot write the speed cache ({exc}); the check runs again next time")


def time_variants(fp32: Runnable, int8: Runnable, warmup: int = WARMUP_RUNS, runs: int = TIMED_RUNS,
                  budget_s: float = BUDGET_S, clock: Callable[[], float] = time.perf_counter) -> SpeedCheck:
    """Median ms of one batch-1 run of each variant on one fixed input (seeded random crop, normalised as the
    model's metadata says), the two interleaved so that a busy CPU slows both alike. After ``warmup`` runs
    each, up to ``runs`` timed runs each; once ``budget_s`` has passed since the start, it stops after
    ``MIN_TIMED_RUNS`` (fewer when ``runs`` is fewer)."""
    size = fp32.info.input_size
    crops = np.random.default_rng(0).integers(0, 256, (BATCH, size, size, 3), dtype=np.uint8)
    batch = model_io.to_input(crops, fp32.info)
    times: tuple[list[float], list[float]] = ([], [])
    start = clock()
    for index in range(warmup + runs):
        if index >= warmup + min(MIN_TIMED_RUNS, runs) and clock() - start > budget_s:
            break
        for model, series in zip((fp32, int8), times):
            began = clock()
            model.run(batch)
            if index >= warmup:
                series.append((clock() - began) * 1000.0)
    return SpeedCheck(statistics.median(times[0]), statistics.median(times[1]), len(times[0]))


def decide(accuracy: Accuracy, speed: SpeedCheck | None, min_speedup: float = MIN_SPEEDUP) -> tuple[str, str]:
    """``("int8" or "fp32", why)``: INT8 where ``accuracy`` allows it and ``speed`` shows at least ``min_speedup``."""
    if not accuracy.accurate:
        return "fp32", accuracy.why
    if speed is None:
        return "fp32", "no speed check"
    source = "cached" if speed.cached else "measured now"
    if speed.speedup >= min_speedup:
        return "int8", f"{speed.speedup:.1f}x faster than fp32 on this CPU, {source}; {accuracy.why}"
    return "fp32", f"int8 only {speed.speedup:.1f}x faster on this CPU, below {min_speedup:g}x, {source}"


def check_speed(fp32_path: Path, int8_path: Path, open_model: Callable[[Path], Runnable],
                fp32: Runnable | None = None) -> tuple[SpeedCheck, dict[Path, Runnable]]:
    """The speed check for a pair of files: the cached one for this CPU, runtime and files, else measured now
    (opening both with ``open_model``; ``fp32`` reuses an fp32 session already open) and cached. Also returns
    the sessions it opened by path, for the caller to keep the one it chooses."""
    key = speed_key(fp32_path, int8_path)
    cached = cached_speed(key)
    if cached is not None:
        return cached, ({} if fp32 is None else {fp32_path: fp32})
    opened = {fp32_path: fp32 or open_model(fp32_path), int8_path: open_model(int8_path)}
    began = time.perf_counter()
    check = time_variants(opened[fp32_path], opened[int8_path])
    log.debug("speed check of %s against %s: %.1f ms / %.1f ms, %d runs, %.2f s", int8_path.name, fp32_path.name,
              check.fp32_ms, check.int8_ms, check.runs, time.perf_counter() - began)
    store_speed(key, check)
    return check, opened
