"""The history pane over a real store: paging, filters, selection, the action signals and a confirmed delete."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from dstack_inspector.gui.history_view import APP_ID, CHECKS, TITLE, VERDICT, HistoryView
from dstack_inspector.store import TaskStore
from PySide6.QtCore import QDate, QDateTime, QModelIndex, Qt, QTime

from tests.support.reports import demo_reports

T0 = QDateTime(QDate(2026, 3, 1), QTime(12, 0)).toSecsSinceEpoch()  # local noon, so days are local days
DAY = 86400
N_TASKS = 450  # more than two pages of the model


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """450 tasks, one saved per day from T0: every third fails, the others pass; task i is "app i", with its own
    app id and domain, but every 50th is "payments i" on pay.example.org. Built once, copied for each test."""
    reports = demo_reports()
    clock = Clock(T0)
    path = tmp_path_factory.mktemp("history") / "history.sqlite3"
    with TaskStore(path, clock=clock) as s:
        for i in range(N_TASKS):
            clock.now = T0 + i * DAY
            verdict = "fail" if i % 3 == 0 else "pass"
            domain = "pay.example.org" if i % 50 == 0 else f"app{i}.example.com"
            title = f"payments {i}" if i % 50 == 0 else f"app {i}"
            s.add(reports[verdict], title=title, source="files", app_id=f"{i:040x}", domain=domain)
    return path  # closed: the WAL is folded into the file


@pytest.fixture
def store(tmp_path, template):
    path = tmp_path / "history.sqlite3"
    shutil.copyfile(template, path)
    with TaskStore(path, clock=Clock(T0 + N_TASKS * DAY)) as s:  # what it saves now comes after the 450
        yield s


@pytest.fixture
def answers():
    """The confirmation answers the test gives, and the questions asked."""
    return {"answer": False, "asked": []}


@pytest.fixture
def view(qtbot, store, answers):
    def confirm(text: str) -> bool:
        answers["asked"].append(text)
        return answers["answer"]

    widget = HistoryView(store, confirm=confirm, clock=lambda: T0 + N_TASKS * DAY)
    qtbot.addWidget(widget)
    widget.resize(1200, 600)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def shown(view: HistoryView, column: int) -> list[str]:
    model = view.model
    return [model.index(row, column).data() for row in range(model.rowCount())]


def click_row(qtbot, view: HistoryView, row: int) -> None:
    index = view.model.index(row, TITLE)
    view.table.scrollTo(index)
    qtbot.mouseClick(view.table.viewport(), Qt.MouseButton.LeftButton, pos=view.table.visualRect(index).center())


def test_opens_newest_first_and_pages_as_it_scrolls(view, qtbot):
    model = view.model
    assert model.total == N_TASKS and view.status.text() == f"{N_TASKS} tasks"
    # Only the first page is loaded at first (and only summaries: no report is ever read by the list).
    assert model.rowCount() == model.page_size
    assert shown(view, TITLE)[:2] == [f"app {N_TASKS - 1}", f"app {N_TASKS - 2}"]
    assert shown(view, VERDICT)[:3] == ["PASS", "PASS", "FAIL"]  # 449 % 3 == 2 … 447 % 3 == 0
    assert model.index(0, CHECKS).data() == "19 pass, 1 warn, 1 skip"
    loaded = []

    def scrolled_to_the_end() -> bool:
        view.table.scrollToBottom()  # the view asks the model for the next page when the end comes into view
        loaded.append(model.rowCount())
        return model.rowCount() == N_TASKS

    qtbot.waitUntil(scrolled_to_the_end, timeout=5000)
    assert 2 * model.page_size in loaded  # a page at a time
    assert not model.canFetchMore(QModelIndex())
    assert shown(view, TITLE)[-1] == "payments 0"


def test_filter_by_text_and_verdict(view, qtbot):
    qtbot.keyClicks(view.search, "payments")
    qtbot.waitUntil(lambda: view.model.total == N_TASKS // 50, timeout=3000)  # after the typing pause
    assert shown(view, TITLE) == [f"payments {i}" for i in range(400, -1, -50)]
    assert view.status.text() == f"9 of {N_TASKS} tasks"  # filtered: out of how many
    view.verdict.setCurrentIndex(view.verdict.findData("fail"))  # applies at once
    # payments i fails when i % 3 == 0: 300, 150, 0.
    assert shown(view, TITLE) == ["payments 300", "payments 150", "payments 0"]
    assert set(shown(view, VERDICT)) == {"FAIL"}
    # An app id, pasted with 0x and in capitals.
    view.verdict.setCurrentIndex(0)
    view.search.setText("0x" + f"{123:040x}".upper())
    view.search.returnPressed.emit()  # Return applies without waiting
    assert shown(view, TITLE) == ["app 123"]
    assert shown(view, APP_ID) == [f"{123:040x}"]
    view.search.clear()
    view.apply_filter()
    assert view.model.total == N_TASKS


def test_filter_by_date(view):
    view.since.setDate(QDateTime.fromSecsSinceEpoch(T0 + 10 * DAY).date())
    view.until.setDate(QDateTime.fromSecsSinceEpoch(T0 + 12 * DAY).date())
    assert view.model.total == N_TASKS  # the pickers count only once ticked
    view.since_check.setChecked(True)
    assert view.model.total == N_TASKS - 10
    view.until_check.setChecked(True)  # the until day is included
    assert shown(view, TITLE) == ["app 12", "app 11", "app 10"]
    view.verdict.setCurrentIndex(view.verdict.findData("pass"))
    assert shown(view, TITLE) == ["app 11", "app 10"]


def test_selecting_a_row_enables_the_actions_and_they_emit(view, qtbot, store):
    actions = {a.text() for a in view.table.actions()}
    assert actions == {"Open", "Re-run offline", "Re-run online", "Delete…"}
    assert view.table.contextMenuPolicy() is Qt.ContextMenuPolicy.ActionsContextMenu
    assert not view.open_action.isEnabled() and view.current_task_id() is None
    click_row(qtbot, view, 2)
    task = view.model.summary(2)
    assert view.current_task_id() == task.id and task.title == f"app {N_TASKS - 3}"
    assert all(a.isEnabled() for a in view.table.actions())
    with qtbot.waitSignal(view.open_requested) as opened:
        view.open_action.trigger()
    assert opened.args == [task.id]
    with qtbot.waitSignal(view.open_requested) as opened:
        index = view.model.index(2, TITLE)
        qtbot.mouseDClick(view.table.viewport(), Qt.MouseButton.LeftButton, pos=view.table.visualRect(index).center())
    assert opened.args == [task.id]
    view.table.setFocus()
    with qtbot.waitSignal(view.open_requested) as opened:
        qtbot.keyClick(view.table, Qt.Key.Key_Return)
    assert opened.args == [task.id]
    with qtbot.waitSignal(view.rerun_requested) as rerun:
        view.rerun_offline_action.trigger()
    assert rerun.args == [task.id, True]
    with qtbot.waitSignal(view.rerun_requested) as rerun:
        view.rerun_online_action.trigger()
    assert rerun.args == [task.id, False]
    # The id is the store's: the owner opens the record with it.
    assert store.get(task.id).title == task.title


def test_delete_asks_first_and_the_owner_deletes(view, qtbot, store, answers):
    view.delete_requested.connect(lambda task_id: (store.delete(task_id), view.refresh()))
    click_row(qtbot, view, 0)
    task = view.model.summary(0)
    with qtbot.assertNotEmitted(view.delete_requested):
        view.table.setFocus()
        qtbot.keyClick(view.table, Qt.Key.Key_Delete)
    assert len(answers["asked"]) == 1 and f"“{task.title}”" in answers["asked"][0]
    assert view.model.total == N_TASKS
    answers["answer"] = True
    with qtbot.waitSignal(view.delete_requested) as deleted:
        view.delete_action.trigger()
    assert deleted.args == [task.id]
    assert view.model.total == N_TASKS - 1 and view.status.text() == f"{N_TASKS - 1} tasks"
    assert view.model.row_of(task.id) is None and store.count() == N_TASKS - 1


def test_refresh_shows_new_tasks_and_keeps_the_selection(view, qtbot, store):
    click_row(qtbot, view, 5)
    selected = view.current_task_id()
    new_id = store.add(demo_reports()["incomplete"], title="just saved", source="demo")
    view.refresh()
    assert shown(view, TITLE)[0] == "just saved" and view.model.summary(0).id == new_id
    assert shown(view, VERDICT)[0] == "INCOMPLETE"
    assert view.current_task_id() == selected


def test_a_damaged_history_is_reported_in_the_pane(view, store):
    conn = sqlite3.connect(store.path)
    with conn:
        conn.execute("UPDATE tasks SET counts_json = 'garbage' WHERE title = 'app 7'")
    conn.close()
    view.search.setText("app 7")
    view.apply_filter()
    # Task i has id i + 1.
    assert view.status.text() == f"{store.path}, field tasks: task 8 is unreadable (JSONDecodeError)"
