"""The compare view: two demo verifications (with and without collateral), differences highlighted, and the
"only differences" toggle."""

from __future__ import annotations

from pathlib import Path

from dstack_inspector.gui.compare_view import CHANGE_COLORS, CompareView
from dstack_verifier.demo import load_demo
from dstack_verifier.model import Report
from dstack_verifier.verification import VerifyOptions, verify_evidence


def verify(with_collateral: bool) -> Report:
    d = load_demo()
    items = [i for i in d.app_items if with_collateral or i.kind != "collateral"]
    return verify_evidence(items, VerifyOptions(now=d.now, anchor=d.anchor, offline=True))


def find(view: CompareView, group: str, label: str):  # type: ignore[no-untyped-def]
    root = view.tree.invisibleRootItem()
    top = next(root.child(i) for i in range(root.childCount()) if root.child(i).text(0) == group)
    return next(top.child(j) for j in range(top.childCount()) if top.child(j).text(0) == label)


def test_side_by_side_with_the_differences(qtbot, tmp_path: Path) -> None:
    view = CompareView()
    qtbot.addWidget(view)
    view.resize(1300, 800)
    view.show()
    assert view.summary.text() == "Choose two reports to compare."
    a, b = verify(True), verify(False)
    view.set_reports(a, b, "with collateral", "offline, no collateral")
    assert view.comparison is not None
    n = view.comparison.differences
    assert n > 0 and view.summary.text() == f"{n} differences"
    assert "PASS" in view.title_a.text() and "INCOMPLETE" in view.title_b.text()
    tcb = find(view, "App: checks", "hardware.tcb_status")
    assert (tcb.text(1), tcb.text(2), tcb.text(3)) == ("pass", "skip", "≠ changed")
    assert tcb.background(1).color().name() == CHANGE_COLORS["changed"]
    same = find(view, "App: checks", "hardware.quote_signature")
    assert same.text(3) == "" and same.background(1).style().name == "NoBrush"
    collateral = find(view, "Inputs (SHA-256)", "collateral")
    assert collateral.text(3) == "− only in A" and collateral.text(2) == "—"
    mrtd = find(view, "App: measurements, identity, TCB", "MRTD")
    assert mrtd.text(1) == mrtd.text(2) == a.entities["app"]["quote"]["mrtd"]

    everything = view.visible_items()
    view.only_differences.setChecked(True)
    shown = view.visible_items()
    assert "  hardware.tcb_status" in shown and "  hardware.quote_signature" not in shown
    assert "  MRTD" not in shown and "  TCB status" in shown
    assert len(shown) < len(everything)
    assert view.grab().save(str(tmp_path / "compare.png"))
    view.only_differences.setChecked(False)
    assert view.visible_items() == everything


def test_identical_reports(qtbot) -> None:
    view = CompareView()
    qtbot.addWidget(view)
    a = verify(True)
    view.set_reports(a, a)
    assert view.summary.text() == "No differences"
    view.only_differences.setChecked(True)
    assert view.visible_items() == []
