"""300W pose labels by the 3D fit: cached once per face, and turned with each crop's rotation and mirror
exactly as the image is (the PnP of the crop's own landmarks agrees)."""
from __future__ import annotations

import numpy as np
import pytest

from app.core.pose import transform_angles, wrap_degrees
from tests.conftest import require_shared
from trainer.augment import Augmentation, apply_augmentation
from trainer.datasets.registry import open_dataset
from trainer.fit_labels import CACHE_FILE, FitPoseDataset, face_key, label_items
from trainer.mean_face import build_mean_face

MEAN_FACE = build_mean_face(require_shared("mean_face", "bfm68.txt"))
FACES = 6


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, list, object]:
    afw = open_dataset(f"300w:{require_shared('300w', 'afw')}")
    cache = tmp_path_factory.mktemp("fit") / CACHE_FILE
    items = [(afw, i) for i in range(FACES)]
    return items, label_items(items, "fit", cache, MEAN_FACE), cache


def test_fit_labels_are_cached_under_the_face_names_and_reused(labelled) -> None:
    items, fitted, cache = labelled
    with np.load(cache) as f:
        assert sorted(f["keys"].tolist()) == sorted(face_key(ds, i) for ds, i in items)
    again = label_items(items, "fit", cache, MEAN_FACE)  # a second call reads the cache (no Face3D needed)
    np.testing.assert_array_equal(np.array(list(again[0][0].angles.values())),
                                  np.array(list(fitted[0][0].angles.values())))
    assert isinstance(fitted[0][0], FitPoseDataset) and fitted[0][0].names == items[0][0].names


def test_pnp_labels_leave_the_faces_to_per_crop_pnp(labelled, tmp_path) -> None:
    items, _, _ = labelled
    assert label_items(items, "pnp", tmp_path / CACHE_FILE, MEAN_FACE) == items
    assert not (tmp_path / CACHE_FILE).exists()


def test_mirrored_crop_of_a_fit_labelled_face_flips_the_signs_of_yaw_and_roll(labelled) -> None:
    _, fitted, _ = labelled
    for ds, i in fitted:
        sample = ds[i]
        crop = apply_augmentation(sample, 128, MEAN_FACE, Augmentation(mirror=True))
        yaw, pitch, roll = np.degrees(crop.pose[:3])
        assert (yaw, pitch, roll) == pytest.approx((-sample.pose[0], sample.pose[1], -sample.pose[2]), abs=1e-3)


@pytest.mark.parametrize("angle, mirror", [(30.0, False), (-40.0, True)])
def test_rotated_crop_label_turns_with_the_image_as_the_crops_own_pnp_does(labelled, angle: float, mirror: bool) -> None:
    items, fitted, _ = labelled
    gaps = []
    for (plain, i), (ds, _) in zip(items, fitted):
        augmentation = Augmentation(angle_deg=angle, mirror=mirror)
        fit_crop = apply_augmentation(ds[i], 128, MEAN_FACE, augmentation)
        expected = transform_angles(np.radians(ds[i].pose), angle, mirror)
        np.testing.assert_allclose(fit_crop.pose[:3], expected, atol=1e-5)
        pnp_crop = apply_augmentation(plain[i], 128, MEAN_FACE, augmentation)
        np.testing.assert_allclose(fit_crop.pose[3:], pnp_crop.pose[3:], atol=1e-6)
        gaps.append(np.abs(wrap_degrees(np.degrees(fit_crop.pose[:3] - pnp_crop.pose[:3]))).mean())
    assert np.mean(gaps) < 5.0  # the two labellers differ by a few degrees, never by the in-plane turn
