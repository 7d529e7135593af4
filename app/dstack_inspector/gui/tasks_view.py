"""The running verifications: one row each with its title, its current step and a cancel button; several at once."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget


class _TaskRow(QWidget):
    def __init__(self, number: int, title: str, cancel: Signal, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel(f"#{number} {title}")
        self.title.setToolTip(title)
        self.step = QLabel("queued")
        self.step.setStyleSheet("color: palette(mid);")
        bar = QProgressBar()
        bar.setRange(0, 0)
        bar.setMaximumHeight(10)
        bar.setTextVisible(False)
        self.cancel = QPushButton("Cancel")
        self.cancel.clicked.connect(lambda: cancel.emit(number))
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.title, 1)
        top.addWidget(self.cancel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.setSpacing(1)
        layout.addLayout(top)
        layout.addWidget(bar)
        layout.addWidget(self.step)


class TasksView(QWidget):
    """`cancel_requested(number)` when a row's Cancel is clicked."""

    cancel_requested = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: dict[int, _TaskRow] = {}
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._empty = QLabel("No verification running")
        self._empty.setStyleSheet("color: palette(mid); padding: 4px;")
        self._layout.addWidget(self._empty)
        self._layout.addStretch(1)

    def add(self, number: int, title: str) -> None:
        row = _TaskRow(number, title, self.cancel_requested)
        self._rows[number] = row
        self._layout.insertWidget(self._layout.count() - 1, row)
        self._empty.hide()

    def set_step(self, number: int, text: str) -> None:
        row = self._rows.get(number)
        if row is not None:
            row.step.setText(text)

    def remove(self, number: int) -> None:
        row = self._rows.pop(number, None)
        if row is not None:
            row.setParent(None)
            row.deleteLater()
        self._empty.setVisible(not self._rows)

    def numbers(self) -> list[int]:
        return list(self._rows)

    def step_text(self, number: int) -> str:
        return self._rows[number].step.text()
