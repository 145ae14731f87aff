"""Landmark layouts: point count, the left-right permutation used by mirroring, and the eye points for NME."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LandmarkLayout:
    """One annotation scheme. Indices are 0-based; ``outer_eyes`` are the two outer eye corners
    (inter-ocular distance), ``left_eye``/``right_eye`` the points whose mean is each pupil."""

    name: str
    count: int
    flip: tuple[int, ...]
    outer_eyes: tuple[int, int]
    left_eye: tuple[int, ...]
    right_eye: tuple[int, ...]

    def flip_array(self) -> np.ndarray:
        """The permutation as an index array: mirrored landmark ``i`` is original ``flip[i]``."""
        return np.asarray(self.flip, dtype=np.int64)


def _ibug68_flip() -> tuple[int, ...]:
    pairs = [(i, 16 - i) for i in range(8)]                      # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]                # brows
    pairs += [(31, 35), (32, 34)]                                # nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (60, 64), (61, 63), (67, 65), (59, 55), (58, 56)]  # mouth
    perm = list(range(68))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


def _pairs_to_perm(count: int, pairs: list[tuple[int, int]]) -> tuple[int, ...]:
    perm = list(range(count))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


def _wflw98_flip() -> tuple[int, ...]:
    pairs = [(i, 32 - i) for i in range(16)]                     # contour 0–32
    pairs += [(33 + i, 46 - i) for i in range(5)]                # upper brows 33–37 ↔ 42–46
    pairs += [(38 + i, 50 - i) for i in range(4)]                # lower brows 38–41 ↔ 47–50
    pairs += [(55, 59), (56, 58)]                                # nose bottom
    pairs += [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]  # eyes
    pairs += [(76, 82), (77, 81), (78, 80), (87, 83), (86, 84), (88, 92), (89, 91), (95, 93), (96, 97)]
    return _pairs_to_perm(98, pairs)


IBUG68 = LandmarkLayout("ibug68", 68, _ibug68_flip(), (36, 45), tuple(range(36, 42)), tuple(range(42, 48)))
COFW29 = LandmarkLayout(
    "cofw29", 29,
    _pairs_to_perm(29, [(0, 1), (2, 3), (4, 6), (5, 7), (8, 9), (10, 11), (12, 14), (13, 15), (16, 17),
                        (18, 19), (22, 23)]),
    (8, 9), (8, 10, 12, 13), (9, 11, 14, 15),
)
WFLW98 = LandmarkLayout("wflw98", 98, _wflw98_flip(), (60, 72), (96,), (97,))
AFLW21 = LandmarkLayout(
    "aflw21", 21,
    _pairs_to_perm(21, [(0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 14), (15, 17), (18, 20)]),
    (6, 11), (7,), (10,),
)

LAYOUTS = {layout.count: layout for layout in (IBUG68, COFW29, WFLW98, AFLW21)}


def layout_for(count: int) -> LandmarkLayout:
    """The layout with ``count`` landmarks (68, 29, 98 or 21)."""
    if count not in LAYOUTS:
        raise ValueError(f"no landmark layout with {count} points (known: {sorted(LAYOUTS)})")
    return LAYOUTS[count]
