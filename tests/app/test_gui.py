"""The main window over the demo and synthetic evidence: verdict, linked panes, bad input, cancellation, screenshot."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from dstack_inspector import workers
from dstack_inspector.gui.app import run_gui
from dstack_inspector.gui.main_window import MainWindow
from dstack_inspector.workers import VerifyJob, VerifyWorker
from dstack_verifier.demo import DEMO_LABEL, load_demo
from dstack_verifier.model import CheckStatus, Report, Verdict
from dstack_verifier.resources import resource_path
from dstack_verifier.synth import make_evidence
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextCursor

WAIT_MS = 15_000


def wait_for_verdict(qtbot, window: MainWindow, verdict: str) -> Report:
    qtbot.waitUntil(lambda: window.banner.state == verdict, timeout=WAIT_MS)
    assert window.report is not None
    return window.report


def layout_of(report: Report) -> dict[str, tuple[int, int]]:
    return {s["name"]: (s["start"], s["end"]) for s in report.entities["app"]["quote_layout"]}


DEMO_NOT_PASSED = {
    ("app", "source.onchain_registry"): "skip", ("kms", "source.onchain_registry"): "skip",
    ("gateway", "source.onchain_registry"): "skip", ("kms", "binding.report_data"): "skip",
    ("gateway", "domain.dns_caa"): "skip", ("gateway", "domain.ct_log"): "skip",
    # TDX-lite: the ACPI tables are taken as the log gives them, which RTMR0 warns about.
    ("app", "os.rtmr0"): "warn", ("kms", "os.rtmr0"): "warn", ("gateway", "os.rtmr0"): "warn",
}


def test_opens_on_the_demo_and_passes(window, qtbot):
    assert window.load_demo()
    assert window.state == "running"
    report = wait_for_verdict(qtbot, window, "pass")
    assert report.verdict is Verdict.PASS
    assert window.state == "done" and not window.is_busy()
    assert window.banner.verdict_label.text() == "PASS"
    assert set(report.entities) == {"app", "kms", "gateway"}
    assert {(c.entity, c.id): c.status.value for c in report.checks if c.status is not CheckStatus.PASS} == \
        DEMO_NOT_PASSED
    ran = len(report.checks) - 6
    assert window.banner.headline.text() == \
        f"Passed with 3 warnings ({ran} checks); 6 skipped, so not checked (the Checks tab says why)"
    # The demo never shows without saying its root is not Intel's.
    assert window.banner.badge.isVisible() and window.banner.badge.text() == DEMO_LABEL
    assert DEMO_LABEL in window.windowTitle()
    assert DEMO_LABEL in window.anchor_label.text()
    assert DEMO_LABEL in window.about_text()
    assert load_demo().anchor.sha256 in window.about_text()
    assert window.findings_badge.findings == 3  # the three RTMR0 warnings
    # A whole deployment: the Cloud answer, the gateway's acme-info, the app's /prpc/Info, the KMS's GetMeta, then the
    # collateral.
    roles = [window.inputs_table.item(row, 0).text() for row in range(window.inputs_table.rowCount())]
    assert roles == ["cloud-attestations", "acme-info", "agent-info", "kms-meta", "collateral"]
    first_finding = next(c for c in report.checks if c.status is CheckStatus.WARN)
    assert window.checks_pane.current_check_id() == first_finding.id  # the first finding is shown
    # The app's quote is the one shown field by field (the same quote as its own GetQuote answer).
    assert window.view.entity == "app"
    assert window.quote_pane.hex.data() == next(e.quote for e in load_demo().app_items if e.kind == "getquote")


def test_selecting_a_check_shows_its_details(window, qtbot):
    window.load_demo()
    report = wait_for_verdict(qtbot, window, "pass")
    view = window.checks_pane.view
    index = window.checks_pane.index_of("hardware.pck_chain")
    assert index.isValid()
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(index).center())
    check = next(c for c in report.checks if c.id == "hardware.pck_chain")
    details = window.details_pane
    assert details.current_check == check
    assert details.title.text() == "hardware.pck_chain"
    assert details.summary.text() == check.summary
    assert details.status_pill.text() == "PASS"
    assert details.anchor.text().startswith("caller-supplied — ")
    # The details are a tree: the certificate chain is a branch with one row per certificate.
    top = {details.tree.topLevelItem(i).text(0): details.tree.topLevelItem(i)
           for i in range(details.tree.topLevelItemCount())}
    assert "chain" in top
    assert top["chain"].childCount() == len(check.details["chain"])
    assert top["chain"].child(0).text(0).startswith("[0] ")
    assert json.loads(details.json.toPlainText()) == check.model_dump(mode="json")
    # The check links to the quote field it is about.
    start, end = layout_of(report)["auth.qe_report_cert_data.cert_data"]
    assert "auth.qe_report_cert_data.cert_data" in details.evidence.text()
    details.evidence.linkActivated.emit("auth.qe_report_cert_data.cert_data")
    assert window.bottom_tabs.currentWidget() is window.quote_pane
    assert window.quote_pane.hex.highlight_range() == (start, end)


def test_selecting_a_group_summarises_it(window, qtbot):
    window.load_demo()
    report = wait_for_verdict(qtbot, window, "pass")
    view = window.checks_pane.view
    group = view.model().index(0, 0)  # "App"
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(group).center())
    assert window.details_pane.current_check is None
    assert window.details_pane.title.text() == "App"
    # Every check of the demo app passes but the on-chain one, which has no chain to ask, and RTMR0, which warns
    # that TDX-lite's ACPI tables are taken from the log.
    app = [c for c in report.checks if c.entity == "app"]
    assert len(app) == 22
    assert window.details_pane.summary.text() == "22 checks: 20 pass, 1 warn, 1 skip."
    # The App group holds a Hardware group (the quote, its event log, the RA-TLS binding), a Source one and an OS one
    # (the image hash, MRTD and RTMR0-2 from the TDX-lite measurement document).
    model = view.model()
    phases = {model.index(i, 0, group).data(): model.rowCount(model.index(i, 0, group))
              for i in range(model.rowCount(group))}
    assert phases == {"Hardware": 13, "Source code": 4, "OS": 5}


def test_selecting_a_source_check_shows_the_compose_hash(window, qtbot):
    window.load_demo()
    report = wait_for_verdict(qtbot, window, "pass")
    assert window.checks_pane.select_check("source.compose_hash")
    check = next(c for c in report.checks if c.id == "source.compose_hash")
    details = window.details_pane
    assert details.current_check == check and details.status_pill.text() == "PASS"
    assert check.details["match"] and check.details["compose"]["name"] == "demo-app"


def test_selecting_an_os_check_shows_the_image_it_rests_on(window, qtbot):
    window.load_demo()
    report = wait_for_verdict(qtbot, window, "pass")
    assert window.checks_pane.select_check("os.rtmr0", "app")
    check = next(c for c in report.checks if c.id == "os.rtmr0" and c.entity == "app")
    details = window.details_pane
    assert details.current_check == check and details.status_pill.text() == "WARN"
    image_hash = report.entities["app"]["vm_config"]["os_image_hash"]
    assert details.anchor.text().startswith(f"image:{image_hash} — rests on the OS image with hash {image_hash}")
    assert "taken from the event log" in details.summary.text()
    # The check links to the register it recomputed.
    assert "body.rtmr0" in details.evidence.text()


def test_mrtd_field_highlights_its_bytes(window, qtbot):
    window.load_demo()
    report = wait_for_verdict(qtbot, window, "pass")
    start, end = layout_of(report)["body.mrtd"]
    pane = window.quote_pane
    tree = pane.tree
    item = next(tree.topLevelItem(1).child(i) for i in range(tree.topLevelItem(1).childCount())
                if tree.topLevelItem(1).child(i).text(0) == "mrtd")
    tree.scrollToItem(item)
    qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=tree.visualItemRect(item).center())
    assert pane.span_of("body.mrtd") == ("body.mrtd", start, end)
    assert pane.hex.highlight_range() == (start, end)
    raw = pane.hex.data()
    assert pane.hex.highlighted_hex() == raw[start:end].hex() == report.entities["app"]["quote"]["mrtd"]
    assert item.text(1) == report.entities["app"]["quote"]["mrtd"]
    assert (item.text(2), item.text(3)) == (str(start), str(end - start))
    assert "MRTD" in pane.info.text()


def test_clicking_a_byte_selects_its_field(window, qtbot):
    window.load_demo()
    report = wait_for_verdict(qtbot, window, "pass")
    start, end = layout_of(report)["body.rtmr0"]
    hexview = window.quote_pane.hex
    offset = start + 5
    block = hexview.document().findBlockByNumber(offset // 16)
    cursor = QTextCursor(block)
    cursor.setPosition(block.position() + hexview._hex_col(offset % 16))
    hexview.setTextCursor(cursor)
    hexview.ensureCursorVisible()
    hexview.setTextCursor(QTextCursor(hexview.document()))  # no selection left behind
    qtbot.mouseClick(hexview.viewport(), Qt.MouseButton.LeftButton, pos=hexview.cursorRect(cursor).center())
    assert window.quote_pane.tree.currentItem().text(0) == "rtmr0"
    assert hexview.highlight_range() == (start, end)


def test_bad_file_shows_a_clear_error_and_keeps_the_results(window, qtbot, tmp_path):
    window.load_demo()
    wait_for_verdict(qtbot, window, "pass")
    bad = tmp_path / "broken.hex"
    bad.write_text("0x0400020081000000zz")
    assert window.open_paths([bad]) is False
    text = window.message_bar.text()
    assert "broken.hex" in text and "not hex" in text and "offset 18" in text
    assert "Traceback" not in text
    assert window.banner.state == "pass" and window.report is not None  # nothing changed
    truncated = tmp_path / "truncated.bin"
    demo_quote = json.loads(resource_path("demo", "getquote.json").read_text())["quote"]
    truncated.write_bytes(bytes.fromhex(demo_quote)[:100])
    missing = tmp_path / "missing.json"
    assert window.open_paths([truncated, missing]) is False
    text = window.message_bar.text()
    assert "2 of 2" in text and "truncated.bin" in text and "missing.json: no such file" in text
    assert window.isVisible()


def test_evidence_without_a_quote_is_an_error_not_a_crash(window, qtbot):
    assert window.open_paths([resource_path("demo", "collateral.json")])
    qtbot.waitUntil(lambda: window.state == "error", timeout=WAIT_MS)
    assert window.banner.state == "error"
    assert "no quote among the evidence" in window.banner.detail.text()
    assert "no quote among the evidence" in window.message_bar.text()
    assert "Traceback" not in window.message_bar.text()
    assert window.report is None and window.findings_badge.findings == 0


def test_offline_without_collateral_is_incomplete(window, qtbot):
    assert window.offline_action.isChecked()
    assert window.set_anchor_file(resource_path("demo", "demo_root_ca.der"))
    assert "custom root — not Intel" in window.anchor_label.text()
    assert window.open_paths([resource_path("demo", "getquote.json")])
    report = wait_for_verdict(qtbot, window, "incomplete")
    skipped = [c for c in report.checks if c.status is CheckStatus.SKIP]
    assert skipped and any("offline" in c.summary for c in skipped)
    # The event log the GetQuote answer carries is still replayed against the quote.
    assert next(c for c in report.checks if c.id == "eventlog.replay").status is CheckStatus.PASS
    assert window.banner.badge.text() == "custom root — not Intel"


def test_findings_badge_counts_and_filters(window, qtbot, tmp_path):
    ev = make_evidence("gui-fail", now=int(time.time()), revoke_pck=True)
    (tmp_path / "q.hex").write_text(ev.quote.hex())
    (tmp_path / "c.json").write_text(json.dumps(ev.collateral))
    (tmp_path / "root.der").write_bytes(ev.root_ca_der)
    window.set_anchor_file(tmp_path / "root.der")
    window.open_paths([tmp_path / "q.hex", tmp_path / "c.json"])
    report = wait_for_verdict(qtbot, window, "fail")
    findings = [c for c in report.checks if c.status in (CheckStatus.FAIL, CheckStatus.WARN, CheckStatus.ERROR)]
    assert findings and window.findings_badge.findings == len(findings)
    assert window.checks_pane.current_check_id() == findings[0].id  # lands on the first finding
    qtbot.mouseClick(window.findings_badge, Qt.MouseButton.LeftButton)
    assert window.findings_badge.isChecked()
    proxy = window.checks_pane.proxy
    phase = proxy.index(0, 0, proxy.index(0, 0))
    assert proxy.rowCount(phase) == len(findings)
    window.checks_pane.filter_edit.setText("no-such-check")
    assert proxy.rowCount() == 0


def test_cancel_while_running(window, qtbot, monkeypatch):
    gate, started = threading.Event(), threading.Event()
    real = workers.verify_evidence

    def slow(*args, **kwargs):
        started.set()
        gate.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(workers, "verify_evidence", slow)
    window.load_demo()
    assert started.wait(5)
    assert window.is_busy() and window.state == "running"
    qtbot.wait(50)  # the event loop turns while the worker is blocked
    assert window.cancel_button.isVisible() and window.progress.isVisible()
    with qtbot.waitSignal(window.verificationSettled, timeout=1000):
        qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    assert window.state == "cancelled" and not window.is_busy()
    assert not window.cancel_button.isVisible()
    gate.set()
    assert window.pool.waitForDone(5000)
    qtbot.wait(100)  # the stale result is delivered now, and must be discarded
    assert window.report is None and window.state == "cancelled"
    assert window.banner.headline.text() == "Verification cancelled"
    monkeypatch.setattr(workers, "verify_evidence", real)
    window.verify()
    wait_for_verdict(qtbot, window, "pass")


def test_a_new_verification_supersedes_a_running_one(window, qtbot, monkeypatch):
    gate, started = threading.Event(), threading.Event()
    real = workers.verify_evidence
    calls = []

    def first_slow(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            started.set()
            gate.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(workers, "verify_evidence", first_slow)
    window.load_demo()
    assert started.wait(5)
    window.verify()  # the first is still blocked: its result, when it comes, is stale
    wait_for_verdict(qtbot, window, "pass")
    gate.set()
    assert window.pool.waitForDone(5000)
    qtbot.wait(50)
    assert window.state == "done" and len(calls) == 2


def test_worker_cancelled_before_start_does_not_verify(qtbot, monkeypatch):
    demo = load_demo()
    monkeypatch.setattr(workers, "verify_evidence", lambda *a, **k: pytest.fail("must not verify"))
    worker = VerifyWorker(VerifyJob(items=demo.items, anchor=demo.anchor, now=demo.now, offline=True))
    worker.cancel()
    with qtbot.assertNotEmitted(worker.signals.result), qtbot.assertNotEmitted(worker.signals.error), \
            qtbot.waitSignal(worker.signals.finished, timeout=1000):
        worker.run()


def test_worker_emits_the_report(qtbot):
    demo = load_demo()
    worker = VerifyWorker(VerifyJob(items=demo.items, anchor=demo.anchor, now=demo.now, offline=True,
                                    domain=demo.domain))
    with qtbot.waitSignal(worker.signals.result, timeout=WAIT_MS) as blocker:
        worker.run()
    assert isinstance(blocker.args[0], Report) and blocker.args[0].verdict is Verdict.PASS


def test_worker_errors_are_one_line(qtbot, monkeypatch):
    demo = load_demo()
    collateral_only = [e for e in demo.items if e.kind == "collateral"]
    worker = VerifyWorker(VerifyJob(items=collateral_only, anchor=demo.anchor, now=demo.now, offline=True))
    with qtbot.waitSignal(worker.signals.error, timeout=WAIT_MS) as blocker:
        worker.run()
    assert blocker.args[0].startswith("no quote among the evidence")

    def boom(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(workers, "verify_evidence", boom)
    worker = VerifyWorker(VerifyJob(items=demo.items, anchor=demo.anchor, now=demo.now, offline=True))
    with qtbot.waitSignal(worker.signals.error, timeout=WAIT_MS) as blocker:
        worker.run()
    assert blocker.args[0] == "internal error: RuntimeError: boom"


def test_run_gui_screenshot_writes_a_png(qtbot, tmp_path: Path):
    out = tmp_path / "shots" / "main.png"
    assert run_gui(evidence=[], screenshot=out) == 0
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_run_gui_screenshot_with_bad_evidence_still_renders(qtbot, tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = tmp_path / "bad.png"
    assert run_gui(evidence=[bad], screenshot=out) == 0
    assert out.read_bytes().startswith(b"\x89PNG")


def test_a_v1_attestation_opens_and_shows_its_format(window, qtbot, tmp_path):
    from tests.e2e.test_cli_entity import v1_attestation_blob
    from tests.support.fixtures import fixture_path

    lite = json.loads(fixture_path("dstack", "tdx-lite-getquote.json").read_text())
    blob = v1_attestation_blob(bytes.fromhex(lite["quote"]), json.loads(lite["event_log"]),
                               bytes.fromhex(lite["report_data"]), lite["vm_config"], stack="dstack-pod",
                               report_data_payload='{"pod":"demo"}')
    path = tmp_path / "attestation.json"
    path.write_text(json.dumps({"attestation": blob.hex()}))
    assert window.open_paths([path])
    qtbot.waitUntil(lambda: window.state == "done" and window.report is not None
                    and window.report.inputs[0].name == str(path), timeout=WAIT_MS)
    tree = window.view.report_tree
    sections = {tree.topLevelItem(i).text(0): tree.topLevelItem(i) for i in range(tree.topLevelItemCount())}
    item = sections["App attestation"]
    fields = {item.child(i).text(0): item.child(i).text(1) for i in range(item.childCount())}
    assert fields["format"] == "msgpack-v1" and fields["stack"] == "dstack-pod"
    assert fields["report_data_payload"] == '{"pod":"demo"}'


def test_the_banner_says_who_the_report_is_about(window, qtbot):
    from dstack_inspector.gui.main_window import identity_parts, kms_badge

    window.load_demo()
    report = wait_for_verdict(qtbot, window, "pass")
    app_id = report.entities["app"]["app_info"]["app_id"]
    parts = identity_parts(report)
    assert parts[0] == f"demo-app ({app_id[:8]}…)" and parts[1] == "dstack-0.6.0"
    assert parts[2] == "KMS in TEE" and parts[3] == "*.demo.dstack.invalid"  # the demo's KMS names no chain
    assert window.banner.detail.text().startswith(" · ".join(parts))
    # The Trust Center's badge rule (spec §4.4).
    assert kms_badge("dstack-0.3.5", None) == "Centralized KMS" and kms_badge("dstack-0.5.3", "Base") == \
        "Onchain KMS (Base)"
    assert kms_badge("dstack-0.2.0", None) is None and kms_badge(None, None) is None


def test_the_object_pane_lists_links_and_follows_them(window, qtbot):
    window.load_demo()
    wait_for_verdict(qtbot, window, "pass")
    view = window.view
    view.select_object("app-os")
    links = window.object_pane.links
    groups = {links.topLevelItem(i).text(0): links.topLevelItem(i) for i in range(links.topLevelItemCount())}
    by = groups["Vouched for by (measured by): 5"]  # the quote (MRTD, RTMR0-2) and the RTMR3 log (os-image-hash)
    rows = [(by.child(i).text(0), by.child(i).text(1)) for i in range(by.childCount())]
    assert ("APP Attestation Report  (app-quote)", "mrtd → expected_mrtd (measured-by)") in rows
    assert ("Event Logs for RTMR3  (app-event-logs-imr3)", "os-image-hash → os_image_hash (measured-by)") in rows
    measures = groups["Vouches for (measures): 1"]
    target = measures.child(0)
    assert target.text(0) == "APP OS Code  (app-os-code)"
    links.itemDoubleClicked.emit(target, 0)
    assert window.object_pane.object is not None and window.object_pane.object.id == "app-os-code"
    assert view.graph.selected_node() == "app-os-code"


def test_find_an_object_by_id_or_name_and_open_on_one(window, qtbot):
    window.pending_object = "kms main"  # as `gui --select` sets it: words of a name, or an id
    window.load_demo()
    wait_for_verdict(qtbot, window, "pass")
    assert window.graph.selected_node() == "kms-main" and window.pending_object == ""
    entries = window._find_model.stringList()
    assert "APP OS — app-os" in entries and len(entries) == len(window.report.data_objects)
    assert window.find_object("gateway-domain") and window.graph.selected_node() == "gateway-domain"
    assert window.find_object("os code") and window.graph.selected_node() == "app-os-code"  # the first, in order
    assert window.bottom_tabs.currentWidget() is window.object_pane
    assert not window.find_object("no such thing") and window.graph.selected_node() == "app-os-code"
    assert "No object matches 'no such thing'" in window.statusBar().currentMessage()
    window.find_field.setText("gateway-cpu")
    window.find_field.returnPressed.emit()
    assert window.graph.selected_node() == "gateway-cpu"


def test_reset_layout_brings_the_side_bar_back(window, qtbot):
    window.side_dock.setFloating(True)
    window.side_dock.hide()
    window.reset_layout_action.trigger()
    assert window.side_dock.isVisible() and not window.side_dock.isFloating()
    sizes = window.view.splitter.sizes()
    assert all(size > 0 for size in sizes)


def test_gui_select_option_is_parsed():
    from dstack_inspector.cli import build_parser

    assert build_parser().parse_args(["gui", "--select", "kms-main"]).select == "kms-main"


def test_json_text_in_a_field_opens_into_its_structure(window, qtbot):
    from dstack_inspector.gui.widgets import MAX_EMBEDDED_JSON, embedded_json

    window.load_demo()
    wait_for_verdict(qtbot, window, "pass")
    window.view.select_object("app-code")
    fields = window.object_pane.fields.topLevelItem(0)
    rows = {fields.child(i).text(0): fields.child(i) for i in range(fields.childCount())}
    compose = rows["compose_file"]
    assert compose.text(1).startswith("{")  # the exact text stays (it is what hashes to the compose hash)
    assert not compose.isExpanded()  # closed until asked: the fields after it stay in view
    keys = {compose.child(i).text(0) for i in range(compose.childCount())}
    assert {"docker_compose_file", "manifest_version", "name"} <= keys
    calculations = window.object_pane.fields.topLevelItem(1)
    assert calculations.text(0) == "Calculations"
    assert (calculations.child(0).text(0), calculations.child(0).text(1)) == ("compose_hash", "sha256(compose_file)")
    assert embedded_json("[1, 2]") == [1, 2] and embedded_json('{"a": 1}') == {"a": 1}
    for text in ("{", "[]", "{}", "not json", '"quoted"', "[" * 5000 + "]" * 5000, "[" + " " * MAX_EMBEDDED_JSON + "]"):
        assert embedded_json(text) is None, text[:20]


def test_export_in_the_trust_center_shape(window, qtbot, tmp_path):
    window.load_demo()
    wait_for_verdict(qtbot, window, "pass")
    assert window.tc_action.isEnabled()
    out = tmp_path / "tc.json"
    assert window.export_trust_center(out)
    doc = json.loads(out.read_text())
    ids = {o.id for o in window.report.data_objects}
    assert doc["success"] is True and {o["id"] for o in doc["dataObjects"]} == ids
    assert not window.export_trust_center(tmp_path / "no-such-dir" / "tc.json")
    assert "could not be written" in window.message_bar.text()


def test_verify_the_quote_elsewhere_asks_first(window, qtbot, monkeypatch):
    from dstack_inspector.gui import quote_pane
    from PySide6.QtWidgets import QMessageBox

    pane = window.quote_pane
    assert not pane.elsewhere.isEnabled()  # no quote yet
    window.load_demo()
    wait_for_verdict(qtbot, window, "pass")
    assert pane.elsewhere.isEnabled()
    opened = []
    monkeypatch.setattr(quote_pane.QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    assert not pane.open_elsewhere() and opened == []  # declined: nothing leaves the machine
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    assert pane.open_elsewhere()
    url = opened[0]
    assert url.host() == quote_pane.EXPLORER_HOST and url.scheme() == "https"
    assert bytes.fromhex(url.query().removeprefix("quote=")) == pane._raw
