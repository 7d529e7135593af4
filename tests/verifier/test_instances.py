"""`source.other_instances`: every running instance of the app in a Cloud answer is verified, not only the first.

End to end over the demo deployment (offline, its own root and collateral) with instances added to its Cloud
answer; then the decision rules on reports changed by hand.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from dstack_verifier.demo import load_demo
from dstack_verifier.evidence import Evidence, detect
from dstack_verifier.instances import CHECK_ID, InstanceOutcome, check_other_instances
from dstack_verifier.model import Check, CheckStatus, Report, Verdict
from dstack_verifier.verification import verify_evidence

DEMO = load_demo()


def answer() -> dict[str, Any]:
    return json.loads(next(e for e in DEMO.items if e.kind == "cloud-attestations").data)


def kms_instance() -> dict[str, Any]:
    """The KMS's quote and log, dressed as an app instance: a genuine quote of another app."""
    doc = answer()
    info = doc["kms_guest_agent_info"]
    other = copy.deepcopy(doc["instances"][0])
    other.update(instance_id="ab" * 20, name="not-the-app")
    other["tcb_info"] = info["tcb_info"] if isinstance(info["tcb_info"], dict) else json.loads(info["tcb_info"])
    other["quote"] = _kms_quote(doc)
    return other


def _kms_quote(doc: dict[str, Any]) -> str:
    from dstack_verifier.sources import to_evidence
    from dstack_verifier.sources.cloud import parse_cloud_answer

    parsed = parse_cloud_answer(json.dumps(doc).encode(), "a.json")
    quoted = next(e for e in to_evidence(parsed)["kms"] if e.quote is not None)
    assert quoted.quote is not None
    return quoted.quote.hex()


def verify(doc: dict[str, Any]) -> Report:
    cloud = next(e for e in DEMO.items if e.kind == "cloud-attestations")
    items: list[Evidence] = [detect(json.dumps(doc).encode(), cloud.name), *(e for e in DEMO.items if e is not cloud)]
    return verify_evidence(items, DEMO.options())


def found(report: Report) -> Check:
    return next(c for c in report.checks if c.id == CHECK_ID)


def test_one_instance_has_no_such_check() -> None:
    assert not any(c.id == CHECK_ID for c in verify(answer()).checks)


def with_second(change: Callable[[dict[str, Any]], None], first: bool = False) -> Report:
    """The demo answer with a copy of its instance, changed, listed after it (or before it)."""
    doc = answer()
    second = copy.deepcopy(doc["instances"][0])
    change(second)
    doc["instances"].insert(0 if first else len(doc["instances"]), second)
    return verify(doc)


def test_a_second_instance_like_the_first_passes_and_replays() -> None:
    report = with_second(lambda i: i.update(instance_id="cd" * 20, name="demo-app-1"))
    check = found(report)
    assert check.status is CheckStatus.PASS and check.summary.startswith("1 other running instance: DCAP valid")
    assert check.anchor == "caller-supplied"  # the demo's root, not Intel's
    row = check.details["instances"][0]
    assert (row["index"], row["instance_id"], row["tcb_status"]) == (1, "cd" * 20, "UpToDate")
    assert report.verdict is Verdict.PASS
    assert CHECK_ID in next(o for o in report.data_objects if o.id == "app-main").check_ids  # shown on the graph
    again = verify_evidence([detect(report.to_json().encode(), "r.json")], DEMO.options())
    assert found(again).status is CheckStatus.PASS


def _unbind_compose(instance: dict[str, Any]) -> None:
    compose = next(e for e in instance["tcb_info"]["event_log"] if e["event"] == "compose-hash")
    compose["event_payload"] = "00" * 32  # the quote no longer binds this log


def _flip_body_byte(instance: dict[str, Any]) -> None:
    raw = bytearray.fromhex(instance["quote"])
    raw[700] ^= 1  # inside the signature over the body
    instance["quote"] = raw.hex()


def test_a_tampered_instance_fails_the_verdict() -> None:
    report = with_second(_unbind_compose)
    check = found(report)
    assert check.status is CheckStatus.FAIL and "instance 1: eventlog.rtmr3_payloads fails" in check.summary
    assert report.verdict is Verdict.FAIL


def test_an_instance_of_another_app_fails() -> None:
    doc = answer()
    doc["instances"].append(kms_instance())
    check = found(verify(doc))
    assert check.status is CheckStatus.FAIL and "instance 1: its quote is of another app" in check.summary


def test_a_running_instance_whose_evidence_does_not_parse_is_not_passed_over() -> None:
    # Truncated, the quote makes the parser set the instance aside: it is still named, not verified.
    report = with_second(lambda i: i.update(quote=i["quote"][:-200]), first=True)
    check = found(report)
    assert check.status is CheckStatus.ERROR and "instance 0: its evidence is unusable" in check.summary
    assert report.verdict is Verdict.INCOMPLETE


def test_a_forged_quote_fails_dcap() -> None:
    check = found(with_second(_flip_body_byte))
    assert check.status is CheckStatus.FAIL and "hardware." in check.summary and "fails" in check.summary


# -- the decision, on reports changed by hand ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_report() -> Report:
    report = verify(answer())
    return report.model_copy(update={"entities": {"app": report.entities["app"]},
                                     "checks": [c for c in report.checks if c.entity == "app"]})


def changed(report: Report, **app_info: str) -> Report:
    app = copy.deepcopy(report.entities["app"])
    app["app_info"].update(app_info)
    return report.model_copy(update={"entities": {"app": app}})


def with_body(report: Report, **fields: str) -> Report:
    app = copy.deepcopy(report.entities["app"])
    app["quote"].update(fields)
    return report.model_copy(update={"entities": {"app": app}})


def test_another_compose_or_os_warns(app_report: Report) -> None:
    compose = check_other_instances(app_report, [InstanceOutcome(1, "x", changed(app_report, compose_hash="11" * 32))])
    assert compose.status is CheckStatus.WARN and "runs another compose (hash " + "11" * 32 in compose.summary
    os = check_other_instances(app_report, [InstanceOutcome(2, "y", with_body(app_report, rtmr1="22" * 48))])
    assert os.status is CheckStatus.WARN and "instance 2: its rtmr1 differ" in os.summary


def test_unusable_evidence_is_an_error_and_the_worst_wins(app_report: Report) -> None:
    outcomes = [InstanceOutcome(1, None, None, "instances[1]: the quote is truncated"),
                InstanceOutcome(2, "z", changed(app_report, app_id="33" * 20)),
                InstanceOutcome(3, "w", app_report)]
    check = check_other_instances(app_report, outcomes)
    assert check.status is CheckStatus.FAIL and check.summary.startswith("3 other running instances: ")
    assert "instance 1: its evidence is unusable (instances[1]: the quote is truncated)" in check.summary
    assert [r["status"] for r in check.details["instances"]] == ["error", "fail", "pass"]
    alone = check_other_instances(app_report, outcomes[:1])
    assert alone.status is CheckStatus.ERROR and alone.anchor == "none"
