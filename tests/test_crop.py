"""Face crops: the square box, the frame↔crop affine, normalised coordinates, detector-box calibration."""
from __future__ import annotations

import numpy as np
import pytest

from app.core import crop


def test_the_crop_rule_is_the_longer_side_enlarged_by_thirty_percent_around_the_centre() -> None:
    np.testing.assert_allclose(crop.crop_square(np.array([10, 20, 50, 120])), [-35, 5, 95, 135])


def test_crop_transform_maps_the_square_edges_to_the_crop_edges() -> None:
    square = np.array([100.0, 50.0, 300.0, 250.0])
    m = crop.crop_transform(square, 64)
    np.testing.assert_allclose(crop.warp_points(np.array([[100.0, 50.0], [300.0, 250.0], [200.0, 150.0]]), m),
                               [[-0.5, -0.5], [63.5, 63.5], [31.5, 31.5]], atol=1e-9)


def test_unwarp_points_inverts_warp_points_with_rotation_and_mirror() -> None:
    m = crop.crop_transform(np.array([10.0, 10.0, 110.0, 110.0]), 128, angle_deg=33.0, mirror=True)
    pts = np.random.default_rng(0).uniform(0, 200, (20, 2))
    np.testing.assert_allclose(crop.unwarp_points(crop.warp_points(pts, m), m), pts, atol=1e-9)


def test_warped_image_samples_the_frame_where_the_transform_says() -> None:
    frame = np.zeros((200, 200, 3), np.uint8)
    frame[120, 80] = 255
    m = crop.crop_transform(np.array([39.5, 59.5, 139.5, 159.5]), 100)
    image = crop.warp_image(frame, m, 100)
    x, y = crop.warp_points(np.array([80.0, 120.0]), m)
    assert image[int(round(y)), int(round(x))].max() == 255


def test_positive_angle_turns_content_counter_clockwise_on_screen() -> None:
    m = crop.crop_transform(np.array([0.0, 0.0, 100.0, 100.0]), 100, angle_deg=90.0)
    right_of_centre = crop.warp_points(np.array([80.0, 50.0]), m)
    np.testing.assert_allclose(right_of_centre, [49.5, 19.5], atol=1e-9)


def test_normalised_coordinates_put_the_crop_edges_at_plus_minus_one() -> None:
    np.testing.assert_allclose(crop.to_normalised(np.array([-0.5, 63.5, 31.5]), 64), [-1, 1, 0])
    pts = np.array([[3.0, 17.25]])
    np.testing.assert_allclose(crop.from_normalised(crop.to_normalised(pts, 128), 128), pts)


def test_landmark_box_ignores_unannotated_points() -> None:
    pts = np.array([[0.0, 0.0], [10.0, 5.0], [500.0, 500.0]])
    np.testing.assert_allclose(crop.landmark_box(pts, np.array([True, True, False])), [0, 0, 10, 5])
    with pytest.raises(ValueError, match="at least one"):
        crop.landmark_box(pts, np.zeros(3, bool))


def test_detector_box_maps_to_a_landmark_style_box_lower_and_slightly_smaller() -> None:
    face = crop.face_box_from_detection(np.array([100.0, 100.0, 200.0, 200.0]))
    dx, dy, scale = crop.DETECTOR_BOX_FIT
    np.testing.assert_allclose((face[:2] + face[2:]) / 2, [150 + dx * 100, 150 + dy * 100])
    assert face[2] - face[0] == pytest.approx(100 * scale)


def test_the_crop_rule_shifts_by_fractions_of_the_side_and_zooms_about_the_shifted_centre() -> None:
    box = np.array([10.0, 20.0, 50.0, 120.0])  # square side 130 about (30, 70)
    np.testing.assert_allclose(crop.crop_square(box, shift=(0.1, -0.2), zoom=2.0),
                               [30 + 13 - 32.5, 70 - 26 - 32.5, 30 + 13 + 32.5, 70 - 26 + 32.5])


def test_detector_box_fit_is_what_face_box_from_detection_undoes() -> None:
    detection = np.array([100.0, 80.0, 180.0, 190.0])
    fit = crop.detector_box_fit(detection, crop.face_box_from_detection(detection))
    np.testing.assert_allclose(fit, crop.DETECTOR_BOX_FIT, atol=1e-12)


def test_translation_in_frame_terms_is_the_projected_centre_in_pixels_and_pixels_per_mean_face_unit() -> None:
    square = np.array([100.0, 50.0, 300.0, 250.0])  # side 200 about (200, 150)
    centre, scale = crop.translation_to_frame(np.array([0.1, -0.2, 2.0]), crop.crop_transform(square, 64), 64)
    np.testing.assert_allclose(centre, [200 + 0.1 * 100, 150 - 0.2 * 100], atol=1e-9)
    assert scale == pytest.approx(200 / (2 * 2.0))
    turned, turned_scale = crop.translation_to_frame(np.array([0.0, 0.0, 2.0]),
                                                     crop.crop_transform(square, 64, angle_deg=30.0), 64)
    np.testing.assert_allclose(turned, [200, 150], atol=1e-9)
    assert turned_scale == pytest.approx(scale)
