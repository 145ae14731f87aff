"""Draws a ``FrameResult`` onto its frame: pose axes, angles, boxes and landmarks.

Only what the frame shows is drawn, never the rate or stage times: those change from run to run,
and an annotated video should depend on its input alone (the viewer shows them in its status bar).
Angles are whole degrees with a sign and never ``-0`` (``pose.format_angle``).

Colours (BGR): the head's x axis red, y axis green, z axis (the facing direction) blue, as
``pose.axes_endpoints`` gives them; landmarks green where the model thinks them visible
(probability ≥ ``VISIBLE_THRESHOLD``) and red where occluded. The axes start at the box centre and
are as long as ``AXIS_SCALE`` × the box side, so they scale with the face. A face the quality scorer
judged not to be one (``FaceResult.valid`` False, ``app.core.quality``) is drawn all in ``INVALID_COLOUR``:
box, label, axes and landmarks.
"""
from __future__ import annotations

import dataclasses
import time

import cv2
import numpy as np

from app.core.pose import axes_endpoints, format_angle
from app.core.results import FaceResult, FrameResult

RED = (0, 0, 255)
GREEN = (0, 255, 0)
BLUE = (255, 0, 0)
BOX_COLOUR = (0, 215, 255)
TEXT_COLOUR = (255, 255, 255)
SHADOW_COLOUR = (0, 0, 0)
AXIS_COLOURS = (RED, GREEN, BLUE)
INVALID_COLOUR = (128, 128, 128)
VISIBLE_THRESHOLD = 0.5
AXIS_SCALE = 0.6


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float,
          colour: tuple[int, int, int] = TEXT_COLOUR) -> None:
    """Text (white by default) with a dark outline, legible on any background."""
    thickness = max(1, round(scale * 2))
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, SHADOW_COLOUR, thickness + 2, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def _point(xy: np.ndarray) -> tuple[int, int]:
    return int(round(float(xy[0]))), int(round(float(xy[1])))


def draw_axes(image: np.ndarray, face: FaceResult) -> None:
    """The head's x (red), y (green) and z (blue, facing) axes from the box centre, drawn in place (grey for an
    invalid face)."""
    box = np.asarray(face.box, dtype=np.float64)
    centre = (box[:2] + box[2:4]) / 2
    length = AXIS_SCALE * max(box[2] - box[0], box[3] - box[1])
    ends = axes_endpoints(np.array([face.yaw, face.pitch, face.roll]), centre, length)
    thickness = max(2, round(length / 40))
    for end, colour in zip(ends, AXIS_COLOURS if face.valid else (INVALID_COLOUR,) * 3):
        cv2.line(image, _point(centre), _point(end), colour, thickness, cv2.LINE_AA)


def draw_landmarks(image: np.ndarray, face: FaceResult) -> None:
    """Landmarks as dots, green when visible and red when occluded (grey for an invalid face), drawn in place."""
    if face.landmarks is None:
        return
    box = np.asarray(face.box, dtype=np.float64)
    radius = max(1, round(max(box[2] - box[0], box[3] - box[1]) / 100))
    visible = np.ones(len(face.landmarks), bool) if face.visibility is None \
        else np.asarray(face.visibility) >= VISIBLE_THRESHOLD
    for xy, seen in zip(face.landmarks, visible):
        if np.all(np.isfinite(xy)):
            colour = (GREEN if seen else RED) if face.valid else INVALID_COLOUR
            cv2.circle(image, _point(xy), radius, colour, -1, cv2.LINE_AA)


def draw_overlay(frame_bgr: np.ndarray, result: FrameResult, show_axes: bool = True, show_landmarks: bool = True,
                 show_box: bool = True) -> np.ndarray:
    """An annotated copy of ``frame_bgr``: per face the box, id and angles, landmarks and axes; nothing about the
    run (rates and stage times belong in the summary and the viewer's status bar). Invalid faces come out grey."""
    image = frame_bgr.copy()
    height, width = image.shape[:2]
    scale = max(0.35, min(width, height) / 900)
    line_height = int(32 * scale) + 4
    for face in result.faces:
        box = np.asarray(face.box, dtype=np.float64)
        if show_box:
            cv2.rectangle(image, _point(box[:2]), _point(box[2:4]), BOX_COLOUR if face.valid else INVALID_COLOUR,
                          max(1, round(scale * 2)), cv2.LINE_AA)
        if show_landmarks:
            draw_landmarks(image, face)
        if show_axes:
            draw_axes(image, face)
        yaw, pitch, roll = (format_angle(v, 0, signed=True) for v in (face.yaw, face.pitch, face.roll))
        label = f"#{face.face_id} yaw {yaw} pitch {pitch} roll {roll}"
        x, y = _point(box[:2])
        _text(image, label, (max(0, x), max(line_height, y - 6)), scale, TEXT_COLOUR if face.valid else INVALID_COLOUR)
    return image


def draw_timed(frame_bgr: np.ndarray, result: FrameResult, show_axes: bool = True, show_landmarks: bool = True,
               show_box: bool = True) -> tuple[np.ndarray, FrameResult]:
    """``draw_overlay``'s image, and ``result`` with the milliseconds it took added as the ``overlay`` stage:
    how the headless command, the viewer and the benchmark all time drawing."""
    start = time.perf_counter()
    image = draw_overlay(frame_bgr, result, show_axes, show_landmarks, show_box)
    overlay_ms = (time.perf_counter() - start) * 1000.0
    return image, dataclasses.replace(result, timings_ms={**result.timings_ms, "overlay": overlay_ms})
