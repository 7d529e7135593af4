"""Certificate path validation with CRLs, with the semantics of the webpki fork dcap-qvl uses.

Every non-anchor certificate: validity at `now`, issuer is a CA, no unknown critical extension, ECDSA P-256 with
SHA-256, and a CRL from its issuer that is signed by the issuer, current (now < nextUpdate, strict), and does not
list it. The anchor itself is not date-checked. Failures name the certificate and the CRL involved.
"""

from __future__ import annotations

import binascii
import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, SignatureAlgorithmOID

from . import der, names
from .names import CertNames, common_name, crl_issuer, name_text, tbs_names
from .pck import SGX_EXTENSION_OID

MAX_INTERMEDIATES = 4
_KNOWN_CRITICAL = {
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.CRL_DISTRIBUTION_POINTS,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
}
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_ECDSA_SHA256_ALG = bytes.fromhex("300a06082a8648ce3d040302")  # AlgorithmIdentifier {ecdsa-with-SHA256}, no params


class ChainError(Exception):
    """A chain or CRL failure. `code` follows webpki's error names so messages compare with dcap-qvl's."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


class Extensions(NamedTuple):
    """What the checks need from a certificate's extensions, gathered in one pass over them."""

    unknown_critical: x509.ObjectIdentifier | None  # the first critical extension outside _KNOWN_CRITICAL
    basic_constraints: x509.BasicConstraints | None
    key_usage: x509.KeyUsage | None
    sgx: tuple[bytes, ...]  # DER of each Intel SGX extension


class Cert:
    """A certificate and what the checks read from it, each part read once and only when first needed.

    cryptography re-encodes the TBS bytes, and rebuilds extension, key and name objects, on every access; path
    building, CRL lookup, the SGX extension and the texts shown to a reviewer all share this one reading. A
    malformed part still surfaces where it is first used. Equal (and hashing alike) for the same certificate.
    """

    __slots__ = (
        "_b64", "_der", "_ext", "_key", "_names", "_serial", "_sig", "_summary", "_tbs", "_text", "_validity", "x509"
    )

    def __init__(self, cert: x509.Certificate, der: bytes | None = None) -> None:
        self.x509 = cert
        self._der = der  # the DER it was loaded from, when at hand
        self._sig: bytes | None = None
        self._tbs: bytes | None = None
        self._names: CertNames | None = None
        self._key: Any = None
        self._ext: Extensions | None = None
        self._serial: int | None = None
        self._validity: tuple[datetime, datetime] | None = None
        self._text: str | None = None
        self._summary: dict[str, str] | None = None
        self._b64: bytes | None = None

    @property
    def signature(self) -> bytes:
        if self._sig is None:
            self._sig = self.x509.signature
        return self._sig

    def __hash__(self) -> int:
        return hash(self.signature)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Cert):
            return NotImplemented
        if self.signature != other.signature:
            return False
        if self._der is not None and other._der is not None:
            return self._der == other._der
        return self.x509 == other.x509

    @property
    def tbs(self) -> bytes:
        """The signed TBSCertificate: cut from the DER when at hand (cryptography re-encodes it on each access)."""
        if self._tbs is None:
            tbs = None
            if self._der is not None:
                top = der.spans(self._der, 0, len(self._der))
                if top is not None and len(top) == 1 and top[0][0] == der.TAG_SEQUENCE:
                    items = der.spans(self._der, top[0][1], top[0][2])
                    if items:
                        tbs = self._der[top[0][1] : items[0][2]]
            self._tbs = tbs if tbs is not None else self.x509.tbs_certificate_bytes
        return self._tbs

    @property
    def base64(self) -> bytes:
        """The DER in base64 on one line, as a PEM block holds it once its line breaks are removed."""
        if self._b64 is None:
            der = self._der if self._der is not None else self.x509.public_bytes(Encoding.DER)
            self._b64 = binascii.b2a_base64(der, newline=False)
        return self._b64

    @property
    def names(self) -> CertNames:
        """Issuer and subject as DER (ValueError for a malformed TBS)."""
        if self._names is None:
            self._names = tbs_names(self.tbs)
        return self._names

    @property
    def serial(self) -> int:
        if self._serial is None:
            self._serial = self.x509.serial_number
        return self._serial

    @property
    def validity(self) -> tuple[datetime, datetime]:
        if self._validity is None:
            self._validity = (self.x509.not_valid_before_utc, self.x509.not_valid_after_utc)
        return self._validity

    @property
    def key(self) -> Any:
        if self._key is None:
            self._key = self.x509.public_key()
        return self._key

    @property
    def ext(self) -> Extensions:
        if self._ext is None:
            unknown = bc = ku = None
            sgx = []
            for e in self.x509.extensions:
                if unknown is None and e.critical and e.oid not in _KNOWN_CRITICAL:
                    unknown = e.oid
                value = e.value
                kind = type(value)  # each OID cryptography knows has its own value class
                if kind is x509.BasicConstraints:
                    bc = value
                elif kind is x509.KeyUsage:
                    ku = value
                elif kind is x509.UnrecognizedExtension and e.oid == SGX_EXTENSION_OID:
                    sgx.append(value.value)  # the DER bytes
            self._ext = Extensions(unknown, bc, ku, tuple(sgx))
        return self._ext

    def describe(self) -> str:
        """`'CN' (serial hex)`, the way certificates are named in summaries and messages."""
        if self._text is None:
            try:
                subject = self.names.subject
            except ValueError:
                return f"<malformed certificate> (serial {self.serial:x})"
            name = common_name(subject) or name_text(subject)
            self._text = f"'{name}' (serial {self.serial:x})"
        return self._text

    def summary(self) -> dict[str, str]:
        """Subject, issuer, serial and validity (a fresh dict: callers may keep or change it)."""
        if self._summary is None:
            not_before, not_after = self.validity
            self._summary = {
                "subject": name_text(self.names.subject),
                "issuer": name_text(self.names.issuer),
                "serial": f"{self.serial:x}",
                "not_before": not_before.isoformat(),
                "not_after": not_after.isoformat(),
            }
        return self._summary.copy()

    @property
    def issuer_text(self) -> str:
        return name_text(self.names.issuer)


_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----\n"
_PEM_END = b"-----END CERTIFICATE-----\n"


def _canonical_pem_ders(pem: bytes, known: tuple[Cert, ...] = ()) -> list[bytes | Cert] | None:
    """The DER of each certificate of a PEM text written the usual way: nothing but CERTIFICATE blocks, each
    canonical base64 in lines; a block that is exactly the base64 of a `known` certificate is that Cert (its DER
    would be the same). None for any other text, even one cryptography reads, which then reads it."""
    text = pem if pem.endswith(b"\n") else pem + b"\n"
    blocks = text.split(_PEM_END)
    if blocks[-1] or len(blocks) < 2:
        return None
    out: list[bytes | Cert] = []
    for block in blocks[:-1]:
        body = block[len(_PEM_BEGIN) :]
        if not block.startswith(_PEM_BEGIN) or body[:1] == b"\n" or b"\n\n" in body:
            return None  # a blank line would end PEM headers
        b64 = body.replace(b"\n", b"")
        same = next((k for k in known if k.base64 == b64), None)
        if same is not None:
            out.append(same)
            continue
        try:
            data = binascii.a2b_base64(b64, strict_mode=True)
        except binascii.Error:
            return None
        # Canonical, as the PEM reader requires: strict decoding took whole 4-character groups, and only the last
        # one (with its padding) can carry spare bits, so re-encoding its bytes alone decides.
        last = len(b64) // 4 * 3 - 3
        if binascii.b2a_base64(data[last:], newline=False) != b64[-4:]:
            return None
        out.append(data)
    return out


class PemChain(NamedTuple):
    certs: list[Cert]
    unreadable: list[str]  # the candidate issuers left aside, each with why


def load_pem_chain(pem: bytes, known: tuple[Cert, ...] = ()) -> PemChain:
    """A leaf and its candidate issuers, read as webpki (so dcap-qvl) reads them: the PEM text must decode (the same
    texts and errors as `x509.load_pem_x509_certificates`) and the first certificate must parse; a later one whose
    DER does not parse can never be an issuer, so it is left aside, named in `unreadable` (webpki parses candidates
    only when it tries them, and tries the trust anchor first: a damaged copy of the root goes unnoticed there).

    A certificate that is byte for byte one of `known` (the trust anchor, which chains usually end with) is not
    decoded again: that Cert, already read, stands in the list."""
    items = _canonical_pem_ders(pem, known)
    if items is None:
        return PemChain([Cert(c) for c in x509.load_pem_x509_certificates(pem)], [])
    certs: list[Cert] = []
    unreadable: list[str] = []
    for i, item in enumerate(items):
        if isinstance(item, Cert):
            certs.append(item)
            continue
        try:
            certs.append(Cert(x509.load_der_x509_certificate(item), item))
        except (ValueError, x509.InvalidVersion) as exc:
            if i == 0:
                raise
            unreadable.append(f"certificate {i + 1} does not parse ({str(exc)[:120]})")
    return PemChain(certs, unreadable)


@functools.lru_cache(maxsize=512)
def describe(cert: x509.Certificate) -> str:
    return Cert(cert).describe()


def cert_summary(cert: x509.Certificate) -> dict:
    return dict(_summary_items(cert))


@functools.lru_cache(maxsize=512)
def _summary_items(cert: x509.Certificate) -> tuple[tuple[str, str], ...]:
    return tuple(Cert(cert).summary().items())


def clear_caches() -> None:
    """Forget the per-certificate text caches (benchmarks use this to measure a truly cold run)."""
    describe.cache_clear()
    _summary_items.cache_clear()
    names.clear_caches()


class RevocationUse(NamedTuple):
    cert: str
    crl_issuer: str
    crl_next_update: str


def _check_signature_alg(cert: Cert) -> None:
    oid = cert.x509.signature_algorithm_oid
    if oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        raise ChainError(
            "UnsupportedSignatureAlgorithm",
            f"{cert.describe()} is signed with {oid.dotted_string}, not ECDSA-SHA256",
        )


def _check_issuer_key(issuer: Cert) -> None:
    key = issuer.key
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ChainError("UnsupportedSignatureAlgorithm", f"{issuer.describe()} does not hold a P-256 key")


def _signature_verifies(cert: Cert, issuer: Cert) -> bool:
    """The issuer's key verifies the certificate's ECDSA-SHA256 signature (names are compared by the caller).

    Only ECDSA with SHA-256 is accepted, as dcap-qvl 0.7.0 does; other algorithms are reported by
    _check_signature_alg with a clearer message, so here they simply do not verify.
    """
    if cert.x509.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        return False
    key = issuer.key
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(cert.signature, cert.tbs, _ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True


class LoadedCrl:
    """A parsed DER CRL with what the checks read from it: issuer, signed bytes, next update."""

    __slots__ = ("_tbs", "crl", "issuer", "issuer_text", "next_update", "next_update_iso", "signature")

    def __init__(self, crl: x509.CertificateRevocationList, issuer: bytes, tbs: bytes | None) -> None:
        self.crl = crl
        self.issuer = issuer  # DER content of the issuer name
        self.issuer_text = name_text(issuer)
        self.signature = crl.signature
        self.next_update = crl.next_update_utc
        self.next_update_iso = self.next_update.isoformat() if self.next_update else None
        self._tbs = tbs  # the signed TBSCertList as it is in the CRL, when both its algorithms are ECDSA-SHA256

    def signed_by(self, key: Any) -> bool:
        """As `crl.is_signature_valid(key)`, which re-encodes the TBSCertList first: with ECDSA-SHA256 named
        alike inside and outside the signed part, the original bytes are verified directly."""
        if self._tbs is not None and isinstance(key, ec.EllipticCurvePublicKey):
            try:
                key.verify(self.signature, self._tbs, _ECDSA_SHA256)
            except InvalidSignature:
                return False
            return True
        return self.crl.is_signature_valid(key)

    def lists(self, serial: int) -> bool:
        return self.crl.get_revoked_certificate_by_serial_number(serial) is not None


def _crl_layout(data: bytes) -> tuple[bytes, bytes, bytes, bytes] | None:
    """CertificateList {TBSCertList {version OPTIONAL, signature, issuer, ...}, signatureAlgorithm, signature}:
    (TBSCertList TLV, its signature algorithm TLV, issuer content, outer algorithm TLV); None when not found."""
    try:
        tag, pos, end = der.header(data, 0, len(data))
        if tag != der.TAG_SEQUENCE or end != len(data):
            return None
        _, tbs_start, tbs_end = der.header(data, pos, end)
        _, _, alg_end = der.header(data, tbs_end, end)
        at = tbs_start
        item = der.header(data, at, tbs_end)
        if item[0] == der.TAG_INTEGER:  # version
            at = item[2]
            item = der.header(data, at, tbs_end)
        inner_alg = data[at : item[2]]
        issuer = der.header(data, item[2], tbs_end)
        if issuer[0] != der.TAG_SEQUENCE:
            return None
        return data[pos:tbs_end], inner_alg, data[issuer[1] : issuer[2]], data[tbs_end:alg_end]
    except der.DerError:
        return None


def load_crl(data: bytes) -> LoadedCrl:
    """Parse a DER CRL; raises ValueError when it does not parse."""
    crl = x509.load_der_x509_crl(data)
    layout = _crl_layout(data)
    if layout is None:
        return LoadedCrl(crl, crl_issuer(data), None)
    tbs, inner_alg, issuer, outer_alg = layout
    direct = inner_alg == outer_alg == _ECDSA_SHA256_ALG
    return LoadedCrl(crl, issuer, tbs if direct else None)


class CrlStore:
    """CRLs indexed by issuer name (looked up once, not per certificate)."""

    def __init__(self, crls: list[LoadedCrl]) -> None:
        self.by_issuer: dict[bytes, LoadedCrl] = {}
        for item in crls:
            self.by_issuer.setdefault(item.issuer, item)


@dataclass
class ChainCache:
    """Results that depend only on bytes: a verified certificate link or CRL signature stays verified.

    Shared across verifications (CollateralMemo holds one), so quotes from one fleet check the common CA links
    and CRL signatures once. Time-dependent checks (validity, CRL next update) are never cached.
    """

    links: dict[tuple[Cert, Cert], bool] = field(default_factory=dict)
    crl_signatures: dict[tuple[bytes, Cert], bool] = field(default_factory=dict)
    limit: int = 4096

    def signed_by(self, cert: Cert, issuer: Cert) -> bool:
        key = (cert, issuer)
        ok = self.links.get(key)
        if ok is None:
            ok = _signature_verifies(cert, issuer)
            if len(self.links) < self.limit:
                self.links[key] = ok
        return ok

    def crl_signed_by(self, crl: LoadedCrl, issuer: Cert) -> bool:
        key = (crl.signature, issuer)
        ok = self.crl_signatures.get(key)
        if ok is None:
            ok = crl.signed_by(issuer.key)
            if len(self.crl_signatures) < self.limit:
                self.crl_signatures[key] = ok
        return ok


def _check_ca(issuer: Cert, depth_below: int) -> None:
    bc = issuer.ext.basic_constraints
    if bc is None or not bc.ca:
        raise ChainError("EndEntityUsedAsCa", f"{issuer.describe()} issues certificates but is not a CA")
    if bc.path_length is not None and depth_below > bc.path_length:
        raise ChainError("PathLenConstraintViolated", f"{issuer.describe()} path length {bc.path_length} exceeded")
    _check_key_usage(issuer, "key_cert_sign", "certificate signing")


def _check_key_usage(cert: Cert, attr: str, what: str) -> None:
    ku = cert.ext.key_usage
    if ku is None:
        return
    if not getattr(ku, attr):
        raise ChainError("IssuerNotCrlSigner" if attr == "crl_sign" else "CaUsedAsEndEntity",
                         f"{cert.describe()} key usage does not allow {what}")


def _check_critical(cert: Cert) -> None:
    oid = cert.ext.unknown_critical
    if oid is not None:
        raise ChainError(
            "UnsupportedCriticalExtension",
            f"{cert.describe()} has an unknown critical extension {oid.dotted_string}",
        )


def _check_validity(cert: Cert, now: datetime) -> None:
    not_before, not_after = cert.validity
    if now < not_before:
        raise ChainError("CertNotValidYet", f"{cert.describe()} is not valid before {not_before}")
    if now > not_after:
        raise ChainError("CertExpired", f"{cert.describe()} expired at {not_after}")


def check_revocation(
    cert: Cert, issuer: Cert, crls: CrlStore, now: datetime, cache: ChainCache | None = None
) -> RevocationUse:
    """Unknown revocation status denies, as webpki's policy in dcap-qvl does."""
    issuer_der = cert.names.issuer
    crl = crls.by_issuer.get(issuer_der)
    if crl is None:
        raise ChainError(
            "UnknownRevocationStatus",
            f"no CRL from {name_text(issuer_der)} to check {cert.describe()}",
        )
    _check_key_usage(issuer, "crl_sign", "CRL signing")
    signed = (cache or ChainCache()).crl_signed_by(crl, issuer)
    if not signed:
        raise ChainError(
            "InvalidCrlSignatureForPublicKey",
            f"the CRL of {crl.issuer_text} is not signed by {issuer.describe()}",
        )
    next_update = crl.next_update
    if next_update is None or not now < next_update:
        raise ChainError(
            "CrlExpired",
            f"the CRL of {crl.issuer_text} expired at {next_update} (verification time {now})",
        )
    if crl.lists(cert.serial):
        raise ChainError("CertRevoked", f"{cert.describe()} is revoked by the CRL of {crl.issuer_text}")
    return RevocationUse(cert.describe(), crl.issuer_text, crl.next_update_iso)


@dataclass(frozen=True)
class ChainResult:
    path: list[Cert]  # leaf first, anchor last
    revocation: list[RevocationUse]


def verify_chain(
    leaf: Cert,
    intermediates: list[Cert],
    anchor: Cert,
    crls: CrlStore | None,
    now: datetime,
    cache: ChainCache | None = None,
) -> ChainResult:
    """Build and check the path to `anchor`; with `crls` None revocation is left to a separate step."""
    if len(intermediates) > MAX_INTERMEDIATES + 1:  # the list may carry a copy of the root
        raise ChainError("TooManyIntermediates", f"{len(intermediates)} intermediates, at most {MAX_INTERMEDIATES}")
    cache = cache or ChainCache()
    leaf_bc = leaf.ext.basic_constraints
    if leaf_bc is not None and leaf_bc.ca:  # webpki's end-entity rule: a CA certificate cannot be the leaf
        raise ChainError("CaUsedAsEndEntity", f"{leaf.describe()} is a CA certificate, used as the end entity")
    path = [leaf]
    revocation: list[RevocationUse] = []
    current = leaf
    pool = [c for c in intermediates if c != anchor]
    anchor_subject = anchor.names.subject
    for depth in range(MAX_INTERMEDIATES + 1):
        _check_validity(current, now)
        _check_critical(current)
        _check_signature_alg(current)
        issuer_name = current.names.issuer
        if issuer_name == anchor_subject and cache.signed_by(current, anchor):
            issuer = anchor
        else:
            candidates = [c for c in pool if c.names.subject == issuer_name and c not in path]
            found = [c for c in candidates if cache.signed_by(current, c)]
            if not found:
                raise ChainError(
                    "UnknownIssuer",
                    f"{current.describe()}: no certificate of {name_text(issuer_name)} verifies its "
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
