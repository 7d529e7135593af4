"""The Intel SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1): FMSPC, TCB, PCE, PPID..."""

from __future__ import annotations

import functools
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
    out: dict[bytes, der.Tlv] = {}
    for item in der.read_tlvs(seq_value):
        if item.tag != der.TAG_SEQUENCE:
            raise PckExtensionError("SGX extension entry is not a SEQUENCE")
        parts = der.read_tlvs(item.value)
        if len(parts) != 2 or parts[0].tag != der.TAG_OID:
            raise PckExtensionError("SGX extension entry is not {OID, value}")
        out[parts[0].value] = parts[1]
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


def ca_type_of(cert: x509.Certificate) -> str:
    """dcap-qvl's rule: the issuer DN names the PCK CA kind; processor when it names neither."""
    issuer = name_text(cert_names(cert).issuer)
    if "Processor" in issuer:
        return "processor"
    if "Platform" in issuer:
        return "platform"
    return "processor"


def parse_pck_extension(cert: x509.Certificate) -> PckInfo:
    matches = [e for e in cert.extensions if e.oid == SGX_EXTENSION_OID]
    if len(matches) != 1:
        raise PckExtensionError(f"PCK certificate has {len(matches)} SGX extensions, expected exactly one")
    raw = matches[0].value.value  # UnrecognizedExtension: the DER bytes
    try:
        top = der.read_tlvs(raw)
        if len(top) != 1 or top[0].tag != der.TAG_SEQUENCE:
            raise PckExtensionError("SGX extension is not one SEQUENCE")
        items = _pairs(top[0].value)
        tcb = _pairs(_need(items, f"{_BASE}.2", "TCB", der.TAG_SEQUENCE))
        components = tuple(
            der.decode_uint(_need(tcb, f"{_BASE}.2.{i}", f"SGX TCB comp{i:02d} SVN", der.TAG_INTEGER))
            for i in range(1, 17)
        )
        pce_raw = _need(tcb, f"{_BASE}.2.17", "PCESVN", der.TAG_INTEGER)
        if len(pce_raw) > 2:
            raise PckExtensionError("PCESVN does not fit in 16 bits")
        config = items.get(_oid(f"{_BASE}.7"))
        flags: dict[str, bool | None] = {"1": None, "2": None, "3": None}
        if config is not None:
            conf_items = _pairs(config.value)
            for k in flags:
                tlv = conf_items.get(_oid(f"{_BASE}.7.{k}"))
                if tlv is not None and tlv.tag == der.TAG_BOOLEAN:
                    flags[k] = tlv.value != b"\x00"
        instance = items.get(_oid(f"{_BASE}.6"))
        return PckInfo(
            ppid=_need(items, f"{_BASE}.1", "PPID", der.TAG_OCTET_STRING),
            cpu_svn=_need(tcb, f"{_BASE}.2.18", "CPUSVN", der.TAG_OCTET_STRING, 16),
            pce_svn=der.decode_uint(pce_raw),
            pce_id=_need(items, f"{_BASE}.3", "PCE-ID", der.TAG_OCTET_STRING),
            fmspc=_need(items, f"{_BASE}.4", "FMSPC", der.TAG_OCTET_STRING, 6),
            sgx_type=der.decode_uint(_need(items, f"{_BASE}.5", "SGX Type", der.TAG_ENUMERATED)),
            tcb_components=components,
            platform_instance_id=instance.value if instance is not None else None,
            dynamic_platform=flags["1"],
            cached_keys=flags["2"],
            smt_enabled=flags["3"],
            ca_type=ca_type_of(cert),
        )
    except der.DerError as exc:
        raise PckExtensionError(f"SGX extension is malformed DER: {exc}") from exc
