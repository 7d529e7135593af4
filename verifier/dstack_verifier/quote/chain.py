"""Certificate path validation with CRLs, with the semantics of the webpki fork dcap-qvl uses.

Every non-anchor certificate: validity at `now`, issuer is a CA, no unknown critical extension, ECDSA P-256 with
SHA-256, and a CRL from its issuer that is signed by the issuer, current (now < nextUpdate, strict), and does not
list it. The anchor itself is not date-checked. Failures name the certificate and the CRL involved.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, SignatureAlgorithmOID

from . import names
from .names import cert_names, common_name, crl_issuer, name_text

MAX_INTERMEDIATES = 4
_KNOWN_CRITICAL = {
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.CRL_DISTRIBUTION_POINTS,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
}


class ChainError(Exception):
    """A chain or CRL failure. `code` follows webpki's error names so messages compare with dcap-qvl's."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


@functools.lru_cache(maxsize=512)
def describe(cert: x509.Certificate) -> str:
    try:
        subject = cert_names(cert).subject
    except ValueError:
        return f"<malformed certificate> (serial {cert.serial_number:x})"
    name = common_name(subject) or name_text(subject)
    return f"'{name}' (serial {cert.serial_number:x})"


def cert_summary(cert: x509.Certificate) -> dict:
    return dict(_summary_items(cert))


@functools.lru_cache(maxsize=512)
def _summary_items(cert: x509.Certificate) -> tuple[tuple[str, str], ...]:
    return (
        ("subject", name_text(cert_names(cert).subject)),
        ("issuer", name_text(cert_names(cert).issuer)),
        ("serial", f"{cert.serial_number:x}"),
        ("not_before", cert.not_valid_before_utc.isoformat()),
        ("not_after", cert.not_valid_after_utc.isoformat()),
    )


def clear_caches() -> None:
    """Forget the per-certificate text caches (benchmarks use this to measure a truly cold run)."""
    describe.cache_clear()
    _summary_items.cache_clear()
    names.clear_caches()


@dataclass(frozen=True)
class RevocationUse:
    cert: str
    crl_issuer: str
    crl_next_update: str


def _check_signature_alg(cert: x509.Certificate) -> None:
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        raise ChainError(
            "UnsupportedSignatureAlgorithm",
            f"{describe(cert)} is signed with {cert.signature_algorithm_oid.dotted_string}, not ECDSA-SHA256",
        )


def _check_issuer_key(issuer: x509.Certificate) -> None:
    key = issuer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ChainError("UnsupportedSignatureAlgorithm", f"{describe(issuer)} does not hold a P-256 key")


def _signature_verifies(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """The issuer's key verifies the certificate's ECDSA-SHA256 signature (names are compared by the caller).

    Only ECDSA with SHA-256 is accepted, as dcap-qvl 0.7.0 does; other algorithms are reported by
    _check_signature_alg with a clearer message, so here they simply do not verify.
    """
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        return False
    key = issuer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


@dataclass
class ChainCache:
    """Results that depend only on bytes: a verified certificate link or CRL signature stays verified.

    Shared across verifications (CollateralMemo holds one), so quotes from one fleet check the common CA links
    and CRL signatures once. Time-dependent checks (validity, CRL next update) are never cached.
    """

    links: dict[tuple[x509.Certificate, x509.Certificate], bool] = field(default_factory=dict)
    crl_signatures: dict[tuple[bytes, x509.Certificate], bool] = field(default_factory=dict)
    limit: int = 4096

    def signed_by(self, cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        key = (cert, issuer)
        ok = self.links.get(key)
        if ok is None:
            ok = _signature_verifies(cert, issuer)
            if len(self.links) < self.limit:
                self.links[key] = ok
        return ok

    def crl_signed_by(self, crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
        key = (crl.signature, issuer)
        ok = self.crl_signatures.get(key)
        if ok is None:
            ok = crl.is_signature_valid(issuer.public_key())
            if len(self.crl_signatures) < self.limit:
                self.crl_signatures[key] = ok
        return ok


class LoadedCrl(NamedTuple):
    crl: x509.CertificateRevocationList
    issuer: bytes  # DER content of the issuer name
    issuer_text: str


def load_crl(data: bytes) -> LoadedCrl:
    """Parse a DER CRL; raises ValueError when it does not parse."""
    crl = x509.load_der_x509_crl(data)
    issuer = crl_issuer(data)
    return LoadedCrl(crl, issuer, name_text(issuer))


class CrlStore:
    """CRLs indexed by issuer name (looked up once, not per certificate)."""

    def __init__(self, crls: list[LoadedCrl]) -> None:
        self.by_issuer: dict[bytes, tuple[x509.CertificateRevocationList, str]] = {}
        for item in crls:
            self.by_issuer.setdefault(item.issuer, (item.crl, item.issuer_text))


def _check_ca(issuer: x509.Certificate, depth_below: int) -> None:
    try:
        bc = issuer.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
    except x509.ExtensionNotFound:
        raise ChainError("EndEntityUsedAsCa", f"{describe(issuer)} issues certificates but is not a CA") from None
    if not bc.ca:
        raise ChainError("EndEntityUsedAsCa", f"{describe(issuer)} issues certificates but is not a CA")
    if bc.path_length is not None and depth_below > bc.path_length:
        raise ChainError("PathLenConstraintViolated", f"{describe(issuer)} path length {bc.path_length} exceeded")
    _check_key_usage(issuer, "key_cert_sign", "certificate signing")


def _check_key_usage(cert: x509.Certificate, attr: str, what: str) -> None:
    try:
        ku = cert.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE).value
    except x509.ExtensionNotFound:
        return
    if not getattr(ku, attr):
        raise ChainError("IssuerNotCrlSigner" if attr == "crl_sign" else "CaUsedAsEndEntity",
                         f"{describe(cert)} key usage does not allow {what}")


def _check_critical(cert: x509.Certificate) -> None:
    for ext in cert.extensions:
        if ext.critical and ext.oid not in _KNOWN_CRITICAL:
            raise ChainError(
                "UnsupportedCriticalExtension",
                f"{describe(cert)} has an unknown critical extension {ext.oid.dotted_string}",
            )


def _check_validity(cert: x509.Certificate, now: datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise ChainError("CertNotValidYet", f"{describe(cert)} is not valid before {cert.not_valid_before_utc}")
    if now > cert.not_valid_after_utc:
        raise ChainError("CertExpired", f"{describe(cert)} expired at {cert.not_valid_after_utc}")


def check_revocation(
    cert: x509.Certificate, issuer: x509.Certificate, crls: CrlStore, now: datetime, cache: ChainCache | None = None
) -> RevocationUse:
    """Unknown revocation status denies, as webpki's policy in dcap-qvl does."""
    issuer_der = cert_names(cert).issuer
    found = crls.by_issuer.get(issuer_der)
    if found is None:
        raise ChainError(
            "UnknownRevocationStatus",
            f"no CRL from {name_text(issuer_der)} to check {describe(cert)}",
        )
    crl, crl_issuer = found
    _check_key_usage(issuer, "crl_sign", "CRL signing")
    signed = (cache or ChainCache()).crl_signed_by(crl, issuer)
    if not signed:
        raise ChainError(
            "InvalidCrlSignatureForPublicKey",
            f"the CRL of {crl_issuer} is not signed by {describe(issuer)}",
        )
    next_update = crl.next_update_utc
    if next_update is None or not now < next_update:
        raise ChainError(
            "CrlExpired",
            f"the CRL of {crl_issuer} expired at {next_update} (verification time {now})",
        )
    if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
        raise ChainError("CertRevoked", f"{describe(cert)} is revoked by the CRL of {crl_issuer}")
    return RevocationUse(describe(cert), crl_issuer, next_update.isoformat())


@dataclass(frozen=True)
class ChainResult:
    path: list[x509.Certificate]  # leaf first, anchor last
    revocation: list[RevocationUse]


def verify_chain(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    anchor: x509.Certificate,
    crls: CrlStore | None,
    now: datetime,
    cache: ChainCache | None = None,
) -> ChainResult:
    """Build and check the path to `anchor`; with `crls` None revocation is left to a separate step."""
    if len(intermediates) > MAX_INTERMEDIATES + 1:  # the list may carry a copy of the root
        raise ChainError("TooManyIntermediates", f"{len(intermediates)} intermediates, at most {MAX_INTERMEDIATES}")
    cache = cache or ChainCache()
    path = [leaf]
    revocation: list[RevocationUse] = []
    current = leaf
    pool = [c for c in intermediates if c != anchor]
    anchor_subject = cert_names(anchor).subject
    for depth in range(MAX_INTERMEDIATES + 1):
        _check_validity(current, now)
        _check_critical(current)
        _check_signature_alg(current)
        issuer_name = cert_names(current).issuer
        if issuer_name == anchor_subject and cache.signed_by(current, anchor):
            issuer = anchor
        else:
            candidates = [c for c in pool if cert_names(c).subject == issuer_name and c not in path]
            found = [c for c in candidates if cache.signed_by(current, c)]
            if not found:
                raise ChainError(
                    "UnknownIssuer",
                    f"{describe(current)}: no certificate of {name_text(issuer_name)} verifies its "
                    "signature, and it is not issued by the trust anchor",
                )
            issuer = found[0]
        _check_issuer_key(issuer)
        _check_ca(issuer, depth)
        if crls is not None:
            revocation.append(check_revocation(current, issuer, crls, now, cache))
        path.append(issuer)
        if issuer is anchor:
            return ChainResult(path, revocation)
        current = issuer
    raise ChainError("TooManyIntermediates", "no path to the trust anchor within 4 intermediates")
