"""The Intel SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1): FMSPC, TCB, PCE, PPID..."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509

from . import der
from .names import cert_names, name_text

SGX_EXTENSION_OID = x509.ObjectIdentifier("1.2.840.113741.1.13.1")
_BASE = "1.2.840.113741.1.13.1"
SGX_TYPES = {0: "Standard", 1: "Scalable", 2: "Scalable with integrity"}


class PckExtensionError(ValueError):
    pass


@dataclass(frozen=True)
class PckInfo:
    ppid: bytes
    cpu_svn: bytes
    pce_svn: int
    pce_id: bytes
    fmspc: bytes
    sgx_type: int
    tcb_components: tuple[int, ...]
    platform_instance_id: bytes | None
    dynamic_platform: bool | None
    cached_keys: bool | None
    smt_enabled: bool | None
    ca_type: str

    def to_dict(self) -> dict:
        return {
            "ppid": self.ppid.hex(),
            "cpu_svn": self.cpu_svn.hex(),
            "pce_svn": self.pce_svn,
            "pce_id": self.pce_id.hex(),
            "fmspc": self.fmspc.hex().upper(),
            "sgx_type": self.sgx_type,
            "sgx_type_name": SGX_TYPES.get(self.sgx_type, "unknown"),
            "tcb_components": list(self.tcb_components),
            "platform_instance_id": self.platform_instance_id.hex() if self.platform_instance_id else None,
            "dynamic_platform": self.dynamic_platform,
            "cached_keys": self.cached_keys,
            "smt_enabled": self.smt_enabled,
            "ca_type": self.ca_type,
        }


def _pairs(seq_value: bytes) -> dict[bytes, der.Tlv]:
    """Entries keyed by the OID's raw DER bytes (cheaper than decoding every OID)."""
    fast = _pairs_fast(seq_value)
    if fast is not None:
        return fast
    out: dict[bytes, der.Tlv] = {}
    for item in der.read_tlvs(seq_value):
        if item.tag != der.TAG_SEQUENCE:
            raise PckExtensionError("SGX extension entry is not a SEQUENCE")
        parts = der.read_tlvs(item.value)
        if len(parts) != 2 or parts[0].tag != der.TAG_OID:
            raise PckExtensionError("SGX extension entry is not {OID, value}")
        out[parts[0].value] = parts[1]
    return out


_new_tuple = tuple.__new__


def _length(d: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """(first value byte, end of value) for the length octets at `pos`; None when they do not fit."""
    if pos >= end:
        return None
    n = d[pos]
    pos += 1
    if n >= 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or pos + k > end:
            return None
        n = int.from_bytes(d[pos : pos + k], "big")
        pos += k
    return (pos, pos + n) if pos + n <= end else None


def _pairs_fast(d: bytes) -> dict[bytes, der.Tlv] | None:
    """The well-formed case of `_pairs` in one pass without intermediate lists; None at the first irregularity,
    so that the general walk raises exactly the error it always did."""
    out: dict[bytes, der.Tlv] = {}
    pos, end = 0, len(d)
    while pos < end:
        if d[pos] != der.TAG_SEQUENCE:
            return None
        span = _length(d, pos + 1, end)
        if span is None:
            return None
        p, q = span
        if q - p < 2 or d[p] != der.TAG_OID or d[p + 1] >= 0x80:
            return None
        v = p + 2 + d[p + 1]
        if v + 2 > q:
            return None
        value = _length(d, v + 1, q)
        if value is None or value[1] != q:
            return None
        out[d[p + 2 : v]] = _new_tuple(der.Tlv, (d[v], d[value[0] : q]))
        pos = q
    return out


@functools.lru_cache(maxsize=64)
def _oid(dotted: str) -> bytes:
    return der.encode_oid(dotted)


def _need(items: dict[bytes, der.Tlv], oid: str, name: str, tag: int, size: int | None = None) -> bytes:
    tlv = items.get(_oid(oid))
    if tlv is None:
        raise PckExtensionError(f"SGX extension lacks {name} ({oid})")
    if tlv.tag != tag:
        raise PckExtensionError(f"SGX extension {name} has DER tag 0x{tlv.tag:02x}, expected 0x{tag:02x}")
    if size is not None and len(tlv.value) != size:
        raise PckExtensionError(f"SGX extension {name} is {len(tlv.value)} bytes, expected {size}")
    return tlv.value


# (OID DER, dotted OID, name) of the 16 TCB component SVNs.
_COMPONENTS = [(der.encode_oid(f"{_BASE}.2.{i}"), f"{_BASE}.2.{i}", f"SGX TCB comp{i:02d} SVN") for i in range(1, 17)]
_TCB = der.encode_oid(f"{_BASE}.2")
_CONFIG = der.encode_oid(f"{_BASE}.7")
_FLAGS = [der.encode_oid(f"{_BASE}.7.{k}") for k in (1, 2, 3)]
_INSTANCE = der.encode_oid(f"{_BASE}.6")


def _canonical_tcb() -> re.Pattern[bytes]:
    """The TCB SEQUENCE as Intel writes it: components 1-16 and PCESVN in order, each a one- or two-byte
    non-negative INTEGER in short-form DER, then the 16-byte CPUSVN. One match replaces 18 entry walks; anything
    else (other order, duplicates, other encodings, errors) goes the general way."""
    parts = []
    for i in range(1, 18):
        oid = der.encode_oid(f"{_BASE}.2.{i}")
        o = re.escape(bytes([der.TAG_OID, len(oid)]) + oid)
        one, two = bytes([der.TAG_SEQUENCE, len(oid) + 5]), bytes([der.TAG_SEQUENCE, len(oid) + 6])
        parts.append(b"(?:" + re.escape(one) + o + rb"\x02\x01([\x00-\x7f])|"
                     + re.escape(two) + o + rb"\x02\x02([\x00-\x7f].))")
    oid = der.encode_oid(f"{_BASE}.2.18")
    parts.append(re.escape(bytes([der.TAG_SEQUENCE, len(oid) + 20, der.TAG_OID, len(oid)]) + oid) + rb"\x04\x10(.{16})")
    return re.compile(b"".join(parts), re.DOTALL)


_TCB_CANONICAL = _canonical_tcb()


def _canonical_extension() -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """The SGX extension as Intel writes it: PPID, TCB (its content checked by _TCB_CANONICAL), PCE-ID, FMSPC,
    SGX type and, from the platform CA, the platform instance ID and configuration, in that order, each entry in
    the DER sizes Intel uses. The part up to the TCB content, with its two-byte long-form lengths captured to be
    checked, and the part after it."""

    def entry(arc: str, value: bytes) -> bytes:
        oid = der.encode_oid(f"{_BASE}.{arc}")
        return re.escape(bytes([der.TAG_OID, len(oid)]) + oid) + value

    def short(arc: str, value: bytes, size: int) -> bytes:
        oid_len = len(der.encode_oid(f"{_BASE}.{arc}"))
        return re.escape(bytes([der.TAG_SEQUENCE, 2 + oid_len + size])) + entry(arc, value)

    flags = b"".join(short(f"7.{k}", rb"\x01\x01(.)", 3) for k in (1, 2, 3))
    head = rb"\x30\x82(..)" + short("1", rb"\x04\x10(.{16})", 18) + rb"\x30\x82(..)" + entry("2", rb"\x30\x82(..)")
    tail = (short("3", rb"\x04\x02(..)", 4)
            + short("4", rb"\x04\x06(.{6})", 8)
            + short("5", rb"\x0a\x01([\x00-\x7f])", 3)
            + b"(?:" + short("6", rb"\x04\x10(.{16})", 18) + b")?"
            + b"(?:" + short("7", rb"\x30\x36", 2 + 54) + flags + b")?")
    return re.compile(head, re.DOTALL), re.compile(tail, re.DOTALL)


_SGX_HEAD, _SGX_TAIL = _canonical_extension()
_OID_LEN = len(der.encode_oid(f"{_BASE}.2"))


def _parse_canonical(raw: bytes, ca_type: Callable[[], str] | str) -> PckInfo | None:
    """parse_sgx_extension for an extension in Intel's layout (what the general walk would read from it); None
    for any other layout."""
    head = _SGX_HEAD.match(raw)
    if head is None:
        return None
    top_len, ppid, entry_len, tcb_len = head.groups()
    start = head.end()
    end = start + int.from_bytes(tcb_len, "big")
    if int.from_bytes(top_len, "big") != len(raw) - 4 or int.from_bytes(entry_len, "big") != end - start + 6 + _OID_LEN:
        return None
    canonical = _TCB_CANONICAL.fullmatch(raw, start, end)
    tail = _SGX_TAIL.fullmatch(raw, end) if canonical is not None else None
    if tail is None:
        return None
    pce_id, fmspc, sgx_type, instance, f1, f2, f3 = tail.groups()
    g = canonical.groups()
    return PckInfo(
        ppid=ppid,
        cpu_svn=g[34],
        pce_svn=int.from_bytes(g[32] or g[33], "big"),
        pce_id=pce_id,
        fmspc=fmspc,
        sgx_type=sgx_type[0],
        tcb_components=tuple([int.from_bytes(g[k] or g[k + 1], "big") for k in range(0, 32, 2)]),
        platform_instance_id=instance,
        dynamic_platform=None if f1 is None else f1 != b"\x00",
        cached_keys=None if f2 is None else f2 != b"\x00",
        smt_enabled=None if f3 is None else f3 != b"\x00",
        ca_type=ca_type if isinstance(ca_type, str) else ca_type(),
    )


def ca_type_of(cert: x509.Certificate) -> str:
    """dcap-qvl's rule: the issuer DN names the PCK CA kind; processor when it names neither."""
    return ca_type_for_issuer(name_text(cert_names(cert).issuer))


def ca_type_for_issuer(issuer: str) -> str:
    if "Processor" in issuer:
        return "processor"
    if "Platform" in issuer:
        return "platform"
    return "processor"


def parse_pck_extension(cert: x509.Certificate) -> PckInfo:
    matches = [e for e in cert.extensions if e.oid == SGX_EXTENSION_OID]
    return parse_sgx_extension([e.value.value for e in matches], lambda: ca_type_of(cert))


def parse_sgx_extension(values: Sequence[bytes], ca_type: Callable[[], str] | str) -> PckInfo:
    """The SGX extension of a PCK certificate, given the DER of each SGX extension it has (exactly one is
    required) and its CA type (or how to find it: see ca_type_of)."""
    if len(values) != 1:
        raise PckExtensionError(f"PCK certificate has {len(values)} SGX extensions, expected exactly one")
    raw = values[0]
    fast = _parse_canonical(raw, ca_type)
    if fast is not None:
        return fast
    try:
        top = der.read_tlvs(raw)
        if len(top) != 1 or top[0].tag != der.TAG_SEQUENCE:
            raise PckExtensionError("SGX extension is not one SEQUENCE")
        items = _pairs(top[0].value)
        tcb_tlv = items.get(_TCB)
        canonical = (_TCB_CANONICAL.fullmatch(tcb_tlv.value)
                     if tcb_tlv is not None and tcb_tlv.tag == der.TAG_SEQUENCE else None)
        if canonical is not None:
            g = canonical.groups()
            components = [int.from_bytes(g[k] or g[k + 1], "big") for k in range(0, 32, 2)]
            pce_raw, cpu_svn = g[32] or g[33], g[34]
        else:
            tcb = _pairs(_need(items, f"{_BASE}.2", "TCB", der.TAG_SEQUENCE))
            components = []
            for oid, dotted, name in _COMPONENTS:
                tlv = tcb.get(oid)
                value = tlv.value if tlv is not None and tlv.tag == der.TAG_INTEGER else _need(
                    tcb, dotted, name, der.TAG_INTEGER)  # _need raises, naming what is wrong
                components.append(der.decode_uint(value))
            pce_raw = _need(tcb, f"{_BASE}.2.17", "PCESVN", der.TAG_INTEGER)
            if len(pce_raw) > 2:
                raise PckExtensionError("PCESVN does not fit in 16 bits")
        config = items.get(_CONFIG)
        flags: list[bool | None] = [None, None, None]
        if config is not None:
            conf_items = _pairs(config.value)
            for k, oid in enumerate(_FLAGS):
                tlv = conf_items.get(oid)
                if tlv is not None and tlv.tag == der.TAG_BOOLEAN:
                    flags[k] = tlv.value != b"\x00"
        instance = items.get(_INSTANCE)
        ppid = _need(items, f"{_BASE}.1", "PPID", der.TAG_OCTET_STRING)
        if canonical is None:
            cpu_svn = _need(tcb, f"{_BASE}.2.18", "CPUSVN", der.TAG_OCTET_STRING, 16)
        return PckInfo(
            ppid=ppid,
            cpu_svn=cpu_svn,
            pce_svn=der.decode_uint(pce_raw),
            pce_id=_need(items, f"{_BASE}.3", "PCE-ID", der.TAG_OCTET_STRING),
            fmspc=_need(items, f"{_BASE}.4", "FMSPC", der.TAG_OCTET_STRING, 6),
            sgx_type=der.decode_uint(_need(items, f"{_BASE}.5", "SGX Type", der.TAG_ENUMERATED)),
            tcb_components=tuple(components),
            platform_instance_id=instance.value if instance is not None else None,
            dynamic_platform=flags[0],
            cached_keys=flags[1],
            smt_enabled=flags[2],
            ca_type=ca_type if isinstance(ca_type, str) else ca_type(),
        )
    except der.DerError as exc:
        raise PckExtensionError(f"SGX extension is malformed DER: {exc}") from exc
