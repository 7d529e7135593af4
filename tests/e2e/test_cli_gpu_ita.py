"""GPU evidence through NRAS and the optional Intel Trust Authority appraisal, end to end on the CLI, against real
servers on loopback (tests/support/nras_server.py, tests/support/ita_server.py), then replayed offline."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from dstack_inspector.cli import main
from dstack_verifier.demo import DEMO_ANCHOR, DEMO_APP_EVIDENCE, load_demo
from dstack_verifier.resources import resource_path

from tests.support.ita_server import API_KEY, ItaServer
from tests.support.nras_server import NrasPki, NrasServer

DEMO = load_demo()


def run_json(capsys, *argv: object) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    code = main([str(a) for a in argv] + ["--json"])
    captured = capsys.readouterr()
    assert captured.out, captured.err
    return code, json.loads(captured.out)


def app_args() -> list[object]:
    return [*(resource_path("demo", name) for name in DEMO_APP_EVIDENCE),
            "--root-ca", resource_path("demo", DEMO_ANCHOR), "--at", DEMO.now]


def check(report: dict, check_id: str) -> dict:
    return next(c for c in report["checks"] if c["id"] == check_id)


def gpu_evidence(path: Path, at: datetime) -> Path:
    chain = base64.b64encode(NrasPki(at).leaf.public_bytes(serialization.Encoding.PEM)).decode()
    payload = {"nonce": "cd" * 32, "arch": "HOPPER",
               "evidence_list": [{"certificate": chain, "evidence": base64.b64encode(b"\x01" * 4129).decode(),
                                  "arch": "HOPPER"}]}
    path.write_text(json.dumps({"nvidia_payload": json.dumps(payload)}))  # the Redpill bundle's shape
    return path


def test_gpu_evidence_is_attested_by_nras_and_replays(capsys, tmp_path: Path) -> None:
    at = datetime.fromtimestamp(DEMO.now, UTC)
    evidence = gpu_evidence(tmp_path / "gpu.json", at)
    with NrasServer(now=at) as nras:
        code, report = run_json(capsys, "verify", evidence, *app_args(), "--nras-url", nras.attest_url,
                                "--output", tmp_path / "r.json")
    gpu = check(report, "gpu.attestation")
    assert gpu["status"] == "pass", gpu["summary"]
    assert code == 0 and report["verdict"] == "pass"
    assert "gpu-evidence" in [i["role"] for i in report["inputs"]]
    assert report["policy"]["endpoints"] == {"nras_url": nras.attest_url}  # the re-run's NRAS, in the recording
    again_code, again = run_json(capsys, "verify", tmp_path / "r.json", "--offline", "--root-ca",
                                 resource_path("demo", DEMO_ANCHOR), "--at", DEMO.now)
    assert check(again, "gpu.attestation")["status"] == "pass"  # from the recorded NRAS answer and keys
    assert again_code == code


def test_a_report_with_malformed_endpoints_is_refused(capsys, tmp_path: Path) -> None:
    _, report = run_json(capsys, "verify", *app_args(), "--offline", "--output", tmp_path / "r.json")
    for bad in ({"agent_url": 7}, {"nras_url": "file:///etc/passwd"}, {"cloud_url": "https://x"}, ["https://x"]):
        report["policy"]["endpoints"] = bad
        (tmp_path / "bad.json").write_text(json.dumps(report))
        assert main(["verify", str(tmp_path / "bad.json"), "--offline"]) == 2
        err = capsys.readouterr().err
        assert "policy.endpoints" in err and "malformed endpoints" in err and "Traceback" not in err


def test_gpu_evidence_offline_is_never_a_pass(capsys, tmp_path: Path) -> None:
    evidence = gpu_evidence(tmp_path / "gpu.json", datetime.fromtimestamp(DEMO.now, UTC))
    code, report = run_json(capsys, "verify", evidence, *app_args(), "--offline")
    assert check(report, "gpu.attestation")["status"] == "skip"
    assert report["verdict"] == "incomplete" and code == 3


def test_ita_appraisal_agrees_and_is_off_without_a_key(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ITA_API_KEY", raising=False)
    monkeypatch.delenv("INTEL_TRUST_AUTHORITY_API_KEY", raising=False)
    code, report = run_json(capsys, "verify", *app_args(), "--offline")
    assert "hardware.ita_appraisal" not in [c["id"] for c in report["checks"]]  # optional, off without a key
    assert code == 0 and report["verdict"] == "pass"
    with ItaServer(now=DEMO.now) as server:
        code, report = run_json(capsys, "verify", *app_args(), "--ita-api-key", API_KEY, "--ita-url", server.url)
        assert check(report, "hardware.ita_appraisal")["status"] == "pass", check(report, "hardware.ita_appraisal")
        recorded = json.dumps(report["inputs"])
        assert API_KEY not in recorded and code == 0
        code, report = run_json(capsys, "verify", *app_args(), "--ita-api-key", "wrong", "--ita-url", server.url)
    ita = check(report, "hardware.ita_appraisal")
    assert ita["status"] == "error" and "401" in ita["summary"] and code == 3
