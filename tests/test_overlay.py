"""Overlay: axes in the right colours and directions, landmark colours by visibility, a copy returned, nothing
about the run drawn, no ``-0``; a face judged not to be one drawn grey."""
from __future__ import annotations

import dataclasses

import numpy as np

from app.core.overlay import BLUE, GREEN, INVALID_COLOUR, RED, draw_overlay, draw_timed
from app.core.results import FaceResult, FrameResult
from app.core.pose import axes_endpoints

SIZE = 400
BOX = np.array([100.0, 100.0, 300.0, 300.0])
CENTRE = np.array([200.0, 200.0])


def frame_with(face: FaceResult, mode: str = "pose") -> FrameResult:
    return FrameResult(index=0, time_s=0.0, faces=(face,), timings_ms={"detect": 1.0}, mode=mode)


def face(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0, landmarks=None, visibility=None) -> FaceResult:
    return FaceResult(face_id=1, box=BOX, score=0.9, yaw=yaw, pitch=pitch, roll=roll,
                      centre=np.array([0.0, 0.0]), scale=1.0, landmarks=landmarks, visibility=visibility)


def axes_only(result: FrameResult) -> np.ndarray:
    blank = np.zeros((SIZE, SIZE, 3), np.uint8)
    return draw_overlay(blank, result, show_box=False, show_landmarks=False)


def colour_at(image: np.ndarray, xy: np.ndarray) -> tuple[int, int, int]:
    x, y = np.round(xy).astype(int)
    return tuple(int(v) for v in image[y, x])


def test_frontal_pose_draws_red_x_to_the_right_and_green_y_upwards():
    image = axes_only(frame_with(face()))
    assert colour_at(image, CENTRE + [60, 0]) == RED
    assert colour_at(image, CENTRE + [0, -60]) == GREEN
    assert colour_at(image, CENTRE + [-60, 0]) == (0, 0, 0)
    assert colour_at(image, CENTRE + [0, 60]) == (0, 0, 0)


def test_pitch_up_points_the_blue_facing_axis_up_the_image():
    image = axes_only(frame_with(face(pitch=40.0)))
    assert colour_at(image, CENTRE + [0, -50]) == BLUE
    assert colour_at(image, CENTRE + [0, 50]) == (0, 0, 0)


def test_yawed_pose_draws_each_axis_where_the_pose_convention_puts_it():
    angles = np.array([50.0, 0.0, 0.0])
    image = axes_only(frame_with(face(*angles)))
    ends = axes_endpoints(angles, CENTRE, 0.6 * 200)
    for end, colour in zip(ends, (RED, GREEN, BLUE)):
        assert colour_at(image, CENTRE + 0.75 * (end - CENTRE)) == colour
    assert abs(ends[2, 0] - CENTRE[0]) > 60  # the facing axis really leaves the centre sideways


def test_landmarks_are_green_when_visible_and_red_when_occluded():
    points = np.array([[150.0, 150.0], [250.0, 250.0]])
    result = frame_with(face(landmarks=points, visibility=np.array([0.9, 0.1])), mode="full")
    image = draw_overlay(np.zeros((SIZE, SIZE, 3), np.uint8), result, show_axes=False, show_box=False)
    assert colour_at(image, points[0]) == GREEN
    assert colour_at(image, points[1]) == RED


def test_returns_an_annotated_copy_and_leaves_the_frame_alone():
    frame = np.zeros((SIZE, SIZE, 3), np.uint8)
    image = draw_overlay(frame, frame_with(face()))
    assert not frame.any()
    assert image.shape == frame.shape and image.any()
    assert tuple(image[100, 200]) != (0, 0, 0)  # the box's top edge


def test_nothing_about_the_run_is_drawn_so_the_frame_depends_on_the_faces_alone():
    frame = np.zeros((480, 480, 3), np.uint8)
    slow = FrameResult(index=0, time_s=0.0, faces=(face(),), timings_ms={"detect": 91.5, "infer": 40.2}, mode="pose")
    fast = FrameResult(index=0, time_s=0.0, faces=(face(),), timings_ms={"detect": 3.1}, mode="pose")
    assert np.array_equal(draw_overlay(frame, slow), draw_overlay(frame, fast))
    empty = FrameResult(index=0, time_s=0.0, faces=(), timings_ms={"detect": 3.1}, mode="full")
    assert not draw_overlay(frame, empty).any()


def test_an_angle_that_rounds_to_zero_is_labelled_plus_0_whatever_its_sign():
    def label_only(yaw: float) -> np.ndarray:
        blank = np.zeros((SIZE, SIZE, 3), np.uint8)
        return draw_overlay(blank, frame_with(face(yaw=yaw)), show_axes=False, show_box=False, show_landmarks=False)

    assert label_only(-0.3).any()
    assert np.array_equal(label_only(-0.3), label_only(0.3))
    assert not np.array_equal(label_only(-0.6), label_only(0.3))


def test_draw_timed_draws_what_draw_overlay_draws_and_adds_the_overlay_stage_time():
    frame = np.zeros((480, 480, 3), np.uint8)
    result = frame_with(face())
    image, timed = draw_timed(frame, result, show_axes=False)
    assert np.array_equal(image, draw_overlay(frame, result, show_axes=False))
    assert list(timed.timings_ms) == [*result.timings_ms, "overlay"] and timed.timings_ms["overlay"] >= 0.0
    assert timed.faces == result.faces and "overlay" not in result.timings_ms


def test_an_invalid_face_is_drawn_all_grey_and_a_valid_one_in_colour():
    points = np.array([[150.0, 150.0], [250.0, 250.0]])
    valid = face(landmarks=points, visibility=np.array([0.9, 0.1]))
    invalid = dataclasses.replace(valid, valid=False, quality=0.01)
    images = [draw_overlay(np.zeros((SIZE, SIZE, 3), np.uint8), frame_with(f, mode="full")) for f in (valid, invalid)]
    drawn = {tuple(int(v) for v in px) for px in images[1].reshape(-1, 3)}
    assert drawn <= {(0, 0, 0)} | {(v, v, v) for v in range(256)}  # greys only: box, label, axes, landmarks
    assert colour_at(images[1], points[0]) == colour_at(images[1], points[1]) == INVALID_COLOUR
    assert colour_at(images[1], CENTRE + [60, 0]) == INVALID_COLOUR  # the x axis
    assert colour_at(images[1], [200, 100]) == INVALID_COLOUR  # the box's top edge
    assert colour_at(images[0], points[0]) == GREEN and colour_at(images[0], CENTRE + [60, 0]) == RED
