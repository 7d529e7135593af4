"""Decode DCAP quotes: TDX v4/v5 (TD 1.0, TD 1.5, TD 1.5-ex bodies) and SGX v3, every field with its byte range.

Field names of TD bodies follow the Trust Center's quote object (mrtd, rtmr0, reportdata, ...), so reports and
DataObjects read the same as the reference platform's.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from .reader import FieldSpan, Reader

TEE_SGX = 0x00000000
TEE_TDX = 0x00000081
INTEL_QE_VENDOR_ID = bytes.fromhex("939A7233F79C4CA9940A0DB3957F0607")
HEADER_LEN = 48

CERT_TYPE_PCK_CHAIN = 5
CERT_TYPE_QE_REPORT = 6

SGX_REPORT_FIELDS: list[tuple[str, int]] = [
    ("cpu_svn", 16),
    ("misc_select", 4),
    ("reserved1", 28),
    ("attributes", 16),
    ("mr_enclave", 32),
    ("reserved2", 32),
    ("mr_signer", 32),
    ("reserved3", 96),
    ("isv_prod_id", 2),
    ("isv_svn", 2),
    ("reserved4", 60),
    ("report_data", 64),
]
SGX_INT_FIELDS = {"misc_select", "isv_prod_id", "isv_svn"}

TD10_FIELDS: list[tuple[str, int]] = [
    ("tee_tcb_svn", 16),
    ("mrseam", 48),
    ("mrsignerseam", 48),
    ("seamattributes", 8),
    ("tdattributes", 8),
    ("xfam", 8),
    ("mrtd", 48),
    ("mrconfig", 48),
    ("mrowner", 48),
    ("mrownerconfig", 48),
    ("rtmr0", 48),
    ("rtmr1", 48),
    ("rtmr2", 48),
    ("rtmr3", 48),
    ("reportdata", 64),
]
TD15_EXTRA: list[tuple[str, int]] = [("tee_tcb_svn2", 16), ("mr_service_td", 48)]
TD15EX_EXTRA: list[tuple[str, int]] = [
    ("vmid", 1),
    ("td_id", 32),
    ("dev_info", 48),
    ("init_service_td_hash", 48),
    ("init_service_td_attributes", 8),
    ("init_cpu_svn", 16),
    ("init_tee_tcb_svn", 16),
    ("init_tee_fmspc", 12),
    ("cur_service_td_hash", 48),
    ("cur_service_td_attributes", 8),
]

BODY_LAYOUTS: dict[str, list[tuple[str, int]]] = {
    "sgx": SGX_REPORT_FIELDS,
    "td10": TD10_FIELDS,
    "td15": TD10_FIELDS + TD15_EXTRA,
    "td15ex": TD10_FIELDS + TD15_EXTRA + TD15EX_EXTRA,
}
V5_BODY_TYPES = {1: "sgx", 2: "td10", 3: "td15", 4: "td15ex"}


def layout_len(kind: str) -> int:
    return sum(size for _, size in BODY_LAYOUTS[kind])


def _offsets(layout: list[tuple[str, int]]) -> tuple[tuple[str, int, int], ...]:
    out, at = [], 0
    for name, size in layout:
        out.append((name, at, at + size))
        at += size
    return tuple(out)


# (name, start, end) of every field, relative to the start of the report; which fields are little-endian ints.
_LAYOUT_OFFSETS = {kind: _offsets(layout) for kind, layout in BODY_LAYOUTS.items()}
_LAYOUT_LEN = {kind: layout_len(kind) for kind in BODY_LAYOUTS}
_INT_FIELDS = {kind: frozenset(SGX_INT_FIELDS if kind == "sgx" else ()) | {"vmid"} for kind in BODY_LAYOUTS}
_HEADER = struct.Struct("<HHIHH16s20s")
_HEADER_FIELDS = (("version", 2), ("attestation_key_type", 2), ("tee_type", 4), ("qe_svn", 2), ("pce_svn", 2),
                  ("qe_vendor_id", 16), ("user_data", 20))


@functools.lru_cache(maxsize=64)
def _layout_spans(kind: str, prefix: str, start: int) -> tuple[FieldSpan, ...]:
    """The byte ranges of a fixed layout placed at `start` (immutable, so every quote of that shape shares them)."""
    if kind == "header":
        return tuple(FieldSpan(f"{prefix}.{name}", a, b) for name, a, b in _offsets(list(_HEADER_FIELDS)))
    return tuple(FieldSpan(f"{prefix}.{name}", start + a, start + b) for name, a, b in _LAYOUT_OFFSETS[kind])


@dataclass(frozen=True)
class Header:
    version: int
    attestation_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes


@dataclass(frozen=True)
class Report:
    """An SGX enclave report or a TD report: `kind` names the layout, `fields` holds raw bytes (ints for SGX ints)."""

    kind: str
    fields: dict[str, Any]
    raw: bytes

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]


@dataclass(frozen=True)
class AuthData:
    signature: bytes
    attestation_key: bytes
    qe_report: Report
    qe_report_signature: bytes
    qe_auth_data: bytes
    cert_type: int
    cert_data: bytes
    outer_cert_type: int | None = None  # v4 layout only: the type of the outer certification data (6 expected)


@dataclass(frozen=True)
class Quote:
    raw: bytes
    header: Header
    body: Report
    body_type: int | None
    body_size: int | None
    signed_len: int
    auth: AuthData
    used_len: int
    spans: list[FieldSpan] = field(default_factory=list)

    @property
    def is_tdx(self) -> bool:
        return self.header.tee_type == TEE_TDX

    @property
    def tee_name(self) -> str:
        return "TDX" if self.is_tdx else "SGX"

    @property
    def signed_region(self) -> bytes:
        return self.raw[: self.signed_len]

    def pck_chain_pem(self) -> bytes | None:
        """The PEM chain of type-5 certification data, NUL padding removed."""
        if self.auth.cert_type != CERT_TYPE_PCK_CHAIN:
            return None
        return self.auth.cert_data.rstrip(b"\x00")

    def decoded(self) -> dict[str, Any]:
        """A JSON-friendly view: ints stay ints, bytes become lowercase hex."""
        return {
            "version": self.header.version,
            "attestation_key_type": self.header.attestation_key_type,
            "tee_type": self.tee_name,
            "qe_svn": self.header.qe_svn,
            "pce_svn": self.header.pce_svn,
            "qe_vendor_id": self.header.qe_vendor_id.hex(),
            "user_data": self.header.user_data.hex(),
            "body_kind": self.body.kind,
            "body_type": self.body_type,
            **{k: _jsonable(v) for k, v in self.body.fields.items() if not k.startswith("reserved")},
            "signed_length": self.signed_len,
            "quote_length": len(self.raw),
            "trailing_bytes": len(self.raw) - self.used_len,
            "qe_report": {
                k: _jsonable(v) for k, v in self.auth.qe_report.fields.items() if not k.startswith("reserved")
            },
            "qe_auth_data": self.auth.qe_auth_data.hex(),
            "cert_data_type": self.auth.cert_type,
            "attestation_key": self.auth.attestation_key.hex(),
        }

    def span_map(self) -> list[dict[str, Any]]:
        return [{"name": s.name, "start": s.start, "end": s.end} for s in self.spans]


def _jsonable(v: Any) -> Any:
    return v.hex() if isinstance(v, bytes) else v


def _read_report(r: Reader, kind: str, prefix: str) -> Report:
    start = r.pos
    end = start + _LAYOUT_LEN[kind]
    if end <= len(r.data):  # all of it is there: one slice, its fields by their fixed offsets
        raw = r.data[start:end]
        r.pos = end
        r.spans.extend(_layout_spans(kind, prefix, start))
        fields = {name: raw[a:b] for name, a, b in _LAYOUT_OFFSETS[kind]}
        for name in _INT_FIELDS[kind]:
            if name in fields:
                fields[name] = int.from_bytes(fields[name], "little")
        return Report(kind, fields, raw)
    # Short: read field by field, so the error names the first field that does not fit.
    fields = {}
    for name, size in BODY_LAYOUTS[kind]:
        raw = r.take(f"{prefix}.{name}", size)
        if (kind == "sgx" and name in SGX_INT_FIELDS) or name == "vmid":
            fields[name] = int.from_bytes(raw, "little")
        else:
            fields[name] = raw
    return Report(kind, fields, r.data[start : r.pos])


def parse_sgx_report(data: bytes, prefix: str = "report") -> Report:
    """A standalone 384-byte SGX report (the QE report)."""
    return _read_report(Reader(data), "sgx", prefix)


def _body_kind(r: Reader, h: Header) -> tuple[str, int | None, int | None]:
    if h.version == 3:
        if h.tee_type != TEE_SGX:
            raise InputError(f"invalid TEE type 0x{h.tee_type:x} for a version 3 quote", field="header.tee_type",
                             offset=4)
        return "sgx", None, None
    if h.version == 4:
        if h.tee_type == TEE_SGX:
            return "sgx", None, None
        if h.tee_type == TEE_TDX:
            return "td10", None, None
        raise InputError(f"invalid TEE type 0x{h.tee_type:x}", field="header.tee_type", offset=4)
    if h.version == 5:
        at = r.pos
        body_type = r.u16("body_descriptor.type")
        body_size = r.u32("body_descriptor.size")
        kind = V5_BODY_TYPES.get(body_type)
        if kind is None:
            raise InputError(f"unsupported body type {body_type}", field="body_descriptor.type", offset=at)
        if (kind == "sgx") != (h.tee_type == TEE_SGX) or h.tee_type not in (TEE_SGX, TEE_TDX):
            # The header says which TEE signed; a body of the other kind has no fields the checks could read.
            raise InputError(f"body type {body_type} ({kind.upper()} report) does not fit TEE type 0x{h.tee_type:x}",
                             field="body_descriptor.type", offset=at)
        if body_size != layout_len(kind):
            raise InputError(
                f"body size {body_size} does not match the {layout_len(kind)} bytes of body type {body_type}",
                field="body_descriptor.size",
                offset=at + 2,
            )
        return kind, body_type, body_size
    raise InputError(f"unsupported quote version {h.version} (expected 3, 4 or 5)", field="header.version", offset=0)


def _read_header(r: Reader) -> Header:
    if len(r.data) >= HEADER_LEN:
        r.spans.extend(_layout_spans("header", "header", 0))
        r.pos = HEADER_LEN
        return Header(*_HEADER.unpack_from(r.data))
    return Header(
        version=r.u16("header.version"),
        attestation_key_type=r.u16("header.attestation_key_type"),
        tee_type=r.u32("header.tee_type"),
        qe_svn=r.u16("header.qe_svn"),
        pce_svn=r.u16("header.pce_svn"),
        qe_vendor_id=r.take("header.qe_vendor_id", 16),
        user_data=r.take("header.user_data", 20),
    )


def parse_quote(data: bytes) -> Quote:
    """Decode a quote. Raises InputError (field, offset) on any structural problem; verifies nothing."""
    r = Reader(data)
    header = _read_header(r)
    kind, body_type, body_size = _body_kind(r, header)
    body = _read_report(r, kind, "body")
    signed_len = r.pos
    auth_len = r.length("auth_data_size", 4)
    auth_start = r.pos
    if auth_len > r.remaining():
        raise InputError(
            f"truncated: auth data declares {auth_len} bytes, only {r.remaining()} left",
            field="auth_data_size",
            offset=signed_len,
        )
    # Parse the auth data inside its declared bounds only: a hostile inner length cannot run past it.
    auth_reader = Reader(data[: auth_start + auth_len], r.spans)
    auth_reader.pos = auth_start
    auth = _read_auth_v3(auth_reader) if header.version == 3 else _read_auth_v4(auth_reader)
    return Quote(
        raw=data,
        header=header,
        body=body,
        body_type=body_type,
        body_size=body_size,
        signed_len=signed_len,
        auth=auth,
        used_len=auth_start + auth_len,
        spans=r.spans,
    )


def _read_qe_section(r: Reader, prefix: str) -> tuple[Report, bytes, bytes, int, bytes]:
    qe_start = r.pos
    qe_raw = r.take(f"{prefix}.qe_report", 384)
    qe_report = _read_report(Reader(qe_raw, []), "sgx", "qe_report")
    # Record the QE report's own fields at their absolute offsets too, for the hex pane.
    r.spans.extend(_layout_spans("sgx", f"{prefix}.qe_report", qe_start))
    qe_sig = r.take(f"{prefix}.qe_report_signature", 64)
    auth_len = r.length(f"{prefix}.qe_auth_data_size", 2)
    qe_auth = r.take(f"{prefix}.qe_auth_data", auth_len)
    cert_type = r.u16(f"{prefix}.cert_data_type")
    cert_len = r.length(f"{prefix}.cert_data_size", 4)
    cert_data = r.take(f"{prefix}.cert_data", cert_len)
    return qe_report, qe_sig, qe_auth, cert_type, cert_data


def _read_auth_v3(r: Reader) -> AuthData:
    sig = r.take("auth.signature", 64)
    ak = r.take("auth.attestation_key", 64)
    qe_report, qe_sig, qe_auth, cert_type, cert_data = _read_qe_section(r, "auth")
    return AuthData(sig, ak, qe_report, qe_sig, qe_auth, cert_type, cert_data)


def _read_auth_v4(r: Reader) -> AuthData:
    sig = r.take("auth.signature", 64)
    ak = r.take("auth.attestation_key", 64)
    outer_type = r.u16("auth.outer_cert_data_type")
    outer_len = r.length("auth.outer_cert_data_size", 4)
    outer_start = r.pos
    if outer_len > r.remaining():
        raise InputError(
            f"truncated: certification data declares {outer_len} bytes, only {r.remaining()} left",
            field="auth.outer_cert_data_size",
            offset=outer_start - 4,
        )
    inner = Reader(r.data[: outer_start + outer_len], r.spans)
    inner.pos = outer_start
    qe_report, qe_sig, qe_auth, cert_type, cert_data = _read_qe_section(inner, "auth.qe_report_cert_data")
    return AuthData(sig, ak, qe_report, qe_sig, qe_auth, cert_type, cert_data, outer_cert_type=outer_type)
