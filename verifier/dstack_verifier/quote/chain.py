"""Certificate path validation with CRLs, with the semantics of the webpki fork dcap-qvl uses.

Every non-anchor certificate: validity at `now`, issuer is a CA, no unknown critical extension, ECDSA P-256 with
SHA-256, and a CRL from its issuer that is signed by the issuer, current (now < nextUpdate, strict), and does not
list it. The anchor itself is not date-checked. Failures name the certificate and the CRL involved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, SignatureAlgorithmOID

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


def describe(cert: x509.Certificate) -> str:
    try:
        cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        name = str(cns[0].value) if cns else cert.subject.rfc4514_string()
    except ValueError:
        name = "<unreadable subject>"
    return f"'{name}' (serial {cert.serial_number:x})"


def cert_summary(cert: x509.Certificate) -> dict:
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": f"{cert.serial_number:x}",
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
    }


@dataclass(frozen=True)
class RevocationUse:
    cert: str
    crl_issuer: str
    crl_next_update: str


def _check_signature_alg(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        raise ChainError(
            "UnsupportedSignatureAlgorithm",
            f"{describe(cert)} is signed with {cert.signature_algorithm_oid.dotted_string}, not ECDSA-SHA256",
        )
    key = issuer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ChainError("UnsupportedSignatureAlgorithm", f"{describe(issuer)} does not hold a P-256 key")


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_ca(issuer: x509.Certificate, depth_below: int) -> None:
    try:
        bc = issuer.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
    except x509.ExtensionNotFound:
        raise ChainError("CaUsedAsEndEntity", f"{describe(issuer)} issues certificates but is not a CA") from None
    if not bc.ca:
        raise ChainError("CaUsedAsEndEntity", f"{describe(issuer)} issues certificates but is not a CA")
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
    cert: x509.Certificate, issuer: x509.Certificate, crls: list[x509.CertificateRevocationList], now: datetime
) -> RevocationUse:
    """Unknown revocation status denies, as webpki's policy in dcap-qvl does."""
    candidates = [crl for crl in crls if crl.issuer == cert.issuer]
    if not candidates:
        raise ChainError(
            "UnknownRevocationStatus",
            f"no CRL from {cert.issuer.rfc4514_string()} to check {describe(cert)}",
        )
    crl = candidates[0]
    _check_key_usage(issuer, "crl_sign", "CRL signing")
    if not crl.is_signature_valid(issuer.public_key()):
        raise ChainError(
            "InvalidCrlSignatureForPublicKey",
            f"the CRL of {crl.issuer.rfc4514_string()} is not signed by {describe(issuer)}",
        )
    next_update = crl.next_update_utc
    if next_update is None or not now < next_update:
        raise ChainError(
            "CrlExpired",
            f"the CRL of {crl.issuer.rfc4514_string()} expired at {next_update} (verification time {now})",
        )
    if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
        raise ChainError("CertRevoked", f"{describe(cert)} is revoked by the CRL of {crl.issuer.rfc4514_string()}")
    return RevocationUse(describe(cert), crl.issuer.rfc4514_string(), next_update.isoformat())


@dataclass(frozen=True)
class ChainResult:
    path: list[x509.Certificate]  # leaf first, anchor last
    revocation: list[RevocationUse]


def verify_chain(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    anchor: x509.Certificate,
    crls: list[x509.CertificateRevocationList] | None,
    now: datetime,
) -> ChainResult:
    """Build and check the path to `anchor`; with `crls` None revocation is left to a separate step."""
    if len(intermediates) > MAX_INTERMEDIATES + 1:  # the list may carry a copy of the root
        raise ChainError("TooManyIntermediates", f"{len(intermediates)} intermediates, at most {MAX_INTERMEDIATES}")
    path = [leaf]
    revocation: list[RevocationUse] = []
    current = leaf
    pool = [c for c in intermediates if c != anchor]
    for depth in range(MAX_INTERMEDIATES + 1):
        _check_validity(current, now)
        _check_critical(current)
        if current.issuer == anchor.subject and _signed_by(current, anchor):
            issuer = anchor
        else:
            found = [c for c in pool if c.subject == current.issuer and c not in path and _signed_by(current, c)]
            if not found:
                raise ChainError(
                    "UnknownIssuer",
                    f"{describe(current)}: no certificate of {current.issuer.rfc4514_string()} verifies its "
                    "signature, and it is not issued by the trust anchor",
                )
            issuer = found[0]
        _check_signature_alg(current, issuer)
        _check_ca(issuer, depth)
        if crls is not None:
            revocation.append(check_revocation(current, issuer, crls, now))
        path.append(issuer)
        if issuer is anchor:
            return ChainResult(path, revocation)
        current = issuer
    raise ChainError("TooManyIntermediates", "no path to the trust anchor within 4 intermediates")
