"""The Network tab: the exchanges a report recorded, read defensively (a report may come from anyone)."""

from __future__ import annotations

import base64
import json

from dstack_inspector.gui.network_pane import NetworkPane
from dstack_verifier.demo import load_demo
from dstack_verifier.evidence import RECORDING_SCHEMA, Evidence
from dstack_verifier.model import Report
from dstack_verifier.verification import verify_evidence


def with_recording(data: bytes) -> Report:
    demo = load_demo()
    report = verify_evidence(demo.app_items, demo.options())
    recording = Evidence("network-recording.json", "recording", data).input_file(role="recording")
    return report.model_copy(update={"inputs": [*report.inputs, recording]})


def exchange(url: str, body: bytes, method: str = "GET", request: bytes | None = None) -> dict:
    return {"method": method, "url": url, "status": 200, "headers": {"content-type": "application/json"},
            "body": base64.b64encode(body).decode(), "fetched_at": 1_780_272_000.5,
            "request_body": base64.b64encode(request).decode() if request is not None else None}


def test_recorded_exchanges_are_listed_with_their_detail(qtbot) -> None:
    doc = {"schema": RECORDING_SCHEMA, "exchanges": [
        exchange("https://rpc.example.invalid/", b'{"result":"0x2105"}', "POST", b'{"method":"eth_chainId"}'),
        exchange("https://pccs.example.invalid/x", bytes(range(256)) * 20)]}
    pane = NetworkPane()
    qtbot.addWidget(pane)
    pane.set_report(with_recording(json.dumps(doc).encode()))
    assert pane.table.rowCount() == 2
    assert [pane.table.item(0, c).text() for c in range(6)] == [
        "0", "POST", "https://rpc.example.invalid/", "200", "19", "2026-06-01 00:00:00"]
    assert pane.table.item(1, 4).text() == "5120"
    assert "2 recorded exchange(s) with 2 host(s): pccs.example.invalid, rpc.example.invalid" in pane.summary.text()
    shown = pane.detail.topLevelItem(0)
    assert shown.text(0) == "Request"
    values = {shown.child(i).text(0): shown.child(i).text(1) for i in range(shown.childCount())}
    assert values["body"] == '{"method":"eth_chainId"}' and values["method"] == "POST"
    pane.table.selectRow(1)
    response = pane.detail.topLevelItem(1)
    body = next(response.child(i).text(1) for i in range(response.childCount()) if response.child(i).text(0) == "body")
    assert body.startswith("000102") and body.endswith("(1024 more bytes)")


def test_a_recording_that_does_not_decode_is_said_not_raised(qtbot) -> None:
    pane = NetworkPane()
    qtbot.addWidget(pane)
    pane.set_report(with_recording(b'{"schema": "x", "exchanges": [{"url": 5}]}'))
    assert pane.table.rowCount() == 0
    assert "Note: the recording network-recording.json does not decode." in pane.summary.text()
    pane.set_report(None)
    assert pane.summary.text() == "No report."
