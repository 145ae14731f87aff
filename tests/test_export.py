"""ONNX export: the runtime's contract, and ONNX Runtime agreeing with torch."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from app.core import model_io
from trainer.export import EncoderExport, FullExport, export_models, heatmap_peaks
from trainer.mean_face import build_mean_face
from trainer.mnn import MNN


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[MNN, Path]:
    torch.manual_seed(3)
    model = MNN(64, 68)
    with torch.no_grad():  # non-trivial BatchNorm statistics so that eval mode differs from identity
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    out = tmp_path_factory.mktemp("models")
    export_models(model, build_mean_face(), out)
    return model.eval(), out


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("variant, wrapper", [("encoder", EncoderExport), ("full", FullExport)])
def test_onnx_runtime_output_equals_torch_within_1e_4(exported: tuple[MNN, Path], variant: str, wrapper: type) -> None:
    model, folder = exported
    path = folder / (model_io.ENCODER_FILE if variant == "encoder" else model_io.FULL_FILE)
    image = np.random.default_rng(0).normal(size=(3, 3, 64, 64)).astype(np.float32)
    got = _session(path).run(None, {model_io.INPUT_NAME: image})
    with torch.no_grad():
        expected = wrapper(model)(torch.from_numpy(image))
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b.numpy(), atol=1e-4, rtol=0)


def test_models_have_the_contract_outputs_and_dynamic_batch(exported: tuple[MNN, Path]) -> None:
    _, folder = exported
    for name, outputs in ((model_io.ENCODER_FILE, model_io.ENCODER_OUTPUTS), (model_io.FULL_FILE, model_io.FULL_OUTPUTS)):
        session = _session(folder / name)
        assert tuple(o.name for o in session.get_outputs()) == outputs
        assert session.get_inputs()[0].name == model_io.INPUT_NAME
        for batch in (1, 5):
            result = session.run(None, {model_io.INPUT_NAME: np.zeros((batch, 3, 64, 64), np.float32)})
            assert all(r.shape[0] == batch for r in result)


def test_metadata_gives_input_size_normalisation_landmarks_and_mean_face(exported: tuple[MNN, Path]) -> None:
    _, folder = exported
    for name, variant in ((model_io.ENCODER_FILE, "encoder"), (model_io.FULL_FILE, "full")):
        meta = _session(folder / name).get_modelmeta().custom_metadata_map
        info = model_io.ModelInfo.from_metadata(folder / name, meta)
        assert (info.variant, info.input_size, info.landmarks) == (variant, 64, 68)
        np.testing.assert_allclose(info.mean, [0.485, 0.456, 0.406], atol=1e-6)
        np.testing.assert_allclose(info.mean_face, build_mean_face(), atol=1e-5)


def test_models_are_single_self_contained_files_at_opset_17_or_later(exported: tuple[MNN, Path]) -> None:
    _, folder = exported
    assert sorted(p.name for p in folder.iterdir()) == sorted([model_io.ENCODER_FILE, model_io.FULL_FILE])
    for name in (model_io.ENCODER_FILE, model_io.FULL_FILE):
        proto = onnx.load(str(folder / name))
        assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17


def test_heatmap_peaks_find_a_sub_pixel_peak_between_two_pixels() -> None:
    maps = torch.zeros(1, 1, 8, 8)
    maps[0, 0, 3, 4] = 0.5
    maps[0, 0, 3, 5] = 0.5
    np.testing.assert_allclose(heatmap_peaks(maps)[0, 0].numpy(), [4.5, 3.0], atol=1e-6)


def test_export_command_writes_both_models_from_a_fresh_network(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "trainer", "export", "--random-init", "--input-size", "32", "--out", str(tmp_path)],
                   check=True, capture_output=True)
    assert (tmp_path / model_io.ENCODER_FILE).is_file() and (tmp_path / model_io.FULL_FILE).is_file()


def test_export_command_names_a_missing_checkpoint(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "trainer", "export", "--checkpoint", str(tmp_path / "none.pt"),
                             "--out", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "none.pt" in result.stderr
