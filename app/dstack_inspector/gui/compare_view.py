"""Two tasks side by side: the verdicts, per entity the measurements, compose hash, OS image, app id and TCB, every
check's status, and the inputs — differences highlighted, and a toggle that hides what did not change.

The comparison itself is `dstack_verifier.compare.compare_reports`; this view only lays it out.
"""

from __future__ import annotations

from typing import Any

from dstack_verifier.compare import Comparison, compare_reports
from dstack_verifier.model import Report
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .vocabulary import ENTITY_TITLES, fixed_font, format_time, status_icon

CHANGE_ROLE = Qt.ItemDataRole.UserRole + 1
# Row backgrounds per change; light enough that the text keeps its contrast in both themes' base colours.
CHANGE_COLORS = {"changed": "#fff1c2", "added": "#dff3e0", "removed": "#fbe0e0"}
CHANGE_MARKS = {"same": "", "changed": "≠ changed", "added": "+ only in B", "removed": "− only in A"}


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "(none)"
    return str(value)


class CompareView(QWidget):
    """A three-column tree (item | A | B) and a change column; "only differences" hides what is the same."""

    COLUMNS = ("Item", "A", "B", "Change")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.comparison: Comparison | None = None
        self.title_a = QLabel()
        self.title_b = QLabel()
        for label in (self.title_a, self.title_b):
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary = QLabel()
        bold = self.summary.font()
        bold.setBold(True)
        self.summary.setFont(bold)
        self.only_differences = QCheckBox("Only differences")
        self.only_differences.toggled.connect(self._apply_filter)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(self.COLUMNS))
        self.tree.setHeaderLabels(list(self.COLUMNS))
        self.tree.setUniformRowHeights(True)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        header = self.tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(False)
        titles = QHBoxLayout()
        titles.addWidget(self.title_a, 1)
        titles.addWidget(self.title_b, 1)
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.only_differences)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(titles)
        layout.addLayout(top)
        layout.addWidget(self.tree, 1)
        self._mono = fixed_font()
        self.set_reports(None, None)

    def set_reports(self, a: Report | None, b: Report | None, title_a: str = "A", title_b: str = "B") -> None:
        self.tree.clear()
        if a is None or b is None:
            self.comparison = None
            self.title_a.setText(f"<b>A</b>: {title_a if a is not None else 'no report'}")
            self.title_b.setText(f"<b>B</b>: {title_b if b is not None else 'no report'}")
            self.summary.setText("Choose two reports to compare.")
            return
        c = compare_reports(a, b)
        self.comparison = c
        self.title_a.setText(f"<b>A</b>: {title_a} — {c.verdict_a.upper()} at {format_time(c.verified_at_a)}")
        self.title_b.setText(f"<b>B</b>: {title_b} — {c.verdict_b.upper()} at {format_time(c.verified_at_b)}")
        n = c.differences
        self.summary.setText(f"{n} difference{'s' if n != 1 else ''}" if n else "No differences")
        self._row(self.tree.invisibleRootItem(), "Verdict", c.verdict_a, c.verdict_b,
                  "same" if c.verdict_a == c.verdict_b else "changed", icons=True)
        for e in c.entities:
            title = ENTITY_TITLES.get(e.entity, e.entity)
            group = self._group(f"{title}: measurements, identity, TCB", len(e.changed))
            if not (e.in_a and e.in_b):
                group.setText(1 if e.in_a else 2, "present")
                group.setText(1 if not e.in_a else 2, "absent")
            for f in e.fields:
                self._row(group, f.field, f.a, f.b, f.change, mono=f.field not in ("TCB status", "TCB advisories"))
        by_entity: dict[str, list] = {}
        for d in c.checks:
            by_entity.setdefault(d.entity, []).append(d)
        for entity, diffs in by_entity.items():
            title = ENTITY_TITLES.get(entity, entity)
            group = self._group(f"{title}: checks", sum(d.change != "same" for d in diffs))
            for d in diffs:
                row = self._row(group, d.id, d.a, d.b, d.change, icons=True)
                row.setToolTip(1, d.summary_a)
                row.setToolTip(2, d.summary_b)
        group = self._group("Inputs (SHA-256)", sum(i.change != "same" for i in c.inputs))
        for i in c.inputs:
            row = self._row(group, i.role or "(input)", i.sha256_a, i.sha256_b, i.change, mono=True)
            row.setToolTip(1, i.name_a or "")
            row.setToolTip(2, i.name_b or "")
        self.tree.expandAll()
        self.tree.resizeColumnToContents(0)
        self.tree.setColumnWidth(0, min(max(self.tree.columnWidth(0) + 12, 180), 340))
        self._apply_filter()

    def _group(self, title: str, changes: int) -> QTreeWidgetItem:
        item = QTreeWidgetItem([title, "", "", f"{changes} changed" if changes else "same"])
        item.setData(0, CHANGE_ROLE, "changed" if changes else "same")
        font = item.font(0)
        font.setBold(True)
        item.setFont(0, font)
        self.tree.addTopLevelItem(item)
        return item

    def _row(self, parent: QTreeWidgetItem, label: str, a: Any, b: Any, change: str, *, mono: bool = False,
             icons: bool = False) -> QTreeWidgetItem:
        item = QTreeWidgetItem([label, _text(a), _text(b), CHANGE_MARKS[change]])
        item.setData(0, CHANGE_ROLE, change)
        for col, value in ((1, a), (2, b)):
            item.setToolTip(col, _text(value))
            if mono:
                item.setFont(col, self._mono)
            if icons and isinstance(value, str):
                item.setIcon(col, status_icon(value if value != "incomplete" else "warn"))
        if change != "same":
            brush = QBrush(QColor(CHANGE_COLORS[change]))
            dark = QBrush(QColor("#1f2328"))  # the highlight is light in both themes: keep the text dark on it
            for col in range(len(self.COLUMNS)):
                item.setBackground(col, brush)
                item.setForeground(col, dark)
        parent.addChild(item)
        return item

    def _apply_filter(self) -> None:
        only = self.only_differences.isChecked()
        root = self.tree.invisibleRootItem()
        for i in range(root.childCount()):
            top = root.child(i)
            visible_children = 0
            for j in range(top.childCount()):
                child = top.child(j)
                hide = only and child.data(0, CHANGE_ROLE) == "same"
                child.setHidden(hide)
                visible_children += not hide
            top.setHidden(only and top.data(0, CHANGE_ROLE) == "same" and visible_children == 0)

    def visible_items(self) -> list[str]:
        """The labels of the rows on screen (groups and their visible rows), top to bottom."""
        out = []
        root = self.tree.invisibleRootItem()
        for i in range(root.childCount()):
            top = root.child(i)
            if top.isHidden():
                continue
            out.append(top.text(0))
            out += [f"  {top.child(j).text(0)}" for j in range(top.childCount()) if not top.child(j).isHidden()]
        return out
