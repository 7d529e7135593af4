"""`gpu.attestation`: NVIDIA GPU evidence appraised by NVIDIA's Remote Attestation Service (NRAS).

The evidence is the ``nvidia_payload`` a GPU app publishes (Redpill's attestation report carries it): ``{nonce,
evidence_list: [{certificate (base64 PEM chain), evidence (base64 SPDM report), arch}], arch}``. It is POSTed as is to
NRAS (``/v3/attest/gpu``), which answers a detached EAT: ``[["JWT", <overall token>], {"GPU-0": <token>, ...}]``.

Unlike the Trust Center, every token is verified here: ES384 over ``header.payload`` with the key NVIDIA publishes
under the token's ``kid`` (JWKS, fetched through the same recorded client), ``iss`` = the NRAS origin, ``nbf``/``iat``/
``exp`` against the verification instant, ``eat_nonce`` = the evidence's nonce, and each per-GPU token's SHA-256 equal
to the digest the overall token lists for it in ``submods``. The JWKS certificates (``x5c``: signing leaf and
intermediate; NVIDIA's root "NVIDIA Attestation Service CA 001" is not in the set and no published fingerprint of it
was found) are checked for consistency with the key and, when trusted roots are given, against them.

Statuses: pass only when every token verifies and says true; fail when a verified token says false or a signature,
nonce, issuer, digest or date check fails; warn when NRAS's answer cannot be read or the keys cannot be vouched for;
skip when offline, when the recording lacks the exchange, or when NRAS is unreachable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import InputError
from .jsontext import json_kind, load_json
from .jws import b64url, decode_compact
from .model import Check, CheckStatus, Entity
from .net import NetClient, NetError, NetResponse, ReplayClient
from .sources import decode_answer

CHECK_ID = "gpu.attestation"
NRAS_ANCHOR = "nvidia-nras"
DEFAULT_NRAS_URL = "https://nras.attestation.nvidia.com/v3/attest/gpu"
DEFAULT_JWKS_URL = "https://nras.attestation.nvidia.com/.well-known/jwks.json"

MAX_PAYLOAD_BYTES = 8 << 20
MAX_GPUS = 16
MAX_ITEM_B64 = 256 << 10  # one GPU's certificate chain or SPDM report, base64 (real ones are a few KiB)
MAX_ANSWER_BYTES = 4 << 20
MAX_TOKEN_CHARS = 256 << 10
MAX_JWKS_BYTES = 2 << 20
MAX_JWKS_KEYS = 256
MAX_X5C = 8
# NRAS's clock and ours may differ a little; a token issued "in the future" by less than this is accepted.
CLOCK_SKEW_SECONDS = 300
_P384_COORD = 48
_DIGEST_ALGS = {"SHA256": "sha256", "SHA-256": "sha256", "SHA384": "sha384", "SHA-384": "sha384"}
_GPU_FIELDS = {  # shown per GPU: detail name → claim
    "model": "hwmodel",
    "driver_version": "x-nvidia-gpu-driver-version",
    "vbios_version": "x-nvidia-gpu-vbios-version",
    "measurements": "measres",
    "secure_boot": "secboot",
    "debug": "dbgstat",
    "ueid": "ueid",
    "warning": "x-nvidia-attestation-warning",
}


# ------------------------------------------------------------------------------------------------------ evidence


class GpuEvidenceItem(BaseModel):
    """One GPU's evidence. Extra fields (nvattest adds version, nonce, driver/vbios versions) travel along."""

    model_config = ConfigDict(extra="allow", frozen=True)

    certificate: str = Field(min_length=1, max_length=MAX_ITEM_B64)
    evidence: str = Field(min_length=1, max_length=MAX_ITEM_B64)
    arch: str | int | None = None  # NRAS clients send "HOPPER" or the driver's numeric code (6)

    @field_validator("certificate", "evidence")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not base64") from None
        return value

    def summary(self, index: int) -> dict[str, Any]:
        """What a reviewer sees of the evidence; the certificates are only described (NRAS validates them)."""
        entry: dict[str, Any] = {"index": index, "arch": self.arch,
                                 "evidence_bytes": len(base64.b64decode(self.evidence))}
        try:
            certs = x509.load_pem_x509_certificates(base64.b64decode(self.certificate))
            entry["certificate_chain"] = [c.subject.rfc4514_string() for c in certs]
        except ValueError as exc:
            entry["certificate_chain_problem"] = f"not a PEM chain ({str(exc)[:120]})"
        return entry


class GpuEvidence(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    nonce: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="32 bytes, hex")
    evidence_list: list[GpuEvidenceItem] = Field(min_length=1, max_length=MAX_GPUS)
    arch: str | None = Field(default=None, max_length=64)

    def payload(self) -> dict[str, Any]:
        """The request body: the fields as given, nothing added."""
        return self.model_dump(mode="json", exclude_unset=True)


def is_gpu_evidence(doc: Any) -> bool:
    """Whether a JSON document is GPU evidence: an ``nvidia_payload`` itself, or an object carrying one."""
    return isinstance(doc, dict) and ("nvidia_payload" in doc or ("evidence_list" in doc and "nonce" in doc))


def parse_gpu_evidence(value: Any, source: str = "nvidia_payload", field: str | None = None) -> GpuEvidence:
    """An ``nvidia_payload`` (object, JSON text or bytes), or an object holding one under ``nvidia_payload`` (where
    it may be a JSON string). Raises InputError naming `source` and the field for anything else."""
    if isinstance(value, bytes | bytearray):
        if len(value) > MAX_PAYLOAD_BYTES:
            raise InputError(f"{len(value)} bytes, more than {MAX_PAYLOAD_BYTES}", source=source, field=field)
        try:
            value = bytes(value).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError("not UTF-8 text", source=source, field=field, offset=exc.start) from None
    if isinstance(value, str):
        if len(value) > MAX_PAYLOAD_BYTES:
            raise InputError(f"{len(value)} characters, more than {MAX_PAYLOAD_BYTES}", source=source, field=field)
        value = load_json(value, source, field)
    if not isinstance(value, dict):
        raise InputError(f"expected a JSON object, got {json_kind(value)}", source=source, field=field)
    if "nvidia_payload" in value:
        inner = "nvidia_payload" if field is None else f"{field}.nvidia_payload"
        return parse_gpu_evidence(value["nvidia_payload"], source, inner)
    try:
        return GpuEvidence.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in ((field,) if field else ()) + tuple(first["loc"])) or None
        raise InputError(first["msg"][:200], source=source, field=where) from None


# --------------------------------------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class Jwt:
    """A compact JWS, decoded but not yet trusted."""

    name: str  # "overall" or the GPU's name in the detached EAT ("GPU-0")
    text: str
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


@dataclass(frozen=True)
class NrasAnswer:
    url: str
    overall: Jwt
    detached: dict[str, Jwt]


def decode_jwt(text: Any, name: str, source: str = "NRAS answer") -> Jwt:
    if not isinstance(text, str):
        raise InputError(f"expected a JWT string, got {json_kind(text)}", source=source, field=name)
    if len(text) > MAX_TOKEN_CHARS:
        raise InputError(f"token of {len(text)} characters, more than {MAX_TOKEN_CHARS}", source=source, field=name)
    jws = decode_compact(text, source, (f"{name}.header", f"{name}.payload", f"{name}.signature"), field=name)
    return Jwt(name, text, jws.header, jws.claims, jws.signing_input, jws.signature)


def parse_nras_answer(data: bytes, url: str) -> NrasAnswer:
    """``[["JWT", overall], {name: token, ...}]``; the second element may be absent (no per-GPU tokens)."""
    source = f"NRAS answer from {url}"
    doc = decode_answer(data, source, MAX_ANSWER_BYTES)
    if not isinstance(doc, list) or not doc:
        raise InputError(f"expected a detached EAT (a non-empty array), got {json_kind(doc)}", source=source)
    head = doc[0]
    if not (isinstance(head, list) and len(head) == 2 and head[0] == "JWT"):
        raise InputError('the first element must be ["JWT", <token>]', source=source, field="[0]")
    overall = decode_jwt(head[1], "overall", source)
    tokens = doc[1] if len(doc) > 1 else {}
    if not isinstance(tokens, dict):
        raise InputError(f"expected an object of per-GPU tokens, got {json_kind(tokens)}", source=source, field="[1]")
    if len(tokens) > MAX_GPUS * 2:
        raise InputError(f"{len(tokens)} per-device tokens, more than {MAX_GPUS * 2}", source=source, field="[1]")
    detached = {str(name): decode_jwt(token, str(name), source) for name, token in tokens.items()}
    return NrasAnswer(url, overall, detached)


def submit_to_nras(client: NetClient, evidence: GpuEvidence, url: str = DEFAULT_NRAS_URL) -> NrasAnswer:
    """POST the evidence to NRAS. Raises NetError (no answer, non-2xx; ``offline`` set when refused or not
    recorded) or InputError (an answer that is not a detached EAT)."""
    response: NetResponse = client.post_json(url, evidence.payload())
    if not response.ok:
        raise NetError(url, response.status_problem())
    return parse_nras_answer(response.content, url)


# ----------------------------------------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class SigningKey:
    kid: str
    key: ec.EllipticCurvePublicKey
    certificates: list[dict[str, str]] = field(default_factory=list)
    trust_problem: str | None = None  # why the x5c chain does not vouch for the key (None: it does, or no x5c)
    pinned: bool = False  # the chain reaches one of the trusted roots


def _x5c_problem(
    key: ec.EllipticCurvePublicKey, certs: list[x509.Certificate], now: datetime, roots: Sequence[x509.Certificate]
) -> tuple[str | None, bool]:
    if not certs:
        return ("no x5c chain to check against the trusted roots" if roots else None), False
    if certs[0].public_key() != key:
        return "the x5c leaf certificate holds another key than the JWK", False
    for cert in certs:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return (f"x5c certificate {cert.subject.rfc4514_string()} is not valid at {now.isoformat()} "
                    f"({cert.not_valid_before_utc.isoformat()} .. {cert.not_valid_after_utc.isoformat()})"), False
    for cert, issuer in pairwise(certs):
        if not _issued_by(cert, issuer):
            return f"x5c certificate {cert.subject.rfc4514_string()} is not signed by the next one", False
    if not roots:
        return None, False
    last = certs[-1]
    if any(last == root or _issued_by(last, root) for root in roots):
        return None, True
    return f"the x5c chain ({last.issuer.rfc4514_string()}) does not reach a trusted NVIDIA root", False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _jwk_key(jwk: dict[str, Any], where: str, source: str) -> ec.EllipticCurvePublicKey:
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-384":
        raise InputError("not an EC P-384 key", source=source, field=where)
    coords = []
    for name in ("x", "y"):
        value = jwk.get(name)
        raw = b64url(value, source, f"{where}.{name}") if isinstance(value, str) else b""
        if len(raw) != _P384_COORD:
            raise InputError(f"expected {_P384_COORD} bytes", source=source, field=f"{where}.{name}")
        coords.append(int.from_bytes(raw, "big"))
    try:
        return ec.EllipticCurvePublicNumbers(coords[0], coords[1], ec.SECP384R1()).public_key()
    except ValueError:
        raise InputError("the point is not on P-384", source=source, field=where) from None


def parse_jwks(
    data: bytes, url: str, now: datetime, trusted_roots: Sequence[x509.Certificate] = ()
) -> dict[str, SigningKey]:
    """NVIDIA's JWKS → ES384 keys by kid. Keys of another type are left out (they cannot sign an ES384 token)."""
    source = f"JWKS from {url}"
    doc = decode_answer(data, source, MAX_JWKS_BYTES)
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list) or len(keys) > MAX_JWKS_KEYS:
        raise InputError(f"expected a `keys` array of at most {MAX_JWKS_KEYS} keys", source=source, field="keys")
    found: dict[str, SigningKey] = {}
    for index, jwk in enumerate(keys):
        where = f"keys[{index}]"
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            raise InputError("a key needs a string `kid`", source=source, field=where)
        if jwk.get("kty") != "EC" or jwk.get("alg", "ES384") != "ES384":
            continue
        key = _jwk_key(jwk, where, source)
        x5c = jwk.get("x5c", [])
        if not isinstance(x5c, list) or len(x5c) > MAX_X5C or not all(isinstance(c, str) for c in x5c):
            raise InputError(f"expected at most {MAX_X5C} base64 certificates", source=source, field=f"{where}.x5c")
        try:
            certs = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in x5c]
        except (binascii.Error, ValueError) as exc:
            raise InputError(f"bad certificate ({str(exc)[:120]})", source=source, field=f"{where}.x5c") from None
        problem, pinned = _x5c_problem(key, certs, now, trusted_roots)
        described = [{"subject": c.subject.rfc4514_string(), "issuer": c.issuer.rfc4514_string(),
                      "not_before": c.not_valid_before_utc.isoformat(), "not_after": c.not_valid_after_utc.isoformat(),
                      "sha256": c.fingerprint(hashes.SHA256()).hex()} for c in certs]
        found[jwk["kid"]] = SigningKey(jwk["kid"], key, described, problem, pinned)
    return found


def fetch_jwks(
    client: NetClient, url: str, now: datetime, trusted_roots: Sequence[x509.Certificate] = ()
) -> dict[str, SigningKey]:
    return parse_jwks(client.get_ok(url, headers={"Accept": "application/json"}).content, url, now, trusted_roots)


def _signature_ok(token: Jwt, key: ec.EllipticCurvePublicKey) -> bool:
    """JOSE ES384: the signature is r || s, 48 bytes each; cryptography wants DER."""
    if len(token.signature) != 2 * _P384_COORD:
        return False
    r = int.from_bytes(token.signature[:_P384_COORD], "big")
    s = int.from_bytes(token.signature[_P384_COORD:], "big")
    try:
        key.verify(encode_dss_signature(r, s), token.signing_input, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return False
    return True


# ------------------------------------------------------------------------------------------------------ appraisal


@dataclass
class _Findings:
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _iso(value: Any) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 2**40:
        return datetime.fromtimestamp(value, UTC).isoformat()
    return None


def _verify_token(
    token: Jwt, keys: dict[str, SigningKey], now: datetime, issuer: str, nonce: str, found: _Findings
) -> dict[str, Any]:
    """Signature, key trust, dates, issuer and nonce of one token; returns what the details show of it."""
    header, claims = token.header, token.claims
    kid = header.get("kid")
    entry: dict[str, Any] = {"token": token.name, "alg": header.get("alg"), "kid": kid, "iss": claims.get("iss"),
                             "iat": _iso(claims.get("iat")), "nbf": _iso(claims.get("nbf")),
                             "exp": _iso(claims.get("exp")), "eat_nonce": claims.get("eat_nonce")}
    key = keys.get(kid) if isinstance(kid, str) else None
    if header.get("alg") != "ES384":
        entry["signature"] = "refused"
        found.failures.append(f"{token.name} token: algorithm {header.get('alg')!r}, NRAS signs with ES384")
    elif key is None:
        entry["signature"] = "unknown key"
        found.failures.append(f"{token.name} token: signed by key {kid!r}, which NVIDIA's JWKS does not publish")
    elif not _signature_ok(token, key.key):
        entry["signature"] = "invalid"
        found.failures.append(f"{token.name} token: the ES384 signature does not verify under key {kid}")
    else:
        entry["signature"] = "valid"
        if key.trust_problem:
            found.warnings.append(f"key {kid} is not vouched for: {key.trust_problem}")
    at = now.timestamp()
    exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
    if _iso(exp) is None:
        found.failures.append(f"{token.name} token: no valid `exp`")
    elif at >= exp:
        found.failures.append(f"{token.name} token: expired at {_iso(exp)} (verification time {now.isoformat()})")
    for name, value in (("nbf", nbf), ("iat", iat)):
        if value is not None and (_iso(value) is None or value > at + CLOCK_SKEW_SECONDS):
            found.failures.append(f"{token.name} token: `{name}` {_iso(value) or value!r} is after the verification "
                                  f"time {now.isoformat()}")
    if claims.get("iss") != issuer:
        found.failures.append(f"{token.name} token: issuer {claims.get('iss')!r}, expected {issuer!r}")
    echoed = claims.get("eat_nonce")
    # A per-GPU token without eat_nonce is still bound to the nonce: the overall token lists its digest.
    optional = echoed is None and token.name != "overall"
    if not optional and (not isinstance(echoed, str) or echoed.lower() != nonce.lower()):
        found.failures.append(f"{token.name} token: eat_nonce {echoed!r} is not the evidence's nonce {nonce}")
    return entry


def _check_submods(answer: NrasAnswer, found: _Findings) -> dict[str, Any]:
    """Every per-GPU token is the one the overall token names, by digest, and none is missing or extra."""
    submods = answer.overall.claims.get("submods", {})
    if not isinstance(submods, dict):
        found.failures.append("overall token: `submods` is not an object")
        return {}
    shown: dict[str, Any] = {}
    for name in sorted(set(submods) | set(answer.detached)):
        listed, token = submods.get(name), answer.detached.get(name)
        if token is None:
            found.failures.append(f"overall token lists {name}, but NRAS returned no token for it")
            continue
        if listed is None:
            found.failures.append(f"per-GPU token {name} is not listed in the overall token's submods")
            continue
        ok = (isinstance(listed, list) and len(listed) == 2 and listed[0] == "DIGEST" and isinstance(listed[1], list)
              and len(listed[1]) == 2 and listed[1][0] in _DIGEST_ALGS and isinstance(listed[1][1], str))
        if not ok:
            found.failures.append(f"overall token: submods entry of {name} is not [\"DIGEST\", [alg, hex]]")
            continue
        actual = hashlib.new(_DIGEST_ALGS[listed[1][0]], token.text.encode("ascii")).hexdigest()
        shown[name] = {"algorithm": listed[1][0], "digest": listed[1][1], "matches": actual == listed[1][1].lower()}
        if actual != listed[1][1].lower():
            found.failures.append(f"per-GPU token {name}: its {listed[1][0]} is {actual}, the overall token lists "
                                  f"{listed[1][1]}")
    return shown


def _gpu_result(token: Jwt, found: _Findings) -> dict[str, Any]:
    claims = token.claims
    entry: dict[str, Any] = {"name": token.name}
    entry.update({name: claims[claim] for name, claim in _GPU_FIELDS.items() if claim in claims})
    checks = {k: v for k, v in claims.items() if k.startswith("x-nvidia-") and isinstance(v, bool)}
    entry["claims"] = checks
    failed = [k for k, v in checks.items() if v is False]
    if claims.get("measres") != "success":
        failed.append(f"measres={claims.get('measres')!r}")
    if claims.get("secboot") is False:
        failed.append("secboot=false")
    if claims.get("dbgstat") not in (None, "disabled"):
        failed.append(f"dbgstat={claims.get('dbgstat')!r}")
    entry["failed_claims"] = failed
    if failed:
        found.failures.append(f"{token.name} ({claims.get('hwmodel', 'GPU')}): {', '.join(failed)}")
    return entry


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _summary(status: CheckStatus, found: _Findings, gpus: int) -> str:
    problems = found.failures if status is CheckStatus.FAIL else found.warnings
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    if status is CheckStatus.PASS:
        return f"NVIDIA GPU attestation: NRAS attests {gpus} GPU(s); every token's signature verifies"
    verb = "failed" if status is CheckStatus.FAIL else "not verified"
    return f"NVIDIA GPU attestation {verb}: {problems[0]}{more}"


def check_gpu_attestation(
    evidence: GpuEvidence | None,
    *,
    client: NetClient,
    now: datetime,
    nras_url: str = DEFAULT_NRAS_URL,
    jwks_url: str = DEFAULT_JWKS_URL,
    entity: Entity = "app",
    reason_absent: str = "",
    trusted_roots: Sequence[x509.Certificate] = (),
) -> Check:
    """`gpu.attestation` for `evidence` (None: skipped with `reason_absent`). `trusted_roots`: NVIDIA roots the JWKS
    certificate chains must reach (empty: the keys rest on the JWKS URL)."""
    now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    details: dict[str, Any] = {"nras_url": nras_url, "jwks_url": jwks_url}

    def check(status: CheckStatus, summary: str) -> Check:
        return Check(id=CHECK_ID, entity=entity, phase="hardware", status=status, anchor=NRAS_ANCHOR,
                     summary=summary, details=details)

    if evidence is None:
        return check(CheckStatus.SKIP, f"NVIDIA GPU attestation: skipped ({reason_absent or 'no GPU evidence'})")
    details["nonce"] = evidence.nonce
    details["evidence"] = [item.summary(i) for i, item in enumerate(evidence.evidence_list)]
    try:
        answer = submit_to_nras(client, evidence, nras_url)
    except NetError as exc:
        why = "offline or not recorded" if exc.offline else "NRAS unreachable"
        return check(CheckStatus.SKIP, f"NVIDIA GPU attestation: skipped ({why}: {exc})")
    except InputError as exc:
        return check(CheckStatus.WARN, f"NVIDIA GPU attestation not verified: unreadable answer ({exc.describe()})")
    overall = answer.overall.claims.get("x-nvidia-overall-att-result")
    details["overall"] = {k: answer.overall.claims.get(k) for k in ("x-nvidia-overall-att-result", "x-nvidia-ver",
                                                                   "sub", "iss", "eat_nonce")}
    try:
        keys = fetch_jwks(client, jwks_url, now, trusted_roots)
    except (NetError, InputError) as exc:
        text = exc.describe() if isinstance(exc, InputError) else str(exc)
        return check(CheckStatus.WARN, f"NVIDIA GPU attestation not verified: NRAS says overall result {overall!r}, "
                                       f"but NVIDIA's signing keys could not be had ({text})")
    found = _Findings()
    issuer = _origin(nras_url)
    tokens = [answer.overall, *answer.detached.values()]
    details["tokens"] = [_verify_token(t, keys, now, issuer, evidence.nonce, found) for t in tokens]
    details["submods"] = _check_submods(answer, found)
    if overall is not True:
        found.failures.append(f"x-nvidia-overall-att-result is {overall!r}, not true")
    details["gpus"] = [_gpu_result(t, found) for t in answer.detached.values()]
    if len(answer.detached) != len(evidence.evidence_list):
        found.warnings.append(f"NRAS returned {len(answer.detached)} per-GPU results for "
                              f"{len(evidence.evidence_list)} GPU evidences")
    used = {t.header.get("kid") for t in tokens}
    details["keys"] = {k.kid: {"certificates": k.certificates, "trust_problem": k.trust_problem, "pinned": k.pinned}
                       for k in keys.values() if k.kid in used}
    source = "the recorded JWKS answer" if isinstance(client, ReplayClient) else f"{jwks_url} (over TLS)"
    details["key_trust"] = (
        f"signing keys from {source}; "
        + ("x5c chains checked against the given trusted roots" if trusted_roots else
           "no NVIDIA root is pinned (its fingerprint is not published where we could find it): the keys rest on "
           "the JWKS URL")
    )
    details["failures"], details["warnings"] = found.failures, found.warnings
    status = CheckStatus.FAIL if found.failures else CheckStatus.WARN if found.warnings else CheckStatus.PASS
    return check(status, _summary(status, found, len(answer.detached)))
