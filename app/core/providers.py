"""Which ONNX Runtime execution providers can run here, found without ONNX Runtime's console errors.

``onnxruntime-gpu`` lists TensorRT and CUDA as available on every machine, and asking for them where the
NVIDIA driver, a GPU or the CUDA 13 / cuDNN 9 / TensorRT 10 libraries are missing makes ONNX Runtime
print coloured load errors (``Failed to load library libonnxruntime_providers_cuda.so``) and an
``EP Error`` banner before it falls back to the CPU. So each accelerator is probed first, quietly:
the driver (``libcuda``) and its device count, then the provider's own library loaded the way ONNX
Runtime loads it, which fails naming the first CUDA, cuDNN or TensorRT library it lacks. Where CUDA
came as pip packages (``onnxruntime-gpu[cuda,cudnn]``) they are preloaded (``onnxruntime.preload_dlls``,
its console output swallowed) before the provider is judged. Only providers that pass are asked for,
and ``describe`` words the outcome as one line, e.g. ``ONNX Runtime uses CPUExecutionProvider (no
CUDA device: no NVIDIA driver)``.

The probe initialises the CUDA driver (``cuInit``) in this process where a driver exists: a process that
forks after it cannot use CUDA in the child, so workers are started with ``spawn`` (``app.core.batch``).

``choice`` names what a command line asks for: ``auto`` (TensorRT, then CUDA, then the CPU, the first
that can run), ``cpu``, ``cuda`` or ``tensorrt``; an accelerator asked for by name that cannot run is a
``ProviderError`` (``ExitCode.PROVIDER``), never a silent fall back to the CPU.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import onnxruntime as ort

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
ORDER = (TENSORRT, CUDA, CPU)
"""Execution providers in order of preference."""
CHOICES = ("auto", "cpu", "cuda", "tensorrt")
"""What ``--provider`` accepts."""
CHOICE_PROVIDERS: dict[str, tuple[str, ...]] = {"auto": ORDER, "cpu": (CPU,), "cuda": (CUDA, CPU),
                                                "tensorrt": ORDER}
"""The providers each choice asks ONNX Runtime for, best first, before probing."""
SHORT_NAMES = {TENSORRT: "TensorRT", CUDA: "CUDA", CPU: "CPU"}
_LIBRARY = {TENSORRT: "tensorrt", CUDA: "cuda"}
_MISSING = re.compile(r"([\w.+-]+\.(?:so[\w.]*|dll)): cannot open shared object file")


class ProviderError(RuntimeError):
    """An execution provider asked for by name that cannot run here; the message says why in one line."""


def _driver() -> ctypes.CDLL | None:
    """The NVIDIA driver's CUDA library, or None where it is not installed."""
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


@functools.lru_cache(maxsize=1)
def cuda_device_problem() -> str | None:
    """Why there is no usable CUDA device (no driver, ``cuInit`` failing, no device), or None where there is one."""
    if sys.platform not in ("linux", "win32"):
        return "no CUDA device"
    driver = _driver()
    if driver is None:
        return "no CUDA device: no NVIDIA driver"
    status = driver.cuInit(0)
    if status == 100:  # CUDA_ERROR_NO_DEVICE, also when CUDA_VISIBLE_DEVICES hides them all
        return "no CUDA device"
    if status != 0:
        return f"no CUDA device: cuInit failed with CUDA error {status}"
    count = ctypes.c_int(0)
    if driver.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        return "no CUDA device"
    return None


def _capi_library(kind: str) -> Path:
    """The path of ONNX Runtime's provider library ``kind`` (``shared``, ``cuda``, ``tensorrt``)."""
    capi = Path(ort.__file__).resolve().parent / "capi"
    return capi / (f"onnxruntime_providers_{kind}.dll" if sys.platform == "win32"
                   else f"libonnxruntime_providers_{kind}.so")


def _load_problem(provider: str) -> str | None:
    """Why the provider's library does not load (the first library it lacks), or None where it loads."""
    mode = getattr(os, "RTLD_NOW", 0) | getattr(os, "RTLD_GLOBAL", 0)
    try:
        ctypes.CDLL(str(_capi_library("shared")), mode=mode)
        ctypes.CDLL(str(_capi_library(_LIBRARY[provider])), mode=mode)
    except OSError as exc:
        missing = _MISSING.search(str(exc))
        return f"{missing.group(1)} not found" if missing else str(exc).strip().splitlines()[0]
    return None


@functools.lru_cache(maxsize=1)
def _preload_pip_cuda() -> None:
    """Load CUDA and cuDNN from NVIDIA's pip packages where they are installed, without their console output."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            preload()
        except Exception:  # a broken pip CUDA install: the provider probe below names what is missing
            pass


@functools.lru_cache(maxsize=None)
def problem(provider: str) -> str | None:
    """Why ``provider`` cannot run here, in a few words, or None where it can (the CPU always can)."""
    if provider == CPU:
        return None
    name = SHORT_NAMES.get(provider, provider)
    if provider not in ort.get_available_providers():
        return f"this onnxruntime package has no {name} (install onnxruntime-gpu)"
    if provider not in _LIBRARY:
        return f"{provider} is not one this app runs"
    device = cuda_device_problem()
    if device is not None:
        return device
    missing = _load_problem(provider)
    if missing is not None:
        _preload_pip_cuda()
        missing = _load_problem(provider)
    if missing is not None:
        needs = "TensorRT 10, CUDA 13 and cuDNN 9" if provider == TENSORRT else "CUDA 13 and cuDNN 9"
        return f"{name} libraries missing: {missing} (onnxruntime-gpu {ort.__version__} needs {needs})"
    return None


@dataclass(frozen=True)
class Choice:
    """The providers to ask ONNX Runtime for, best first and ending with the CPU, and why the best is what it is."""

    providers: tuple[str, ...]
    note: str
    """Why accelerators ahead of ``providers[0]`` were skipped (empty where none was)."""


def choose(choice: str = "auto") -> Choice:
    """The providers for ``choice`` (``CHOICES``): ``auto`` takes the best that can run; ``cuda`` or ``tensorrt``
    that cannot run is a ``ProviderError`` naming why; ``cpu`` is the CPU alone."""
    if choice not in CHOICES:
        raise ValueError(f"unknown provider {choice!r}; choose one of {', '.join(CHOICES)}")
    wanted = CHOICE_PROVIDERS[choice]
    if choice in ("cuda", "tensorrt"):
        why = problem(wanted[0])
        if why is not None:
            raise ProviderError(f"--provider {choice}: {SHORT_NAMES[wanted[0]]} cannot run here ({why})")
    return usable(wanted)


def usable(wanted: Sequence[str]) -> Choice:
    """The providers of ``wanted`` (best first) that can run here, always ending with the CPU, and a note on why:
    ``TensorRT skipped: ...`` where CUDA still runs; where only the CPU does, the last accelerator's reason."""
    chosen, skipped = [], []
    for provider in wanted:
        why = problem(provider)
        (chosen if why is None else skipped).append((provider, why))
    names = [p for p, _ in chosen if p != CPU] + [CPU]
    note = ""
    if skipped and names[0] != CPU:
        provider, why = skipped[0]
        note = f"{SHORT_NAMES.get(provider, provider)} skipped: {why}"
    elif skipped:
        note = str(skipped[-1][1])  # the least demanding accelerator's reason (CUDA's, where both were wanted)
    return Choice(tuple(names), note)


def describe(provider: str, note: str = "") -> str:
    """The one line that says which provider a session runs on, and why not a better one."""
    return f"ONNX Runtime uses {provider}" + (f" ({note})" if note else "")


TENSORRT_MAX_BATCH = 64
"""The largest batch one TensorRT engine takes; ``estimator.OnnxModel`` runs larger ones in chunks."""


def provider_options(provider: str, cache_dir: Path, input_size: int, input_name: str = "image") -> dict[str, str]:
    """ONNX Runtime options for ``provider``: TensorRT keeps its engines and timing cache in ``cache_dir`` (an
    engine takes seconds to minutes to build) and builds one engine for batches of 1 to ``TENSORRT_MAX_BATCH``
    (optimised for 8) instead of one per new batch size. fp32, as on the CPU: FP16 has not been checked
    for accuracy. Other providers take ONNX Runtime's defaults."""
    if provider != TENSORRT:
        return {}
    shape = f"3x{input_size}x{input_size}"
    return {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache_dir),
            "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(cache_dir),
            "trt_profile_min_shapes": f"{input_name}:1x{shape}",
            "trt_profile_opt_shapes": f"{input_name}:8x{shape}",
            "trt_profile_max_shapes": f"{input_name}:{TENSORRT_MAX_BATCH}x{shape}"}
