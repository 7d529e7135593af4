"""The task history: every verification's report, saved in SQLite (through sqlite-utils) in the app's data folder.

Durability. The database is in WAL mode and every write is one `BEGIN IMMEDIATE … COMMIT` transaction that has
committed before `add` returns, so a task the GUI has shown survives a crash of the app; a failure inside a write
rolls the whole of it back (never a task without its report).

Schema. `meta(key, value)` holds `schema_version`; `MIGRATIONS` is the ordered list of steps from an empty file, each
run in its own transaction together with the version bump, so an interrupted upgrade leaves the previous version
intact. A file written by a newer version of the app is refused, never downgraded.

Listing reads only the summary table (`tasks`); the reports, zlib-compressed JSON, live in `task_reports` and are
read one at a time by `get`, so a history of thousands of tasks opens without touching them.
"""

from __future__ import annotations

import json
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import sqlite_utils
from dstack_verifier.errors import InputError
from dstack_verifier.model import CheckStatus, Report, Verdict
from pydantic import BaseModel, ValidationError

from .settings import data_dir

HISTORY_FILE = "history.sqlite3"
TaskSource = Literal["files", "online", "demo", "pack", "rerun"]
# Level 1: a report is mostly base64 and repeated JSON keys; higher levels save under 7 % for twice the time.
_ZLIB_LEVEL = 1
_SUMMARY_COLUMNS = "id, created_at, verified_at, verdict, title, app_id, domain, source, counts_json"


class StoreError(InputError):
    """The history file cannot be used (not SQLite, corrupt, from a newer version, unreadable row)."""


class TaskNotFound(StoreError):
    """No task has this id."""


class TaskSummary(BaseModel):
    """One row of the history list: what can be shown and filtered without reading the report."""

    id: int
    created_at: int  # unix seconds, when the task was saved
    verified_at: int  # the verification instant of the report (may be in the past for a re-run)
    verdict: str
    title: str
    app_id: str | None = None
    domain: str | None = None
    source: TaskSource
    counts: dict[str, int]  # check status -> number of checks


class TaskRecord(TaskSummary):
    report: Report


@dataclass(frozen=True)
class NewTask:
    """What `add_many` saves for one verification."""

    report: Report
    title: str
    source: TaskSource
    app_id: str | None = None
    domain: str | None = None


# --- migrations: each takes the open connection inside a transaction; index i brings the schema to version i+1 ---


def _v1_tasks(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, created_at INTEGER NOT NULL, verified_at INTEGER NOT NULL, "
        "verdict TEXT NOT NULL, title TEXT NOT NULL, app_id TEXT, domain TEXT, source TEXT NOT NULL, "
        "counts_json TEXT NOT NULL, report_json TEXT NOT NULL)"
    )
    for column in ("created_at", "verdict", "app_id", "domain"):
        conn.execute(f"CREATE INDEX tasks_{column} ON tasks ({column})")


def _v2_reports_apart(conn: sqlite3.Connection) -> None:
    # With the report inline each row fills a page, so listing or filtering 10,000 tasks read ~10,000 pages; apart
    # (and compressed to ~40 %) the summaries fit hundreds to a page. Newest-first by verdict gets its own index.
    conn.execute("CREATE TABLE task_reports (task_id INTEGER PRIMARY KEY, report_zlib BLOB NOT NULL)")
    for task_id, text in conn.execute("SELECT id, report_json FROM tasks"):
        if not isinstance(text, str):
            raise ValueError(f"the report of task {task_id} is not JSON text")
        conn.execute("INSERT INTO task_reports (task_id, report_zlib) VALUES (?, ?)",
                     (task_id, zlib.compress(text.encode(), _ZLIB_LEVEL)))
    conn.execute("ALTER TABLE tasks DROP COLUMN report_json")  # rewrites every row without it
    conn.execute("DROP INDEX tasks_verdict")
    conn.execute("CREATE INDEX tasks_verdict_created_at ON tasks (verdict, created_at)")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1_tasks, _v2_reports_apart)
SCHEMA_VERSION = len(MIGRATIONS)


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _normal_app_id(app_id: str | None) -> str | None:
    """App ids are hex; stored lowercase without 0x so a pasted `0xABC…` finds them."""
    if app_id is None:
        return None
    text = app_id.strip().lower()
    return text.removeprefix("0x") or None


def _where(text: str, verdict: str | None, since: int | None, until: int | None) -> tuple[str, list[Any]]:
    """The WHERE clause shared by `search` and `count`: every word of `text` in the title, app id or domain."""
    clauses: list[str] = []
    params: list[Any] = []
    for word in text.split():
        app_word = _normal_app_id(word) or word
        clauses.append("(title LIKE ? ESCAPE '\\' OR app_id LIKE ? ESCAPE '\\' OR domain LIKE ? ESCAPE '\\')")
        params += [_like_pattern(word), _like_pattern(app_word), _like_pattern(word)]
    if verdict is not None:
        try:
            params.append(Verdict(verdict).value)
        except ValueError:
            raise InputError(f"unknown verdict {verdict!r} (expected one of: {', '.join(Verdict)})") from None
        clauses.append("verdict = ?")
    if since is not None:
        clauses.append("created_at >= ?")
        params.append(since)
    if until is not None:
        clauses.append("created_at < ?")
        params.append(until)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def report_keys(report: Report) -> dict[str, str | None]:
    """What the history searches a report by besides its title: the app id its RTMR3 events gave, and the domain
    its domain checks were asked for."""
    info = report.entities.get("app", {}).get("app_info")
    domain = report.policy.get("domain")
    return {"app_id": info.get("app_id") if isinstance(info, dict) else None,
            "domain": domain.get("domain") if isinstance(domain, dict) else None}


def task_title(report: Report, base: str) -> str:
    """The history's title of a verification: what it was opened from, after the app's name when the evidence gives
    one (so a search finds an app by its name, not only by its id)."""
    name = next((o.fields.get("app_name") for o in report.data_objects if o.id == "app-main"), None)
    if not isinstance(name, str) or not name.strip() or name.strip() in base:
        return base
    return f"{' '.join(name.split())[:80]} — {base}"


def _counts(report: Report) -> dict[str, int]:
    counts = {status.value: 0 for status in CheckStatus}
    for check in report.checks:
        counts[check.status.value] += 1
    return {status: n for status, n in counts.items() if n}


class TaskStore:
    """The history database at `path`. `clock` gives the save time of new tasks (unix seconds)."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        if self.path.exists() and not self.path.is_file():
            raise StoreError("is not a file (the task history must be an SQLite file)", source=str(self.path))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder: {exc.strerror}", source=str(self.path.parent)) from None
        self._db: sqlite_utils.Database | None = None
        with self._errors("cannot open the task history"):
            # Plugins off: no third-party sqlite-utils plugin may change how our history connection behaves.
            self._db = sqlite_utils.Database(self.path, execute_plugins=False)
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    @classmethod
    def open_default(cls) -> TaskStore:
        return cls(data_dir() / HISTORY_FILE)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- plumbing ---

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the task history is closed", source=str(self.path))
        return self._db.conn

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """SQLite's exceptions become one line naming the file."""
        try:
            yield
        except sqlite3.Error as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StoreError(f"{what}: {message}", source=str(self.path)) from None

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One transaction. IMMEDIATE takes the write lock up front, so two app instances queue instead of
        failing half-way with SQLITE_BUSY."""
        conn = self._conn
        with self._errors(what):
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # a RAISE(ROLLBACK) or a failed COMMIT may have ended it already
                    conn.execute("ROLLBACK")
                raise

    def _version(self, conn: sqlite3.Connection) -> int:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return 0
        if "meta" not in tables:
            raise StoreError("is an SQLite database but not a dstack-inspector task history (no meta table)",
                             source=str(self.path))
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or not str(row[0]).isdigit():
            raise StoreError("has no valid schema version", source=str(self.path), field="meta.schema_version")
        return int(row[0])

    def _migrate(self) -> None:
        """Refuse a file that is not ours or is newer (before writing anything to it), then upgrade it."""
        assert self._db is not None
        with self._errors("cannot read the task history"):
            version = self._version(self._conn)
        if version > SCHEMA_VERSION:
            raise StoreError(f"was written by a newer dstack-inspector (schema version {version}; this version "
                             f"reads up to {SCHEMA_VERSION}); it is left untouched", source=str(self.path))
        with self._errors("cannot open the task history"):
            self._db.enable_wal()
            # FULL: a commit is on disk before add() returns, so an OS crash or power cut loses nothing shown.
            self._db.execute("PRAGMA synchronous=FULL")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            what = f"cannot upgrade the task history to schema version {target}"
            with self._write(what) as conn:
                if self._version(conn) >= target:  # another instance upgraded it meanwhile
                    continue
                try:
                    MIGRATIONS[target - 1](conn)
                except ValueError as exc:  # the rows of an old file are input too
                    raise StoreError(f"{what}: {exc}", source=str(self.path)) from None
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(target),))

    def schema_version(self) -> int:
        with self._errors("cannot read the task history"):
            return self._version(self._conn)

    def journal_mode(self) -> str:
        with self._errors("cannot read the task history"):
            return str(self._conn.execute("PRAGMA journal_mode").fetchone()[0])

    def _summary(self, row: Sequence[Any]) -> TaskSummary:
        task_id, created_at, verified_at, verdict, title, app_id, domain, source, counts_json = row
        try:
            return TaskSummary(id=task_id, created_at=created_at, verified_at=verified_at, verdict=verdict,
                               title=title, app_id=app_id, domain=domain, source=source,
                               counts=json.loads(counts_json))
        except (ValidationError, json.JSONDecodeError, TypeError) as exc:
            raise StoreError(f"task {task_id} is unreadable ({type(exc).__name__})", source=str(self.path),
                             field="tasks") from None

    # --- the interface ---

    def add(self, report: Report, *, title: str, source: TaskSource, app_id: str | None = None,
            domain: str | None = None) -> int:
        """Save one verification; returns its task id once committed."""
        return self.add_many([NewTask(report, title, source, app_id, domain)])[0]

    def add_many(self, tasks: Iterable[NewTask]) -> list[int]:
        """Save several verifications in one transaction (an import or a batch): all of them or none."""
        created_at = int(self._clock())
        # Serialised and compressed before the transaction, so the write lock is held only for the inserts.
        rows = []
        for task in tasks:
            summary = TaskSummary(id=0, created_at=created_at, verified_at=task.report.verified_at,
                                  verdict=task.report.verdict.value, title=task.title,
                                  app_id=_normal_app_id(task.app_id), domain=(task.domain or "").strip() or None,
                                  source=task.source, counts=_counts(task.report))
            blob = zlib.compress(task.report.to_json(indent=None).encode(), _ZLIB_LEVEL)
            rows.append((summary, blob))
        ids = []
        with self._write("cannot save the task") as conn:
            for summary, blob in rows:
                cursor = conn.execute(
                    "INSERT INTO tasks (created_at, verified_at, verdict, title, app_id, domain, source, counts_json) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (summary.created_at, summary.verified_at, summary.verdict, summary.title, summary.app_id,
                     summary.domain, summary.source, json.dumps(summary.counts)),
                )
                task_id = cursor.lastrowid
                conn.execute("INSERT INTO task_reports (task_id, report_zlib) VALUES (?, ?)", (task_id, blob))
                ids.append(int(task_id or 0))
        return ids

    def get(self, task_id: int) -> TaskRecord:
        with self._errors(f"cannot read task {task_id}"):
            row = self._conn.execute(
                f"SELECT {_SUMMARY_COLUMNS}, report_zlib FROM tasks LEFT JOIN task_reports ON task_id = id "
                "WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            raise TaskNotFound(f"no task {task_id} in the history", source=str(self.path))
        summary = self._summary(row[:-1])
        try:
            report = Report.model_validate_json(zlib.decompress(row[-1]))
        except (zlib.error, TypeError, ValidationError) as exc:
            raise StoreError(f"the report of task {task_id} is unreadable ({type(exc).__name__})",
                             source=str(self.path), field="task_reports.report_zlib") from None
        return TaskRecord(**summary.model_dump(), report=report)

    def search(self, text: str = "", *, verdict: str | None = None, since: int | None = None,
               until: int | None = None, limit: int = 500, offset: int = 0) -> list[TaskSummary]:
        """Newest first. `text`: every word found in the title, app id or domain; `since`/`until`: the save time,
        `until` exclusive."""
        if limit < 0 or offset < 0:
            raise InputError("limit and offset must not be negative")
        where, params = _where(text, verdict, since, until)
        with self._errors("cannot search the task history"):
            rows = self._conn.execute(
                f"SELECT {_SUMMARY_COLUMNS} FROM tasks{where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                (*params, limit, offset)).fetchall()
        return [self._summary(row) for row in rows]

    def count(self, text: str = "", *, verdict: str | None = None, since: int | None = None,
              until: int | None = None) -> int:
        where, params = _where(text, verdict, since, until)
        with self._errors("cannot search the task history"):
            return int(self._conn.execute(f"SELECT count(*) FROM tasks{where}", params).fetchone()[0])

    def delete(self, task_id: int) -> None:
        with self._write(f"cannot delete task {task_id}") as conn:
            if conn.execute("DELETE FROM tasks WHERE id = ?", (task_id,)).rowcount == 0:
                raise TaskNotFound(f"no task {task_id} in the history", source=str(self.path))
            conn.execute("DELETE FROM task_reports WHERE task_id = ?", (task_id,))
