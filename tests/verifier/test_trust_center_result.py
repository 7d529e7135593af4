"""A Phala Trust Center result re-verified: the evidence its DataObjects hold is verified from scratch for the App,
the KMS and the Gateway, and what the Trust Center concluded is kept beside, never used.

Two sources: our own DataObjects of the demo (the Trust Center's current layout: per-register event-log objects), and
the Trust Center's real `debug-data` result (its older layout: the whole log in `*-main.event_log`), on which the
re-verification finds what the Trust Center reported as verified but is not: the KMS's compose file is a
placeholder whose hash is not the one its quote measured.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest
from dstack_inspector.cli import main
from dstack_verifier.demo import load_demo
from dstack_verifier.evidence import Evidence, detect
from dstack_verifier.model import CheckStatus, Verdict
from dstack_verifier.sources import SourceError
from dstack_verifier.sources.trust_center import claims_line, parse_trust_center_result
from dstack_verifier.verification import verify_evidence

from tests.support.fixtures import fixture_path

SUCCESS = {"success": True, "errors": [], "failures": [], "completedAt": "2026-06-01T00:00:00Z"}


@cache
def demo_verification() -> tuple[Any, Any]:
    demo = load_demo()
    return demo, verify_evidence(demo.items, demo.options())


def demo_result(**top: Any) -> dict[str, Any]:
    """The demo's DataObjects as a Trust Center VerificationResponse."""
    _, report = demo_verification()
    return {"dataObjects": [o.model_dump(mode="json", by_alias=True, exclude_none=True) for o in report.data_objects],
            **SUCCESS, **top}


def statuses(report: Any) -> dict[tuple[str, str], CheckStatus]:
    return {(c.entity, c.id): c.status for c in report.checks}


def as_evidence(doc: Any, name: str = "trust-center.json") -> Evidence:
    return detect(json.dumps(doc).encode(), name)


def test_our_data_objects_verify_as_a_trust_center_result_to_the_same_checks() -> None:
    demo, direct = demo_verification()
    result = as_evidence(demo_result())
    assert result.kind == "trust-center-result"
    beside = [e for e in demo.items if e.kind in ("collateral", "acme-info", "kms-meta")]
    again = verify_evidence([result, *beside], demo.options())
    assert again.verdict is Verdict.PASS
    assert statuses(again) == statuses(direct)
    result = parse_trust_center_result(json.dumps(demo_result()).encode(), "trust-center.json")
    for entity in ("app", "kms", "gateway"):
        # The event logs were rebuilt from the per-register objects, RTMR0-2 in event_log_<k> order.
        assert result.materials[entity].event_log_source == \
            f"trust-center.json {entity}-event-logs-imr0..3 (rebuilt)"
        assert again.entities[entity]["event_log"]["source"] == f"trust-center/{entity}/getquote.json"
        claims = again.entities[entity]["trust_center_claims"]
        assert claims["success"] is True and claims["tcb_status"] == "UpToDate"
    assert [i.role for i in again.inputs][:1] == ["trust-center-result"]


def test_without_the_answers_beside_it_what_they_carried_is_not_checked() -> None:
    """The DataObjects carry no acme-info nor KMS keys: those checks skip or warn instead of passing."""
    demo, direct = demo_verification()
    collateral = [e for e in demo.items if e.kind == "collateral"]
    again = verify_evidence([as_evidence(demo_result()), *collateral], demo.options())
    changed = {k: v for k, v in statuses(again).items() if statuses(direct).get(k) != v}
    assert changed == {
        ("gateway", "binding.report_data"): CheckStatus.SKIP,
        ("gateway", "domain.tee_controlled_key"): CheckStatus.SKIP,
        ("gateway", "domain.certificate_key"): CheckStatus.SKIP,
        ("app", "source.kms_key_provider"): CheckStatus.WARN,
        ("gateway", "source.kms_key_provider"): CheckStatus.WARN,
    }
    assert ("kms", "binding.kms_keys") not in statuses(again)


def test_a_bare_object_list_has_no_overall_claim() -> None:
    objects = demo_result()["dataObjects"]
    result = parse_trust_center_result(json.dumps(objects).encode(), "objects.json")
    assert result.claims.success is None and set(result.materials) == {"app", "kms", "gateway"}
    entities = {e: {"trust_center_claims": {"success": None, "tcb_status": s, "failures": [], "errors": []}}
                for e, s in result.claims.tcb_status.items()}
    assert claims_line(entities) == ("the Trust Center claimed no overall verdict (a bare DataObject list); TCB "
                                     "status app UpToDate, kms UpToDate, gateway UpToDate")


# -- the Trust Center's own result ---------------------------------------------------------------------------------


@cache
def real_objects() -> list[dict[str, Any]]:
    return json.loads(fixture_path("trust-center", "debug-data-1.dataObjects.json").read_text())


def test_the_real_result_reads_in_its_older_layout() -> None:
    result = parse_trust_center_result(json.dumps(real_objects()).encode(), "debug-data.json")
    assert set(result.materials) == {"app", "kms", "gateway"}
    assert result.kms_contract == "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C" and result.chain == "Base"
    assert result.gateway_app_id == "55760b065a3f1eabdb1a4d7abb94950f31b91a84"
    assert result.gateway_url == "https://gateway.dstack-base-prod7.phala.network"
    app, kms, gateway = (result.materials[e] for e in ("app", "kms", "gateway"))
    assert app.event_log_source == "debug-data.json app-main.fields.event_log" and len(app.event_log or []) == 29
    assert app.certificates_pem and not app.other_certificates_pem  # the RA-TLS chain
    assert gateway.other_certificates_pem and not gateway.certificates_pem  # a web TLS chain, not RA-TLS
    assert kms.app_compose is not None and app.app_compose is None  # this result has no app-code object
    assert result.claims.tcb_status == {"app": "UpToDate", "kms": "UpToDate", "gateway": "UpToDate"}


def test_the_per_register_objects_rebuild_the_same_log() -> None:
    objects = json.loads(json.dumps(real_objects()))
    main_log = next(o for o in objects if o["id"] == "app-main")["fields"].pop("event_log")
    result = parse_trust_center_result(json.dumps(objects).encode(), "debug-data.json")
    rebuilt, logged = result.materials["app"].event_log or [], json.loads(main_log)
    # The same events per register, in order (the interleaving of registers does not change any replay).
    assert [[e for e in rebuilt if e["imr"] == i] for i in range(4)] == \
        [[e for e in logged if e["imr"] == i] for i in range(4)]
    assert any("one RTMR3 event per name" in n for n in result.notes)


def test_the_real_result_re_verified_offline(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    path = tmp_path / "debug-data.json"
    path.write_text(json.dumps({"dataObjects": real_objects(), **SUCCESS}))
    code = main(["verify", str(path), "--offline"])
    out, err = capsys.readouterr()
    assert code == 1 and err == ""
    assert "re-verified: the Trust Center claimed success; TCB status app UpToDate, kms UpToDate, gateway " \
           "UpToDate" in out
    saved = tmp_path / "report.json"
    code = main(["verify", str(path), "--offline", "--json", "--output", str(saved)])
    report = json.loads(capsys.readouterr().out)
    # The report records the result itself: re-running it verifies the same bytes to the same checks.
    assert main(["verify", str(saved), "--offline", "--json", "--at", str(report["verified_at"])]) == 1
    again = json.loads(capsys.readouterr().out)
    assert [(c["entity"], c["id"], c["status"]) for c in again["checks"]] == \
        [(c["entity"], c["id"], c["status"]) for c in report["checks"]]
    found = {(c["entity"], c["id"]): c for c in report["checks"]}
    # What the Trust Center passed: the KMS's compose file is a placeholder, not what its quote measured.
    kms_compose = found[("kms", "source.compose_hash")]
    assert kms_compose["status"] == "fail" and "does not match the compose-hash event" in kms_compose["summary"]
    for key in [("app", "binding.report_data"), ("gateway", "source.gateway_app_id"),
                *((e, c) for e in ("app", "kms", "gateway") for c in ("hardware.quote_signature", "eventlog.replay",
                                                                      "eventlog.rtmr3_payloads"))]:
        assert found[key]["status"] == "pass", (key, found[key]["summary"])
    assert found[("gateway", "source.compose_hash")]["status"] == "pass"
    assert report["entities"]["kms"]["trust_center_claims"]["success"] is True


@pytest.mark.parametrize(("edit", "field", "words"), [
    (lambda objs: objs[0]["fields"].update(intel_attestation_report="0x04zz"),
     "kms-main.fields.intel_attestation_report", "not hex"),
    (lambda objs: objs.append(dict(objs[0])), "dataObjects[29].id", "two DataObjects with id 'kms-main'"),
    (lambda objs: objs[0]["fields"].update(event_log='[{"imr": 9}]'), "kms-main.fields.event_log", ""),
])
def test_malformed_results_are_refused_naming_the_field(edit: Any, field: str, words: str) -> None:
    objects = json.loads(json.dumps(real_objects()))
    objects.sort(key=lambda o: o["id"] != "kms-main")  # kms-main first
    edit(objects)
    with pytest.raises(SourceError) as info:
        parse_trust_center_result(json.dumps(objects).encode(), "tc.json")
    assert info.value.field is not None and info.value.field.startswith(field), info.value.describe()
    assert words in info.value.message


def test_a_result_with_no_quote_is_refused() -> None:
    objects = [o for o in real_objects() if not o["id"].endswith("-main")]
    with pytest.raises(SourceError, match="holds no quote"):
        parse_trust_center_result(json.dumps(objects).encode(), "tc.json")


def test_a_result_without_the_apps_quote_leaves_the_app_unverified(capsys: pytest.CaptureFixture[str],
                                                                   tmp_path: Any) -> None:
    objects = json.loads(json.dumps(real_objects()))
    next(o for o in objects if o["id"] == "app-main")["fields"].pop("intel_attestation_report")
    path = tmp_path / "no-app.json"
    path.write_text(json.dumps(objects))
    code = main(["verify", str(path), "--offline", "--json"])
    report = json.loads(capsys.readouterr().out)
    missing = [c for c in report["checks"] if c["id"] == "hardware.entity_evidence"]
    assert [(c["entity"], c["status"]) for c in missing] == [("app", "skip")]
    assert "holds no quote of the app" in missing[0]["summary"] and code == 1  # the KMS's compose still fails
