"""A test web PKI: a root, an issuing CA and leaf certificates for a domain, as a CA like Let's Encrypt would issue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DOMAIN = "example.test"



def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def spki_of(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def build_cert(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    names: list[str] | None = None,
    not_before: datetime = NOW - timedelta(days=30),
    not_after: datetime = NOW + timedelta(days=60),
    serial: int | None = None,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test CA Org"),
                         x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names or []]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


class Pki:
    def __init__(self) -> None:
        self.root_key = new_key()
        self.root = build_cert("Test Root", self.root_key, None, self.root_key, ca=True,
                               not_before=NOW - timedelta(days=3650), not_after=NOW + timedelta(days=3650))
        self.inter_key = new_key()
        self.inter = build_cert("Test Issuing CA", self.inter_key, self.root, self.root_key, ca=True,
                                not_before=NOW - timedelta(days=365), not_after=NOW + timedelta(days=3 * 365))
        self.tee_key = new_key()
        self.foreign_key = new_key()

    def leaf(self, key: ec.EllipticCurvePrivateKey, names: list[str] | None = None, **kw: Any) -> x509.Certificate:
        names = names if names is not None else [f"*.{DOMAIN}"]
        return build_cert(names[0], key, self.inter, self.inter_key, ca=False, names=names, **kw)

    @property
    def tee_spki(self) -> bytes:
        return spki_of(self.tee_key)

    @property
    def foreign_spki(self) -> bytes:
        return spki_of(self.foreign_key)
