"""The live plot of one face's yaw, pitch and roll against time, and the rule for which face it follows.

``FaceFollower`` (no Qt) picks the face: the one the user selected by clicking its box, else the
lowest face id in the frame. A selected face that is missing leaves a gap in the curves; once it
has been missing for ``SELECTION_LOST_S`` seconds of video time it is taken to be gone for good
(``app.core.tracking`` drops a track after a few missed frames and never reuses its id) and the
plot falls back to the lowest id present.

``AnglePlot`` keeps the last ``PLOT_WINDOW_S`` seconds of samples, one per frame the viewer shows
(NaN where the followed face was not found, which pyqtgraph draws as a gap; a gap too where the
plot moves to another face, so that two faces' curves are not joined). Adding a sample only
appends to arrays; the curves, the axis range and the readout are redrawn by a timer at most
``MAX_REDRAWS_PER_S`` times a second and only while the plot is visible, so plotting costs the
frame loop nothing and the GUI thread little.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from PyQt6.QtCore import QTimer
from PyQt6.QtGui import QHideEvent, QShowEvent
from PyQt6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

import pyqtgraph as pg  # after PyQt6, so that pyqtgraph binds to it

from app.core.results import FaceResult, FrameResult
from app.core.pose import format_angle

log = logging.getLogger(__name__)

PLOT_WINDOW_S = 10.0
"""Seconds of history the plot shows (video time: a file's own clock, a camera's wall clock)."""
MAX_REDRAWS_PER_S = 15
SELECTION_LOST_S = 2.0
"""How long a selected face may be missing before the plot goes back to the lowest face id."""
MIN_ANGLE_SPAN = 30.0
"""The vertical axis always shows at least ±this many degrees, so that small jitter is not magnified."""
ANGLE_STEP = 15.0
"""The vertical range is widened to multiples of this, so that it changes rarely."""

ANGLES = ("yaw", "pitch", "roll")
CURVE_COLOURS = {"yaw": (70, 215, 70), "pitch": (255, 80, 80), "roll": (90, 150, 255)}
"""RGB, the hues of the axes ``app.core.overlay`` draws, lightened to read on the dark plot: pitch turns
about the x axis (red), yaw about the y axis (green), roll about the z axis (blue)."""
BACKGROUND = (24, 24, 24)
FOREGROUND = (200, 200, 200)


@dataclass(frozen=True)
class Sample:
    """One plotted frame: its time and the followed face's angles (NaN where it was not found)."""

    time_s: float
    face_id: int | None
    yaw: float
    pitch: float
    roll: float


class FaceFollower:
    """Which face of each frame the plot follows: the selected face, else the lowest id present."""

    def __init__(self, lost_after_s: float = SELECTION_LOST_S) -> None:
        self.lost_after_s = lost_after_s
        self.selected: int | None = None
        self._last_seen_s: float | None = None

    def select(self, face_id: int | None) -> None:
        """Follow ``face_id`` from now on; ``None`` goes back to the lowest id."""
        self.selected = face_id
        self._last_seen_s = None

    def follow(self, result: FrameResult) -> FaceResult | None:
        """The face to plot in ``result``; ``None`` (a gap) when the selected face is missing, or there is none."""
        if self.selected is not None:
            for face in result.faces:
                if face.face_id == self.selected:
                    self._last_seen_s = result.time_s
                    return face
            if self._last_seen_s is None:
                self._last_seen_s = result.time_s
            if result.time_s - self._last_seen_s <= self.lost_after_s:
                return None
            log.info("face #%d has gone; the plot follows the lowest face id", self.selected)
            self.select(None)
        return min(result.faces, key=lambda face: face.face_id, default=None)


class AngleAxis(pg.AxisItem):
    """An axis of degrees whose labels never read ``-0`` (``app.core.pose.format_angle``)."""

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        decimals = max(0, math.ceil(-math.log10(spacing * scale))) if spacing * scale > 0 else 0
        return [format_angle(value * scale, decimals) for value in values]


def angle_range(values: np.ndarray) -> tuple[float, float]:
    """The vertical range for ``values`` (degrees, NaN ignored): at least ±``MIN_ANGLE_SPAN``, widened in
    steps of ``ANGLE_STEP`` to take in every value."""
    finite = values[np.isfinite(values)]
    low, high = -MIN_ANGLE_SPAN, MIN_ANGLE_SPAN
    if finite.size:
        low = min(low, math.floor(float(finite.min()) / ANGLE_STEP) * ANGLE_STEP)
        high = max(high, math.ceil(float(finite.max()) / ANGLE_STEP) * ANGLE_STEP)
    return low, high


def readout_html(sample: Sample | None, selected: bool) -> str:
    """The line above the plot, which is its legend: which face, and each angle's name and latest value in its
    curve's colour (a legend inside the plot would cover the curves)."""
    if sample is None:
        who = "No face yet"
    elif sample.face_id is None:
        who = "Selected face not found" if selected else "No face"
    else:
        who = f"Face #{sample.face_id} " + ("(selected)" if selected else "(lowest id; click a face to follow it)")
    parts = []
    for name in ANGLES:
        value = getattr(sample, name) if sample is not None else math.nan
        text = f"{format_angle(value, 0, signed=True)}°" if math.isfinite(value) else "—"
        red, green, blue = CURVE_COLOURS[name]
        parts.append(f'<span style="color: rgb({red},{green},{blue})">■ {name} {text}</span>')
    return f"{who} &nbsp;&nbsp; " + " &nbsp; ".join(parts)


class AnglePlot(QWidget):
    """Scrolling yaw, pitch and roll of the followed face over the last ``PLOT_WINDOW_S`` seconds."""

    def __init__(self, parent: QWidget | None = None, window_s: float = PLOT_WINDOW_S,
                 max_redraws_per_s: int = MAX_REDRAWS_PER_S) -> None:
        super().__init__(parent)
        self.window_s = window_s
        self.follower = FaceFollower()
        self.samples: deque[Sample] = deque()
        self.redraws = 0
        """How many times the curves have been redrawn (the throttle's test reads it)."""
        self._dirty = False

        self.readout = QLabel(readout_html(None, False), self)
        self.readout.setObjectName("angleReadout")
        self.readout.setStyleSheet("QLabel#angleReadout { color: rgb%s; background: rgb%s; padding: 3px 6px; }"
                                   % (FOREGROUND, BACKGROUND))
        self.plot_widget = pg.PlotWidget(self, background=BACKGROUND,
                                         axisItems={"left": AngleAxis(orientation="left")})
        item = self.plot_widget.getPlotItem()
        item.setMenuEnabled(False)
        item.hideButtons()
        item.showGrid(x=True, y=True, alpha=0.2)
        item.setLabel("left", "degrees")
        item.setLabel("bottom", "time", units="s")
        for axis in ("left", "bottom"):
            item.getAxis(axis).setTextPen(pg.mkPen(FOREGROUND))
            item.getAxis(axis).setPen(pg.mkPen(FOREGROUND))
        item.getViewBox().setMouseEnabled(x=False, y=False)
        item.addLine(y=0, pen=pg.mkPen((110, 110, 110), width=1))
        self.curves = {name: item.plot(name=name, pen=pg.mkPen(CURVE_COLOURS[name], width=2), connect="finite")
                       for name in ANGLES}
        item.setXRange(-window_s, 0, padding=0)
        item.setYRange(-MIN_ANGLE_SPAN, MIN_ANGLE_SPAN, padding=0.05)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.readout)
        layout.addWidget(self.plot_widget, 1)
        self.setMinimumHeight(170)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

        self._timer = QTimer(self)
        self._timer.setInterval(math.ceil(1000 / max_redraws_per_s))
        self._timer.timeout.connect(self._redraw_if_changed)

    # --- data -----------------------------------------------------------------------------------

    def add(self, result: FrameResult) -> Sample:
        """Take one frame's result: append the followed face's angles (NaN when there is none). No drawing."""
        if self.samples and result.time_s < self.samples[-1].time_s:
            self.samples.clear()  # the clock went back (a source restarted): start afresh
        face = self.follower.follow(result)
        if face is None:
            sample = Sample(result.time_s, None, math.nan, math.nan, math.nan)
        else:
            sample = Sample(result.time_s, face.face_id, float(face.yaw), float(face.pitch), float(face.roll))
            previous = self.samples[-1].face_id if self.samples else None
            if previous is not None and previous != face.face_id:  # another face: do not join their curves
                self.samples.append(Sample(result.time_s, None, math.nan, math.nan, math.nan))
        self.samples.append(sample)
        while self.samples and self.samples[0].time_s < result.time_s - self.window_s:
            self.samples.popleft()
        self._dirty = True
        return sample

    def select(self, face_id: int | None) -> None:
        """Follow ``face_id`` (the face the user clicked); ``None`` goes back to the lowest id."""
        self.follower.select(face_id)
        self._dirty = True

    @property
    def selected(self) -> int | None:
        """The face the user selected and the plot follows; ``None`` while it follows the lowest id."""
        return self.follower.selected

    def clear(self) -> None:
        """Forget every sample and the selection (a new source opens)."""
        self.samples.clear()
        self.follower.select(None)
        self._dirty = True
        if self.isVisible():
            self._redraw_if_changed()

    def curve_data(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The times and values the curve ``name`` draws now (after the last redraw)."""
        x, y = self.curves[name].getData()
        return (np.asarray(x if x is not None else []), np.asarray(y if y is not None else []))

    # --- drawing --------------------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._timer.start()
        self._redraw_if_changed()

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self._timer.stop()

    def _redraw_if_changed(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        self.redraws += 1
        samples = list(self.samples)
        times = np.array([s.time_s for s in samples], dtype=np.float64)
        values = {name: np.array([getattr(s, name) for s in samples], dtype=np.float64) for name in ANGLES}
        for name, curve in self.curves.items():
            curve.setData(times, values[name], connect="finite")
        end = times[-1] if times.size else 0.0
        start = max(0.0, end - self.window_s)  # a fresh source fills the window from the left
        item = self.plot_widget.getPlotItem()
        item.setXRange(start, start + self.window_s, padding=0)
        low, high = angle_range(np.concatenate(list(values.values())) if samples else np.empty(0))
        item.setYRange(low, high, padding=0.05)
        self.readout.setText(readout_html(samples[-1] if samples else None, self.follower.selected is not None))
