"""Key bindings of dstack quotes: RA-TLS certificates (app), the KMS's generated keys, the gateway's ACME account.

A TDX quote proves what ran; its 64-byte report_data says which key that code holds. dstack fills it as follows:

* RA-TLS certificate (app, KMS-issued app certificates): SHA-512("ratls-cert:" ‖ leaf SubjectPublicKeyInfo DER).
  The certificate carries the quote and the event log in private extensions under 1.3.6.1.4.1.62397.1, each value
  a DER OCTET STRING wrapping the raw bytes (dstack's ra-tls crate, `add_ext`). The chain is
  leaf → "Dstack App CA" → self-signed "Dstack KMS CA", whose key is the KMS's `caPubkey`.
* KMS bootstrap keys: Keccak-256("dstack-kms-genereted-keys-v1:" ‖ hex(caPubkey) ‖ ";" ‖ hex(k256Pubkey) ‖ ";")
  followed by 32 zero bytes (the misspelling is upstream's and part of the preimage).
* Gateway ACME account: SHA-512("acme-account:" ‖ account URI).

Each check here returns one `binding.report_data` Check whose details name the key or URI bound, the quote it is
bound to (SHA-256 of the raw quote) and the expected and actual report_data. Bad input becomes a failing check
with a message, never an exception.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from Crypto.Hash import keccak
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from .errors import InputError
from .eventlog import Attestation, decode_attestation
from .model import Anchor, Check, CheckStatus, Entity, Phase
from .quote.chain import cert_summary
from .quote.names import cert_names, key_label, name_text
from .quote.names import subject_label as _cn
from .quote.structure import Quote, parse_quote

CHECK_ID = "binding.report_data"

DSTACK_OID_ARC = "1.3.6.1.4.1.62397.1"
OID_QUOTE = f"{DSTACK_OID_ARC}.1"
OID_EVENT_LOG = f"{DSTACK_OID_ARC}.2"
OID_APP_ID = f"{DSTACK_OID_ARC}.3"
OID_USAGE = f"{DSTACK_OID_ARC}.4"
# Newer dstack writes one "unified" extension instead of the quote and the log: its versioned attestation (SCALE V0 or
# MessagePack V1), with the quote, the stripped event log, the runtime events and the VM config.
OID_ATTESTATION = f"{DSTACK_OID_ARC}.8"
_OID_NAMES = {
    OID_QUOTE: "quote",
    OID_EVENT_LOG: "event log",
    OID_APP_ID: "app id",
    OID_USAGE: "certificate usage",
    OID_ATTESTATION: "attestation",
}

RATLS_PREFIX = b"ratls-cert:"
ACME_PREFIX = b"acme-account:"
KMS_PREFIX = b"dstack-kms-genereted-keys-v1:"
RATLS_FORMULA = 'SHA-512("ratls-cert:" ‖ leaf SubjectPublicKeyInfo DER)'
ACME_FORMULA = 'SHA-512("acme-account:" ‖ account_uri UTF-8)'
KMS_FORMULA = (
    'Keccak-256("dstack-kms-genereted-keys-v1:" ‖ hex(ca_pubkey) ‖ ";" ‖ hex(k256_pubkey) ‖ ";") ‖ 32 zero bytes'
)

MAX_INPUT_BYTES = 4 << 20
MAX_CERTIFICATES = 16
MAX_EVENT_LOG_BYTES = 16 << 20  # decompressed
EVENT_LOG_GZIP_MAGIC = b"ELGZv1"  # newer dstack gzips the event log extension behind this prefix

EXPECTED_APP_CA_CN = "Dstack App CA"
EXPECTED_KMS_CA_CN = "Dstack KMS CA"

_PEM_LABEL = re.compile(rb"-----BEGIN ([^-\r\n]{1,64})-----")
_DER_OCTET_STRING = 0x04

VALIDITY_NOTE = (
    "Dates do not affect the binding: it rests on the verified quote's report_data and on the chain's "
    "signatures. A certificate outside its validity period would be refused by a TLS client today, so it "
    "should no longer be presented as a live endpoint identity; the binding of its key to the quote still holds."
)


# --------------------------------------------------------------------------------------------------- loading


def load_certificates(data: bytes | str, source: str = "certificate") -> list[x509.Certificate]:
    """A PEM chain (CERTIFICATE blocks, in the given order) or one DER certificate.

    Raises InputError (naming `source`) for anything else: empty input, non-certificate PEM blocks, bad base64 or
    DER, more than MAX_CERTIFICATES certificates or more than MAX_INPUT_BYTES bytes.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", errors="replace")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InputError(f"expected bytes, got {type(data).__name__}", source=source)
    data = bytes(data)
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(
            f"{len(data)} bytes exceeds the limit of {MAX_INPUT_BYTES} for a certificate chain", source=source
        )
    if not data.strip(b" \t\r\n\x00"):
        raise InputError("empty input: no certificate", source=source)
    # DER first: an RA-TLS certificate's DER embeds a quote whose PCK chain is PEM text, so "-----BEGIN" inside
    # the bytes does not make them PEM.
    der_error: Exception | None = None
    if data[0] == 0x30:
        try:
            return [x509.load_der_x509_certificate(data)]
        except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
            der_error = exc
    if b"-----BEGIN" in data:
        return _load_pem(data, source)
    reason = f" ({_one_line(der_error)})" if der_error is not None else ""
    raise InputError(f"neither a PEM certificate chain nor a DER certificate{reason}", source=source)


def _load_pem(data: bytes, source: str) -> list[x509.Certificate]:
    labels = [m.group(1).decode("ascii", errors="replace") for m in _PEM_LABEL.finditer(data)]
    others = sorted({label for label in labels if label != "CERTIFICATE"})
    if others:
        raise InputError(f"PEM input holds non-certificate blocks: {', '.join(others)}", source=source)
    if len(labels) > MAX_CERTIFICATES:
        raise InputError(f"{len(labels)} certificates exceeds the limit of {MAX_CERTIFICATES}", source=source)
    try:
        certs = x509.load_pem_x509_certificates(data.rstrip(b"\x00"))
    except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        raise InputError(f"the PEM certificate chain does not parse ({_one_line(exc)})", source=source) from None
    if not certs:
        raise InputError("no CERTIFICATE block in the PEM input", source=source)
    if len(certs) != len(labels):
        raise InputError(f"{len(labels)} CERTIFICATE blocks but {len(certs)} certificates parsed", source=source)
    return certs


# ------------------------------------------------------------------------------------------ RA-TLS extensions


@dataclass(frozen=True)
class RaTlsInfo:
    """The dstack RA-TLS extensions of one certificate (each None when that extension is absent)."""

    quote: bytes | None = None
    event_log: str | None = None  # JSON text (decompressed when the certificate gzipped it)
    event_log_compressed: bool = False
    app_id: bytes | None = None
    usage: str | None = None
    attestation_format: str | None = None  # "scale-v0" / "msgpack-v1" when the quote came in the unified extension
    # Other extensions under the dstack arc (e.g. newer attestation-mode / TPM OIDs): dotted OID → value size.
    other: dict[str, int] = field(default_factory=dict)

    def event_log_entries(self) -> list[Any] | None:
        return None if self.event_log is None else json.loads(self.event_log)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "extension_encoding": "DER OCTET STRING wrapping the raw value",
            "app_id": self.app_id.hex() if self.app_id is not None else None,
            "usage": self.usage,
            "quote_present": self.quote is not None,
            "quote_sha256": _sha256(self.quote) if self.quote is not None else None,
            "quote_size": len(self.quote) if self.quote is not None else None,
            "event_log_present": self.event_log is not None,
        }
        if self.attestation_format is not None:
            out["attestation_format"] = self.attestation_format
        if self.event_log is not None:
            entries = self.event_log_entries()
            out["event_log_sha256"] = _sha256(self.event_log.encode("utf-8"))
            out["event_log_entries"] = len(entries) if isinstance(entries, list) else None
            out["event_log_compressed"] = self.event_log_compressed
        if self.other:
            out["other_dstack_extensions"] = dict(self.other)
        return out


def decode_ratls(cert: x509.Certificate) -> RaTlsInfo | None:
    """The dstack extensions of `cert`, or None when it has none under 1.3.6.1.4.1.62397.1.

    Raises InputError naming the extension when one is malformed (not exactly one DER OCTET STRING, event log not
    UTF-8 JSON, usage not UTF-8), and when the certificate's extensions cannot be read at all.
    """
    try:
        extensions = list(cert.extensions)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise InputError(f"certificate extensions do not parse ({_one_line(exc)})", field="extensions") from None
    values: dict[str, bytes] = {}
    for ext in extensions:
        dotted = ext.oid.dotted_string
        if not dotted.startswith(DSTACK_OID_ARC + "."):
            continue
        raw = ext.value.value if isinstance(ext.value, x509.UnrecognizedExtension) else None
        if raw is None:
            raise InputError("dstack extension decoded by an unexpected type", field=_ext_field(dotted))
        values[dotted] = raw
    if not values:
        return None
    inner = {oid: _octet_string(raw, oid) for oid, raw in values.items()}
    event_log, compressed = None, False
    if OID_EVENT_LOG in inner:
        event_log, compressed = _event_log_text(inner[OID_EVENT_LOG])
    usage = None
    if OID_USAGE in inner:
        try:
            usage = inner[OID_USAGE].decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("certificate usage is not UTF-8 text", field=_ext_field(OID_USAGE)) from None
    quote, form = inner.get(OID_QUOTE), None
    if OID_ATTESTATION in inner:
        attestation = _attestation(inner[OID_ATTESTATION])
        if quote is not None and quote != attestation.quote:
            raise InputError("the quote extension and the attestation's quote differ",
                             field=_ext_field(OID_ATTESTATION))
        quote, form = attestation.quote, attestation.format
        if event_log is None:  # shown like the classic extension's log
            event_log = json.dumps([e.to_json() for e in attestation.events()])
    return RaTlsInfo(
        quote=quote,
        event_log=event_log,
        event_log_compressed=compressed,
        app_id=inner.get(OID_APP_ID),
        usage=usage,
        attestation_format=form,
        other={oid: len(v) for oid, v in sorted(inner.items()) if oid not in _OID_NAMES},
    )


def _attestation(blob: bytes) -> Attestation:
    """The unified extension's attestation, bound to its quote (`check_attestation_binding`)."""
    where = _ext_field(OID_ATTESTATION)
    try:
        attestation = decode_attestation(blob, "certificate")
        quote = parse_quote(attestation.quote)
    except InputError as exc:
        inner = f" {exc.field}" if exc.field else ""
        raise InputError(f"{exc.message}", field=f"{where}{inner}", offset=exc.offset) from None
    check_attestation_binding(attestation, quote, None, where)
    return attestation


def check_attestation_binding(attestation: Attestation, quote: Quote, source: str | None, field: str) -> None:
    """An attestation's report_data is what its stack claims the quote binds: one other than the quote's is refused
    (InputError at `field`, with the offset in the blob), as dstack's verifier refuses it."""
    quoted = quote_report_data(quote)
    if attestation.report_data != quoted:
        raise InputError(f"the attestation's report_data {attestation.report_data.hex()[:16]}… differs from the "
                         f"quote's {quoted.hex()[:16]}…", source=source, field=field,
                         offset=attestation.report_data_offset)


def _ext_field(oid: str) -> str:
    name = _OID_NAMES.get(oid)
    return f"extension {oid} ({name})" if name else f"extension {oid}"


def _octet_string(raw: bytes, oid: str) -> bytes:
    """The content of the DER OCTET STRING that must make up the whole extension value."""
    where = _ext_field(oid)
    if len(raw) < 2 or raw[0] != _DER_OCTET_STRING:
        first = f"0x{raw[0]:02x}" if raw else "nothing"
        raise InputError(f"value is not a DER OCTET STRING (starts with {first})", field=where, offset=0)
    length, pos = raw[1], 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or len(raw) < 2 + n:
            raise InputError("OCTET STRING has a bad length field", field=where, offset=1)
        length = int.from_bytes(raw[2 : 2 + n], "big")
        pos = 2 + n
    if pos + length != len(raw):
        raise InputError(
            f"OCTET STRING declares {length} bytes but the extension holds {len(raw) - pos} after its header",
            field=where,
            offset=1,
        )
    return raw[pos:]


def _event_log_text(value: bytes) -> tuple[str, bool]:
    where = _ext_field(OID_EVENT_LOG)
    compressed = value.startswith(EVENT_LOG_GZIP_MAGIC)
    if compressed:
        inflater = zlib.decompressobj(wbits=31)
        try:
            value = inflater.decompress(value[len(EVENT_LOG_GZIP_MAGIC) :], MAX_EVENT_LOG_BYTES)
        except zlib.error as exc:
            raise InputError(f"gzip-compressed event log does not decompress ({exc})", field=where) from None
        if inflater.unconsumed_tail:
            raise InputError(f"event log decompresses to more than {MAX_EVENT_LOG_BYTES} bytes", field=where)
    try:
        text = value.decode("utf-8")
        parsed = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"event log is not UTF-8 JSON ({_one_line(exc)})", field=where) from None
    if not isinstance(parsed, list):
        raise InputError(f"event log JSON is a {type(parsed).__name__}, expected a list of events", field=where)
    return text, compressed


# ------------------------------------------------------------------------------------------ report_data rules


def spki_der(cert: x509.Certificate) -> bytes:
    """The certificate's SubjectPublicKeyInfo exactly as encoded in it (the bytes dstack hashes)."""
    try:
        tbs = _tlv_list(cert.tbs_certificate_bytes)
        if len(tbs) != 1 or tbs[0][0] != 0x30:
            raise ValueError("TBSCertificate is not one SEQUENCE")
        items = _tlv_list(tbs[0][2])
        off = 1 if items and items[0][0] == 0xA0 else 0
        tag, raw, _ = items[5 + off]
    except (ValueError, IndexError):
        raise InputError(
            "cannot locate SubjectPublicKeyInfo in the certificate", field="subjectPublicKeyInfo"
        ) from None
    if tag != 0x30:
        raise InputError("SubjectPublicKeyInfo is not a SEQUENCE", field="subjectPublicKeyInfo")
    return raw


def _tlv_list(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """(tag, whole TLV bytes, content) for a run of DER TLVs."""
    out = []
    pos = 0
    while pos < len(data):
        start = pos
        if len(data) - pos < 2:
            raise ValueError("truncated TLV")
        tag, length = data[pos], data[pos + 1]
        pos += 2
        if length & 0x80:
            n = length & 0x7F
            if n == 0 or n > 4 or pos + n > len(data):
                raise ValueError("bad length")
            length = int.from_bytes(data[pos : pos + n], "big")
            pos += n
        if pos + length > len(data):
            raise ValueError("TLV overruns")
        out.append((tag, data[start : pos + length], data[pos : pos + length]))
        pos += length
    return out


def expected_ratls_report_data(cert: x509.Certificate) -> bytes:
    """SHA-512("ratls-cert:" ‖ SubjectPublicKeyInfo DER): the report_data of the quote that attests `cert`'s key."""
    return hashlib.sha512(RATLS_PREFIX + spki_der(cert)).digest()


def kms_report_data(ca_pubkey: bytes, k256_pubkey: bytes) -> bytes:
    """Keccak-256 of the KMS key-binding preimage (lowercase hex of the bytes as given), zero padded to 64 bytes."""
    digest = keccak.new(digest_bits=256, data=_kms_preimage(ca_pubkey, k256_pubkey)).digest()
    return digest + bytes(32)


def _kms_preimage(ca_pubkey: bytes, k256_pubkey: bytes) -> bytes:
    return KMS_PREFIX + ca_pubkey.hex().encode() + b";" + k256_pubkey.hex().encode() + b";"


def acme_report_data(account_uri: str) -> bytes:
    """SHA-512("acme-account:" ‖ account URI): dstack's QuoteContentType::Custom("acme-account")."""
    return hashlib.sha512(ACME_PREFIX + account_uri.encode("utf-8")).digest()


def quote_report_data(quote: Quote) -> bytes:
    """The 64-byte report data of a TD body (`reportdata`) or an SGX report (`report_data`)."""
    fields = quote.body.fields
    return fields["reportdata"] if "reportdata" in fields else fields["report_data"]


# ------------------------------------------------------------------------------------------ shared helpers


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _short(hex_text: str) -> str:
    return hex_text[:16] + "…"


def _report_data_details(expected: bytes, actual: bytes, formula: str) -> dict[str, Any]:
    return {"formula": formula, "expected": expected.hex(), "actual": actual.hex(), "match": expected == actual}


def _check(entity: Entity, phase: Phase, status: CheckStatus, summary: str, details: dict[str, Any]) -> Check:
    return Check(
        id=CHECK_ID,
        entity=entity,
        phase=phase,
        status=status,
        anchor=Anchor.QUOTE,
        summary=summary,
        details=details,
    )


def _quote_details(quote: Quote) -> dict[str, Any]:
    return {"sha256": _sha256(quote.raw), "size": len(quote.raw), "tee": quote.tee_name}


# ------------------------------------------------------------------------------------------ RA-TLS binding


def _verify_signature(cert: x509.Certificate, key: Any) -> bool:
    """Whether `key` verifies the certificate's signature over its TBS bytes (ECDSA, RSA PKCS#1 v1.5, EdDSA)."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            algorithm = cert.signature_hash_algorithm
            if algorithm is None:
                return False
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        elif isinstance(key, rsa.RSAPublicKey):
            algorithm = cert.signature_hash_algorithm
            if algorithm is None:
                return False
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _cert_entry(cert: x509.Certificate, role: str, now: datetime) -> dict[str, Any]:
    entry: dict[str, Any] = {"role": role, **cert_summary(cert)}
    entry["spki_sha256"] = _sha256(spki_der(cert))
    entry["valid_at_now"] = cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
    try:
        info = decode_ratls(cert)
    except InputError as exc:
        entry["ratls_error"] = exc.describe()
        info = None
    if info is not None:
        entry["ratls_usage"] = info.usage
        entry["ratls_app_id"] = info.app_id.hex() if info.app_id is not None else None
    return entry


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _key_cert_sign(cert: x509.Certificate) -> bool | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    except x509.ExtensionNotFound:
        return None


class _Findings:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.notes: list[str] = []


def _role(index: int, count: int) -> str:
    if index == 0:
        return "leaf"
    if index == count - 1:
        return "root (KMS CA)" if count > 2 else "issuer"
    return "App CA" if index == 1 else f"intermediate {index}"


def _check_links(chain: list[x509.Certificate], found: _Findings) -> list[dict[str, Any]]:
    links = []
    for i in range(len(chain) - 1):
        child, issuer = chain[i], chain[i + 1]
        label = f"'{_cn(child)}' → '{_cn(issuer)}'"
        names_ok = cert_names(child).issuer == cert_names(issuer).subject
        sig_ok = _verify_signature(child, issuer.public_key())
        bc = _basic_constraints(issuer)
        is_ca = bc is not None and bc.ca
        # Certificates between the leaf and this issuer are CAs it vouches for; pathLen bounds their count.
        below = i
        path_ok = not is_ca or bc is None or bc.path_length is None or below <= bc.path_length
        links.append(
            {
                "certificate": _cn(child),
                "issuer": _cn(issuer),
                "issuer_name_matches": names_ok,
                "signature_valid": sig_ok,
                "issuer_is_ca": is_ca,
                "path_length_ok": path_ok,
            }
        )
        if not sig_ok:
            found.problems.append(
                f"chain: the signature of '{_cn(child)}' does not verify with the key of "
                f"'{_cn(issuer)}' (SPKI sha256 {_short(_sha256(spki_der(issuer)))})"
            )
        if not names_ok:
            found.problems.append(
                f"chain {label}: issuer name '{name_text(cert_names(child).issuer)}' differs "
                f"from the subject of the next certificate"
            )
        if not is_ca:
            found.problems.append(f"chain {label}: '{_cn(issuer)}' is not a CA (BasicConstraints cA is not true)")
        elif not path_ok:
            found.problems.append(
                f"chain {label}: '{_cn(issuer)}' pathLenConstraint {bc.path_length} "  # type: ignore[union-attr]
                f"allows fewer CA certificates below it than the chain holds ({below})"
            )
        if is_ca and _key_cert_sign(issuer) is False:
            found.notes.append(
                f"'{_cn(issuer)}' is a CA whose KeyUsage does not assert keyCertSign (as in real "
                "dstack 0.5.3 chains); RFC 5280 path validation would reject it, this check does not"
            )
    return links


def _check_anchor(chain: list[x509.Certificate], kms_ca_pubkey: bytes | None, found: _Findings) -> dict[str, Any]:
    root = chain[-1]
    root_spki = spki_der(root)
    names = cert_names(root)
    self_signed = names.issuer == names.subject and _verify_signature(root, root.public_key())
    anchor: dict[str, Any] = {
        "root": _cn(root),
        "root_spki_sha256": _sha256(root_spki),
        "root_spki_der": root_spki.hex(),
        "root_self_signed": self_signed,
        "kms_ca_pubkey_sha256": _sha256(kms_ca_pubkey) if kms_ca_pubkey is not None else None,
    }
    if kms_ca_pubkey is None:
        anchor["result"] = "not anchored: no KMS CA public key supplied"
        found.warnings.append("the chain is not anchored: no KMS CA public key was supplied to compare its root with")
        if not self_signed:
            found.warnings.append(f"the chain ends at '{_cn(root)}', which is not self-signed")
        return anchor
    if root_spki == kms_ca_pubkey:
        anchor["result"] = "the root certificate's SubjectPublicKeyInfo equals the KMS CA public key"
        if not self_signed:
            found.notes.append(f"'{_cn(root)}' holds the KMS CA key but is not self-signed; trust rests on the key")
        return anchor
    try:
        kms_key = serialization.load_der_public_key(kms_ca_pubkey)
    except (ValueError, UnsupportedAlgorithm, TypeError):
        kms_key = None
    if not self_signed and kms_key is not None and _verify_signature(root, kms_key):
        anchor["result"] = f"'{_cn(root)}' is signed by the KMS CA public key (no KMS CA certificate supplied)"
        return anchor
    anchor["result"] = "mismatch"
    found.problems.append(
        f"KMS CA public key does not match: the chain's root '{_cn(root)}' has SPKI sha256 "
        f"{_short(_sha256(root_spki))}, the KMS CA public key has sha256 {_short(_sha256(kms_ca_pubkey))}"
        + ("" if kms_key is not None else " (and is not a parseable SubjectPublicKeyInfo)")
    )
    return anchor


def _compare_quotes(embedded: bytes | None, verified: Quote, found: _Findings) -> dict[str, Any]:
    if embedded is None:
        found.warnings.append("the leaf carries no quote extension, so only report_data ties it to the verified quote")
        return {"comparison": "absent"}
    out: dict[str, Any] = {"sha256": _sha256(embedded), "size": len(embedded)}
    if embedded == verified.raw:
        out["comparison"] = "byte-equal"
        return out
    try:
        parsed = parse_quote(embedded)
    except InputError as exc:
        out["comparison"] = "unparseable"
        found.problems.append(f"embedded quote (extension {OID_QUOTE}) does not parse: {exc.describe()}")
        return out
    differing = sorted(
        name
        for name in set(parsed.body.fields) | set(verified.body.fields)
        if parsed.body.fields.get(name) != verified.body.fields.get(name)
    )
    if parsed.body.kind != verified.body.kind:
        differing.insert(0, "body kind")
    if differing:
        out["comparison"] = "different"
        out["differing_fields"] = differing
        found.problems.append(
            "embedded quote differs from the verified quote in "
            + ", ".join(differing)
            + f" (embedded sha256 {_short(out['sha256'])}, verified {_short(_sha256(verified.raw))})"
        )
    else:
        out["comparison"] = "same-body"
        found.notes.append(
            "the embedded quote is not byte-equal to the verified quote but has the same TD body "
            "(all measurements, RTMRs and report_data); they differ only in signature/auth data"
        )
    return out


def check_ratls_binding(
    chain: list[x509.Certificate],
    verified_quote: Quote,
    kms_ca_pubkey: bytes | None,
    entity: Entity = "app",
    now: datetime | None = None,
) -> Check:
    """`binding.report_data` for an RA-TLS certificate chain (leaf first) against the quote verified elsewhere.

    Fails when: the verified quote's report_data is not SHA-512("ratls-cert:" ‖ leaf SPKI); the leaf's embedded
    quote is not the verified one (byte-equal, or at least the same TD body); a chain signature, issuer name or CA
    flag is wrong; the chain's root key is not `kms_ca_pubkey` (when given); a dstack extension is malformed.
    Warns (never fails) for certificates outside their validity at `now`, a missing KMS key or embedded quote.
    """
    now = datetime.now(UTC) if now is None else now
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    details: dict[str, Any] = {"now": now.isoformat(), "quote": _quote_details(verified_quote)}
    if not chain:
        return _check(entity, "hardware", CheckStatus.FAIL, "RA-TLS binding: no certificate supplied", details)
    if len(chain) > MAX_CERTIFICATES:
        return _check(
            entity,
            "hardware",
            CheckStatus.FAIL,
            f"RA-TLS binding: {len(chain)} certificates exceeds the limit of {MAX_CERTIFICATES}",
            details,
        )
    try:
        return _ratls_check(chain, verified_quote, kms_ca_pubkey, entity, now, details)
    except InputError as exc:
        summary = f"RA-TLS binding: malformed certificate: {exc.describe()}"
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion, x509.DuplicateExtension) as exc:
        summary = f"RA-TLS binding: malformed certificate data: {_one_line(exc)}"
    return _check(entity, "hardware", CheckStatus.FAIL, summary, details)


def _ratls_check(
    chain: list[x509.Certificate],
    quote: Quote,
    kms_ca_pubkey: bytes | None,
    entity: Entity,
    now: datetime,
    details: dict[str, Any],
) -> Check:
    found = _Findings()
    leaf = chain[0]
    leaf_spki = spki_der(leaf)
    expected = expected_ratls_report_data(leaf)
    actual = quote_report_data(quote)
    details["bound_key"] = {
        "subject": name_text(cert_names(leaf).subject),
        "spki_sha256": _sha256(leaf_spki),
        "spki_der": leaf_spki.hex(),
        "key_type": key_label(leaf),
    }
    details["report_data"] = _report_data_details(expected, actual, RATLS_FORMULA)
    if expected != actual:
        found.problems.append(
            f'report_data of the verified quote is not SHA-512("ratls-cert:" ‖ SPKI) of the leaf public key '
            f"(leaf SPKI sha256 {_short(_sha256(leaf_spki))}; expected {_short(expected.hex())}, "
            f"quote has {_short(actual.hex())})"
        )
    try:
        info = decode_ratls(leaf)
    except InputError as exc:
        found.problems.append(f"leaf RA-TLS extension is malformed: {exc.describe()}")
        info = None
        details["ratls"] = {"error": exc.describe()}
    else:
        details["ratls"] = info.to_dict() if info is not None else None
        if info is None:
            found.warnings.append(
                f"the leaf carries no dstack RA-TLS extensions ({DSTACK_OID_ARC}.*), so only "
                "report_data ties it to the verified quote"
            )
            details["embedded_quote"] = {"comparison": "absent"}
        else:
            details["embedded_quote"] = _compare_quotes(info.quote, quote, found)

    entries = [_cert_entry(c, _role(i, len(chain)), now) for i, c in enumerate(chain)]
    details["chain"] = {
        "certificates": entries,
        "links": _check_links(chain, found),
        "anchor": _check_anchor(chain, kms_ca_pubkey, found),
    }
    _check_app_ids(chain, info, found)
    _check_names(chain, found)
    expired = [e for e in entries if not e["valid_at_now"]]
    details["validity"] = {
        "all_valid_at_now": not expired,
        "outside_validity": [f"{e['role']} '{e['subject']}' ({e['not_before']} – {e['not_after']})" for e in expired],
        "note": VALIDITY_NOTE,
    }
    if expired:
        found.warnings.append(
            "certificate validity: " + "; ".join(details["validity"]["outside_validity"]) + f" at {now.isoformat()}"
        )
    details["problems"] = found.problems
    details["warnings"] = found.warnings
    details["notes"] = found.notes
    bound = (
        f"leaf '{_cn(leaf)}' (SPKI sha256 {_short(_sha256(leaf_spki))}) to quote sha256 {_short(_sha256(quote.raw))}"
    )
    if found.problems:
        return _check(
            entity, "hardware", CheckStatus.FAIL, "RA-TLS binding fails: " + "; ".join(found.problems), details
        )
    if found.warnings:
        return _check(
            entity,
            "hardware",
            CheckStatus.WARN,
            f"RA-TLS binding holds for {bound}, with warnings: " + "; ".join(found.warnings),
            details,
        )
    return _check(
        entity,
        "hardware",
        CheckStatus.PASS,
        f"RA-TLS binding holds: report_data binds {bound}; chain verifies to the KMS CA",
        details,
    )


def _check_app_ids(chain: list[x509.Certificate], leaf_info: RaTlsInfo | None, found: _Findings) -> None:
    """The leaf's app id must match the App CA's, which the KMS issued for that app."""
    if leaf_info is None or leaf_info.app_id is None or len(chain) < 2:
        return
    try:
        ca_info = decode_ratls(chain[1])
    except InputError as exc:
        found.problems.append(f"'{_cn(chain[1])}' RA-TLS extension is malformed: {exc.describe()}")
        return
    if ca_info is None or ca_info.app_id is None:
        return
    if ca_info.app_id != leaf_info.app_id:
        found.problems.append(
            f"app id: the leaf's app id extension ({leaf_info.app_id.hex()}) differs from "
            f"'{_cn(chain[1])}' ({ca_info.app_id.hex()})"
        )


def _check_names(chain: list[x509.Certificate], found: _Findings) -> None:
    if len(chain) >= 2 and _cn(chain[1]) != EXPECTED_APP_CA_CN:
        found.notes.append(f"the leaf's issuer is '{_cn(chain[1])}', not '{EXPECTED_APP_CA_CN}'")
    if len(chain) >= 3 and _cn(chain[-1]) != EXPECTED_KMS_CA_CN:
        found.notes.append(f"the chain's root is '{_cn(chain[-1])}', not '{EXPECTED_KMS_CA_CN}'")


# ------------------------------------------------------------------------------------------ KMS binding


def _other_sec1_form(k256_pubkey: bytes) -> tuple[bytes, str] | None:
    """The same secp256k1 point in the other SEC1 encoding (compressed ↔ uncompressed), if it is a valid point."""
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), k256_pubkey)
    except (ValueError, TypeError):
        return None
    if len(k256_pubkey) == 33:
        return key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        ), "uncompressed"
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint), "compressed"


def _sec1_form(k256_pubkey: bytes) -> str:
    if len(k256_pubkey) == 33 and k256_pubkey[0] in (2, 3):
        return "SEC1 compressed (33 bytes)"
    if len(k256_pubkey) == 65 and k256_pubkey[0] == 4:
        return "SEC1 uncompressed (65 bytes)"
    return f"not a SEC1 point encoding ({len(k256_pubkey)} bytes)"


def check_kms_binding(quote: Quote, ca_pubkey: bytes, k256_pubkey: bytes, entity: Entity = "kms") -> Check:
    """`binding.report_data` for the KMS: the quote's report_data commits to its CA key and its k256 key.

    The k256 key is hashed as given; when that does not match but the same point in the other SEC1 form does,
    the check passes and says which form matched.
    """
    actual = quote_report_data(quote)
    expected = kms_report_data(ca_pubkey, k256_pubkey)
    details: dict[str, Any] = {
        "quote": _quote_details(quote),
        "bound_keys": {
            "ca_pubkey": ca_pubkey.hex(),
            "ca_pubkey_sha256": _sha256(ca_pubkey),
            "ca_pubkey_is_spki": _is_spki(ca_pubkey),
            "k256_pubkey": k256_pubkey.hex(),
            "k256_encoding": _sec1_form(k256_pubkey),
        },
        "preimage": _kms_preimage(ca_pubkey, k256_pubkey).decode("ascii"),
        "report_data": _report_data_details(expected, actual, KMS_FORMULA),
    }
    bound = (
        f"KMS CA key (sha256 {_short(_sha256(ca_pubkey))}) and k256 key {_short(k256_pubkey.hex())} "
        f"to quote sha256 {_short(_sha256(quote.raw))}"
    )
    if not ca_pubkey or not k256_pubkey:
        missing = "CA public key" if not ca_pubkey else "k256 public key"
        return _check(
            entity, "hardware", CheckStatus.FAIL, f"KMS key binding cannot be checked: no {missing} supplied", details
        )
    if actual == expected:
        return _check(
            entity, "hardware", CheckStatus.PASS, f"KMS key binding holds: report_data binds {bound}", details
        )
    other = _other_sec1_form(k256_pubkey)
    if other is not None and kms_report_data(ca_pubkey, other[0]) == actual:
        details["k256_form_matched"] = other[1]
        details["report_data"] = _report_data_details(kms_report_data(ca_pubkey, other[0]), actual, KMS_FORMULA)
        details["preimage"] = _kms_preimage(ca_pubkey, other[0]).decode("ascii")
        return _check(
            entity,
            "hardware",
            CheckStatus.PASS,
            f"KMS key binding holds with the k256 key in {other[1]} SEC1 form: report_data binds {bound}",
            details,
        )
    if actual[:32] == expected[:32]:
        reason = "the Keccak-256 digest matches but the last 32 bytes of report_data are not zero padding"
    else:
        reason = (
            "report_data of the quote is not the Keccak-256 binding of the supplied KMS CA public key and "
            "k256 public key"
        )
    return _check(
        entity,
        "hardware",
        CheckStatus.FAIL,
        f"KMS key binding fails: {reason} (expected {_short(expected.hex())}, quote has {_short(actual.hex())}; "
        f"CA key sha256 {_short(_sha256(ca_pubkey))}, k256 key {_short(k256_pubkey.hex())})",
        details,
    )


def _is_spki(data: bytes) -> bool:
    try:
        serialization.load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm, TypeError):
        return False
    return True


# ------------------------------------------------------------------------------------------ ACME binding


def check_acme_binding(quote: Quote, account_uri: str, entity: Entity = "gateway") -> Check:
    """`binding.report_data` (phase domain) for the gateway's ACME account: report_data commits to the URI."""
    actual = quote_report_data(quote)
    details: dict[str, Any] = {"quote": _quote_details(quote), "account_uri": account_uri}
    if not account_uri:
        details["report_data"] = {"formula": ACME_FORMULA, "expected": None, "actual": actual.hex(), "match": False}
        return _check(
            entity,
            "domain",
            CheckStatus.FAIL,
            "ACME account binding cannot be checked: no ACME account URI supplied",
            details,
        )
    expected = acme_report_data(account_uri)
    details["report_data"] = _report_data_details(expected, actual, ACME_FORMULA)
    if account_uri != account_uri.strip():
        details["note"] = "the account URI has leading or trailing whitespace; it is hashed exactly as given"
    quote_id = f"quote sha256 {_short(_sha256(quote.raw))}"
    if actual == expected:
        return _check(
            entity,
            "domain",
            CheckStatus.PASS,
            f"ACME account binding holds: report_data binds account '{account_uri}' to {quote_id}",
            details,
        )
    return _check(
        entity,
        "domain",
        CheckStatus.FAIL,
        f'ACME account binding fails: report_data of {quote_id} is not SHA-512("acme-account:" ‖ URI) for account '
        f"'{account_uri}' (expected {_short(expected.hex())}, quote has {_short(actual.hex())})",
        details,
    )
