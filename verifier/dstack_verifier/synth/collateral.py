"""Synthetic Intel PCS collateral (TCB Info, QE Identity, CRLs) in dcap-qvl's JSON shape.

The TCB Info / QE Identity objects are serialised compactly and the *exact*
bytes are signed with the TCB signing key (raw 64-byte r||s), which is what
dcap-qvl verifies. Any spec can be replaced by a plain ``dict`` so a test can
tamper with the JSON object before it is signed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .pki import SynthPki, crl_der

JsonObject = dict[str, Any]


def iso_time(ts: int) -> str:
    """RFC 3339 UTC with a 'Z' suffix, the format Intel PCS uses."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hex(value: bytes) -> str:
    return value.hex().upper()


def compact_json(obj: Mapping[str, Any]) -> str:
    # Key order is preserved; no whitespace, matching PCS (and dcap-qvl's re-serialisation).
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def sign_raw(key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    """ECDSA-P256-SHA256 as 64-byte r||s (deterministic, so output is reproducible)."""
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256(), deterministic_signing=True)))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass
class TcbLevel:
    """One platform TCB level of a TCB Info document."""

    sgx_components: Sequence[int]
    pcesvn: int
    tdx_components: Sequence[int] | None = None
    status: str = "UpToDate"
    tcb_date: int = 1_704_067_200
    advisory_ids: Sequence[str] = ()

    def to_json(self) -> JsonObject:
        tcb: JsonObject = {
            "sgxtcbcomponents": [{"svn": svn} for svn in self.sgx_components],
            "pcesvn": self.pcesvn,
        }
        if self.tdx_components is not None:
            tcb["tdxtcbcomponents"] = [{"svn": svn} for svn in self.tdx_components]
        out: JsonObject = {"tcb": tcb, "tcbDate": iso_time(self.tcb_date), "tcbStatus": self.status}
        if self.advisory_ids:
            out["advisoryIDs"] = list(self.advisory_ids)
        return out


@dataclass
class IsvLevel:
    """A level keyed by a single ISVSVN (QE Identity and TDX module identity levels)."""

    isvsvn: int
    status: str = "UpToDate"
    tcb_date: int = 1_704_067_200
    advisory_ids: Sequence[str] = ()

    def to_json(self) -> JsonObject:
        out: JsonObject = {
            "tcb": {"isvsvn": self.isvsvn},
            "tcbDate": iso_time(self.tcb_date),
            "tcbStatus": self.status,
        }
        if self.advisory_ids:
            out["advisoryIDs"] = list(self.advisory_ids)
        return out


@dataclass
class TdxModule:
    """The base ``tdxModule`` entry or one ``tdxModuleIdentities`` entry (when ``id`` is set)."""

    mrsigner: bytes = bytes(48)
    attributes: bytes = bytes(8)
    attributes_mask: bytes = b"\xff" * 8
    id: str | None = None
    tcb_levels: list[IsvLevel] = field(default_factory=list)

    def to_json(self) -> JsonObject:
        out: JsonObject = {}
        if self.id is not None:
            out["id"] = self.id
        out.update(
            mrsigner=_hex(self.mrsigner),
            attributes=_hex(self.attributes),
            attributesMask=_hex(self.attributes_mask),
        )
        if self.id is not None:
            out["tcbLevels"] = [level.to_json() for level in self.tcb_levels]
        return out


@dataclass
class TcbInfoSpec:
    """TCB Info v3 (``id`` "TDX" or "SGX"); ``tdx_module`` fields are emitted for TDX only."""

    issue_date: int
    next_update: int
    tcb_levels: list[TcbLevel]
    fmspc: bytes
    tee: Literal["TDX", "SGX"] = "TDX"
    pce_id: bytes = b"\x00\x00"
    version: int = 3
    tcb_type: int = 0
    tcb_evaluation_data_number: int = 17
    tdx_module: TdxModule = field(default_factory=TdxModule)
    tdx_module_identities: list[TdxModule] = field(default_factory=list)

    def to_json(self) -> JsonObject:
        out: JsonObject = {
            "id": self.tee,
            "version": self.version,
            "issueDate": iso_time(self.issue_date),
            "nextUpdate": iso_time(self.next_update),
            "fmspc": _hex(self.fmspc),
            "pceId": _hex(self.pce_id),
            "tcbType": self.tcb_type,
            "tcbEvaluationDataNumber": self.tcb_evaluation_data_number,
        }
        if self.tee == "TDX":
            out["tdxModule"] = self.tdx_module.to_json()
            out["tdxModuleIdentities"] = [ident.to_json() for ident in self.tdx_module_identities]
        out["tcbLevels"] = [level.to_json() for level in self.tcb_levels]
        return out


@dataclass
class QeIdentitySpec:
    """QE Identity (``TD_QE`` for TDX, ``QE`` for SGX), version 2."""

    issue_date: int
    next_update: int
    mrsigner: bytes
    isvprodid: int
    tcb_levels: list[IsvLevel]
    id: str = "TD_QE"
    version: int = 2
    tcb_evaluation_data_number: int = 17
    miscselect: bytes = bytes(4)
    miscselect_mask: bytes = b"\xff" * 4
    attributes: bytes = bytes([0x11]) + bytes(15)
    # Bit 2 of byte 0 (MODE64BIT) ignored and XFRM not compared, like Intel's identities.
    attributes_mask: bytes = bytes([0xFB]) + b"\xff" * 7 + bytes(8)

    def to_json(self) -> JsonObject:
        return {
            "id": self.id,
            "version": self.version,
            "issueDate": iso_time(self.issue_date),
            "nextUpdate": iso_time(self.next_update),
            "tcbEvaluationDataNumber": self.tcb_evaluation_data_number,
            "miscselect": _hex(self.miscselect),
            "miscselectMask": _hex(self.miscselect_mask),
            "attributes": _hex(self.attributes),
            "attributesMask": _hex(self.attributes_mask),
            "mrsigner": _hex(self.mrsigner),
            "isvprodid": self.isvprodid,
            "tcbLevels": [level.to_json() for level in self.tcb_levels],
        }


@dataclass
class CrlSpec:
    """Dates and revoked serials of one CRL."""

    this_update: int
    next_update: int
    revoked_serials: Sequence[int] = ()
    crl_number: int = 1


@dataclass
class CollateralBuilder:
    """Everything that goes into a QuoteCollateralV3 dict.

    ``tcb_info`` / ``qe_identity`` may be a spec or an already-built JSON object
    (a dict, signed as-is) or a raw string (signed byte for byte). The
    ``*_signature`` overrides replace the computed signatures, and
    ``pck_crl_issuer`` lets a test pass the *other* PCK CA's CRL.
    """

    pki: SynthPki
    tcb_info: TcbInfoSpec | Mapping[str, Any] | str
    qe_identity: QeIdentitySpec | Mapping[str, Any] | str
    root_crl: CrlSpec
    pck_crl: CrlSpec
    pck_crl_issuer: Literal["leaf-issuer", "platform", "processor"] = "leaf-issuer"
    tcb_info_signature: bytes | None = None
    qe_identity_signature: bytes | None = None
    # Overrides for the issuer chains (e.g. a chain without the root, or a foreign signer).
    tcb_info_issuer_chain: str | None = None
    qe_identity_issuer_chain: str | None = None
    # When set, emitted as ``pck_certificate_chain`` (dcap-qvl then ignores the quote's chain).
    pck_certificate_chain: str | None = None

    def tcb_info_text(self) -> str:
        return _as_text(self.tcb_info)

    def qe_identity_text(self) -> str:
        return _as_text(self.qe_identity)

    def build(self) -> JsonObject:
        pki = self.pki
        tcb_text = self.tcb_info_text()
        qe_text = self.qe_identity_text()
        signer = pki.tcb_signing.key
        tcb_sig = self.tcb_info_signature
        if tcb_sig is None:
            tcb_sig = sign_raw(signer, tcb_text.encode())
        qe_sig = self.qe_identity_signature
        if qe_sig is None:
            qe_sig = sign_raw(signer, qe_text.encode())
        crl_issuer = {
            "leaf-issuer": pki.pck_ca,
            "platform": pki.platform_ca,
            "processor": pki.processor_ca,
        }[self.pck_crl_issuer]
        if crl_issuer is None:
            raise ValueError("the PKI was built without a Processor CA")
        pck_crl = pki.pck_crl(
            this_update=self.pck_crl.this_update,
            next_update=self.pck_crl.next_update,
            revoked_serials=self.pck_crl.revoked_serials,
            crl_number=self.pck_crl.crl_number,
            issuer=crl_issuer,
        )
        root_crl = pki.root_crl(
            this_update=self.root_crl.this_update,
            next_update=self.root_crl.next_update,
            revoked_serials=self.root_crl.revoked_serials,
            crl_number=self.root_crl.crl_number,
        )
        signing_chain = pki.tcb_signing_chain_pem()
        out: JsonObject = {
            "pck_crl_issuer_chain": crl_issuer.pem + pki.root.pem,
            "root_ca_crl": crl_der(root_crl).hex(),
            "pck_crl": crl_der(pck_crl).hex(),
            "tcb_info_issuer_chain": self.tcb_info_issuer_chain or signing_chain,
            "tcb_info": tcb_text,
            "tcb_info_signature": tcb_sig.hex(),
            "qe_identity_issuer_chain": self.qe_identity_issuer_chain or signing_chain,
            "qe_identity": qe_text,
            "qe_identity_signature": qe_sig.hex(),
        }
        if self.pck_certificate_chain is not None:
            out["pck_certificate_chain"] = self.pck_certificate_chain
        return out


def _as_text(doc: TcbInfoSpec | QeIdentitySpec | Mapping[str, Any] | str) -> str:
    if isinstance(doc, str):
        return doc
    if isinstance(doc, TcbInfoSpec | QeIdentitySpec):
        return compact_json(doc.to_json())
    return compact_json(doc)
