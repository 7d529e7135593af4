"""`gpu.td_binding`: GPU evidence tied to the TD whose quote was verified, through the model's attestation report.

Synthetic quotes from one test PKI: the app's (verified in full) and the report's `intel_quote` of the same TD,
whose report_data binds the signing address and the request nonce the GPU evidence was taken with.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

import pytest
from dstack_verifier.errors import InputError
from dstack_verifier.evidence import detect
from dstack_verifier.gpu_binding import CHECK_ID, parse_bundle
from dstack_verifier.model import Check, CheckStatus, Report
from dstack_verifier.quote.verify import TrustAnchor
from dstack_verifier.synth import make_evidence
from dstack_verifier.verification import VerifyOptions, verify_evidence

NOW = 1_750_000_000
SEED = "gpu-binding"
TD = {"mr_td": b"\x11" * 48, "rt_mr0": b"\x22" * 48, "rt_mr1": b"\x33" * 48, "rt_mr2": b"\x44" * 48,
      "mr_config_id": b"\x01" + b"\x55" * 32 + bytes(15)}
NONCE = bytes(range(32))
ADDRESS = bytes.fromhex("ab" * 20)


def quote(**report: Any) -> tuple[bytes, Any]:
    first = make_evidence(SEED, now=NOW, report={**TD, "report_data": b"\x99" * 64})
    if not report:
        return first.quote, first
    return make_evidence(SEED, now=NOW, pki=first.pki, report={**TD, **report}).quote, first


def bundle(intel_quote: bytes, **changes: Any) -> dict[str, Any]:
    payload = {"nonce": NONCE.hex(), "arch": "HOPPER",
               "evidence_list": [{"certificate": "Y2VydA==", "evidence": "AQID", "arch": "HOPPER"}]}
    doc = {"signing_address": "0x" + ADDRESS.hex(), "signing_algo": "ecdsa", "intel_quote": intel_quote.hex(),
           "request_nonce": NONCE.hex(), "nvidia_payload": json.dumps(payload), "event_log": "[]", "info": {}}
    doc.update(changes)
    return doc


def verify(doc: dict[str, Any] | None) -> Report:
    app_quote, first = quote()
    items = [detect(app_quote.hex().encode(), "app.hex"), detect(json.dumps(first.collateral).encode(), "col.json")]
    if doc is not None:
        items.append(detect(json.dumps(doc).encode(), "model-attestation.json"))
    options = VerifyOptions(now=NOW, anchor=TrustAnchor.from_der(first.root_ca_der, "test root"), offline=True)
    return verify_evidence(items, replace(options, reference=False))


def binding(doc: dict[str, Any] | None) -> Check:
    return next(c for c in verify(doc).checks if c.id == CHECK_ID)


def bound_quote(prefix: bytes = ADDRESS.ljust(32, b"\x00"), nonce: bytes = NONCE, **report: Any) -> bytes:
    return quote(report_data=prefix + nonce, **report)[0]


def test_a_report_of_the_same_td_ties_the_gpus() -> None:
    report = verify(bundle(bound_quote()))
    check = next(c for c in report.checks if c.id == CHECK_ID)
    assert check.status is CheckStatus.PASS, check.summary
    # The graph shows the GPUs and their report (§2.2 app-gpu, app-gpu-quote), each with its checks.
    objects = {o.id: o for o in report.data_objects}
    assert objects["app-gpu-quote"].fields["request_nonce"] == NONCE.hex()
    assert objects["app-gpu-quote"].check_ids == ["gpu.attestation", CHECK_ID]
    assert (objects["app-gpu"].fields["arch"], objects["app-gpu"].fields["gpus"]) == ("HOPPER", 1)
    edges = {(r.source, r.target) for r in report.relationships}
    assert ("app-gpu-quote", "app-gpu") in edges and ("app-main", "app-gpu-quote") in edges
    assert check.anchor == "caller-supplied" and check.details["same_td"]["mrtd"] is True
    assert check.details["request_nonce"] == NONCE.hex() and check.details["signing_address"] == ADDRESS.hex()


def test_with_a_tls_fingerprint_the_prefix_is_its_hash_with_the_address() -> None:
    fingerprint = hashlib.sha256(b"tls spki").digest()
    prefix = hashlib.sha256(ADDRESS + fingerprint).digest()
    check = binding(bundle(bound_quote(prefix), tls_cert_fingerprint=fingerprint.hex()))
    assert check.status is CheckStatus.PASS, check.summary
    check = binding(bundle(bound_quote(), tls_cert_fingerprint=fingerprint.hex()))  # the padded address: not it
    assert check.status is CheckStatus.FAIL and "does not bind its signing address" in check.summary


@pytest.mark.parametrize(("doc", "words"), [
    (lambda: bundle(bound_quote(nonce=b"\x07" * 32)), "does not bind the request nonce"),
    (lambda: bundle(bound_quote(prefix=b"\x00" * 32)), "does not bind its signing address"),
    (lambda: bundle(bound_quote(mr_td=b"\x66" * 48)), "another TD than the app quote verified: its mrtd differ"),
    (lambda: bundle(bound_quote(mr_config_id=bytes(48))), "its mrconfig differ"),
    (lambda: bundle(bound_quote(), request_nonce="08" * 32), "not the report's request nonce"),
    (lambda: bundle(bound_quote()[:600]), "the report's TDX quote is unusable"),
], ids=["nonce", "address", "mrtd", "mrconfig", "gpu-nonce", "truncated"])
def test_what_unties_them_fails(doc: Any, words: str) -> None:
    check = binding(doc())
    assert check.status is CheckStatus.FAIL and words in check.summary, check.summary


def test_a_flipped_signature_byte_fails_dcap() -> None:
    raw = bytearray(bound_quote())
    raw[640] ^= 1  # in the body: its signature no longer verifies
    check = binding(bundle(bytes(raw)))
    assert check.status is CheckStatus.FAIL and "hardware.quote_signature" in check.summary


def test_gpu_evidence_alone_warns_and_none_has_no_check() -> None:
    payload = json.loads(bundle(b"")["nvidia_payload"])
    check = binding(payload)
    assert check.status is CheckStatus.WARN and "give the model's whole attestation report" in check.summary
    assert not any(c.id == CHECK_ID for c in verify(None).checks)


@pytest.mark.parametrize(("change", "field"), [
    ({"request_nonce": "00" * 31}, "request_nonce"),
    ({"signing_address": "0x" + "ab" * 32}, "signing_address"),
    ({"signing_algo": "rsa"}, "signing_algo"),
    ({"intel_quote": "zz"}, "intel_quote"),
    ({"tls_cert_fingerprint": "12"}, "tls_cert_fingerprint"),
    ({"request_nonce": 5}, "request_nonce"),
])
def test_a_malformed_report_is_bad_input_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as info:
        parse_bundle({**bundle(b"\x01"), **change}, "model.json")
    assert info.value.field == field and info.value.source == "model.json"
    assert parse_bundle({"nvidia_payload": {}}, "x") is None  # GPU evidence without a report: nothing to tie
    ed = parse_bundle(bundle(b"\x01", signing_algo="ed25519", signing_address="cd" * 32), "x")
    assert ed is not None and ed.expected_prefix() == bytes.fromhex("cd" * 32)


def test_quotes_of_another_tee_are_not_compared() -> None:
    """An SGX quote has none of the TD fields: as the report's quote it fails, as the app's there is no TD."""
    from dstack_verifier.gpu_binding import check_gpu_binding
    from dstack_verifier.quote.structure import parse_quote

    sgx = parse_quote(make_evidence(SEED, now=NOW, tee="sgx").quote)
    td = parse_quote(bound_quote())
    found = parse_bundle(bundle(td.raw), "model.json")
    check = check_gpu_binding(NONCE.hex(), found, td, sgx, [])
    assert check.status is CheckStatus.FAIL and "not a TDX quote (SGX)" in check.summary
    check = check_gpu_binding(NONCE.hex(), found, sgx, td, [])
    assert check.status is CheckStatus.ERROR and "no TD to tie the GPUs to" in check.summary
