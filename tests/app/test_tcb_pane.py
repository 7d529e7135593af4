"""The TCB pane: an UpToDate demo, a synthetic OutOfDate platform (which component is short of the better level),
the real dcap-qvl sample with Intel's component names, and a report without a TCB evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest
from dstack_inspector.gui.tcb_pane import NOT_COMPARED, OK, SHORT, TcbPane, component_rows, tcb_explanation
from dstack_verifier.demo import load_demo
from dstack_verifier.evidence import detect, load_evidence
from dstack_verifier.model import Report
from dstack_verifier.quote.policy import TcbPolicy
from dstack_verifier.quote.verify import TrustAnchor
from dstack_verifier.synth import make_evidence
from dstack_verifier.verification import VerifyOptions, load_anchor, verify_evidence

from tests.support.fixtures import fixture_path

REAL_AT = 1751624191  # the real collateral is current at this instant (see tests/e2e/test_cli_verify.py)


def synthetic(status: str, advisories: tuple[str, ...] = (), policy: TcbPolicy | None = None) -> Report:
    ev = make_evidence("tcb-pane", now=1_780_000_000, platform_status=status, platform_advisories=advisories)
    items = [detect(ev.quote, "quote.bin"), detect(ev.collateral_json.encode(), "collateral.json")]
    options = VerifyOptions(now=ev.now, anchor=TrustAnchor.from_der(ev.root_ca_der, "synth"), offline=True,
                            reference=False, policy=policy or TcbPolicy())
    return verify_evidence(items, options)


@pytest.fixture
def pane(qtbot) -> TcbPane:
    widget = TcbPane()
    qtbot.addWidget(widget)
    widget.resize(1200, 800)
    widget.show()
    return widget


def rows_by_label(pane: TcbPane) -> dict[str, list[str]]:
    t = pane.table
    return {t.item(r, 0).text(): [t.item(r, c).text() for c in range(t.columnCount())] for r in range(t.rowCount())}


def test_up_to_date_demo(pane: TcbPane) -> None:
    d = load_demo()
    report = verify_evidence(d.app_items, VerifyOptions(now=d.now, anchor=d.anchor, offline=True))
    pane.set_report(report, "app")
    assert pane.status.text() == "TCB status: UpToDate"
    assert pane.fields["advisories"].text() == "none"
    assert pane.fields["TDX module"].text().startswith("TDX_01: ISVSVN 5")
    assert pane.fields["why not better"].text() == "nothing: no better level exists"
    rows = rows_by_label(pane)
    assert len(rows) == 16 + 1 + 16
    # The first two TDX bytes are judged by the module identity (Intel's offset rule), the rest compared.
    assert rows["TDX component 00"][4] == NOT_COMPARED and rows["TDX component 02"][4] == OK
    assert rows["PCE SVN"][2:4] == ["13", "13"]
    assert pane.table.isColumnHidden(5)  # no better level to compare with


def test_out_of_date_names_the_short_component(pane: TcbPane, tmp_path: Path) -> None:
    report = synthetic("OutOfDate", ("INTEL-SA-00837",))
    pane.set_report(report, "app")
    assert pane.status.text() == "TCB status: OutOfDate"
    # Each advisory links to its page at Intel (opened by the system browser only on a click); the id is escaped.
    assert pane.fields["advisories"].text() == (
        '<a href="https://www.intel.com/content/www/us/en/security-center/advisory/intel-sa-00837.html">'
        'INTEL-SA-00837</a>')
    assert pane.fields["advisories"].openExternalLinks()
    assert "SGX component 01 is 4, the level needs 5" in pane.fields["why not better"].text()
    assert not pane.table.isColumnHidden(5)
    assert pane.table.horizontalHeaderItem(5).text() == "Better level #0 (UpToDate)"
    rows = rows_by_label(pane)
    assert rows["SGX component 01"][2:] == ["4", "4", OK, "5", SHORT]
    assert rows["SGX component 02"][6] == OK
    pane.short_only.setChecked(True)
    shown = [pane.table.item(r, 0).text() for r in range(pane.table.rowCount()) if not pane.table.isRowHidden(r)]
    assert shown == ["SGX component 01"]
    pane.short_only.setChecked(False)
    assert pane.grab().save(str(tmp_path / "tcb.png"))


def test_real_sample_carries_intel_component_names(pane: TcbPane) -> None:
    quote = load_evidence(fixture_path("dcap-qvl", "tdx_quote"))
    collateral = load_evidence(fixture_path("dcap-qvl", "tdx_quote_collateral.json"))
    report = verify_evidence([quote, collateral], VerifyOptions(now=REAL_AT, anchor=load_anchor(None), offline=True,
                                                                reference=False))
    pane.set_report(report, "app")
    assert pane.status.text() == "TCB status: UpToDate"
    rows = rows_by_label(pane)
    assert rows["SGX component 01"][1] == "BIOS · Early Microcode Update"
    assert rows["TDX component 00"][1] == "OS/VMM · TDX Module"
    assert rows["SGX component 07"][1] == "—"


def test_no_tcb_evaluation_says_why(pane: TcbPane) -> None:
    d = load_demo()
    items = [i for i in d.app_items if i.kind != "collateral"]
    report = verify_evidence(items, VerifyOptions(now=d.now, anchor=d.anchor, offline=True))
    assert tcb_explanation(report, "app") == {}
    pane.set_report(report, "app")
    assert pane.status.text() == "TCB status: not evaluated"
    assert pane.placeholder.text().startswith("No TCB evaluation: ") and pane.table.rowCount() == 0
    pane.set_report(report, "kms")
    assert "no TCB evaluation for the kms" in pane.placeholder.text()
    # Malformed explanation data (a hand-edited report) gives rows without values, not an exception.
    assert [r.result for r in component_rows({"matched_level": {"sgx_components": ["x", 3]}})] == [NOT_COMPARED]


def test_advisories_not_in_intels_form_are_plain_escaped_text(pane: TcbPane) -> None:
    report = synthetic("SWHardeningNeeded", ("INTEL-SA-00615", "<b>odd</b>"))
    pane.set_report(report, "app")
    text = pane.fields["advisories"].text()
    assert text.endswith(", &lt;b&gt;odd&lt;/b&gt;") and "intel-sa-00615.html" in text


def test_an_advisory_the_policy_blocks_is_marked(pane: TcbPane) -> None:
    report = synthetic("UpToDate", ("INTEL-SA-00615", "INTEL-SA-00828"),
                       TcbPolicy(blocked_advisories=["INTEL-SA-00828"]))
    pane.set_report(report, "app")
    text = pane.fields["advisories"].text()
    assert text.endswith("INTEL-SA-00828</a> <b>(blocked by the policy: the TCB status check fails)</b>")
    assert text.count("blocked by the policy") == 1


def test_the_evaluation_data_and_the_policy_minimum(pane: TcbPane) -> None:
    d = load_demo()
    strict = VerifyOptions(now=d.now, anchor=d.anchor, offline=True,
                           policy=TcbPolicy(min_tcb_evaluation_data_number=99))
    pane.set_report(verify_evidence(d.app_items, strict), "app")
    assert pane.fields["evaluation data"].text() == ("TCB evaluation data number 17; the policy requires at least 99: "
                                                     "judged with older data, the TCB status check fails")
    pane.set_report(verify_evidence(d.app_items, VerifyOptions(now=d.now, anchor=d.anchor, offline=True)), "app")
    assert pane.fields["evaluation data"].text() == "TCB evaluation data number 17"
    mrseam = pane.fields["TDX module"].text().split("MRSEAM ")[1]
    assert len(mrseam) == 96
    pinned = VerifyOptions(now=d.now, anchor=d.anchor, offline=True, policy=TcbPolicy(allowed_mrseams=["ab" * 48]))
    pane.set_report(verify_evidence(d.app_items, pinned), "app")
    assert pane.fields["TDX module"].text().endswith(f"MRSEAM {mrseam}, NOT one the policy accepts")
    assert pane.fields["advisories"].text() == "none"
