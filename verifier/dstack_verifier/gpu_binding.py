"""`gpu.td_binding`: the GPU evidence belongs to the TD whose quote was verified.

NRAS says the GPUs of some evidence are genuine; nothing in that evidence says which machine they serve. A model
served from a dstack app publishes an attestation report that ties them (Redpill's, NEAR AI's private-ml-sdk):
``{intel_quote, request_nonce, signing_address, signing_algo, [tls_cert_fingerprint], nvidia_payload}``, where the
GPU evidence was taken with ``request_nonce`` and the TD's quote carries

    report_data[32:64] = request_nonce
    report_data[0:32]  = signing_address, zero-padded        (or SHA-256(signing_address ‖ tls_cert_fingerprint))

So the GPU evidence is this app's when its nonce is the request nonce, that quote passes DCAP and binds the nonce,
and it is a quote of the same TD as the app quote verified in full (MRTD, RTMR0-2 and MRCONFIGID equal: the same
image, boot and compose). The Trust Center checked none of it (trust-center.md §7.1-11). GPU evidence given alone
cannot be tied: a warning that says what to give.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict

from .errors import InputError
from .eventlog import MAX_QUOTE_BYTES, hex_field
from .jsontext import json_kind
from .model import Anchor, Check, CheckStatus, Entity
from .quote.structure import Quote

CHECK_ID = "gpu.td_binding"
SAME_TD = ("mrtd", "rtmr0", "rtmr1", "rtmr2", "mrconfig")  # quote fields, the Trust Center's names
FORMULA = ("report_data[32:64] = request_nonce; report_data[0:32] = signing_address zero-padded to 32 bytes, or "
           "SHA-256(signing_address ‖ tls_cert_fingerprint) when the report gives a fingerprint")


class AttestationBundle(BaseModel):
    """The parts of a model's attestation report that tie its GPU evidence to a TD."""

    model_config = ConfigDict(frozen=True)

    intel_quote: bytes
    request_nonce: bytes
    signing_address: bytes
    signing_algo: str
    tls_cert_fingerprint: bytes | None = None

    def expected_prefix(self) -> bytes:
        if self.tls_cert_fingerprint is not None:
            return hashlib.sha256(self.signing_address + self.tls_cert_fingerprint).digest()
        return self.signing_address.ljust(32, b"\x00")


def _hex(doc: dict[str, Any], key: str, source: str, sizes: tuple[int, ...] | None, limit: int = 32) -> bytes:
    """A hex field of the report (0x optional), at most `limit` bytes and, when `sizes` is given, of one of them."""
    value = doc.get(key)
    if not isinstance(value, str):
        raise InputError(f"expected a hex string, got {json_kind(value)}", source=source, field=key)
    data = hex_field(value, limit, source, key)
    if sizes is not None and len(data) not in sizes:
        raise InputError(f"{len(data)} bytes, expected {' or '.join(map(str, sizes))}", source=source, field=key)
    return data


def parse_bundle(doc: Any, source: str) -> AttestationBundle | None:
    """The tying parts of a model's attestation report; None for GPU evidence given without one (no `intel_quote`).
    A report that has an `intel_quote` must have the rest, well formed: InputError naming the field otherwise."""
    if not isinstance(doc, dict) or "intel_quote" not in doc:
        return None
    algo = doc.get("signing_algo", "ecdsa")
    if not isinstance(algo, str) or algo.lower() not in ("ecdsa", "ed25519"):
        raise InputError(f"signing algorithm {str(algo)[:20]!r} (expected ecdsa or ed25519)", source=source,
                         field="signing_algo")
    fingerprint = (_hex(doc, "tls_cert_fingerprint", source, (32,)) if doc.get("tls_cert_fingerprint") not in
                   (None, "") else None)
    return AttestationBundle(
        intel_quote=_hex(doc, "intel_quote", source, None, MAX_QUOTE_BYTES),
        request_nonce=_hex(doc, "request_nonce", source, (32,)),
        # ecdsa: an Ethereum address (20 bytes); ed25519: the public key (32 bytes)
        signing_address=_hex(doc, "signing_address", source, (20,) if algo.lower() == "ecdsa" else (32,)),
        signing_algo=algo.lower(),
        tls_cert_fingerprint=fingerprint,
    )


def _check(status: CheckStatus, summary: str, details: dict[str, Any], entity: Entity,
           anchor: str = Anchor.NONE) -> Check:
    return Check(id=CHECK_ID, entity=entity, phase="hardware", status=status, anchor=anchor, summary=summary,
                 details=details)


def check_gpu_binding(gpu_nonce: str, bundle: AttestationBundle | None, app_quote: Quote,
                      bundle_quote: Quote | None, bundle_dcap: list[Check], entity: Entity = "app") -> Check:
    """`bundle_quote` and `bundle_dcap` are the report's TDX quote as parsed and its hardware.* checks (the same
    steps, collateral and policy as the app quote's); `app_quote` is the quote verified in full."""
    details: dict[str, Any] = {"gpu_nonce": gpu_nonce.lower(), "formula": FORMULA}
    if bundle is None:
        return _check(CheckStatus.WARN, "the GPU evidence is not tied to this TD: give the model's whole attestation "
                      "report (intel_quote, request_nonce, signing_address and the nvidia_payload), not the GPU "
                      "evidence alone", details, entity)
    nonce = bundle.request_nonce.hex()
    details.update(request_nonce=nonce, signing_algo=bundle.signing_algo,
                   signing_address=bundle.signing_address.hex(),
                   tls_cert_fingerprint=bundle.tls_cert_fingerprint.hex() if bundle.tls_cert_fingerprint else None)
    if gpu_nonce.lower() != nonce:
        return _check(CheckStatus.FAIL, f"the GPU evidence was taken with nonce {gpu_nonce.lower()[:16]}…, not the "
                      f"report's request nonce {nonce[:16]}…", details, entity)
    if bundle_quote is None:
        failed = next((c.summary for c in bundle_dcap if c.status is CheckStatus.FAIL), "it does not decode")
        return _check(CheckStatus.FAIL, f"the report's TDX quote is unusable: {failed}", details, entity)
    if not bundle_quote.is_tdx:
        return _check(CheckStatus.FAIL, f"the report's quote is not a TDX quote ({bundle_quote.tee_name})", details,
                      entity)
    if not app_quote.is_tdx:  # no TD to compare with: absent fields would compare equal
        return _check(CheckStatus.ERROR, f"the app quote verified is not a TDX quote ({app_quote.tee_name}): there "
                      "is no TD to tie the GPUs to", details, entity)
    failed = [c for c in bundle_dcap if c.status is CheckStatus.FAIL]
    if failed:
        return _check(CheckStatus.FAIL, f"the report's TDX quote fails {failed[0].id}: {failed[0].summary}", details,
                      entity)
    missing = [c for c in bundle_dcap if c.status in (CheckStatus.ERROR, CheckStatus.SKIP)
               and c.id != "hardware.reference_engine"]
    anchor = next((c.anchor for c in bundle_dcap if c.id == "hardware.quote_signature"), Anchor.NONE)
    report_data: bytes = bundle_quote.body["reportdata"]
    details.update(report_data=report_data.hex(), expected_prefix=bundle.expected_prefix().hex())
    if report_data[32:] != bundle.request_nonce:
        return _check(CheckStatus.FAIL, f"the report's TDX quote does not bind the request nonce: report_data[32:64] "
                      f"is {report_data[32:].hex()[:16]}…", details, entity, anchor)
    if report_data[:32] != bundle.expected_prefix():
        return _check(CheckStatus.FAIL, "the report's TDX quote does not bind its signing address: report_data[0:32] "
                      f"is {report_data[:32].hex()[:16]}…, expected {bundle.expected_prefix().hex()[:16]}…", details,
                      entity, anchor)
    differ = [name for name in SAME_TD if bundle_quote.body.fields.get(name) != app_quote.body.fields.get(name)]
    details["same_td"] = {name: name not in differ for name in SAME_TD}
    if differ:
        return _check(CheckStatus.FAIL, f"the report's TDX quote is of another TD than the app quote verified: its "
                      f"{', '.join(differ)} differ", details, entity, anchor)
    if missing:
        return _check(CheckStatus.ERROR, f"the report's TDX quote could not be verified ({missing[0].id}: "
                      f"{missing[0].summary})", details, entity)
    return _check(CheckStatus.PASS, "GPU evidence tied to this TD: taken with the request nonce that a quote of the "
                  "same TD (MRTD, RTMR0-2, MRCONFIGID) binds, with its signing address; that quote passes DCAP",
                  details, entity, anchor)
