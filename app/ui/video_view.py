"""The widget that shows the annotated video, a message over it, takes dropped video files and clicks.

Frames arrive already annotated (``app.core.overlay`` draws in the worker); this widget only wraps
the BGR array in a ``QImage``, keeps the pixmap, and paints it scaled to fit with its aspect ratio.
A left click on the picture is reported in frame pixels (``frame_clicked``), so the window can tell
which face was clicked; the selected face's box is outlined here, in the GUI, not in the frame.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QPointF, QRect, QRectF, QSize, Qt, pyqtSignal
from PyQt6.QtGui import (QColor, QDragEnterEvent, QDropEvent, QImage, QMouseEvent, QPainter, QPaintEvent, QPen, QPixmap,
                         QResizeEvent)
from PyQt6.QtWidgets import QLabel, QSizePolicy, QWidget

log = logging.getLogger(__name__)


def bgr_to_qimage(frame_bgr: np.ndarray) -> QImage:
    """A ``QImage`` that owns a copy of an ``(H, W, 3)`` uint8 BGR frame (no pixel arithmetic, only wrapping)."""
    frame = np.ascontiguousarray(frame_bgr)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 BGR frame, got {frame.shape} {frame.dtype}")
    height, width = frame.shape[:2]
    image = QImage(frame.data, width, height, frame.strides[0], QImage.Format.Format_BGR888)
    return image.copy()


def local_files(event: QDragEnterEvent | QDropEvent) -> list[Path]:
    """The local files a drag carries (URLs that are not local files are ignored)."""
    mime = event.mimeData()
    if mime is None or not mime.hasUrls():
        return []
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]


class VideoView(QWidget):
    """Paints the latest frame scaled to fit, with an optional message label over it; accepts file drops.

    ``frame_clicked(x, y)``: a left click on the picture, in frame pixels (OpenCV's: pixel centres at
    integers, like the boxes of ``app.core``).
    """

    file_dropped = pyqtSignal(Path)
    frame_clicked = pyqtSignal(float, float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._pixmap: QPixmap | None = None
        self._highlight: tuple[float, float, float, float] | None = None
        self.setAcceptDrops(True)
        self.setMinimumSize(320, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAutoFillBackground(False)
        self._message = QLabel(self)
        self._message.setObjectName("videoMessage")
        self._message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._message.setWordWrap(True)
        self._message.setStyleSheet(
            "QLabel#videoMessage { color: white; background: rgba(0, 0, 0, 170);"
            " border-radius: 8px; padding: 12px; font-size: 15px; }")
        self._message.hide()

    def sizeHint(self) -> QSize:
        return QSize(800, 600)

    def pixmap(self) -> QPixmap | None:
        """The frame shown now, at the video's own resolution; ``None`` before the first frame."""
        return self._pixmap

    def set_frame(self, frame_bgr: np.ndarray) -> None:
        """Show an annotated BGR frame; called in the GUI thread only."""
        self._pixmap = QPixmap.fromImage(bgr_to_qimage(frame_bgr))
        self.update()

    def clear_frame(self) -> None:
        """Forget the frame shown and the outline (e.g. when a new source opens)."""
        self._pixmap = None
        self._highlight = None
        self.update()

    def set_highlight(self, box: tuple[float, float, float, float] | None) -> None:
        """Outline ``box`` (x1, y1, x2, y2 in frame pixels: the selected face) over the picture; ``None``: none."""
        self._highlight = None if box is None else tuple(float(v) for v in box)  # type: ignore[assignment]
        self.update()

    def highlight(self) -> tuple[float, float, float, float] | None:
        """The box outlined now, in frame pixels; ``None`` when none is."""
        return self._highlight

    def frame_to_widget(self, x: float, y: float) -> QPointF:
        """Where frame pixel ``(x, y)`` is painted in this widget; ``ValueError`` before the first frame."""
        rect = self.target_rect()
        if rect.isEmpty():
            raise ValueError("no frame is shown")
        sx = rect.width() / self._pixmap.width()
        sy = rect.height() / self._pixmap.height()
        return QPointF(rect.x() + (x + 0.5) * sx, rect.y() + (y + 0.5) * sy)

    def widget_to_frame(self, point: QPointF) -> tuple[float, float] | None:
        """The frame pixel under ``point`` (widget coordinates); ``None`` off the picture or before a frame."""
        rect = self.target_rect()
        if rect.isEmpty() or not QRectF(rect).contains(point):
            return None
        x = (point.x() - rect.x()) * self._pixmap.width() / rect.width() - 0.5
        y = (point.y() - rect.y()) * self._pixmap.height() / rect.height() - 0.5
        return x, y

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            super().mousePressEvent(event)
            return
        where = self.widget_to_frame(event.position())
        if where is None:
            super().mousePressEvent(event)
            return
        event.accept()
        self.frame_clicked.emit(*where)

    def message(self) -> str:
        """The message shown over the video; empty when none is."""
        return "" if self._message.isHidden() else self._message.text()

    def show_message(self, text: str) -> None:
        """Show ``text`` over the video area (no source, a failed camera, a missing model …)."""
        self._message.setText(text)
        self._message.show()
        self._place_message()

    def clear_message(self) -> None:
        """Hide the message."""
        self._message.clear()
        self._message.hide()

    def _place_message(self) -> None:
        width = max(200, int(self.width() * 0.8))
        self._message.setFixedWidth(min(width, self.width()))
        self._message.adjustSize()
        x = (self.width() - self._message.width()) // 2
        y = (self.height() - self._message.height()) // 2
        self._message.move(max(0, x), max(0, y))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if not self._message.isHidden():
            self._place_message()

    def target_rect(self) -> QRect:
        """Where the pixmap is painted: scaled to fit the widget, aspect ratio kept, centred."""
        if self._pixmap is None or self._pixmap.isNull():
            return QRect()
        size = self._pixmap.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        x = (self.width() - size.width()) // 2
        y = (self.height() - size.height()) // 2
        return QRect(x, y, size.width(), size.height())

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(24, 24, 24))
        if self._pixmap is not None and not self._pixmap.isNull():
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawPixmap(self.target_rect(), self._pixmap)
            if self._highlight is not None:
                x1, y1, x2, y2 = self._highlight
                corner, far = self.frame_to_widget(x1, y1), self.frame_to_widget(x2, y2)
                pen = QPen(QColor(255, 255, 255), 2, Qt.PenStyle.DashLine)
                painter.setPen(pen)
                painter.drawRect(QRectF(corner, far).adjusted(-4, -4, 4, 4))
        painter.end()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if local_files(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        files = local_files(event)
        if not files:
            event.ignore()
            return
        event.acceptProposedAction()
        if len(files) > 1:
            log.info("%d files dropped; opening the first, %s", len(files), files[0])
        self.file_dropped.emit(files[0])
