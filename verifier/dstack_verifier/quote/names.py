"""Distinguished names read straight from the DER of certificates and CRLs.

`cryptography` builds Python Name objects on every `.issuer` / `.subject` access, which dominated the cost of a
chain check. Path building and CRL lookup compare the raw DER of names (as webpki does), and the text shown to a
reviewer is rendered once per certificate from the same bytes.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from . import der

_SHORT_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.5": "serialNumber",
    "0.9.2342.19200300.100.1.25": "DC",
}
_SHORT_BY_DER = {der.encode_oid(oid): short for oid, short in _SHORT_NAMES.items()}  # skips decoding common OIDs
_TAG_CONTEXT_0 = 0xA0


class CertNames(NamedTuple):
    issuer: bytes  # DER content of the issuer Name
    subject: bytes


def _tbs_items(tbs: bytes) -> list[der.Tlv]:
    top = der.read_tlvs(tbs)
    if len(top) != 1 or top[0].tag != der.TAG_SEQUENCE:
        raise ValueError("TBS is not one SEQUENCE")
    return der.read_tlvs(top[0].value)


@functools.lru_cache(maxsize=1024)
def cert_names(cert: x509.Certificate) -> CertNames:
    """Issuer and subject of a certificate (TBSCertificate: [0] version, serial, algorithm, issuer, validity,
    subject, ...). Raises ValueError for a malformed TBS."""
    return tbs_names(cert.tbs_certificate_bytes)


def tbs_names(tbs: bytes) -> CertNames:
    """Issuer and subject from the DER of a TBSCertificate. Raises ValueError for a malformed TBS."""
    # Fast path: the item headers located without copying; anything unusual takes the full split below, which
    # raises the precise error.
    top = der.spans(tbs, 0, len(tbs))
    if top is not None and len(top) == 1 and top[0][0] == der.TAG_SEQUENCE:
        found = der.spans(tbs, top[0][1], top[0][2])
        if found is not None:
            off = 1 if found and found[0][0] == _TAG_CONTEXT_0 else 0
            if len(found) > 4 + off:
                issuer, subject = found[2 + off], found[4 + off]
                if issuer[0] == der.TAG_SEQUENCE and subject[0] == der.TAG_SEQUENCE:
                    return CertNames(tbs[issuer[1] : issuer[2]], tbs[subject[1] : subject[2]])
    return _tbs_names_checked(tbs)


def _tbs_names_checked(tbs: bytes) -> CertNames:
    try:
        items = _tbs_items(tbs)
        off = 1 if items and items[0].tag == _TAG_CONTEXT_0 else 0
        issuer, subject = items[2 + off], items[4 + off]
    except (der.DerError, IndexError):
        raise ValueError("malformed TBSCertificate: cannot locate issuer and subject") from None
    if issuer.tag != der.TAG_SEQUENCE or subject.tag != der.TAG_SEQUENCE:
        raise ValueError("malformed TBSCertificate: issuer or subject is not a SEQUENCE")
    return CertNames(issuer.value, subject.value)


def crl_issuer(crl_der: bytes) -> bytes:
    """The issuer of a DER CRL (CertificateList: TBSCertList {version OPTIONAL, algorithm, issuer, ...}, ...).

    Read from the original bytes: cryptography re-encodes `tbs_certlist_bytes` on every access."""
    try:
        outer = der.read_tlvs(crl_der)
        if len(outer) != 1 or outer[0].tag != der.TAG_SEQUENCE:
            raise ValueError("malformed CRL: not one SEQUENCE")
        tbs = der.read_tlvs(outer[0].value)[0]
        items = der.read_tlvs(tbs.value)
        off = 1 if items and items[0].tag == der.TAG_INTEGER else 0
        issuer = items[1 + off]
    except (der.DerError, IndexError):
        raise ValueError("malformed TBSCertList: cannot locate the issuer") from None
    if issuer.tag != der.TAG_SEQUENCE:
        raise ValueError("malformed TBSCertList: issuer is not a SEQUENCE")
    return issuer.value


def _value_text(tag: int, value: bytes) -> str:
    if tag == 0x1E:  # BMPString
        return value.decode("utf-16-be", "replace")
    if tag == 0x14:  # T61String: treated as Latin-1, as most decoders do
        return value.decode("latin-1")
    if tag in (0x0C, 0x13, 0x16, 0x1A):  # UTF8, Printable, IA5, Visible
        return value.decode("utf-8", "replace")
    return "#" + value.hex()


_SPECIAL = re.compile(r'[,+"\\<>;=]')


def _escape(value: str) -> str:
    if not value or (_SPECIAL.search(value) is None and value[0] not in "# " and value[-1] != " "):
        return value
    out = _SPECIAL.sub(lambda m: "\\" + m.group(), value)
    if out.startswith(("#", " ")):
        out = "\\" + out
    if out.endswith(" "):
        out = out[:-1] + "\\ "
    return out


@functools.lru_cache(maxsize=1024)
def attributes(name_der: bytes) -> tuple[tuple[str, str], ...]:
    """(short name or dotted OID, value) pairs in encoding order; malformed parts are skipped, not raised."""
    fast = _attributes_short_form(name_der)
    if fast is not None:
        return fast
    out: list[tuple[str, str]] = []
    try:
        for rdn in der.read_tlvs(name_der):
            for atv in der.read_tlvs(rdn.value):
                parts = der.read_tlvs(atv.value)
                if len(parts) == 2 and parts[0].tag == der.TAG_OID:
                    short = _SHORT_BY_DER.get(parts[0].value) or der.decode_oid(parts[0].value)
                    out.append((short, _value_text(parts[1].tag, parts[1].value)))
    except der.DerError:
        out.append(("?", "malformed name"))
    return tuple(out)


def _attributes_short_form(d: bytes) -> tuple[tuple[str, str], ...] | None:
    """The common case in one pass: every RDN, attribute, OID and value in short-form DER, each attribute exactly
    {OID, value}. None for anything else, which the general walk in `attributes` handles."""
    out = []
    pos, end = 0, len(d)
    while pos < end:
        if end - pos < 2 or d[pos + 1] >= 0x80:
            return None
        rdn_end = pos + 2 + d[pos + 1]
        if rdn_end > end:
            return None
        p = pos + 2
        while p < rdn_end:
            if rdn_end - p < 2 or d[p + 1] >= 0x80:
                return None
            atv_end = p + 2 + d[p + 1]
            q = p + 2
            if atv_end > rdn_end or atv_end - q < 2 or d[q] != der.TAG_OID or not 0 < d[q + 1] < 0x80:
                return None
            v = q + 2 + d[q + 1]
            if atv_end - v < 2 or d[v + 1] >= 0x80 or v + 2 + d[v + 1] != atv_end:
                return None
            oid = d[q + 2 : v]
            out.append((_SHORT_BY_DER.get(oid) or der.decode_oid(oid), _value_text(d[v], d[v + 2 : atv_end])))
            p = atv_end
        pos = rdn_end
    return tuple(out)


@functools.lru_cache(maxsize=1024)
def name_text(name_der: bytes) -> str:
    """RFC 4514 order (last RDN first), e.g. `CN=Intel SGX PCK Platform CA,O=Intel Corporation,...`."""
    return ",".join([f"{k}={_escape(v)}" for k, v in reversed(attributes(name_der))])


def common_name(name_der: bytes) -> str | None:
    cns = [v for k, v in attributes(name_der) if k == "CN"]
    return cns[-1] if cns else None


def subject_label(cert: x509.Certificate) -> str:
    """How messages name a certificate: its subject's common name, else the whole subject."""
    try:
        names = cert_names(cert)
    except ValueError:
        return "<malformed subject>"
    return common_name(names.subject) or name_text(names.subject)


UNREADABLE_KEY = "not a parseable public key"


def key_label(key: x509.Certificate | bytes) -> str:
    """How messages name a public key, given its certificate or its SubjectPublicKeyInfo DER: `EC secp256r1`,
    `RSA 2048`, `Ed25519`..."""
    try:
        public = key.public_key() if isinstance(key, x509.Certificate) else serialization.load_der_public_key(key)
    except (ValueError, UnsupportedAlgorithm, TypeError):
        return UNREADABLE_KEY
    if isinstance(public, ec.EllipticCurvePublicKey):
        return f"EC {public.curve.name}"
    if isinstance(public, rsa.RSAPublicKey):
        return f"RSA {public.key_size}"
    return type(public).__name__.removesuffix("PublicKey")


def clear_caches() -> None:
    cert_names.cache_clear()
    attributes.cache_clear()
    name_text.cache_clear()
