"""Small widgets the panes share: a key/value tree, the verdict banner, the message bar, the findings badge."""

from __future__ import annotations

import re
from typing import Any

from dstack_verifier.errors import InputError
from dstack_verifier.jsontext import load_json
from dstack_verifier.model import CheckStatus
from PySide6.QtCore import (
    Qt,
)
from PySide6.QtGui import (
    QFont,
)
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QStyle,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .vocabulary import BANNER_COLORS, FINDING_STATUSES, STATUS_COLORS, describe_counts, fixed_font, worst_status

HEX_RE = re.compile(r"[0-9a-fA-F]{16,}")  # long hex values are shown in the fixed font


def scalar_text(value: Any) -> str:
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


MAX_EMBEDDED_JSON = 256 * 1024  # a JSON text inside a value is opened up to this size
EMBEDDED_ROLE = Qt.ItemDataRole.UserRole + 60  # marks a row whose JSON text opens below it (shown closed at first)


def embedded_json(value: Any) -> dict | list | None:
    """The object or array a string value holds as JSON text (a compose file, a VM config, an event), else None."""
    if not isinstance(value, str) or len(value) > MAX_EMBEDDED_JSON or value.lstrip()[:1] not in ("{", "["):
        return None
    try:
        parsed = load_json(value, "value")
    except InputError:
        return None
    return parsed if isinstance(parsed, dict | list) and parsed else None


def fill_tree(parent: QTreeWidgetItem, key: str, value: Any, mono: QFont) -> QTreeWidgetItem:
    """Render a JSON-like value as key/value rows: dicts and lists of objects become branches; a string holding a
    JSON object or array keeps its text and opens into its structure below it."""
    item = QTreeWidgetItem([key, ""])
    parent.addChild(item)
    inner = embedded_json(value)
    if inner is not None:
        item.setData(0, EMBEDDED_ROLE, True)
        item.setText(1, value)
        item.setToolTip(1, value[:2000])
        for k, v in (inner.items() if isinstance(inner, dict) else enumerate(inner)):
            fill_tree(item, _list_label(k, v) if isinstance(k, int) else str(k), v, mono)
        return item
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
            text = ", ".join(scalar_text(v) for v in value) if value else "(none)"
        else:
            text = scalar_text(value)
        item.setText(1, text)
        item.setToolTip(1, text)
        if isinstance(value, str) and HEX_RE.fullmatch(value):
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
        pending = [root.child(i) for i in range(root.childCount())]
        while pending:  # a JSON text stays one line until asked: the fields after it remain in view
            item = pending.pop()
            if item.data(0, EMBEDDED_ROLE):
                item.setExpanded(False)
            pending += [item.child(i) for i in range(item.childCount())]
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
        self.headline.setWordWrap(True)  # a long headline wraps rather than widening the window
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
