"""Report-data key bindings: the app's RA-TLS certificate chain, the KMS's generated keys, the gateway's ACME account.

Real data from the Trust Center fixtures where it exists (the app's RA-TLS chain and quote, the KMS CA key);
synthetic keys and certificates, built here with `cryptography`, for everything the fixtures lack (the KMS k256
key, an ACME account URI) and to change one field the check rests on at a time.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import pytest
from Crypto.Hash import keccak
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dstack_verifier.errors import InputError
from dstack_verifier.eventlog import RUNTIME_EVENT_TYPE, Event
from dstack_verifier.model import Check, CheckStatus
from dstack_verifier.quote.structure import Quote, parse_quote
from dstack_verifier.ratls import (
    OID_APP_ID,
    OID_ATTESTATION,
    OID_EVENT_LOG,
    OID_QUOTE,
    OID_USAGE,
    acme_report_data,
    check_acme_binding,
    check_kms_binding,
    check_ratls_binding,
    decode_ratls,
    expected_ratls_report_data,
    kms_report_data,
    load_certificates,
    spki_der,
)

from tests.support.fixtures import fixture_path

NOW = datetime(2026, 6, 1, tzinfo=UTC)
AFTER_EXPIRY = datetime(2036, 1, 1, tzinfo=UTC)


# ------------------------------------------------------------------------------------------------ fixtures


@cache
def _dataset_cached(entity: str) -> dict[str, Any]:
    return json.loads(fixture_path("trust-center", f"dataset1-{entity}.json").read_text())


def dataset(entity: str) -> dict[str, Any]:
    fixture_path("trust-center", f"dataset1-{entity}.json")  # skip (or fail on CI) before the cache is consulted
    return _dataset_cached(entity)


def unhex(text: str) -> bytes:
    return bytes.fromhex(text.removeprefix("0x"))


def real_quote(entity: str) -> Quote:
    return parse_quote(unhex(dataset(entity)["quote_hex"]))


def real_app_chain() -> list[x509.Certificate]:
    return load_certificates(dataset("app")["main_fields"]["app_cert"].encode(), "dataset1-app app_cert")


def kms_ca_pubkey() -> bytes:
    return unhex(dataset("kms")["main_fields"]["cert_pubkey"])


def patch_quote(raw: bytes, field: str, value: bytes) -> bytes:
    """`raw` with the body field `field` replaced (same length), found through the parser's byte-range map."""
    span = next(s for s in parse_quote(raw).spans if s.name == f"body.{field}")
    assert span.end - span.start == len(value)
    return raw[: span.start] + value + raw[span.end :]


def flip_last_byte(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 0x01])


def problems(check: Check) -> list[str]:
    return check.details.get("problems", [])


# ---------------------------------------------------------------------------------------- certificate helpers


def octet_string(value: bytes) -> bytes:
    """DER OCTET STRING: what dstack's ra-tls crate wraps every extension value in."""
    n = len(value)
    if n < 0x80:
        header = bytes([0x04, n])
    else:
        size = n.to_bytes((n.bit_length() + 7) // 8, "big")
        header = bytes([0x04, 0x80 | len(size)]) + size
    return header + value


def ext(oid: str, raw_value: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), raw_value)


def name(cn: str, org: str | None = "Dstack") -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def spki_of(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def build_cert(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    signer: ec.EllipticCurvePrivateKey,
    extensions: list[tuple[x509.ExtensionType, bool]],
    *,
    serial: int | None = None,
    not_before: datetime = datetime(2025, 1, 1, tzinfo=UTC),
    not_after: datetime = datetime(2035, 1, 1, tzinfo=UTC),
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for value, critical in extensions:
        builder = builder.add_extension(value, critical=critical)
    return builder.sign(signer, hashes.SHA256())


def resign(cert: x509.Certificate, signer: ec.EllipticCurvePrivateKey, **changes: Any) -> x509.Certificate:
    """`cert` with the same names, key, serial, dates and extensions (unless changed), signed by `signer`."""
    return build_cert(
        changes.get("subject", cert.subject),
        changes.get("issuer", cert.issuer),
        changes.get("public_key", cert.public_key()),
        signer,
        changes.get("extensions", [(e.value, e.critical) for e in cert.extensions]),
        serial=cert.serial_number,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def ca_extensions(path_length: int | None, app_id: bytes | None = None, usage: str | None = None) -> list:
    exts: list = [
        (x509.BasicConstraints(ca=True, path_length=path_length), True),
        (x509.KeyUsage(True, False, False, False, False, True, True, False, False), True),
    ]
    if app_id is not None:
        exts.append((ext(OID_APP_ID, octet_string(app_id)), False))
    if usage is not None:
        exts.append((ext(OID_USAGE, octet_string(usage.encode())), False))
    return exts


APP_ID = bytes.fromhex("d722c43a6f4f42d53dc7bc97ba04a1cb17ce3a34")
EVENT_LOG = json.dumps([{"imr": 3, "event_type": 134217729, "digest": "00" * 48, "event": "x", "event_payload": ""}])


def leaf_extensions(
    quote: bytes | None, *, event_log: bytes | None = None, app_id: bytes = APP_ID, raw: dict[str, bytes] | None = None
) -> list:
    """The leaf's dstack extensions, each wrapped in an OCTET STRING unless given verbatim in `raw`."""
    values = {OID_APP_ID: octet_string(app_id), OID_USAGE: octet_string(b"app:custom")}
    if quote is not None:
        values[OID_QUOTE] = octet_string(quote)
        values[OID_EVENT_LOG] = octet_string(event_log if event_log is not None else EVENT_LOG.encode())
    values.update(raw or {})
    exts: list = [(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)]
    exts += [(ext(oid, value), False) for oid, value in sorted(values.items())]
    return exts


@dataclass
class Pki:
    """A dstack-shaped chain with keys we hold: leaf → "Dstack App CA" → self-signed "Dstack KMS CA"."""

    kms_key: ec.EllipticCurvePrivateKey
    kms_ca: x509.Certificate
    app_key: ec.EllipticCurvePrivateKey
    app_ca: x509.Certificate

    @classmethod
    def create(cls, app_ca_app_id: bytes = APP_ID) -> Pki:
        kms_key, app_key = new_key(), new_key()
        kms_ca = build_cert(
            name("Dstack KMS CA"), name("Dstack KMS CA"), kms_key.public_key(), kms_key, ca_extensions(1)
        )
        app_ca = build_cert(
            name("Dstack App CA"),
            name("Dstack KMS CA"),
            app_key.public_key(),
            kms_key,
            ca_extensions(0, app_ca_app_id, "app:ca"),
        )
        return cls(kms_key, kms_ca, app_key, app_ca)

    def leaf(self, key: ec.EllipticCurvePrivateKey, extensions: list) -> x509.Certificate:
        return build_cert(name("demo-cert", None), name("Dstack App CA"), key.public_key(), self.app_key, extensions)

    def chain(self, leaf: x509.Certificate) -> list[x509.Certificate]:
        return [leaf, self.app_ca, self.kms_ca]

    @property
    def kms_spki(self) -> bytes:
        return spki_der(self.kms_ca)


@dataclass
class Synthetic:
    pki: Pki
    leaf_key: ec.EllipticCurvePrivateKey
    quote_raw: bytes  # the app's real quote with report_data = SHA-512("ratls-cert:" ‖ leaf SPKI)

    @property
    def quote(self) -> Quote:
        return parse_quote(self.quote_raw)


def synthetic() -> Synthetic:
    pki = Pki.create()
    leaf_key = new_key()
    report_data = hashlib.sha512(b"ratls-cert:" + spki_of(leaf_key)).digest()
    quote_raw = patch_quote(real_quote("app").raw, "reportdata", report_data)
    return Synthetic(pki, leaf_key, quote_raw)


def run(chain: list[x509.Certificate], quote: Quote, kms: bytes | None, now: datetime = NOW) -> Check:
    check = check_ratls_binding(chain, quote, kms, "app", now)
    assert check.id == "binding.report_data"
    assert check.phase == "hardware"
    check.model_dump_json()  # details stay JSON-serialisable whatever happened
    return check


# ------------------------------------------------------------------------------------------ real app data


def test_real_app_leaf_extensions_decode() -> None:
    app = dataset("app")
    chain = real_app_chain()
    assert [c.subject.rfc4514_string() for c in chain] == [
        "CN=demo-cert",
        "CN=Dstack App CA,O=Dstack",
        "CN=Dstack KMS CA,O=Dstack",
    ]
    info = decode_ratls(chain[0])
    assert info is not None
    assert info.quote == unhex(app["quote_hex"])  # the RA-TLS quote is the instance quote itself, byte for byte
    assert info.app_id == unhex(app["main_fields"]["app_id"])
    assert info.usage == "app:custom"
    assert not info.event_log_compressed
    events = info.event_log_entries()
    assert [e["digest"] for e in events] == [e["digest"] for e in app["eventlog"]]
    assert info.other == {}
    # Every value is a DER OCTET STRING around the raw bytes: the quote's starts 04 82 13 8e (5006 bytes).
    raw = chain[0].extensions.get_extension_for_oid(x509.ObjectIdentifier(OID_QUOTE)).value.value
    assert raw[:4] == bytes.fromhex("0482138e") and len(raw) == 4 + 5006

    ca_info = decode_ratls(chain[1])
    assert ca_info is not None and ca_info.quote is None and ca_info.event_log is None
    assert ca_info.usage == "app:ca" and ca_info.app_id == info.app_id
    assert decode_ratls(chain[2]) is None


def test_real_app_binding_holds_and_chain_verifies_to_kms_ca() -> None:
    chain = real_app_chain()
    quote = real_quote("app")
    assert spki_der(chain[-1]) == kms_ca_pubkey()
    assert expected_ratls_report_data(chain[0]) == quote.body["reportdata"]

    check = run(chain, quote, kms_ca_pubkey())
    assert check.status is CheckStatus.PASS, check.summary
    d = check.details
    assert d["quote"]["sha256"] == hashlib.sha256(quote.raw).hexdigest()
    assert d["bound_key"]["spki_sha256"] == hashlib.sha256(spki_der(chain[0])).hexdigest()
    assert d["bound_key"]["subject"] == "CN=demo-cert"
    assert d["report_data"]["match"] and d["report_data"]["expected"] == quote.body["reportdata"].hex()
    assert d["embedded_quote"]["comparison"] == "byte-equal"
    assert all(link["signature_valid"] and link["issuer_name_matches"] for link in d["chain"]["links"])
    assert d["chain"]["anchor"]["kms_ca_pubkey_sha256"] == hashlib.sha256(kms_ca_pubkey()).hexdigest()
    assert d["validity"]["all_valid_at_now"]
    # The real CA certificates lack keyCertSign: reported as a note, not a failure.
    assert any("keyCertSign" in note for note in d["notes"])
    assert "demo-cert" in check.summary and d["quote"]["sha256"][:16] in check.summary


def test_real_app_expired_chain_is_a_warning_not_a_binding_failure() -> None:
    check = run(real_app_chain(), real_quote("app"), kms_ca_pubkey(), AFTER_EXPIRY)
    assert check.status is CheckStatus.WARN
    assert "certificate validity" in check.summary and "demo-cert" in check.summary
    assert check.details["report_data"]["match"]
    assert not check.details["validity"]["all_valid_at_now"]
    assert len(check.details["validity"]["outside_validity"]) == 3
    assert "Dates do not affect the binding" in check.details["validity"]["note"]


def test_real_app_without_kms_key_warns_that_the_chain_is_unanchored() -> None:
    check = run(real_app_chain(), real_quote("app"), None)
    assert check.status is CheckStatus.WARN
    assert "not anchored" in check.summary


def test_real_quote_with_changed_report_data_fails() -> None:
    quote = real_quote("app")
    changed = parse_quote(patch_quote(quote.raw, "reportdata", flip_last_byte(quote.body["reportdata"])))
    check = run(real_app_chain(), changed, kms_ca_pubkey())
    assert check.status is CheckStatus.FAIL
    assert "report_data" in check.summary and "leaf public key" in check.summary
    assert not check.details["report_data"]["match"]
    # The certificate still carries the original quote, which is therefore not the verified one.
    assert check.details["embedded_quote"]["differing_fields"] == ["reportdata"]


def test_real_kms_ca_pubkey_mismatch_fails() -> None:
    check = run(real_app_chain(), real_quote("app"), spki_of(new_key()))
    assert check.status is CheckStatus.FAIL
    assert "KMS CA public key does not match" in check.summary
    assert len(problems(check)) == 1


def test_real_app_ca_signed_by_another_key_fails() -> None:
    leaf, app_ca, kms_ca = real_app_chain()
    forged = resign(app_ca, new_key())  # same name, key, extensions; signature by a key that is not the KMS CA's
    check = run([leaf, forged, kms_ca], real_quote("app"), kms_ca_pubkey())
    assert check.status is CheckStatus.FAIL
    assert "signature of 'Dstack App CA' does not verify with the key of 'Dstack KMS CA'" in check.summary
    assert len(problems(check)) == 1


def test_real_leaf_extensions_on_another_key_fail() -> None:
    leaf, app_ca, kms_ca = real_app_chain()
    other = new_key()
    forged = resign(leaf, new_key(), public_key=other.public_key())  # the real extensions (real quote), new key
    assert decode_ratls(forged).quote == decode_ratls(leaf).quote
    check = run([forged, app_ca, kms_ca], real_quote("app"), kms_ca_pubkey())
    assert check.status is CheckStatus.FAIL
    assert "report_data" in check.summary and "leaf public key" in check.summary
    assert "signature of 'demo-cert'" in check.summary  # we do not hold the App CA's key either
    assert check.details["bound_key"]["spki_sha256"] == hashlib.sha256(spki_of(other)).hexdigest()


def test_gateway_app_cert_is_not_ratls() -> None:
    gateway = dataset("gateway")
    chain = load_certificates(gateway["main_fields"]["app_cert"], "dataset1-gateway app_cert")
    assert all(decode_ratls(c) is None for c in chain)  # Let's Encrypt chain: no dstack extensions
    check = check_ratls_binding(chain, real_quote("gateway"), None, "gateway", NOW)
    assert check.status is CheckStatus.FAIL and check.entity == "gateway"
    assert "report_data" in check.summary
    assert any("no dstack RA-TLS extensions" in w for w in check.details["warnings"])
    # The gateway certificates expired in late 2025: reported, but the failure is the binding's.
    assert not check.details["validity"]["all_valid_at_now"]


# ----------------------------------------------------------------------- synthetic chain, one change at a time


def test_synthetic_chain_passes() -> None:
    s = synthetic()
    leaf = s.pki.leaf(s.leaf_key, leaf_extensions(s.quote_raw))
    check = run(s.pki.chain(leaf), s.quote, s.pki.kms_spki)
    assert check.status is CheckStatus.PASS, check.summary
    assert check.details["notes"] == []  # our CAs assert keyCertSign


def unified(s: Synthetic, form: str, report_data: bytes | None = None) -> bytes:
    """The quote in dstack's unified attestation extension (…62397.1.8), SCALE V0 or MessagePack V1."""
    from tests.support.msgpack_v1 import encode_v1_attestation
    from tests.support.scale import encode_attestation

    runtime = [Event(imr=3, event_type=RUNTIME_EVENT_TYPE, name="app-id", payload=APP_ID)]
    data = report_data if report_data is not None else s.quote.body["reportdata"]
    encode = encode_attestation if form == "scale-v0" else encode_v1_attestation
    return encode(s.quote_raw, runtime, runtime, data, '{"os_image_hash": ""}')


@pytest.mark.parametrize("form", ["scale-v0", "msgpack-v1"])
def test_the_unified_attestation_extension_carries_the_quote(form: str) -> None:
    s = synthetic()
    raw = {OID_ATTESTATION: octet_string(unified(s, form))}
    leaf = s.pki.leaf(s.leaf_key, leaf_extensions(None, raw=raw))
    check = run(s.pki.chain(leaf), s.quote, s.pki.kms_spki)
    assert check.status is CheckStatus.PASS, check.summary
    ratls = check.details["ratls"]
    assert ratls["attestation_format"] == form and ratls["quote_sha256"] == hashlib.sha256(s.quote_raw).hexdigest()
    assert ratls["event_log_entries"] == 1  # the runtime event (the stripped log's copy of it is not repeated)
    # Its report_data must be its quote's; a quote extension beside it must be the same quote.
    bad = s.pki.leaf(s.leaf_key, leaf_extensions(None, raw={
        OID_ATTESTATION: octet_string(unified(s, form, report_data=bytes(64)))}))
    check = run(s.pki.chain(bad), s.quote, s.pki.kms_spki)
    assert check.status is CheckStatus.FAIL and "differs from the quote's" in " ".join(problems(check))
    other = patch_quote(s.quote_raw, "rtmr3", b"\x01" * 48)
    both = s.pki.leaf(s.leaf_key, leaf_extensions(other, raw=raw))
    check = run(s.pki.chain(both), s.quote, s.pki.kms_spki)
    assert check.status is CheckStatus.FAIL and "the quote extension and the attestation's quote differ" in " ".join(
        problems(check))
    with pytest.raises(InputError) as info:
        decode_ratls(s.pki.leaf(s.leaf_key, leaf_extensions(None, raw={OID_ATTESTATION: octet_string(b"\x07")})))
    assert info.value.field is not None and info.value.field.startswith(f"extension {OID_ATTESTATION} (attestation)")


def test_synthetic_different_leaf_key_fails_on_report_data_only() -> None:
    s = synthetic()
    leaf = s.pki.leaf(new_key(), leaf_extensions(s.quote_raw))  # same extensions, another key
    check = run(s.pki.chain(leaf), s.quote, s.pki.kms_spki)
    assert check.status is CheckStatus.FAIL
    assert len(problems(check)) == 1
    assert "report_data" in check.summary and "leaf public key" in check.summary


def test_synthetic_embedded_quote_differs_from_verified_quote() -> None:
    s = synthetic()
    other_rtmr3 = flip_last_byte(s.quote.body["rtmr3"])
    embedded = patch_quote(s.quote_raw, "rtmr3", other_rtmr3)
    leaf = s.pki.leaf(s.leaf_key, leaf_extensions(embedded))
    check = run(s.pki.chain(leaf), s.quote, s.pki.kms_spki)
    assert check.status is CheckStatus.FAIL
    assert len(problems(check)) == 1
    assert "embedded quote differs from the verified quote in rtmr3" in check.summary
    assert check.details["embedded_quote"]["comparison"] == "different"


def test_synthetic_embedded_quote_with_same_body_passes_and_says_so() -> None:
    s = synthetic()
    embedded = flip_last_byte(s.quote_raw)  # auth data differs, TD body identical
    leaf = s.pki.leaf(s.leaf_key, leaf_extensions(embedded))
    check = run(s.pki.chain(leaf), s.quote, s.pki.kms_spki)
    assert check.status is CheckStatus.PASS, check.summary
    assert check.details["embedded_quote"]["comparison"] == "same-body"
    assert any("not byte-equal" in note for note in check.details["notes"])


def test_synthetic_leaf_without_quote_extension_warns() -> None:
    s = synthetic()
    leaf = s.pki.leaf(s.leaf_key, leaf_extensions(None))
    check = run(s.pki.chain(leaf), s.quote, s.pki.kms_spki)
    assert check.status is CheckStatus.WARN
    assert "no quote extension" in check.summary


def test_synthetic_app_ca_signed_by_another_key_fails() -> None:
    s = synthetic()
    leaf = s.pki.leaf(s.leaf_key, leaf_extensions(s.quote_raw))
    forged = resign(s.pki.app_ca, new_key())
    check = run([leaf, forged, s.pki.kms_ca], s.quote, s.pki.kms_spki)
    assert check.status is CheckStatus.FAIL
    assert problems(check) == [p for p in problems(check) if "signature of 'Dstack App CA'" in p]


def test_synthetic_leaf_signed_by_another_key_fails() -> None:
    s = synthetic()
    leaf = resign(s.pki.leaf(s.leaf_key, leaf_extensions(s.quote_raw)), new_key())
    check = run(s.pki.chain(leaf), s.quote, s.pki.kms_spki)
    assert check.status is CheckStatus.FAIL
    assert "signature of 'demo-cert' does not verify with the key of 'Dstack App CA'" in check.summary


def test_synthetic_kms_ca_mismatch_fails() -> None:
    s = synthetic()
    leaf = s.pki.leaf(s.leaf_key, leaf_extensions(s.quote_raw))
    check = run(s.pki.chain(leaf), s.quote, spki_of(new_key()))
    assert check.status is CheckStatus.FAIL
    assert len(problems(check)) == 1 and "KMS CA public key does not match" in check.summary
    garbage = run(s.pki.chain(leaf), s.quote, b"not a key")
    assert garbage.status is CheckStatus.FAIL and "not a parseable SubjectPublicKeyInfo" in garbage.summary


def test_synthetic_chain_without_kms_ca_certificate_anchors_on_the_key() -> None:
    s = synthetic()
    leaf = s.pki.leaf(s.leaf_key, leaf_extensions(s.quote_raw))
    check = run([leaf, s.pki.app_ca], s.quote, s.pki.kms_spki)
    assert check.status is CheckStatus.PASS, check.summary
    assert "signed by the KMS CA public key" in check.details["chain"]["anchor"]["result"]


def test_synthetic_app_id_differs_from_app_ca() -> None:
    s = synthetic()
    leaf = s.pki.leaf(s.leaf_key, leaf_extensions(s.quote_raw, app_id=bytes(20)))
    check = run(s.pki.chain(leaf), s.quote, s.pki.kms_spki)
    assert check.status is CheckStatus.FAIL
    assert len(problems(check)) == 1 and "app id" in check.summary


def test_synthetic_issuer_that_is_not_a_ca_fails() -> None:
    s = synthetic()
    not_ca = resign(s.pki.app_ca, s.pki.kms_key, extensions=[(x509.BasicConstraints(ca=False, path_length=None), True)])
    leaf = s.pki.leaf(s.leaf_key, leaf_extensions(s.quote_raw))
    check = run([leaf, not_ca, s.pki.kms_ca], s.quote, s.pki.kms_spki)
    assert check.status is CheckStatus.FAIL
    assert "'Dstack App CA' is not a CA" in check.summary


def test_synthetic_chain_in_wrong_order_fails() -> None:
    s = synthetic()
    leaf = s.pki.leaf(s.leaf_key, leaf_extensions(s.quote_raw))
    check = run([leaf, s.pki.kms_ca, s.pki.app_ca], s.quote, s.pki.kms_spki)
    assert check.status is CheckStatus.FAIL
    assert "issuer name" in check.summary


def test_synthetic_gzipped_event_log_decodes() -> None:
    s = synthetic()
    packed = b"ELGZv1" + gzip.compress(EVENT_LOG.encode())
    leaf = s.pki.leaf(s.leaf_key, leaf_extensions(s.quote_raw, event_log=packed))
    info = decode_ratls(leaf)
    assert info is not None and info.event_log_compressed and info.event_log == EVENT_LOG
    assert run(s.pki.chain(leaf), s.quote, s.pki.kms_spki).status is CheckStatus.PASS


# ------------------------------------------------------------------------------------------ malformed input


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty input"),
        (b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n", "does not parse"),
        (b"-----BEGIN CERTIFICATE-----\n!!!! not base64 !!!!\n-----END CERTIFICATE-----\n", "does not parse"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "non-certificate blocks: PRIVATE KEY"),
        (bytes.fromhex("3003020101"), "neither a PEM certificate chain nor a DER certificate"),
        (b"\x00\x01garbage", "neither a PEM certificate chain nor a DER certificate"),
        (b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n" * 17, "exceeds the limit"),
    ],
)
def test_load_certificates_rejects_bad_input(data: bytes, message: str) -> None:
    with pytest.raises(InputError) as err:
        load_certificates(data, "upload.pem")
    assert message in str(err.value)
    assert str(err.value).startswith("upload.pem: ")


def test_load_certificates_accepts_pem_and_der() -> None:
    s = synthetic()
    leaf = s.pki.leaf(s.leaf_key, leaf_extensions(s.quote_raw))
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in s.pki.chain(leaf))
    assert load_certificates(pem, "chain.pem") == s.pki.chain(leaf)
    assert load_certificates(pem.decode(), "chain.pem") == s.pki.chain(leaf)
    assert load_certificates(leaf.public_bytes(serialization.Encoding.DER), "leaf.der") == [leaf]


def test_real_leaf_der_loads_although_it_embeds_pem_text() -> None:
    # The leaf's DER holds the quote, whose certification data is the PCK chain as PEM text: "-----BEGIN" occurs
    # inside a DER certificate, so the loader must not take it for a PEM file.
    leaf = real_app_chain()[0]
    der = leaf.public_bytes(serialization.Encoding.DER)
    assert b"-----BEGIN CERTIFICATE-----" in der
    assert load_certificates(der, "leaf.der") == [leaf]


def test_truncated_or_corrupted_certificates_never_raise_anything_but_input_error() -> None:
    der = real_app_chain()[0].public_bytes(serialization.Encoding.DER)
    pem = dataset("app")["main_fields"]["app_cert"].encode()
    samples = [der[:n] for n in range(0, len(der), 997)] + [pem[:n] for n in range(0, len(pem), 1499)]
    samples += [der[:i] + bytes([der[i] ^ 0xFF]) + der[i + 1 :] for i in range(0, len(der), 1301)]
    for sample in samples:
        try:
            chain = load_certificates(sample, "sample")
        except InputError:
            continue
        check = run(chain, real_quote("app"), kms_ca_pubkey())
        assert check.status in (CheckStatus.PASS, CheckStatus.WARN, CheckStatus.FAIL)


def _leaf_with_raw(s: Synthetic, oid: str, raw_value: bytes) -> x509.Certificate:
    return s.pki.leaf(s.leaf_key, leaf_extensions(s.quote_raw, raw={oid: raw_value}))


@pytest.mark.parametrize(
    ("oid", "raw_value", "message"),
    [
        (OID_QUOTE, b"\x04\x00\x02\x00raw quote bytes, not wrapped", "OCTET STRING declares 0 bytes"),
        (OID_QUOTE, b"\x30\x03\x02\x01\x01", "not a DER OCTET STRING (starts with 0x30)"),
        (OID_APP_ID, b"\x04\x20" + bytes(4), "OCTET STRING declares 32 bytes"),
        (OID_USAGE, b"\x04\x85\x01", "bad length field"),
        (OID_USAGE, octet_string(b"\xff\xfe"), "usage is not UTF-8"),
        (OID_EVENT_LOG, octet_string(b"{not json"), "event log is not UTF-8 JSON"),
        (OID_EVENT_LOG, octet_string(b'{"a": 1}'), "expected a list of events"),
        (OID_EVENT_LOG, octet_string(b"ELGZv1" + b"not gzip"), "does not decompress"),
    ],
)
def test_malformed_extension_is_an_input_error_and_a_failing_check(oid: str, raw_value: bytes, message: str) -> None:
    s = synthetic()
    leaf = _leaf_with_raw(s, oid, raw_value)
    with pytest.raises(InputError) as err:
        decode_ratls(leaf)
    assert message in str(err.value) and oid in str(err.value)
    check = run(s.pki.chain(leaf), s.quote, s.pki.kms_spki)
    assert check.status is CheckStatus.FAIL
    assert "leaf RA-TLS extension is malformed" in check.summary and message in check.summary


def test_embedded_quote_that_does_not_parse_fails() -> None:
    s = synthetic()
    leaf = _leaf_with_raw(s, OID_QUOTE, octet_string(b"\x04\x00short"))
    check = run(s.pki.chain(leaf), s.quote, s.pki.kms_spki)
    assert check.status is CheckStatus.FAIL
    assert f"embedded quote (extension {OID_QUOTE}) does not parse" in check.summary


def test_gzip_bomb_is_bounded() -> None:
    s = synthetic()
    bomb = b"ELGZv1" + gzip.compress(b"[" + b" " * (17 << 20) + b"]")
    leaf = _leaf_with_raw(s, OID_EVENT_LOG, octet_string(bomb))
    with pytest.raises(InputError, match="decompresses to more than"):
        decode_ratls(leaf)


def test_empty_chain_fails() -> None:
    s = synthetic()
    check = run([], s.quote, None)
    assert check.status is CheckStatus.FAIL and "no certificate" in check.summary


# ------------------------------------------------------------------------------------------ KMS binding


def _keccak256(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()


def k256_pair() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256K1()).public_key()
    compressed = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    uncompressed = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return compressed, uncompressed


def test_kms_report_data_formula() -> None:
    ca, k256 = bytes.fromhex("3059aa"), bytes.fromhex("02bb")
    expected = _keccak256(b"dstack-kms-genereted-keys-v1:3059aa;02bb;")
    assert kms_report_data(ca, k256) == expected + bytes(32)
    # Legacy Keccak-256 (Ethereum's), not NIST SHA3-256.
    assert expected != hashlib.sha3_256(b"dstack-kms-genereted-keys-v1:3059aa;02bb;").digest()


def kms_quote(report_data: bytes) -> Quote:
    return parse_quote(patch_quote(real_quote("kms").raw, "reportdata", report_data))


def test_kms_binding_pass_and_fail() -> None:
    ca = spki_of(new_key())
    k256, k256_uncompressed = k256_pair()
    quote = kms_quote(kms_report_data(ca, k256))

    ok = check_kms_binding(quote, ca, k256, "kms")
    assert ok.status is CheckStatus.PASS, ok.summary
    assert ok.id == "binding.report_data" and ok.phase == "hardware" and ok.entity == "kms"
    assert ok.details["bound_keys"]["k256_pubkey"] == k256.hex()
    assert ok.details["bound_keys"]["k256_encoding"] == "SEC1 compressed (33 bytes)"
    assert ok.details["quote"]["sha256"] == hashlib.sha256(quote.raw).hexdigest()
    assert ok.details["preimage"] == f"dstack-kms-genereted-keys-v1:{ca.hex()};{k256.hex()};"
    assert ok.details["report_data"]["match"]

    other_k256, _ = k256_pair()
    bad = check_kms_binding(quote, ca, other_k256, "kms")
    assert bad.status is CheckStatus.FAIL
    assert "k256 public key" in bad.summary and other_k256.hex()[:16] in bad.summary
    assert not bad.details["report_data"]["match"]

    bad_ca = check_kms_binding(quote, spki_of(new_key()), k256, "kms")
    assert bad_ca.status is CheckStatus.FAIL and "KMS CA public key" in bad_ca.summary

    # The same k256 point in the other SEC1 form: passes, and says which form the quote committed to.
    other_form = check_kms_binding(quote, ca, k256_uncompressed, "kms")
    assert other_form.status is CheckStatus.PASS
    assert other_form.details["k256_form_matched"] == "compressed"
    assert "compressed SEC1 form" in other_form.summary


def test_kms_binding_padding_and_missing_keys() -> None:
    ca = spki_of(new_key())
    k256, _ = k256_pair()
    digest = kms_report_data(ca, k256)[:32]
    padded_wrong = check_kms_binding(kms_quote(digest + b"\x01" * 32), ca, k256)
    assert padded_wrong.status is CheckStatus.FAIL and "zero padding" in padded_wrong.summary
    missing = check_kms_binding(kms_quote(bytes(64)), ca, b"")
    assert missing.status is CheckStatus.FAIL and "no k256 public key" in missing.summary


def test_real_kms_quote_does_not_bind_the_hardcoded_wallet_pubkey() -> None:
    # The Trust Center writes a constant into kms-main.wallet_pubkey, not the KMS's k256 key (fixture README).
    kms = dataset("kms")["main_fields"]
    check = check_kms_binding(real_quote("kms"), unhex(kms["cert_pubkey"]), unhex(kms["wallet_pubkey"]), "kms")
    assert check.status is CheckStatus.FAIL
    assert check.details["bound_keys"]["ca_pubkey_is_spki"]


# ------------------------------------------------------------------------------------------ ACME binding

ACCOUNT = "https://acme-v02.api.letsencrypt.org/acme/acct/123456789"


def test_acme_report_data_formula() -> None:
    assert acme_report_data(ACCOUNT) == hashlib.sha512(b"acme-account:" + ACCOUNT.encode()).digest()


def test_acme_binding_pass_and_fail() -> None:
    quote = parse_quote(patch_quote(real_quote("gateway").raw, "reportdata", acme_report_data(ACCOUNT)))
    ok = check_acme_binding(quote, ACCOUNT, "gateway")
    assert ok.status is CheckStatus.PASS, ok.summary
    assert ok.id == "binding.report_data" and ok.phase == "domain" and ok.entity == "gateway"
    assert ok.details["account_uri"] == ACCOUNT and ok.details["report_data"]["match"]
    assert ok.details["quote"]["sha256"] == hashlib.sha256(quote.raw).hexdigest()

    other = ACCOUNT.replace("123456789", "987654321")
    bad = check_acme_binding(quote, other, "gateway")
    assert bad.status is CheckStatus.FAIL and other in bad.summary
    assert bad.details["report_data"]["expected"] == acme_report_data(other).hex()
    assert bad.details["report_data"]["actual"] == acme_report_data(ACCOUNT).hex()

    spaced = check_acme_binding(quote, ACCOUNT + "\n", "gateway")
    assert spaced.status is CheckStatus.FAIL and "whitespace" in spaced.details["note"]

    empty = check_acme_binding(quote, "", "gateway")
    assert empty.status is CheckStatus.FAIL and "no ACME account URI" in empty.summary


def test_real_gateway_quote_does_not_bind_an_arbitrary_account() -> None:
    check = check_acme_binding(real_quote("gateway"), ACCOUNT, "gateway")
    assert check.status is CheckStatus.FAIL


def test_details_name_times_in_utc() -> None:
    naive = datetime(2026, 6, 1)
    s = synthetic()
    leaf = s.pki.leaf(s.leaf_key, leaf_extensions(s.quote_raw))
    check = check_ratls_binding(s.pki.chain(leaf), s.quote, s.pki.kms_spki, "app", naive)
    assert check.details["now"] == (naive.replace(tzinfo=UTC)).isoformat()
    assert check.status is CheckStatus.PASS
    soon = check_ratls_binding(s.pki.chain(leaf), s.quote, s.pki.kms_spki, "app", NOW + timedelta(days=3650))
    assert soon.status is CheckStatus.WARN
