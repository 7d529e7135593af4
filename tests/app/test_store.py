"""The task history store: migrations, WAL, atomic writes, search and paging, delete, and files it must refuse."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from dstack_inspector.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    NewTask,
    StoreError,
    TaskNotFound,
    TaskRecord,
    TaskStore,
)
from dstack_verifier.errors import InputError
from dstack_verifier.model import Report

from tests.support.reports import demo_reports

DEMO_APP_ID = "5830b7bffef0da422884ac926bd3b50d39cd6a86"
T0 = 1_750_000_000


@pytest.fixture(scope="module")
def reports() -> dict[str, Report]:
    return demo_reports()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    with TaskStore(tmp_path / "history.sqlite3", clock=clock) as s:
        yield s


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path)


def make_v1(path: Path, report: Report) -> None:
    """A history file as the first schema wrote it, with one task (its report inline as JSON)."""
    conn = raw(path)
    with conn:
        MIGRATIONS[0](conn)
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        conn.execute(
            "INSERT INTO tasks (created_at, verified_at, verdict, title, app_id, domain, source, counts_json, "
            "report_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (T0, report.verified_at, report.verdict.value, "old task", DEMO_APP_ID, "demo.example", "demo",
             '{"pass": 20, "skip": 1}', report.to_json(indent=None)),
        )
    conn.close()


# --- schema ---


def test_a_new_file_gets_the_latest_schema_in_wal_mode(store):
    assert store.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
    assert store.journal_mode() == "wal"
    conn = raw(store.path)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"meta", "tasks", "task_reports"} <= tables
    # The summary table carries no report: listing never reads one.
    columns = [row[1] for row in conn.execute("PRAGMA table_info(tasks)")]
    assert "report_json" not in columns and "counts_json" in columns


def test_a_v1_file_is_upgraded_with_its_tasks(tmp_path, reports):
    path = tmp_path / "history.sqlite3"
    make_v1(path, reports["pass"])
    with TaskStore(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        [summary] = store.search()
        assert (summary.title, summary.app_id, summary.domain, summary.created_at) == (
            "old task", DEMO_APP_ID, "demo.example", T0)
        assert summary.counts == {"pass": 20, "skip": 1}
        assert store.get(summary.id).report == reports["pass"]
    columns = [row[1] for row in raw(path).execute("PRAGMA table_info(tasks)")]
    assert "report_json" not in columns


def test_a_failed_upgrade_leaves_the_v1_file_as_it_was(tmp_path, reports):
    path = tmp_path / "history.sqlite3"
    make_v1(path, reports["pass"])
    conn = raw(path)
    with conn:  # a second, damaged row: its report is a blob, not JSON text
        conn.execute("INSERT INTO tasks (created_at, verified_at, verdict, title, source, counts_json, report_json) "
                     "VALUES (1, 1, 'pass', 'damaged', 'demo', '{}', X'ff00')")
    conn.close()
    with pytest.raises(StoreError) as err:
        TaskStore(path)
    assert str(err.value) == (f"{path}: cannot upgrade the task history to schema version 2: the report of task 2 "
                              "is not JSON text")
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    conn = raw(path)
    assert conn.execute("SELECT value FROM meta").fetchone() == ("1",)
    assert [r[0] for r in conn.execute("SELECT title FROM tasks ORDER BY id")] == ["old task", "damaged"]
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'task_reports'").fetchone() is None


def test_a_file_from_a_newer_version_is_refused_untouched(tmp_path):
    path = tmp_path / "history.sqlite3"
    TaskStore(path).close()
    conn = raw(path)
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.execute("PRAGMA journal_mode=delete")  # fold the WAL into the file, so its bytes are all there is
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError) as err:
        TaskStore(path)
    assert f"newer dstack-inspector (schema version {SCHEMA_VERSION + 1}" in str(err.value)
    assert path.read_bytes() == before


NOT_SQLITE = [b"not a database at all\n" * 100, os.urandom(8192), b"SQLite format 3\x00" + b"\xff" * 200]


@pytest.mark.parametrize("content", NOT_SQLITE)
def test_a_file_that_is_not_sqlite_is_refused_in_one_line(tmp_path, content):
    path = tmp_path / "history.sqlite3"
    path.write_bytes(content)
    with pytest.raises(StoreError) as err:
        TaskStore(path)
    message = str(err.value)
    assert message.startswith(f"{path}: cannot ") and "\n" not in message
    assert isinstance(err.value, InputError)


def test_an_sqlite_file_of_something_else_is_refused(tmp_path):
    path = tmp_path / "other.sqlite3"
    conn = raw(path)
    with conn:
        conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
    conn.close()
    with pytest.raises(StoreError, match="not a dstack-inspector task history"):
        TaskStore(path)


def test_a_folder_at_the_path_is_refused(tmp_path):
    (tmp_path / "history.sqlite3").mkdir()
    with pytest.raises(StoreError, match="is not a file"):
        TaskStore(tmp_path / "history.sqlite3")


def test_damaged_pages_give_a_clear_error(tmp_path, reports):
    path = tmp_path / "history.sqlite3"
    with TaskStore(path) as store:
        store.add_many(NewTask(reports["pass"], f"task {i}", "demo") for i in range(20))
    conn = raw(path)
    conn.execute("PRAGMA journal_mode=delete")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'tasks'").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    start = (root - 1) * page_size  # the summary table's root page, overwritten with junk
    data[start:start + page_size] = b"\xa5" * page_size
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError) as err:
        TaskStore(path).search()
    assert "malformed" in str(err.value) and "\n" not in str(err.value)


# --- writes ---


def test_add_and_get_round_trip(store, reports, clock):
    clock.now = T0 + 5
    task_id = store.add(reports["pass"], title="Demo app", source="demo", app_id="0x" + DEMO_APP_ID.upper(),
                        domain="demo.example")
    record = store.get(task_id)
    assert isinstance(record, TaskRecord)
    assert record.report == reports["pass"]
    assert (record.created_at, record.verified_at, record.verdict) == (T0 + 5, reports["pass"].verified_at, "pass")
    assert (record.app_id, record.domain, record.source) == (DEMO_APP_ID, "demo.example", "demo")
    assert record.counts == {"pass": 19, "warn": 1, "skip": 1}
    # The inputs travel with the report, so a task can be re-run offline from it.
    assert all(i.content_b64 for i in record.report.inputs)


def test_a_failure_inside_a_write_leaves_nothing_half_written(store, reports):
    conn = raw(store.path)
    with conn:  # the report of the third task cannot be written (as a full disk would refuse it)
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON task_reports WHEN NEW.task_id = 3 "
                     "BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END")
    batch = [NewTask(reports["pass"], f"task {i}", "files") for i in range(5)]
    with pytest.raises(StoreError) as err:
        store.add_many(batch)
    assert "cannot save the task: simulated write failure" in str(err.value)
    assert store.count() == 0
    assert conn.execute("SELECT count(*) FROM tasks").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM task_reports").fetchone() == (0,)
    # The store is usable afterwards: tasks 1 and 2 save, the third write fails alone, leaving no orphan row.
    store.add(reports["pass"], title="one", source="files")
    store.add(reports["pass"], title="two", source="files")
    with pytest.raises(StoreError):
        store.add(reports["fail"], title="three", source="files")
    assert [t.title for t in store.search()] == ["two", "one"]
    assert conn.execute("SELECT count(*) FROM task_reports").fetchone() == (2,)
    conn.close()


def test_a_saved_task_survives_the_process_dying(tmp_path):
    """add() returns only once committed: a process killed right after it (no close, no checkpoint) keeps it."""
    path = tmp_path / "history.sqlite3"
    script = (
        "import os, sys\n"
        "from dstack_inspector.store import TaskStore\n"
        "from dstack_verifier.model import Report\n"
        "store = TaskStore(sys.argv[1])\n"
        "print(store.add(Report(verdict='pass', verified_at=7, verifier_version='t'), title='kept', source='files'))\n"
        "sys.stdout.flush()\n"
        "os._exit(9)\n"
    )
    run = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 9, run.stderr
    task_id = int(run.stdout)
    with TaskStore(path) as store:
        assert store.get(task_id).title == "kept"


def test_delete(store, reports):
    keep = store.add(reports["pass"], title="keep", source="demo")
    gone = store.add(reports["fail"], title="gone", source="demo")
    store.delete(gone)
    assert [t.id for t in store.search()] == [keep]
    with pytest.raises(TaskNotFound) as err:
        store.get(gone)
    assert str(err.value) == f"{store.path}: no task {gone} in the history"
    with pytest.raises(TaskNotFound):
        store.delete(gone)
    assert raw(store.path).execute("SELECT task_id FROM task_reports").fetchall() == [(keep,)]


def test_an_unreadable_report_row_is_named(store, reports):
    task_id = store.add(reports["pass"], title="x", source="demo")
    conn = raw(store.path)
    with conn:
        conn.execute("UPDATE task_reports SET report_zlib = ?", (zlib.compress(b'{"verdict": "maybe"}'),))
    with pytest.raises(StoreError) as err:
        store.get(task_id)
    assert "field task_reports.report_zlib" in str(err.value) and f"task {task_id}" in str(err.value)
    with conn:
        conn.execute("UPDATE tasks SET counts_json = 'not json'")
    conn.close()
    with pytest.raises(StoreError, match=f"task {task_id} is unreadable"):
        store.search()


def test_a_closed_store_says_so(tmp_path):
    store = TaskStore(tmp_path / "h.sqlite3")
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.count()


# --- search ---


@pytest.fixture
def filled(store, reports, clock):
    """Six tasks saved a day apart (t0 … t0 + 5 days), newest last."""
    rows = [
        ("Demo app 100% done", "pass", DEMO_APP_ID, "demo.example"),
        ("Demo app 1000 done", "fail", DEMO_APP_ID, "demo.example"),
        ("payments a_b", "incomplete", "aa" * 20, "pay.example.org"),
        ("payments axb", "pass", "bb" * 20, "pay.example.org"),
        ("kms check", "pass", None, None),
        ("gateway", "fail", "cc" * 20, "gw.dstack.example"),
    ]
    ids = []
    for day, (title, verdict, app_id, domain) in enumerate(rows):
        clock.now = T0 + day * 86400
        ids.append(store.add(reports[verdict], title=title, source="files", app_id=app_id, domain=domain))
    return store, ids


def titles(summaries) -> list[str]:
    return [s.title for s in summaries]


def test_search_by_text(filled):
    store, _ = filled
    assert titles(store.search("payments")) == ["payments axb", "payments a_b"]
    assert titles(store.search("PAYMENTS AXB")) == ["payments axb"]  # case-insensitive; every word must match
    # % and _ are literal characters, not wildcards.
    assert titles(store.search("100%")) == ["Demo app 100% done"]
    assert titles(store.search("a_b")) == ["payments a_b"]
    # App id: any part of it, with or without 0x, any case.
    assert titles(store.search("0x" + DEMO_APP_ID[:12].upper())) == ["Demo app 1000 done", "Demo app 100% done"]
    assert titles(store.search("bbbb")) == ["payments axb"]
    # Domain.
    assert titles(store.search("gw.dstack")) == ["gateway"]
    assert titles(store.search("example.org")) == ["payments axb", "payments a_b"]
    assert store.search("nothing like it") == []
    assert store.count("payments") == 2


def test_search_by_verdict_and_date(filled):
    store, _ = filled
    assert titles(store.search(verdict="fail")) == ["gateway", "Demo app 1000 done"]
    assert titles(store.search("demo", verdict="pass")) == ["Demo app 100% done"]
    assert store.count(verdict="incomplete") == 1
    with pytest.raises(InputError, match="unknown verdict 'maybe'"):
        store.search(verdict="maybe")
    # since inclusive, until exclusive, on the time the task was saved.
    assert titles(store.search(since=T0 + 4 * 86400)) == ["gateway", "kms check"]
    assert titles(store.search(until=T0 + 86400)) == ["Demo app 100% done"]
    assert titles(store.search(since=T0 + 86400, until=T0 + 3 * 86400)) == ["payments a_b", "Demo app 1000 done"]
    assert store.count(since=T0 + 86400, until=T0 + 3 * 86400, verdict="fail") == 1


def test_paging(filled):
    store, ids = filled
    assert [s.id for s in store.search()] == ids[::-1]  # newest first
    pages = [store.search(limit=4, offset=0), store.search(limit=4, offset=4), store.search(limit=4, offset=8)]
    assert [len(p) for p in pages] == [4, 2, 0]
    assert [s.id for p in pages for s in p] == ids[::-1]
    assert [s.id for s in store.search(verdict="pass", limit=1, offset=1)] == [ids[3]]
    assert store.count() == 6
    with pytest.raises(InputError):
        store.search(limit=-1)


def test_open_default_uses_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("DSTACK_INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    with TaskStore.open_default() as store:
        assert store.path == tmp_path / "data" / "history.sqlite3"
        assert store.count() == 0


def test_a_task_is_titled_after_its_app_when_the_evidence_names_it() -> None:
    from dstack_inspector.store import task_title
    from dstack_verifier.demo import load_demo
    from dstack_verifier.verification import verify_evidence

    demo = load_demo()
    named = verify_evidence(demo.items, demo.options())  # the Cloud answer names the app
    assert task_title(named, "attestations.json") == "demo-app — attestations.json"
    assert task_title(named, "demo-app evidence") == "demo-app evidence"  # said already
    unnamed = named.model_copy(update={"data_objects": [o for o in named.data_objects if o.id != "app-main"]})
    assert task_title(unnamed, "attestations.json") == "attestations.json"
