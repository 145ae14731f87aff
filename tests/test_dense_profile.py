"""Dense-face profiling: the z-buffer, the fit refined to the annotations, renders at new poses and their labels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.core.landmark_pose import pose_from_landmarks
from app.core.pose import facing_direction, rotation_matrix
from tests.conftest import require_shared
from trainer.datasets.registry import open_dataset
from trainer.datasets.sample import FaceSample
from trainer.mean_face import build_mean_face
from trainer.profile import DenseProfiler, ProfileSettings, profile_datasets
from trainer.profiling.dense_fit import deform_dense, fit_dense, fit_from_angles
from trainer.profiling.dense_render import DenseTexturer
from trainer.profiling.face3d import Face3D
from trainer.profiling.zbuffer import rasterise, visible_points

FACE3D = require_shared("face3d", "bfm_dense_mean.npz").parent
FRONTAL = "1051618982_1"
"""An afw face photographed nearly frontal (fitted yaw 0°, pitch −1°)."""
NEAR_JAW = list(range(0, 6))
"""iBUG jaw points on the subject's right (the image left of a frontal face)."""
FAR_JAW = list(range(11, 17))


@pytest.fixture(scope="module")
def texturer() -> DenseTexturer:
    return DenseTexturer(Face3D(FACE3D))


@pytest.fixture(scope="module")
def frontal() -> FaceSample:
    data = open_dataset(f"300w:{require_shared('300w', 'afw')}")
    return data[data.names.index(FRONTAL)]


@pytest.fixture(scope="module")
def profiler(frontal: FaceSample, texturer: DenseTexturer) -> DenseProfiler:
    return DenseProfiler(frontal, texturer)


def test_zbuffer_keeps_the_nearer_of_two_overlapping_triangles() -> None:
    points = np.array([[0, 0, 1.0], [9, 0, 1.0], [0, 9, 1.0], [0, 0, 5.0], [9, 0, 5.0], [0, 9, 5.0]])
    raster = rasterise(points, np.array([[0, 1, 2], [3, 5, 4]]), (10, 10))
    assert raster.triangle[2, 2] == 1 and raster.depth[2, 2] == 5.0
    assert raster.triangle[9, 9] == -1 and raster.covered.sum() == 55     # pixel centres on or under x + y = 9
    np.testing.assert_allclose(raster.weights[raster.covered].sum(1), 1.0)
    assert visible_points(np.array([[2.0, 2.0, 5.0], [2.0, 2.0, 1.0]]), raster, 0.1).tolist() == [True, False]


def test_refined_fit_lands_on_the_annotated_landmarks_closer_than_the_regressor(frontal: FaceSample,
                                                                               texturer: DenseTexturer) -> None:
    model = texturer.model
    fit = fit_dense(frontal.image, frontal.landmarks, model)
    box = np.r_[frontal.landmarks.min(0), frontal.landmarks.max(0)]
    regressed = model.regress(np.ascontiguousarray(frontal.image[..., ::-1]), box)
    posed = regressed.scale * model.shape68(regressed.coefficients) @ rotation_matrix(regressed.angles).T
    regressor_rms = np.sqrt((((posed[:, :2] + regressed.shift) - frontal.landmarks) ** 2).sum(1).mean())
    assert fit.rms_px < 3.5 < regressor_rms
    assert np.degrees(np.abs(fit.angles - regressed.angles)).max() < 5.0
    dense = deform_dense(model, fit.shape68)
    np.testing.assert_allclose(dense[model.keypoints], fit.shape68, atol=1e-6)


def test_fit_started_from_the_pnp_label_needs_no_regressor(frontal: FaceSample, texturer: DenseTexturer) -> None:
    """The refinement reaches the same fit from the PnP label as from the regressor, so faces the regressor
    must not see (``helen_test``) can be fitted in the same convention."""
    pnp = pose_from_landmarks(frontal.landmarks, frontal.mask, build_mean_face())
    from_pnp = fit_from_angles(frontal.landmarks, texturer.model, pnp[:3])
    from_regressor = fit_dense(frontal.image, frontal.landmarks, texturer.model)
    np.testing.assert_allclose(from_pnp.angles, from_regressor.angles, atol=np.radians(0.05))
    assert abs(from_pnp.rms_px - from_regressor.rms_px) < 0.01


def test_render_at_the_photographed_pose_reproduces_the_face_and_its_landmarks(profiler: DenseProfiler,
                                                                               frontal: FaceSample) -> None:
    yaw, pitch, _ = np.degrees(profiler.pose)
    render = profiler.render(float(yaw), float(pitch))
    error = np.linalg.norm(render.landmarks - frontal.landmarks, axis=1)
    assert error.mean() < 3.0 and np.median(error[17:]) < 3.0
    assert render.visibility[17:].all()
    face = render.covered
    difference = np.abs(render.image.astype(np.int16) - frontal.image.astype(np.int16))[face]
    assert face.sum() > 0.5 * np.prod(np.ptp(frontal.landmarks, 0)) and np.median(difference) < 8


def test_turning_to_plus_60_hides_the_image_left_jaw_and_labels_the_requested_pose(profiler: DenseProfiler) -> None:
    """Positive yaw turns the face towards the image left: its nose passes its jaw on that side, which
    the cheek then hides; the label is the requested rotation itself."""
    render = profiler.render(60.0, 10.0)
    expected = np.array([np.radians(60.0), np.radians(10.0), profiler.pose[2]])
    np.testing.assert_allclose(render.pose[:3], expected, atol=1e-12)
    assert facing_direction(render.pose[:3])[0] < 0
    assert render.landmarks[30, 0] < render.landmarks[NEAR_JAW, 0].min()        # nose tip left of the near jaw
    assert not render.visibility[NEAR_JAW].any()
    assert render.visibility[FAR_JAW].all() and render.visibility[42:48].all()     # the eye on the camera side


def test_turned_render_leaves_no_holes_in_the_face_or_the_background(frontal: FaceSample,
                                                                     texturer: DenseTexturer) -> None:
    """With no pure-black pixel in the photograph, a pure-black pixel in a render is a hole."""
    lifted = FaceSample(np.maximum(frontal.image, 1), frontal.landmarks, frontal.mask, frontal.visibility, None,
                        frontal.box, frontal.name)
    profiler = DenseProfiler(lifted, texturer)
    for yaw, pitch in ((90.0, 0.0), (-75.0, 25.0), (45.0, 30.0), (0.0, -30.0)):
        render = profiler.render(yaw, pitch)
        assert render.image.shape == frontal.image.shape and (render.image.max(2) == 0).sum() == 0


def test_dense_profiling_writes_reader_files_with_the_labels_it_rendered(tmp_path: Path) -> None:
    afw = require_shared("300w", "afw")
    run = profile_datasets([f"300w:{afw}"], tmp_path, ProfileSettings(per_face=4, seed=1, mesh="dense"),
                           limit=1, progress=False)
    data = open_dataset(f"aflw2000:{tmp_path}")
    assert len(data) == 4 == len(run.written)
    for sample, yaw in zip(data, sorted(run.yaws_deg)):
        assert sample.landmarks.shape == (68, 2) and abs(sample.pose[1]) <= 30.0 + 1e-4
    np.testing.assert_allclose(sorted(s.pose[0] for s in data), sorted(run.yaws_deg), atol=1e-4)


def test_dense_profiling_refuses_the_regressors_training_renders(tmp_path: Path) -> None:
    helen_test = require_shared("300w", "helen_test")
    with pytest.raises(ValueError, match="helen_test"):
        profile_datasets([f"300w:{helen_test}"], tmp_path, ProfileSettings(mesh="dense"), limit=1, progress=False)


def test_dense_fit_pose_is_in_the_pose_para_convention_on_aflw2000() -> None:
    """AFLW2000-3D's landmarks are its own BFM fit's keypoints, so refitting them recovers ``Pose_Para``
    closely (0.58° mean over the 16 faces with ``.mat``); the regressor alone is 3.2° off, PnP 1.9°."""
    from trainer.pose_labels import label_agreement

    figures = label_agreement(f"aflw2000:{require_shared('aflw2000_mini')}")
    assert figures["faces"] == 16
    assert figures["fit_vs_dataset"]["mean"] < 1.0 < figures["pnp_vs_dataset"]["mean"]
    assert figures["fit_vs_dataset"]["mean"] < figures["regressor_vs_dataset"]["mean"]


def test_pose_sheet_has_a_row_per_face_of_its_photograph_and_six_poses(frontal: FaceSample) -> None:
    from trainer.profiling.pose_sheet import SHEET_POSES, pose_sheet

    sheet = pose_sheet([frontal], size=64)
    assert len(SHEET_POSES) == 6 and sheet.ndim == 3
    assert sheet.shape[1] > 7 * 64 and 64 < sheet.shape[0] < 2 * 64 + 40
