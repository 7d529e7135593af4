"""A deterministic stand-in for Intel's SGX provisioning PKI.

Every key is derived from ``sha256(label + ":" + seed)``, serials and dates come
from the seed and ``issued_at``, and all signatures use RFC 6979 deterministic
ECDSA, so the same (seed, issued_at, options) always yields byte-identical
certificates and CRLs. The certificate *shapes* (extensions, criticality, path
lengths, the SGX extension) mirror the real Intel chain so that verifiers which
accept Intel's evidence accept this too; the names never claim to be Intel.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from . import der

SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"
_SGX = SGX_EXTENSION_OID

# Order of the P-256 group; private scalars must lie in [1, n-1].
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

DAY = 86_400
YEAR = 365 * DAY

PckCaKind = Literal["platform", "processor"]

DEFAULT_FMSPC = bytes.fromhex("10C06F000000")
DEFAULT_CPU_SVN = bytes([4, 4, 2, 2, 3, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0])
DEFAULT_PCE_SVN = 13


def _digest(label: str, seed: str) -> bytes:
    return hashlib.sha256(f"{label}:{seed}".encode()).digest()


def derive_private_key(seed: str, label: str) -> ec.EllipticCurvePrivateKey:
    """P-256 key that depends only on (seed, label)."""
    scalar = int.from_bytes(_digest(label, seed), "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def derive_bytes(seed: str, label: str, length: int) -> bytes:
    """Seed-derived filler for identifiers (PPID, measurements...) up to 32 bytes."""
    if length > 32:
        raise ValueError("derive_bytes supports at most 32 bytes")
    return _digest(label, seed)[:length]


def deterministic_serial(seed: str, label: str) -> int:
    # 20 bytes with the top bit cleared: positive, fits RFC 5280's 20-octet limit,
    # and looks like Intel's 160-bit random serials.
    value = int.from_bytes(_digest(f"serial/{label}", seed)[:20], "big") >> 1
    return value or 1


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True)
class CertifiedKey:
    """A private key together with the certificate that binds it."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.key.public_key()


@dataclass(frozen=True)
class PckPlatformInfo:
    """What the PCK leaf's Intel SGX extension (OID 1.2.840.113741.1.13.1) says.

    ``None`` fields are filled from the PKI seed (identifiers) or from the CA kind
    (SGX type: Scalable for Platform CA leafs, Standard for Processor CA leafs,
    like real parts).
    """

    cpu_svn: bytes = DEFAULT_CPU_SVN
    pce_svn: int = DEFAULT_PCE_SVN
    fmspc: bytes = DEFAULT_FMSPC
    pce_id: bytes = b"\x00\x00"
    ppid: bytes | None = None
    # The comp01..16 INTEGERs; real certs repeat the CPUSVN bytes, which is the default.
    component_svns: tuple[int, ...] | None = None
    sgx_type: int | None = None
    # Platform CA leafs only.
    platform_instance_id: bytes | None = None
    dynamic_platform: bool = True
    cached_keys: bool = True
    smt_enabled: bool = True


def sgx_extension_der(info: PckPlatformInfo, *, platform: bool) -> bytes:
    """DER of the SGX extension value: SEQUENCE of SEQUENCE{OID, value}."""
    if len(info.cpu_svn) != 16:
        raise ValueError("CPUSVN must be 16 bytes")
    comps = info.component_svns if info.component_svns is not None else tuple(info.cpu_svn)
    if len(comps) != 16:
        raise ValueError("exactly 16 component SVNs are needed")
    tcb_items = [der.sequence(der.oid(f"{_SGX}.2.{i + 1}"), der.integer(svn)) for i, svn in enumerate(comps)]
    tcb_items.append(der.sequence(der.oid(f"{_SGX}.2.17"), der.integer(info.pce_svn)))
    tcb_items.append(der.sequence(der.oid(f"{_SGX}.2.18"), der.octet_string(info.cpu_svn)))
    sgx_type = info.sgx_type if info.sgx_type is not None else (1 if platform else 0)
    items = [
        der.sequence(der.oid(f"{_SGX}.1"), der.octet_string(info.ppid or bytes(16))),
        der.sequence(der.oid(f"{_SGX}.2"), der.sequence(*tcb_items)),
        der.sequence(der.oid(f"{_SGX}.3"), der.octet_string(info.pce_id)),
        der.sequence(der.oid(f"{_SGX}.4"), der.octet_string(info.fmspc)),
        der.sequence(der.oid(f"{_SGX}.5"), der.enumerated(sgx_type)),
    ]
    if platform:
        config = der.sequence(
            der.sequence(der.oid(f"{_SGX}.7.1"), der.boolean(info.dynamic_platform)),
            der.sequence(der.oid(f"{_SGX}.7.2"), der.boolean(info.cached_keys)),
            der.sequence(der.oid(f"{_SGX}.7.3"), der.boolean(info.smt_enabled)),
        )
        items.append(
            der.sequence(der.oid(f"{_SGX}.6"), der.octet_string(info.platform_instance_id or bytes(16)))
        )
        items.append(der.sequence(der.oid(f"{_SGX}.7"), config))
    return der.sequence(*items)


def _name(organization: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


_CA_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)
# Intel's PCK leaf and TCB signing certs carry digitalSignature + nonRepudiation.
_LEAF_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=True,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def _issue(
    *,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: CertifiedKey | None,
    serial: int,
    not_before: int,
    not_after: int,
    ca_path_length: int | None,
    is_ca: bool,
    crl_url: str | None,
    extra: Iterable[x509.ExtensionType] = (),
) -> CertifiedKey:
    signer_key = issuer.key if issuer else key
    issuer_name = issuer.cert.subject if issuer else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(_utc(not_before))
        .not_valid_after(_utc(not_after))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_CA_USAGE if is_ca else _LEAF_USAGE, critical=True)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=ca_path_length), critical=True)
    )
    if crl_url:
        point = x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(crl_url)],
            relative_name=None,
            reasons=None,
            crl_issuer=None,
        )
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    for ext in extra:
        builder = builder.add_extension(ext, critical=False)
    cert = builder.sign(signer_key, hashes.SHA256(), ecdsa_deterministic=True)
    return CertifiedKey(key=key, cert=cert)


def make_crl(
    issuer: CertifiedKey,
    *,
    this_update: int,
    next_update: int,
    revoked_serials: Iterable[int] = (),
    crl_number: int = 1,
) -> x509.CertificateRevocationList:
    """A v2 CRL shaped like Intel's: CRL number + AKI extensions, nextUpdate always set.

    webpki (used by dcap-qvl) refuses CRLs without an extensions block or without
    nextUpdate, so both are mandatory here.
    """
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(_utc(this_update))
        .next_update(_utc(next_update))
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    )
    for serial in revoked_serials:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(_utc(this_update))
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
            .build()
        )
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(issuer.key, hashes.SHA256(), ecdsa_deterministic=True)


def crl_der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class SynthPki:
    """Root CA, PCK Platform/Processor CAs, a PCK leaf and a TCB signing cert."""

    seed: str
    issued_at: int
    root: CertifiedKey
    platform_ca: CertifiedKey
    processor_ca: CertifiedKey | None
    pck: CertifiedKey
    tcb_signing: CertifiedKey
    pck_ca_kind: PckCaKind
    pck_info: PckPlatformInfo

    @property
    def pck_ca(self) -> CertifiedKey:
        """The CA that issued the PCK leaf (the one whose CRL must be the ``pck_crl``)."""
        if self.pck_ca_kind == "processor":
            assert self.processor_ca is not None
            return self.processor_ca
        return self.platform_ca

    @property
    def root_ca_der(self) -> bytes:
        return self.root.der

    def pck_chain_pem(self) -> str:
        """Leaf → PCK CA → root, the order Intel's type-5 certification data uses."""
        return self.pck.pem + self.pck_ca.pem + self.root.pem

    def pck_crl_issuer_chain_pem(self) -> str:
        return self.pck_ca.pem + self.root.pem

    def tcb_signing_chain_pem(self) -> str:
        return self.tcb_signing.pem + self.root.pem

    def root_crl(
        self, *, this_update: int, next_update: int, revoked_serials: Iterable[int] = (), crl_number: int = 1
    ) -> x509.CertificateRevocationList:
        return make_crl(
            self.root,
            this_update=this_update,
            next_update=next_update,
            revoked_serials=revoked_serials,
            crl_number=crl_number,
        )

    def pck_crl(
        self,
        *,
        this_update: int,
        next_update: int,
        revoked_serials: Iterable[int] = (),
        crl_number: int = 1,
        issuer: CertifiedKey | None = None,
    ) -> x509.CertificateRevocationList:
        """CRL of the leaf's issuing CA (or of ``issuer``, to build a wrong-CA CRL)."""
        return make_crl(
            issuer or self.pck_ca,
            this_update=this_update,
            next_update=next_update,
            revoked_serials=revoked_serials,
            crl_number=crl_number,
        )


@dataclass(frozen=True)
class PkiOptions:
    """Knobs for :func:`build_pki`; everything has a working default."""

    name_prefix: str = "Test SGX"
    # Overrides the root CN, e.g. "Demo SGX Root CA — not Intel".
    root_cn: str | None = None
    organization: str = "dstack-inspector synthetic PKI (not Intel)"
    pck_ca_kind: PckCaKind = "platform"
    # Build the other PCK CA as well (useful for wrong-CA CRL tests).
    with_both_pck_cas: bool = True
    pck_info: PckPlatformInfo = field(default_factory=PckPlatformInfo)
    # Raw override of the SGX extension DER (to test malformed extensions).
    sgx_extension: bytes | None = None
    # When set, certs get CRL distribution points under this base URL.
    crl_url_base: str | None = None
    root_validity: int = 30 * YEAR
    ca_validity: int = 15 * YEAR
    leaf_validity: int = 7 * YEAR


def build_pki(
    seed: str = "test", issued_at: int = 1_704_067_200, options: PkiOptions | None = None
) -> SynthPki:
    """Build the whole PKI; ``issued_at`` (Unix seconds) is every cert's notBefore."""
    opts = options or PkiOptions()
    org = opts.organization
    prefix = opts.name_prefix

    def url(path: str) -> str | None:
        return f"{opts.crl_url_base.rstrip('/')}/{path}" if opts.crl_url_base else None

    root_key = derive_private_key(seed, "root-ca")
    root = _issue(
        subject=_name(org, opts.root_cn or f"{prefix} Root CA"),
        key=root_key,
        issuer=None,
        serial=deterministic_serial(seed, "root-ca"),
        not_before=issued_at,
        not_after=issued_at + opts.root_validity,
        is_ca=True,
        ca_path_length=1,
        crl_url=url("rootcacrl"),
    )

    def pck_ca(kind: str) -> CertifiedKey:
        label = f"{kind}-ca"
        return _issue(
            subject=_name(org, f"{prefix} PCK {kind.capitalize()} CA"),
            key=derive_private_key(seed, label),
            issuer=root,
            serial=deterministic_serial(seed, label),
            not_before=issued_at,
            not_after=issued_at + opts.ca_validity,
            is_ca=True,
            ca_path_length=0,
            crl_url=url("rootcacrl"),
        )

    want_processor = opts.pck_ca_kind == "processor" or opts.with_both_pck_cas
    platform_ca = pck_ca("platform")
    processor_ca = pck_ca("processor") if want_processor else None
    issuing_ca = processor_ca if opts.pck_ca_kind == "processor" else platform_ca
    assert issuing_ca is not None

    is_platform = opts.pck_ca_kind == "platform"
    info = opts.pck_info
    # Identifiers default to seed-derived values; the platform instance ID only
    # exists on Platform CA leafs, so it stays None for Processor CA leafs.
    instance_id = info.platform_instance_id
    if is_platform and instance_id is None:
        instance_id = derive_bytes(seed, "platform-instance-id", 16)
    info = replace(
        info,
        ppid=info.ppid if info.ppid is not None else derive_bytes(seed, "ppid", 16),
        platform_instance_id=instance_id if is_platform else None,
    )
    ext_der = (
        opts.sgx_extension
        if opts.sgx_extension is not None
        else sgx_extension_der(info, platform=is_platform)
    )
    sgx_ext = x509.UnrecognizedExtension(x509.ObjectIdentifier(SGX_EXTENSION_OID), ext_der)
    pck = _issue(
        subject=_name(org, f"{prefix} PCK Certificate"),
        key=derive_private_key(seed, "pck-leaf"),
        issuer=issuing_ca,
        serial=deterministic_serial(seed, "pck-leaf"),
        not_before=issued_at,
        not_after=issued_at + opts.leaf_validity,
        is_ca=False,
        ca_path_length=None,
        crl_url=url(f"pckcrl?ca={opts.pck_ca_kind}&encoding=der"),
        extra=[sgx_ext],
    )
    tcb_signing = _issue(
        subject=_name(org, f"{prefix} TCB Signing"),
        key=derive_private_key(seed, "tcb-signing"),
        issuer=root,
        serial=deterministic_serial(seed, "tcb-signing"),
        not_before=issued_at,
        not_after=issued_at + opts.leaf_validity,
        is_ca=False,
        ca_path_length=None,
        crl_url=url("rootcacrl"),
    )
    return SynthPki(
        seed=seed,
        issued_at=issued_at,
        root=root,
        platform_ca=platform_ca,
        processor_ca=processor_ca,
        pck=pck,
        tcb_signing=tcb_signing,
        pck_ca_kind=opts.pck_ca_kind,
        pck_info=info,
    )
