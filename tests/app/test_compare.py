"""compare_reports: two verifications of the demo evidence, one with a tampered event, one with a different
collateral outcome, and the three-entity Cloud answer against the single-entity demo."""

from __future__ import annotations

import json

import pytest
from dstack_verifier.compare import ENTITY_FIELD_NAMES, compare_reports
from dstack_verifier.demo import load_demo
from dstack_verifier.evidence import detect
from dstack_verifier.model import Report
from dstack_verifier.verification import VerifyOptions, load_anchor, verify_evidence

from tests.support.cloud_server import Dataset1


def demo_report(offline_collateral: bool = False, **getquote_changes) -> Report:  # type: ignore[no-untyped-def]
    demo = load_demo()
    items = list(demo.app_items)
    if getquote_changes:
        doc = json.loads(items[0].data)
        doc.update(getquote_changes)
        items[0] = detect(json.dumps(doc).encode(), items[0].name)
    if offline_collateral:
        items = [i for i in items if i.kind != "collateral"]
    return verify_evidence(items, VerifyOptions(now=demo.now, anchor=demo.anchor, offline=True))


@pytest.fixture(scope="module")
def demo() -> Report:
    return demo_report()


def test_a_report_equals_itself(demo: Report) -> None:
    c = compare_reports(demo, demo)
    assert c.differences == 0
    assert [e.entity for e in c.entities] == ["app"]
    assert [f.field for f in c.entities[0].fields] == list(ENTITY_FIELD_NAMES)
    assert all(f.change == "same" for f in c.entities[0].fields)
    assert {d.change for d in c.checks} == {"same"} and len(c.checks) == len(demo.checks)
    assert [i.role for i in c.inputs] == [i.role for i in demo.inputs]


def test_missing_collateral_changes_tcb_and_checks(demo: Report) -> None:
    other = demo_report(offline_collateral=True)
    c = compare_reports(demo, other)
    fields = {f.field: f for f in c.entities[0].fields}
    assert fields["TCB status"].change == "removed" and fields["TCB status"].a == "UpToDate"
    assert fields["TCB advisories"].a == []  # no advisories either way
    assert fields["MRTD"].change == "same" and fields["compose hash"].change == "same"
    changed = {d.id: (d.a, d.b) for d in c.checks if d.change == "changed"}
    assert changed["hardware.tcb_status"] == ("pass", "skip")
    assert changed["hardware.collateral_signatures"] == ("pass", "skip")
    assert "hardware.quote_signature" not in changed
    inputs = {i.role: i for i in c.inputs}
    assert inputs["collateral"].change == "removed" and inputs["collateral"].sha256_b is None
    assert inputs["getquote"].change == "same"
    assert c.verdict_a == "pass" and c.verdict_b == "incomplete"
    assert c.differences == 1 + sum(len(e.changed) for e in c.entities) + len(changed) + 1


def test_a_changed_event_log_shows_in_checks_and_inputs(demo: Report) -> None:
    events = json.loads(load_demo().app_items[0].data)["event_log"]
    events = json.loads(events) if isinstance(events, str) else events
    compose = next(e for e in events if e["event"] == "compose-hash")
    compose["event_payload"] = "00" * 32
    other = demo_report(event_log=json.dumps(events))
    c = compare_reports(demo, other)
    statuses = {d.id: (d.a, d.b) for d in c.checks}
    assert statuses["eventlog.rtmr3_payloads"] == ("pass", "fail")
    assert statuses["eventlog.replay"] == ("pass", "fail")
    getquote = next(i for i in c.inputs if i.role == "getquote")
    assert getquote.change == "changed" and getquote.name_a == getquote.name_b
    assert getquote.sha256_a != getquote.sha256_b


def test_cloud_answer_against_the_demo(demo: Report, tmp_path) -> None:
    answer = tmp_path / "attestations.json"
    answer.write_text(json.dumps(Dataset1.load().cloud_answer()))
    cloud = verify_evidence([detect(answer.read_bytes(), str(answer))],
                            VerifyOptions(now=load_demo().now, anchor=load_anchor(None), offline=True))
    c = compare_reports(demo, cloud)
    assert [e.entity for e in c.entities] == ["app", "kms", "gateway"]
    kms = next(e for e in c.entities if e.entity == "kms")
    assert (kms.in_a, kms.in_b) == (False, True)
    assert {f.change for f in kms.fields if f.b is not None} == {"added"}
    app = c.entities[0]
    assert {f.field for f in app.changed} >= {"MRTD", "RTMR0", "RTMR3", "compose hash", "app id"}
    added = {(d.entity, d.id) for d in c.checks if d.change == "added"}
    assert ("kms", "source.compose_hash") in added and ("app", "hardware.quote_structure") not in added
    roles = {(i.role, i.change) for i in c.inputs}
    assert ("cloud-attestations", "added") in roles and ("getquote", "removed") in roles
    # Plain data at the boundary: the comparison serialises.
    assert json.loads(c.model_dump_json())["verdict_b"] == "fail"
