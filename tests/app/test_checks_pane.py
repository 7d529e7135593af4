"""The checks list: shown by status (skipped checks among the choices: what was not checked), and by text."""

from __future__ import annotations

from dstack_inspector.gui.checks_pane import CHECK_ID_ROLE, ChecksPane
from dstack_verifier.demo import load_demo
from dstack_verifier.model import CheckStatus
from dstack_verifier.verification import verify_evidence


def visible_checks(pane: ChecksPane) -> list[tuple[str, str]]:
    out = []

    def walk(parent) -> None:  # type: ignore[no-untyped-def]
        for row in range(pane.proxy.rowCount(parent)):
            index = pane.proxy.index(row, 0, parent)
            check_id = index.data(CHECK_ID_ROLE)
            if check_id is None:
                walk(index)
            else:
                out.append((check_id, str(pane.proxy.index(row, 1, parent).data()).lower()))

    from PySide6.QtCore import QModelIndex

    walk(QModelIndex())
    return out


def test_checks_are_shown_by_status(qtbot) -> None:
    demo = load_demo()
    report = verify_evidence(demo.items, demo.options())
    pane = ChecksPane()
    qtbot.addWidget(pane)
    pane.set_checks(report.checks)
    assert len(visible_checks(pane)) == len(report.checks)
    skipped = sorted(c.id for c in report.checks if c.status is CheckStatus.SKIP)
    pane.show_combo.setCurrentText("Skipped (not checked)")
    assert sorted(i for i, _ in visible_checks(pane)) == skipped and skipped
    pane.show_combo.setCurrentText("Passed")
    assert {s for _, s in visible_checks(pane)} == {"pass"}
    pane.set_findings_only(True)  # the findings badge
    assert pane.show_combo.currentText() == "Findings (fail, warn, error)"
    assert visible_checks(pane) == [("os.rtmr0", "warn")] * 3  # TDX-lite's ACPI tables, taken from the log
    pane.set_findings_only(False)
    pane.filter_edit.setText("rtmr3_")
    assert {i for i, _ in visible_checks(pane)} == {"eventlog.rtmr3_payloads"}
