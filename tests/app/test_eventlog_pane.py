"""The event log pane over the demo report (boot events against the OS measurement, runtime events recomputed),
a tampered runtime event, and the Cloud answer's three entities."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dstack_inspector.gui.eventlog_pane import (
    MATCH,
    MISMATCH,
    NOT_RECOMPUTED,
    RECOMPUTED,
    EventLogPane,
    event_rows,
)
from dstack_verifier.demo import load_demo
from dstack_verifier.evidence import detect
from dstack_verifier.model import Report
from dstack_verifier.verification import VerifyOptions, load_anchor, verify_evidence
from PySide6.QtCore import Qt

from tests.support.cloud_server import Dataset1


def verify_demo(event_log: list | None = None) -> Report:
    demo = load_demo()
    items = list(demo.app_items)
    if event_log is not None:
        doc = json.loads(items[0].data)
        doc["event_log"] = json.dumps(event_log)
        items[0] = detect(json.dumps(doc).encode(), items[0].name)
    return verify_evidence(items, VerifyOptions(now=demo.now, anchor=demo.anchor, offline=True))


def demo_events() -> list[dict]:
    return json.loads(json.loads(load_demo().app_items[0].data)["event_log"])


@pytest.fixture(scope="module")
def demo() -> Report:
    return verify_demo()


def test_rows_of_the_demo(demo: Report) -> None:
    rows = event_rows(demo, "app")
    assert len(rows) == 29 and [r.index for r in rows] == list(range(29))
    by_name = {r.name: r for r in rows if r.name}
    # Boot events: the measurement's digests, matched by position within each register (the log interleaves them).
    hob = rows[0]
    assert (hob.register_name, hob.what, hob.status) == ("RTMR0", "TD HOB", MATCH)
    assert hob.recomputed == hob.recorded
    kernel = rows[11]
    assert kernel.register == 1 and kernel.what.startswith("the kernel image") and kernel.status == MATCH
    assert rows[12].what == "BootOrder" and rows[12].status == MATCH
    # ACPI digests come from the log itself in the demo's measurement: nothing recomputed them.
    acpi = by_name["acpi-tables"]
    assert acpi.status == NOT_RECOMPUTED and acpi.recomputed is None and "event log" in acpi.note
    assert acpi.payload_text == "ACPI DATA" and acpi.decoded
    # Runtime events: stripped digests, recomputed from the payload.
    compose = by_name["compose-hash"]
    assert compose.recorded == "" and compose.status == RECOMPUTED and len(compose.recomputed or "") == 96
    assert compose.payload_text == demo.entities["app"]["app_info"]["compose_hash"]
    provider = by_name["key-provider"]
    assert provider.decoded and json.loads(provider.payload_text)["name"] == "kms"
    assert {r.status for r in rows} == {MATCH, RECOMPUTED, NOT_RECOMPUTED}


def test_recorded_runtime_digests_are_compared() -> None:
    events = demo_events()
    report = verify_demo()
    recomputed = {r.index: r.recomputed for r in event_rows(report, "app") if r.register == 3}
    app_id = next(i for i, e in enumerate(events) if e["event"] == "app-id")
    instance = next(i for i, e in enumerate(events) if e["event"] == "instance-id")
    events[app_id]["digest"] = recomputed[app_id]
    events[instance]["digest"] = "ab" * 48  # a digest field that its payload does not produce
    rows = {r.index: r for r in event_rows(verify_demo(events), "app")}
    assert rows[app_id].status == MATCH
    assert rows[instance].status == MISMATCH and rows[instance].recorded == "ab" * 48


def test_pane_filters_sorts_and_shows_the_detail(qtbot, demo: Report, tmp_path: Path) -> None:
    pane = EventLogPane()
    qtbot.addWidget(pane)
    pane.resize(1300, 800)
    pane.show()
    pane.set_report(demo, "app")
    assert pane.summary.text() == "29 events: 17 match, 9 recomputed, 3 not recomputed"
    assert pane.current_row() is not None and pane.current_row().index == 0
    pane.register_combo.setCurrentIndex(pane.register_combo.findData(3))
    assert [r.register for r in pane.visible_rows()] == [3] * 9
    pane.status_combo.setCurrentIndex(pane.status_combo.findData(NOT_RECOMPUTED))
    assert pane.visible_rows() == []
    pane.register_combo.setCurrentIndex(0)
    assert [r.name for r in pane.visible_rows()] == ["acpi-loader", "acpi-rsdp", "acpi-tables"]
    pane.status_combo.setCurrentIndex(0)
    pane.filter_edit.setText("compose")
    assert [r.name for r in pane.visible_rows()] == ["compose-hash"]
    pane.filter_edit.clear()
    pane.view.sortByColumn(1, Qt.SortOrder.DescendingOrder)
    assert pane.visible_rows()[0].register == 3
    assert pane.select_event(26)
    tree = pane.detail
    sections = {tree.topLevelItem(i).text(0): tree.topLevelItem(i) for i in range(tree.topLevelItemCount())}
    assert set(sections) == {"Event", "Payload", "Digest"}
    digest = {sections["Digest"].child(i).text(0): sections["Digest"].child(i).text(1)
              for i in range(sections["Digest"].childCount())}
    assert digest["recorded"] == "(not recorded)" and digest["status"].startswith("recomputed")
    # The full payload is in the tooltip of the elided cell.
    index = pane.view.currentIndex().siblingAtColumn(4)
    assert index.data().endswith("…") and json.loads(index.data(3))["name"] == "kms"
    assert pane.grab().save(str(tmp_path / "eventlog.png"))


def test_cloud_answer_entities_and_no_log(qtbot, tmp_path: Path) -> None:
    answer = tmp_path / "attestations.json"
    answer.write_text(json.dumps(Dataset1.load().cloud_answer()))
    report = verify_evidence([detect(answer.read_bytes(), str(answer))],
                             VerifyOptions(now=load_demo().now, anchor=load_anchor(None), offline=True))
    for entity in ("app", "kms", "gateway"):
        rows = event_rows(report, entity)
        runtime = [r for r in rows if r.register == 3]
        assert runtime and all(r.status in (MATCH, RECOMPUTED) for r in runtime), entity
        # No OS image in the answer: boot events are shown, nothing recomputed them.
        assert all(r.status == NOT_RECOMPUTED for r in rows if r.register < 3), entity
    pane = EventLogPane()
    qtbot.addWidget(pane)
    pane.set_report(report, "kms")
    assert pane.model.rowCount() == len(event_rows(report, "kms"))
    pane.set_report(report, "nobody")
    assert pane.model.rowCount() == 0 and "no event log" in pane.summary.text()
    pane.set_report(None, "app")
    assert pane.summary.text() == "No report."


def test_a_hand_edited_report_does_not_break_the_table(demo: Report) -> None:
    data = json.loads(demo.to_json())
    events = data["entities"]["app"]["event_log"]["events"]
    events[21]["event_payload"] = "not hex"
    events[22]["digest"] = 7
    events.append("not an event")
    rows = event_rows(Report.model_validate(data), "app")
    assert len(rows) == 29
    assert rows[21].payload is None and rows[21].payload_text == "(payload is not hex)"
    assert rows[22].recorded == "" and rows[22].status == RECOMPUTED


def test_copying_takes_whole_values(qtbot, demo: Report) -> None:
    """Digests are cut to fit their cells; "Copy" and Ctrl+C ("Copy rows") take them whole."""
    from dstack_inspector.gui.copying import install_copy
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QAbstractItemView

    pane = EventLogPane()
    qtbot.addWidget(pane)
    pane.show()
    pane.set_report(demo, "app")
    view = pane.view
    install_copy(view)
    copy, copy_rows = (next(a for a in view.actions() if a.text() == name) for name in ("Copy", "Copy rows"))
    assert view.contextMenuPolicy() is Qt.ContextMenuPolicy.ActionsContextMenu
    row = pane.visible_rows()[0]
    proxy = view.model()
    digest = proxy.index(0, 5)  # "Recorded digest"
    assert str(digest.data()).endswith("…") and len(row.recorded) == 96
    view.setCurrentIndex(digest)
    copy.trigger()
    assert QGuiApplication.clipboard().text() == row.recorded
    view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    view.selectRow(0)
    pane.activateWindow()
    view.setFocus()
    qtbot.waitUntil(view.hasFocus)
    QGuiApplication.clipboard().clear()
    qtbot.keyClick(view, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    cells = QGuiApplication.clipboard().text().split("\t")
    assert cells[0] == "0" and cells[5] == row.recorded and cells[6] == row.recomputed
    assert copy_rows.shortcut().toString() == "Ctrl+C"


def test_a_check_links_to_the_events_it_concerns(qtbot) -> None:
    """From a check's details to its evidence in the log: the RTMR3 event whose digest field disagrees, the
    register that does not replay, the RTMR1 event that differs from the measurement."""
    from dstack_inspector.gui.report_view import ReportView, event_links

    events = demo_events()
    runtime = next(k for k, e in enumerate(events) if e["event"] == "compose-hash")
    events[runtime]["digest"] = "00" * 48  # a digest field its payload does not give
    kernel = [k for k, e in enumerate(events) if e["imr"] == 1][2]  # the third RTMR1 event of the log
    events[kernel]["digest"] = "11" * 48
    report = verify_demo(events)
    found = {c.id: c for c in report.checks}
    assert event_links(found["eventlog.rtmr3_payloads"]) == [(f"event:{runtime}", f"event {runtime} (compose-hash)")]
    assert event_links(found["eventlog.replay"]) == [("register:1", "the RTMR1 events")]
    (href, text), = event_links(found["os.rtmr1"])
    assert href == "register-event:1:2" and text.startswith("RTMR1 event 2 (")

    view = ReportView()
    qtbot.addWidget(view)
    view.show()
    view.show_report(report)
    view.open_check("eventlog.rtmr3_payloads")
    assert f'href="event:{runtime}"' in view.details_pane.evidence.text()
    view.details_pane.evidence.linkActivated.emit(f"event:{runtime}")
    pane = view.eventlog_pane
    assert view.tabs.currentWidget() is pane and pane.current_row().index == runtime
    view.reveal_field("register:1")
    assert {r.register for r in pane.visible_rows()} == {1} and pane.current_row().register == 1
    view.reveal_field(href)
    assert pane.current_row().index == kernel and len(pane.visible_rows()) == len(events)


def test_a_runtime_event_shows_the_bytes_its_digest_hashes(demo: Report) -> None:
    """The preimage, so that a reviewer can redo SHA-384 by hand: type, ':', name, ':', payload (V1)."""
    import hashlib

    from dstack_inspector.gui.eventlog_pane import event_detail

    row = next(r for r in event_rows(demo, "app") if r.name == "compose-hash")
    preimage = bytes.fromhex(row.preimage)
    assert preimage == (0x08000001).to_bytes(4, "little") + b":compose-hash:" + (row.payload or b"")
    assert hashlib.sha384(preimage).hexdigest() == row.recomputed
    digest = dict(event_detail(row))["Digest"]
    assert digest["preimage (SHA-384 of these bytes)"] == row.preimage
    firmware = next(r for r in event_rows(demo, "app") if r.register == 0)
    assert firmware.preimage == "" and "preimage (SHA-384 of these bytes)" not in dict(event_detail(firmware))["Digest"]


def test_a_boot_event_says_what_it_varies_with(demo: Report) -> None:
    from dstack_inspector.gui.eventlog_pane import event_detail

    hob = next(r for r in event_rows(demo, "app") if r.what == "TD HOB")
    assert dict(event_detail(hob))["Event"]["varies with"].startswith("vm_config.memory_size")
