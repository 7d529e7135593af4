"""The window's dialogs: verify an app by id, compare two tasks of the history, the result of a pack's verification."""

from __future__ import annotations

from dataclasses import dataclass

from dstack_verifier.report.verify_pack import PackVerification
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from ..store import TaskStore, TaskSummary
from .compare_view import CompareView
from .vocabulary import fixed_font, format_time

PHASE_LABELS = {"hardware": "Hardware (quotes, event logs)", "os": "OS (MRTD, RTMR0-2)",
                "source": "Source code (compose, on-chain)", "domain": "Domain (the gateway's TLS, CAA)"}


@dataclass
class AppRequest:
    app_id: str
    domain: str | None
    ct_log: bool
    phases: tuple[str, ...] = tuple(PHASE_LABELS)


class VerifyAppDialog(QDialog):
    """App id (hex, 0x optional) and, optionally, the gateway's base domain; the Cloud API is the settings' one."""

    def __init__(self, cloud_url: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Verify an app by its id")
        self.app_id = QLineEdit()
        self.app_id.setPlaceholderText("e.g. 0x1234…abcd (20 bytes, hex), or https://trust.phala.com/app/…")
        self.domain = QLineEdit()
        self.domain.setPlaceholderText("default: from the gateway URL")
        self.ct_log = QCheckBox("Scan the certificate transparency log (slow)")
        self.phases = {phase: QCheckBox(label) for phase, label in PHASE_LABELS.items()}
        for box in self.phases.values():
            box.setChecked(True)
        self.error = QLabel()
        self.error.setStyleSheet("color: #c62828;")
        self.error.hide()
        form = QFormLayout()
        form.addRow("App id", self.app_id)
        form.addRow("Gateway domain", self.domain)
        for phase, box in self.phases.items():
            form.addRow("Phases:" if phase == "hardware" else "", box)
        form.addRow("", self.ct_log)
        form.addRow("Phala Cloud API", QLabel(cloud_url))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    def request(self) -> AppRequest | None:
        """The request, or None with the problem shown (the dialog then stays open)."""
        from dstack_verifier.sources import SourceError
        from dstack_verifier.sources.cloud import normalise_app_id

        try:
            text = normalise_app_id(self.app_id.text())
        except SourceError:
            self.error.setText("The app id must be hex (20 bytes, 0x optional), or a Trust Center page's address.")
            self.error.show()
            return None
        phases = tuple(phase for phase, box in self.phases.items() if box.isChecked())
        if not phases:
            self.error.setText("Choose at least one phase.")
            self.error.show()
            return None
        domain = self.domain.text().strip().rstrip(".").lower() or None
        return AppRequest(app_id=text, domain=domain, ct_log=self.ct_log.isChecked(), phases=phases)

    def accept(self) -> None:
        if self.request() is not None:
            super().accept()


def _close_layout(dialog: QDialog, top: QWidget, body: QWidget, size: tuple[int, int]) -> None:
    """A dialog of one header, one body that takes the space, and a Close button."""
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dialog.reject)
    layout = QVBoxLayout(dialog)
    layout.addWidget(top)
    layout.addWidget(body, 1)
    layout.addWidget(buttons)
    dialog.resize(*size)


def _task_label(task: TaskSummary) -> str:
    return f"#{task.id}  {task.verdict.upper():<10}  {task.title}  ({format_time(task.created_at)})"


class CompareDialog(QDialog):
    """Two tasks of the history side by side: measurements, compose hash, TCB status and checks that changed."""

    def __init__(self, store: TaskStore, first: int | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Compare two verifications")
        self.store = store
        self.tasks = store.search(limit=500)
        self.view = CompareView()
        self.a, self.b = QComboBox(), QComboBox()
        for combo in (self.a, self.b):
            for task in self.tasks:
                combo.addItem(_task_label(task), task.id)
        ids = [t.id for t in self.tasks]
        if first in ids:
            self.a.setCurrentIndex(ids.index(first))
        if len(ids) > 1:
            self.b.setCurrentIndex(1 if self.a.currentIndex() != 1 else 0)
        for combo in (self.a, self.b):
            combo.currentIndexChanged.connect(self._update)
        pick = QHBoxLayout()
        pick.addWidget(QLabel("A"))
        pick.addWidget(self.a, 1)
        pick.addWidget(QLabel("B"))
        pick.addWidget(self.b, 1)
        header = QWidget()
        header.setLayout(pick)
        _close_layout(self, header, self.view, (1100, 700))
        self._update()

    def select(self, a: int, b: int) -> None:
        ids = [t.id for t in self.tasks]
        self.a.setCurrentIndex(ids.index(a))
        self.b.setCurrentIndex(ids.index(b))

    def _update(self) -> None:
        a, b = self.a.currentData(), self.b.currentData()
        if a is None or b is None:
            self.view.set_reports(None, None)
            return
        ra, rb = self.store.get(a), self.store.get(b)
        self.view.set_reports(ra.report, rb.report, f"#{a} {ra.title}", f"#{b} {rb.title}")


def describe_pack(result: PackVerification) -> str:
    """The pack's verification as text a reviewer reads top-down: verdict, key, anchor, problems, differences."""
    lines = [("PACK VERIFIED" if result.ok else "PACK DOES NOT VERIFY") + f": {result.path}", ""]
    if result.fingerprint:
        lines.append(f"signing key: {result.fingerprint} ({result.key_source})")
    if result.key_note:
        lines.append(result.key_note)
    if result.anchor_note:
        lines.append(result.anchor_note)
    if result.report is not None:
        lines.append(f"recorded verdict: {result.report.verdict.value} at {format_time(result.report.verified_at)}")
    if result.rerun is not None:
        lines.append(f"re-run verdict:   {result.rerun.verdict.value}")
    if result.problems:
        lines += ["", "Problems:"] + [f"  - {p.message}" for p in result.problems]
    if result.differences:
        lines += ["", "Differences between the signed checks and the re-run:"]
        lines += [f"  - {d.entity} {d.id}: signed {d.signed or '(absent)'}, re-run {d.rerun or '(absent)'}"
                  + (" (it could not run then, and cannot offline: nothing to compare)" if d.not_run_either else "")
                  for d in result.differences]
    return "\n".join(lines)


def pack_headline(result: PackVerification) -> str:
    """What a pack verification established, in one line: intact is not the same as signed by someone known."""
    if not result.ok:
        return "The pack does NOT verify — see the problems below."
    if result.key_source == "trusted":
        return "The pack verifies, signed by a key you trust: signature, digests and an offline re-run agree."
    return (f"The pack is intact and its offline re-run agrees, but its signer {result.fingerprint} is not a key you "
            "trust: compare that fingerprint with the signer's, then add it to the trusted signers in the settings.")


class PackResultDialog(QDialog):
    def __init__(self, result: PackVerification, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        trusted = result.ok and result.key_source == "trusted"
        self.setWindowTitle("Evidence pack " + (("verified" if trusted else "intact, signer not trusted")
                                                if result.ok else "does NOT verify"))
        self.text = QPlainTextEdit(describe_pack(result))
        self.text.setReadOnly(True)
        self.text.setFont(fixed_font())
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        headline = QLabel(pack_headline(result))
        headline.setWordWrap(True)
        color = "#2e7d32" if trusted else "#b26a00" if result.ok else "#c62828"
        headline.setStyleSheet(f"font-weight: bold; color: {color};")
        self.headline = headline
        _close_layout(self, headline, self.text, (760, 460))
        self.setWindowModality(Qt.WindowModality.WindowModal)
