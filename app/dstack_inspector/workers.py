"""Background work for the GUI: verifications run on the QThreadPool, never on the event loop.

A worker is a QRunnable; QRunnable is not a QObject, so its signals live on a small QObject holder
(`WorkerSignals`) created in the GUI thread. Signals emitted from the pool thread reach the window's slots through
queued connections, i.e. on the GUI thread.

Cancellation. `verify_evidence` is short (milliseconds for the hardware phase) and has no cancellation points, so a
worker is not interrupted mid-way. Instead:

* `cancel()` sets a flag; a worker cancelled before the pool starts it returns without verifying or emitting a
  result (only `finished`);
* a worker cancelled while running completes, and its result is *stale*: the window discards it (it only accepts
  signals from the worker it is currently waiting for) and is idle again at once, so the user never waits on it.

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

from dstack_verifier.errors import InputError
from dstack_verifier.evidence import Evidence
from dstack_verifier.model import Report
from dstack_verifier.net import NetClient
from dstack_verifier.quote.pccs import PHALA_PCCS_URL, CollateralCache
from dstack_verifier.quote.verify import TrustAnchor
from dstack_verifier.verification import VerifyOptions, verify_evidence
from PySide6.QtCore import QObject, QRunnable, Signal

from .settings import collateral_cache_dir


@dataclass
class VerifyJob:
    """What one verification needs. `now` None means "the wall clock when the worker starts"."""

    items: list[Evidence]
    anchor: TrustAnchor
    now: int | None = None
    offline: bool = False
    use_cache: bool = True


class WorkerSignals(QObject):
    """Signals of a worker: progress(text), result(Report), error(one-line message), finished()."""

    progress = Signal(str)
    result = Signal(object)  # a dstack_verifier.model.Report
    error = Signal(str)
    finished = Signal()


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
            self.signals.progress.emit("Verifying the quote and its collateral…")
            report = self._verify()
            if not self.cancelled:
                self.signals.progress.emit("Verification finished")
            # Emitted even when cancelled meanwhile: the window recognises and discards a stale result.
            self.signals.result.emit(report)
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
            pccs_url=os.environ.get("PCCS_URL") or PHALA_PCCS_URL,
        )
        client = None if job.offline else self._client_factory()
        try:
            cache = self._cache_factory() if job.use_cache and not job.offline else None
            return verify_evidence(job.items, options, client=client, cache=cache)
        finally:
            if client is not None:
                client.close()
