"""A saved Phala Cloud attestations answer: three entities verified from one file, and re-run from the report."""

from __future__ import annotations

import json
from pathlib import Path

from dstack_inspector.cli import main

from tests.support.cloud_server import Dataset1


def run_json(capsys, *argv: object) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    code = main([str(a) for a in argv] + ["--json"])
    return code, json.loads(capsys.readouterr().out)


def test_saved_cloud_answer_verifies_three_entities(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DSTACK_INSPECTOR_CACHE_DIR", str(tmp_path / "cache"))
    answer = tmp_path / "attestations.json"
    answer.write_text(json.dumps(Dataset1.load().cloud_answer()))
    code, report = run_json(capsys, "verify", answer, "--offline", "--output", tmp_path / "r.json")
    assert set(report["entities"]) == {"app", "kms", "gateway"}
    by_entity: dict[str, dict[str, dict]] = {}
    for c in report["checks"]:
        by_entity.setdefault(c["entity"], {})[c["id"]] = c
    for entity in ("app", "kms", "gateway"):
        checks = by_entity[entity]
        # Every entity's event log is replayed, the KMS's and gateway's too (the Trust Center skips those).
        assert checks["eventlog.replay"]["status"] == "pass", (entity, checks["eventlog.replay"])
        assert checks["eventlog.rtmr3_payloads"]["status"] == "pass"
        assert checks["hardware.quote_signature"]["status"] == "pass"
    # dataset1's KMS compose is a placeholder (its README says so): one entity fails, the others still verify.
    assert by_entity["kms"]["source.compose_hash"]["status"] == "fail"
    assert by_entity["gateway"]["source.compose_hash"]["status"] == "pass"
    assert code == 1 and report["verdict"] == "fail"
    assert [i["role"] for i in report["inputs"]] == ["cloud-attestations"]

    # The report re-runs offline from the answer it recorded, with the same checks.
    code_again, again = run_json(capsys, "verify", tmp_path / "r.json", "--offline")
    assert code_again == code
    assert [(c["entity"], c["id"], c["status"]) for c in again["checks"]] == \
        [(c["entity"], c["id"], c["status"]) for c in report["checks"]]


def test_a_cloud_answer_is_verified_on_its_own(capsys, tmp_path: Path) -> None:
    answer = tmp_path / "attestations.json"
    answer.write_text(json.dumps(Dataset1.load().cloud_answer()))
    quote = tmp_path / "q.hex"
    quote.write_text(Dataset1.load().quote_hex("app"))
    assert main(["verify", str(answer), str(quote), "--offline"]) == 2
    assert "verified on its own" in capsys.readouterr().err
