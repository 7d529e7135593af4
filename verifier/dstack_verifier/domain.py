"""Gateway domain checks: who may get a TLS certificate for the gateway's domain; is the served one the TEE's.

Four checks, each a :class:`~dstack_verifier.model.Check` of phase ``domain`` (entity ``gateway`` by default):

``domain.tee_controlled_key``
    The gateway's ``/.dstack/acme-info`` answer (:func:`parse_acme_info`) carries the ACME account URI and a quote
    whose report_data must be SHA-512("acme-account:" ‖ URI), and, for each historical TLS key, a quote whose
    report_data must be SHA-512("zt-cert:" ‖ public key DER) (upstream dstack's ``QuoteContentType::Custom``). The
    account quote is the gateway's hardware-phase quote, so whether it passed DCAP is an input. A key quote only
    makes its key TEE-controlled when it binds the key, comes from the same TD identity as the account quote, and
    (when the caller can check it) passes DCAP itself.
``domain.certificate_key``
    The served leaf certificate's SubjectPublicKeyInfo is one of the TEE-controlled keys, and the chain validates for
    the domain at the verification time against a trust store (RFC 5280 path validation by ``cryptography``).
``domain.dns_caa``
    The CAA RRset relevant to the domain (RFC 8659 tree climbing) lets only the TEE's ACME account issue: every
    ``issue`` / ``issuewild`` property that governs issuance names the CA and carries ``accounturi=<the URI>``
    (RFC 8657).
``domain.ct_log``
    Every certificate crt.sh lists for the domain and its subdomains (``q=<domain>`` and ``q=%.<domain>``),
    precertificate duplicates merged, uses a TEE-controlled key; fetches are bounded in count, bytes and time.

The network client, the clock (``now``), the DNS resolver address and the trust store are parameters; nothing here
reads the environment. Untrusted input never raises out of a check: it becomes a failing (or erroring) check.
"""

from __future__ import annotations

import hashlib
import re
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InputError
from .jsontext import json_kind, load_json
from .model import Anchor, Check, CheckStatus, Entity
from .net import NetClient, NetError, NetResponse
from .quote.names import UNREADABLE_KEY, key_label
from .quote.names import subject_label as _cn
from .quote.structure import Quote, parse_quote
from .ratls import ACME_FORMULA, acme_report_data, load_certificates, quote_report_data, spki_der
from .validation import validate_model

__all__ = [
    "CHECK_CAA",
    "CHECK_CERTIFICATE_KEY",
    "CHECK_CT_LOG",
    "CHECK_TEE_CONTROLLED_KEY",
    "DEFAULT_CRTSH_URL",
    "ZT_CERT_FORMULA",
    "AcmeInfo",
    "CaaProperty",
    "KeyAssessment",
    "QuoteEnvelope",
    "QuotedKey",
    "as_acme_info",
    "assess_quoted_keys",
    "check_certificate_key",
    "check_ct_log",
    "check_dns_caa",
    "check_tee_controlled_key",
    "default_trust_store",
    "parse_acme_info",
    "parse_caa_property",
    "parse_quote_envelope",
    "tee_controlled_keys",
    "zt_cert_report_data",
]

PHASE = "domain"
CHECK_TEE_CONTROLLED_KEY = "domain.tee_controlled_key"
CHECK_CERTIFICATE_KEY = "domain.certificate_key"
CHECK_CAA = "domain.dns_caa"
CHECK_CT_LOG = "domain.ct_log"

ZT_CERT_PREFIX = b"zt-cert:"
ZT_CERT_FORMULA = 'SHA-512("zt-cert:" ‖ public_key DER)'
ZT_CERT_PROVENANCE = (
    "upstream dstack gateway: each certificate key's quote is requested with QuoteContentType::Custom(\"zt-cert\") "
    "over the key's DER bytes as published in quoted_hist_keys[].public_key (trust-center spec §3.4, §7.1 item 9); "
    "the local Trust Center fixtures carry no quoted_hist_keys, so the rule is not confirmed on real data here"
)

# Bounds on the acme-info answer (a real one with two quoted keys is about 100 KB).
MAX_ACME_INFO_BYTES = 16 << 20
MAX_ACME_KEYS = 256
MAX_QUOTE_TEXT = 2 << 20  # one quote envelope (hex quote + JSON event log)
MAX_PUBLIC_KEY_HEX = 32 << 10
MAX_ACTIVE_CERT = 256 << 10

# The TD identity a key quote must share with the account quote to be attributed to the same gateway. Platform
# fields (mrseam, tee_tcb_svn) may legitimately differ between hosts and are not compared.
TD_IDENTITY_FIELDS = (
    "mrtd",
    "rtmr0",
    "rtmr1",
    "rtmr2",
    "rtmr3",
    "mrconfig",
    "mrowner",
    "mrownerconfig",
    "tdattributes",
    "xfam",
)

# Trust-store bundles tried, in order, when certifi is not importable.
OS_BUNDLE_PATHS = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Arch
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/ssl/cert.pem",  # macOS, Alpine, BSDs
)
MAX_CHAIN_DEPTH = 8
MAX_SERVED_CHAIN = 16
# A label standing for "<app-id>[-port][s]": the gateway serves apps one level below its base domain.
PROBE_LABEL = "app-probe"

# ACME directory hosts → the CAA issuer-domain-name of that CA (RFC 8657 accounturi values are CA specific).
ACME_CA_DOMAINS = {
    "api.letsencrypt.org": "letsencrypt.org",
    "acme.zerossl.com": "sectigo.com",
    "api.buypass.com": "buypass.com",
    "api.test4.buypass.no": "buypass.com",
    "acme.ssl.com": "ssl.com",
    "pki.goog": "pki.goog",
}
CAA_KNOWN_TAGS = frozenset({"issue", "issuewild", "iodef", "contactemail", "contactphone", "issuemail", "issuevmc"})
CAA_FLAG_CRITICAL = 0x80

DEFAULT_CRTSH_URL = "https://crt.sh/"
MAX_CT_ROWS = 50_000
MAX_CERT_BYTES = 256 << 10
DEFAULT_CT_MAX_BYTES = 8 << 20


# ================================================================================================ shared helpers


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _short(hex_text: str, n: int = 16) -> str:
    return hex_text if len(hex_text) <= n else hex_text[:n] + "…"


def _one_line(text: object, limit: int = 240) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _check(
    check_id: str,
    entity: Entity,
    status: CheckStatus,
    summary: str,
    details: dict[str, Any],
    anchor: str = Anchor.NONE,
) -> Check:
    return Check(
        id=check_id,
        entity=entity,
        phase=PHASE,
        status=status,
        anchor=anchor,
        summary=_one_line(summary, 600),
        details=details,
    )


def _hex_bytes(text: str, source: str, field_name: str) -> bytes:
    value = text.strip()
    if value[:2] in ("0x", "0X"):
        value = value[2:]
    if len(value) % 2 or not re.fullmatch(r"[0-9a-fA-F]*", value):
        raise InputError("not a hex string", source=source, field=field_name)
    return bytes.fromhex(value)


def _canonical_spki(der: bytes) -> bytes:
    """The SubjectPublicKeyInfo re-encoded by cryptography (so equal keys compare equal), or the bytes as given."""
    try:
        key = serialization.load_der_public_key(der)
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, UnsupportedAlgorithm, TypeError):
        return bytes(der)


def _key_set(keys: Iterable[bytes | str]) -> dict[bytes, bytes]:
    """Canonical SPKI → the key as given; hex text is accepted too. Undecodable entries are dropped."""
    out: dict[bytes, bytes] = {}
    for key in keys:
        if isinstance(key, str):
            try:
                key = _hex_bytes(key, "TEE keys", "key")
            except InputError:
                continue
        if isinstance(key, bytes | bytearray | memoryview) and len(key):
            out[_canonical_spki(bytes(key))] = bytes(key)
    return out


def zt_cert_report_data(public_key_der: bytes) -> bytes:
    """SHA-512("zt-cert:" ‖ key DER): the report_data of the quote dstack's gateway takes for each certificate key."""
    return hashlib.sha512(ZT_CERT_PREFIX + public_key_der).digest()


def _quote_summary(quote: Quote) -> dict[str, Any]:
    return {"sha256": _sha256(quote.raw), "size": len(quote.raw), "tee": quote.tee_name}


# ================================================================================================ acme-info


class QuotedKey(BaseModel):
    """One entry of ``quoted_hist_keys``: a historical TLS key and the quote that binds it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    public_key: str = Field(max_length=MAX_PUBLIC_KEY_HEX, description="hex of the key's DER SubjectPublicKeyInfo")
    quote: str | None = Field(default=None, max_length=MAX_QUOTE_TEXT, description="JSON {quote, event_log, ...}")
    attestation: Any = Field(default=None, description="newer dstack's versioned attestation (not interpreted)")


class AcmeInfo(BaseModel):
    """The gateway's ``/.dstack/acme-info`` answer (current dstack ``AcmeInfoResponse`` plus legacy fields)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    account_uri: str | None = Field(default=None, max_length=2048)
    quoted_hist_keys: list[QuotedKey] = Field(default_factory=list, max_length=MAX_ACME_KEYS)
    account_quote: str | None = Field(default=None, max_length=MAX_QUOTE_TEXT)
    account_attestation: Any = None
    # Legacy gateways only.
    hist_keys: list[Annotated[str, Field(max_length=MAX_PUBLIC_KEY_HEX)]] = Field(
        default_factory=list, max_length=MAX_ACME_KEYS
    )
    active_cert: str | None = Field(default=None, max_length=MAX_ACTIVE_CERT)
    base_domain: str | None = Field(default=None, max_length=253)

    def unquoted_keys(self) -> list[str]:
        """Legacy ``hist_keys`` entries (lower-case hex) that no ``quoted_hist_keys`` entry covers."""
        quoted = {_norm_hex(k.public_key) for k in self.quoted_hist_keys}
        out: list[str] = []
        for key in self.hist_keys:
            norm = _norm_hex(key)
            if norm not in quoted and norm not in out:
                out.append(norm)
        return out

    def active_chain(self) -> list[x509.Certificate]:
        """The legacy ``active_cert`` PEM chain (empty when absent). Raises InputError when it does not parse."""
        if not self.active_cert or not self.active_cert.strip():
            return []
        return load_certificates(self.active_cert, "acme-info active_cert")


def as_acme_info(obj: Any) -> AcmeInfo:
    """An :class:`AcmeInfo` from this module's model, or from any object with the same field names holding decoded
    values (bytes for keys and raw quotes, e.g. a source layer's typed answer). Raises InputError when neither."""
    if isinstance(obj, AcmeInfo):
        return obj

    def text(value: Any) -> Any:
        return value.hex() if isinstance(value, bytes | bytearray) else value

    try:
        keys = [
            {
                "public_key": text(getattr(k, "public_key", "")),
                "quote": text(getattr(k, "quote", None)),
                "attestation": text(getattr(k, "attestation", None)),
            }
            for k in getattr(obj, "quoted_hist_keys", ()) or ()
        ]
        return AcmeInfo.model_validate(
            {
                "account_uri": getattr(obj, "account_uri", None),
                "account_quote": text(getattr(obj, "account_quote", None)),
                "account_attestation": text(getattr(obj, "account_attestation", None)),
                "quoted_hist_keys": keys,
                "hist_keys": [text(k) for k in getattr(obj, "hist_keys", ()) or ()],
                "active_cert": getattr(obj, "active_cert", None),
                "base_domain": getattr(obj, "base_domain", None),
            }
        )
    except (ValidationError, TypeError) as exc:
        raise InputError(f"not an acme-info answer ({_one_line(exc, 160)})", source="acme-info") from None


def _norm_hex(text: str) -> str:
    value = text.strip().lower()
    return value[2:] if value.startswith("0x") else value


def parse_acme_info(data: bytes | str, source: str = "acme-info") -> AcmeInfo:
    """Parse the gateway's acme-info JSON. Raises InputError (naming `source` and the field) for bad input."""
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        if len(raw) > MAX_ACME_INFO_BYTES:
            raise InputError(f"{len(raw)} bytes exceeds the limit of {MAX_ACME_INFO_BYTES}", source=source)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError("not UTF-8 text", source=source, offset=exc.start) from None
    else:
        text = data
        if len(text) > MAX_ACME_INFO_BYTES:
            raise InputError(f"{len(text)} characters exceeds the limit of {MAX_ACME_INFO_BYTES}", source=source)
    obj = load_json(text, source)
    if not isinstance(obj, dict):
        raise InputError(f"expected a JSON object, got {json_kind(obj)}", source=source)
    return validate_model(AcmeInfo, obj, source, "an acme-info answer")


@dataclass(frozen=True)
class QuoteEnvelope:
    """A quote as the gateway publishes it: JSON ``{"quote": hex, "event_log": ..., "report_data"?: hex}``."""

    quote: bytes
    form: Literal["json", "hex"]
    event_log_sha256: str | None = None
    event_log_entries: int | None = None
    claimed_report_data: bytes | None = None  # the envelope's own report_data field, when present


def parse_quote_envelope(text: str, source: str) -> QuoteEnvelope:
    """A quote envelope (JSON object, or a bare hex quote). Raises InputError for anything else."""
    stripped = text.strip()
    if not stripped:
        raise InputError("empty: no quote", source=source)
    if not stripped.startswith("{"):
        return QuoteEnvelope(quote=_hex_bytes(stripped, source, "quote"), form="hex")
    obj = load_json(stripped, source)
    if not isinstance(obj, dict):
        raise InputError(f"expected a JSON object, got {json_kind(obj)}", source=source)
    quote_hex = obj.get("quote")
    if not isinstance(quote_hex, str) or not quote_hex.strip():
        raise InputError("no quote hex string", source=source, field="quote")
    quote = _hex_bytes(quote_hex, source, "quote")
    event_log = obj.get("event_log")
    el_sha = el_count = None
    if isinstance(event_log, str) and event_log:
        el_sha = _sha256(event_log.encode("utf-8"))
        try:
            entries = load_json(event_log, source, "event_log")
        except InputError:
            entries = None
        el_count = len(entries) if isinstance(entries, list) else None
    elif isinstance(event_log, list):
        el_count = len(event_log)
    claimed = obj.get("report_data")
    claimed_rd = _hex_bytes(claimed, source, "report_data") if isinstance(claimed, str) and claimed.strip() else None
    return QuoteEnvelope(
        quote=quote, form="json", event_log_sha256=el_sha, event_log_entries=el_count, claimed_report_data=claimed_rd
    )


# ================================================================================================ tee_controlled_key

KeyStatus = Literal[
    "bound",  # binds its key, same TD identity as the account quote, passed DCAP
    "bound-unverified",  # binds its key, same TD identity; its DCAP signature was not checked here
    "other-td",  # binds its key, but the quoting TD differs from the account quote's
    "no-quote",  # published without a quote (older gateways: no dstack agent at issuance)
    "attestation-only",  # only a versioned attestation, whose format this version does not interpret
    "mismatch",  # report_data does not bind the key
    "dcap-failed",  # the caller's DCAP verification refused the quote
    "invalid",  # the key or the quote does not parse
]
_TEE_CONTROLLED = ("bound", "bound-unverified")
_FAILING = ("mismatch", "dcap-failed", "invalid")


@dataclass(frozen=True)
class KeyAssessment:
    index: int
    public_key: bytes
    status: KeyStatus
    problem: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def tee_controlled(self) -> bool:
        return self.status in _TEE_CONTROLLED


def _account_quote(info: AcmeInfo) -> tuple[Quote | None, QuoteEnvelope | None, str | None]:
    if not info.account_quote or not info.account_quote.strip():
        return None, None, "no account quote provided"
    try:
        envelope = parse_quote_envelope(info.account_quote, "acme-info account_quote")
        return parse_quote(envelope.quote), envelope, None
    except InputError as exc:
        return None, None, f"the account quote does not parse: {exc.describe()}"


def _identity_diff(quote: Quote, reference: Quote | None) -> list[str] | None:
    if reference is None:
        return None
    return [
        name
        for name in TD_IDENTITY_FIELDS
        if quote.body.fields.get(name) is None or quote.body.fields.get(name) != reference.body.fields.get(name)
    ]


def assess_quoted_keys(
    info: AcmeInfo,
    verify_quote: Callable[[bytes], bool] | None = None,
    account_quote: Quote | None = None,
) -> list[KeyAssessment]:
    """Assess every ``quoted_hist_keys`` entry; `account_quote` is the TD identity the key quotes must share
    (parsed from `info` when None). `verify_quote(raw)` says whether a raw quote passes DCAP; None: not checked."""
    if account_quote is None:
        account_quote = _account_quote(info)[0]
    return [_assess_key(i, entry, verify_quote, account_quote) for i, entry in enumerate(info.quoted_hist_keys)]


def _assess_key(
    index: int, entry: QuotedKey, verify_quote: Callable[[bytes], bool] | None, reference: Quote | None
) -> KeyAssessment:
    source = f"acme-info quoted_hist_keys[{index}]"
    details: dict[str, Any] = {"index": index}
    try:
        key = _hex_bytes(entry.public_key, source, "public_key")
    except InputError as exc:
        return KeyAssessment(index, b"", "invalid", f"key {index}: public key is {exc.message}", details)
    details.update(public_key=key.hex(), spki_sha256=_sha256(key), key_type=key_label(key))
    label = f"key {index} (SPKI sha256 {_short(_sha256(key))})"
    if not key or details["key_type"] == UNREADABLE_KEY:
        return KeyAssessment(index, key, "invalid", f"{label}: not a DER SubjectPublicKeyInfo", details)
    if entry.attestation is not None:
        details["attestation"] = "present, not interpreted by this version"
    if not entry.quote or not entry.quote.strip():
        if entry.attestation is not None:
            return KeyAssessment(
                index, key, "attestation-only",
                f"{label} carries only a versioned attestation, which this version does not verify", details,
            )
        return KeyAssessment(index, key, "no-quote", f"{label} is published without a quote", details)
    try:
        envelope = parse_quote_envelope(entry.quote, source)
        quote = parse_quote(envelope.quote)
    except InputError as exc:
        return KeyAssessment(index, key, "invalid", f"{label}: its quote does not parse: {exc.describe()}", details)
    expected = zt_cert_report_data(key)
    actual = quote_report_data(quote)
    details["quote"] = _quote_summary(quote)
    details["report_data"] = {
        "formula": ZT_CERT_FORMULA,
        "expected": expected.hex(),
        "actual": actual.hex(),
        "match": expected == actual,
    }
    if envelope.claimed_report_data is not None and envelope.claimed_report_data != actual:
        details["report_data"]["envelope_claim_differs"] = envelope.claimed_report_data.hex()
    if expected != actual:
        return KeyAssessment(
            index, key, "mismatch",
            f'{label}: its quote\'s report_data is not SHA-512("zt-cert:" ‖ key) (expected {_short(expected.hex())}, '
            f"quote has {_short(actual.hex())})",
            details,
        )
    diff = _identity_diff(quote, reference)
    details["td_identity"] = {
        "compared_fields": list(TD_IDENTITY_FIELDS),
        "same_as_account_quote": diff == [] if diff is not None else None,
        "differing_fields": diff,
    }
    if verify_quote is not None:
        try:
            verified = bool(verify_quote(quote.raw))
            failure = "" if verified else "its quote is refused by DCAP verification"
        except Exception as exc:  # the caller's verifier is outside our control; its failure is a finding
            verified = False
            failure = f"DCAP verification of its quote raised {type(exc).__name__}: {_one_line(exc, 160)}"
        details["dcap_verified"] = verified
        if not verified:
            return KeyAssessment(index, key, "dcap-failed", f"{label}: {failure}", details)
    else:
        details["dcap_verified"] = None
    if diff is None:
        return KeyAssessment(
            index, key, "other-td", f"{label}: no account quote to attribute its quoting TD to", details
        )
    if diff:
        return KeyAssessment(
            index, key, "other-td",
            f"{label}: quoted by a TD whose {', '.join(diff)} differ from the account quote's", details,
        )
    return KeyAssessment(index, key, "bound" if verify_quote is not None else "bound-unverified", "", details)


def tee_controlled_keys(info: AcmeInfo | Any, verify_quote: Callable[[bytes], bool] | None = None) -> set[bytes]:
    """The DER SubjectPublicKeyInfos of the keys whose quotes bind them (zt-cert), from the account quote's TD
    identity, and (when `verify_quote` is given) passing it. Without `verify_quote` the key quotes' signatures are
    unchecked, and :func:`check_tee_controlled_key` says so with a warning."""
    return {a.public_key for a in assess_quoted_keys(as_acme_info(info), verify_quote) if a.tee_controlled}


def check_tee_controlled_key(
    acme_info: AcmeInfo | Any | None,
    gateway_quote_verified: bool | None,
    entity: Entity = "gateway",
    *,
    verify_quote: Callable[[bytes], bool] | None = None,
) -> Check:
    """`domain.tee_controlled_key`: the ACME account and the historical TLS keys are bound to the gateway's TEE.

    Fails when: no account URI or account quote; the account quote's report_data is not
    SHA-512("acme-account:" ‖ URI); the account quote failed DCAP (`gateway_quote_verified` False); a key quote does
    not parse, does not bind its key, or is refused by `verify_quote`. Warns when the account quote's DCAP status is
    unknown (None), key quotes were not DCAP-checked (no `verify_quote`), a key quote comes from another TD
    identity, a key has no quote, or there are no quoted keys at all.
    """
    details: dict[str, Any] = {
        "binding_rules": {
            "account": ACME_FORMULA,
            "historical_keys": ZT_CERT_FORMULA,
            "historical_keys_provenance": ZT_CERT_PROVENANCE,
        },
    }
    if acme_info is None:
        return _check(
            CHECK_TEE_CONTROLLED_KEY, entity, CheckStatus.ERROR,
            "TEE-controlled key: no ACME info from the gateway (/.dstack/acme-info) to check", details,
        )
    try:
        acme_info = as_acme_info(acme_info)
    except InputError as exc:
        return _check(CHECK_TEE_CONTROLLED_KEY, entity, CheckStatus.FAIL, f"TEE-controlled key: {exc}", details)
    problems: list[str] = []
    warns: list[str] = []
    notes: list[str] = []
    uri = acme_info.account_uri or ""
    details["account_uri"] = uri
    quote, envelope, quote_problem = _account_quote(acme_info)
    account: dict[str, Any] = {"dcap_verified": gateway_quote_verified}
    details["account_quote"] = account
    if not uri:
        problems.append("no ACME account URI provided")
    if quote_problem:
        problems.append(quote_problem)
    if quote is not None and envelope is not None:
        account.update(_quote_summary(quote))
        account["event_log_entries"] = envelope.event_log_entries
        account["event_log_sha256"] = envelope.event_log_sha256
        actual = quote_report_data(quote)
        if uri:
            expected = acme_report_data(uri)
            details["report_data"] = {
                "formula": ACME_FORMULA, "expected": expected.hex(), "actual": actual.hex(), "match": actual == expected
            }
            if actual != expected:
                problems.append(
                    f'the account quote\'s report_data is not SHA-512("acme-account:" ‖ URI) for \'{uri}\' '
                    f"(expected {_short(expected.hex())}, quote has {_short(actual.hex())})"
                )
        if gateway_quote_verified is False:
            problems.append("the account quote did not pass DCAP verification (see the gateway's hardware checks)")
        elif gateway_quote_verified is None:
            warns.append("the account quote's DCAP verification status is unknown (not verified here)")
    if acme_info.account_attestation is not None:
        notes.append("account_attestation is present but not interpreted by this version")

    assessments = assess_quoted_keys(acme_info, verify_quote, quote)
    details["historical_keys"] = [{**a.details, "status": a.status, "problem": a.problem} for a in assessments]
    for a in assessments:
        if a.status in _FAILING:
            problems.append(a.problem)
        elif not a.tee_controlled:
            warns.append(a.problem)
    unverified = [a.index for a in assessments if a.status == "bound-unverified"]
    if unverified:
        warns.append(
            f"the quotes of key(s) {', '.join(map(str, unverified))} bind their keys but their DCAP signatures were "
            "not verified here"
        )
    unquoted = acme_info.unquoted_keys()
    details["unquoted_hist_keys"] = unquoted
    if unquoted:
        warns.append(f"{len(unquoted)} legacy hist_keys entr{'y has' if len(unquoted) == 1 else 'ies have'} no quote")
    if not assessments:
        warns.append("the gateway publishes no quoted historical keys, so no TLS key is shown to be TEE-controlled")
    tee_keys = [a.public_key.hex() for a in assessments if a.tee_controlled]
    details["tee_keys"] = tee_keys
    details["problems"], details["warnings"], details["notes"] = problems, warns, notes

    anchor = Anchor.QUOTE if gateway_quote_verified else Anchor.NONE
    if problems:
        return _check(
            CHECK_TEE_CONTROLLED_KEY, entity, CheckStatus.FAIL,
            "TEE-controlled key fails: " + "; ".join(problems), details, anchor,
        )
    held = (
        f"ACME account '{uri}' is bound to the gateway quote (sha256 {_short(account['sha256'])}); "
        f"{len(tee_keys)} of {len(assessments)} quoted TLS key(s) bound to the same TD"
    )
    if warns:
        return _check(
            CHECK_TEE_CONTROLLED_KEY, entity, CheckStatus.WARN, held + ", with warnings: " + "; ".join(warns),
            details, anchor,
        )
    return _check(CHECK_TEE_CONTROLLED_KEY, entity, CheckStatus.PASS, held + " and DCAP-verified", details, anchor)


# ================================================================================================ certificate_key


def _bundle_certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle that parses (a bundle may hold one cryptography refuses)."""
    out: list[x509.Certificate] = []
    blocks = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.S)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. negative serial numbers in old roots
        for block in blocks:
            try:
                out.append(x509.load_pem_x509_certificate(block))
            except (ValueError, UnsupportedAlgorithm):
                continue
    return out


def default_trust_store(bundle_paths: Sequence[str | Path] = OS_BUNDLE_PATHS) -> list[x509.Certificate]:
    """The system's web PKI roots: certifi's bundle when importable, else the first OS bundle that exists.
    Empty when none is found."""
    candidates: list[Path] = []
    try:
        import certifi

        candidates.append(Path(certifi.where()))
    except ImportError:
        pass
    candidates.extend(Path(p) for p in bundle_paths)
    for path in candidates:
        try:
            certs = _bundle_certificates(path.read_bytes())
        except OSError:
            continue
        if certs:
            return certs
    return []


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError, x509.DuplicateExtension):
        return []
    return [str(n) for n in san.get_values_for_type(x509.DNSName)]


def _name_covers(pattern: str, name: str) -> bool:
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def _verification_name(domain: str, sans: Sequence[str]) -> tuple[str, str]:
    """The DNS name the chain is validated for, and why that one."""
    base = domain.strip().lower().rstrip(".")
    if base.startswith("*."):
        return f"{PROBE_LABEL}.{base[2:]}", "a name under the wildcard domain"
    if any(_name_covers(s, base) for s in sans):
        return base, "the domain itself"
    probe = f"{PROBE_LABEL}.{base}"
    if any(_name_covers(s, probe) for s in sans):
        return probe, f"an app name under the domain (the gateway serves <app-id>[-port].{base})"
    return base, "the domain itself (the certificate names neither it nor a wildcard under it)"


def _as_chain(served: Sequence[x509.Certificate] | bytes | str | None) -> list[x509.Certificate]:
    if served is None:
        return []
    if isinstance(served, bytes | bytearray | str):
        return load_certificates(served, "served certificate chain") if served else []
    return list(served)


def _cert_entry(cert: x509.Certificate, now: datetime) -> dict[str, Any]:
    spki = spki_der(cert)
    entry: dict[str, Any] = {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": f"{cert.serial_number:x}",
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "valid_at_now": cert.not_valid_before_utc <= now <= cert.not_valid_after_utc,
        "spki_sha256": _sha256(spki),
        "key_type": key_label(spki),
        "pem": cert.public_bytes(serialization.Encoding.PEM).decode(),  # the served certificate, for the reviewer
    }
    names = _dns_names(cert)
    if names:
        entry["dns_names"] = names
    return entry


def check_certificate_key(
    served_chain: Sequence[x509.Certificate] | bytes | str | None,
    tee_keys: Iterable[bytes | str],
    trust_store: Sequence[x509.Certificate] | None,
    domain: str,
    now: datetime,
    entity: Entity = "gateway",
) -> Check:
    """`domain.certificate_key`: the served leaf's key is TEE-controlled and its chain validates for the domain.

    `served_chain` is leaf first (certificates, or PEM/DER bytes); `tee_keys` are DER SubjectPublicKeyInfos (see
    :func:`tee_controlled_keys`); `trust_store` None means :func:`default_trust_store`. The chain is validated at
    `now` for `domain`, or for an app name one level below it when the certificate is a wildcard for the domain.
    """
    now = _utc(now)
    details: dict[str, Any] = {"domain": domain, "now": now.isoformat()}
    try:
        chain = _as_chain(served_chain)
    except InputError as exc:
        return _check(
            CHECK_CERTIFICATE_KEY, entity, CheckStatus.FAIL,
            f"certificate key: the served chain does not parse: {exc.describe()}", details,
        )
    if not chain:
        return _check(
            CHECK_CERTIFICATE_KEY, entity, CheckStatus.ERROR,
            "certificate key: no served certificate chain to check", details,
        )
    if len(chain) > MAX_SERVED_CHAIN:
        return _check(
            CHECK_CERTIFICATE_KEY, entity, CheckStatus.FAIL,
            f"certificate key: the served chain has {len(chain)} certificates, more than {MAX_SERVED_CHAIN}", details,
        )
    try:
        entries = [_cert_entry(c, now) for c in chain]
    except (InputError, ValueError) as exc:
        text = exc.describe() if isinstance(exc, InputError) else _one_line(exc)
        return _check(
            CHECK_CERTIFICATE_KEY, entity, CheckStatus.FAIL, f"certificate key: malformed certificate: {text}", details
        )
    details["chain"] = entries
    leaf = chain[0]
    leaf_spki = spki_der(leaf)
    problems: list[str] = []
    notes: list[str] = []

    # 1. The leaf's key is one the TEE controls.
    tee = _key_set(tee_keys)
    details["tee_keys_sha256"] = sorted(_sha256(k) for k in tee.values())
    matched = tee.get(_canonical_spki(leaf_spki))
    details["key_match"] = {
        "leaf_spki_sha256": _sha256(leaf_spki),
        "matches": matched is not None,
        "matched_key_sha256": _sha256(matched) if matched is not None else None,
    }
    if not tee:
        problems.append("no TEE-controlled key to compare the served certificate's key with")
    elif matched is None:
        problems.append(
            f"the served certificate's key (SPKI sha256 {_short(_sha256(leaf_spki))}) is not one of the "
            f"{len(tee)} TEE-controlled key(s)"
        )

    # 2. Validity at `now`, named (path validation only says "not valid"). Served certificates off the validated path
    #    (e.g. a stale cross-signed root some servers still send) only matter when the path does not validate.
    dated: list[tuple[int, str]] = []
    for index, (cert, entry) in enumerate(zip(chain, entries, strict=True)):
        if now > cert.not_valid_after_utc:
            dated.append((index, f"'{_cn(cert)}' expired at {entry['not_after']} (checked at {now.isoformat()})"))
        elif now < cert.not_valid_before_utc:
            dated.append((index, f"'{_cn(cert)}' is not valid before {entry['not_before']} (checked at "
                                 f"{now.isoformat()})"))
    problems.extend(text for index, text in dated if index == 0)

    # 3. Path validation to the trust store, for the domain.
    roots = list(trust_store) if trust_store is not None else default_trust_store()
    name, why = _verification_name(domain, _dns_names(leaf))
    validation: dict[str, Any] = {
        "name": name,
        "name_reason": why,
        "trust_store": "caller-supplied" if trust_store is not None else "system (certifi or the OS bundle)",
        "trust_store_size": len(roots),
    }
    details["validation"] = validation
    store_missing = not roots
    path: list[x509.Certificate] = []
    if store_missing:
        validation["result"] = "not run: the trust store is empty"
    else:
        try:
            verifier = (
                PolicyBuilder()
                .store(Store(roots))
                .time(now)
                .max_chain_depth(MAX_CHAIN_DEPTH)
                .build_server_verifier(x509.DNSName(name))
            )
            path = verifier.verify(leaf, chain[1:])
        except VerificationError as exc:
            reason = _one_line(str(exc).split(" (encountered processing")[0], 200)
            validation["result"] = f"invalid: {reason}"
            problems.extend(text for index, text in dated if index > 0)
            if not (dated and "validation time" in reason):  # the expiry is already named above
                problems.append(f"the chain does not validate for '{name}': {reason}")
        except (ValueError, TypeError) as exc:
            validation["result"] = f"invalid: {_one_line(exc)}"
            problems.append(f"the chain cannot be validated for '{name}': {_one_line(exc, 160)}")
        else:
            validation["result"] = "valid"
            validation["path"] = [c.subject.rfc4514_string() for c in path]
            extra = [c for c in chain[1:] if c not in path]
            if extra:
                notes.append(f"{len(extra)} served certificate(s) are not on the validated path: "
                             + ", ".join(f"'{_cn(c)}'" for c in extra))
            notes.extend(f"off the validated path: {text}" for index, text in dated if index > 0)
    details["problems"], details["notes"] = problems, notes
    leaf_label = f"'{_cn(leaf)}'"
    if problems:
        return _check(
            CHECK_CERTIFICATE_KEY, entity, CheckStatus.FAIL,
            f"certificate key fails for {leaf_label}: " + "; ".join(problems), details,
        )
    if store_missing:
        return _check(
            CHECK_CERTIFICATE_KEY, entity, CheckStatus.ERROR,
            f"certificate key: {leaf_label} uses a TEE-controlled key, but no trust store is available to validate "
            "its chain", details,
        )
    return _check(
        CHECK_CERTIFICATE_KEY, entity, CheckStatus.PASS,
        f"certificate key holds: {leaf_label} uses TEE-controlled key (SPKI sha256 {_short(_sha256(leaf_spki))}) "
        f"and chains to '{_cn(path[-1])}' for '{name}' at {now.isoformat()}",
        details, Anchor.QUOTE,
    )


# ================================================================================================ dns_caa

_CAA_LABEL = r"[A-Za-z0-9](?:-*[A-Za-z0-9])*"
_CAA_ISSUER = re.compile(rf"[ \t]*({_CAA_LABEL}(?:\.{_CAA_LABEL})*)?[ \t]*")
_CAA_PARAM = re.compile(rf"({_CAA_LABEL})[ \t]*=[ \t]*([\x21-\x3a\x3c-\x7e]*)[ \t]*")
_CAA_TAG = re.compile(r"[A-Za-z0-9]{1,15}")


@dataclass(frozen=True)
class CaaProperty:
    """One CAA resource record, with the issuer value parsed per RFC 8659 §4.2 for issue / issuewild."""

    flags: int
    tag: str  # lower case (tags match case-insensitively)
    value: str
    issuer: str | None = None  # lower case; "" = no CA may issue
    parameters: tuple[tuple[str, str], ...] = ()
    error: str | None = None

    @property
    def critical(self) -> bool:
        return bool(self.flags & CAA_FLAG_CRITICAL)

    def parameter(self, name: str) -> list[str]:
        return [v for k, v in self.parameters if k.lower() == name]

    def text(self) -> str:
        return f'{self.flags} {self.tag} "{self.value}"'


def parse_caa_property(flags: int, tag: str | bytes, value: str | bytes) -> CaaProperty:
    """Parse one CAA record. issue / issuewild values are parsed per RFC 8659 §4.2 (`error` says what is wrong)."""
    tag_text = tag.decode("ascii", errors="replace") if isinstance(tag, bytes) else tag
    raw = value if isinstance(value, bytes) else value.encode("utf-8")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        prop = CaaProperty(flags, tag_text.lower(), text)
        return _with(prop, error="the value is not ASCII") if prop.tag in ("issue", "issuewild") else prop
    prop = CaaProperty(flags, tag_text.lower(), text)
    if not _CAA_TAG.fullmatch(tag_text):
        return _with(prop, error="the tag is not 1-15 ASCII letters and digits")
    if prop.tag not in ("issue", "issuewild"):
        return prop
    match = _CAA_ISSUER.match(text)
    assert match is not None  # the pattern matches the empty string
    issuer = (match.group(1) or "").lower()
    pos = match.end()
    params: list[tuple[str, str]] = []
    if pos < len(text):
        if text[pos] != ";":
            return _with(prop, issuer=issuer, error=f"unexpected {text[pos]!r} at offset {pos} after the issuer")
        pos += 1
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        while pos < len(text):
            param = _CAA_PARAM.match(text, pos)
            if param is None:
                return _with(prop, issuer=issuer, error=f"malformed parameter at offset {pos}")
            params.append((param.group(1), param.group(2)))
            pos = param.end()
            if pos < len(text):
                if text[pos] != ";":
                    return _with(prop, issuer=issuer, error=f"unexpected {text[pos]!r} at offset {pos}")
                pos += 1
                while pos < len(text) and text[pos] in " \t":
                    pos += 1
                if pos == len(text):
                    return _with(prop, issuer=issuer, error="a ';' with no parameter after it")
    names = [k.lower() for k, _ in params]
    dupes = sorted({n for n in names if names.count(n) > 1})
    prop = _with(prop, issuer=issuer, parameters=tuple(params))
    if dupes:
        return _with(prop, error=f"parameter(s) {', '.join(dupes)} appear more than once")
    methods = prop.parameter("validationmethods")
    if methods and not re.fullmatch(rf"{_CAA_LABEL}(?:,{_CAA_LABEL})*", methods[0].replace("_", "-")):
        return _with(prop, error=f"validationmethods '{methods[0]}' is not a comma-separated list of method names")
    return prop


def _with(prop: CaaProperty, **changes: Any) -> CaaProperty:
    values = {
        "flags": prop.flags, "tag": prop.tag, "value": prop.value, "issuer": prop.issuer,
        "parameters": prop.parameters, "error": prop.error,
    }
    values.update(changes)
    return CaaProperty(**values)


def _expected_ca(account_uri: str) -> str | None:
    host = ""
    match = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://([^/:?#]+)", account_uri.strip())
    if match:
        host = match.group(1).lower().rstrip(".")
    for suffix, ca in ACME_CA_DOMAINS.items():
        if host == suffix or host.endswith("." + suffix):
            return ca
    return None


def _judge_issue(prop: CaaProperty, account_uri: str, ca: str | None) -> tuple[str, str]:
    """("pinned" | "deny" | "problem", explanation) for one issue / issuewild property."""
    if prop.error:
        return "problem", f"{prop.text()} is malformed ({prop.error}); CAs may refuse or misread it"
    if not prop.issuer:
        return "deny", f"{prop.text()} authorizes no CA"
    if ca is not None and prop.issuer != ca:
        return "problem", f"{prop.text()} authorizes CA '{prop.issuer}', not '{ca}'"
    uris = prop.parameter("accounturi")
    if not uris:
        return "problem", f"{prop.text()} authorizes any account at '{prop.issuer}' (no accounturi)"
    if uris[0] != account_uri:
        return "problem", f"{prop.text()} authorizes another ACME account ({uris[0]})"
    return "pinned", f"{prop.text()} authorizes only the TEE's account at '{prop.issuer}'"


def _judge_set(
    kind: str, props: list[CaaProperty], account_uri: str, ca: str | None
) -> tuple[list[dict[str, Any]], list[str], bool]:
    """Judge the properties that govern `kind` issuance: (per-record results, problems, all deny)."""
    if not props:
        return [], [f"no property restricts {kind}: any CA may issue"], False
    results, problems = [], []
    for prop in props:
        verdict, why = _judge_issue(prop, account_uri, ca)
        results.append({"record": prop.text(), "verdict": verdict, "explanation": why})
        if verdict == "problem":
            problems.append(f"{kind}: {why}")
    return results, problems, all(r["verdict"] == "deny" for r in results)


class _DnsFailure(Exception):
    pass


def _relevant_caa(
    client: NetClient,
    server: tuple[str, int],
    name: dns.name.Name,
    deadline: float,
    monotonic: Callable[[], float],
    lookups: list[dict[str, Any]],
) -> tuple[dns.name.Name, list[Any]] | None:
    """RFC 8659 §3: the CAA RRset of `name` or of its closest ancestor that has one (None when no level has one)."""
    current = name
    while current != dns.name.root:
        text = current.to_text(omit_final_dot=True)
        remaining = deadline - monotonic()
        if remaining <= 0:
            raise _DnsFailure(f"the DNS lookups ran out of time before querying {text}")
        try:
            wire = client.dns_query(text, "CAA", server, remaining)
        except NetError as exc:
            raise _DnsFailure(f"the CAA query for {text} failed: {exc}") from None
        try:
            message = dns.message.from_wire(wire)
            if message.rcode() == dns.rcode.NXDOMAIN:
                lookups.append({"name": text, "result": "NXDOMAIN"})
                current = current.parent()
                continue
            if message.rcode() != dns.rcode.NOERROR:
                raise _DnsFailure(f"the CAA query for {text} failed: {dns.rcode.to_text(message.rcode())}")
            # The resolver's answer may lead through CNAMEs; Answer follows them as a stub resolver would.
            answer = dns.resolver.Answer(current, dns.rdatatype.CAA, dns.rdataclass.IN, message)
        except dns.exception.DNSException as exc:
            raise _DnsFailure(f"the CAA answer for {text} is malformed: {type(exc).__name__}: {_one_line(exc, 160)}"
                              ) from None
        rrset = answer.rrset
        entry: dict[str, Any] = {"name": text}
        if answer.canonical_name != current:
            entry["cname_target"] = answer.canonical_name.to_text(omit_final_dot=True)
        if rrset is None or len(rrset) == 0:
            lookups.append({**entry, "result": "no CAA records"})
            current = current.parent()
            continue
        lookups.append({**entry, "result": f"{len(rrset)} CAA record(s)"})
        return current, list(rrset)
    return None


def check_dns_caa(
    domain: str,
    resolver_address: tuple[str, int] | None,
    account_uri: str,
    timeout: float = 5.0,
    entity: Entity = "gateway",
    *,
    ca_domain: str | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    client: NetClient | None = None,
) -> Check:
    """`domain.dns_caa`: the CAA records relevant to `domain` let only the TEE's ACME account issue.

    `resolver_address` is the (IP, port) of the recursive resolver to ask; None means offline (the check is
    skipped). The queries go through `client` (recorded, or replayed from a recording); None: a fresh client.
    `timeout` bounds the whole climb. `ca_domain` is the CA's CAA issuer domain; when None it is inferred
    from the account URI's host (Let's Encrypt → letsencrypt.org) and, when that is unknown, any CA named with the
    right accounturi is accepted. Both non-wildcard and wildcard issuance must be restricted: the gateway holds
    ``*.<domain>`` and a certificate for any ``<app>.<domain>`` would do as well for an attacker.
    """
    base = domain.strip().rstrip(".")
    base = base[2:] if base.startswith("*.") else base
    details: dict[str, Any] = {"domain": base, "account_uri": account_uri}
    if resolver_address is None:
        return _check(CHECK_CAA, entity, CheckStatus.SKIP, "DNS CAA: skipped (offline: no DNS resolver)", details)
    host, port = resolver_address
    details["resolver"] = f"{host}:{port}"
    details["notes"] = [
        "answers are not DNSSEC-validated: the resolver is trusted to report the domain's records",
        "names below the domain may carry CAA records of their own; they are not enumerated",
    ]
    if not account_uri:
        return _check(
            CHECK_CAA, entity, CheckStatus.FAIL, "DNS CAA: no ACME account URI to compare the records with", details
        )
    try:
        if not base:
            raise ValueError("empty")
        qname = dns.name.from_text(base)
    except (dns.exception.DNSException, ValueError) as exc:
        return _check(
            CHECK_CAA, entity, CheckStatus.FAIL, f"DNS CAA: '{domain}' is not a domain name ({_one_line(exc, 120)})",
            details,
        )
    if not isinstance(port, int) or not 0 < port < 65536 or not host:
        return _check(CHECK_CAA, entity, CheckStatus.ERROR, f"DNS CAA: bad resolver address {host}:{port}", details)
    lookups: list[dict[str, Any]] = []
    details["lookups"] = lookups
    try:
        found = _relevant_caa(client or NetClient(), (host, port), qname, monotonic() + timeout, monotonic, lookups)
    except _DnsFailure as exc:
        return _check(CHECK_CAA, entity, CheckStatus.ERROR, f"DNS CAA: {exc}", details)
    if found is None and lookups and lookups[-1]["result"] == "NXDOMAIN":
        # Every top-level domain in use exists: a resolver denying this one cannot be asked (a sandbox, a
        # filtering resolver), so its silence says nothing about the domain's CAA records.
        return _check(
            CHECK_CAA, entity, CheckStatus.ERROR,
            f"DNS CAA: the resolver says the top-level domain '{lookups[-1]['name']}' does not exist (NXDOMAIN): "
            f"its answers cannot decide the CAA records of '{base}'", details,
        )
    if found is None:
        return _check(
            CHECK_CAA, entity, CheckStatus.FAIL,
            f"DNS CAA: no CAA record at '{base}' or any parent domain: any CA may issue certificates for it",
            details,
        )
    owner, rdatas = found
    owner_text = owner.to_text(omit_final_dot=True)
    details["relevant_name"] = owner_text
    details["inherited"] = owner != qname
    props = [parse_caa_property(r.flags, r.tag, r.value) for r in rdatas]
    ca = ca_domain.lower().rstrip(".") if ca_domain else _expected_ca(account_uri)
    details["expected_ca"] = ca
    if ca is None:
        details["notes"].append("the CA could not be inferred from the account URI: any CA named with it is accepted")
    details["records"] = [
        {
            "flags": p.flags,
            "critical": p.critical,
            "tag": p.tag,
            "value": p.value,
            "issuer": p.issuer,
            "parameters": {k: v for k, v in p.parameters},
            "error": p.error,
        }
        for p in props
    ]
    issue = [p for p in props if p.tag == "issue"]
    wild = [p for p in props if p.tag == "issuewild"]
    critical_unknown = [p for p in props if p.critical and p.tag not in CAA_KNOWN_TAGS]
    ignored = [p.text() for p in props if p.tag not in ("issue", "issuewild")]
    if ignored:
        details["notes"].append(f"not about issuance, ignored: {'; '.join(ignored)}")
    if wild:  # RFC 8659 §4.3: issuewild, when present, governs wildcard issuance and issue no longer does
        issue_results, issue_problems, issue_deny = _judge_set("non-wildcard issuance", issue, account_uri, ca)
        wild_results, wild_problems, wild_deny = _judge_set("wildcard issuance (issuewild)", wild, account_uri, ca)
    else:
        issue_results, issue_problems, issue_deny = _judge_set(
            "issuance (issue; with no issuewild it governs wildcards too)", issue, account_uri, ca
        )
        wild_results, wild_problems, wild_deny = issue_results, [], issue_deny
    details["non_wildcard"] = {"governed_by": "issue", "records": issue_results}
    details["wildcard"] = {"governed_by": "issuewild" if wild else "issue", "records": wild_results}
    methods = sorted({m for p in issue + wild for m in p.parameter("validationmethods")})
    details["validationmethods"] = methods
    where = f"'{owner_text}'" + (f" (inherited by '{base}')" if owner != qname else "")
    if critical_unknown:
        details["critical_unknown"] = [p.text() for p in critical_unknown]
        return _check(
            CHECK_CAA, entity, CheckStatus.WARN,
            f"DNS CAA at {where}: a critical property this check does not know "
            f"({critical_unknown[0].text()}) forbids issuance by every CA (RFC 8659 §4.1), the TEE's account included",
            details,
        )
    problems = issue_problems + wild_problems
    details["problems"] = problems
    if problems:
        return _check(
            CHECK_CAA, entity, CheckStatus.FAIL,
            f"DNS CAA at {where} does not restrict issuance to the TEE's ACME account: " + "; ".join(problems),
            details,
        )
    if wild_deny:
        which = "any certificate" if issue_deny else "wildcard certificates"
        return _check(
            CHECK_CAA, entity, CheckStatus.WARN,
            f"DNS CAA at {where} forbids {which} to every CA, the TEE's account included: nothing else may issue, "
            f"but the gateway cannot renew its *.{base} certificate", details,
        )
    with_methods = f" (validation methods: {', '.join(methods)})" if methods else ""
    if issue_deny:
        return _check(
            CHECK_CAA, entity, CheckStatus.PASS,
            f"DNS CAA at {where} lets only ACME account '{account_uri}' issue wildcard certificates and no CA issue "
            f"others{with_methods}",
            details,
        )
    return _check(
        CHECK_CAA, entity, CheckStatus.PASS,
        f"DNS CAA at {where} lets only ACME account '{account_uri}' issue, wildcard and non-wildcard{with_methods}",
        details,
    )


# ================================================================================================ ct_log


class CtEntry(BaseModel):
    """One row of crt.sh's JSON listing."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int = Field(ge=1, lt=2**63)
    issuer_ca_id: int | None = None
    issuer_name: str = Field(default="", max_length=4096)
    common_name: str | None = Field(default=None, max_length=4096)
    name_value: str = Field(default="", max_length=1 << 16)
    entry_timestamp: str | None = Field(default=None, max_length=64)
    not_before: datetime
    not_after: datetime
    serial_number: str = Field(default="", max_length=256)

    def names(self) -> list[str]:
        return [n.strip() for n in self.name_value.splitlines() if n.strip()]


@dataclass
class _CtGroup:
    """Log entries for one certificate (a precertificate and its final certificate share issuer and serial)."""

    entries: list[CtEntry]

    @property
    def first(self) -> CtEntry:
        return self.entries[0]

    def label(self) -> str:
        e = self.first
        ids = ", ".join(str(x.id) for x in self.entries)
        return f"crt.sh id {ids} (serial {_short(e.serial_number, 20)}, {e.common_name or e.names()[:1]})"


def _serial_key(serial: str) -> str:
    return serial.strip().lower().replace(":", "").lstrip("0")


def _listing(client: NetClient, url: str, query: str, source: str) -> tuple[list[CtEntry], int, int]:
    """(valid rows, malformed rows, rows cut by MAX_CT_ROWS) of one crt.sh JSON query. Raises NetError / InputError."""
    response = client.get(url, params={"q": query, "output": "json"})
    if not response.ok:
        raise NetError(response.url, response.status_problem())
    text = response.content.decode("utf-8", errors="replace")
    obj = load_json(text, source) if text.strip() else []
    if not isinstance(obj, list):
        raise InputError(f"expected a JSON array, got {json_kind(obj)}", source=source)
    cut = max(0, len(obj) - MAX_CT_ROWS)
    rows, bad = [], 0
    for item in obj[:MAX_CT_ROWS]:
        try:
            rows.append(CtEntry.model_validate(item))
        except ValidationError:
            bad += 1
    return rows, bad, cut


def _entry_json(e: CtEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "issuer": e.issuer_name,
        "serial": e.serial_number,
        "names": e.names()[:20],
        "not_before": _utc(e.not_before).isoformat(),
        "not_after": _utc(e.not_after).isoformat(),
    }


def _fetch_cert(client: NetClient, url: str, entry: CtEntry) -> tuple[x509.Certificate | None, int, str]:
    """(certificate or None, body bytes, problem) for one crt.sh id."""
    try:
        response: NetResponse = client.get(url, params={"d": str(entry.id)})
    except NetError as exc:
        return None, 0, f"fetch failed: {exc.problem}"
    size = len(response.content)
    if not response.ok:
        return None, size, f"fetch failed: {response.status_problem()}"
    if size > MAX_CERT_BYTES:
        return None, size, f"answer of {size} bytes is too large for a certificate"
    try:
        cert = load_certificates(response.content, f"crt.sh id {entry.id}")[0]
        serial = f"{cert.serial_number:x}"
    except (InputError, ValueError) as exc:
        text = exc.describe() if isinstance(exc, InputError) else _one_line(exc, 160)
        return None, size, f"not a certificate: {text}"
    if entry.serial_number and _serial_key(entry.serial_number) != serial.lstrip("0"):
        return None, size, f"crt.sh answered a certificate with serial {serial}, the listing says {entry.serial_number}"
    return cert, size, ""


def _is_precert(cert: x509.Certificate) -> bool:
    try:
        cert.extensions.get_extension_for_class(x509.PrecertPoison)
    except (x509.ExtensionNotFound, ValueError, x509.DuplicateExtension):
        return False
    return True


def check_ct_log(
    client: NetClient,
    domain: str,
    tee_keys: Iterable[bytes | str],
    crtsh_url: str,
    now: datetime,
    max_entries: int = 200,
    deadline: float = 60.0,
    entity: Entity = "gateway",
    *,
    max_total_bytes: int = DEFAULT_CT_MAX_BYTES,
    include_expired: bool = False,
    monotonic: Callable[[], float] = time.monotonic,
) -> Check:
    """`domain.ct_log`: every certificate logged for `domain` and its subdomains uses a TEE-controlled key.

    Lists crt.sh (`crtsh_url`, e.g. :data:`DEFAULT_CRTSH_URL`) for ``<domain>`` and ``%.<domain>``, merges
    precertificate/certificate pairs (same issuer and serial), drops certificates expired at `now` unless
    `include_expired`, then fetches the newest first until `max_entries` certificates, `max_total_bytes` bytes or
    `deadline` seconds (from the call) are used up. Fails listing each certificate whose key is not TEE-controlled;
    warns when a bound or a bad answer left some unchecked; errors when the listing could not be had; skips when
    `client` is offline.
    """
    started = monotonic()
    now = _utc(now)
    base = domain.strip().rstrip(".").lower()
    base = base[2:] if base.startswith("*.") else base
    url = crtsh_url if crtsh_url.endswith("/") else crtsh_url + "/"
    scope = "all logged certificates" if include_expired else f"certificates not expired at {now.isoformat()}"
    tee = set(_key_set(tee_keys))
    details: dict[str, Any] = {
        "domain": base,
        "crtsh_url": url,
        "queries": [base, f"%.{base}"],
        "scope": scope,
        "bounds": {"max_entries": max_entries, "max_total_bytes": max_total_bytes, "deadline_seconds": deadline},
        "tee_keys": len(tee),
        "notes": ["crt.sh is trusted to list every logged certificate; SCTs and log signatures are not checked"],
    }
    if not tee:
        details["notes"].append("no TEE-controlled key was given: every certificate in scope counts as an offender")

    rows: dict[int, CtEntry] = {}
    malformed_rows = cut_rows = 0
    for query in (base, f"%.{base}"):
        try:
            found, bad, cut = _listing(client, url, query, f"crt.sh listing for {query}")
        except NetError as exc:
            if exc.offline:
                return _check(CHECK_CT_LOG, entity, CheckStatus.SKIP, f"CT log: skipped ({exc.problem})", details)
            return _check(
                CHECK_CT_LOG, entity, CheckStatus.ERROR, f"CT log: crt.sh listing for '{query}' failed: {exc}", details
            )
        except InputError as exc:
            return _check(
                CHECK_CT_LOG, entity, CheckStatus.ERROR,
                f"CT log: crt.sh listing for '{query}' is malformed: {exc.describe()}", details,
            )
        malformed_rows += bad
        cut_rows += cut
        for row in found:
            rows.setdefault(row.id, row)
    details["listing"] = {"entries": len(rows), "malformed_rows": malformed_rows, "rows_beyond_limit": cut_rows}

    groups: dict[tuple[Any, ...], _CtGroup] = {}
    for row in sorted(rows.values(), key=lambda r: r.id):
        key = (row.issuer_ca_id, _serial_key(row.serial_number)) if row.serial_number else ("id", row.id)
        groups.setdefault(key, _CtGroup([])).entries.append(row)
    duplicates = sum(len(g.entries) - 1 for g in groups.values())
    in_scope = [g for g in groups.values() if include_expired or _utc(g.first.not_after) >= now]
    expired = len(groups) - len(in_scope)
    in_scope.sort(key=lambda g: (_utc(g.first.not_before), g.first.id), reverse=True)
    details["certificates"] = {
        "distinct": len(groups),
        "precertificate_duplicates_merged": duplicates,
        "in_scope": len(in_scope),
        "expired_out_of_scope": expired,
    }

    offenders: list[dict[str, Any]] = []
    unchecked: list[dict[str, Any]] = []
    checked = 0
    total_bytes = 0
    fetches = 0
    bound_hit: str | None = None
    for index, group in enumerate(in_scope):
        if bound_hit is None:
            if fetches >= max_entries:
                bound_hit = f"the limit of {max_entries} certificate fetches"
            elif total_bytes >= max_total_bytes:
                bound_hit = f"the limit of {max_total_bytes} bytes"
            elif monotonic() - started >= deadline:
                bound_hit = f"the deadline of {deadline:g} s"
        if bound_hit is not None:
            details["not_checked_after_bound"] = [_entry_json(g.first) for g in in_scope[index : index + 50]]
            break
        cert, problem = None, ""
        for entry in group.entries:  # a precertificate and its certificate carry the same key: one answer will do
            if fetches >= max_entries or monotonic() - started >= deadline:
                break
            fetches += 1
            cert, size, problem = _fetch_cert(client, url, entry)
            total_bytes += size
            if cert is not None:
                break
        if cert is None:
            unchecked.append({**_entry_json(group.first), "problem": problem or "not fetched (bound reached)"})
            continue
        try:
            spki = spki_der(cert)
            subject = cert.subject.rfc4514_string()
        except (InputError, ValueError) as exc:
            text = exc.describe() if isinstance(exc, InputError) else _one_line(exc, 160)
            unchecked.append({**_entry_json(group.first), "problem": f"malformed certificate: {text}"})
            continue
        checked += 1
        if _canonical_spki(spki) not in tee:
            offenders.append(
                {
                    **_entry_json(group.first),
                    "ids": [e.id for e in group.entries],
                    "spki_sha256": _sha256(spki),
                    "key_type": key_label(spki),
                    "precertificate": _is_precert(cert),
                    "subject": subject,
                }
            )
    not_reached = len(in_scope) - checked - len(unchecked)
    details["fetched"] = {"requests": fetches, "bytes": total_bytes, "checked": checked, "not_checked": len(unchecked)}
    details["bound_reached"] = bound_hit
    details["offenders"] = offenders
    details["unchecked"] = unchecked[:100]
    details["elapsed_seconds"] = round(monotonic() - started, 3)
    what = f"'{base}' and '*.{base}'"
    if offenders:
        named = "; ".join(
            f"crt.sh id {o['id']} ({', '.join(o['names'][:3]) or o['subject']}, issued {o['not_before'][:10]}, "
            f"SPKI sha256 {_short(o['spki_sha256'])})"
            for o in offenders[:5]
        )
        more = f" and {len(offenders) - 5} more" if len(offenders) > 5 else ""
        return _check(
            CHECK_CT_LOG, entity, CheckStatus.FAIL,
            f"CT log: {len(offenders)} of {checked} checked {scope} for {what} use a key that is not TEE-controlled: "
            f"{named}{more}",
            details,
        )
    shortfalls = []
    if bound_hit is not None or not_reached > 0:
        shortfalls.append(f"{not_reached} not fetched ({bound_hit or 'bound reached'})")
    if unchecked:
        shortfalls.append(f"{len(unchecked)} could not be checked ({unchecked[0]['problem']})")
    if malformed_rows:
        shortfalls.append(f"{malformed_rows} malformed listing row(s) skipped")
    if cut_rows:
        shortfalls.append(f"{cut_rows} listing rows beyond {MAX_CT_ROWS} ignored")
    if in_scope and checked == 0 and unchecked and bound_hit is None:
        return _check(
            CHECK_CT_LOG, entity, CheckStatus.ERROR,
            f"CT log: none of the {len(in_scope)} {scope} for {what} could be checked: " + "; ".join(shortfalls),
            details,
        )
    if shortfalls:
        return _check(
            CHECK_CT_LOG, entity, CheckStatus.WARN,
            f"CT log: the {checked} checked {scope} for {what} use TEE-controlled keys, but the list is incomplete: "
            + "; ".join(shortfalls),
            details,
        )
    if not in_scope:
        return _check(
            CHECK_CT_LOG, entity, CheckStatus.WARN,
            f"CT log: crt.sh lists no {scope} for {what} ({len(groups)} distinct certificate(s) in total)", details,
        )
    return _check(
        CHECK_CT_LOG, entity, CheckStatus.PASS,
        f"CT log: all {checked} certificate(s) in scope ({scope}) for {what} use TEE-controlled keys "
        f"({len(rows)} log entries, {duplicates} precertificate duplicate(s) merged)",
        details,
    )

