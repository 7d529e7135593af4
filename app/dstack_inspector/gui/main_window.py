"""The main window: a verdict banner, the checks tree with a details pane, and the quote pane where a decoded field
and its bytes in the hex view are linked both ways (Wireshark's details tree ↔ bytes pane).

The window is a thin layer over `dstack_verifier`: it loads evidence with the library, hands a `VerifyJob` to a
`VerifyWorker` on its QThreadPool, and renders the `Report` that comes back. It computes no verification result
of its own. The event loop never waits on a verification.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dstack_verifier import __version__
from dstack_verifier.demo import load_demo
from dstack_verifier.errors import InputError
from dstack_verifier.evidence import Evidence, detect, load_evidence
from dstack_verifier.model import Check, CheckStatus, Report, Verdict
from dstack_verifier.quote.verify import TrustAnchor
from dstack_verifier.verification import load_anchor
from PySide6.QtCore import (
    QModelIndex,
    QPersistentModelIndex,
    QPointF,
    QRectF,
    QSortFilterProxyModel,
    Qt,
    QThreadPool,
    Signal,
    Slot,
)
from PySide6.QtGui import (
    QAction,
    QBrush,
    QColor,
    QDragEnterEvent,
    QDropEvent,
    QFont,
    QFontDatabase,
    QIcon,
    QKeySequence,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
    QStandardItem,
    QStandardItemModel,
    QTextCharFormat,
    QTextCursor,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStyle,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTextEdit,
    QToolBar,
    QToolButton,
    QTreeView,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..workers import VerifyJob, VerifyWorker

# --------------------------------------------------------------------------------------------------------------
# Vocabulary shared by the panes

STATUS_COLORS: dict[str, str] = {
    CheckStatus.PASS: "#2e7d32",
    CheckStatus.FAIL: "#c62828",
    CheckStatus.WARN: "#b26a00",
    CheckStatus.SKIP: "#607d8b",
    CheckStatus.ERROR: "#6a1b9a",
}
# Worst first when a group shows one status for its checks.
STATUS_RANK: dict[str, int] = {
    CheckStatus.FAIL: 4, CheckStatus.ERROR: 3, CheckStatus.WARN: 2, CheckStatus.SKIP: 1, CheckStatus.PASS: 0,
}
FINDING_STATUSES = (CheckStatus.FAIL, CheckStatus.WARN, CheckStatus.ERROR)
ENTITY_TITLES = {"app": "App", "kms": "KMS", "gateway": "Gateway"}
PHASE_TITLES = {"hardware": "Hardware", "os": "OS", "source": "Source code", "domain": "Domain"}

# (background, accent/border, text) of the verdict banner per state.
BANNER_COLORS: dict[str, tuple[str, str, str]] = {
    "pass": ("#e8f5e9", "#2e7d32", "#1b4d20"),
    "fail": ("#fdecea", "#c62828", "#7f1d1d"),
    "incomplete": ("#fff4e0", "#d98200", "#6b4100"),
    "error": ("#fdecea", "#c62828", "#7f1d1d"),
    "running": ("#e8eef8", "#3d6fb6", "#1f3f6e"),
    "idle": ("#f1f3f5", "#9aa5b1", "#3b4550"),
}

ANCHOR_EXPLANATIONS = {
    "intel-root": "rests on the Intel SGX Root CA (pinned SHA-256)",
    "caller-supplied": "rests on a root CA supplied by the caller — not Intel's",
    "quote": "rests on the content of the quote alone",
    "event-log-only": "rests on the event log only, not on a recomputed measurement",
    "none": "rests on nothing verifiable (informational)",
}

# Which quote field a check is about (the details pane offers a link to it).
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
_HEX_RE = re.compile(r"[0-9a-fA-F]{16,}")


def fixed_font() -> QFont:
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    font.setStyleHint(QFont.StyleHint.Monospace)
    return font


def format_time(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def anchor_explanation(anchor: str) -> str:
    if anchor.startswith("onchain@"):
        return f"rests on on-chain state at {anchor.removeprefix('onchain@')}"
    if anchor.startswith("image:"):
        return f"rests on the OS image with hash {anchor.removeprefix('image:')}"
    return ANCHOR_EXPLANATIONS.get(anchor, "")


def worst_status(statuses: Iterable[str]) -> str:
    return max(statuses, key=lambda s: STATUS_RANK.get(s, 0), default=CheckStatus.PASS)


def count_statuses(checks: Iterable[Check]) -> dict[str, int]:
    counts = {s.value: 0 for s in CheckStatus}
    for c in checks:
        counts[c.status.value] += 1
    return counts


def describe_counts(counts: dict[str, int]) -> str:
    parts = [f"{n} {status}" for status, n in counts.items() if n]
    return ", ".join(parts) if parts else "no checks"


_ICONS: dict[str, QIcon] = {}


def status_icon(status: str) -> QIcon:
    """A coloured disc with a glyph (✓ ✕ ! –), drawn once per status; colour is never the only cue."""
    if status in _ICONS:
        return _ICONS[status]
    size, ratio = 16, 2.0
    pixmap = QPixmap(int(size * ratio), int(size * ratio))
    pixmap.setDevicePixelRatio(ratio)
    pixmap.fill(Qt.GlobalColor.transparent)
    p = QPainter(pixmap)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor(STATUS_COLORS.get(status, "#607d8b")))
    p.drawEllipse(QRectF(1, 1, size - 2, size - 2))
    pen = QPen(QColor("white"), 2.0)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    p.setPen(pen)
    if status == CheckStatus.PASS:
        path = QPainterPath(QPointF(4.5, 8.5))
        path.lineTo(7, 11)
        path.lineTo(11.5, 5.5)
        p.drawPath(path)
    elif status == CheckStatus.FAIL:
        p.drawLine(QPointF(5.5, 5.5), QPointF(10.5, 10.5))
        p.drawLine(QPointF(10.5, 5.5), QPointF(5.5, 10.5))
    elif status in (CheckStatus.WARN, CheckStatus.ERROR):
        p.drawLine(QPointF(8, 4.5), QPointF(8, 9))
        p.drawPoint(QPointF(8, 11.5))
    else:
        p.drawLine(QPointF(5, 8), QPointF(11, 8))
    p.end()
    _ICONS[status] = QIcon(pixmap)
    return _ICONS[status]


def _scalar_text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _list_label(index: int, value: Any) -> str:
    if isinstance(value, dict):
        for key in ("subject", "item", "name", "id"):
            text = value.get(key)
            if isinstance(text, str) and text:
                if key == "subject":
                    text = next((part[3:] for part in text.split(",") if part.startswith("CN=")), text)
                return f"[{index}] {text}"
    return f"[{index}]"


def fill_tree(parent: QTreeWidgetItem, key: str, value: Any, mono: QFont) -> QTreeWidgetItem:
    """Render a JSON-like value as key/value rows: dicts and lists of objects become branches."""
    item = QTreeWidgetItem([key, ""])
    parent.addChild(item)
    if isinstance(value, dict):
        item.setText(1, "" if value else "(empty)")
        for k, v in value.items():
            fill_tree(item, str(k), v, mono)
    elif isinstance(value, list) and value and any(isinstance(v, dict | list) for v in value):
        item.setText(1, f"{len(value)} items")
        for i, v in enumerate(value):
            fill_tree(item, _list_label(i, v), v, mono)
    else:
        if isinstance(value, list):
            text = ", ".join(_scalar_text(v) for v in value) if value else "(none)"
        else:
            text = _scalar_text(value)
        item.setText(1, text)
        item.setToolTip(1, text)
        if isinstance(value, str) and _HEX_RE.fullmatch(value):
            item.setFont(1, mono)
    return item


class KeyValueTree(QTreeWidget):
    """A two-column (field, value) tree for any JSON-like data."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setColumnCount(2)
        self.setHeaderLabels(["Field", "Value"])
        self.setAlternatingRowColors(True)
        self.setUniformRowHeights(True)
        self.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.header().setStretchLastSection(True)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self._mono = fixed_font()

    def set_data(self, sections: list[tuple[str, Any]], expand_depth: int = 1) -> None:
        self.clear()
        root = self.invisibleRootItem()
        for key, value in sections:
            fill_tree(root, key, value, self._mono)
        self.setRootIsDecorated(any(root.child(i).childCount() for i in range(root.childCount())))
        self.expandToDepth(expand_depth)
        self.resizeColumnToContents(0)
        self.setColumnWidth(0, min(max(self.columnWidth(0) + 12, 140), 300))


# --------------------------------------------------------------------------------------------------------------
# Banner, message bar, findings badge


class VerdictBanner(QFrame):
    """The verdict in one line, coloured by state, and the trust-anchor badge when the root is not Intel's."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("verdictBanner")
        self.verdict_label = QLabel()
        self.verdict_label.setObjectName("verdictText")
        font = self.verdict_label.font()
        font.setPointSizeF(font.pointSizeF() * 1.7)
        font.setBold(True)
        self.verdict_label.setFont(font)
        self.verdict_label.setMinimumWidth(150)
        self.headline = QLabel()
        bold = self.headline.font()
        bold.setBold(True)
        bold.setPointSizeF(bold.pointSizeF() * 1.1)
        self.headline.setFont(bold)
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.badge = QLabel()
        self.badge.setObjectName("anchorBadge")
        self.badge.setVisible(False)
        self.badge.setToolTip("The trust anchor of this verification is not the Intel SGX Root CA: "
                              "a pass here proves nothing about genuine Intel hardware.")
        text_box = QVBoxLayout()
        text_box.setSpacing(2)
        text_box.addWidget(self.headline)
        text_box.addWidget(self.detail)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(14, 8, 14, 8)
        layout.setSpacing(16)
        layout.addWidget(self.verdict_label)
        layout.addLayout(text_box, 1)
        layout.addWidget(self.badge, 0, Qt.AlignmentFlag.AlignVCenter)
        self.state = "idle"
        self.show_state("idle", "—", "No evidence loaded", "Open evidence files (Ctrl+O) or drop them on the window.")

    def show_state(self, state: str, verdict: str, headline: str, detail: str) -> None:
        self.state = state
        bg, accent, fg = BANNER_COLORS.get(state, BANNER_COLORS["idle"])
        self.setStyleSheet(
            f"#verdictBanner {{ background: {bg}; border: 1px solid {accent}; border-left: 6px solid {accent};"
            f" border-radius: 4px; }}"
            f" #verdictBanner QLabel {{ color: {fg}; background: transparent; border: none; }}"
            f" #verdictBanner QLabel#verdictText {{ color: {accent}; }}"
            " #verdictBanner QLabel#anchorBadge { color: white; background: #b45309; border-radius: 11px;"
            " padding: 3px 12px; font-weight: bold; }"
        )
        self.verdict_label.setText(verdict)
        self.headline.setText(headline)
        self.detail.setText(detail)

    def set_badge(self, text: str | None) -> None:
        self.badge.setText(text or "")
        self.badge.setVisible(bool(text))


class MessageBar(QFrame):
    """An inline, dismissible message (errors of opening or verifying): never a modal box, never a traceback."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageBar")
        self.icon = QLabel()
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.kind = ""
        self.hide()

    def show_message(self, kind: str, title: str, lines: list[str] | None = None) -> None:
        self.kind = kind
        style = self.style()
        icon = QStyle.StandardPixmap.SP_MessageBoxCritical if kind == "error" else \
            QStyle.StandardPixmap.SP_MessageBoxInformation
        self.icon.setPixmap(style.standardIcon(icon).pixmap(20, 20))
        bg, border = ("#fdecea", "#e0a0a0") if kind == "error" else ("#eef4fb", "#a9c1e0")
        self.setStyleSheet(f"#messageBar {{ background: {bg}; border: 1px solid {border}; border-radius: 4px; }}"
                           " #messageBar QLabel { background: transparent; border: none; color: #222; }")
        self.label.setText("\n".join([title, *(f"• {line}" for line in lines or [])]))
        self.show()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""


class FindingsBadge(QToolButton):
    """Status-bar badge with the number of findings (fail, warn, error); checked = show findings only."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setCheckable(True)
        self.setAutoRaise(False)
        self.counts: dict[str, int] = {}
        self.set_counts(None)

    def set_counts(self, counts: dict[str, int] | None) -> None:
        self.counts = dict(counts or {})
        findings = sum(self.counts.get(s, 0) for s in FINDING_STATUSES)
        if counts is None:
            text, color = "no results", "#9aa5b1"
        elif findings == 0:
            text, color = "✔ no findings", STATUS_COLORS[CheckStatus.PASS]
        else:
            worst = worst_status(s for s in FINDING_STATUSES if self.counts.get(s))
            text = f"● {findings} finding{'s' if findings != 1 else ''}"
            color = STATUS_COLORS[worst]
        self.setText(text)
        self.setEnabled(counts is not None and findings > 0)
        if not self.isEnabled():
            self.setChecked(False)
        self.setStyleSheet(
            f"QToolButton {{ color: white; background: {color}; border: none; border-radius: 9px;"
            " padding: 2px 10px; font-weight: bold; }"
            " QToolButton:checked { border: 2px solid #222; }"
        )
        breakdown = describe_counts(self.counts) if counts is not None else "no verification yet"
        self.setToolTip(f"Checks: {breakdown}.\nClick to show only the findings (fail, warn, error).")

    @property
    def findings(self) -> int:
        return sum(self.counts.get(s, 0) for s in FINDING_STATUSES)


# --------------------------------------------------------------------------------------------------------------
# Checks tree and details

CHECK_ID_ROLE = Qt.ItemDataRole.UserRole + 1
STATUS_ROLE = Qt.ItemDataRole.UserRole + 2


class ChecksFilter(QSortFilterProxyModel):
    """Text filter on id and summary, and "findings only"; groups stay when one of their checks matches."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setRecursiveFilteringEnabled(True)
        self.text = ""
        self.findings_only = False

    def set_filter(self, text: str, findings_only: bool) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.9; invalidateFilter() is deprecated there
            self.beginFilterChange()
            self.text, self.findings_only = text.strip().lower(), findings_only
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.text, self.findings_only = text.strip().lower(), findings_only
            self.invalidateFilter()

    def filterAcceptsRow(self, row: int, parent: QModelIndex | QPersistentModelIndex) -> bool:
        model = self.sourceModel()
        index = model.index(row, 0, parent)
        check_id = model.data(index, CHECK_ID_ROLE)
        if not self.text and not self.findings_only:
            return True
        if check_id is None:
            return False  # a group: shown when a child matches (recursive filtering)
        if self.findings_only and model.data(index, STATUS_ROLE) not in FINDING_STATUSES:
            return False
        summary = model.data(model.index(row, 2, parent)) or ""
        return not self.text or self.text in check_id.lower() or self.text in summary.lower()


class ChecksPane(QWidget):
    """Checks grouped by entity, then phase, each with its status; a filter bar on top."""

    checkSelected = Signal(object)  # Check
    groupSelected = Signal(str, list)  # title, [Check]

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter checks by id or summary…")
        self.filter_edit.setClearButtonEnabled(True)
        self.model = QStandardItemModel(0, 3, self)
        self.model.setHorizontalHeaderLabels(["Check", "Status", "Summary"])
        self.proxy = ChecksFilter(self)
        self.proxy.setSourceModel(self.model)
        self.view = QTreeView()
        self.view.setModel(self.proxy)
        self.view.setAlternatingRowColors(True)
        self.view.setUniformRowHeights(True)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setAllColumnsShowFocus(True)
        header = self.view.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        title = QLabel("Checks")
        title.setObjectName("paneTitle")
        top = QHBoxLayout()
        top.addWidget(title)
        top.addWidget(self.filter_edit, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addWidget(self.view, 1)
        self._checks: dict[str, Check] = {}
        self._groups: dict[str, tuple[str, list[Check]]] = {}
        self._findings_only = False
        self.filter_edit.textChanged.connect(self._apply_filter)
        self.view.selectionModel().currentRowChanged.connect(self._on_current)

    def set_checks(self, checks: list[Check]) -> None:
        self.model.removeRows(0, self.model.rowCount())
        self._checks = {c.id: c for c in checks}
        self._groups.clear()
        by_group: dict[str, dict[str, list[Check]]] = {}
        for c in checks:
            by_group.setdefault(c.entity, {}).setdefault(c.phase, []).append(c)
        for entity, phases in by_group.items():
            all_checks = [c for group in phases.values() for c in group]
            entity_title = ENTITY_TITLES.get(entity, entity)
            entity_row = self._group_row(f"{entity_title}", all_checks, f"group:{entity}")
            self.model.appendRow(entity_row)
            self._groups[f"group:{entity}"] = (entity_title, all_checks)
            for phase, group in phases.items():
                title = f"{entity_title} · {PHASE_TITLES.get(phase, phase)}"
                key = f"group:{entity}:{phase}"
                phase_row = self._group_row(PHASE_TITLES.get(phase, phase), group, key)
                entity_row[0].appendRow(phase_row)
                self._groups[key] = (title, group)
                for c in group:
                    phase_row[0].appendRow(self._check_row(c))
        self.view.expandAll()
        self.view.resizeColumnToContents(0)
        self.view.setColumnWidth(0, max(self.view.columnWidth(0) + 16, 200))

    def clear(self) -> None:
        self.set_checks([])

    def _group_row(self, title: str, checks: list[Check], key: str) -> list[QStandardItem]:
        counts = count_statuses(checks)
        worst = worst_status(c.status for c in checks)
        name = QStandardItem(status_icon(worst), title)
        font = name.font()
        font.setBold(True)
        name.setFont(font)
        name.setData(key, Qt.ItemDataRole.UserRole + 3)
        passed = counts[CheckStatus.PASS]
        status = QStandardItem(f"{passed}/{len(checks)} pass")
        status.setForeground(QBrush(QColor(STATUS_COLORS[worst])))
        summary = QStandardItem(f"{len(checks)} checks: {describe_counts(counts)}")
        summary.setForeground(QBrush(QColor("#5f6b76")))
        return [name, status, summary]

    def _check_row(self, check: Check) -> list[QStandardItem]:
        name = QStandardItem(status_icon(check.status), check.id)
        name.setData(check.id, CHECK_ID_ROLE)
        name.setData(check.status.value, STATUS_ROLE)
        name.setToolTip(f"{check.id}: {check.status.value}")
        status = QStandardItem(check.status.value.upper())
        status.setForeground(QBrush(QColor(STATUS_COLORS[check.status])))
        bold = status.font()
        bold.setBold(True)
        status.setFont(bold)
        summary = QStandardItem(check.summary)
        summary.setToolTip(check.summary)
        return [name, status, summary]

    def set_findings_only(self, on: bool) -> None:
        self._findings_only = on
        self._apply_filter()

    def _apply_filter(self) -> None:
        self.proxy.set_filter(self.filter_edit.text(), self._findings_only)
        self.view.expandAll()

    def _source_index(self, check_id: str) -> QModelIndex | None:
        hits = self.model.match(self.model.index(0, 0), CHECK_ID_ROLE, check_id, 1,
                                Qt.MatchFlag.MatchExactly | Qt.MatchFlag.MatchRecursive)
        return hits[0] if hits else None

    def select_check(self, check_id: str) -> bool:
        source = self._source_index(check_id)
        if source is None:
            return False
        index = self.proxy.mapFromSource(source)
        if not index.isValid():
            return False
        self.view.setCurrentIndex(index)
        self.view.scrollTo(index)
        return True

    def index_of(self, check_id: str) -> QModelIndex:
        source = self._source_index(check_id)
        return self.proxy.mapFromSource(source) if source is not None else QModelIndex()

    def current_check_id(self) -> str | None:
        index = self.view.currentIndex()
        if not index.isValid():
            return None
        return self.proxy.data(index.siblingAtColumn(0), CHECK_ID_ROLE)

    @Slot(QModelIndex, QModelIndex)
    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        first = current.siblingAtColumn(0)
        check_id = self.proxy.data(first, CHECK_ID_ROLE)
        if check_id is not None and check_id in self._checks:
            self.checkSelected.emit(self._checks[check_id])
            return
        key = self.proxy.data(first, Qt.ItemDataRole.UserRole + 3)
        if key in self._groups:
            title, checks = self._groups[key]
            self.groupSelected.emit(title, checks)


class DetailsPane(QWidget):
    """The selected check: status, summary, what it rests on, the quote field it concerns, and its details as a
    readable tree (the raw JSON is one tab away)."""

    fieldLinkActivated = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.status_pill = QLabel()
        self.status_pill.setObjectName("statusPill")
        self.title = QLabel()
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.title.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.title.setFont(font)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.where = QLabel()
        self.anchor = QLabel()
        self.anchor.setWordWrap(True)
        self.anchor.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.evidence = QLabel()
        self.evidence.setTextFormat(Qt.TextFormat.RichText)
        self.evidence.linkActivated.connect(self.fieldLinkActivated)
        head = QHBoxLayout()
        head.addWidget(self.status_pill)
        head.addWidget(self.title, 1)
        form = QFormLayout()
        form.setHorizontalSpacing(12)
        form.setVerticalSpacing(3)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Where:", self.where)
        form.addRow("Anchor:", self.anchor)
        form.addRow("Evidence:", self.evidence)
        self.tree = KeyValueTree()
        self.json = QPlainTextEdit()
        self.json.setReadOnly(True)
        self.json.setFont(fixed_font())
        self.json.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.tree, "Details")
        self.tabs.addTab(self.json, "JSON")
        self.placeholder = QLabel("Select a check to see its result, what it rests on, and its details.")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setStyleSheet("color: #6c757d;")
        self.body = QWidget()
        body = QVBoxLayout(self.body)
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(6)
        body.addLayout(head)
        body.addWidget(self.summary)
        body.addLayout(form)
        body.addWidget(self.tabs, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        title = QLabel("Selected check")
        title.setObjectName("paneTitle")
        layout.addWidget(title)
        layout.addWidget(self.placeholder, 1)
        layout.addWidget(self.body, 1)
        self.current_check: Check | None = None
        self.clear()

    def clear(self) -> None:
        self.current_check = None
        self.body.hide()
        self.placeholder.show()

    def _pill(self, text: str, color: str) -> None:
        self.status_pill.setText(text)
        self.status_pill.setStyleSheet(f"#statusPill {{ color: white; background: {color}; border-radius: 4px;"
                                       " padding: 2px 8px; font-weight: bold; }")

    def show_check(self, check: Check, field: tuple[str, int, int] | None) -> None:
        self.current_check = check
        self._pill(check.status.value.upper(), STATUS_COLORS[check.status])
        self.title.setText(check.id)
        self.summary.setText(check.summary)
        self.where.setText(f"{ENTITY_TITLES.get(check.entity, check.entity)} · "
                           f"{PHASE_TITLES.get(check.phase, check.phase)} phase")
        explanation = anchor_explanation(check.anchor)
        self.anchor.setText(f"{check.anchor} — {explanation}" if explanation else check.anchor)
        if field is not None:
            name, start, end = field
            self.evidence.setText(f'quote field <a href="{name}">{name}</a> (bytes {start}–{end - 1}, '
                                  f"{end - start} bytes)")
        else:
            self.evidence.setText("—")
        if check.details:
            self.tree.set_data(list(check.details.items()), expand_depth=1)
        else:
            self.tree.set_data([("(no details)", None)])
        self.json.setPlainText(json.dumps(check.model_dump(mode="json"), indent=2, ensure_ascii=False))
        self.placeholder.hide()
        self.body.show()

    def show_group(self, title: str, checks: list[Check]) -> None:
        self.current_check = None
        worst = worst_status(c.status for c in checks)
        counts = count_statuses(checks)
        self._pill(worst.upper() if checks else "—", STATUS_COLORS.get(worst, "#607d8b"))
        self.title.setText(title)
        self.summary.setText(f"{len(checks)} checks: {describe_counts(counts)}.")
        phases = sorted({PHASE_TITLES.get(c.phase, c.phase) for c in checks})
        self.where.setText(", ".join(phases))
        anchors = sorted({c.anchor for c in checks})
        self.anchor.setText("; ".join(f"{a} — {anchor_explanation(a)}" if anchor_explanation(a) else a
                                      for a in anchors))
        self.evidence.setText("—")
        self.tree.set_data([(c.id, f"{c.status.value}: {c.summary}") for c in checks], expand_depth=0)
        self.json.setPlainText(json.dumps([c.model_dump(mode="json") for c in checks], indent=2,
                                          ensure_ascii=False))
        self.placeholder.hide()
        self.body.show()


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


def _decoded_value(name: str, decoded: dict[str, Any]) -> Any:
    parts = name.split(".")
    last = parts[-1]
    if parts[0] in ("header", "body") and len(parts) == 2:
        return decoded.get(last)
    if "qe_report" in parts[:-1]:
        return (decoded.get("qe_report") or {}).get(last)
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
        return _scalar_text(value)
    if 0 < len(raw) <= 4:
        return str(int.from_bytes(raw, "little"))
    return raw.hex()


def field_doc(name: str) -> str:
    return FIELD_DOCS.get(name) or FIELD_DOCS.get(name.split(".")[-1], "")


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
        right_layout.addWidget(self.hex_title)
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

    def set_quote(self, raw: bytes, layout: list[dict[str, Any]], decoded: dict[str, Any]) -> None:
        self.clear()
        self._raw = raw
        self.hex.set_data(raw)
        self.hex_title.setText(f"Raw quote — {len(raw)} bytes")
        self._spans = [(str(s["name"]), int(s["start"]), int(s["end"])) for s in layout
                       if 0 <= int(s["start"]) <= int(s["end"]) <= len(raw)]
        root = self.tree.invisibleRootItem()
        for name, start, end in self._spans:
            item = self._node(name, root)
            item.setData(0, FIELD_ROLE, (name, start, end))
            item.setText(1, field_value(name, raw[start:end], decoded))
            item.setToolTip(1, item.text(1))
            self._set_range(item, start, end)
            if _HEX_RE.fullmatch(item.text(1)):
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


# --------------------------------------------------------------------------------------------------------------
# The window


@dataclass
class Session:
    """The evidence on screen and how to verify it."""

    items: list[Evidence]
    anchor: TrustAnchor
    title: str
    now: int | None = None  # None: the wall clock at each verification
    anchor_label: str | None = None  # shown as the badge when the anchor is not Intel's
    is_demo: bool = False


def quote_bytes_of(report: Report) -> bytes | None:
    """The raw quote a report verified, decoded again from its recorded input."""
    for item in report.inputs:
        if item.role in ("quote", "getquote", "attestation") and item.content_b64:
            try:
                return detect(base64.b64decode(item.content_b64), item.name).quote
            except (InputError, ValueError):
                return None
    return None


class MainWindow(QMainWindow):
    """Verdict banner; checks | details; quote fields | hex (plus TCB & PCK, inputs); status bar with findings."""

    verificationSettled = Signal()  # a verification ended: result, error or cancel
    stateChanged = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("dstack-inspector")
        self.setAcceptDrops(True)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self.session: Session | None = None
        self.report: Report | None = None
        self.state = "idle"
        self._worker: VerifyWorker | None = None
        self._running: list[VerifyWorker] = []
        self._custom_anchor: TrustAnchor | None = None
        self._build_actions()
        self._build_ui()
        self._update_actions()
        self.resize(1440, 900)

    # ---- construction ---------------------------------------------------------------------------------------
    def _build_actions(self) -> None:
        style = self.style()
        icon = style.standardIcon
        sp = QStyle.StandardPixmap
        self.open_action = QAction(icon(sp.SP_DialogOpenButton), "Open evidence files…", self)
        self.open_action.setShortcut(QKeySequence.StandardKey.Open)
        self.open_action.setToolTip("Open a quote (binary or hex), a GetQuote JSON, DCAP collateral or a report")
        self.open_action.triggered.connect(self.choose_files)
        self.demo_action = QAction(icon(sp.SP_FileDialogInfoView), "Open demo evidence", self)
        self.demo_action.setToolTip("Synthetic evidence signed by a demo root CA — not Intel")
        self.demo_action.triggered.connect(self.load_demo)
        self.verify_action = QAction(icon(sp.SP_BrowserReload), "Re-verify", self)
        self.verify_action.setShortcut(QKeySequence(Qt.Key.Key_F5))
        self.verify_action.triggered.connect(self.verify)
        self.cancel_action = QAction(icon(sp.SP_BrowserStop), "Cancel", self)
        self.cancel_action.setShortcut(QKeySequence(Qt.Key.Key_Escape))
        self.cancel_action.triggered.connect(self.cancel)
        self.offline_action = QAction(icon(sp.SP_DriveNetIcon), "Offline", self)
        self.offline_action.setCheckable(True)
        self.offline_action.setToolTip("Never touch the network: what needs it (e.g. fetching collateral) is "
                                       "skipped with the reason")
        self.offline_action.toggled.connect(self.set_offline)
        self.anchor_intel_action = QAction("Use the Intel SGX Root CA", self)
        self.anchor_intel_action.triggered.connect(self.use_intel_anchor)
        self.anchor_file_action = QAction("Use a root CA file…", self)
        self.anchor_file_action.triggered.connect(self.choose_anchor)
        self.about_action = QAction(icon(sp.SP_MessageBoxInformation), "About", self)
        self.about_action.triggered.connect(self.show_about)
        self.quit_action = QAction("Quit", self)
        self.quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        self.quit_action.triggered.connect(self.close)

        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addActions([self.open_action, self.demo_action])
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        verify_menu = menu.addMenu("&Verify")
        verify_menu.addActions([self.verify_action, self.cancel_action])
        verify_menu.addSeparator()
        verify_menu.addAction(self.offline_action)
        anchor_menu = verify_menu.addMenu("Trust anchor")
        anchor_menu.addActions([self.anchor_intel_action, self.anchor_file_action])
        help_menu = menu.addMenu("&Help")
        help_menu.addAction(self.about_action)

        toolbar = QToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        toolbar.addActions([self.open_action, self.demo_action])
        toolbar.addSeparator()
        toolbar.addActions([self.verify_action, self.cancel_action])
        toolbar.addSeparator()
        toolbar.addAction(self.offline_action)
        toolbar.addSeparator()
        toolbar.addAction(self.about_action)
        self.addToolBar(toolbar)
        self.toolbar = toolbar

    def _build_ui(self) -> None:
        self.message_bar = MessageBar()
        self.banner = VerdictBanner()
        self.checks_pane = ChecksPane()
        self.details_pane = DetailsPane()
        self.quote_pane = QuotePane()
        self.tcb_tree = KeyValueTree()
        self.inputs_table = InputsTable()

        self.top_splitter = QSplitter(Qt.Orientation.Horizontal)
        self.top_splitter.addWidget(self.checks_pane)
        self.top_splitter.addWidget(self.details_pane)
        self.top_splitter.setChildrenCollapsible(False)
        self.bottom_tabs = QTabWidget()
        self.bottom_tabs.addTab(self.quote_pane, "Quote")
        self.bottom_tabs.addTab(self.tcb_tree, "TCB && platform")
        self.bottom_tabs.addTab(self.inputs_table, "Inputs")
        self.main_splitter = QSplitter(Qt.Orientation.Vertical)
        self.main_splitter.addWidget(self.top_splitter)
        self.main_splitter.addWidget(self.bottom_tabs)
        self.main_splitter.setChildrenCollapsible(False)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(8, 6, 8, 4)
        layout.setSpacing(6)
        layout.addWidget(self.message_bar)
        layout.addWidget(self.banner)
        layout.addWidget(self.main_splitter, 1)
        self.setCentralWidget(central)
        self.setStyleSheet("QLabel#paneTitle { font-weight: bold; color: #37414b; padding: 2px 0; }")

        status = self.statusBar()
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setMaximumWidth(140)
        self.progress.setMaximumHeight(14)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Cancel the running verification (Esc)")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.hide()
        self.network_label = QLabel()
        self.anchor_label = QLabel()
        self.findings_badge = FindingsBadge()
        self.findings_badge.toggled.connect(self.checks_pane.set_findings_only)
        status.addPermanentWidget(self.progress)
        status.addPermanentWidget(self.cancel_button)
        status.addPermanentWidget(self.anchor_label)
        status.addPermanentWidget(self.network_label)
        status.addPermanentWidget(self.findings_badge)

        self.checks_pane.checkSelected.connect(self._show_check)
        self.checks_pane.groupSelected.connect(self.details_pane.show_group)
        self.details_pane.fieldLinkActivated.connect(self._reveal_field)
        self._update_status_labels()

    def showEvent(self, event) -> None:  # type: ignore[no-untyped-def]
        super().showEvent(event)
        if not getattr(self, "_sized", False):
            self._sized = True
            self.balance_splitters()

    def balance_splitters(self) -> None:
        height = max(self.main_splitter.height(), 600)
        self.main_splitter.setSizes([int(height * 0.46), int(height * 0.54)])
        width = max(self.top_splitter.width(), 900)
        self.top_splitter.setSizes([int(width * 0.52), int(width * 0.48)])
        qwidth = max(self.quote_pane.splitter.width(), 900)
        self.quote_pane.splitter.setSizes([int(qwidth * 0.5), int(qwidth * 0.5)])

    # ---- evidence ---------------------------------------------------------------------------------------------
    def load_demo(self) -> bool:
        try:
            demo = load_demo()
        except InputError as exc:
            self.message_bar.show_message("error", "The demo evidence could not be loaded.", [exc.describe()])
            return False
        self.message_bar.hide()
        self._start_session(Session(items=demo.items, anchor=demo.anchor, now=demo.now, title="demo evidence",
                                    anchor_label=demo.label, is_demo=True))
        return True

    def open_paths(self, paths: list[Path]) -> bool:
        """Load evidence files and verify them; a file that cannot be used is reported, and nothing changes."""
        if not paths:
            return False
        items, problems = [], []
        for path in paths:
            try:
                items.append(load_evidence(Path(path)))
            except InputError as exc:
                problems.append(exc.describe())
        if problems:
            title = "Could not open the evidence:" if len(paths) == 1 else \
                f"Could not open {len(problems)} of {len(paths)} evidence files; nothing was loaded:"
            self.message_bar.show_message("error", title, problems)
            self.statusBar().showMessage("Opening failed", 5000)
            return False
        self.message_bar.hide()
        anchor = self._custom_anchor or load_anchor(None)
        label = "custom root — not Intel" if not anchor.is_intel else None
        names = ", ".join(Path(p).name for p in paths)
        self._start_session(Session(items=items, anchor=anchor, title=names, anchor_label=label))
        return True

    def choose_files(self) -> None:
        names, _ = QFileDialog.getOpenFileNames(
            self, "Open evidence files", "",
            "Evidence (*.hex *.bin *.dat *.json *.txt);;All files (*)",
        )
        if names:
            self.open_paths([Path(n) for n in names])

    def use_intel_anchor(self) -> None:
        self._custom_anchor = None
        if self.session is not None and not self.session.is_demo:
            self.session.anchor, self.session.anchor_label = load_anchor(None), None
            self.verify()
        self._update_status_labels()

    def choose_anchor(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Trust anchor: root CA certificate", "",
                                              "Certificates (*.der *.cer *.crt *.pem);;All files (*)")
        if name:
            self.set_anchor_file(Path(name))

    def set_anchor_file(self, path: Path) -> bool:
        try:
            anchor = load_anchor(path)
        except InputError as exc:
            self.message_bar.show_message("error", "The root CA could not be used:", [exc.describe()])
            return False
        self._custom_anchor = None if anchor.is_intel else anchor
        if self.session is not None and not self.session.is_demo:
            self.session.anchor = anchor
            self.session.anchor_label = None if anchor.is_intel else "custom root — not Intel"
            self.verify()
        self._update_status_labels()
        return True

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and all(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    def _start_session(self, session: Session) -> None:
        self.session = session
        title = f"dstack-inspector — {session.title}"
        if session.anchor_label:
            title += f"  [{session.anchor_label}]"
        self.setWindowTitle(title)
        self._update_status_labels()
        self.verify()

    # ---- verification -------------------------------------------------------------------------------------------
    def is_busy(self) -> bool:
        return self._worker is not None

    def verify(self) -> None:
        """Start verifying the current session on the pool (a running one is cancelled first)."""
        if self.session is None:
            return
        if self._worker is not None:
            self._worker.cancel()
        s = self.session
        worker = VerifyWorker(VerifyJob(items=s.items, anchor=s.anchor, now=s.now,
                                        offline=self.offline_action.isChecked()))
        worker.signals.progress.connect(self._on_progress)
        worker.signals.result.connect(self._on_result)
        worker.signals.error.connect(self._on_error)
        worker.signals.finished.connect(self._on_finished)
        self._worker = worker
        self._running.append(worker)
        self._show_results(None)
        self.banner.show_state("running", "…", "Verifying…", f"{s.title} · the window stays usable; "
                               "Cancel (Esc) stops waiting for the result.")
        self._set_state("running")
        self.pool.start(worker)

    def cancel(self) -> None:
        worker = self._worker
        if worker is None:
            return
        worker.cancel()
        self._worker = None  # anything it still emits is stale and discarded
        self.banner.show_state("idle", "—", "Verification cancelled",
                               "Nothing is shown for this evidence. Re-verify (F5) to run it again.")
        self.statusBar().showMessage("Verification cancelled", 5000)
        self._set_state("cancelled")
        self.verificationSettled.emit()

    def _is_current(self) -> bool:
        return self._worker is not None and self.sender() is self._worker.signals

    @Slot(str)
    def _on_progress(self, text: str) -> None:
        if self._is_current():
            self.statusBar().showMessage(text)

    @Slot(object)
    def _on_result(self, report: Report) -> None:
        if not self._is_current():
            return  # a cancelled or superseded verification
        self._worker = None
        self._show_results(report)
        self._set_state("done")
        self.statusBar().showMessage(f"Verified in {sum(report.timings.values()) * 1000:.0f} ms", 8000)
        self.verificationSettled.emit()

    @Slot(str)
    def _on_error(self, message: str) -> None:
        if not self._is_current():
            return
        self._worker = None
        self._show_results(None)
        self.banner.show_state("error", "ERROR", "The evidence could not be verified", message)
        self.message_bar.show_message("error", "The evidence could not be verified:", [message])
        self._set_state("error")
        self.statusBar().showMessage("Verification failed to run", 8000)
        self.verificationSettled.emit()

    @Slot()
    def _on_finished(self) -> None:
        sender = self.sender()
        self._running = [w for w in self._running if w.signals is not sender]

    def _set_state(self, state: str) -> None:
        self.state = state
        self._update_actions()
        self.stateChanged.emit(state)

    def _update_actions(self) -> None:
        running = self._worker is not None
        self.verify_action.setEnabled(self.session is not None)
        self.cancel_action.setEnabled(running)
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)

    def set_offline(self, offline: bool) -> None:
        if self.offline_action.isChecked() != offline:
            self.offline_action.setChecked(offline)  # re-enters through toggled
            return
        self._update_status_labels()
        if self.session is not None:
            self.verify()

    def _update_status_labels(self) -> None:
        offline = self.offline_action.isChecked()
        self.network_label.setText("Offline" if offline else "Online")
        self.network_label.setToolTip("The network is never used" if offline else
                                      "Missing collateral may be fetched from the PCCS")
        s = self.session
        if s is None:
            anchor = self._custom_anchor
            text = "Anchor: Intel SGX Root CA" if anchor is None else "Anchor: custom root — not Intel"
        else:
            text = f"Anchor: {s.anchor_label}" if s.anchor_label else "Anchor: Intel SGX Root CA"
        self.anchor_label.setText(text)
        warn = "not Intel" in text
        self.anchor_label.setStyleSheet("color: #b45309; font-weight: bold;" if warn else "")

    # ---- rendering ------------------------------------------------------------------------------------------
    def _show_results(self, report: Report | None) -> None:
        self.report = report
        session = self.session
        self.banner.set_badge(session.anchor_label if session is not None else None)
        self.details_pane.clear()
        if report is None:
            self.checks_pane.clear()
            self.quote_pane.clear()
            self.tcb_tree.clear()
            self.inputs_table.set_inputs(None)
            self.findings_badge.set_counts(None)
            return
        self.checks_pane.set_checks(report.checks)
        app = report.entities.get("app", {})
        raw = quote_bytes_of(report)
        if raw is not None and app.get("quote_layout"):
            self.quote_pane.set_quote(raw, app["quote_layout"], app.get("quote") or {})
        else:
            self.quote_pane.clear()
        sections: list[tuple[str, Any]] = [("TCB", app.get("tcb") or {}), ("PCK certificate", app.get("pck") or {})]
        sections += [("Trust anchor", report.policy.get("trust_anchor", {})),
                     ("Policy", {k: v for k, v in report.policy.items() if k != "trust_anchor"}),
                     ("Timings (s)", {k: round(v, 4) for k, v in report.timings.items()})]
        self.tcb_tree.set_data(sections, expand_depth=0)
        self.inputs_table.set_inputs(report)
        counts = count_statuses(report.checks)
        self.findings_badge.set_counts(counts)
        self._show_verdict(report, counts)
        first = next((c for c in report.checks if c.status in FINDING_STATUSES), None) or \
            (report.checks[0] if report.checks else None)
        if first is not None:
            self.checks_pane.select_check(first.id)

    def _show_verdict(self, report: Report, counts: dict[str, int]) -> None:
        total = len(report.checks)
        if report.verdict is Verdict.PASS:
            warns, skips = counts[CheckStatus.WARN], counts[CheckStatus.SKIP]
            ran = total - skips
            headline = f"All {ran} checks that apply passed" if not warns else \
                f"Passed with {warns} warning{'s' if warns != 1 else ''} ({ran} checks)"
            if skips:
                headline += f"; {skips} not applicable"
        elif report.verdict is Verdict.FAIL:
            n = counts[CheckStatus.FAIL]
            headline = f"{n} of {total} checks failed"
        else:
            n = counts[CheckStatus.ERROR] + counts[CheckStatus.SKIP]
            headline = f"Incomplete: nothing failed, but {n} of {total} checks could not run"
        app = report.entities.get("app", {})
        quote = app.get("quote") or {}
        parts = []
        if quote:
            parts.append(f"{quote.get('tee_type', '?')} quote v{quote.get('version', '?')}")
        tcb = (app.get("tcb") or {}).get("status")
        if tcb:
            parts.append(f"TCB {tcb}")
        parts.append(f"at {format_time(report.verified_at)}")
        anchor = report.policy.get("trust_anchor", {})
        subject = str(anchor.get("subject", ""))
        cn = next((p[3:] for p in subject.split(",") if p.startswith("CN=")), subject)
        parts.append(f"trust anchor: {cn}" + ("" if anchor.get("intel") else " (caller-supplied)"))
        self.banner.show_state(report.verdict.value, report.verdict.value.upper(), headline, " · ".join(parts))

    def _show_check(self, check: Check) -> None:
        name = CHECK_FIELDS.get(check.id)
        span = self.quote_pane.span_of(name) if name else None
        self.details_pane.show_check(check, span)

    def _reveal_field(self, name: str) -> None:
        self.bottom_tabs.setCurrentWidget(self.quote_pane)
        self.quote_pane.select_field(name)

    # ---- about and shutdown -------------------------------------------------------------------------------------
    def about_text(self) -> str:
        lines = [f"dstack-inspector {__version__}",
                 "Attestation inspector for dstack apps on Intel TDX. Everything is verified locally.", ""]
        s = self.session
        anchor = s.anchor if s is not None else (self._custom_anchor or load_anchor(None))
        lines.append("Trust anchor of the current verification:" if s else "Trust anchor for opened evidence:")
        lines.append(f"  subject: {anchor.cert.subject.rfc4514_string()}")
        lines.append(f"  SHA-256: {anchor.sha256}")
        if anchor.is_intel:
            lines.append("  This is the Intel SGX Root CA (its SHA-256 is pinned in the verifier).")
        else:
            label = s.anchor_label if s is not None and s.anchor_label else "not Intel"
            lines.append(f"  {label}: a result resting on this root proves nothing about genuine Intel hardware.")
        return "\n".join(lines)

    def show_about(self) -> None:
        box = QMessageBox(QMessageBox.Icon.Information, "About dstack-inspector", self.about_text(),
                          QMessageBox.StandardButton.Ok, self)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.open()

    def closeEvent(self, event) -> None:  # type: ignore[no-untyped-def]
        for worker in self._running:
            worker.cancel()
        self._worker = None
        self.pool.waitForDone(3000)
        super().closeEvent(event)

