"""The selected DataObject: its fields, the objects it is linked with (what vouches for it, what it vouches for — the
Trust Center's "Measured By" and "Measurements"), and the checks that concern it — each expandable to its anchor,
summary and details (the graph's drill-down)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dstack_verifier.model import Check, DataObject, Relationship
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QSplitter, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from .vocabulary import ENTITY_TITLES, STATUS_COLORS, anchor_explanation, fixed_font, status_icon, worst_status
from .widgets import KeyValueTree, fill_tree

LINK_ROLE = Qt.ItemDataRole.UserRole + 1  # the object id a row of the links tree leads to


class ObjectPane(QWidget):
    """Fields, links, checks, top to bottom; `checkActivated(id)` when a check is double-clicked (to open it in the
    checks pane), `objectActivated(id)` when a linked object is (to select it)."""

    checkActivated = Signal(str)
    objectActivated = Signal(str)

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
        self.links = QTreeWidget()
        self.links.setHeaderLabels(["Linked object", "Through"])
        self.links.setColumnWidth(0, 260)
        self.links.setToolTip("Double-click an object to select it")
        self.links.itemDoubleClicked.connect(self._follow)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.fields)
        splitter.addWidget(self.links)
        splitter.addWidget(self.checks)
        splitter.setSizes([300, 90, 200])
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
        self.links.clear()
        self.checks.clear()

    def show_object(self, obj: DataObject, checks: list[Check], relationships: Sequence[Relationship] = (),
                    names: Mapping[str, str] | None = None) -> None:
        """`checks`: the report's checks; those of the object's entity that it names are shown. `relationships`: the
        report's; those into and out of the object are listed, each object by its name in `names`."""
        self.object = obj
        self._show_links(obj.id, relationships, names or {})
        mine = [c for c in checks if c.entity == obj.entity and c.id in obj.check_ids]
        worst = worst_status(c.status for c in mine) if mine else None
        status = f" — {worst.upper()}" if worst else " — no checks"
        self.title.setText(f"{obj.name}  ({ENTITY_TITLES.get(obj.entity, obj.entity)} · {obj.id}){status}")
        sections: list[tuple[str, object]] = [("Fields", obj.fields)]
        if obj.calculations:  # what was computed here, from which fields (the comparisons are the checks below)
            sections.append(("Calculations", {", ".join(c.outputs): f"{c.function}({', '.join(c.inputs)})"
                                              for c in obj.calculations}))
        self.fields.set_data(sections, expand_depth=1)
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

    def _show_links(self, object_id: str, relationships: Sequence[Relationship], names: Mapping[str, str]) -> None:
        self.links.clear()
        groups = (("Vouched for by (measured by)", [(r.source, r) for r in relationships if r.target == object_id]),
                  ("Vouches for (measures)", [(r.target, r) for r in relationships if r.source == object_id]))
        for title, rows in groups:
            if not rows:
                continue
            group = QTreeWidgetItem([f"{title}: {len(rows)}", ""])
            for other, rel in sorted(rows, key=lambda row: (row[0], row[1].field)):
                through = f"{rel.field or 'the whole object'}"
                if rel.target_field:
                    through += f" → {rel.target_field}"
                through += f" ({rel.kind})"
                row = QTreeWidgetItem([f"{names.get(other, other)}  ({other})", through])
                row.setData(0, LINK_ROLE, other)
                group.addChild(row)
            self.links.addTopLevelItem(group)
            group.setExpanded(True)

    def _follow(self, item: QTreeWidgetItem, _column: int) -> None:
        target = item.data(0, LINK_ROLE)
        if isinstance(target, str):
            self.objectActivated.emit(target)

    def _activated(self, item: QTreeWidgetItem, _column: int) -> None:
        check_id = item.data(0, Qt.ItemDataRole.UserRole)
        if isinstance(check_id, str):
            self.checkActivated.emit(check_id)
