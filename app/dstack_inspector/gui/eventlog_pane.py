"""The event log of one entity as a table: per event its register, type, name, payload, the digest the log
records, the digest the verifier recomputed, and whether they agree — with a detail area for the selected event.

Nothing is recomputed here: RTMR3 digests come from the `eventlog.rtmr3_payloads` check (recomputed from type, name
and payload), RTMR0–2 digests from the entity's OS measurement (recomputed from the image). The table shows the
report's own results side by side with the log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dstack_verifier.eventlog import RUNTIME_EVENT_TYPE, Event, decode_payload, runtime_preimage
from dstack_verifier.model import Report
from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    Slot,
)
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from .copying import FULL_TEXT_ROLE
from .vocabulary import STATUS_COLORS, fixed_font, status_icon
from .widgets import KeyValueTree

MATCH = "match"
MISMATCH = "mismatch"
RECOMPUTED = "recomputed"  # no digest in the log to compare with: the recomputed digest is the one replayed
NOT_RECOMPUTED = "not recomputed"
EVENT_STATUSES = (MATCH, MISMATCH, RECOMPUTED, NOT_RECOMPUTED)
# Shown with the check statuses' colours and icons, so the vocabulary is the same everywhere.
_STATUS_LOOK = {MATCH: "pass", MISMATCH: "fail", RECOMPUTED: "pass", NOT_RECOMPUTED: "skip"}
_STATUS_TIPS = {
    MATCH: "the recorded digest equals the recomputed one",
    MISMATCH: "the recorded digest differs from the recomputed one",
    RECOMPUTED: "the log records no digest (dstack strips runtime digests); the digest recomputed from the payload "
                "is the one replayed into the register",
    NOT_RECOMPUTED: "nothing recomputed this digest: it is taken from the log as it is",
}

# TCG PC Client / UEFI event types, and dstack's runtime event type.
EVENT_TYPE_NAMES = {
    0x0: "EV_PREBOOT_CERT", 0x1: "EV_POST_CODE", 0x3: "EV_NO_ACTION", 0x4: "EV_SEPARATOR", 0x5: "EV_ACTION",
    0x6: "EV_EVENT_TAG", 0x7: "EV_S_CRTM_CONTENTS", 0x8: "EV_S_CRTM_VERSION", 0x9: "EV_CPU_MICROCODE",
    0xA: "EV_PLATFORM_CONFIG_FLAGS", 0xB: "EV_TABLE_OF_DEVICES", 0xC: "EV_COMPACT_HASH", 0xD: "EV_IPL",
    0xE: "EV_IPL_PARTITION_DATA", 0xF: "EV_NONHOST_CODE", 0x10: "EV_NONHOST_CONFIG", 0x11: "EV_NONHOST_INFO",
    0x12: "EV_OMIT_BOOT_DEVICE_EVENTS",
    0x80000001: "EV_EFI_VARIABLE_DRIVER_CONFIG", 0x80000002: "EV_EFI_VARIABLE_BOOT",
    0x80000003: "EV_EFI_BOOT_SERVICES_APPLICATION", 0x80000004: "EV_EFI_BOOT_SERVICES_DRIVER",
    0x80000005: "EV_EFI_RUNTIME_SERVICES_DRIVER", 0x80000006: "EV_EFI_GPT_EVENT", 0x80000007: "EV_EFI_ACTION",
    0x80000008: "EV_EFI_PLATFORM_FIRMWARE_BLOB", 0x80000009: "EV_EFI_HANDOFF_TABLES",
    0x8000000A: "EV_EFI_PLATFORM_FIRMWARE_BLOB2", 0x8000000B: "EV_EFI_HANDOFF_TABLES2",
    0x8000000C: "EV_EFI_VARIABLE_BOOT2", 0x80000010: "EV_EFI_HCRTM_EVENT", 0x800000E0: "EV_EFI_VARIABLE_AUTHORITY",
    0x800000E1: "EV_EFI_SPDM_FIRMWARE_BLOB", 0x800000E2: "EV_EFI_SPDM_FIRMWARE_CONFIG",
    RUNTIME_EVENT_TYPE: "DSTACK_RUNTIME_EVENT",
}
PAYLOAD_CELL_CHARS = 64
TOOLTIP_CHARS = 2048
DIGEST_CELL_CHARS = 16


def event_type_name(event_type: int) -> str:
    return EVENT_TYPE_NAMES.get(event_type, "unknown type")


def _hex_bytes(value: Any) -> bytes | None:
    """Bytes of a hex field of the report; None when the field is not hex (a hand-edited or foreign report)."""
    if not isinstance(value, str):
        return None
    try:
        return bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        return None


def _dict(value: Any) -> dict[str, Any]:  # a report may be hand-edited: what is not an object holds nothing
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any, default: int = -1) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


@dataclass
class EventRow:
    index: int  # position in the event log
    register: int  # the log's imr: 0–3 are RTMR0–3
    event_type: int
    name: str
    payload: bytes | None  # None: the log's payload is not hex
    payload_text: str  # decoded for known runtime events, hex otherwise
    decoded: bool
    recorded: str  # hex; "" when the log carries no digest
    recomputed: str | None
    status: str
    what: str = ""  # what the measurement says the event is (RTMR0–2)
    source: str = ""  # where the recomputed digest comes from
    note: str = ""
    preimage: str = ""  # hex: the bytes whose SHA-384 is the recomputed digest (runtime events), to redo by hand
    varies_with: str = ""  # what the expected digest changes with (RTMR0-2): where to look when it differs

    @property
    def register_name(self) -> str:
        return f"RTMR{self.register}" if 0 <= self.register <= 3 else f"IMR {self.register}"


def _check_details(report: Report, entity: str, check_id: str) -> dict[str, Any]:
    check = next((c for c in report.checks if c.entity == entity and c.id == check_id), None)
    return check.details if check is not None else {}


def _payload_text(name: str, register: int, payload: bytes | None) -> tuple[str, bool]:
    if payload is None:
        return "(payload is not hex)", False
    if not payload:
        return "", False
    if register == 3:
        decoded = decode_payload(name, payload)
        if isinstance(decoded, str):
            return decoded, True
        if decoded is not None:
            return json.dumps(decoded, ensure_ascii=False, sort_keys=True), True
    elif payload.isascii() and payload.decode("ascii").isprintable():
        return payload.decode("ascii"), True  # e.g. QEMU's "ACPI DATA" tags
    return payload.hex(), False


def _digest_status(recorded: str, recomputed: str) -> str:
    # Shorter digests are zero-padded to 48 bytes before being extended, as the replay does.
    padded = recorded.ljust(96, "0") if recorded and len(recorded) < 96 else recorded
    return MATCH if padded.lower() == recomputed.lower() else MISMATCH


def _preimage(row: EventRow, version: object) -> str:
    if row.payload is None or row.event_type != RUNTIME_EVENT_TYPE or version not in (1, 2):
        return ""
    try:
        event = Event(imr=3, event_type=row.event_type, name=row.name, payload=row.payload, version=version)
    except ValueError:  # a hand-edited report: nothing to show rather than a wrong preimage
        return ""
    return runtime_preimage(event).hex()


def event_rows(report: Report, entity: str) -> list[EventRow]:
    """The rows of the table for `entity`; empty when the report has no event log for it."""
    data = _dict(report.entities.get(entity))
    events = _list(_dict(data.get("event_log")).get("events"))
    runtime = {_int(r.get("index")): r for r in _list(_check_details(report, entity, "eventlog.rtmr3_payloads")
               .get("events")) if isinstance(r, dict)}
    measured = {(str(m.get("register")), _int(m.get("index"))): m
                for m in _list(_dict(data.get("measurement")).get("events")) if isinstance(m, dict)}
    position: dict[int, int] = {}  # events seen so far per register: the measurement's index within a register
    rows = []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            continue
        register = _int(event.get("imr"))
        nth = position.get(register, 0)
        position[register] = nth + 1
        name = event.get("event") if isinstance(event.get("event"), str) else ""
        payload = _hex_bytes(event.get("event_payload", ""))
        text, decoded = _payload_text(name, register, payload)
        recorded = event.get("digest") if isinstance(event.get("digest"), str) else ""
        row = EventRow(index=index, register=register, event_type=_int(event.get("event_type")), name=name,
                       payload=payload, payload_text=text, decoded=decoded, recorded=recorded.lower(),
                       recomputed=None, status=NOT_RECOMPUTED)
        if register == 3 and index in runtime:
            r = runtime[index]
            row.recomputed = r.get("recomputed_digest")
            row.source = f"recomputed from (type, name, payload), V{r.get('version', 1)} preimage"
            row.preimage = _preimage(row, r.get("version"))
            if r.get("preimage_matches") is False:
                row.status, row.note = MISMATCH, "the preimage in the log is not the canonical encoding"
            elif recorded and row.recomputed:
                row.status = _digest_status(recorded, row.recomputed)
            elif row.recomputed:
                row.status = RECOMPUTED
        elif 0 <= register <= 2 and (f"rtmr{register}", nth) in measured:
            m = measured[(f"rtmr{register}", nth)]
            row.what, row.source = str(m.get("what", "")), str(m.get("source", ""))
            row.varies_with = str(m.get("varies_with") or "")
            if row.source == "event-log-only":
                row.note = "the measurement took this digest from the event log itself"
            elif isinstance(m.get("digest"), str):
                row.recomputed = m["digest"]
                row.status = _digest_status(recorded, row.recomputed) if recorded else RECOMPUTED
        rows.append(row)
    return rows


def _elide(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


COLUMNS = ("#", "Register", "Type", "Name", "Payload", "Recorded digest", "Recomputed digest", "Status")
COL_INDEX, COL_REGISTER, COL_TYPE, COL_NAME, COL_PAYLOAD, COL_RECORDED, COL_RECOMPUTED, COL_STATUS = range(8)
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ROW_ROLE = Qt.ItemDataRole.UserRole + 2


class EventLogModel(QAbstractTableModel):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[EventRow] = []
        self._mono = fixed_font()

    def set_rows(self, rows: list[EventRow]) -> None:
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def _display(self, row: EventRow, col: int) -> str:
        if col == COL_INDEX:
            return str(row.index)
        if col == COL_REGISTER:
            return row.register_name
        if col == COL_TYPE:
            return EVENT_TYPE_NAMES.get(row.event_type, f"0x{row.event_type:08x}")
        if col == COL_NAME:
            return row.name or row.what
        if col == COL_PAYLOAD:
            return _elide(row.payload_text, PAYLOAD_CELL_CHARS)
        if col == COL_RECORDED:
            return _elide(row.recorded, DIGEST_CELL_CHARS) if row.recorded else "(not recorded)"
        if col == COL_RECOMPUTED:
            return _elide(row.recomputed, DIGEST_CELL_CHARS) if row.recomputed else "—"
        return row.status

    def _tooltip(self, row: EventRow, col: int) -> str | None:
        if col == COL_PAYLOAD and row.payload_text:
            return _elide(row.payload_text, TOOLTIP_CHARS)
        if col == COL_RECORDED:
            return row.recorded or "the log carries no digest for this event"
        if col == COL_RECOMPUTED:
            return f"{row.recomputed}\n{row.source}" if row.recomputed else (row.note or _STATUS_TIPS[NOT_RECOMPUTED])
        if col == COL_STATUS:
            return _STATUS_TIPS[row.status] + (f" — {row.note}" if row.note else "")
        if col == COL_NAME and row.what:
            return row.what
        if col == COL_TYPE:
            return f"{event_type_name(row.event_type)} (0x{row.event_type:08x})"
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row, col = self.rows[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(row, col)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(row, col)
        if role == FULL_TEXT_ROLE:  # what a copy takes: the cells above are cut to fit
            return {COL_PAYLOAD: row.payload_text, COL_RECORDED: row.recorded,
                    COL_RECOMPUTED: row.recomputed}.get(col) or None
        if role == SORT_ROLE:
            return row.index if col == COL_INDEX else (row.register, row.index) if col == COL_REGISTER else \
                self._display(row, col)
        if role == ROW_ROLE:
            return row
        if role == Qt.ItemDataRole.FontRole:
            mono = col in (COL_RECORDED, COL_RECOMPUTED) or (col == COL_PAYLOAD and not row.decoded)
            return self._mono if mono else None
        if role == Qt.ItemDataRole.DecorationRole and col == COL_STATUS:
            return status_icon(_STATUS_LOOK[row.status])
        if role == Qt.ItemDataRole.ForegroundRole:
            if col == COL_STATUS:
                return QBrush(QColor(STATUS_COLORS[_STATUS_LOOK[row.status]]))
            if col == COL_NAME and not row.name:
                return QBrush(QColor("#6c757d"))  # the measurement's label, not a name the log carries
        return None


class EventFilter(QSortFilterProxyModel):
    """Register and status filters plus free text over name, type and payload."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.register: int | None = None
        self.status: str | None = None
        self.text = ""
        self.setSortRole(SORT_ROLE)

    def set_filter(self, register: int | None, status: str | None, text: str) -> None:
        self.beginFilterChange()
        self.register, self.status, self.text = register, status, text.strip().lower()
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, source_row: int, parent: QModelIndex | QPersistentModelIndex) -> bool:
        model = self.sourceModel()
        assert isinstance(model, EventLogModel)
        row = model.rows[source_row]
        if self.register is not None and row.register != self.register:
            return False
        if self.status is not None and row.status != self.status:
            return False
        if not self.text:
            return True
        haystack = " ".join((row.name, row.what, event_type_name(row.event_type), row.payload_text)).lower()
        return self.text in haystack

    def lessThan(self, left: QModelIndex | QPersistentModelIndex, right: QModelIndex | QPersistentModelIndex) -> bool:
        a, b = left.data(SORT_ROLE), right.data(SORT_ROLE)
        return a < b if type(a) is type(b) else str(a) < str(b)


def event_detail(row: EventRow) -> list[tuple[str, Any]]:
    """The selected event as sections for the detail tree."""
    event: dict[str, Any] = {
        "index in the log": row.index,
        "register": row.register_name,
        "type": f"{event_type_name(row.event_type)} (0x{row.event_type:08x})",
        "name": row.name or "(none)",
    }
    if row.what:
        event["measured as"] = row.what
    if row.varies_with:
        event["varies with"] = row.varies_with
    payload: dict[str, Any] = {"size": f"{len(row.payload)} bytes" if row.payload is not None else "not hex"}
    if row.decoded:
        payload["decoded"] = row.payload_text
    if row.payload:
        payload["hex"] = row.payload.hex()
    digests: dict[str, Any] = {
        "status": f"{row.status} — {_STATUS_TIPS[row.status]}",
        "recorded": row.recorded or "(not recorded)",
        "recomputed": row.recomputed or "(not recomputed)",
    }
    if row.source:
        digests["recomputed from"] = row.source
    if row.preimage:
        digests["preimage (SHA-384 of these bytes)"] = row.preimage
    if row.note:
        digests["note"] = row.note
    return [("Event", event), ("Payload", payload), ("Digest", digests)]


class EventLogPane(QWidget):
    """Filter bar, the events table, and the selected event in full."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = EventLogModel(self)
        self.proxy = EventFilter(self)
        self.proxy.setSourceModel(self.model)
        self.register_combo = QComboBox()
        self.register_combo.addItem("All registers", None)
        for i in range(4):
            self.register_combo.addItem(f"RTMR{i}", i)
        self.status_combo = QComboBox()
        self.status_combo.addItem("All statuses", None)
        for status in EVENT_STATUSES:
            self.status_combo.addItem(status, status)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter by name, type or payload…")
        self.filter_edit.setClearButtonEnabled(True)
        self.summary = QLabel()
        self.summary.setObjectName("eventLogSummary")
        self.view = QTableView()
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(COL_INDEX, Qt.SortOrder.AscendingOrder)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setAlternatingRowColors(True)
        self.view.setWordWrap(False)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(self.view.fontMetrics().height() + 6)
        header = self.view.horizontalHeader()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(COL_PAYLOAD, QHeaderView.ResizeMode.Stretch)
        self.detail = KeyValueTree()
        top = QHBoxLayout()
        top.addWidget(QLabel("Register:"))
        top.addWidget(self.register_combo)
        top.addWidget(QLabel("Status:"))
        top.addWidget(self.status_combo)
        top.addWidget(self.filter_edit, 1)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.view)
        self.splitter.addWidget(self.detail)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addWidget(self.summary)
        layout.addWidget(self.splitter, 1)
        self.register_combo.currentIndexChanged.connect(self._apply_filter)
        self.status_combo.currentIndexChanged.connect(self._apply_filter)
        self.filter_edit.textChanged.connect(self._apply_filter)
        self.view.selectionModel().currentRowChanged.connect(self._on_current)
        self.set_report(None, "app")

    def set_report(self, report: Report | None, entity: str) -> None:
        rows = event_rows(report, entity) if report is not None else []
        self.model.set_rows(rows)
        self.detail.set_data([])
        if report is None:
            self.summary.setText("No report.")
        elif not rows:
            self.summary.setText(f"The {entity} evidence has no event log.")
        else:
            counts = {s: sum(r.status == s for r in rows) for s in EVENT_STATUSES}
            self.summary.setText(f"{len(rows)} events: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
        self.view.resizeColumnsToContents()
        for col, cap in ((COL_TYPE, 260), (COL_NAME, 220)):
            self.view.setColumnWidth(col, min(self.view.columnWidth(col), cap))
        if rows:
            self.view.selectRow(0)

    @Slot()
    def _apply_filter(self) -> None:
        self.proxy.set_filter(self.register_combo.currentData(), self.status_combo.currentData(),
                              self.filter_edit.text())

    def visible_rows(self) -> list[EventRow]:
        return [self.proxy.index(i, 0).data(ROW_ROLE) for i in range(self.proxy.rowCount())]

    def select_event(self, index: int) -> bool:
        """Select the event at `index` of the log (when the filters show it)."""
        for i in range(self.proxy.rowCount()):
            if self.proxy.index(i, 0).data(ROW_ROLE).index == index:
                self.view.selectRow(i)
                return True
        return False

    def show_event(self, index: int) -> bool:
        """The event at `index` of the log, selected with every filter cleared (a check's link to it)."""
        self._clear_filters()
        return self.select_event(index)

    def show_register(self, register: int) -> None:
        """Only the register's events, the first selected (a check's link to a register)."""
        self._clear_filters()
        self.register_combo.setCurrentIndex(self.register_combo.findData(register))
        if self.proxy.rowCount():
            self.view.selectRow(0)

    def log_index(self, register: int, position: int) -> int | None:
        """Where the register's `position`-th event (as a measurement counts them) is in the log."""
        rows = sorted((r for r in self.model.rows if r.register == register), key=lambda r: r.index)
        return rows[position].index if 0 <= position < len(rows) else None

    def _clear_filters(self) -> None:
        self.register_combo.setCurrentIndex(0)
        self.status_combo.setCurrentIndex(0)
        self.filter_edit.clear()

    def current_row(self) -> EventRow | None:
        current = self.view.currentIndex()
        return current.data(ROW_ROLE) if current.isValid() else None

    @Slot(QModelIndex, QModelIndex)
    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        row = current.data(ROW_ROLE) if current.isValid() else None
        self.detail.set_data(event_detail(row) if row is not None else [], expand_depth=1)
