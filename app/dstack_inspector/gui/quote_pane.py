"""The quote pane: the decoded field tree and the hex view, linked both ways (Wireshark's details tree ↔
bytes pane); and the table of a report's inputs."""

from __future__ import annotations

from typing import Any

from dstack_verifier.model import Report
from PySide6.QtCore import (
    Qt,
    QUrl,
    Signal,
    Slot,
)
from PySide6.QtGui import (
    QBrush,
    QColor,
    QDesktopServices,
    QTextCharFormat,
    QTextCursor,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTextEdit,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .vocabulary import fixed_font
from .widgets import HEX_RE, scalar_text

CHECK_FIELDS = {
    "hardware.quote_structure": "header",
    "hardware.td_attributes": "body.tdattributes",
    "hardware.pck_chain": "auth.qe_report_cert_data.cert_data",
    "hardware.revocation": "auth.qe_report_cert_data.cert_data",
    "hardware.qe_report": "auth.qe_report_cert_data.qe_report",
    "hardware.quote_signature": "auth.signature",
    "hardware.tcb_status": "body.tee_tcb_svn",
    "eventlog.replay": "body.rtmr3",
    "os.mrtd": "body.mrtd",
    "os.rtmr0": "body.rtmr0",
    "os.rtmr1": "body.rtmr1",
    "os.rtmr2": "body.rtmr2",
    "source.mr_config_id": "body.mrconfig",
    "binding.report_data": "body.reportdata",
}

# What a quote field means, keyed by the last part of its layout name.
FIELD_DOCS = {
    "header": "Quote header: version, TEE type, attestation key type, QE vendor",
    "body": "The TD report (TDX) or enclave report (SGX): the measurements the hardware vouches for",
    "auth": "Signature data: the quote signature, the attestation key, the QE report and the PCK chain",
    "version": "Quote format version: 4 or 5 for TDX, 3 for SGX",
    "attestation_key_type": "2 = ECDSA-256 with P-256",
    "tee_type": "0x81 = TDX, 0x00 = SGX",
    "qe_vendor_id": "Quoting enclave vendor; Intel's is 939a7233f79c4ca9940a0db3957f0607",
    "user_data": "Defined by the QE; its first 16 bytes identify the platform's QE",
    "tee_tcb_svn": "TDX module security versions, matched against the TCB levels of the collateral",
    "mrseam": "Measurement of the TDX module (SEAM)",
    "mrsignerseam": "Signer of the TDX module (all zero for Intel's module)",
    "seamattributes": "Attributes of the TDX module",
    "tdattributes": "TD attributes: DEBUG, SEPT_VE_DISABLE, migration … — a debug TD is not confidential",
    "xfam": "Extended CPU features the TD may use (XSAVE feature mask)",
    "mrtd": "MRTD: measurement of the initial TD memory, i.e. the virtual firmware (TDVF)",
    "mrconfig": "mr_config_id, set by the host at launch; dstack may put 0x01 ‖ compose hash here",
    "mrowner": "mr_owner: owner identity set at launch (unused by dstack)",
    "mrownerconfig": "mr_owner_config: owner configuration set at launch (unused by dstack)",
    "rtmr0": "RTMR0: firmware configuration (TD HOB, ACPI tables, EFI variables)",
    "rtmr1": "RTMR1: the OS kernel loaded by the firmware",
    "rtmr2": "RTMR2: kernel command line and initrd",
    "rtmr3": "RTMR3: dstack runtime events (app id, compose hash, instance id, key provider)",
    "reportdata": "64 bytes chosen by the TD: dstack binds a public key or a nonce here",
    "report_data": "64 bytes chosen by the enclave; for the QE it binds the attestation key",
    "signature": "ECDSA signature over header and body by the attestation key",
    "attestation_key": "The attestation key (raw P-256 public key) that signs the quote; bound by the QE report",
    "qe_report": "Report of Intel's quoting enclave, signed by the PCK key",
    "qe_report_signature": "Signature of the QE report by the PCK private key",
    "qe_auth_data": "QE authentication data, hashed with the attestation key into the QE report data",
    "cert_data": "PCK certificate chain (PEM): PCK leaf → PCK CA → root CA",
    "mr_enclave": "Measurement of the enclave code",
    "mr_signer": "Hash of the enclave signer's public key",
    "cpu_svn": "CPU security version numbers",
    "isv_svn": "Security version of the enclave",
    "isv_prod_id": "Product id of the enclave",
}
GROUP_TITLES = {
    "header": "Header",
    "body": "Report body",
    "auth": "Signature data",
    "qe_report_cert_data": "QE report certification data",
}

# --------------------------------------------------------------------------------------------------------------
# Quote: decoded fields ↔ hex bytes


class HexView(QPlainTextEdit):
    """Offset | 16 hex bytes | ASCII. A highlighted byte range (both columns); a click reports the byte's offset."""

    byteActivated = Signal(int)
    PER_LINE = 16

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.setFont(fixed_font())
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                     | Qt.TextInteractionFlag.TextSelectableByKeyboard)
        self.setUndoRedoEnabled(False)
        self._data = b""
        self._range: tuple[int, int] | None = None
        self._width = 4

    # layout of a line: "{offset}  xx xx xx xx xx xx xx xx  xx xx xx xx xx xx xx xx  {ascii}"
    def _hex_col(self, j: int) -> int:
        return self._width + 2 + 3 * j + (1 if j >= 8 else 0)

    def _ascii_col(self, j: int) -> int:
        return self._width + 2 + 48 + 2 + j

    def set_data(self, data: bytes) -> None:
        self._data = data
        self._range = None
        self._width = max(4, len(f"{max(len(data) - 1, 0):x}"))
        lines = []
        for off in range(0, len(data), self.PER_LINE):
            chunk = data[off : off + self.PER_LINE]
            cells = [f"{b:02x}" for b in chunk] + ["  "] * (self.PER_LINE - len(chunk))
            text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
            lines.append(f"{off:0{self._width}x}  {' '.join(cells[:8])}  {' '.join(cells[8:])}  {text}")
        self.setPlainText("\n".join(lines))
        self.setExtraSelections([])

    def data(self) -> bytes:
        return self._data

    def highlight_range(self) -> tuple[int, int] | None:
        """The highlighted bytes as [start, end) offsets, or None."""
        return self._range

    def clear_highlight(self) -> None:
        self._range = None
        self.setExtraSelections([])

    def set_highlight(self, start: int, end: int) -> None:
        start, end = max(0, start), min(end, len(self._data))
        if end <= start:
            self.clear_highlight()
            return
        self._range = (start, end)
        fmt = QTextCharFormat()
        fmt.setBackground(self.palette().highlight())
        fmt.setForeground(self.palette().highlightedText())
        selections = []
        doc = self.document()
        first_line, last_line = start // self.PER_LINE, (end - 1) // self.PER_LINE
        for line in range(first_line, last_line + 1):
            base = doc.findBlockByNumber(line).position()
            a = max(start, line * self.PER_LINE) - line * self.PER_LINE
            b = min(end, (line + 1) * self.PER_LINE) - line * self.PER_LINE  # exclusive
            for col_from, col_to in ((self._hex_col(a), self._hex_col(b - 1) + 2),
                                     (self._ascii_col(a), self._ascii_col(b - 1) + 1)):
                sel = QTextEdit.ExtraSelection()
                cursor = QTextCursor(doc)
                cursor.setPosition(base + col_from)
                cursor.setPosition(base + col_to, QTextCursor.MoveMode.KeepAnchor)
                sel.cursor = cursor
                sel.format = fmt
                selections.append(sel)
        self.setExtraSelections(selections)
        self._scroll_to_lines(first_line, last_line)

    def highlighted_hex(self) -> str:
        """The hex digits under the highlight (the hex column only), for tests and copying."""
        hex_parts = [s.cursor.selectedText() for s in self.extraSelections()][0::2]
        return "".join(hex_parts).replace(" ", "")

    def _scroll_to_lines(self, first: int, last: int) -> None:
        bar = self.verticalScrollBar()
        line_height = max(1, self.fontMetrics().lineSpacing())
        visible = max(1, self.viewport().height() // line_height)
        top = bar.value()
        if first < top or last >= top + visible:
            bar.setValue(max(0, first - 1))

    def offset_at(self, line: int, column: int) -> int | None:
        for j in range(self.PER_LINE):
            if self._hex_col(j) <= column < self._hex_col(j) + 2 or column == self._ascii_col(j):
                off = line * self.PER_LINE + j
                return off if off < len(self._data) else None
        return None

    def mouseReleaseEvent(self, event) -> None:  # type: ignore[no-untyped-def]
        super().mouseReleaseEvent(event)
        if event.button() != Qt.MouseButton.LeftButton or self.textCursor().hasSelection():
            return
        cursor = self.cursorForPosition(event.position().toPoint())
        off = self.offset_at(cursor.blockNumber(), cursor.positionInBlock())
        if off is not None:
            self.byteActivated.emit(off)


FIELD_ROLE = Qt.ItemDataRole.UserRole + 1


def _spans(layout: Any, size: int) -> list[tuple[str, int, int]]:
    """The field spans of a report's quote layout that fit the quote (a hand-edited report may hold anything)."""
    out = []
    for s in layout if isinstance(layout, list) else []:
        if not isinstance(s, dict):
            continue
        name, start, end = s.get("name"), s.get("start"), s.get("end")
        if isinstance(name, str) and isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= size:
            out.append((name, start, end))
    return out


def _decoded_value(name: str, decoded: Any) -> Any:
    if not isinstance(decoded, dict):
        return None
    parts = name.split(".")
    last = parts[-1]
    if parts[0] in ("header", "body") and len(parts) == 2:
        return decoded.get(last)
    qe = decoded.get("qe_report")
    if "qe_report" in parts[:-1] and isinstance(qe, dict):
        return qe.get(last)
    return None


def field_value(name: str, raw: bytes, decoded: dict[str, Any]) -> str:
    """The value of a quote field as a reviewer reads it: decoded when the library decoded it, else from bytes."""
    value = _decoded_value(name, decoded)
    last = name.split(".")[-1]
    if last == "cert_data" and b"-----BEGIN CERTIFICATE-----" in raw:
        count = raw.count(b"-----BEGIN CERTIFICATE-----")
        return f"PEM certificate chain: {count} certificates, {len(raw)} bytes"
    if isinstance(value, str) and len(raw) <= 4:
        return f"{value} (0x{int.from_bytes(raw, 'little'):x})"
    if value is not None and not isinstance(value, dict | list):
        return scalar_text(value)
    if 0 < len(raw) <= 4:
        return str(int.from_bytes(raw, "little"))
    return raw.hex()


def field_doc(name: str) -> str:
    return FIELD_DOCS.get(name) or FIELD_DOCS.get(name.split(".")[-1], "")


EXPLORER_HOST = "ra-quote-explorer.vercel.app"


def explorer_url(raw: bytes) -> QUrl:
    """Phala's TEE Attestation Explorer, prefilled with the quote (the link the Trust Center puts on each quote)."""
    return QUrl(f"https://{EXPLORER_HOST}/?quote={raw.hex()}")


class QuotePane(QWidget):
    """Decoded quote fields (a tree built from the library's byte layout) linked with the raw bytes: selecting a
    field highlights its bytes; clicking a byte selects the innermost field that holds it."""

    fieldSelected = Signal(str, int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(4)
        self.tree.setHeaderLabels(["Field", "Value", "Offset", "Size"])
        self.tree.headerItem().setToolTip(2, "Offset of the field's first byte in the quote")
        self.tree.headerItem().setToolTip(3, "Length of the field in bytes")
        self.tree.setAlternatingRowColors(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideRight)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.info.setTextFormat(Qt.TextFormat.RichText)
        self.info.setObjectName("fieldInfo")
        self.info.setMinimumHeight(64)
        self.info.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.hex = HexView()
        self.hex_title = QLabel("Raw quote")
        self.hex_title.setObjectName("paneTitle")
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.setSpacing(4)
        fields_title = QLabel("Decoded fields")
        fields_title.setObjectName("paneTitle")
        left_layout.addWidget(fields_title)
        left_layout.addWidget(self.tree, 1)
        left_layout.addWidget(self.info)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.setSpacing(4)
        self.elsewhere = QPushButton("Verify it elsewhere…")
        self.elsewhere.setToolTip("Open this quote in Phala's TEE Attestation Explorer, in your browser (asks first: "
                                  "the quote leaves this machine)")
        self.elsewhere.clicked.connect(self.open_elsewhere)
        title_row = QHBoxLayout()
        title_row.addWidget(self.hex_title, 1)
        title_row.addWidget(self.elsewhere)
        right_layout.addLayout(title_row)
        right_layout.addWidget(self.hex, 1)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.splitter)
        self._items: dict[str, QTreeWidgetItem] = {}
        self._spans: list[tuple[str, int, int]] = []
        self._raw = b""
        self._mono = fixed_font()
        self.tree.currentItemChanged.connect(self._on_current)
        self.hex.byteActivated.connect(self.select_at)
        self.clear()

    def clear(self) -> None:
        self.tree.clear()
        self._items.clear()
        self._spans = []
        self._raw = b""
        self.hex.set_data(b"")
        self.hex_title.setText("Raw quote")
        self.info.setText("<span style='color:#6c757d'>No quote.</span>")
        self.elsewhere.setEnabled(False)

    def open_elsewhere(self) -> bool:
        """The quote in the explorer the Trust Center links every quote to, after the reviewer agrees to send it."""
        if not self._raw:
            return False
        answer = QMessageBox.question(
            self, "Verify it elsewhere",
            f"Open Phala's TEE Attestation Explorer with this quote ({len(self._raw)} bytes, its report data "
            f"included)?\n\nYour browser sends it to {EXPLORER_HOST}; nothing else leaves this machine.")
        if answer != QMessageBox.StandardButton.Yes:
            return False
        return QDesktopServices.openUrl(explorer_url(self._raw))

    def set_quote(self, raw: bytes, layout: list[dict[str, Any]], decoded: dict[str, Any]) -> None:
        self.clear()
        self._raw = raw
        self.hex.set_data(raw)
        self.hex_title.setText(f"Raw quote — {len(raw)} bytes")
        self.elsewhere.setEnabled(bool(raw))
        self._spans = _spans(layout, len(raw))
        root = self.tree.invisibleRootItem()
        for name, start, end in self._spans:
            item = self._node(name, root)
            item.setData(0, FIELD_ROLE, (name, start, end))
            item.setText(1, field_value(name, raw[start:end], decoded))
            item.setToolTip(1, item.text(1))
            self._set_range(item, start, end)
            if HEX_RE.fullmatch(item.text(1)):
                item.setFont(1, self._mono)
        for item in self._items.values():  # groups without a span of their own cover their children
            if item.data(0, FIELD_ROLE) is None:
                start, end = self._extent(item)
                name = next(k for k, v in self._items.items() if v is item)
                item.setData(0, FIELD_ROLE, (name, start, end))
                self._set_range(item, start, end)
                item.setForeground(1, QBrush(QColor("#5f6b76")))
                item.setText(1, f"{item.childCount()} fields")
        self.tree.expandAll()
        for name, item in self._items.items():
            if name.endswith(".qe_report") or name.endswith(".qe_report_cert_data"):
                item.setExpanded(False)
        self.tree.resizeColumnToContents(0)
        self.tree.setColumnWidth(0, min(self.tree.columnWidth(0) + 8, 260))
        self.info.setText("<span style='color:#6c757d'>Select a field to highlight its bytes; "
                          "click a byte to find its field.</span>")

    @staticmethod
    def _set_range(item: QTreeWidgetItem, start: int, end: int) -> None:
        for col, value in ((2, start), (3, end - start)):
            item.setText(col, str(value))
            item.setTextAlignment(col, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def _node(self, name: str, root: QTreeWidgetItem) -> QTreeWidgetItem:
        if name in self._items:
            return self._items[name]
        parent_name, _, last = name.rpartition(".")
        parent = self._node(parent_name, root) if parent_name else root
        item = QTreeWidgetItem([GROUP_TITLES.get(last, last) if not parent_name else last, "", "", ""])
        item.setToolTip(0, f"{name}\n{field_doc(name)}".strip())
        parent.addChild(item)
        self._items[name] = item
        return item

    def _extent(self, item: QTreeWidgetItem) -> tuple[int, int]:
        starts, ends = [], []
        for i in range(item.childCount()):
            child = item.child(i)
            span = child.data(0, FIELD_ROLE)
            start, end = span[1:] if span is not None else self._extent(child)
            starts.append(start)
            ends.append(end)
        return (min(starts), max(ends)) if starts else (0, 0)

    def field_names(self) -> list[str]:
        return list(self._items)

    def span_of(self, name: str) -> tuple[str, int, int] | None:
        item = self._items.get(name)
        return item.data(0, FIELD_ROLE) if item is not None else None

    def select_field(self, name: str) -> bool:
        item = self._items.get(name)
        if item is None:
            return False
        parent = item.parent()
        while parent is not None:
            parent.setExpanded(True)
            parent = parent.parent()
        self.tree.setCurrentItem(item)
        self.tree.scrollToItem(item)
        return True

    @Slot(int)
    def select_at(self, offset: int) -> None:
        inside = [s for s in self._spans if s[1] <= offset < s[2]]
        if inside:
            name = min(inside, key=lambda s: s[2] - s[1])[0]
            self.select_field(name)

    def _on_current(self, current: QTreeWidgetItem | None, _previous: QTreeWidgetItem | None) -> None:
        span = current.data(0, FIELD_ROLE) if current is not None else None
        if span is None:
            self.hex.clear_highlight()
            return
        name, start, end = span
        self.hex.set_highlight(start, end)
        doc = field_doc(name)
        value = self._raw[start:end]
        shown = value.hex() if len(value) <= 128 else value[:128].hex() + "…"
        self.info.setText(
            f"<b>{name}</b> &nbsp; bytes {start}–{end - 1} ({end - start} bytes)"
            + (f"<br>{doc}" if doc else "")
            + f"<br><span style='font-family:monospace'>{_wrap_hex(shown)}</span>"
        )
        self.fieldSelected.emit(name, start, end)


def _wrap_hex(text: str, every: int = 64) -> str:
    return "<br>".join(text[i : i + every] for i in range(0, len(text), every))


class InputsTable(QTableWidget):
    """What was verified: each input with its role, kind, size and SHA-256."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 5, parent)
        self.setHorizontalHeaderLabels(["Role", "Name", "Kind", "Size", "SHA-256"])
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setAlternatingRowColors(True)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setStretchLastSection(True)

    def set_inputs(self, report: Report | None) -> None:
        inputs = report.inputs if report is not None else []
        self.setRowCount(len(inputs))
        mono = fixed_font()
        for row, item in enumerate(inputs):
            cells = [item.role, item.name, item.kind, f"{item.size} bytes", item.sha256]
            for col, text in enumerate(cells):
                cell = QTableWidgetItem(text)
                cell.setToolTip(text)
                if col == 4:
                    cell.setFont(mono)
                self.setItem(row, col, cell)
        self.resizeColumnsToContents()
