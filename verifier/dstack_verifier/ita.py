"""Optional second opinion from Intel Trust Authority (ITA): appraise the quote, verify the token ourselves.

The quote goes to ``POST {base}/appraisal/v2/attest`` as ``{"tdx": {"quote": <base64>}}`` with the API key in the
``x-api-key`` header (which :mod:`net` never records); ITA answers ``{"token": <JWT>}``. ITA is not trusted
blindly: the token's signature is checked with the key of the JWKS at ``{portal}/certs`` whose ``kid`` matches
(PS384 or RS256, the two algorithms Intel's clients accept), that key's ``x5c`` chain is checked up to a
self-signed root (pinned by SHA-256 when the options name one), with validity and CRLs (distribution points of
the chain) at the verification instant, and ``exp``/``nbf``/``iat`` likewise. Then the token's claims (v2: under
``tdx``; v1: top level) are compared with the fields of the quote we verified, and ITA's TCB status with ours.

Every exchange (attest answer, JWKS, CRLs) goes through the injected :class:`NetClient`, so a recorded run
replays offline at the same instant.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID
from pydantic import BaseModel, ConfigDict

from .errors import InputError
from .jsontext import json_kind, load_json
from .jws import b64url, decode_compact
from .model import Check, CheckStatus, Entity
from .net import NetClient, NetError
from .quote.names import subject_label as _cn
from .quote.structure import Quote
from .validation import validate_model

__all__ = [
    "CHECK_ID",
    "DEFAULT_BASE_URL",
    "DEFAULT_JWKS_URL",
    "ITA_ANCHOR",
    "ItaAnswer",
    "ItaError",
    "ItaOptions",
    "TokenInvalid",
    "TokenTrust",
    "appraise",
    "check_ita",
    "compare_claims",
    "parse_token",
    "verify_token",
]

CHECK_ID = "hardware.ita_appraisal"
ITA_ANCHOR = "ita-root"
DEFAULT_BASE_URL = "https://api.trustauthority.intel.com"
DEFAULT_JWKS_URL = "https://portal.trustauthority.intel.com/certs"
ATTEST_PATH = "/appraisal/v2/attest"
MAX_X5C = 10  # Intel's clients refuse longer chains (AtsCertChainMaxLen)
# RFC 7518 §3.3 / §3.5: RS256 is PKCS#1 v1.5 with SHA-256; PS384 is PSS with SHA-384, MGF1-SHA-384, 48-byte salt.
_ALGORITHMS: dict[str, tuple[Any, hashes.HashAlgorithm]] = {
    "RS256": (padding.PKCS1v15(), hashes.SHA256()),
    "PS384": (padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48), hashes.SHA384()),
}
# (claim, quote body field); the first six must be in the token, the others are compared when present.
_REQUIRED = (("tdx_mrtd", "mrtd"), ("tdx_rtmr0", "rtmr0"), ("tdx_rtmr1", "rtmr1"), ("tdx_rtmr2", "rtmr2"),
             ("tdx_rtmr3", "rtmr3"), ("tdx_report_data", "reportdata"))
_OPTIONAL = (("tdx_mrseam", "mrseam"), ("tdx_mrsignerseam", "mrsignerseam"), ("tdx_mrconfigid", "mrconfig"),
             ("tdx_mrowner", "mrowner"), ("tdx_mrownerconfig", "mrownerconfig"))
_SUMMARY_CLAIMS = ("iss", "jti", "ver", "attester_type", "attester_tcb_status", "attester_tcb_date",
                   "attester_advisory_ids", "tdx_is_debuggable", "policy_ids_matched", "policy_ids_unmatched")


@dataclass(frozen=True)
class ItaOptions:
    """Where ITA is and how we reach it. ``trusted_roots_sha256``: SHA-256 (hex) of the root certificates the
    token signing chain may end at; empty accepts the self-signed root the JWKS presents and names it."""

    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    jwks_url: str = DEFAULT_JWKS_URL
    trusted_roots_sha256: tuple[str, ...] = ()
    policy_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.api_key.strip():
            raise ValueError("the Intel Trust Authority API key is empty")

    @property
    def attest_url(self) -> str:
        return self.base_url.rstrip("/") + ATTEST_PATH


class ItaError(Exception):
    """ITA could not be asked, or its answer is unusable. One line; ``offline`` when the client refused."""

    def __init__(self, message: str, *, offline: bool = False) -> None:
        self.offline = offline
        super().__init__(message)


class TokenInvalid(Exception):
    """The token does not verify (signature, chain, CRL, time or form). One line naming what failed."""


@dataclass(frozen=True)
class ItaAnswer:
    """ITA's token, split and decoded but not yet verified."""

    token: str
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes

    @property
    def tdx(self) -> dict[str, Any]:
        """The TDX claims: nested under ``tdx`` in v2 tokens, at the top level in v1 tokens."""
        nested = self.claims.get("tdx")
        return nested if isinstance(nested, dict) else self.claims


@dataclass(frozen=True)
class TokenTrust:
    """What the token's verification rested on."""

    alg: str
    kid: str
    chain: list[dict[str, str]]  # leaf first
    root_sha256: str
    root_pinned: bool
    revocation: list[str]


class _AttestAnswer(BaseModel):
    token: str


class _Jwk(BaseModel):
    model_config = ConfigDict(extra="allow")
    kid: str
    kty: str = ""
    n: str | None = None
    e: str | None = None
    x5c: list[str] = []


class _Jwks(BaseModel):
    keys: list[_Jwk]


def _model(cls: type[BaseModel], data: bytes, source: str) -> Any:
    obj = load_json(data.decode("utf-8", errors="replace"), source)
    if not isinstance(obj, dict):
        raise InputError(f"expected a JSON object, got {json_kind(obj)}", source=source)
    return validate_model(cls, obj, source)


def parse_token(token: str) -> ItaAnswer:
    """Split a compact JWS and decode its header and claims; InputError names the part that is malformed."""
    jws = decode_compact(token.strip(), "ITA token")
    return ItaAnswer(token=token.strip(), header=jws.header, claims=jws.claims, signing_input=jws.signing_input,
                     signature=jws.signature)


def appraise(client: NetClient, quote: bytes, options: ItaOptions) -> ItaAnswer:
    """Ask ITA to appraise a TDX quote; raises ItaError (offline, unreachable, rejected key, bad answer)."""
    body: dict[str, Any] = {"tdx": {"quote": base64.b64encode(quote).decode("ascii")}}
    if options.policy_ids:
        body["policy_ids"] = list(options.policy_ids)
    url = options.attest_url
    try:
        response = client.post_json(url, body, headers={"x-api-key": options.api_key})
    except NetError as exc:
        raise ItaError(f"ITA is unreachable: {exc}", offline=exc.offline) from None
    if response.status in (401, 403):
        raise ItaError(f"ITA rejected the API key (HTTP {response.status}) at {url}: "
                       "check the key configured for ITA")
    if not response.ok:
        raise ItaError(f"ITA answered {response.status_problem()} ({url})")
    try:
        return parse_token(_model(_AttestAnswer, response.content, f"ITA answer {url}").token)
    except (InputError, UnicodeError, binascii.Error) as exc:
        raise ItaError(f"ITA's answer is malformed: {exc}") from None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _x5c_chain(key: _Jwk) -> list[x509.Certificate]:
    if not key.x5c:
        raise TokenInvalid(f"JWKS key '{key.kid}' has no x5c certificate chain")
    if len(key.x5c) > MAX_X5C:
        raise TokenInvalid(f"JWKS key '{key.kid}' has {len(key.x5c)} x5c certificates (at most {MAX_X5C})")
    chain = []
    for i, text in enumerate(key.x5c):
        try:
            chain.append(x509.load_der_x509_certificate(base64.b64decode(text, validate=True)))
        except (ValueError, binascii.Error) as exc:
            raise TokenInvalid(f"JWKS key '{key.kid}': x5c[{i}] is not a DER certificate ({exc})") from None
    return chain


def _check_chain(chain: list[x509.Certificate], when: datetime, options: ItaOptions) -> tuple[str, bool]:
    """Links, CA flags and validity up to a self-signed root; returns (root SHA-256, pinned)."""
    for cert in chain:
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            raise TokenInvalid(f"certificate '{_cn(cert)}' is not valid at {when.isoformat()} (valid "
                               f"{cert.not_valid_before_utc.isoformat()} to {cert.not_valid_after_utc.isoformat()})")
    root = chain[-1]
    for child, issuer in zip(chain, [*chain[1:], root], strict=True):
        try:
            child.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            what = "is not self-signed" if child is issuer else f"is not signed by '{_cn(issuer)}'"
            raise TokenInvalid(f"certificate '{_cn(child)}' {what}") from None
        if issuer is not chain[0] and not _is_ca(issuer):
            raise TokenInvalid(f"certificate '{_cn(issuer)}' issues certificates but is not a CA")
    root_sha = hashlib.sha256(root.public_bytes(Encoding.DER)).hexdigest()
    pins = {p.lower() for p in options.trusted_roots_sha256}
    if pins and root_sha not in pins:
        raise TokenInvalid(f"the token signing chain ends at '{_cn(root)}' (sha256 {root_sha}), "
                           "which is not a pinned ITA root")
    return root_sha, bool(pins)


def _check_crls(chain: list[x509.Certificate], when: datetime, client: NetClient) -> list[str]:
    """Each certificate below the root against the CRL its distribution point names (as Intel's clients do)."""
    notes = []
    for cert, issuer in itertools.pairwise(chain):
        try:
            points = cert.extensions.get_extension_for_oid(ExtensionOID.CRL_DISTRIBUTION_POINTS).value
        except x509.ExtensionNotFound:
            notes.append(f"'{_cn(cert)}': no CRL distribution point")
            continue
        urls = [n.value for p in points for n in (p.full_name or []) if isinstance(n, x509.UniformResourceIdentifier)]
        if not urls:
            notes.append(f"'{_cn(cert)}': no CRL URL in its distribution point")
            continue
        try:
            crl = x509.load_der_x509_crl(client.get_ok(urls[0]).content)
        except NetError as exc:
            raise ItaError(f"the CRL for '{_cn(cert)}' could not be fetched: {exc}", offline=exc.offline) from None
        except ValueError as exc:
            raise TokenInvalid(f"the CRL at {urls[0]} is not a DER CRL ({exc})") from None
        if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            raise TokenInvalid(f"the CRL at {urls[0]} is not signed by '{_cn(issuer)}'")
        if crl.next_update_utc is None or when >= crl.next_update_utc:
            raise TokenInvalid(f"the CRL at {urls[0]} is out of date at {when.isoformat()}")
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise TokenInvalid(f"certificate '{_cn(cert)}' is revoked by the CRL at {urls[0]}")
        notes.append(f"'{_cn(cert)}': not revoked ({urls[0]}, next update {crl.next_update_utc.isoformat()})")
    return notes


def _check_times(claims: dict[str, Any], now: int) -> None:
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name)
        if value is None and name == "exp":
            raise TokenInvalid("the token has no exp (expiry) claim")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise TokenInvalid(f"the token's {name} claim is not a number")
    at = datetime.fromtimestamp(now, UTC).isoformat()
    if now >= claims["exp"]:
        raise TokenInvalid(f"the token expired at {datetime.fromtimestamp(claims['exp'], UTC).isoformat()} "
                           f"(verification instant {at})")
    for name in ("nbf", "iat"):
        if claims.get(name) is not None and claims[name] > now:
            raise TokenInvalid(f"the token's {name} is after the verification instant {at}")


def _check_signature(answer: ItaAnswer, key: _Jwk, leaf: x509.Certificate, alg: str) -> None:
    public = leaf.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise TokenInvalid(f"the token signing certificate '{_cn(leaf)}' does not hold an RSA key")
    if key.n is not None and key.e is not None:
        numbers = public.public_numbers()
        try:
            same = (int.from_bytes(b64url(key.n, "ITA token", "n"), "big"),
                    int.from_bytes(b64url(key.e, "ITA token", "e"), "big")) == (
                numbers.n, numbers.e)
        except InputError:
            same = False
        if not same:
            raise TokenInvalid(f"JWKS key '{key.kid}': n/e differ from the key of its x5c certificate")
    pad, digest = _ALGORITHMS[alg]
    try:
        public.verify(answer.signature, answer.signing_input, pad, digest)
    except InvalidSignature:
        raise TokenInvalid(f"the token's {alg} signature does not verify with key '{key.kid}'") from None


def verify_token(answer: ItaAnswer, jwks: bytes, *, now: int, options: ItaOptions,
                 client: NetClient) -> TokenTrust:
    """Signature with the JWKS key of the token's kid, its x5c chain and CRLs, and exp/nbf/iat at ``now``.

    Raises TokenInvalid when the token does not verify, ItaError when a CRL cannot be fetched."""
    alg, kid = answer.header.get("alg"), answer.header.get("kid")
    if alg not in _ALGORITHMS:
        raise TokenInvalid(f"token algorithm {alg!r} is not one of {', '.join(_ALGORITHMS)}")
    if not isinstance(kid, str) or not kid:
        raise TokenInvalid("the token header has no kid")
    try:
        keys = _model(_Jwks, jwks, f"JWKS {options.jwks_url}").keys
    except InputError as exc:
        raise TokenInvalid(str(exc)) from None
    key = next((k for k in keys if k.kid == kid), None)
    if key is None:
        raise TokenInvalid(f"no key with kid '{kid}' in the JWKS at {options.jwks_url}")
    chain = _x5c_chain(key)
    when = datetime.fromtimestamp(now, UTC)
    try:  # the signature first, then trust in its key: the CRLs (network) last
        _check_signature(answer, key, chain[0], alg)
        _check_times(answer.claims, now)
        root_sha, pinned = _check_chain(chain, when, options)
        revocation = _check_crls(chain, when, client)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # cryptography parses keys and extensions lazily
        raise TokenInvalid(f"JWKS key '{kid}': malformed x5c certificate ({exc})") from None
    return TokenTrust(alg=alg, kid=kid, root_sha256=root_sha, root_pinned=pinned, revocation=revocation,
                      chain=[{"subject": c.subject.rfc4514_string(), "not_after": c.not_valid_after_utc.isoformat()}
                             for c in chain])


def _claim_bytes(value: Any, size: int) -> bytes | None:
    """A register claim: hex (v2 tokens), or base64 (v1 tokens' report data); None when neither fits."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        raw = bytes.fromhex(text) if len(text) == 2 * size else base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        return None
    return raw if len(raw) == size else None


def compare_claims(tdx: dict[str, Any], quote: Quote) -> tuple[list[dict[str, Any]], list[str]]:
    """(comparison table, problems): each register claim against the quote's field."""
    rows, problems = [], []
    for claim, name in _REQUIRED + _OPTIONAL:
        ours: bytes = quote.body[name]
        if claim not in tdx:
            if (claim, name) in _REQUIRED:
                problems.append(f"the token has no {claim} claim")
                rows.append({"claim": claim, "quote_field": name, "token": None, "quote": ours.hex(), "match": False})
            continue
        theirs = _claim_bytes(tdx[claim], len(ours))
        match = theirs == ours
        rows.append({"claim": claim, "quote_field": name, "match": match, "quote": ours.hex(),
                     "token": theirs.hex() if theirs is not None else str(tdx[claim])[:200]})
        if not match:
            problems.append(f"{claim} differs: token {rows[-1]['token']}, quote {ours.hex()}")
    return rows, problems


def _check(status: CheckStatus, summary: str, entity: Entity, details: dict[str, Any]) -> Check:
    return Check(id=CHECK_ID, entity=entity, phase="hardware", status=status, anchor=ITA_ANCHOR, summary=summary,
                 details=details)


def _claims_summary(answer: ItaAnswer) -> dict[str, Any]:
    found = {k: answer.claims.get(k) for k in ("iss", "jti", "ver", "iat", "nbf", "exp") if k in answer.claims}
    found.update({k: answer.tdx[k] for k in _SUMMARY_CLAIMS if k in answer.tdx and k not in found})
    return json.loads(json.dumps(found, default=str))  # JSON-safe whatever ITA put there


def check_ita(quote: Quote, tcb_status: str | None, *, client: NetClient | None, now: int,
              options: ItaOptions | None, entity: Entity = "app") -> Check:
    """``hardware.ita_appraisal``: ITA's token for this quote verifies and its claims equal the quote's fields.

    SKIP without an API key (the appraisal is optional), offline, or for a non-TDX quote; ERROR when ITA is
    unreachable or answers an error; FAIL when the token does not verify or a claim differs; WARN when only
    ITA's TCB status differs from ours (ITA may use other collateral or another TCB evaluation data number).
    """
    if options is None:
        return _check(CheckStatus.SKIP, "no Intel Trust Authority API key configured (optional)", entity,
                      {"reason": "no API key"})
    details: dict[str, Any] = {"attest_url": options.attest_url, "jwks_url": options.jwks_url}
    if not quote.is_tdx:
        return _check(CheckStatus.SKIP, "Intel Trust Authority appraisal: not a TDX quote", entity, details)
    if client is None:
        return _check(CheckStatus.SKIP, "Intel Trust Authority appraisal: no network client (offline)", entity,
                      details)
    try:
        answer = appraise(client, quote.raw, options)
        details["claims"] = _claims_summary(answer)
        try:
            jwks = client.get_ok(options.jwks_url, headers={"Accept": "application/json"}).content
        except NetError as exc:
            raise ItaError(f"the ITA token signing keys could not be fetched: {exc}", offline=exc.offline) from None
        trust = verify_token(answer, jwks, now=now, options=options, client=client)
    except ItaError as exc:
        status = CheckStatus.SKIP if exc.offline else CheckStatus.ERROR
        return _check(status, f"Intel Trust Authority appraisal: {exc}", entity, details)
    except TokenInvalid as exc:
        return _check(CheckStatus.FAIL, f"Intel Trust Authority token does not verify: {exc}", entity, details)
    details["token"] = {"alg": trust.alg, "kid": trust.kid, "chain": trust.chain, "root_sha256": trust.root_sha256,
                        "root_pinned": trust.root_pinned, "revocation": trust.revocation}
    rows, problems = compare_claims(answer.tdx, quote)
    details["comparison"] = rows
    theirs = answer.tdx.get("attester_tcb_status")
    details["tcb_status"] = {"ita": theirs, "ours": tcb_status, "match": theirs == tcb_status}
    if problems:
        return _check(CheckStatus.FAIL, f"Intel Trust Authority's token disagrees with the quote: {problems[0]}"
                      + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""), entity,
                      {**details, "problems": problems})
    if tcb_status is not None and theirs != tcb_status:
        return _check(CheckStatus.WARN, f"Intel Trust Authority's TCB status {theirs!r} differs from ours "
                      f"{tcb_status!r}; its token verifies and every register matches", entity, details)
    root = "pinned root" if trust.root_pinned else f"root sha256 {trust.root_sha256[:16]}…"
    return _check(CheckStatus.PASS, f"Intel Trust Authority agrees: {len(rows)} registers match, TCB status "
                  f"{theirs}, token {trust.alg} signed by '{trust.kid}' ({root})", entity, details)
