"""``app.core``'s public API: the README's library example runs as written, exports load lazily, and the
pure-numpy modules load without ONNX Runtime."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

import app.core
from tests.conftest import ROOT, require_shared

PURE_MODULES = ("app.core.refiner", "app.core.or_cascade", "app.core.or_format", "app.core.landmark_pose",
                "app.core.results", "app.core.results_csv", "app.core.overlay", "app.core.frame_rate", "app.core.exit_codes")
"""Modules that work on numbers and images only, and so must not load ONNX Runtime (nor make a data worker
that imports them load it)."""


def _run_python(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter at the project root, as a reader of the README would run it."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def readme_library_example() -> str:
    """The Python block of the README's "As a library" section, as written."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("### As a library", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_library_example_prints_the_angles_of_every_frame_of_d18():
    require_shared("videos", "d18.mp4")
    example = readme_library_example()
    assert len(example.strip().splitlines()) == 6  # the import, a blank line and five lines of work
    done = _run_python(example)
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    assert [int(line[0]) for line in lines] == list(range(216))  # d18 holds 216 frames, one face in each
    for index, face_id, *angles in lines:
        assert face_id == "1" and all(-180.0 <= float(a) <= 180.0 for a in angles), (index, angles)


def test_pure_numpy_modules_load_without_onnx_runtime():
    done = _run_python(f"import sys, {', '.join(PURE_MODULES)}; "
                       "assert 'onnxruntime' not in sys.modules, 'onnxruntime was imported'")
    assert done.returncode == 0, done.stderr


def test_importing_app_core_loads_nothing_until_a_name_is_used():
    done = _run_python("import sys, app.core; assert 'onnxruntime' not in sys.modules; "
                       "assert 'app.core.pipeline' not in sys.modules; app.core.FacePipeline; "
                       "assert 'onnxruntime' in sys.modules")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", app.core.__all__)
def test_every_exported_name_resolves_and_is_listed(name: str):
    assert getattr(app.core, name) is not None
    assert name in dir(app.core)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        app.core.Nothing  # noqa: B018
