"""FacePipeline and FrameLoop: faces in frame coordinates, crops that map back, mode switches, stops."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from app.core import crop
from app.core.detector import create_detector
from app.core.estimator import DEFAULT_MODELS_DIR
from app.core.pipeline import FacePipeline, FrameLoop, face_boxes_of
from app.core.video import VideoSource
from tests.conftest import read_frames, require_shared
from tests.model_fixtures import INPUT_SIZE, LANDMARKS, random_models  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def d18_frames() -> list[np.ndarray]:
    return read_frames("d18.mp4", 3)


def test_the_crop_square_of_a_detection_is_its_matching_face_box_enlarged_30_percent():
    box = np.array([100.0, 50.0, 200.0, 170.0])
    (face,) = face_boxes_of(box[None])
    square = crop.crop_square(face)
    np.testing.assert_array_equal(face, crop.face_box_from_detection(box))
    assert square[2] - square[0] == pytest.approx(1.3 * (face[2] - face[0]))
    assert square[3] - square[1] == pytest.approx(square[2] - square[0])
    assert np.allclose((square[:2] + square[2:]) / 2, (face[:2] + face[2:]) / 2)


def test_crop_maps_back_onto_its_square():
    frame = np.zeros((300, 400, 3), np.uint8)
    frame[100:200, 150:250] = 255
    box = face_boxes_of(np.array([[150.0, 100.0, 250.0, 200.0]]))
    crops, (transform,) = crop.crop_faces(frame, box, INPUT_SIZE)
    assert crops.shape == (1, INPUT_SIZE, INPUT_SIZE, 3)
    corners = crop.unwarp_points(np.array([[-0.5, -0.5], [INPUT_SIZE - 0.5, INPUT_SIZE - 0.5]]), transform)
    assert np.allclose(corners.ravel(), crop.crop_square(box[0]), atol=1e-6)
    points = np.array([[160.0, 110.0], [240.5, 199.0]])
    assert np.allclose(crop.unwarp_points(crop.warp_points(points, transform), transform), points)
    white = crops[0, :, :, 0] > 127
    side = crop.crop_square(box[0])[2] - crop.crop_square(box[0])[0]
    assert abs(white.mean() - (100.0 / side) ** 2) < 0.03


@pytest.mark.parametrize("mode", ["pose", "full"])
def test_estimate_returns_the_faces_the_pipeline_reports_for_the_detections_of_a_first_frame(random_models,
                                                                                              d18_frames, mode):
    detector = create_detector("blazeface")
    try:
        detections = [detector.detect(frame) for frame in d18_frames]
    finally:
        detector.close()
    reported, estimated = [], []
    for frame, found in zip(d18_frames, detections):
        with FacePipeline(random_models, mode=mode) as pipeline:
            reported.append(pipeline.process(frame).faces)
        with FacePipeline(random_models, mode=mode) as pipeline:
            estimated.append(pipeline.estimate(frame, found))
    assert [len(f) for f in estimated] == [len(f) for f in reported] == [1, 1, 1]
    for faces, estimates in zip(reported, estimated):
        for face, estimate in zip(faces, estimates):
            np.testing.assert_array_equal([face.yaw, face.pitch, face.roll], estimate.angles)
            np.testing.assert_array_equal(face.centre, estimate.centre)
            assert face.scale == estimate.scale
            np.testing.assert_array_equal(face.box, estimate.box)
            if mode == "full":
                np.testing.assert_array_equal(face.landmarks, estimate.landmarks)
                np.testing.assert_array_equal(face.visibility, estimate.visibility)
            else:
                assert face.landmarks is None and estimate.landmarks is None and estimate.network_landmarks is None
                np.testing.assert_array_equal(estimate.angles, estimate.network_angles)


@pytest.fixture(scope="module")
def shipped_pipeline():
    """The shipped models in pose mode: a trained network, whose translation follows the face."""
    with FacePipeline(DEFAULT_MODELS_DIR, mode="pose", precision="fp32") as pipeline:
        yield pipeline


def _first_face(pipeline: FacePipeline, frame: np.ndarray):
    (face,) = pipeline.process(frame).faces
    return face


def test_a_face_shifted_in_the_frame_moves_its_centre_by_the_same_pixels(shipped_pipeline, d18_frames):
    frame = d18_frames[0]
    box = _first_face(shipped_pipeline, frame).box
    dx, dy = 37, 21
    shifted = cv2.copyMakeBorder(frame, dy, 0, dx, 0, cv2.BORDER_REPLICATE)
    (before,) = shipped_pipeline.estimate(frame, box[None])
    (after,) = shipped_pipeline.estimate(shifted, (box + [dx, dy, dx, dy])[None])
    np.testing.assert_allclose(after.centre - before.centre, [dx, dy], atol=0.05)
    assert after.scale == pytest.approx(before.scale, rel=1e-3)
    square = before.square
    assert square[0] < before.centre[0] < square[2] and square[1] < before.centre[1] < square[3]


def test_a_face_scaled_twice_as_large_doubles_its_scale(shipped_pipeline, d18_frames):
    frame = d18_frames[0]
    box = _first_face(shipped_pipeline, frame).box
    larger = cv2.resize(frame, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_LINEAR)
    (before,) = shipped_pipeline.estimate(frame, box[None])
    (after,) = shipped_pipeline.estimate(larger, (2.0 * box + 0.5)[None])  # pixel centres: x' = 2x + 0.5
    assert after.scale == pytest.approx(2.0 * before.scale, rel=0.03)
    np.testing.assert_allclose(after.centre, 2.0 * before.centre + 0.5, atol=2.0)


def test_infer_times_the_network_alone_not_a_slow_smoother(random_models, d18_frames, monkeypatch):
    pause_s = 0.4
    with FacePipeline(random_models, mode="pose", smooth=True) as pipeline:
        smooth = pipeline._smoother.smooth

        def slow_smooth(*args, **kwargs):
            time.sleep(pause_s)
            return smooth(*args, **kwargs)

        monkeypatch.setattr(pipeline._smoother, "smooth", slow_smooth)
        timings = pipeline.process(d18_frames[0], 0, 0.0).timings_ms
    assert timings["smooth"] >= pause_s * 1000
    assert timings["infer"] < pause_s * 1000 and timings["crop"] < pause_s * 1000


def test_infer_times_the_network_alone_not_mapping_its_outputs_back(random_models, d18_frames, monkeypatch):
    pause_s = 0.4
    unwarp = crop.unwarp_points

    def slow_unwarp(*args, **kwargs):
        time.sleep(pause_s)
        return unwarp(*args, **kwargs)

    with FacePipeline(random_models, mode="pose") as pipeline:
        pipeline.load()
        monkeypatch.setattr(crop, "unwarp_points", slow_unwarp)
        timings = pipeline.process(d18_frames[0], 0, 0.0).timings_ms
    assert timings["crop"] >= pause_s * 1000 and timings["infer"] < pause_s * 1000 and "smooth" not in timings


def test_full_mode_gives_each_face_an_id_a_pose_and_landmarks_in_frame_pixels(random_models, d18_frames):
    with FacePipeline(random_models, mode="full") as pipeline:
        results = [pipeline.process(f, i, i / 30) for i, f in enumerate(d18_frames)]
    assert [r.mode for r in results] == ["full"] * 3
    assert all(len(r.faces) == 1 for r in results)
    assert len({r.faces[0].face_id for r in results}) == 1
    face = results[0].faces[0]
    square = crop.crop_square(face.box)
    assert face.landmarks.shape == (LANDMARKS, 2) and face.visibility.shape == (LANDMARKS,)
    assert np.all(face.landmarks >= square[:2] - 5) and np.all(face.landmarks <= square[2:] + 5)
    assert face.centre.shape == (2,) and np.isfinite([face.yaw, face.pitch, face.roll, *face.centre]).all()
    assert {"detect", "crop", "infer"} <= set(results[0].timings_ms)


def test_switching_mode_takes_effect_on_the_next_frame(random_models, d18_frames):
    with FacePipeline(random_models, mode="full") as pipeline:
        assert pipeline.process(d18_frames[0]).faces[0].landmarks is not None
        pipeline.set_mode("pose")
        result = pipeline.process(d18_frames[1])
        assert pipeline.mode == "pose" and result.mode == "pose"
        assert result.faces[0].landmarks is None and result.faces[0].visibility is None
        with pytest.raises(ValueError):
            pipeline.set_mode("fast")


def test_smoothing_changes_the_output_of_a_moving_input_only_when_enabled(random_models, d18_frames):
    def second_yaw(smooth: bool) -> float:
        with FacePipeline(random_models, mode="pose", smooth=smooth) as pipeline:
            pipeline.process(d18_frames[0], 0, 0.0)
            return pipeline.process(cv2.flip(d18_frames[0], 1), 1, 1 / 30).faces[0].yaw

    with FacePipeline(random_models, mode="pose") as pipeline:
        raw_first = pipeline.process(d18_frames[0]).faces[0].yaw
    raw, smoothed = second_yaw(False), second_yaw(True)
    assert raw != pytest.approx(raw_first)
    assert abs(smoothed - raw_first) < abs(raw - raw_first)


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32),
                                 np.zeros((0, 10, 3), np.uint8), None])
def test_a_bad_frame_is_a_value_error(random_models, bad):
    with FacePipeline(random_models) as pipeline:
        with pytest.raises(ValueError):
            pipeline.process(bad)


def test_frame_loop_passes_raw_frames_and_timed_results_and_stops_on_request(random_models):
    seen = []
    with FacePipeline(random_models) as pipeline, VideoSource(require_shared("videos", "d18.mp4")) as source:
        loop = FrameLoop(source, pipeline)

        def on_frame(frame, result):
            seen.append((frame.shape, result.index, set(result.timings_ms)))
            if result.index == 4:
                loop.request_stop()

        loop.run(on_frame)
        latest_frame, latest_result = loop.latest()
    assert [index for _, index, _ in seen] == [0, 1, 2, 3, 4]
    assert seen[0][0] == (480, 480, 3)
    assert {"decode", "detect", "crop", "infer"} <= seen[0][2]
    assert latest_result.index == 4 and latest_frame.shape == (480, 480, 3)


def test_frame_loop_hands_frames_before_the_start_index_to_on_skipped(random_models):
    skipped, processed = [], []
    with FacePipeline(random_models) as pipeline, VideoSource(require_shared("videos", "d18.mp4")) as source:
        FrameLoop(source, pipeline, max_frames=5).run(lambda f, r: processed.append(r.index),
                                                       lambda i, t, f: skipped.append(i), start_index=3)
    assert skipped == [0, 1, 2] and processed == [3, 4]


def test_a_tracked_face_is_cropped_where_the_previous_frames_landmarks_put_it(d18_frames):
    with FacePipeline(DEFAULT_MODELS_DIR, mode="full", precision="fp32") as pipeline:
        first, second = (pipeline.process(frame, i, i / 30).faces for i, frame in enumerate(d18_frames[:2]))
    assert len(first) == len(second) == 1 and first[0].face_id == second[0].face_id
    np.testing.assert_allclose(second[0].box, crop.landmark_box(first[0].landmarks))


def test_a_face_shrunk_to_a_quarter_in_a_wide_frame_is_found_and_framed_like_the_full_size_one(d18_frames):
    frame = d18_frames[0]
    canvas = np.full((720, 1280, 3), 114, np.uint8)
    canvas[300:420, 900:1020] = cv2.resize(frame, (120, 120), interpolation=cv2.INTER_AREA)
    with FacePipeline(DEFAULT_MODELS_DIR, mode="full", precision="fp32") as pipeline:
        (big,) = pipeline.process(frame).faces
        pipeline.reset_tracks()
        (small,) = pipeline.process(canvas).faces
    expected = crop.landmark_box(big.landmarks) * 0.25 + np.r_[900, 300, 900, 300] - 0.375
    assert np.abs(small.box - expected).max() < 0.15 * (expected[2] - expected[0])
    assert np.abs([small.yaw - big.yaw, small.pitch - big.pitch, small.roll - big.roll]).max() < 5
