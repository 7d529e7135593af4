"""The checks tree (grouped by entity and phase, filterable) and the details pane of the selected check."""

from __future__ import annotations

import html
import json

from dstack_verifier.model import Check, CheckStatus
from PySide6.QtCore import (
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    Signal,
    Slot,
)
from PySide6.QtGui import (
    QBrush,
    QColor,
    QStandardItem,
    QStandardItemModel,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QTabWidget,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from .vocabulary import (
    ENTITY_TITLES,
    FINDING_STATUSES,
    PHASE_TITLES,
    STATUS_COLORS,
    anchor_explanation,
    count_statuses,
    describe_counts,
    fixed_font,
    status_icon,
    worst_status,
)
from .widgets import KeyValueTree

# --------------------------------------------------------------------------------------------------------------
# Checks tree and details

CHECK_ID_ROLE = Qt.ItemDataRole.UserRole + 1
STATUS_ROLE = Qt.ItemDataRole.UserRole + 2
KEY_ROLE = Qt.ItemDataRole.UserRole + 4  # "entity/id": a check id repeats across entities


# What the "Show" choice keeps: None is every check. Skipped checks have a choice of their own: they proved nothing,
# and a reviewer wants to see what was not checked as readily as what failed.
SHOW_CHOICES: dict[str, frozenset[CheckStatus] | None] = {
    "All checks": None,
    "Findings (fail, warn, error)": frozenset(FINDING_STATUSES),
    "Failed": frozenset({CheckStatus.FAIL}),
    "Warnings": frozenset({CheckStatus.WARN}),
    "Errors": frozenset({CheckStatus.ERROR}),
    "Skipped (not checked)": frozenset({CheckStatus.SKIP}),
    "Passed": frozenset({CheckStatus.PASS}),
}
FINDINGS_CHOICE = "Findings (fail, warn, error)"


class ChecksFilter(QSortFilterProxyModel):
    """Text filter on id and summary, and a set of statuses; groups stay when one of their checks matches."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setRecursiveFilteringEnabled(True)
        self.text = ""
        self.statuses: frozenset[CheckStatus] | None = None

    def set_filter(self, text: str, statuses: frozenset[CheckStatus] | None) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.9; invalidateFilter() is deprecated there
            self.beginFilterChange()
            self.text, self.statuses = text.strip().lower(), statuses
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.text, self.statuses = text.strip().lower(), statuses
            self.invalidateFilter()

    def filterAcceptsRow(self, row: int, parent: QModelIndex | QPersistentModelIndex) -> bool:
        model = self.sourceModel()
        index = model.index(row, 0, parent)
        check_id = model.data(index, CHECK_ID_ROLE)
        if not self.text and self.statuses is None:
            return True
        if check_id is None:
            return False  # a group: shown when a child matches (recursive filtering)
        if self.statuses is not None and model.data(index, STATUS_ROLE) not in self.statuses:
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
        self.show_combo = QComboBox()
        for label in SHOW_CHOICES:
            self.show_combo.addItem(label)
        self.show_combo.setToolTip("Which checks to list, by status")
        title = QLabel("Checks")
        title.setObjectName("paneTitle")
        top = QHBoxLayout()
        top.addWidget(title)
        top.addWidget(self.show_combo)
        top.addWidget(self.filter_edit, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addWidget(self.view, 1)
        self._checks: dict[str, Check] = {}
        self._groups: dict[str, tuple[str, list[Check]]] = {}
        self.filter_edit.textChanged.connect(self._apply_filter)
        self.show_combo.currentIndexChanged.connect(self._apply_filter)
        self.view.selectionModel().currentRowChanged.connect(self._on_current)

    def set_checks(self, checks: list[Check]) -> None:
        self.model.removeRows(0, self.model.rowCount())
        self._checks = {f"{c.entity}/{c.id}": c for c in checks}
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
        name.setData(f"{check.entity}/{check.id}", KEY_ROLE)
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
        """The findings badge's toggle: the findings, or every check again."""
        self.show_combo.setCurrentText(FINDINGS_CHOICE if on else "All checks")

    def _apply_filter(self) -> None:
        self.proxy.set_filter(self.filter_edit.text(), SHOW_CHOICES[self.show_combo.currentText()])
        self.view.expandAll()

    def _source_index(self, check_id: str, entity: str | None = None) -> QModelIndex | None:
        role, value = (CHECK_ID_ROLE, check_id) if entity is None else (KEY_ROLE, f"{entity}/{check_id}")
        hits = self.model.match(self.model.index(0, 0), role, value, 1,
                                Qt.MatchFlag.MatchExactly | Qt.MatchFlag.MatchRecursive)
        return hits[0] if hits else None

    def select_check(self, check_id: str, entity: str | None = None) -> bool:
        """Select a check (of `entity`, or the first with that id)."""
        source = self._source_index(check_id, entity)
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
        key = self.proxy.data(first, KEY_ROLE)
        if key is not None and key in self._checks:
            self.checkSelected.emit(self._checks[key])
            return
        key = self.proxy.data(first, Qt.ItemDataRole.UserRole + 3)
        if key in self._groups:
            title, checks = self._groups[key]
            self.groupSelected.emit(title, checks)


class DetailsPane(QWidget):
    """The selected check: status, summary, what it rests on, the quote field it concerns, and its details as a
    readable tree (the raw JSON is one tab away)."""

    fieldLinkActivated = Signal(str)  # a quote field's name, or an event link (see report_view.event_links)

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

    def show_check(self, check: Check, field: tuple[str, int, int] | None,
                   events: list[tuple[str, str]] | None = None) -> None:
        self.current_check = check
        self._pill(check.status.value.upper(), STATUS_COLORS[check.status])
        self.title.setText(check.id)
        self.summary.setText(check.summary)
        self.where.setText(f"{ENTITY_TITLES.get(check.entity, check.entity)} · "
                           f"{PHASE_TITLES.get(check.phase, check.phase)} phase")
        explanation = anchor_explanation(check.anchor)
        self.anchor.setText(f"{check.anchor} — {explanation}" if explanation else check.anchor)
        links = []
        if field is not None:
            name, start, end = field
            links.append(f'quote field <a href="{name}">{name}</a> (bytes {start}–{end - 1}, {end - start} bytes)')
        links += [f'<a href="{href}">{html.escape(text)}</a>' for href, text in events or []]
        self.evidence.setText(" · ".join(links) if links else "—")
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
