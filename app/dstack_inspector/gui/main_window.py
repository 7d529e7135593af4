"""The main window: a verdict banner, the checks tree with a details pane, and the quote pane where a decoded field
and its bytes in the hex view are linked both ways (Wireshark's details tree ↔ bytes pane).

The window is a thin layer over `dstack_verifier`: it loads evidence with the library, hands a `VerifyJob` to a
`VerifyWorker` on its QThreadPool, and renders the `Report` that comes back. It computes no verification result
of its own. The event loop never waits on a verification.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dstack_verifier import __version__
from dstack_verifier.demo import load_demo
from dstack_verifier.errors import InputError
from dstack_verifier.evidence import Evidence, load_evidence
from dstack_verifier.model import Check, CheckStatus, Report, Verdict
from dstack_verifier.quote.verify import TrustAnchor
from dstack_verifier.verification import load_anchor
from PySide6.QtCore import (
    Qt,
    QThreadPool,
    Signal,
    Slot,
)
from PySide6.QtGui import (
    QAction,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStyle,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from ..workers import VerifyJob, VerifyWorker
from .checks_pane import ChecksPane, DetailsPane
from .quote_pane import CHECK_FIELDS, InputsTable, QuotePane
from .vocabulary import FINDING_STATUSES, count_statuses, format_time, quote_bytes_of
from .widgets import FindingsBadge, KeyValueTree, MessageBar, VerdictBanner

# --------------------------------------------------------------------------------------------------------------
# The window


@dataclass
class Session:
    """The evidence on screen and how to verify it."""

    items: list[Evidence]
    anchor: TrustAnchor
    title: str
    now: int | None = None  # None: the wall clock at each verification
    anchor_label: str | None = None  # shown as the badge when the anchor is not Intel's
    is_demo: bool = False



class MainWindow(QMainWindow):
    """Verdict banner; checks | details; quote fields | hex (plus TCB & PCK, inputs); status bar with findings."""

    verificationSettled = Signal()  # a verification ended: result, error or cancel
    stateChanged = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("dstack-inspector")
        self.setAcceptDrops(True)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self.session: Session | None = None
        self.report: Report | None = None
        self.state = "idle"
        self._worker: VerifyWorker | None = None
        self._running: list[VerifyWorker] = []
        self._custom_anchor: TrustAnchor | None = None
        self._build_actions()
        self._build_ui()
        self._update_actions()
        self.resize(1440, 900)

    # ---- construction ---------------------------------------------------------------------------------------
    def _build_actions(self) -> None:
        style = self.style()
        icon = style.standardIcon
        sp = QStyle.StandardPixmap
        self.open_action = QAction(icon(sp.SP_DialogOpenButton), "Open evidence files…", self)
        self.open_action.setShortcut(QKeySequence.StandardKey.Open)
        self.open_action.setToolTip("Open a quote (binary or hex), a GetQuote JSON, DCAP collateral or a report")
        self.open_action.triggered.connect(self.choose_files)
        self.demo_action = QAction(icon(sp.SP_FileDialogInfoView), "Open demo evidence", self)
        self.demo_action.setToolTip("Synthetic evidence signed by a demo root CA — not Intel")
        self.demo_action.triggered.connect(self.load_demo)
        self.verify_action = QAction(icon(sp.SP_BrowserReload), "Re-verify", self)
        self.verify_action.setShortcut(QKeySequence(Qt.Key.Key_F5))
        self.verify_action.triggered.connect(self.verify)
        self.cancel_action = QAction(icon(sp.SP_BrowserStop), "Cancel", self)
        self.cancel_action.setShortcut(QKeySequence(Qt.Key.Key_Escape))
        self.cancel_action.triggered.connect(self.cancel)
        self.offline_action = QAction(icon(sp.SP_DriveNetIcon), "Offline", self)
        self.offline_action.setCheckable(True)
        self.offline_action.setToolTip("Never touch the network: what needs it (e.g. fetching collateral) is "
                                       "skipped with the reason")
        self.offline_action.toggled.connect(self.set_offline)
        self.anchor_intel_action = QAction("Use the Intel SGX Root CA", self)
        self.anchor_intel_action.triggered.connect(self.use_intel_anchor)
        self.anchor_file_action = QAction("Use a root CA file…", self)
        self.anchor_file_action.triggered.connect(self.choose_anchor)
        self.about_action = QAction(icon(sp.SP_MessageBoxInformation), "About", self)
        self.about_action.triggered.connect(self.show_about)
        self.quit_action = QAction("Quit", self)
        self.quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        self.quit_action.triggered.connect(self.close)

        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addActions([self.open_action, self.demo_action])
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        verify_menu = menu.addMenu("&Verify")
        verify_menu.addActions([self.verify_action, self.cancel_action])
        verify_menu.addSeparator()
        verify_menu.addAction(self.offline_action)
        anchor_menu = verify_menu.addMenu("Trust anchor")
        anchor_menu.addActions([self.anchor_intel_action, self.anchor_file_action])
        help_menu = menu.addMenu("&Help")
        help_menu.addAction(self.about_action)

        toolbar = QToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        toolbar.addActions([self.open_action, self.demo_action])
        toolbar.addSeparator()
        toolbar.addActions([self.verify_action, self.cancel_action])
        toolbar.addSeparator()
        toolbar.addAction(self.offline_action)
        toolbar.addSeparator()
        toolbar.addAction(self.about_action)
        self.addToolBar(toolbar)
        self.toolbar = toolbar

    def _build_ui(self) -> None:
        self.message_bar = MessageBar()
        self.banner = VerdictBanner()
        self.checks_pane = ChecksPane()
        self.details_pane = DetailsPane()
        self.quote_pane = QuotePane()
        self.tcb_tree = KeyValueTree()
        self.inputs_table = InputsTable()

        self.top_splitter = QSplitter(Qt.Orientation.Horizontal)
        self.top_splitter.addWidget(self.checks_pane)
        self.top_splitter.addWidget(self.details_pane)
        self.top_splitter.setChildrenCollapsible(False)
        self.bottom_tabs = QTabWidget()
        self.bottom_tabs.addTab(self.quote_pane, "Quote")
        self.bottom_tabs.addTab(self.tcb_tree, "TCB && platform")
        self.bottom_tabs.addTab(self.inputs_table, "Inputs")
        self.main_splitter = QSplitter(Qt.Orientation.Vertical)
        self.main_splitter.addWidget(self.top_splitter)
        self.main_splitter.addWidget(self.bottom_tabs)
        self.main_splitter.setChildrenCollapsible(False)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(8, 6, 8, 4)
        layout.setSpacing(6)
        layout.addWidget(self.message_bar)
        layout.addWidget(self.banner)
        layout.addWidget(self.main_splitter, 1)
        self.setCentralWidget(central)
        self.setStyleSheet("QLabel#paneTitle { font-weight: bold; color: #37414b; padding: 2px 0; }")

        status = self.statusBar()
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setMaximumWidth(140)
        self.progress.setMaximumHeight(14)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Cancel the running verification (Esc)")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.hide()
        self.network_label = QLabel()
        self.anchor_label = QLabel()
        self.findings_badge = FindingsBadge()
        self.findings_badge.toggled.connect(self.checks_pane.set_findings_only)
        status.addPermanentWidget(self.progress)
        status.addPermanentWidget(self.cancel_button)
        status.addPermanentWidget(self.anchor_label)
        status.addPermanentWidget(self.network_label)
        status.addPermanentWidget(self.findings_badge)

        self.checks_pane.checkSelected.connect(self._show_check)
        self.checks_pane.groupSelected.connect(self.details_pane.show_group)
        self.details_pane.fieldLinkActivated.connect(self._reveal_field)
        self._update_status_labels()

    def showEvent(self, event) -> None:  # type: ignore[no-untyped-def]
        super().showEvent(event)
        if not getattr(self, "_sized", False):
            self._sized = True
            self.balance_splitters()

    def balance_splitters(self) -> None:
        height = max(self.main_splitter.height(), 600)
        self.main_splitter.setSizes([int(height * 0.46), int(height * 0.54)])
        width = max(self.top_splitter.width(), 900)
        self.top_splitter.setSizes([int(width * 0.52), int(width * 0.48)])
        qwidth = max(self.quote_pane.splitter.width(), 900)
        self.quote_pane.splitter.setSizes([int(qwidth * 0.5), int(qwidth * 0.5)])

    # ---- evidence ---------------------------------------------------------------------------------------------
    def load_demo(self) -> bool:
        try:
            demo = load_demo()
        except InputError as exc:
            self.message_bar.show_message("error", "The demo evidence could not be loaded.", [exc.describe()])
            return False
        self.message_bar.hide()
        self._start_session(Session(items=demo.items, anchor=demo.anchor, now=demo.now, title="demo evidence",
                                    anchor_label=demo.label, is_demo=True))
        return True

    def open_paths(self, paths: list[Path]) -> bool:
        """Load evidence files and verify them; a file that cannot be used is reported, and nothing changes."""
        if not paths:
            return False
        items, problems = [], []
        for path in paths:
            try:
                items.append(load_evidence(Path(path)))
            except InputError as exc:
                problems.append(exc.describe())
        if problems:
            title = "Could not open the evidence:" if len(paths) == 1 else \
                f"Could not open {len(problems)} of {len(paths)} evidence files; nothing was loaded:"
            self.message_bar.show_message("error", title, problems)
            self.statusBar().showMessage("Opening failed", 5000)
            return False
        self.message_bar.hide()
        anchor = self._custom_anchor or load_anchor(None)
        label = "custom root — not Intel" if not anchor.is_intel else None
        names = ", ".join(Path(p).name for p in paths)
        self._start_session(Session(items=items, anchor=anchor, title=names, anchor_label=label))
        return True

    def choose_files(self) -> None:
        names, _ = QFileDialog.getOpenFileNames(
            self, "Open evidence files", "",
            "Evidence (*.hex *.bin *.dat *.json *.txt);;All files (*)",
        )
        if names:
            self.open_paths([Path(n) for n in names])

    def use_intel_anchor(self) -> None:
        self._custom_anchor = None
        if self.session is not None and not self.session.is_demo:
            self.session.anchor, self.session.anchor_label = load_anchor(None), None
            self.verify()
        self._update_status_labels()

    def choose_anchor(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Trust anchor: root CA certificate", "",
                                              "Certificates (*.der *.cer *.crt *.pem);;All files (*)")
        if name:
            self.set_anchor_file(Path(name))

    def set_anchor_file(self, path: Path) -> bool:
        try:
            anchor = load_anchor(path)
        except InputError as exc:
            self.message_bar.show_message("error", "The root CA could not be used:", [exc.describe()])
            return False
        self._custom_anchor = None if anchor.is_intel else anchor
        if self.session is not None and not self.session.is_demo:
            self.session.anchor = anchor
            self.session.anchor_label = None if anchor.is_intel else "custom root — not Intel"
            self.verify()
        self._update_status_labels()
        return True

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and all(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    def _start_session(self, session: Session) -> None:
        self.session = session
        title = f"dstack-inspector — {session.title}"
        if session.anchor_label:
            title += f"  [{session.anchor_label}]"
        self.setWindowTitle(title)
        self._update_status_labels()
        self.verify()

    # ---- verification -------------------------------------------------------------------------------------------
    def is_busy(self) -> bool:
        return self._worker is not None

    def verify(self) -> None:
        """Start verifying the current session on the pool (a running one is cancelled first)."""
        if self.session is None:
            return
        if self._worker is not None:
            self._worker.cancel()
        s = self.session
        worker = VerifyWorker(VerifyJob(items=s.items, anchor=s.anchor, now=s.now,
                                        offline=self.offline_action.isChecked()))
        worker.signals.progress.connect(self._on_progress)
        worker.signals.result.connect(self._on_result)
        worker.signals.error.connect(self._on_error)
        worker.signals.finished.connect(self._on_finished)
        self._worker = worker
        self._running.append(worker)
        self._show_results(None)
        self.banner.show_state("running", "…", "Verifying…", f"{s.title} · the window stays usable; "
                               "Cancel (Esc) stops waiting for the result.")
        self._set_state("running")
        self.pool.start(worker)

    def cancel(self) -> None:
        worker = self._worker
        if worker is None:
            return
        worker.cancel()
        self._worker = None  # anything it still emits is stale and discarded
        self.banner.show_state("idle", "—", "Verification cancelled",
                               "Nothing is shown for this evidence. Re-verify (F5) to run it again.")
        self.statusBar().showMessage("Verification cancelled", 5000)
        self._set_state("cancelled")
        self.verificationSettled.emit()

    def _is_current(self) -> bool:
        return self._worker is not None and self.sender() is self._worker.signals

    @Slot(str)
    def _on_progress(self, text: str) -> None:
        if self._is_current():
            self.statusBar().showMessage(text)

    @Slot(object)
    def _on_result(self, report: Report) -> None:
        if not self._is_current():
            return  # a cancelled or superseded verification
        self._worker = None
        self._show_results(report)
        self._set_state("done")
        self.statusBar().showMessage(f"Verified in {sum(report.timings.values()) * 1000:.0f} ms", 8000)
        self.verificationSettled.emit()

    @Slot(str)
    def _on_error(self, message: str) -> None:
        if not self._is_current():
            return
        self._worker = None
        self._show_results(None)
        self.banner.show_state("error", "ERROR", "The evidence could not be verified", message)
        self.message_bar.show_message("error", "The evidence could not be verified:", [message])
        self._set_state("error")
        self.statusBar().showMessage("Verification failed to run", 8000)
        self.verificationSettled.emit()

    @Slot()
    def _on_finished(self) -> None:
        sender = self.sender()
        self._running = [w for w in self._running if w.signals is not sender]

    def _set_state(self, state: str) -> None:
        self.state = state
        self._update_actions()
        self.stateChanged.emit(state)

    def _update_actions(self) -> None:
        running = self._worker is not None
        self.verify_action.setEnabled(self.session is not None)
        self.cancel_action.setEnabled(running)
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)

    def set_offline(self, offline: bool) -> None:
        if self.offline_action.isChecked() != offline:
            self.offline_action.setChecked(offline)  # re-enters through toggled
            return
        self._update_status_labels()
        if self.session is not None:
            self.verify()

    def _update_status_labels(self) -> None:
        offline = self.offline_action.isChecked()
        self.network_label.setText("Offline" if offline else "Online")
        self.network_label.setToolTip("The network is never used" if offline else
                                      "Missing collateral may be fetched from the PCCS")
        s = self.session
        if s is None:
            anchor = self._custom_anchor
            text = "Anchor: Intel SGX Root CA" if anchor is None else "Anchor: custom root — not Intel"
        else:
            text = f"Anchor: {s.anchor_label}" if s.anchor_label else "Anchor: Intel SGX Root CA"
        self.anchor_label.setText(text)
        warn = "not Intel" in text
        self.anchor_label.setStyleSheet("color: #b45309; font-weight: bold;" if warn else "")

    # ---- rendering ------------------------------------------------------------------------------------------
    def _show_results(self, report: Report | None) -> None:
        self.report = report
        session = self.session
        self.banner.set_badge(session.anchor_label if session is not None else None)
        self.details_pane.clear()
        if report is None:
            self.checks_pane.clear()
            self.quote_pane.clear()
            self.tcb_tree.clear()
            self.inputs_table.set_inputs(None)
            self.findings_badge.set_counts(None)
            return
        self.checks_pane.set_checks(report.checks)
        app = report.entities.get("app", {})
        raw = quote_bytes_of(report)
        if raw is not None and app.get("quote_layout"):
            self.quote_pane.set_quote(raw, app["quote_layout"], app.get("quote") or {})
        else:
            self.quote_pane.clear()
        sections: list[tuple[str, Any]] = [("TCB", app.get("tcb") or {}), ("PCK certificate", app.get("pck") or {})]
        sections += [("Trust anchor", report.policy.get("trust_anchor", {})),
                     ("Policy", {k: v for k, v in report.policy.items() if k != "trust_anchor"}),
                     ("Timings (s)", {k: round(v, 4) for k, v in report.timings.items()})]
        self.tcb_tree.set_data(sections, expand_depth=0)
        self.inputs_table.set_inputs(report)
        counts = count_statuses(report.checks)
        self.findings_badge.set_counts(counts)
        self._show_verdict(report, counts)
        first = next((c for c in report.checks if c.status in FINDING_STATUSES), None) or \
            (report.checks[0] if report.checks else None)
        if first is not None:
            self.checks_pane.select_check(first.id)

    def _show_verdict(self, report: Report, counts: dict[str, int]) -> None:
        total = len(report.checks)
        if report.verdict is Verdict.PASS:
            warns, skips = counts[CheckStatus.WARN], counts[CheckStatus.SKIP]
            ran = total - skips
            headline = f"All {ran} checks that apply passed" if not warns else \
                f"Passed with {warns} warning{'s' if warns != 1 else ''} ({ran} checks)"
            if skips:
                headline += f"; {skips} not applicable"
        elif report.verdict is Verdict.FAIL:
            n = counts[CheckStatus.FAIL]
            headline = f"{n} of {total} checks failed"
        else:
            n = counts[CheckStatus.ERROR] + counts[CheckStatus.SKIP]
            headline = f"Incomplete: nothing failed, but {n} of {total} checks could not run"
        app = report.entities.get("app", {})
        quote = app.get("quote") or {}
        parts = []
        if quote:
            parts.append(f"{quote.get('tee_type', '?')} quote v{quote.get('version', '?')}")
        tcb = (app.get("tcb") or {}).get("status")
        if tcb:
            parts.append(f"TCB {tcb}")
        parts.append(f"at {format_time(report.verified_at)}")
        anchor = report.policy.get("trust_anchor", {})
        subject = str(anchor.get("subject", ""))
        cn = next((p[3:] for p in subject.split(",") if p.startswith("CN=")), subject)
        parts.append(f"trust anchor: {cn}" + ("" if anchor.get("intel") else " (caller-supplied)"))
        self.banner.show_state(report.verdict.value, report.verdict.value.upper(), headline, " · ".join(parts))

    def _show_check(self, check: Check) -> None:
        name = CHECK_FIELDS.get(check.id)
        span = self.quote_pane.span_of(name) if name else None
        self.details_pane.show_check(check, span)

    def _reveal_field(self, name: str) -> None:
        self.bottom_tabs.setCurrentWidget(self.quote_pane)
        self.quote_pane.select_field(name)

    # ---- about and shutdown -------------------------------------------------------------------------------------
    def about_text(self) -> str:
        lines = [f"dstack-inspector {__version__}",
                 "Attestation inspector for dstack apps on Intel TDX. Everything is verified locally.", ""]
        s = self.session
        anchor = s.anchor if s is not None else (self._custom_anchor or load_anchor(None))
        lines.append("Trust anchor of the current verification:" if s else "Trust anchor for opened evidence:")
        lines.append(f"  subject: {anchor.cert.subject.rfc4514_string()}")
        lines.append(f"  SHA-256: {anchor.sha256}")
        if anchor.is_intel:
            lines.append("  This is the Intel SGX Root CA (its SHA-256 is pinned in the verifier).")
        else:
            label = s.anchor_label if s is not None and s.anchor_label else "not Intel"
            lines.append(f"  {label}: a result resting on this root proves nothing about genuine Intel hardware.")
        return "\n".join(lines)

    def show_about(self) -> None:
        box = QMessageBox(QMessageBox.Icon.Information, "About dstack-inspector", self.about_text(),
                          QMessageBox.StandardButton.Ok, self)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.open()

    def closeEvent(self, event) -> None:  # type: ignore[no-untyped-def]
        for worker in self._running:
            worker.cancel()
        self._worker = None
        self.pool.waitForDone(3000)
        super().closeEvent(event)

