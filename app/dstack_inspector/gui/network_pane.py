"""What a verification asked of the network: every exchange the report recorded (the answers a re-run replays),
with where each went, what came back and when; selecting one shows its headers and the start of its body.

A report is input like any other (it may come from someone else), so its recording is read defensively: what does
not decode is said in the summary, not raised."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from dstack_verifier.model import Report
from dstack_verifier.net import Exchange
from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .widgets import KeyValueTree

BODY_PREVIEW_BYTES = 4096
COLUMNS = ("#", "Method", "URL", "Status", "Bytes", "Answered at (UTC)")


def recorded_exchanges(report: Report | None) -> tuple[list[Exchange], str | None]:
    """The exchanges of the report's recording input, and a problem when it could not be read."""
    if report is None:
        return [], None
    recordings = [i for i in report.inputs if i.role == "recording" or i.kind == "recording"]
    if not recordings:
        return [], None
    out: list[Exchange] = []
    for item in recordings:
        if item.content_b64 is None:
            return out, f"the recording {item.name} is not kept in the report"
        try:
            doc = json.loads(base64.b64decode(item.content_b64, validate=True))
            out += [Exchange.model_validate(x) for x in doc["exchanges"]]
        except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError, RecursionError):
            return out, f"the recording {item.name} does not decode"
    return out, None


def _decoded(b64: str | None) -> bytes | None:
    try:
        return base64.b64decode(b64 or "", validate=True)
    except (binascii.Error, ValueError):
        return None


def _preview(b64: str | None) -> str:
    body = _decoded(b64)
    if body is None:
        return "(not base64)"
    shown = body[:BODY_PREVIEW_BYTES]
    try:
        text = shown.decode("utf-8")
    except UnicodeDecodeError:
        text = shown.hex()
    more = f" … ({len(body) - len(shown)} more bytes)" if len(body) > len(shown) else ""
    return text + more


def _time(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return str(seconds)


class NetworkPane(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.detail = KeyValueTree()
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.detail)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary)
        layout.addWidget(splitter, 1)
        self.exchanges: list[Exchange] = []
        self.table.currentCellChanged.connect(self._on_current)
        self.set_report(None)

    def set_report(self, report: Report | None) -> None:
        self.exchanges, problem = recorded_exchanges(report)
        self.table.setRowCount(len(self.exchanges))
        for row, x in enumerate(self.exchanges):
            body = _decoded(x.body)
            cells = (str(row), x.method, x.url, str(x.status), "?" if body is None else str(len(body)),
                     _time(x.fetched_at))
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        self.detail.set_data([])
        hosts = sorted({x.url.split("/")[2] if "://" in x.url else x.url for x in self.exchanges})
        if report is None:
            text = "No report."
        elif self.exchanges:
            text = (f"{len(self.exchanges)} recorded exchange(s) with {len(hosts)} host(s): {', '.join(hosts)}. "
                    "A re-run answers from them. A Cloud answer and collateral fetched are inputs of their own "
                    "(the Inputs tab); image downloads are not kept.")
        else:
            text = "Nothing was asked of the network, or nothing that a re-run needs was recorded."
        self.summary.setText(text + (f" Note: {problem}." if problem else ""))
        if self.exchanges:
            self.table.selectRow(0)

    @Slot(int, int, int, int)
    def _on_current(self, row: int, _col: int, _prev_row: int, _prev_col: int) -> None:
        if not 0 <= row < len(self.exchanges):
            self.detail.set_data([])
            return
        x = self.exchanges[row]
        request: dict[str, Any] = {"method": x.method, "url": x.url, "headers": x.request_headers}
        if x.request_body:
            request["body"] = _preview(x.request_body)
        response = {"status": x.status, "answered_at": _time(x.fetched_at), "headers": x.headers,
                    "body": _preview(x.body)}
        self.detail.set_data([("Request", request), ("Response", response)], expand_depth=2)
