"""The history pane: every saved verification, searchable by text, verdict and date, newest first.

The table model pages from the `TaskStore` (`canFetchMore`/`fetchMore`): it holds only the summaries of the rows
scrolled into view so far, never a report, so a history of thousands of tasks opens at once. Opening, re-running
and deleting a task are requests emitted as signals; the owner of the store acts on them (and calls `refresh()`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dstack_verifier.errors import InputError
from dstack_verifier.model import CheckStatus, Verdict
from PySide6.QtCore import (
    QAbstractTableModel,
    QDateTime,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTime,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..store import TaskStore, TaskSummary

AnyIndex = QModelIndex | QPersistentModelIndex
COLUMNS = ("Saved", "Verdict", "Title", "App id", "Domain", "Source", "Checks")
SAVED, VERDICT, TITLE, APP_ID, DOMAIN, SOURCE, CHECKS = range(len(COLUMNS))
TASK_ID_ROLE = Qt.ItemDataRole.UserRole
TEXT_DEBOUNCE_MS = 150  # one query per pause in typing, not one per key
DEFAULT_SINCE_DAYS = 30


def _local_time(ts: int) -> str:
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M")


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts[s]} {s}" for s in CheckStatus if counts.get(s))


@dataclass(frozen=True)
class HistoryFilter:
    """What the list shows: the arguments of `TaskStore.search`/`count` minus the paging."""

    text: str = ""
    verdict: str | None = None
    since: int | None = None
    until: int | None = None

    def kwargs(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "since": self.since, "until": self.until}


class HistoryModel(QAbstractTableModel):
    """Task summaries matching a filter, fetched a page at a time as the view scrolls."""

    page_size = 200

    def __init__(self, store: TaskStore, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.filter = HistoryFilter()
        self._rows: list[TaskSummary] = []
        self._total = 0

    @property
    def total(self) -> int:
        """How many tasks match the filter (loaded or not)."""
        return self._total

    def set_filter(self, flt: HistoryFilter) -> None:
        self.filter = flt
        self.reload()

    def reload(self) -> None:
        """Query again from the first page. Store errors propagate (the view shows them)."""
        total = self.store.count(self.filter.text, **self.filter.kwargs())
        rows = self._page(0)
        self.beginResetModel()
        self._rows, self._total = rows, total
        self.endResetModel()

    def _page(self, offset: int) -> list[TaskSummary]:
        return self.store.search(self.filter.text, **self.filter.kwargs(), limit=self.page_size, offset=offset)

    def summary(self, row: int) -> TaskSummary:
        return self._rows[row]

    def row_of(self, task_id: int) -> int | None:
        return next((i for i, s in enumerate(self._rows) if s.id == task_id), None)

    # --- QAbstractTableModel ---

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def canFetchMore(self, parent: AnyIndex) -> bool:
        return not parent.isValid() and len(self._rows) < self._total

    def fetchMore(self, parent: AnyIndex) -> None:
        if not self.canFetchMore(parent):
            return
        rows = self._page(len(self._rows))
        if not rows:  # tasks deleted behind our back: stop asking
            self._total = len(self._rows)
            return
        self.beginInsertRows(QModelIndex(), len(self._rows), len(self._rows) + len(rows) - 1)
        self._rows.extend(rows)
        self.endInsertRows()

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation is Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        task = self._rows[index.row()]
        column = index.column()
        if role == TASK_ID_ROLE:
            return task.id
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(task, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == SAVED:
                saved, verified = _local_time(task.created_at), _local_time(task.verified_at)
                return f"task {task.id}, saved {saved}; verification instant {verified}"
            return self._display(task, column) or None
        return None

    @staticmethod
    def _display(task: TaskSummary, column: int) -> str:
        values = {
            SAVED: _local_time(task.created_at),
            VERDICT: task.verdict.upper(),
            TITLE: task.title,
            APP_ID: task.app_id or "",
            DOMAIN: task.domain or "",
            SOURCE: task.source,
            CHECKS: _counts_text(task.counts),
        }
        return values[column]


def ask_to_confirm(parent: QWidget) -> Callable[[str], bool]:
    """The default confirmation: a Yes/No message box."""

    def confirm(text: str) -> bool:
        answer = QMessageBox.question(parent, "Delete task", text,
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    return confirm


class HistoryView(QWidget):
    """Search box, verdict and date filters, and the task table with Open / Re-run / Delete actions.

    `confirm(text) -> bool` asks before a delete is requested (a message box unless given); `clock` gives "today"
    for the date pickers' initial range.
    """

    open_requested = Signal(int)
    rerun_requested = Signal(int, bool)  # task id, offline
    delete_requested = Signal(int)

    def __init__(self, store: TaskStore, *, confirm: Callable[[str], bool] | None = None,
                 clock: Callable[[], float] = time.time, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._confirm = confirm or ask_to_confirm(self)
        self.model = HistoryModel(store, self)

        self.search = QLineEdit(placeholderText="Search title, app id or domain", clearButtonEnabled=True)
        self.verdict = QComboBox()
        self.verdict.addItem("All verdicts", None)
        for verdict in Verdict:
            self.verdict.addItem(verdict.value.capitalize(), verdict.value)
        today = QDateTime.fromSecsSinceEpoch(int(clock())).date()
        self.since_check = QCheckBox("Since")
        self.since = QDateEdit(today.addDays(-DEFAULT_SINCE_DAYS), calendarPopup=True, displayFormat="yyyy-MM-dd")
        self.until_check = QCheckBox("Until")
        self.until = QDateEdit(today, calendarPopup=True, displayFormat="yyyy-MM-dd")
        self.status = QLabel()

        # Two rows, so the pane stays narrow beside the report: text and verdict, then the date range.
        filters = QHBoxLayout()
        filters.addWidget(self.search, 1)
        filters.addWidget(self.verdict)
        dates = QHBoxLayout()
        for widget in (self.since_check, self.since, self.until_check, self.until):
            dates.addWidget(widget)
        dates.addStretch(1)

        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        # Fixed row heights and no resize-to-contents: neither measures every row, which paging would defeat.
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(TITLE, QHeaderView.ResizeMode.Stretch)
        chars = {SAVED: 17, VERDICT: 11, APP_ID: 20, DOMAIN: 20, SOURCE: 8, CHECKS: 18}
        width = self.fontMetrics().horizontalAdvance("0")
        for column, n in chars.items():
            header.resizeSection(column, (n + 2) * width)

        layout = QVBoxLayout(self)
        layout.addLayout(filters)
        layout.addLayout(dates)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)

        self.open_action = self._action("Open", self._open, QKeySequence(Qt.Key.Key_Return))
        self.rerun_offline_action = self._action("Re-run offline", lambda: self._rerun(offline=True))
        self.rerun_online_action = self._action("Re-run online", lambda: self._rerun(offline=False))
        self.delete_action = self._action("Delete…", self._delete, QKeySequence(QKeySequence.StandardKey.Delete))
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.table.doubleClicked.connect(lambda _index: self._open())
        self.table.selectionModel().selectionChanged.connect(self._update_actions)
        self.model.modelReset.connect(self._update_actions)

        self._debounce = QTimer(self, singleShot=True, interval=TEXT_DEBOUNCE_MS)
        self._debounce.timeout.connect(self.apply_filter)
        self.search.textChanged.connect(self._debounce.start)
        self.search.returnPressed.connect(self.apply_filter)
        self.verdict.currentIndexChanged.connect(self.apply_filter)
        for check, edit in ((self.since_check, self.since), (self.until_check, self.until)):
            check.toggled.connect(edit.setEnabled)
            check.toggled.connect(self.apply_filter)
            edit.setEnabled(False)
            edit.dateChanged.connect(self.apply_filter)
        self.apply_filter()

    def _action(self, text: str, slot: Callable[[], None], shortcut: QKeySequence | None = None) -> QAction:
        action = QAction(text, self.table)
        if shortcut is not None:
            action.setShortcut(shortcut)
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.triggered.connect(slot)
        self.table.addAction(action)
        return action

    # --- filtering ---

    def current_filter(self) -> HistoryFilter:
        """The filter the controls describe; dates are local days, the until day included."""
        since = until = None
        if self.since_check.isChecked():
            since = QDateTime(self.since.date(), QTime(0, 0)).toSecsSinceEpoch()
        if self.until_check.isChecked():
            until = QDateTime(self.until.date().addDays(1), QTime(0, 0)).toSecsSinceEpoch()
        return HistoryFilter(self.search.text().strip(), self.verdict.currentData(), since, until)

    def apply_filter(self) -> None:
        self._debounce.stop()
        self._load(lambda: self.model.set_filter(self.current_filter()))

    def refresh(self) -> None:
        """Query the store again (after a task was added or deleted), keeping the selected task if still listed."""
        selected = self.current_task_id()
        self._load(self.model.reload)
        if selected is not None:
            self.select_task(selected)

    def _load(self, query: Callable[[], None]) -> None:
        try:
            query()
        except InputError as exc:  # a damaged history: say so in the pane, keep the window alive
            self.status.setText(exc.describe())
            return
        shown = self.model.total
        text = f"{shown} task{'s' if shown != 1 else ''}"
        if self.model.filter != HistoryFilter():  # filtered: out of how many
            try:
                text = f"{shown} of {self.model.store.count()} tasks"
            except InputError as exc:
                text = exc.describe()
        self.status.setText(text)

    # --- selection and actions ---

    def current_task(self) -> TaskSummary | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.summary(rows[0].row()) if rows else None

    def current_task_id(self) -> int | None:
        task = self.current_task()
        return task.id if task is not None else None

    def select_task(self, task_id: int) -> bool:
        """Select a task among the rows loaded so far."""
        row = self.model.row_of(task_id)
        if row is None:
            return False
        self.table.selectRow(row)
        return True

    def _update_actions(self) -> None:
        enabled = self.current_task_id() is not None
        for action in (self.open_action, self.rerun_offline_action, self.rerun_online_action, self.delete_action):
            action.setEnabled(enabled)

    def _open(self) -> None:
        task_id = self.current_task_id()
        if task_id is not None:
            self.open_requested.emit(task_id)

    def _rerun(self, *, offline: bool) -> None:
        task_id = self.current_task_id()
        if task_id is not None:
            self.rerun_requested.emit(task_id, offline)

    def _delete(self) -> None:
        task = self.current_task()
        if task is None:
            return
        if self._confirm(f"Delete task {task.id} “{task.title}” ({task.verdict}, saved {_local_time(task.created_at)}) "
                         "from the history? Its report is removed; this cannot be undone."):
            self.delete_requested.emit(task.id)
