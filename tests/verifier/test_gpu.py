"""`gpu.attestation`: NVIDIA GPU evidence through a loopback NRAS that signs real ES384 tokens."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from dstack_verifier.errors import InputError
from dstack_verifier.gpu import (
    CHECK_ID,
    GpuEvidence,
    check_gpu_attestation,
    is_gpu_evidence,
    parse_gpu_evidence,
)
from dstack_verifier.model import Check, CheckStatus
from dstack_verifier.net import Exchange, NetClient, ReplayClient

from tests.support.nras_server import ATTEST_PATH, JWKS_PATH, KID, NrasPki, NrasServer
from tests.support.web_pki import NOW

NONCE = "ab" * 32
# Any PEM chain stands in for a GPU's device certificates here: NRAS, not the inspector, validates them.
DEVICE_CHAIN = base64.b64encode(NrasPki(NOW).leaf.public_bytes(serialization.Encoding.PEM)).decode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def payload(gpus: int = 2, nonce: str = NONCE) -> dict:
    return {"nonce": nonce, "arch": "HOPPER",
            "evidence_list": [{"certificate": DEVICE_CHAIN, "evidence": _b64(bytes([i]) * 4129), "arch": "HOPPER"}
                              for i in range(gpus)]}


@pytest.fixture()
def nras() -> Iterator[NrasServer]:
    with NrasServer(now=NOW) as server:
        yield server


def run(nras: NrasServer, evidence: GpuEvidence | None = None, client: NetClient | None = None, **kw) -> Check:
    client = client or NetClient(retries=0, timeout=5)
    return check_gpu_attestation(evidence or parse_gpu_evidence(payload()), client=client, now=kw.pop("now", NOW),
                                 nras_url=nras.attest_url, jwks_url=nras.jwks_url, **kw)


def test_pass_verifies_every_token(nras: NrasServer) -> None:
    check = run(nras)
    assert check.id == CHECK_ID and check.phase == "hardware" and check.entity == "app"
    assert check.status is CheckStatus.PASS, check.summary
    assert [t["signature"] for t in check.details["tokens"]] == ["valid"] * 3
    assert [g["model"] for g in check.details["gpus"]] == ["GH100", "GH100"]
    assert check.details["gpus"][0]["driver_version"] == "550.127.05"
    assert check.details["gpus"][0]["failed_claims"] == []
    assert all(s["matches"] for s in check.details["submods"].values())
    assert check.details["keys"][KID]["certificates"][0]["subject"].startswith("CN=Test NRAS GPU GH100")
    assert "no NVIDIA root is pinned" in check.details["key_trust"]
    assert check.details["evidence"][1]["evidence_bytes"] == 4129
    assert nras.counts[ATTEST_PATH] == 1 and nras.counts[JWKS_PATH] == 1


def test_overall_false_fails(nras: NrasServer) -> None:
    nras.overall_result = False
    check = run(nras)
    assert check.status is CheckStatus.FAIL
    assert "x-nvidia-overall-att-result is False" in check.summary


def test_gpu_measurement_failure_fails_even_when_overall_true(nras: NrasServer) -> None:
    nras.gpu_claims = {"measres": "fail", "x-nvidia-gpu-attestation-report-nonce-match": False}
    check = run(nras)
    assert check.status is CheckStatus.FAIL
    assert "GPU-0 (GH100): x-nvidia-gpu-attestation-report-nonce-match, measres='fail'" in check.summary
    assert check.details["gpus"][1]["failed_claims"]


@pytest.mark.parametrize(("tamper", "words"), [
    ("bad-signature", "overall token: the ES384 signature does not verify under key nv-eat-kid-test-0001"),
    ("wrong-key", "the ES384 signature does not verify"),
    ("unknown-kid", "which NVIDIA's JWKS does not publish"),
    ("alg-none", "algorithm 'none', NRAS signs with ES384"),
    ("bad-digest", "per-GPU token GPU-0: its SHA-256 is"),
])
def test_tampered_tokens_fail(nras: NrasServer, tamper: str, words: str) -> None:
    nras.tamper = tamper  # type: ignore[assignment]
    check = run(nras)
    assert check.status is CheckStatus.FAIL
    assert words in check.summary


def test_expired_token_fails(nras: NrasServer) -> None:
    check = run(nras, now=NOW + timedelta(hours=2))
    assert check.status is CheckStatus.FAIL
    assert "overall token: expired at" in check.summary


def test_token_issued_in_the_future_fails(nras: NrasServer) -> None:
    nras.issued_at = int((NOW + timedelta(hours=1)).timestamp())
    check = run(nras)
    assert check.status is CheckStatus.FAIL
    assert "`nbf`" in check.summary


def test_nonce_mismatch_fails(nras: NrasServer) -> None:
    nras.echo_nonce = "cd" * 32
    check = run(nras)
    assert check.status is CheckStatus.FAIL
    assert f"eat_nonce '{'cd' * 32}' is not the evidence's nonce {NONCE}" in check.summary


def test_wrong_issuer_fails(nras: NrasServer) -> None:
    # The tokens name http://127.0.0.1:<port>; asked as "localhost", the expected issuer differs.
    check = check_gpu_attestation(parse_gpu_evidence(payload()), client=NetClient(retries=0, timeout=5), now=NOW,
                                  nras_url=nras.attest_url.replace("127.0.0.1", "localhost"), jwks_url=nras.jwks_url)
    assert check.status is CheckStatus.FAIL
    assert "issuer" in check.summary


def test_missing_gpu_result_warns(nras: NrasServer) -> None:
    nras.tamper = "drop-gpu"
    check = run(nras)
    assert check.status is CheckStatus.WARN
    assert "NRAS returned 1 per-GPU results for 2 GPU evidences" in check.summary


def test_pinned_root_passes_and_foreign_root_warns(nras: NrasServer) -> None:
    check = run(nras, trusted_roots=[nras.pki.root])
    assert check.status is CheckStatus.PASS, check.summary
    assert check.details["keys"][KID]["pinned"] is True
    check = run(nras, trusted_roots=[NrasPki(NOW).root])
    assert check.status is CheckStatus.WARN
    assert "does not reach a trusted NVIDIA root" in check.summary


def test_signing_certificate_outside_its_validity_warns(nras: NrasServer) -> None:
    nras.issued_at = int((NOW + timedelta(days=3)).timestamp())
    check = run(nras, now=NOW + timedelta(days=3))
    assert check.status is CheckStatus.WARN
    assert "is not valid at" in check.summary


def test_unreadable_answer_warns(nras: NrasServer) -> None:
    nras.tamper = "not-json"
    check = run(nras)
    assert check.status is CheckStatus.WARN
    assert "unreadable answer" in check.summary and "invalid JSON" in check.summary


def test_jwks_unavailable_warns_never_passes(nras: NrasServer) -> None:
    nras.jwks_status = 404
    check = run(nras)
    assert check.status is CheckStatus.WARN
    assert "NRAS says overall result True, but NVIDIA's signing keys could not be had" in check.summary


def test_nras_500_skips(nras: NrasServer) -> None:
    nras.status = 500
    check = run(nras)
    assert check.status is CheckStatus.SKIP
    assert "NRAS unreachable" in check.summary and "HTTP 500" in check.summary


def test_nras_timeout_skips(nras: NrasServer) -> None:
    nras.slow_seconds = 3
    check = run(nras, client=NetClient(retries=0, timeout=0.3))
    assert check.status is CheckStatus.SKIP
    assert "NRAS unreachable" in check.summary and "timed out" in check.summary


def test_offline_skips_without_asking(nras: NrasServer) -> None:
    check = run(nras, client=NetClient(offline=True))
    assert check.status is CheckStatus.SKIP
    assert "offline" in check.summary
    assert sum(nras.counts.values()) == 0


def test_absent_evidence_skips_with_the_reason() -> None:
    check = check_gpu_attestation(None, client=NetClient(offline=True), now=NOW, reason_absent="vm_config has 0 GPUs")
    assert check.status is CheckStatus.SKIP
    assert "vm_config has 0 GPUs" in check.summary


def test_replay_answers_from_the_recording(nras: NrasServer) -> None:
    recorder: list[Exchange] = []
    first = run(nras, client=NetClient(retries=0, timeout=5, recorder=recorder))
    assert [e.method for e in recorder] == ["POST", "GET"]
    asked = sum(nras.counts.values())
    replayed = run(nras, client=ReplayClient([Exchange.model_validate(e.model_dump()) for e in recorder]))
    assert replayed.status is CheckStatus.PASS and replayed.details["tokens"] == first.details["tokens"]
    assert "the recorded JWKS answer" in replayed.details["key_trust"]
    assert sum(nras.counts.values()) == asked
    other = parse_gpu_evidence(payload(nonce="ef" * 32))
    missing = run(nras, evidence=other, client=ReplayClient(recorder))
    assert missing.status is CheckStatus.SKIP
    assert "not in the recorded evidence" in missing.summary


def test_parse_redpill_bundle_with_json_string_payload() -> None:
    bundle = {"intel_quote": "00", "nvidia_payload": json.dumps(payload(gpus=1)), "request_nonce": NONCE}
    assert is_gpu_evidence(bundle) and is_gpu_evidence(payload()) and not is_gpu_evidence({"quote": "00"})
    evidence = parse_gpu_evidence(json.dumps(bundle).encode(), "redpill.json")
    assert evidence.nonce == NONCE and len(evidence.evidence_list) == 1
    assert evidence.payload() == payload(gpus=1)  # posted as given: no field added or dropped
    numeric = _with(evidence_list=[{**payload()["evidence_list"][0], "arch": 6, "version": "1.0"}])
    assert parse_gpu_evidence(numeric).payload() == numeric  # nvattest's numeric arch and extra fields travel along


def _with(**changes: object) -> dict:
    doc = payload(gpus=1)
    doc.update(changes)
    return doc


@pytest.mark.parametrize(("value", "field", "words"), [
    (_with(nonce="xyz"), "nonce", "String should match pattern"),
    (_with(evidence_list=[]), "evidence_list", "at least 1 item"),
    (_with(evidence_list=[{"certificate": "!!", "evidence": "AA=="}]), "evidence_list.0.certificate", "not base64"),
    (_with(evidence_list=[{"certificate": "AA=="}]), "evidence_list.0.evidence", "Field required"),
    (_with(evidence_list=[payload()["evidence_list"][0]] * 17), "evidence_list", "at most 16 items"),
    ({"evidence_list": []}, "nonce", "Field required"),
    ({"nvidia_payload": "{not json"}, "nvidia_payload", "invalid JSON"),
    ({"nvidia_payload": 7}, "nvidia_payload", "expected a JSON object, got number"),
    ("[1, 2]", None, "expected a JSON object, got array"),
    (b"\xff\xfe", None, "not UTF-8 text"),
])
def test_malformed_evidence_is_one_clear_error(value: object, field: str | None, words: str) -> None:
    with pytest.raises(InputError) as info:
        parse_gpu_evidence(value, "gpu.json")
    assert info.value.field == field and words in info.value.message
    assert str(info.value).startswith("gpu.json") and "\n" not in str(info.value)
