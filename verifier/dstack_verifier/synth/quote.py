"""Byte-level builder for DCAP quotes: TDX v4 / v5 (TD10, TD15, TD15ex) and SGX v3.

Everything that ends up in the quote is a plain mutable field of
:class:`QuoteBuilder` (or of its header / report dataclasses), so a test can
change any item and the builder will sign *over the changed bytes*. The
``*_override`` fields instead inject bytes that the builder would otherwise
compute (signatures, QE report data, certification data...), which is how
post-signing corruption is simulated.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field, replace
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .collateral import sign_raw

INTEL_QE_VENDOR_ID = bytes.fromhex("939A7233F79C4CA9940A0DB3957F0607")
TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081
ATT_KEY_TYPE_ECDSA_P256 = 2

CERT_TYPE_PCK_CHAIN = 5
CERT_TYPE_QE_REPORT = 6

BodyKind = Literal["sgx", "td10", "td15", "td15ex"]
BODY_TYPE: dict[str, int] = {"sgx": 1, "td10": 2, "td15": 3, "td15ex": 4}
BODY_LEN: dict[str, int] = {"sgx": 384, "td10": 584, "td15": 648, "td15ex": 885}

HEADER_LEN = 48
SGX_REPORT_LEN = 384

# TD attribute bit 28: EPT violations are not reflected to the TD as #VE; dcap-qvl requires it.
TD_ATTR_SEPT_VE_DISABLE = 1 << 28
TD_ATTR_DEBUG = 1 << 0
DEFAULT_TD_ATTRIBUTES = TD_ATTR_SEPT_VE_DISABLE.to_bytes(8, "little")
# x87 | SSE | AVX | AVX-512 state components | PKRU | AMX: a typical XFAM of a modern TD.
DEFAULT_XFAM = (0x000602E7).to_bytes(8, "little")

SGX_ATTR_INIT = 0x01
SGX_ATTR_DEBUG = 0x02
SGX_ATTR_MODE64BIT = 0x04


def _fixed(name: str, value: bytes, length: int) -> bytes:
    # Wrong lengths would silently shift every later offset; fail loudly instead.
    if len(value) != length:
        raise ValueError(f"{name} must be {length} bytes, got {len(value)}")
    return bytes(value)


def raw_public_key(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    """x||y (64 bytes): the uncompressed point without the 0x04 prefix, as quotes store it."""
    pub = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)[1:]


@dataclass
class QuoteHeader:
    version: int = 4
    attestation_key_type: int = ATT_KEY_TYPE_ECDSA_P256
    tee_type: int = TEE_TYPE_TDX
    qe_svn: int = 0
    pce_svn: int = 0
    qe_vendor_id: bytes = INTEL_QE_VENDOR_ID
    user_data: bytes = bytes(20)

    def pack(self) -> bytes:
        return struct.pack(
            "<HHIHH16s20s",
            self.version,
            self.attestation_key_type,
            self.tee_type,
            self.qe_svn,
            self.pce_svn,
            _fixed("qe_vendor_id", self.qe_vendor_id, 16),
            _fixed("user_data", self.user_data, 20),
        )


@dataclass
class SgxReport:
    """SGX enclave report (384 bytes): the SGX quote body and the QE report."""

    cpu_svn: bytes = bytes(16)
    misc_select: int = 0
    attributes: bytes = bytes([SGX_ATTR_INIT | SGX_ATTR_MODE64BIT]) + bytes(7) + bytes([0x03]) + bytes(7)
    mr_enclave: bytes = bytes(32)
    mr_signer: bytes = bytes(32)
    isv_prod_id: int = 0
    isv_svn: int = 0
    report_data: bytes = bytes(64)

    def pack(self) -> bytes:
        out = b"".join(
            [
                _fixed("cpu_svn", self.cpu_svn, 16),
                struct.pack("<I", self.misc_select),
                bytes(28),
                _fixed("attributes", self.attributes, 16),
                _fixed("mr_enclave", self.mr_enclave, 32),
                bytes(32),
                _fixed("mr_signer", self.mr_signer, 32),
                bytes(96),
                struct.pack("<HH", self.isv_prod_id, self.isv_svn),
                bytes(60),
                _fixed("report_data", self.report_data, 64),
            ]
        )
        assert len(out) == SGX_REPORT_LEN
        return out


@dataclass
class TdReport:
    """TD report body; TD 1.5 and 1.5ex fields are only emitted for those body kinds."""

    tee_tcb_svn: bytes = bytes(16)
    mr_seam: bytes = bytes(48)
    mr_signer_seam: bytes = bytes(48)
    seam_attributes: bytes = bytes(8)
    td_attributes: bytes = DEFAULT_TD_ATTRIBUTES
    xfam: bytes = DEFAULT_XFAM
    mr_td: bytes = bytes(48)
    mr_config_id: bytes = bytes(48)
    mr_owner: bytes = bytes(48)
    mr_owner_config: bytes = bytes(48)
    rt_mr0: bytes = bytes(48)
    rt_mr1: bytes = bytes(48)
    rt_mr2: bytes = bytes(48)
    rt_mr3: bytes = bytes(48)
    report_data: bytes = bytes(64)
    # TD 1.5: None means "same as tee_tcb_svn" (no TD-preserving update happened).
    tee_tcb_svn2: bytes | None = None
    mr_service_td: bytes = bytes(48)
    # TD 1.5ex
    vmid: int = 0
    td_id: bytes = bytes(32)
    dev_info: bytes = bytes(48)
    init_service_td_hash: bytes = bytes(48)
    init_service_td_attributes: bytes = bytes(8)
    init_cpu_svn: bytes = bytes(16)
    init_tee_tcb_svn: bytes = bytes(16)
    init_tee_fmspc: bytes = bytes(12)
    cur_service_td_hash: bytes = bytes(48)
    cur_service_td_attributes: bytes = bytes(8)

    def pack(self, kind: BodyKind = "td10") -> bytes:
        parts = [
            _fixed("tee_tcb_svn", self.tee_tcb_svn, 16),
            _fixed("mr_seam", self.mr_seam, 48),
            _fixed("mr_signer_seam", self.mr_signer_seam, 48),
            _fixed("seam_attributes", self.seam_attributes, 8),
            _fixed("td_attributes", self.td_attributes, 8),
            _fixed("xfam", self.xfam, 8),
            _fixed("mr_td", self.mr_td, 48),
            _fixed("mr_config_id", self.mr_config_id, 48),
            _fixed("mr_owner", self.mr_owner, 48),
            _fixed("mr_owner_config", self.mr_owner_config, 48),
            _fixed("rt_mr0", self.rt_mr0, 48),
            _fixed("rt_mr1", self.rt_mr1, 48),
            _fixed("rt_mr2", self.rt_mr2, 48),
            _fixed("rt_mr3", self.rt_mr3, 48),
            _fixed("report_data", self.report_data, 64),
        ]
        if kind in ("td15", "td15ex"):
            svn2 = self.tee_tcb_svn if self.tee_tcb_svn2 is None else self.tee_tcb_svn2
            parts += [_fixed("tee_tcb_svn2", svn2, 16), _fixed("mr_service_td", self.mr_service_td, 48)]
        if kind == "td15ex":
            parts += [
                bytes([self.vmid]),
                _fixed("td_id", self.td_id, 32),
                _fixed("dev_info", self.dev_info, 48),
                _fixed("init_service_td_hash", self.init_service_td_hash, 48),
                _fixed("init_service_td_attributes", self.init_service_td_attributes, 8),
                _fixed("init_cpu_svn", self.init_cpu_svn, 16),
                _fixed("init_tee_tcb_svn", self.init_tee_tcb_svn, 16),
                _fixed("init_tee_fmspc", self.init_tee_fmspc, 12),
                _fixed("cur_service_td_hash", self.cur_service_td_hash, 48),
                _fixed("cur_service_td_attributes", self.cur_service_td_attributes, 8),
            ]
        out = b"".join(parts)
        assert len(out) == BODY_LEN[kind], (kind, len(out))
        return out


@dataclass(frozen=True)
class QuoteLayout:
    """Where each item landed in the built quote (slices into the quote bytes)."""

    header: slice
    body: slice
    signed: slice
    signature: slice
    attestation_key: slice
    qe_report: slice
    qe_report_signature: slice
    qe_auth_data: slice
    cert_data: slice
    auth_data: slice


@dataclass
class QuoteBuilder:
    """All the inputs of a quote. ``build()`` signs whatever the fields hold at that moment."""

    header: QuoteHeader
    body: TdReport | SgxReport
    body_kind: BodyKind
    attestation_key: ec.EllipticCurvePrivateKey
    # Signs the QE report; must be the PCK leaf's key for the quote to verify.
    pck_key: ec.EllipticCurvePrivateKey
    pck_chain_pem: str
    qe_report: SgxReport = field(default_factory=SgxReport)
    qe_auth_data: bytes = bytes(range(32))
    # --- tamper hooks (None = compute the honest value) ---
    body_type_override: int | None = None
    body_size_override: int | None = None
    attestation_key_raw_override: bytes | None = None
    qe_report_data_override: bytes | None = None
    qe_report_signature_override: bytes | None = None
    signature_override: bytes | None = None
    outer_cert_type: int = CERT_TYPE_QE_REPORT
    inner_cert_type: int = CERT_TYPE_PCK_CHAIN
    # Replaces the NUL-terminated PEM chain inside the certification data.
    cert_data_override: bytes | None = None
    # Appended after the auth data; verifiers ignore it (real quotes are often zero-padded).
    trailing: bytes = b""

    # -- pieces -----------------------------------------------------------

    def attestation_key_raw(self) -> bytes:
        if self.attestation_key_raw_override is not None:
            return self.attestation_key_raw_override
        return raw_public_key(self.attestation_key)

    def qe_report_bytes(self) -> bytes:
        """The QE report with report_data = SHA256(attestation key || qe_auth_data) || 0^32."""
        report_data = self.qe_report_data_override
        if report_data is None:
            digest = hashlib.sha256(self.attestation_key_raw() + self.qe_auth_data).digest()
            report_data = digest + bytes(32)
        # Pack a copy so build() never mutates the caller's qe_report object.
        return replace(self.qe_report, report_data=report_data).pack()

    def cert_data(self) -> bytes:
        if self.cert_data_override is not None:
            return self.cert_data_override
        return self.pck_chain_pem.encode() + b"\x00"

    def body_bytes(self) -> bytes:
        if isinstance(self.body, SgxReport):
            return self.body.pack()
        return self.body.pack(self.body_kind)

    def signed_region(self) -> bytes:
        """header || (v5 body descriptor) || body: exactly what the attestation key signs."""
        out = self.header.pack()
        body = self.body_bytes()
        if self.header.version >= 5:
            body_type = (
                self.body_type_override if self.body_type_override is not None else BODY_TYPE[self.body_kind]
            )
            size = self.body_size_override if self.body_size_override is not None else len(body)
            out += struct.pack("<HI", body_type, size)
        return out + body

    # -- assembly ---------------------------------------------------------

    def build(self) -> bytes:
        return self.build_with_layout()[0]

    def layout(self) -> QuoteLayout:
        return self.build_with_layout()[1]

    def build_with_layout(self) -> tuple[bytes, QuoteLayout]:
        signed = self.signed_region()
        signature = self.signature_override
        if signature is None:
            signature = sign_raw(self.attestation_key, signed)
        ak = self.attestation_key_raw()
        qe_report = self.qe_report_bytes()
        qe_sig = self.qe_report_signature_override
        if qe_sig is None:
            qe_sig = sign_raw(self.pck_key, qe_report)
        cert_data = self.cert_data()

        # Auth-data offsets are computed relative to the start of the auth data.
        qe_block = qe_report + qe_sig + struct.pack("<H", len(self.qe_auth_data)) + self.qe_auth_data
        if self.header.version >= 4:
            # v4 layout (picked by header version, as decoders do): the QE report travels
            # inside a type-6 certification data blob.
            inner = qe_block + struct.pack("<HI", self.inner_cert_type, len(cert_data)) + cert_data
            auth = signature + ak + struct.pack("<HI", self.outer_cert_type, len(inner)) + inner
            qe_rel = 64 + 64 + 6
        else:
            # v3 layout (SGX): QE report directly after the key, then a single cert data block.
            auth = (
                signature
                + ak
                + qe_block
                + struct.pack("<HI", self.inner_cert_type, len(cert_data))
                + cert_data
            )
            qe_rel = 64 + 64
        base = len(signed) + 4
        quote = signed + struct.pack("<I", len(auth)) + auth + self.trailing

        qe_at = base + qe_rel
        auth_at = qe_at + SGX_REPORT_LEN + 64 + 2
        cert_at = auth_at + len(self.qe_auth_data) + 6
        body_start = HEADER_LEN + (6 if self.header.version >= 5 else 0)
        layout = QuoteLayout(
            header=slice(0, HEADER_LEN),
            body=slice(body_start, len(signed)),
            signed=slice(0, len(signed)),
            signature=slice(base, base + 64),
            attestation_key=slice(base + 64, base + 128),
            qe_report=slice(qe_at, qe_at + SGX_REPORT_LEN),
            qe_report_signature=slice(qe_at + SGX_REPORT_LEN, qe_at + SGX_REPORT_LEN + 64),
            qe_auth_data=slice(auth_at, auth_at + len(self.qe_auth_data)),
            cert_data=slice(cert_at, cert_at + len(cert_data)),
            auth_data=slice(base, base + len(auth)),
        )
        return quote, layout
