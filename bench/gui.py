"""Benchmark: the GUI's responsiveness — cold start, event-loop stalls under verification load, and the history.

Prints
  * cold start: a fresh `python -c` process imports `dstack_inspector.gui.main_window`, creates the QApplication and
    the MainWindow, shows it; the time from just before the process is spawned to the first paint event (so the
    interpreter's own start is included), median of N (target <= 1.5 s), with the phases, and which heavy modules
    (web3, eth_*, dcap_qvl, networkx, hypothesis, …) were imported by then. When web3 is among them, the import
    chain that pulled it in (from `python -X importtime`);
  * stall: a 5 ms QTimer in the GUI thread while 4 `VerifyWorker`s verify the demo evidence concurrently on a
    QThreadPool of 4 threads, round after round for about 2 s; the longest gap between ticks minus 5 ms (target
    <= 50 ms), idle first as the baseline, then with each result saved to a task history from a pool worker with
    its own connection (as the window does), and, for comparison, on the GUI thread;
  * history: a `TaskStore` of 10,000 tasks with real demo reports (each ~116 kB of JSON), then the time to open the
    store and load the first page of the history model, to apply a text filter, and a verdict filter (target <= 200
    ms for all of it), each median of N; and the time to read one full task.
Run: QT_QPA_PLATFORM=offscreen .venv/bin/python bench/gui.py [--rounds N] [--tasks N] [--skip cold,stall,history]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for tests.support

from dstack_inspector.gui.app import tune_gc
from dstack_inspector.gui.history_view import HistoryFilter, HistoryModel, HistoryView
from dstack_inspector.store import NewTask, TaskStore
from dstack_inspector.workers import POOL_THREADS, CallWorker, VerifyJob, VerifyWorker, save_report
from dstack_verifier.demo import Demo, load_demo
from dstack_verifier.model import Report
from PySide6.QtCore import QElapsedTimer, QEventLoop, Qt, QThreadPool, QTimer
from PySide6.QtWidgets import QApplication

from tests.support.reports import demo_reports

COLD_TARGET_S = 1.5
STALL_TARGET_MS = 50.0
HISTORY_TARGET_MS = 200.0
TICK_MS = 5
WORKERS = 4
STALL_SECONDS = 2.0
HEAVY = ("web3", "eth_abi", "eth_utils", "eth_account", "eth_typing", "eth_keys", "dcap_qvl", "networkx",
         "hypothesis", "httpx", "dns", "sqlite_utils", "cryptography", "pydantic")

# The child of the cold-start measurement: prints, as JSON, wall-clock times of its phases and the modules loaded.
COLD_CHILD = textwrap.dedent("""
    import json, sys, time
    marks = {"interpreter": time.time()}
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication
    from dstack_inspector.gui.main_window import MainWindow
    marks["imported"] = time.time()
    app = QApplication(sys.argv[:1])
    window = MainWindow()
    marks["constructed"] = time.time()

    class FirstPaint(QObject):
        def eventFilter(self, obj, event):
            if event.type() == QEvent.Type.Paint and "painted" not in marks:
                marks["painted"] = time.time()
                QTimer.singleShot(0, app.quit)
            return False

    spy = FirstPaint()
    app.installEventFilter(spy)
    window.show()
    app.exec()
    print(json.dumps({"marks": marks, "modules": sorted(sys.modules)}))
""")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def median_of(fn: Callable[[], float], rounds: int) -> float:
    return statistics.median(fn() for _ in range(rounds))


# --- cold start ---


def cold_start_once() -> tuple[float, dict[str, float], list[str]]:
    start = time.time()
    run = subprocess.run([sys.executable, "-c", COLD_CHILD], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    if run.returncode != 0:
        raise SystemExit(f"cold-start child failed: {run.stderr.strip().splitlines()[-1:]}")
    out = json.loads(run.stdout.strip().splitlines()[-1])
    marks = {name: t - start for name, t in out["marks"].items()}
    return marks["painted"], marks, out["modules"]


def import_chain(module: str) -> list[str]:
    """Who imported `module` at startup: from `-X importtime`, whose lines are post-order (children first) and
    indented two spaces per level, so each ancestor is the next line one level shallower."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-c", "import dstack_inspector.gui.main_window"],
                         capture_output=True, text=True, timeout=120)
    lines = [line.split("|")[-1] for line in run.stderr.splitlines() if line.startswith("import time:")][1:]
    entries = [(len(name) - len(name.lstrip(" ")), name.strip()) for name in lines]
    at = next((i for i, (_, name) in enumerate(entries) if name == module), None)
    if at is None:
        return []
    chain, depth = [module], entries[at][0]
    for indent, name in entries[at + 1:]:
        if indent < depth:
            chain.append(name)
            depth = indent
    return chain[::-1]


def bench_cold(rounds: int) -> None:
    runs = [cold_start_once() for _ in range(rounds)]
    painted = statistics.median(r[0] for r in runs)
    phases = {name: statistics.median(r[1][name] for r in runs) for name in runs[0][1]}
    modules = set(runs[0][2])
    print(f"cold start to first paint, median of {rounds}: {painted:.3f} s   target <= {COLD_TARGET_S} s   "
          f"ratio {painted / COLD_TARGET_S:.2f}")
    print("  phases (from spawn): " + ", ".join(f"{name} {t:.3f} s" for name, t in phases.items()))
    loaded = [m for m in HEAVY if m in modules]
    print(f"  heavy modules imported by then: {', '.join(loaded) or 'none'}")
    print(f"  not imported: {', '.join(m for m in HEAVY if m not in modules) or 'none'}")
    if "web3" in modules:
        print(f"  web3 is imported at startup, through: {' -> '.join(import_chain('web3')) or '?'}")


# --- event-loop stall ---


def run_stall(app: QApplication, demo: Demo, *, seconds: float,
              on_result: Callable[[Report, QThreadPool], None] | None, workers: int) -> tuple[float, int, int]:
    """Longest gap between 5 ms ticks (ms), ticks, verifications; `workers` 0 measures the idle loop."""
    pool = QThreadPool()
    pool.setMaxThreadCount(POOL_THREADS)  # as the window's pool: more verifications wait in its queue
    clock = QElapsedTimer()
    ticks: list[int] = []
    done = {"verified": 0, "running": 0}
    loop = QEventLoop()
    timer = QTimer(timerType=Qt.TimerType.PreciseTimer, interval=TICK_MS)
    timer.timeout.connect(lambda: ticks.append(clock.nsecsElapsed()))
    keep: list[VerifyWorker] = []  # the signal holders must outlive the queued signals

    def start_round() -> None:
        for _ in range(workers):
            worker = VerifyWorker(VerifyJob(demo.items, demo.anchor, now=demo.now, offline=True, use_cache=False,
                                            domain=demo.domain))
            worker.signals.result.connect(result)
            worker.signals.finished.connect(finished)
            keep.append(worker)
            done["running"] += 1
            pool.start(worker)

    def result(report: Report) -> None:
        done["verified"] += 1
        if on_result is not None:
            on_result(report, pool)

    def finished() -> None:
        done["running"] -= 1
        if done["running"] == 0:
            if clock.elapsed() < seconds * 1000:
                start_round()
            else:
                loop.quit()

    clock.start()
    timer.start()
    if workers:
        start_round()
    else:
        QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()
    timer.stop()
    pool.waitForDone()
    app.processEvents()
    gaps = [(b - a) / 1e6 for a, b in itertools.pairwise(ticks)]
    return max(gaps) - TICK_MS, len(ticks), done["verified"]


def bench_stall(app: QApplication, demo: Demo, store_dir: Path) -> None:
    idle, n, _ = run_stall(app, demo, seconds=0.5, on_result=None, workers=0)
    print(f"event loop, idle 0.5 s: longest gap - {TICK_MS} ms = {idle:.1f} ms ({n} ticks)")
    busy, n, verified = run_stall(app, demo, seconds=STALL_SECONDS, on_result=None, workers=WORKERS)
    print(f"event loop, {WORKERS} verifications at a time ({verified} in all): longest gap - {TICK_MS} ms = "
          f"{busy:.1f} ms   target <= {STALL_TARGET_MS:.0f} ms   ratio {busy / STALL_TARGET_MS:.2f}")
    path = store_dir / "stall.sqlite3"
    savers: list[CallWorker] = []  # kept until their queued signals are delivered

    def save_in_pool(report: Report, pool: QThreadPool) -> None:
        worker = CallWorker(lambda: save_report(path, report, title="bench", source="demo"))
        savers.append(worker)
        pool.start(worker)

    pooled, n, verified = run_stall(app, demo, seconds=STALL_SECONDS, on_result=save_in_pool, workers=WORKERS)
    print(f"  the same, each result saved to the history from the pool (as the window does): {pooled:.1f} ms   "
          f"target <= {STALL_TARGET_MS:.0f} ms   ratio {pooled / STALL_TARGET_MS:.2f}")
    with TaskStore(path) as store:
        def save(report: Report, _pool: QThreadPool) -> None:
            store.add(report, title="bench", source="demo")

        saving, n, verified = run_stall(app, demo, seconds=STALL_SECONDS, on_result=save, workers=WORKERS)
        adds = []
        for _ in range(20):
            t = time.perf_counter()
            save(demo_reports()["pass"], QThreadPool.globalInstance())
            adds.append(time.perf_counter() - t)
    print(f"  for comparison, each result saved on the GUI thread: {saving:.1f} ms; one add() alone: "
          f"median {ms(statistics.median(adds))}, max {ms(max(adds))}")


# --- history ---


def fill_history(path: Path, count: int) -> float:
    """`count` tasks over a year, 50 per save: 70 % pass, 20 % fail, 10 % incomplete; 1 in 25 a "payments" app."""
    t0 = 1_735_689_600
    batch = 50
    now = {"t": t0}
    started = time.perf_counter()
    with TaskStore(path, clock=lambda: now["t"]) as store:
        for first in range(0, count, batch):
            now["t"] = t0 + first * (365 * 86400 // count)
            tasks = []
            for i in range(first, min(first + batch, count)):
                verdict = "fail" if i % 10 in (3, 7) else "incomplete" if i % 10 == 5 else "pass"
                app_id = hashlib.sha256(str(i % 800).encode()).hexdigest()[:40]  # 800 apps, re-verified
                name = "payments" if i % 25 == 0 else f"app-{i % 800}"
                tasks.append(NewTask(demo_reports()[verdict], f"{name} #{i}", "online", app_id=app_id,
                                     domain=f"{name}.apps.example.com"))
            store.add_many(tasks)
    return time.perf_counter() - started


def bench_history(app: QApplication, directory: Path, count: int, rounds: int) -> None:
    path = directory / "history.sqlite3"
    demo_reports()
    built = fill_history(path, count)
    size = sum(p.stat().st_size for p in directory.glob("history.sqlite3*"))
    print(f"history of {count:,} tasks: built in {built:.1f} s ({ms(built / count)} per task), {size / 1e6:,.0f} MB")

    def timed(fn: Callable[[], object]) -> float:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    def open_first_page() -> float:
        t = time.perf_counter()
        store = TaskStore(path)
        model = HistoryModel(store)
        model.reload()
        elapsed = time.perf_counter() - t
        assert model.rowCount() == model.page_size and model.total == count
        store.close()
        return elapsed

    opened = median_of(open_first_page, rounds)
    with TaskStore(path) as store:
        model = HistoryModel(store)
        model.reload()
        filters = {
            "text 'payments'": HistoryFilter(text="payments"),
            "text app id fragment": HistoryFilter(text=hashlib.sha256(b"17").hexdigest()[:10]),
            "verdict fail": HistoryFilter(verdict="fail"),
            "text + verdict": HistoryFilter(text="payments", verdict="incomplete"),
        }
        figures = {name: median_of(lambda f=flt: timed(lambda: model.set_filter(f)), rounds)
                   for name, flt in filters.items()}
        shown = {name: (model.set_filter(flt), model.total)[1] for name, flt in filters.items()}
        one = median_of(lambda: timed(lambda: store.get(count // 2)), rounds)

        def view_painted() -> float:
            t = time.perf_counter()
            view = HistoryView(store)
            view.resize(1200, 700)
            view.show()
            app.processEvents()
            elapsed = time.perf_counter() - t
            view.close()
            view.deleteLater()
            app.processEvents()
            return elapsed

        painted = median_of(view_painted, rounds)
    print(f"  open the store + first page of the model ({HistoryModel.page_size} rows): {ms(opened)}")
    for name, t in figures.items():
        print(f"  filter {name:<22} {ms(t):>10}   ({shown[name]:,} tasks match)")
    total = opened + figures["text 'payments'"] + figures["verdict fail"]
    print(f"  open + first page + text filter + verdict filter: {ms(total)}   target <= {HISTORY_TARGET_MS:.0f} ms   "
          f"ratio {total * 1000 / HISTORY_TARGET_MS:.2f}")
    print(f"  the history pane built, shown and painted on the open store: {ms(painted)}")
    print(f"  read one full task (report decompressed and validated): {ms(one)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--skip", default="", help="comma-separated: cold, stall, history")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, QT_QPA_PLATFORM={os.environ['QT_QPA_PLATFORM']}")
    if "cold" not in skip:
        bench_cold(args.rounds)
    app = QApplication(sys.argv[:1])
    demo = load_demo()
    tune_gc()  # as run_gui does once the window is up
    with tempfile.TemporaryDirectory(prefix="bench-gui-") as tmp:
        if "stall" not in skip:
            bench_stall(app, demo, Path(tmp))
        if "history" not in skip:
            bench_history(app, Path(tmp), args.tasks, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
