"""The occlusion-aware regressor's file, ``or.npz``: its keys, their checks, reading and writing.

``trainer.or_fit`` builds a file's arrays with ``pack``; ``app.core.refiner`` checks them with ``validate``
and turns them into the cascade's parts (``app.core.or_cascade``) with ``unpack``. Nothing else names a key.

Format (``np.savez_compressed``, plain arrays, read with ``allow_pickle=False``), ``S`` stages, ``T`` trees
per stage, depth ``D``, ``L`` landmarks, ``P`` pool points, ``K``/``R`` shape components:
``format_version`` (int, ``FORMAT_VERSION``), ``stage_count`` (int), ``input_size`` (int, the crop the
network sees), ``visibility_threshold``, ``facing_min``, ``shape_clamp`` (``c``), ``shape_noise`` (``ν``,
mean-shape units), ``peak_outlier`` and ``lock_threshold`` (floats), ``mean_face`` ``(L, 3)``,
``mean_shape`` ``(L, 2)`` (centred, unit RMS radius), ``normals`` ``(L, 3)``, ``offsets`` ``(S, L, P, 2)``,
``anchors`` ``(S, T)``, ``feature_a``/``feature_b`` ``(S, T, 2^D − 1)`` pool indices and ``thresholds``
``(S, T, 2^D − 1)`` of the split nodes in heap order (go right when ``value[a] − value[b] > threshold``),
``leaves`` ``(S, T, 2^D, 2)`` (shrinkage included), ``shape_basis`` ``(K, 2L)`` (orthonormal rows,
coordinates interleaved x, y) and ``shape_sigma`` ``(K,)`` (stage 0's model), ``refine_basis`` ``(R, 2L)``
and ``refine_sigma`` ``(R,)`` (the tree stages' model), and ``provenance`` (a JSON string: data, seed,
settings).
"""
from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from app.core.model_io import ModelError
from app.core.or_cascade import CascadeSettings, ShapeModel, StageTrees

FORMAT_VERSION = 2
OR_FILE = "or.npz"
"""The regressor's file name in a models folder; full mode uses it whenever it is there."""

INTEGER_SCALARS = ("format_version", "stage_count", "input_size")
FLOAT_SCALARS = ("visibility_threshold", "facing_min", "shape_clamp", "shape_noise", "peak_outlier",
                 "lock_threshold")
TREE_ARRAYS = ("offsets", "anchors", "feature_a", "feature_b", "thresholds", "leaves")
"""The per-stage arrays, first axis the stage; ``pack`` takes them as they are."""
ARRAYS = ("mean_face", "mean_shape", "normals", *TREE_ARRAYS, "shape_basis", "shape_sigma", "refine_basis",
          "refine_sigma")
REQUIRED = INTEGER_SCALARS + FLOAT_SCALARS + ARRAYS + ("provenance",)
_INDEX_ARRAYS = ("anchors", "feature_a", "feature_b")


class RefinerError(ModelError):
    """An ``or.npz`` that is unreadable, truncated, of another format version, or not for this model."""


def pack(settings: CascadeSettings, shape_model: ShapeModel, refine_model: ShapeModel,
         trees: Mapping[str, np.ndarray], provenance: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The file's arrays for a cascade: its settings, stage 0's and the tree stages' shape models (which share
    ``shape_clamp`` and ``shape_noise``), the ``TREE_ARRAYS`` of every stage, and what to record about it."""
    if (shape_model.clamp, shape_model.noise) != (refine_model.clamp, refine_model.noise):
        raise ValueError("both shape models of an OR file share one clamp and one noise")
    if set(trees) != set(TREE_ARRAYS):
        raise ValueError(f"the tree arrays are {', '.join(TREE_ARRAYS)}; got {', '.join(sorted(trees))}")
    return {
        "format_version": np.int64(FORMAT_VERSION),
        "stage_count": np.int64(len(trees["anchors"])),
        "input_size": np.int64(settings.input_size),
        "visibility_threshold": np.float64(settings.visibility_threshold),
        "facing_min": np.float64(settings.facing_min),
        "shape_clamp": np.float64(shape_model.clamp),
        "shape_noise": np.float64(shape_model.noise),
        "peak_outlier": np.float64(settings.peak_outlier),
        "lock_threshold": np.float64(settings.lock_threshold),
        "mean_face": settings.mean_face,
        "mean_shape": settings.mean_shape,
        "normals": settings.normals,
        **{name: trees[name] for name in TREE_ARRAYS},
        "shape_basis": shape_model.basis,
        "shape_sigma": shape_model.sigma,
        "refine_basis": refine_model.basis,
        "refine_sigma": refine_model.sigma,
        "provenance": np.str_(json.dumps(dict(provenance))),
    }


def unpack(arrays: Mapping[str, np.ndarray]) -> tuple[CascadeSettings, ShapeModel, ShapeModel, list[StageTrees]]:
    """The cascade's parts (float64 throughout) from ``validate``'s arrays: settings, stage 0's shape model, the
    tree stages' shape model and each tree stage."""
    settings = CascadeSettings(
        input_size=int(arrays["input_size"]), mean_face=arrays["mean_face"].astype(np.float64),
        mean_shape=arrays["mean_shape"].astype(np.float64), normals=arrays["normals"].astype(np.float64),
        visibility_threshold=float(arrays["visibility_threshold"]), facing_min=float(arrays["facing_min"]),
        peak_outlier=float(arrays["peak_outlier"]), lock_threshold=float(arrays["lock_threshold"]))
    clamp, noise = float(arrays["shape_clamp"]), float(arrays["shape_noise"])
    shape_model = ShapeModel(arrays["shape_basis"].astype(np.float64), arrays["shape_sigma"].astype(np.float64),
                             clamp, noise)
    refine_model = ShapeModel(arrays["refine_basis"].astype(np.float64), arrays["refine_sigma"].astype(np.float64),
                              clamp, noise)
    stages = [StageTrees.from_arrays(*(arrays[name][index] for name in TREE_ARRAYS))
              for index in range(int(arrays["stage_count"]))]
    return settings, shape_model, refine_model, stages


def provenance(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """What the trainer recorded about a file (data, seed, settings)."""
    return json.loads(str(arrays["provenance"]))


def read(path: Path | str) -> dict[str, np.ndarray]:
    """The arrays of ``or.npz`` as stored (``validate`` them); ``RefinerError`` naming the file if it is missing,
    truncated, not a zip of plain arrays, or holds pickled objects."""
    path = Path(path)
    if not path.is_file():
        raise RefinerError(f"{path}: OR file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as exc:
        raise RefinerError(f"{path}: truncated or not an OR file ({type(exc).__name__}: {exc})") from None


def write(arrays: Mapping[str, np.ndarray], path: Path | str) -> Path:
    """Write ``arrays`` as ``or.npz`` (atomically: a temporary file renamed into place); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    temporary = path.with_name(path.name + ".part")
    temporary.write_bytes(buffer.getvalue())
    os.replace(temporary, path)
    return path


def validate(arrays: Mapping[str, Any], source: str) -> dict[str, np.ndarray]:
    """``arrays`` as plain numpy arrays, checked against the format (keys, dtypes, shapes, finite values, index
    ranges); ``RefinerError`` naming ``source`` if anything is wrong."""
    def fail(message: str) -> RefinerError:
        return RefinerError(f"{source}: {message}")

    missing = [name for name in REQUIRED if name not in arrays]
    if "format_version" in arrays:
        version = np.asarray(arrays["format_version"])
        if version.shape != () or version.dtype.kind not in "iu" or int(version) != FORMAT_VERSION:
            raise fail(f"OR format version {version.tolist()}, this runtime reads {FORMAT_VERSION}")
    if missing:
        raise fail(f"not a complete OR file (lacks {', '.join(missing)})")
    out = {name: np.asarray(arrays[name]) for name in REQUIRED}
    for name in INTEGER_SCALARS:
        if out[name].shape != () or out[name].dtype.kind not in "iu":
            raise fail(f"{name} must be an integer scalar")
    for name in FLOAT_SCALARS:
        if out[name].shape != () or out[name].dtype.kind not in "fiu" or not np.isfinite(out[name]):
            raise fail(f"{name} must be a finite number")
    if out["provenance"].shape != () or out["provenance"].dtype.kind != "U":
        raise fail("provenance must be a string")
    for name in ARRAYS:
        kind = "iu" if name in _INDEX_ARRAYS else "f"
        if out[name].dtype.kind not in kind:
            raise fail(f"{name} has dtype {out[name].dtype}")
        if kind == "f" and not np.isfinite(out[name]).all():
            raise fail(f"{name} holds non-finite values")
    stages = int(out["stage_count"])
    count = out["mean_face"].shape[0] if out["mean_face"].ndim == 2 else -1
    expected = {"mean_face": (count, 3), "mean_shape": (count, 2), "normals": (count, 3)}
    offsets, anchors, leaves = out["offsets"].shape, out["anchors"].shape, out["leaves"].shape
    if stages < 1 or count < 1 or len(offsets) != 4 or len(anchors) != 2 or len(leaves) != 4:
        raise fail("array shapes do not describe a cascade")
    trees, pool, leaf_count = anchors[1], offsets[2], leaves[2]
    if leaf_count < 2 or leaf_count & (leaf_count - 1):
        raise fail(f"leaves per tree must be a power of two, got {leaf_count}")
    components = out["shape_basis"].shape[0] if out["shape_basis"].ndim == 2 else -1
    refine_components = out["refine_basis"].shape[0] if out["refine_basis"].ndim == 2 else -1
    expected.update({
        "offsets": (stages, count, pool, 2), "anchors": (stages, trees),
        "feature_a": (stages, trees, leaf_count - 1), "feature_b": (stages, trees, leaf_count - 1),
        "thresholds": (stages, trees, leaf_count - 1), "leaves": (stages, trees, leaf_count, 2),
        "shape_basis": (components, 2 * count), "shape_sigma": (components,),
        "refine_basis": (refine_components, 2 * count), "refine_sigma": (refine_components,),
    })
    for name, shape in expected.items():
        if out[name].shape != shape:
            raise fail(f"{name} has shape {out[name].shape}, expected {shape}")
    if out["anchors"].size and (out["anchors"].min() < 0 or out["anchors"].max() >= count):
        raise fail("anchors index landmarks that do not exist")
    for name in ("feature_a", "feature_b"):
        if out[name].size and (out[name].min() < 0 or out[name].max() >= pool):
            raise fail(f"{name} indexes pool points that do not exist")
    if int(out["input_size"]) < 1:
        raise fail("input_size must be positive")
    positive = ("shape_noise", "shape_clamp", "peak_outlier", "lock_threshold")
    if (out["shape_sigma"] <= 0).any() or (out["refine_sigma"] <= 0).any() \
            or min(float(out[name]) for name in positive) <= 0:
        raise fail("shape_sigma, refine_sigma, shape_noise, shape_clamp, peak_outlier and lock_threshold "
                   "must be positive")
    return out
