"""IouTracker: ids stay with moving faces, new faces get new ids, lost ids are not reused."""
from __future__ import annotations

import numpy as np

from app.core.tracking import IouTracker, iou_matrix


def box(x: float, y: float, size: float = 100.0, score: float = 0.9) -> list[float]:
    return [x, y, x + size, y + size, score]


def test_iou_of_identical_disjoint_and_half_overlapping_boxes():
    a = np.array([box(0, 0)])
    b = np.array([box(0, 0), box(500, 500), box(50, 0)])
    assert np.allclose(iou_matrix(a, b), [[1.0, 0.0, 50 / 150]])


def test_ids_follow_faces_that_move_and_swap_order():
    tracker = IouTracker()
    first = tracker.update(np.array([box(0, 0), box(300, 0)]))
    assert len(set(first)) == 2
    ids = first
    for step in range(1, 6):
        moved = np.array([box(300 + 8 * step, 4 * step), box(8 * step, 4 * step)])  # listed in swapped order
        ids = tracker.update(moved)
        assert ids == [first[1], first[0]]


def test_a_new_face_gets_a_new_id_and_a_lost_id_is_never_reused():
    tracker = IouTracker(max_missed=2)
    (a,) = tracker.update(np.array([box(0, 0)]))
    a2, b = tracker.update(np.array([box(2, 0), box(400, 400)]))
    assert a2 == a and b not in (a,)
    for _ in range(3):
        tracker.update(np.zeros((0, 5)))
    (c,) = tracker.update(np.array([box(0, 0)]))
    assert c not in (a, b)


def test_a_face_missed_for_a_few_frames_keeps_its_id():
    tracker = IouTracker(max_missed=5)
    (a,) = tracker.update(np.array([box(0, 0)]))
    tracker.update(np.zeros((0, 5)))
    tracker.update(np.zeros((0, 5)))
    assert tracker.update(np.array([box(5, 5)])) == [a]


def test_seeded_tracks_continue_their_ids_and_new_ids_come_after():
    tracker = IouTracker()
    tracker.seed(np.array([[0, 0, 100, 100]]), [7])
    assert tracker.update(np.array([box(3, 0), box(400, 0)])) == [7, 8]
