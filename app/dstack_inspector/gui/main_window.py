"""The main window: the task history and the running verifications on the left; a verdict banner above the trust
graph and its drill-down (object, checks, quote fields ↔ hex, event log, certificates, TCB, report, inputs); a status
bar with the findings badge (Wireshark's Expert Info).

The window is a thin layer over `dstack_verifier`: it loads evidence with the library, hands a `VerifyJob` to a
`VerifyWorker` on its QThreadPool — several at once, each cancellable — renders the `Report` that comes back, and
saves it in the history. It computes no verification result of its own. The event loop never waits on a
verification, a pack export or a pack verification.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dstack_verifier import __version__
from dstack_verifier.demo import load_demo
from dstack_verifier.errors import InputError
from dstack_verifier.evidence import ZIP_MAGIC, Evidence, detect, load_evidence
from dstack_verifier.model import CheckStatus, DataObject, Report, Verdict
from dstack_verifier.quote.verify import TrustAnchor
from dstack_verifier.sources.trust_center import claims_line
from dstack_verifier.verification import ImageOptions, load_anchor
from PySide6.QtCore import QStringListModel, Qt, QThreadPool, Signal, Slot
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QCompleter,
    QDockWidget,
    QFileDialog,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStyle,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from ..settings import UserSettings, cache_dir, load_settings, save_settings
from ..store import StoreError, TaskStore, report_keys, task_title
from ..workers import POOL_THREADS, CallWorker, VerifyJob, VerifyWorker, save_report
from .copying import install_copy_everywhere
from .history_view import HistoryView
from .layout import restore_layout, save_layout
from .report_view import ReportView
from .tasks_view import TasksView
from .vocabulary import count_statuses, format_time
from .widgets import FindingsBadge, MessageBar, VerdictBanner

if TYPE_CHECKING:  # the domain phase (dnspython…) loads when a verification needs it, not at start-up
    from dstack_verifier.domain_phase import DomainOptions

MAX_RECENT = 10


@dataclass
class Session:
    """The evidence on screen and how to verify it."""

    items: list[Evidence]
    anchor: TrustAnchor
    title: str
    now: int | None = None  # None: the wall clock at each verification
    anchor_label: str | None = None  # shown as the badge when the anchor is not Intel's
    source: str = "files"  # how the history names it: files | online | demo | pack | rerun
    app_id: str | None = None  # fetch this app's attestations (online)
    domain: DomainOptions | None = None  # the gateway's domain checks: domain name, trust roots, CT scan
    phases: tuple[str, ...] | None = None  # the phases asked for (None: all the evidence allows)

    @property
    def is_demo(self) -> bool:
        return self.source == "demo"


@dataclass
class RunningTask:
    number: int
    session: Session
    worker: VerifyWorker


def kms_badge(os_name: str | None, blockchain: str | None) -> str | None:
    """The Trust Center's KMS badge (spec §4.4): dstack 0.3 had a centralized KMS; from 0.5 the KMS runs in a TEE,
    governed on chain when the deployment names a chain."""
    found = re.search(r"(\d+)\.(\d+)", os_name or "")
    version = (int(found.group(1)), int(found.group(2))) if found else None
    if version is not None and version < (0, 5):
        return "Centralized KMS" if version >= (0, 3) else None
    if blockchain:
        return f"Onchain KMS ({blockchain})"
    return "KMS in TEE" if version is not None else None


def identity_parts(report: Report) -> list[str]:
    """Who the report is about, for the banner: the app's name and id, its dstack OS, the KMS badge, the domain."""
    fields = {o.id: o.fields for o in report.data_objects}
    app, os_name = fields.get("app-main", {}), fields.get("app-os", {}).get("os")
    parts = []
    name, app_id = app.get("app_name"), app.get("app_id")
    if isinstance(app_id, str) and app_id:
        short = app_id.removeprefix("0x")
        parts.append(f"{name or 'app'} ({short[:8]}…)" if len(short) > 8 else f"{name or 'app'} ({short})")
    if isinstance(os_name, str) and os_name:
        parts.append(os_name)
    badge = kms_badge(os_name if isinstance(os_name, str) else None, fields.get("kms-main", {}).get("blockchain"))
    if badge:
        parts.append(badge)
    domain = fields.get("gateway-main", {}).get("guarded_domain")
    if isinstance(domain, str) and domain:
        parts.append(domain)
    return parts


def _object_label(obj: DataObject) -> str:
    """How Find object offers an object, and what its words are matched against."""
    return f"{obj.name} — {obj.id}"


def _is_zip(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == ZIP_MAGIC
    except OSError:  # unreadable: loading it says why
        return False


class MainWindow(QMainWindow):
    """History | (banner; graph above the drill-down tabs); status bar with progress, anchor, network, findings."""

    verificationSettled = Signal()  # the shown verification ended: result, error or cancel
    stateChanged = Signal(str)
    taskSaved = Signal(int)  # a history id

    def __init__(self, parent: QWidget | None = None, *, store: TaskStore | None = None,
                 settings: UserSettings | None = None, settings_warning: str | None = None,
                 keep_layout: bool = False) -> None:
        super().__init__(parent)
        self.keep_layout = keep_layout  # restore the last session's layout at the first show, save it at close
        self.pending_object = ""  # an object to select when the first report shows (`gui --select`)
        self.setWindowTitle("dstack-inspector")
        self.setAcceptDrops(True)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(POOL_THREADS)
        self.session: Session | None = None
        self.report: Report | None = None
        self.task_id: int | None = None  # the history id of the report on screen
        self.state = "idle"
        self.tasks: dict[int, RunningTask] = {}
        self._current: int | None = None  # the running task whose result the window will show
        self._numbers = 0
        self._calls: list[CallWorker] = []
        self._custom_anchor: TrustAnchor | None = None
        warning = settings_warning
        if settings is None:
            settings, warning = load_settings()
        self.settings = settings
        self.store, store_problem = self._open_store(store)
        self._build_actions()
        self._build_ui()
        install_copy_everywhere(self)
        self.offline_action.setChecked(settings.offline)
        if warning or store_problem:
            self.message_bar.show_message("warn", "Started with a problem:", [w for w in (warning, store_problem) if w])
        self._update_actions()
        self.resize(1480, 920)

    @staticmethod
    def _open_store(store: TaskStore | None) -> tuple[TaskStore | None, str | None]:
        if store is not None:
            return store, None
        try:
            return TaskStore.open_default(), None
        except StoreError as exc:  # the window still works; nothing is saved
            return None, f"the history is not available: {exc.describe()}"

    # ---- construction ---------------------------------------------------------------------------------------
    def _action(self, icon: QStyle.StandardPixmap | None, text: str, slot, shortcut=None, tip: str = "") -> QAction:  # type: ignore[no-untyped-def]
        action = QAction(self.style().standardIcon(icon), text, self) if icon is not None else QAction(text, self)
        if shortcut is not None:
            action.setShortcut(shortcut)
        if tip:
            action.setToolTip(tip)
        action.triggered.connect(slot)
        return action

    def _build_actions(self) -> None:
        sp = QStyle.StandardPixmap
        key = QKeySequence
        self.open_action = self._action(sp.SP_DialogOpenButton, "Open evidence files…", self.choose_files,
                                        key(key.StandardKey.Open), "A quote (binary or hex), GetQuote/attestation "
                                        "JSON, a saved Cloud answer, acme-info, collateral, a report or a pack")
        self.app_action = self._action(sp.SP_DriveNetIcon, "Verify app…", self.choose_app, key("Ctrl+Shift+O"),
                                       "Fetch an app's attestations by its id (App, KMS and Gateway)")
        self.paste_action = self._action(sp.SP_FileIcon, "Paste quote", self.paste_quote, key("Ctrl+Shift+V"),
                                         "Verify a quote (hex) or an evidence JSON from the clipboard")
        self.demo_action = self._action(sp.SP_FileDialogInfoView, "Open demo evidence", self.load_demo,
                                        tip="Synthetic evidence signed by a demo root CA — not Intel")
        self.verify_action = self._action(sp.SP_BrowserReload, "Re-verify", self.verify, key(Qt.Key.Key_F5))
        self.cancel_action = self._action(sp.SP_BrowserStop, "Cancel", self.cancel, key(Qt.Key.Key_Escape))
        self.export_action = self._action(sp.SP_DialogSaveButton, "Export signed report…", self.choose_export,
                                          key("Ctrl+E"), "An evidence pack: the evidence, a signed statement, HTML "
                                          "and PDF")
        self.pack_action = self._action(sp.SP_DialogApplyButton, "Open and verify a pack…", self.choose_pack,
                                        tip="Check a pack's signature and digests, and re-run its checks offline")
        self.compare_action = self._action(sp.SP_FileDialogContentsView, "Compare…", self.compare,
                                           tip="Two verifications of the history side by side")
        self.settings_action = self._action(sp.SP_FileDialogDetailedView, "Settings…", self.show_settings)
        self.offline_action = self._action(sp.SP_DriveNetIcon, "Offline", lambda: None,
                                           tip="Never touch the network: what needs it is skipped with the reason")
        self.offline_action.setCheckable(True)
        self.offline_action.toggled.connect(self.set_offline)
        self.anchor_intel_action = self._action(None, "Use the Intel SGX Root CA", self.use_intel_anchor)
        self.anchor_file_action = self._action(None, "Use a root CA file…", self.choose_anchor)
        self.about_action = self._action(sp.SP_MessageBoxInformation, "About", self.show_about)
        self.reset_layout_action = self._action(None, "Reset layout", self.reset_layout,
                                                tip="The panes and the tasks side bar as they first were")
        self.find_action = self._action(None, "Find object…", lambda: self.find_field.setFocus(), key("Ctrl+L"),
                                        "Find an object of the graph by its name or id")
        self.key_action = self._action(None, "Export the signing key's public key…", self.choose_public_key_export,
                                       tip="Whoever checks your packs trusts this key (its fingerprint is in About)")
        self.tc_action = self._action(None, "Export in the Trust Center's shape…", self.choose_trust_center_export,
                                      tip="The result as a Trust Center VerificationResponse (JSON), for tools that "
                                          "read those")
        self.quit_action = self._action(None, "Quit", self.close, key(key.StandardKey.Quit))

        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addActions([self.open_action, self.app_action, self.paste_action, self.demo_action])
        self.recent_menu = file_menu.addMenu("Open recent")
        file_menu.addSeparator()
        file_menu.addActions([self.export_action, self.tc_action, self.pack_action, self.key_action])
        file_menu.addSeparator()
        file_menu.addActions([self.settings_action, self.quit_action])
        verify_menu = menu.addMenu("&Verify")
        verify_menu.addActions([self.verify_action, self.cancel_action, self.compare_action])
        verify_menu.addSeparator()
        verify_menu.addAction(self.offline_action)
        anchor_menu = verify_menu.addMenu("Trust anchor")
        anchor_menu.addActions([self.anchor_intel_action, self.anchor_file_action])
        self.view_menu = menu.addMenu("V&iew")
        help_menu = menu.addMenu("&Help")
        help_menu.addAction(self.about_action)
        self._fill_recent()

        toolbar = QToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        toolbar.addActions([self.open_action, self.app_action, self.demo_action])
        toolbar.addSeparator()
        toolbar.addActions([self.verify_action, self.cancel_action])
        toolbar.addSeparator()
        toolbar.addActions([self.export_action, self.pack_action, self.compare_action])
        toolbar.addSeparator()
        toolbar.addActions([self.offline_action, self.settings_action])
        toolbar.addSeparator()
        # Find an object by name or id: the completer offers "name — id" of every object of the report on screen.
        self.find_field = QLineEdit()
        self.find_field.setPlaceholderText("Find object (Ctrl+L)")
        self.find_field.setClearButtonEnabled(True)
        self.find_field.setMaximumWidth(260)
        self.find_field.setAccessibleName("Find object")
        self._find_model = QStringListModel(self)
        completer = QCompleter(self._find_model, self.find_field)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        completer.activated.connect(self.find_object)
        self.find_field.setCompleter(completer)
        self.find_field.returnPressed.connect(lambda: self.find_object(self.find_field.text()))
        toolbar.addWidget(self.find_field)
        self.addToolBar(toolbar)
        self.toolbar = toolbar

    def _build_ui(self) -> None:
        self.message_bar = MessageBar()
        self.banner = VerdictBanner()
        self.view = ReportView()
        # The panes, by the names the rest of the app (and its tests) use.
        self.graph = self.view.graph
        self.object_pane = self.view.object_pane
        self.checks_pane = self.view.checks_pane
        self.details_pane = self.view.details_pane
        self.quote_pane = self.view.quote_pane
        self.inputs_table = self.view.inputs_table
        self.bottom_tabs = self.view.tabs

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(8, 6, 8, 4)
        layout.setSpacing(6)
        layout.addWidget(self.message_bar)
        layout.addWidget(self.banner)
        layout.addWidget(self.view, 1)
        self.setCentralWidget(central)
        self.setStyleSheet("QLabel#paneTitle { font-weight: bold; padding: 2px 0; }")

        self.tasks_view = TasksView()
        self.tasks_view.cancel_requested.connect(self.cancel_task)
        self.history_view: HistoryView | None = None
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(4, 4, 4, 4)
        running = QLabel("Running")
        running.setObjectName("paneTitle")
        side_layout.addWidget(running)
        side_layout.addWidget(self.tasks_view)
        if self.store is not None:
            history = QLabel("History")
            history.setObjectName("paneTitle")
            self.history_view = HistoryView(self.store)
            self.history_view.open_requested.connect(self.open_task)
            self.history_view.rerun_requested.connect(self.rerun_task)
            self.history_view.delete_requested.connect(self.delete_task)
            side_layout.addWidget(history)
            side_layout.addWidget(self.history_view, 1)
        self.side_dock = QDockWidget("Tasks", self)
        self.side_dock.setObjectName("tasksDock")
        self.side_dock.setWidget(side)
        self.side_dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable |
                                   QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.side_dock)
        self.view_menu.addAction(self.side_dock.toggleViewAction())
        self.view_menu.addActions([self.find_action, self.reset_layout_action])

        status = self.statusBar()
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setMaximumWidth(140)
        self.progress.setMaximumHeight(14)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Cancel the verification on screen (Esc)")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.hide()
        self.network_label = QLabel()
        self.anchor_label = QLabel()
        self.findings_badge = FindingsBadge()
        self.findings_badge.toggled.connect(self.checks_pane.set_findings_only)
        for widget in (self.progress, self.cancel_button, self.anchor_label, self.network_label,
                       self.findings_badge):
            status.addPermanentWidget(widget)
        self._update_status_labels()

    def showEvent(self, event) -> None:  # type: ignore[no-untyped-def]
        super().showEvent(event)
        if not getattr(self, "_sized", False):
            self._sized = True
            if not (self.keep_layout and restore_layout(self, self._splitters())):
                self.balance_splitters()

    def _splitters(self) -> dict[str, QSplitter]:
        return {"view": self.view.splitter, "checks": self.view.checks_splitter, "quote": self.quote_pane.splitter}

    def balance_splitters(self) -> None:
        height = max(self.view.splitter.height(), 600)
        self.view.splitter.setSizes([int(height * 0.42), int(height * 0.58)])
        cwidth = max(self.view.checks_splitter.width(), 700)
        self.view.checks_splitter.setSizes([int(cwidth * 0.5), int(cwidth * 0.5)])
        qwidth = max(self.quote_pane.splitter.width(), 700)
        self.quote_pane.splitter.setSizes([int(qwidth * 0.5), int(qwidth * 0.5)])
        self.resizeDocks([self.side_dock], [280], Qt.Orientation.Horizontal)

    # ---- evidence ---------------------------------------------------------------------------------------------
    def load_demo(self) -> bool:
        try:
            demo = load_demo()
        except InputError as exc:
            self.message_bar.show_message("error", "The demo evidence could not be loaded.", [exc.describe()])
            return False
        self.message_bar.hide()
        self._start_session(Session(items=demo.items, anchor=demo.anchor, now=demo.now, title="demo evidence",
                                    anchor_label=demo.label, source="demo", domain=demo.domain))
        return True

    def open_paths(self, paths: list[Path]) -> bool:
        """Load evidence files and verify them (a pack is verified as a pack); a file that cannot be used is
        reported, and nothing changes."""
        if not paths:
            return False
        packs = [Path(p) for p in paths if _is_zip(Path(p))]  # by content, as every evidence kind is
        if packs:
            if len(paths) > 1:
                self.message_bar.show_message("error", "Open an evidence pack on its own.", [str(packs[0])])
                return False
            return self.open_pack(packs[0])
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
        self._remember([Path(p) for p in paths])
        anchor = self._custom_anchor or load_anchor(None)
        label = "custom root — not Intel" if not anchor.is_intel else None
        names = ", ".join(Path(p).name for p in paths)
        self._start_session(Session(items=items, anchor=anchor, title=names, anchor_label=label))
        return True

    def choose_files(self) -> None:
        names, _ = QFileDialog.getOpenFileNames(
            self, "Open evidence files", "",
            "Evidence (*.hex *.bin *.dat *.json *.txt *.pem *.zip);;All files (*)",
        )
        if names:
            self.open_paths([Path(n) for n in names])

    def choose_app(self) -> None:
        from .dialogs import VerifyAppDialog

        dialog = VerifyAppDialog(self.settings.cloud_api_url, self)
        if dialog.exec() and (request := dialog.request()) is not None:
            self.open_app(request.app_id, request.domain, ct_log=request.ct_log, phases=request.phases)

    def open_app(self, app_id: str, domain: str | None = None, *, ct_log: bool = False,
                 phases: tuple[str, ...] | None = None) -> bool:
        if self.offline_action.isChecked():
            self.message_bar.show_message("error", "Verifying an app by its id needs the network.",
                                          ["Turn offline mode off (Verify → Offline), or open saved evidence."])
            return False
        from dstack_verifier.domain_phase import DomainOptions
        from dstack_verifier.sources import SourceError
        from dstack_verifier.sources.cloud import normalise_app_id

        try:
            app_id = normalise_app_id(app_id)  # a Trust Center page's address gives its app id
        except SourceError as exc:
            self.message_bar.show_message("error", "Not an app id:", [exc.describe()])
            return False
        self.message_bar.hide()
        anchor = self._custom_anchor or load_anchor(None)

        domain_options = DomainOptions(domain=domain, ct_log=ct_log) if (domain or ct_log) else None
        self._start_session(Session(items=[], anchor=anchor, title=f"app {app_id}", source="online", app_id=app_id,
                                    domain=domain_options, phases=phases,
                                    anchor_label=None if anchor.is_intel else "custom root — not Intel"))
        return True

    def paste_quote(self) -> bool:
        text = QGuiApplication.clipboard().text().strip()
        if not text:
            self.message_bar.show_message("error", "The clipboard holds no text to verify.")
            return False
        try:
            item = detect(text.encode("utf-8", "surrogatepass"), "pasted from the clipboard")
        except InputError as exc:
            self.message_bar.show_message("error", "The clipboard text is not evidence:", [exc.describe()])
            return False
        self.message_bar.hide()
        anchor = self._custom_anchor or load_anchor(None)
        self._start_session(Session(items=[item], anchor=anchor, title="pasted evidence",
                                    anchor_label=None if anchor.is_intel else "custom root — not Intel"))
        return True

    def _remember(self, paths: list[Path]) -> None:
        recent = [str(p.resolve()) for p in paths] + [r for r in self.settings.recent_files
                                                      if r not in {str(p.resolve()) for p in paths}]
        self.settings = self.settings.model_copy(update={"recent_files": recent[:MAX_RECENT]})
        try:
            save_settings(self.settings)
        except OSError:
            pass  # recent files are a convenience: an unwritable config folder must not stop the verification
        self._fill_recent()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for name in self.settings.recent_files:
            action = self.recent_menu.addAction(name)
            action.triggered.connect(lambda _checked=False, path=Path(name): self.open_paths([path]))
        self.recent_menu.setEnabled(bool(self.settings.recent_files))

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
        return self._current is not None

    def _job(self, s: Session) -> VerifyJob:
        settings = self.settings
        # The demo is complete and synthetic: online, its made-up domain would only meet the real DNS.
        offline = self.offline_action.isChecked() or s.is_demo
        return VerifyJob(items=s.items, anchor=s.anchor, now=s.now, offline=offline,
                         app_id=s.app_id, cloud_url=settings.cloud_api_url, pccs_url=settings.pccs_url,
                         domain=s.domain, ita=self._ita_options(), phases=s.phases, rpc_urls=settings.rpc_urls,
                         policy=settings.tcb_policy(),
                         images=ImageOptions(cache_dir=cache_dir(), cache_cap_bytes=settings.image_cache_cap_bytes(),
                                             allowed=tuple(settings.allowed_os_images)))

    def _ita_options(self):  # type: ignore[no-untyped-def]
        if not self.settings.ita_api_key:
            return None
        from dstack_verifier.ita import ItaOptions

        return ItaOptions(api_key=self.settings.ita_api_key)

    def verify(self) -> None:
        """Verify the session on screen on the pool. Its running verification, if any, is superseded; other
        sessions' verifications go on (and are saved to the history when they finish)."""
        if self.session is None:
            return
        s = self.session
        for task in list(self.tasks.values()):
            if task.session is s:
                self.cancel_task(task.number)
        self._numbers += 1
        number = self._numbers
        worker = VerifyWorker(self._job(s))
        signals = worker.signals
        signals.progress.connect(self._on_progress)
        signals.result.connect(self._on_result)
        signals.error.connect(self._on_error)
        signals.finished.connect(self._on_finished)
        self.tasks[number] = RunningTask(number, s, worker)
        self.tasks_view.add(number, s.title)
        self._current = number
        self.task_id = None
        self._show_results(None)
        self.banner.show_state("running", "…", "Verifying…", f"{s.title} · the window stays usable; "
                               "Cancel (Esc) stops it.")
        self._set_state("running")
        self.pool.start(worker)

    def cancel(self) -> None:
        """Cancel the verification on screen."""
        number = self._current
        if number is None:
            return
        self.cancel_task(number)

    @Slot(int)
    def cancel_task(self, number: int) -> None:
        task = self.tasks.get(number)
        if task is None:
            return
        task.worker.cancel()  # it stops at its next step; anything it still emits is ignored
        self.tasks_view.remove(number)
        if number == self._current:
            self._current = None
            self.banner.show_state("idle", "—", "Verification cancelled",
                                   "Nothing is shown for this evidence. Re-verify (F5) to run it again.")
            self.statusBar().showMessage("Verification cancelled", 5000)
            self._set_state("cancelled")
            self.verificationSettled.emit()

    def _sender_task(self, *, live: bool = True) -> int | None:
        """The number of the task whose worker sent the signal being handled; with `live`, only while it is not
        cancelled."""
        sender = self.sender()
        number = next((n for n, t in self.tasks.items() if t.worker.signals is sender), None)
        if number is not None and live and self.tasks[number].worker.cancelled:
            return None
        return number

    @Slot(str)
    def _on_progress(self, text: str) -> None:
        number = self._sender_task()
        if number is not None:
            self.tasks_view.set_step(number, text)
            if number == self._current:
                self.statusBar().showMessage(text)

    @Slot(object)
    def _on_result(self, report: Report) -> None:
        number = self._sender_task()
        if number is None:
            return  # a cancelled or superseded verification
        task = self.tasks[number]
        self.tasks_view.remove(number)
        self._save(report, task.session)
        if number != self._current:
            self.statusBar().showMessage(f"{task.session.title}: {report.verdict.value} (saved to the history)",
                                         8000)
            return
        self._current = None
        self.task_id = None  # until it is saved
        self._show_results(report)
        self._set_state("done")
        self.statusBar().showMessage(f"Verified in {sum(report.timings.values()) * 1000:.0f} ms", 8000)
        self.verificationSettled.emit()

    @Slot(str)
    def _on_error(self, message: str) -> None:
        number = self._sender_task()
        if number is None:
            return
        self.tasks_view.remove(number)
        if number != self._current:
            self.statusBar().showMessage(f"{self.tasks[number].session.title}: {message}", 8000)
            return
        self._current = None
        self._show_results(None)
        self.banner.show_state("error", "ERROR", "The evidence could not be verified", message)
        self.message_bar.show_message("error", "The evidence could not be verified:", [message])
        self._set_state("error")
        self.statusBar().showMessage("Verification failed to run", 8000)
        self.verificationSettled.emit()

    @Slot()
    def _on_finished(self) -> None:
        number = self._sender_task(live=False)
        if number is not None:
            del self.tasks[number]
            self.tasks_view.remove(number)

    def _save(self, report: Report, session: Session) -> None:
        """Save a report in the history, on the pool (see `save_report`); `taskSaved(id)` when it is."""
        if self.store is None:
            return
        path = self.store.path
        task = {"title": task_title(report, session.title), "source": session.source, **report_keys(report)}
        self._call(lambda: save_report(path, report, **task), lambda task_id: self._on_saved(report, task_id),
                   "The result could not be saved in the history", level="warn", announce=False)

    def _on_saved(self, report: Report, task_id: int) -> None:
        if self.report is report:
            self.task_id = task_id
        if self.history_view is not None:
            self.history_view.refresh()
        self.taskSaved.emit(task_id)

    def _set_state(self, state: str) -> None:
        self.state = state
        self._update_actions()
        self.stateChanged.emit(state)

    def _update_actions(self) -> None:
        running = self._current is not None
        self.verify_action.setEnabled(self.session is not None)
        self.cancel_action.setEnabled(running)
        self.export_action.setEnabled(self.report is not None)
        self.tc_action.setEnabled(self.report is not None)
        self.compare_action.setEnabled(self.store is not None)
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)

    def set_offline(self, offline: bool) -> None:
        if self.offline_action.isChecked() != offline:
            self.offline_action.setChecked(offline)  # re-enters through toggled
            return
        self._update_status_labels()
        if self.session is not None and self.session.app_id is None and self.report is not None:
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

    # ---- history --------------------------------------------------------------------------------------------
    def _session_of_task(self, task_id: int, *, offline: bool) -> Session | None:
        from dstack_verifier.report.export import recorded_anchor

        assert self.store is not None
        try:
            record = self.store.get(task_id)
            item = detect(record.report.to_json().encode(), f"history task #{task_id}")
            anchor = recorded_anchor(record.report, self._custom_anchor, f"history task #{task_id}")
        except InputError as exc:
            self.message_bar.show_message("error", f"Task #{task_id} cannot be opened:", [exc.describe()])
            return None
        label = None if anchor.is_intel else "recorded root — not Intel"
        return Session(items=[item], anchor=anchor, title=f"#{task_id} {record.title}",
                       now=record.verified_at if offline else None, anchor_label=label, source="rerun")

    @Slot(int)
    def open_task(self, task_id: int) -> None:
        """Show a saved verification as it was (Re-verify runs it again offline from its recorded evidence)."""
        session = self._session_of_task(task_id, offline=True)
        if session is None or self.store is None:
            return
        self.message_bar.hide()
        self.session = session
        self._current = None
        self.task_id = task_id
        self.setWindowTitle(f"dstack-inspector — {session.title}")
        self._update_status_labels()
        self._show_results(self.store.get(task_id).report)
        self._set_state("done")

    @Slot(int, bool)
    def rerun_task(self, task_id: int, offline: bool) -> None:
        session = self._session_of_task(task_id, offline=offline)
        if session is not None:
            if offline:
                self.offline_action.setChecked(True)
            self._start_session(session)

    @Slot(int)
    def delete_task(self, task_id: int) -> None:
        if self.store is None:
            return
        try:
            self.store.delete(task_id)
        except StoreError as exc:
            self.message_bar.show_message("error", "The task could not be deleted:", [exc.describe()])
            return
        if self.task_id == task_id:
            self.task_id = None
        if self.history_view is not None:
            self.history_view.refresh()

    def compare(self) -> None:
        from .dialogs import CompareDialog

        if self.store is None:
            return
        if self.store.count() < 2:
            self.message_bar.show_message("info", "Compare needs two verifications in the history.")
            return
        self.compare_dialog = CompareDialog(self.store, self.task_id, self)
        self.compare_dialog.show()

    # ---- packs ------------------------------------------------------------------------------------------------
    def _call(self, call, on_result, what: str, *, level: str = "error",  # type: ignore[no-untyped-def]
              announce: bool = True) -> CallWorker:
        """Run a library call on the pool; its failure is shown as `what:` and the message, at `level`."""
        worker = CallWorker(call)
        worker.signals.result.connect(on_result)
        worker.signals.error.connect(lambda message: self.message_bar.show_message(level, f"{what}:", [message]))
        worker.signals.finished.connect(lambda: self._calls.remove(worker))
        self._calls.append(worker)
        if announce:
            self.statusBar().showMessage(f"{what}…")
        self.pool.start(worker)
        return worker

    def signing_key_path(self) -> Path:
        from ..report_cli import default_key_path

        return Path(self.settings.signing_key_path) if self.settings.signing_key_path else default_key_path()

    def _ask_save(self, title: str, default: str, filters: str) -> Path | None:
        """Where to write an export of the report on screen (None: no report, or the user cancelled)."""
        if self.report is None:
            return None
        name, _ = QFileDialog.getSaveFileName(self, title, default, filters)
        return Path(name) if name else None

    def choose_trust_center_export(self) -> None:
        out = self._ask_save("Export in the Trust Center's shape", "trust-center.json", "JSON (*.json)")
        if out is not None:
            self.export_trust_center(out)

    def export_trust_center(self, out: Path) -> bool:
        """Write the report on screen as a Trust Center VerificationResponse; False (and a message) when it fails."""
        from dstack_verifier.report.trust_center import trust_center_json

        if self.report is None:
            return False
        try:
            out.write_text(trust_center_json(self.report))
        except OSError as exc:
            self.message_bar.show_message("error", "The Trust Center JSON could not be written",
                                          [f"{out}: {exc.strerror or exc}"])
            return False
        self.statusBar().showMessage(f"Wrote {out}", 8000)
        return True

    def choose_export(self) -> None:
        out = self._ask_save("Export a signed evidence pack", "report.zip", "Evidence packs (*.zip)")
        if out is not None:
            self.export_pack(out)

    def export_pack(self, out: Path) -> CallWorker | None:
        from dstack_verifier.report.export import export_pack
        from dstack_verifier.report.keys import load_or_create_signing_key

        from ..report_pdf import html_to_pdf

        report, session, key_path = self.report, self.session, self.signing_key_path()
        if report is None:
            return None
        anchor = session.anchor if session is not None else None
        title = session.title if session is not None else "report"

        def run() -> object:
            key = load_or_create_signing_key(key_path)
            return export_pack(report, out, key, anchor=anchor, pdf=html_to_pdf, source=title)

        def done(summary: object) -> None:
            fingerprint = getattr(summary, "fingerprint", "")
            self.statusBar().showMessage(f"Exported {out} (signed by {fingerprint})", 10000)

        return self._call(run, done, "Exporting the evidence pack")

    def choose_pack(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Open an evidence pack", "", "Evidence packs (*.zip)")
        if name:
            self.open_pack(Path(name))

    def open_pack(self, path: Path) -> bool:
        from dstack_verifier.report.verify_pack import verify_pack

        images = ImageOptions(cache_dir=cache_dir())
        trusted = self.trusted_signer_ids()
        self._call(lambda: verify_pack(path, trusted_ids=trusted, images=images), self._on_pack,
                   f"Verifying the pack {path.name}")
        return True

    def trusted_signer_ids(self) -> frozenset[str]:
        """The pack signers the settings name, and the user's own signing key (their own exports)."""
        from dstack_verifier.report.keys import key_id, load_signing_key

        ids = set(self.settings.trusted_signers)
        path = self.signing_key_path()
        if path.exists():
            with contextlib.suppress(InputError):  # an unusable key is reported where it is used
                ids.add(key_id(load_signing_key(path).public_key()))
        return frozenset(ids)

    def _on_pack(self, result: object) -> None:
        from dstack_verifier.report.verify_pack import PackVerification

        from .dialogs import PackResultDialog, pack_headline

        assert isinstance(result, PackVerification)
        self.last_pack = result
        # Only the re-run is shown: it is our own verification of the pack's evidence. The pack's report.json is
        # someone else's document, and one whose re-run failed is described in the pack dialog, not rendered.
        shown = result.rerun
        if shown is not None:
            anchor = load_anchor(None)
            session = Session(items=[detect(shown.to_json().encode(), Path(result.path).name)], anchor=anchor,
                              title=f"pack {Path(result.path).name}", now=shown.verified_at, source="pack")
            self.session = session
            self.task_id = None
            self._show_results(shown)
            self._save(shown, session)
            self._set_state("done")
        self.pack_dialog = PackResultDialog(result, self)
        self.pack_dialog.show()
        self.statusBar().showMessage(pack_headline(result), 10000)

    # ---- settings -----------------------------------------------------------------------------------------------
    def show_settings(self) -> None:
        from .settings_dialog import SettingsDialog

        self.settings_dialog = SettingsDialog(self.settings, self)
        self.settings_dialog.saved.connect(self.apply_settings)
        self.settings_dialog.show()

    def apply_settings(self, settings: UserSettings) -> None:
        from .theme import apply_theme

        self.settings = settings
        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, settings.theme)
        self.offline_action.setChecked(settings.offline)
        self._fill_recent()

    # ---- rendering ------------------------------------------------------------------------------------------
    def _show_results(self, report: Report | None) -> None:
        self.report = report
        session = self.session
        self.banner.set_badge(session.anchor_label if session is not None else None)
        self.view.show_report(report)
        self._update_actions()
        if report is None:
            self.findings_badge.set_counts(None)
            return
        counts = count_statuses(report.checks)
        self.findings_badge.set_counts(counts)
        self._show_verdict(report, counts)
        self._find_model.setStringList([_object_label(o) for o in report.data_objects])
        if self.pending_object and self.find_object(self.pending_object):
            self.pending_object = ""  # asked for once (`gui --select`): later reports open as usual

    def select_object(self, object_id: str) -> None:
        self.view.select_object(object_id)

    def find_object(self, text: str) -> bool:
        """Select the object with this id, or the first whose "name — id" holds every word of the text (any case)."""
        report = self.report
        wanted = text.strip().lower()
        if report is None or not wanted:
            return False
        words = wanted.split()
        found = next((o for o in report.data_objects if o.id.lower() == wanted), None) or next(
            (o for o in report.data_objects if all(w in _object_label(o).lower() for w in words)), None)
        if found is None:
            self.statusBar().showMessage(f"No object matches {text.strip()[:60]!r}", 5000)
            return False
        self.view.select_object(found.id)
        self.bottom_tabs.setCurrentWidget(self.object_pane)
        return True

    def reset_layout(self) -> None:
        """The panes and the side bar as they first were (the layout saved at exit follows)."""
        self.side_dock.setFloating(False)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.side_dock)
        self.side_dock.show()
        self.balance_splitters()

    def _show_verdict(self, report: Report, counts: dict[str, int]) -> None:
        total = len(report.checks)
        if report.verdict is Verdict.PASS:
            warns, skips = counts[CheckStatus.WARN], counts[CheckStatus.SKIP]
            ran = total - skips
            headline = f"All {ran} checks that ran passed" if not warns else \
                f"Passed with {warns} warning{'s' if warns != 1 else ''} ({ran} checks)"
            if skips:  # not "not applicable": a skipped check proved nothing, e.g. governance with no contract given
                headline += f"; {skips} skipped, so not checked (the Checks tab says why)"
        elif report.verdict is Verdict.FAIL:
            n = counts[CheckStatus.FAIL]
            headline = f"{n} of {total} checks failed"
        else:
            n = counts[CheckStatus.ERROR] + counts[CheckStatus.SKIP]
            headline = f"Incomplete: nothing failed, but {n} of {total} checks could not run"
        entities = [e for e in ("app", "kms", "gateway") if e in report.entities]
        parts = identity_parts(report)
        if len(entities) > 1:
            parts.append(" + ".join(e.upper() if e == "kms" else e.capitalize() for e in entities))
        first = report.entities.get(entities[0], {}) if entities else {}
        quote = first.get("quote") or {}
        if quote:
            parts.append(f"{quote.get('tee_type', '?')} quote v{quote.get('version', '?')}")
        tcb = (first.get("tcb") or {}).get("status")
        if tcb:
            parts.append(f"TCB {tcb}")
        parts.append(f"at {format_time(report.verified_at)}")
        anchor = report.policy.get("trust_anchor", {})
        subject = str(anchor.get("subject", ""))
        cn = next((p[3:] for p in subject.split(",") if p.startswith("CN=")), subject)
        parts.append(f"trust anchor: {cn}" + ("" if anchor.get("intel") else " (caller-supplied)"))
        claimed = claims_line(report.entities)
        if claimed:  # a Trust Center result, re-verified: what it said, beside our verdict
            parts.append(f"re-verified: {claimed}")
        self.banner.show_state(report.verdict.value, report.verdict.value.upper(), headline, " · ".join(parts))

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
        lines += ["", f"Signing key for exported reports: {self.signing_key_path()}"]
        fingerprint = self.signing_key_fingerprint()
        lines.append(f"  fingerprint: {fingerprint}" if fingerprint else "  (made when the first report is exported)")
        return "\n".join(lines)

    def signing_key_fingerprint(self) -> str | None:
        from dstack_verifier.report.keys import fingerprint, load_signing_key

        path = self.signing_key_path()
        if not path.exists():
            return None
        try:
            return fingerprint(load_signing_key(path).public_key())
        except InputError as exc:
            return f"unusable: {exc.describe()}"

    def choose_public_key_export(self) -> None:
        name, _ = QFileDialog.getSaveFileName(self, "Export the public key", "dstack-inspector.pub.pem",
                                              "PEM (*.pem)")
        if name:
            self.export_public_key(Path(name))

    def export_public_key(self, out: Path) -> str:
        """Write the signing key's public key (PEM; the key is made first if there is none); its fingerprint."""
        from dstack_verifier.report.keys import fingerprint, load_or_create_signing_key, public_pem

        key = load_or_create_signing_key(self.signing_key_path()).public_key()
        out.write_bytes(public_pem(key))
        self.statusBar().showMessage(f"Public key written to {out} (fingerprint {fingerprint(key)})", 10000)
        return fingerprint(key)

    def show_about(self) -> None:
        box = QMessageBox(QMessageBox.Icon.Information, "About dstack-inspector", self.about_text(),
                          QMessageBox.StandardButton.Ok, self)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.open()

    def closeEvent(self, event) -> None:  # type: ignore[no-untyped-def]
        for task in self.tasks.values():
            task.worker.cancel()
        self._current = None
        self.pool.waitForDone(5000)
        if self.store is not None:
            self.store.close()
        if self.keep_layout:
            save_layout(self, self._splitters())
        super().closeEvent(event)
