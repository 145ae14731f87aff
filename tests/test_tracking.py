"""FaceTracker: ids stay with moving faces, faces are carried by their own boxes between detections, new faces
get new ids, lost ids are kept through brief misses and never reused, duplicates of one face merge."""
from __future__ import annotations

import numpy as np

from app.core.crop import face_box_from_detection
from app.core.tracking import FaceTracker, iou_matrix


def box(x: float, y: float, size: float = 100.0, score: float = 0.9) -> list[float]:
    return [x, y, x + size, y + size, score]


def ids(assigned) -> list[int]:
    return [a.face_id for a in assigned]


def frame(tracker: FaceTracker, detections, full: bool = True, quick=False, carry: bool = True):
    """One frame: assign, then carry each face by the face box it was cropped from (a perfect network)."""
    assigned = tracker.assign(None if detections is None else np.array(detections).reshape(-1, 5), full, quick, carry)
    tracker.carry(ids(assigned), [a.box for a in assigned])
    return assigned


def test_iou_of_identical_disjoint_and_half_overlapping_boxes():
    a = np.array([box(0, 0)])
    b = np.array([box(0, 0), box(500, 500), box(50, 0)])
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 0.0, 1 / 3]])


def test_ids_follow_faces_that_move_and_swap_order():
    tracker = FaceTracker()
    first = ids(frame(tracker, [box(0, 0), box(300, 0)]))
    assert first == [1, 2]
    for step in range(1, 6):
        moved = [box(300 + 8 * step, 4 * step), box(8 * step, 4 * step)]  # listed in swapped order
        assigned = frame(tracker, moved, carry=False)
        assert {a.face_id: a.box[0] < 200 for a in assigned} == {1: True, 2: False}


def test_a_face_whose_detection_jumps_half_its_side_at_a_smaller_size_keeps_its_id_without_a_duplicate():
    tracker = FaceTracker()
    frame(tracker, [box(1088, 252, 85)], carry=False)
    jumped = [box(1122, 232, 75)]  # as BlazeFace's two ranges boxed one face on consecutive frames: IoU 0.28
    assert iou_matrix(np.array(jumped), np.array([box(1088, 252, 85)]))[0, 0] < tracker.min_iou
    assert ids(frame(tracker, jumped, carry=False)) == [1]
    assert ids(frame(tracker, [box(1121, 232, 75), box(900, 232, 75)], carry=False)) == [1, 2]  # a face beside it is new


def test_a_carried_face_is_cropped_from_its_carried_box_and_a_detection_twice_its_size_is_no_new_face():
    tracker = FaceTracker()
    (first,) = tracker.assign(np.array([box(0, 0)]))
    carried = np.array([20.0, 30.0, 80.0, 90.0])
    tracker.carry([first.face_id], [carried])
    (same,) = tracker.assign(np.array([box(-40, -60, 200)]), full=True)  # twice the face, on the hair
    assert same.face_id == first.face_id and same.detected
    np.testing.assert_array_equal(same.box, carried)


def test_between_full_passes_faces_are_carried_without_a_detection():
    tracker = FaceTracker(full_every=3)
    assert tracker.needs_full_pass()
    frame(tracker, [box(0, 0)])
    passes = []
    for _ in range(6):
        passes.append(tracker.needs_full_pass())
        (carried,) = frame(tracker, [box(0, 0)] if passes[-1] else None, full=passes[-1])
        assert carried.face_id == 1 and carried.detected == passes[-1]
    assert passes == [False, False, True, False, False, True]


def test_a_quick_pass_missing_a_face_it_found_before_asks_for_a_full_pass():
    tracker = FaceTracker()
    frame(tracker, [box(0, 0)], full=True, quick=np.array([True]))
    assert not tracker.quick_missed(np.array([box(3, 2)]))
    assert tracker.quick_missed(np.zeros((0, 5)))
    frame(tracker, [box(400, 400)], full=True, quick=np.array([False]))
    assert not tracker.quick_missed(np.zeros((0, 5)))  # the quick pass never found the new far face


def test_pose_mode_needs_every_face_detected_in_every_frame():
    tracker = FaceTracker()
    frame(tracker, [box(0, 0), box(400, 0)], quick=np.array([True, False]), carry=False)
    assert not tracker.needs_full_pass(carry=True) and tracker.needs_full_pass(carry=False)


def test_a_near_face_missed_for_a_few_frames_keeps_its_id_and_is_not_reported_meanwhile():
    tracker = FaceTracker(max_missed=5)
    (a,) = frame(tracker, [box(0, 0)], quick=True)
    assert frame(tracker, np.zeros((0, 5)), quick=True) == []
    assert tracker.needs_full_pass()
    assert frame(tracker, np.zeros((0, 5)), quick=True) == []
    assert ids(frame(tracker, [box(5, 5)], quick=True)) == [a.face_id]


def test_a_new_face_gets_a_new_id_and_a_lost_id_is_never_reused():
    tracker = FaceTracker(max_missed=1)
    assert ids(frame(tracker, [box(0, 0)], quick=True)) == [1]
    assert ids(frame(tracker, [box(2, 0), box(400, 400)], quick=True)) == [1, 2]
    for _ in range(3):
        frame(tracker, [box(400, 400)], quick=True)
    assert ids(frame(tracker, [box(0, 0), box(400, 400)], quick=True)) == [2, 3]


def test_a_face_whose_crop_frames_no_face_is_lost_until_detected_again():
    tracker = FaceTracker()
    (a,) = tracker.assign(np.array([box(0, 0)]))
    tracker.carry([a.face_id], [None])
    assert tracker.live_ids == [a.face_id] and tracker.needs_full_pass()
    assert tracker.assign(None, full=False) == []
    (again,) = tracker.assign(np.array([box(2, 2)]))
    assert again.face_id == a.face_id
    np.testing.assert_allclose(again.box, face_box_from_detection(np.array(box(2, 2))))


def test_two_tracks_that_converge_on_one_face_merge_into_the_older():
    tracker = FaceTracker()
    first = tracker.assign(np.array([box(0, 0), box(60, 0)]))
    keep = tracker.carry(ids(first), [np.array([10.0, 10.0, 90.0, 90.0]), np.array([12.0, 10.0, 92.0, 90.0])])
    assert keep == [True, False] and tracker.live_ids == [1]


def test_seeded_tracks_continue_their_ids_and_new_ids_come_after():
    tracker = FaceTracker()
    tracker.seed(np.array([face_box_from_detection(np.array(box(0, 0)))]), [7])
    assert tracker.needs_full_pass()
    assert ids(frame(tracker, [box(3, 0), box(400, 0)])) == [7, 8]


def test_a_far_face_missed_by_a_few_full_passes_is_carried_and_then_lost():
    tracker = FaceTracker(max_unconfirmed=2)
    frame(tracker, [box(0, 0, 40)], quick=np.array([False]))
    for _ in range(2):
        assert ids(frame(tracker, np.zeros((0, 5)))) == [1]
        assert tracker.needs_full_pass()
    assert frame(tracker, np.zeros((0, 5))) == []
    assert ids(frame(tracker, [box(1, 1, 40)])) == [1]


def test_a_near_face_missed_by_a_full_pass_is_lost_at_once():
    tracker = FaceTracker(max_unconfirmed=2)
    frame(tracker, [box(0, 0)], quick=np.array([True]))
    assert frame(tracker, np.zeros((0, 5))) == []


def test_without_carrying_a_far_face_missed_by_a_full_pass_is_cropped_from_its_latest_detection():
    tracker = FaceTracker(max_unconfirmed=2)
    (first,) = frame(tracker, [box(0, 0, 40)], quick=np.array([False]), carry=False)
    tracker.carry([first.face_id], [np.array([5.0, 5.0, 45.0, 45.0])])
    (missed,) = tracker.assign(np.zeros((0, 5)), full=True, carry=False)
    assert missed.face_id == first.face_id and not missed.detected
    np.testing.assert_array_equal(missed.box, first.box)
