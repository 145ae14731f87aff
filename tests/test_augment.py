"""Training crops: the plain crop's geometry, the seeded augmentation and the labels it moves."""
from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from app.core.crop import crop_square, crop_transform, landmark_box, unwarp_points, warp_points
from app.core.pose import project, transform_angles
from tests.conftest import ROOT, require_shared
from trainer.augment import (
    AugmentConfig,
    Augmentation,
    Occluder,
    apply_augmentation,
    make_crop,
    scale_hsv,
)
from trainer.datasets.sample import FaceSample
from trainer.landmark_layouts import IBUG68
from trainer.mean_face import build_mean_face

SIZE = 128
MEAN_FACE = build_mean_face(require_shared("mean_face", "bfm68.txt"))
POSE = np.array([0.35, -0.15, 0.2, 0.0, 0.0, 1 / 90])  # yaw, pitch, roll (rad); 90 px per mean-face unit


def synthetic_sample(pose: np.ndarray = POSE, frame: int = 480, with_pose: bool = False) -> FaceSample:
    """The mean face projected with ``pose`` into the middle of a colour-gradient frame (red = x, green = y)."""
    landmarks = (project(pose, MEAN_FACE) + frame / 2).astype(np.float32)
    ys, xs = np.mgrid[0:frame, 0:frame]
    image = np.stack([xs * 255 // (frame - 1), ys * 255 // (frame - 1), np.full_like(xs, 90)], -1).astype(np.uint8)
    mask = np.ones(68, bool)
    angles = np.degrees(pose[:3]) if with_pose else None
    return FaceSample(image, landmarks, mask, mask.copy(), angles, landmark_box(landmarks), "synthetic")


def test_plain_crop_puts_landmarks_where_warp_points_says_and_the_face_fills_1_over_1_3():
    sample = synthetic_sample()
    crop = make_crop(sample, SIZE, MEAN_FACE)
    transform = crop_transform(crop_square(sample.box), SIZE)
    np.testing.assert_allclose(crop.landmarks, warp_points(sample.landmarks, transform), atol=1e-3)
    x1, y1, x2, y2 = landmark_box(crop.landmarks)
    assert max(x2 - x1, y2 - y1) == pytest.approx(SIZE / 1.3, rel=1e-3)
    assert ((x1 + x2) / 2, (y1 + y2) / 2) == pytest.approx((SIZE / 2 - 0.5, SIZE / 2 - 0.5), abs=1e-3)
    assert crop.mask.all() and crop.visibility.all() and crop.has_pose
    assert crop.image.shape == (SIZE, SIZE, 3) and crop.image.dtype == np.uint8


def test_plain_crop_pixels_come_from_the_frame_under_the_crop_transform():
    sample = synthetic_sample()
    crop = make_crop(sample, SIZE, MEAN_FACE)
    transform = crop_transform(crop_square(sample.box), SIZE)
    pixels = np.array([[5, 7], [64, 64], [120, 30]])
    frame_xy = unwarp_points(pixels.astype(np.float64), transform)
    expected_red = frame_xy[:, 0] * 255 / (sample.image.shape[1] - 1)
    expected_green = frame_xy[:, 1] * 255 / (sample.image.shape[0] - 1)
    got = crop.image[pixels[:, 1], pixels[:, 0]].astype(np.float64)
    np.testing.assert_allclose(got[:, 0], expected_red, atol=1.5)
    np.testing.assert_allclose(got[:, 1], expected_green, atol=1.5)


def test_plain_crop_pose_label_is_the_projected_pose():
    crop = make_crop(synthetic_sample(), SIZE, MEAN_FACE)
    np.testing.assert_allclose(crop.pose[:3], POSE[:3], atol=1e-4)
    assert crop.pose.dtype == np.float32


def test_same_seed_gives_the_same_crop_and_another_seed_does_not():
    sample = synthetic_sample()
    first = make_crop(sample, SIZE, MEAN_FACE, np.random.default_rng(7))
    again = make_crop(sample, SIZE, MEAN_FACE, np.random.default_rng(7))
    other = make_crop(sample, SIZE, MEAN_FACE, np.random.default_rng(8))
    for field in ("image", "landmarks", "mask", "visibility", "pose"):
        np.testing.assert_array_equal(getattr(first, field), getattr(again, field))
    assert not np.array_equal(first.landmarks, other.landmarks)


def test_mirror_permutes_landmarks_so_left_stays_left_and_negates_yaw_and_roll():
    sample = synthetic_sample()
    plain = make_crop(sample, SIZE, MEAN_FACE)
    mirrored = apply_augmentation(sample, SIZE, MEAN_FACE, Augmentation(mirror=True))
    right_corner, left_corner = IBUG68.outer_eyes
    # Index 36 is the subject's right eye corner: on the image left before and after mirroring.
    assert plain.landmarks[right_corner, 0] < plain.landmarks[left_corner, 0]
    assert mirrored.landmarks[right_corner, 0] < mirrored.landmarks[left_corner, 0]
    # ... and it is where the other eye's corner was, mirrored.
    assert mirrored.landmarks[right_corner, 0] == pytest.approx(SIZE - 1 - plain.landmarks[left_corner, 0], abs=1e-3)
    assert mirrored.landmarks[right_corner, 1] == pytest.approx(plain.landmarks[left_corner, 1], abs=1e-3)
    np.testing.assert_allclose(mirrored.pose[:3], plain.pose[:3] * np.array([-1, 1, -1]), atol=1e-3)
    assert mirrored.pose[3] == pytest.approx(-plain.pose[3], abs=1e-3)
    # The image is flipped too: the red (x) gradient now runs right to left.
    assert mirrored.image[64, 10, 0] > mirrored.image[64, 117, 0]


@pytest.mark.parametrize("angle, mirror", [(-40.0, False), (25.0, False), (30.0, True)])
def test_rotation_turns_the_pnp_label_as_transform_angles_says(angle, mirror):
    sample = synthetic_sample()
    plain = make_crop(sample, SIZE, MEAN_FACE)
    turned = apply_augmentation(sample, SIZE, MEAN_FACE, Augmentation(angle_deg=angle, mirror=mirror))
    expected = transform_angles(plain.pose[:3].astype(np.float64), angle, mirror)
    np.testing.assert_allclose(np.degrees(turned.pose[:3]), np.degrees(expected), atol=1.0)
    assert np.degrees(np.abs(expected - plain.pose[:3])).max() > 10  # the turn really moved the label


def test_sample_pose_angles_follow_the_crop_and_translation_comes_from_the_landmarks():
    sample = synthetic_sample(with_pose=True)
    turned = apply_augmentation(sample, SIZE, MEAN_FACE, Augmentation(angle_deg=20.0, zoom=1.1))
    np.testing.assert_allclose(turned.pose[:3], transform_angles(POSE[:3], 20.0), atol=1e-5)
    fitted = apply_augmentation(synthetic_sample(), SIZE, MEAN_FACE, Augmentation(angle_deg=20.0, zoom=1.1))
    np.testing.assert_allclose(turned.pose[3:], fitted.pose[3:], atol=1e-5)


def test_sample_pose_without_landmarks_takes_translation_from_the_box():
    base = synthetic_sample(with_pose=True)
    empty = np.zeros((0, 2), np.float32)
    sample = FaceSample(base.image, empty, np.zeros(0, bool), np.zeros(0, bool), base.pose, base.box, "no-landmarks")
    augmentation = Augmentation(angle_deg=-20.0, zoom=0.9, shift=(0.05, -0.03), mirror=True)
    crop = apply_augmentation(sample, SIZE, MEAN_FACE, augmentation)
    with_landmarks = apply_augmentation(base, SIZE, MEAN_FACE, augmentation)
    assert crop.has_pose and crop.landmarks.shape == (0, 2)
    np.testing.assert_allclose(crop.pose, with_landmarks.pose, atol=1e-4)


def test_landmarks_pushed_outside_the_crop_lose_their_mask_but_not_the_pose_label():
    sample = synthetic_sample()
    crop = apply_augmentation(sample, SIZE, MEAN_FACE, Augmentation(shift=(0.35, -0.3), zoom=1.15))
    inside = ((crop.landmarks >= -0.5) & (crop.landmarks < SIZE - 0.5)).all(1)
    assert 0 < inside.sum() < len(inside)
    np.testing.assert_array_equal(crop.mask, inside)
    np.testing.assert_allclose(crop.pose[:3], POSE[:3], atol=1e-4)


def test_occluder_hides_exactly_the_landmarks_under_it():
    sample = synthetic_sample()
    magenta = (255, 0, 255)
    occluder = Occluder(box=(-0.35, -0.25, 0.3, 0.2), colour=magenta)
    crop = apply_augmentation(sample, SIZE, MEAN_FACE, Augmentation(occluder=occluder))
    painted = (crop.image == magenta).all(-1)
    pixels = np.floor(crop.landmarks + 0.5).astype(int)
    under = painted[pixels[:, 1], pixels[:, 0]]
    assert 0 < under.sum() < len(under)
    np.testing.assert_array_equal(crop.visibility, ~under)
    assert crop.mask.all()


def test_noise_occluder_is_reproducible_from_its_seed():
    sample = synthetic_sample()
    occluder = Occluder(box=(-0.2, -0.2, 0.2, 0.2), colour=None, noise_seed=3)
    first = apply_augmentation(sample, SIZE, MEAN_FACE, Augmentation(occluder=occluder))
    again = apply_augmentation(sample, SIZE, MEAN_FACE, Augmentation(occluder=occluder))
    plain = make_crop(sample, SIZE, MEAN_FACE)
    np.testing.assert_array_equal(first.image, again.image)
    assert not np.array_equal(first.image[64, 64], plain.image[64, 64])


@pytest.mark.parametrize("factors", [(0.5, 0.5, 0.5), (1.5, 1.5, 1.5), (1.3, 0.7, 1.2)])
def test_hsv_scaling_stays_uint8_and_changes_colour(factors):
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    out = scale_hsv(image, factors)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.abs(out.astype(int) - image.astype(int)).mean() > 5


def test_hsv_brightness_factor_scales_value():
    grey = np.full((4, 4, 3), 100, np.uint8)
    assert scale_hsv(grey, (1.0, 1.0, 1.5))[0, 0].tolist() == [150, 150, 150]
    assert scale_hsv(grey, (1.0, 1.0, 3.0))[0, 0].tolist() == [255, 255, 255]


def test_hue_scaling_keeps_reds_on_both_sides_of_the_seam_red():
    hsv = np.array([[[178, 200, 200], [2, 200, 200]]], np.uint8)
    reds = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    for factor in (0.5, 1.5):
        hue = cv2.cvtColor(scale_hsv(reds, (factor, 1.0, 1.0)), cv2.COLOR_RGB2HSV)[0, :, 0].astype(int)
        distance_to_red = np.minimum(hue, 180 - hue)
        assert (distance_to_red <= 4).all(), hue


def test_random_crops_keep_labels_consistent_with_the_geometry():
    sample = synthetic_sample()
    rng = np.random.default_rng(0)
    config = AugmentConfig(occlusion=0.0)
    for _ in range(20):
        crop = make_crop(sample, SIZE, MEAN_FACE, rng, config)
        assert crop.has_pose and crop.visibility.all()
        # PnP on a noiseless projected face recovers it exactly: the label reprojects onto the landmarks.
        reprojected = (project(crop.pose.astype(np.float64), MEAN_FACE) + 1.0) * SIZE / 2 - 0.5
        np.testing.assert_allclose(reprojected[17:], crop.landmarks[17:], atol=0.05)


def test_sample_without_box_is_rejected_by_name():
    sample = synthetic_sample()
    boxless = FaceSample(sample.image, sample.landmarks, sample.mask, sample.visibility, None, None, "nobox_7")
    with pytest.raises(ValueError, match="nobox_7"):
        make_crop(boxless, SIZE, MEAN_FACE)


def test_augmented_afw_crops_are_well_formed_and_labelled():
    from trainer.datasets.registry import open_dataset

    dataset = open_dataset(f"300w:{require_shared('300w', 'afw')}")
    rng = np.random.default_rng(0)
    for index in range(0, len(dataset), len(dataset) // 6):
        crop = make_crop(dataset[index], SIZE, MEAN_FACE, rng)
        assert crop.image.shape == (SIZE, SIZE, 3) and crop.image.dtype == np.uint8
        assert crop.landmarks.shape == (68, 2) and crop.landmarks.dtype == np.float32
        assert crop.has_pose and np.isfinite(crop.pose).all() and crop.pose[5] > 0
        labelled = crop.landmarks[crop.mask]
        assert ((labelled >= -0.5) & (labelled < SIZE - 0.5)).all()
        assert crop.mask.sum() > 34  # jitter of ±5% / ±15% keeps most of the face in the crop


def test_preview_cli_writes_a_contact_sheet_png(tmp_path):
    afw = require_shared("300w", "afw")
    out = tmp_path / "sheet.png"
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "preview", "--data", f"300w:{afw}", "--out", str(out),
         "--count", "8", "--size", "128", "--seed", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ},
    )
    assert result.returncode == 0, result.stderr
    sheet = cv2.imread(str(out))
    # 8 tiles of 128 px plus a 14-px caption, 4 columns by 2 rows, 2-px gutters.
    assert sheet.shape == (2 * (128 + 14 + 2) + 2, 4 * (128 + 2) + 2, 3)
    assert sheet.std() > 20


def test_preview_cli_rejects_a_bad_dataset_spec(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "preview", "--data", "nosuchkind:/x", "--out", str(tmp_path / "s.png")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "nosuchkind" in result.stderr
    assert not (tmp_path / "s.png").exists()
