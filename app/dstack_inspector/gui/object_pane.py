"""The selected DataObject: its fields, and the checks that concern it — each expandable to its anchor, summary and
details (the graph's drill-down)."""

from __future__ import annotations

from dstack_verifier.model import Check, DataObject
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QSplitter, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from .vocabulary import ENTITY_TITLES, STATUS_COLORS, anchor_explanation, fixed_font, status_icon, worst_status
from .widgets import KeyValueTree, fill_tree


class ObjectPane(QWidget):
    """Fields above, checks below; `checkActivated(id)` when a check is double-clicked (to open it in the checks
    pane)."""

    checkActivated = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("Select an object in the graph")
        self.title.setObjectName("paneTitle")
        self.title.setWordWrap(True)
        self.fields = KeyValueTree()
        self.checks = QTreeWidget()
        self.checks.setHeaderLabels(["Check", "Status / detail"])
        self.checks.setColumnWidth(0, 260)
        self.checks.setAlternatingRowColors(True)
        self.checks.itemDoubleClicked.connect(self._activated)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.fields)
        splitter.addWidget(self.checks)
        splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.title)
        layout.addWidget(splitter, 1)
        self.object: DataObject | None = None

    def clear(self) -> None:
        self.object = None
        self.title.setText("Select an object in the graph")
        self.fields.clear()
        self.checks.clear()

    def show_object(self, obj: DataObject, checks: list[Check]) -> None:
        """`checks`: the report's checks; those of the object's entity that it names are shown."""
        self.object = obj
        mine = [c for c in checks if c.entity == obj.entity and c.id in obj.check_ids]
        worst = worst_status(c.status for c in mine) if mine else None
        status = f" — {worst.upper()}" if worst else " — no checks"
        self.title.setText(f"{obj.name}  ({ENTITY_TITLES.get(obj.entity, obj.entity)} · {obj.id}){status}")
        self.fields.set_data([("Fields", obj.fields)], expand_depth=1)
        self.checks.clear()
        mono = fixed_font()
        for check in mine:
            item = QTreeWidgetItem([check.id, f"{check.status.value}: {check.summary}"])
            item.setIcon(0, status_icon(check.status))
            item.setForeground(1, QColor(STATUS_COLORS.get(check.status, "#000000")))
            item.setToolTip(1, check.summary)
            item.setData(0, Qt.ItemDataRole.UserRole, check.id)
            anchor = QTreeWidgetItem(["anchor", f"{check.anchor} — {anchor_explanation(check.anchor)}"])
            item.addChild(anchor)
            if check.details:
                fill_tree(item, "details", check.details, mono)
            self.checks.addTopLevelItem(item)
        missing = [i for i in obj.check_ids if i not in {c.id for c in mine}]
        for check_id in missing:  # named by the object but not run for this report: say so rather than hide it
            self.checks.addTopLevelItem(QTreeWidgetItem([check_id, "not run in this verification"]))

    def _activated(self, item: QTreeWidgetItem, _column: int) -> None:
        check_id = item.data(0, Qt.ItemDataRole.UserRole)
        if isinstance(check_id, str):
            self.checkActivated.emit(check_id)
