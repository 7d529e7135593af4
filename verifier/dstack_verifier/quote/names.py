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
    try:
        items = _tbs_items(cert.tbs_certificate_bytes)
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


def _value_text(tlv: der.Tlv) -> str:
    if tlv.tag == 0x1E:  # BMPString
        return tlv.value.decode("utf-16-be", "replace")
    if tlv.tag == 0x14:  # T61String: treated as Latin-1, as most decoders do
        return tlv.value.decode("latin-1")
    if tlv.tag in (0x0C, 0x13, 0x16, 0x1A):  # UTF8, Printable, IA5, Visible
        return tlv.value.decode("utf-8", "replace")
    return "#" + tlv.value.hex()


_SPECIAL = re.compile(r'[,+"\\<>;=]')


def _escape(value: str) -> str:
    out = _SPECIAL.sub(lambda m: "\\" + m.group(), value)
    if out.startswith(("#", " ")):
        out = "\\" + out
    if out.endswith(" "):
        out = out[:-1] + "\\ "
    return out


@functools.lru_cache(maxsize=1024)
def attributes(name_der: bytes) -> tuple[tuple[str, str], ...]:
    """(short name or dotted OID, value) pairs in encoding order; malformed parts are skipped, not raised."""
    out: list[tuple[str, str]] = []
    try:
        for rdn in der.read_tlvs(name_der):
            for atv in der.read_tlvs(rdn.value):
                parts = der.read_tlvs(atv.value)
                if len(parts) == 2 and parts[0].tag == der.TAG_OID:
                    short = _SHORT_BY_DER.get(parts[0].value) or der.decode_oid(parts[0].value)
                    out.append((short, _value_text(parts[1])))
    except der.DerError:
        out.append(("?", "malformed name"))
    return tuple(out)


def name_text(name_der: bytes) -> str:
    """RFC 4514 order (last RDN first), e.g. `CN=Intel SGX PCK Platform CA,O=Intel Corporation,...`."""
    return ",".join(f"{k}={_escape(v)}" for k, v in reversed(attributes(name_der)))


def common_name(name_der: bytes) -> str | None:
    cns = [v for k, v in attributes(name_der) if k == "CN"]
    return cns[-1] if cns else None


def clear_caches() -> None:
    cert_names.cache_clear()
    attributes.cache_clear()
