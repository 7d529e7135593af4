"""Background work for the GUI: verifications (and pack export / verification) run on the QThreadPool, never on
the event loop.

A worker is a QRunnable; QRunnable is not a QObject, so its signals live on a small QObject holder
(`WorkerSignals`) created in the GUI thread. Signals emitted from the pool thread reach the window's slots through
queued connections, i.e. on the GUI thread.

Progress and cancellation. The verification reports each step ("gateway: domain") through a
`dstack_verifier.verification.Progress`, and asks it between steps whether to stop:

* `cancel()` sets a flag; a worker cancelled before the pool starts it returns without verifying (only `finished`);
* a worker cancelled while running stops at the next step and emits `cancelled` (a step itself — one quote, one
  image measurement — is not interrupted); the window has already let go of it, so the user never waits.

Errors. Bad input (`InputError`) becomes one human line on `error`; any other exception becomes
"internal error: <type>: <message>" on `error` — never a traceback (set DSTACK_INSPECTOR_DEBUG to also print one on
stderr).
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dstack_verifier.errors import InputError
from dstack_verifier.evidence import Evidence
from dstack_verifier.model import Report
from dstack_verifier.net import NetClient
from dstack_verifier.quote.pccs import PHALA_PCCS_URL, CollateralCache
from dstack_verifier.quote.policy import TcbPolicy
from dstack_verifier.quote.verify import TrustAnchor
from dstack_verifier.sources.cloud import fetch_cloud_evidence
from dstack_verifier.verification import Cancelled, ImageOptions, Progress, VerifyOptions, verify_evidence
from PySide6.QtCore import QObject, QRunnable, Signal

from .settings import collateral_cache_dir

if TYPE_CHECKING:  # the domain phase's modules (dnspython…) load when a verification needs them
    from dstack_verifier.domain_phase import DomainOptions
    from dstack_verifier.ita import ItaOptions


@dataclass
class VerifyJob:
    """What one verification needs. `now` None means "the wall clock when the worker starts"; `app_id` fetches the
    app's Phala Cloud answer first (online), to verify with the other items."""

    items: list[Evidence]
    anchor: TrustAnchor
    now: int | None = None
    offline: bool = False
    use_cache: bool = True
    app_id: str | None = None
    cloud_url: str | None = None
    pccs_url: str | None = None
    domain: DomainOptions | None = None
    images: ImageOptions | None = None
    ita: ItaOptions | None = None
    phases: tuple[str, ...] | None = None  # None: every phase the evidence allows
    rpc_urls: dict[str, str] | None = None  # JSON-RPC endpoint per chain (the settings')
    policy: TcbPolicy | None = None  # None: the default TCB policy


class WorkerSignals(QObject):
    """Signals of a worker: progress(text), result(Report), error(one-line message), finished()."""

    progress = Signal(str)
    result = Signal(object)  # a dstack_verifier.model.Report
    error = Signal(str)
    cancelled = Signal()
    finished = Signal()


# Pool threads for verifications. The work is mostly Python, so under the GIL more threads add no throughput; they
# only make the event loop wait longer for the interpreter. More verifications than threads wait in the pool's queue.
POOL_THREADS = 2


def error_message(exc: BaseException) -> str:
    """One line a person can act on; never a traceback."""
    if isinstance(exc, InputError):
        return exc.describe()
    text = f"internal error: {type(exc).__name__}: {exc}"
    return text.splitlines()[0]


class VerifyWorker(QRunnable):
    """Runs `verify_evidence` for one job on the QThreadPool."""

    def __init__(
        self,
        job: VerifyJob,
        *,
        client_factory: Callable[[], NetClient] | None = None,
        cache_factory: Callable[[], CollateralCache | None] | None = None,
    ) -> None:
        super().__init__()
        # Python owns the worker (the window keeps it until `finished`): with the pool deleting it, PySide's wrapper
        # would be left pointing at freed memory.
        self.setAutoDelete(False)
        self.job = job
        self.signals = WorkerSignals()
        self._cancelled = threading.Event()
        self._client_factory = client_factory or NetClient
        self._cache_factory = cache_factory or (lambda: CollateralCache(collateral_cache_dir()))

    def cancel(self) -> None:
        """Ask the worker not to start, or mark its result stale (see the module docstring)."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def run(self) -> None:  # on a pool thread: no widget may be touched here
        try:
            if self.cancelled:
                return
            report = self._verify()
            self.signals.progress.emit("Verification finished")
            self.signals.result.emit(report)
        except Cancelled:
            self.signals.cancelled.emit()
        except Exception as exc:  # the boundary of the thread: everything becomes one line for the user
            if os.environ.get("DSTACK_INSPECTOR_DEBUG"):
                traceback.print_exc()
            self.signals.error.emit(error_message(exc))
        finally:
            self.signals.finished.emit()

    def _verify(self) -> Report:
        job = self.job
        options = VerifyOptions(
            now=job.now if job.now is not None else int(time.time()),
            anchor=job.anchor,
            offline=job.offline,
            pccs_url=job.pccs_url or os.environ.get("PCCS_URL") or PHALA_PCCS_URL,
            domain=job.domain,
            images=job.images,
            ita=job.ita,
            rpc_urls=job.rpc_urls or {},
            policy=job.policy or TcbPolicy(),
            **({"phases": job.phases, "explicit_phases": True} if job.phases is not None else {}),
        )
        progress = Progress(report=self.signals.progress.emit, cancelled=lambda: self.cancelled)
        client = None if job.offline else self._client_factory()
        try:
            items = list(job.items)
            if job.app_id:
                if client is None:
                    raise InputError("verifying an app by its id needs the network: turn offline mode off")
                progress.step(f"fetching the attestations of app {job.app_id}")
                items.append(fetch_cloud_evidence(client, job.app_id, job.cloud_url))
            cache = self._cache_factory() if job.use_cache and not job.offline else None
            return verify_evidence(items, options, client=client, cache=cache, progress=progress)
        finally:
            if client is not None:
                client.close()


def save_report(path: Path, report: Report, **task: Any) -> int:
    """Save a report in the task history at `path` through a connection of the calling (pool) thread: SQLite's
    fsyncs then never stall the event loop, and WAL lets the window's own connection go on reading."""
    from .store import TaskStore

    with TaskStore(path) as store:
        return store.add(report, **task)


class CallWorker(QRunnable):
    """Runs one library call (export or verify a pack…) on the pool: `result` with its value, or `error`."""

    def __init__(self, call: Callable[[], object]) -> None:
        super().__init__()
        self.setAutoDelete(False)  # as VerifyWorker
        self.call = call
        self.signals = WorkerSignals()

    def run(self) -> None:
        try:
            self.signals.result.emit(self.call())
        except Exception as exc:  # the boundary of the thread, as in VerifyWorker
            if os.environ.get("DSTACK_INSPECTOR_DEBUG"):
                traceback.print_exc()
            self.signals.error.emit(error_message(exc))
        finally:
            self.signals.finished.emit()
