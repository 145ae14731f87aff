"""FacePipeline and FrameLoop: faces in frame coordinates, crops that map back, mode switches, stops."""
from __future__ import annotations


import cv2
import numpy as np
import pytest

from app.core import crop
from app.core.pipeline import FacePipeline, FrameLoop, crop_faces, crop_square
from app.core.video import VideoSource
from tests.conftest import require_shared
from tests.model_fixtures import INPUT_SIZE, LANDMARKS, random_models  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def d18_frames() -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(require_shared("videos", "d18.mp4")))
    frames = [capture.read()[1] for _ in range(3)]
    capture.release()
    return frames


def test_the_crop_square_is_the_matching_face_box_enlarged_30_percent():
    box = np.array([100.0, 50.0, 200.0, 170.0])
    square = crop_square(box)
    face = crop.face_box_from_detection(box)
    assert square[2] - square[0] == pytest.approx(1.3 * (face[2] - face[0]))
    assert square[3] - square[1] == pytest.approx(square[2] - square[0])
    assert np.allclose((square[:2] + square[2:]) / 2, (face[:2] + face[2:]) / 2)


def test_crop_maps_back_onto_its_square():
    frame = np.zeros((300, 400, 3), np.uint8)
    frame[100:200, 150:250] = 255
    box = np.array([150.0, 100.0, 250.0, 200.0])
    crops, (transform,) = crop_faces(frame, box[None], INPUT_SIZE)
    assert crops.shape == (1, INPUT_SIZE, INPUT_SIZE, 3)
    corners = crop.unwarp_points(np.array([[-0.5, -0.5], [INPUT_SIZE - 0.5, INPUT_SIZE - 0.5]]), transform)
    assert np.allclose(corners.ravel(), crop_square(box), atol=1e-6)
    points = np.array([[160.0, 110.0], [240.5, 199.0]])
    assert np.allclose(crop.unwarp_points(crop.warp_points(points, transform), transform), points)
    white = crops[0, :, :, 0] > 127
    side = crop_square(box)[2] - crop_square(box)[0]
    assert abs(white.mean() - (100.0 / side) ** 2) < 0.03


def test_face_boxes_are_cropped_as_training_crops_them_without_the_detector_mapping():
    frame = np.zeros((300, 400, 3), np.uint8)
    box = np.array([150.0, 100.0, 250.0, 200.0])
    _, (as_face,) = crop_faces(frame, box[None], INPUT_SIZE, face_boxes=True)
    _, (as_detection,) = crop_faces(frame, box[None], INPUT_SIZE)
    corners = np.array([[-0.5, -0.5], [INPUT_SIZE - 0.5, INPUT_SIZE - 0.5]])
    assert np.allclose(crop.unwarp_points(corners, as_face).ravel(), crop.square_box(box), atol=1e-6)
    assert not np.allclose(crop.unwarp_points(corners, as_detection).ravel(), crop.square_box(box), atol=1.0)


def test_full_mode_gives_each_face_an_id_a_pose_and_landmarks_in_frame_pixels(random_models, d18_frames):
    with FacePipeline(random_models, mode="full") as pipeline:
        results = [pipeline.process(f, i, i / 30) for i, f in enumerate(d18_frames)]
    assert [r.mode for r in results] == ["full"] * 3
    assert all(len(r.faces) == 1 for r in results)
    assert len({r.faces[0].face_id for r in results}) == 1
    face = results[0].faces[0]
    square = crop_square(face.box)
    assert face.landmarks.shape == (LANDMARKS, 2) and face.visibility.shape == (LANDMARKS,)
    assert np.all(face.landmarks >= square[:2] - 5) and np.all(face.landmarks <= square[2:] + 5)
    assert face.translation.shape == (3,) and np.isfinite([face.yaw, face.pitch, face.roll]).all()
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
