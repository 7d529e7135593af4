"""Intel DCAP quote verification, one check per step (dcap-qvl 0.7.0 semantics, our own code).

Parse (structure.py), verify (this module: signatures, chains, CRLs, TCB matching) and decide (policy.py) are
separate. The instant, the trust anchor and the collateral are parameters; nothing here touches the network.
A fatal failure of one step makes the steps that rest on it `skip`, naming the failed step.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from ..errors import InputError
from ..model import Anchor, Check, CheckStatus, Entity
from ..resources import INTEL_ROOT_CA_SHA256
from . import tcb
from .chain import (
    Cert,
    ChainCache,
    ChainError,
    CrlStore,
    LoadedCrl,
    PemChain,
    check_revocation,
    load_crl,
    load_pem_chain,
    verify_chain,
)
from .collateral import Collateral, CollateralFormatError, QeIdentity, TcbInfo
from .pck import PckExtensionError, PckInfo, ca_type_for_issuer, parse_sgx_extension
from .policy import TcbPolicy
from .reference import ReferenceVerdict, reference_verify
from .structure import INTEL_QE_VENDOR_ID, TEE_SGX, TEE_TDX, Quote, parse_quote

# Codes of chain failures that concern revocation; the rest are path failures.
_REVOCATION_CODES = {
    "UnknownRevocationStatus",
    "InvalidCrlSignatureForPublicKey",
    "CrlExpired",
    "CertRevoked",
    "IssuerNotCrlSigner",
}


class StepFailed(Exception):
    def __init__(self, summary: str, details: dict[str, Any] | None = None) -> None:
        self.summary = summary
        self.details = details or {}
        super().__init__(summary)


@dataclass
class StepOutcome:
    status: CheckStatus
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def _sig_valid(pub: ec.EllipticCurvePublicKey, raw_sig: bytes, message: bytes) -> bool:
    if len(raw_sig) != 64:
        return False
    der = encode_dss_signature(int.from_bytes(raw_sig[:32], "big"), int.from_bytes(raw_sig[32:], "big"))
    try:
        pub.verify(der, message, _ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True


def _ts(now: int) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def _load_pem_chain(pem: bytes, what: str, anchor: TrustAnchor) -> PemChain:
    try:
        chain = load_pem_chain(pem.rstrip(b"\x00"), (anchor.root,))
    except (ValueError, x509.InvalidVersion) as exc:
        raise StepFailed(f"{what}: the PEM certificate chain does not parse ({exc})") from None
    if not chain.certs:
        raise StepFailed(f"{what}: the certificate chain is empty")
    return chain


def _aside(chain: PemChain) -> str:
    """What a summary says of candidate issuers that did not parse (none, usually)."""
    return f"; left aside as unreadable: {'; '.join(chain.unreadable)}" if chain.unreadable else ""


@dataclass
class TrustAnchor:
    der: bytes
    cert: x509.Certificate
    sha256: str
    # The anchor read once (names, key, extensions) for every chain and CRL checked under it: it is configuration,
    # not evidence, so nothing of a verification is carried over by it.
    root: Cert = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.root = Cert(self.cert, self.der)

    @classmethod
    def from_der(cls, der: bytes, source: str = "root CA") -> TrustAnchor:
        try:
            cert = x509.load_der_x509_certificate(der)
        except (ValueError, x509.InvalidVersion):
            try:
                cert = x509.load_pem_x509_certificate(der)
            except (ValueError, x509.InvalidVersion):
                raise InputError("not a DER or PEM X.509 certificate", source=source) from None
            der = cert.public_bytes(Encoding.DER)
        return cls(der, cert, hashlib.sha256(der).hexdigest())

    @property
    def is_intel(self) -> bool:
        return self.sha256 == INTEL_ROOT_CA_SHA256

    @property
    def anchor(self) -> str:
        return Anchor.INTEL_ROOT if self.is_intel else Anchor.CALLER_SUPPLIED


@dataclass
class SignedCollateral:
    """TCB Info and QE Identity whose chains reach the anchor and whose signatures verify."""

    tcb_info: TcbInfo
    qe_identity: QeIdentity
    chains: dict[str, list[Cert]]
    details: dict[str, Any]


class CollateralMemo:
    """Reuse of verified collateral across quotes that share it (keyed by its bytes, the anchor and the instant).

    Failures are cached too, so a batch of quotes with bad collateral does not re-check it for each quote.
    """

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self._items: dict[tuple, Any] = {}
        self.chains = ChainCache()
        self._seen: dict[int, list] = {}  # id(collateral) -> [collateral, token, content key or None]
        self._by_content: dict[str, Any] = {}  # content key -> token

    def collateral_token(self, collateral: Collateral) -> Any:
        """What stands for this collateral's content in the memo's keys.

        Collateral objects are frozen, so the first one seen stands for itself; once another object comes, the
        contents are compared through collateral_key (computed once per object), and equal contents share a token.
        A memo that only ever sees one collateral object never hashes it.
        """
        held = self._seen.get(id(collateral))
        if held is not None and held[0] is collateral:
            return held[1]
        if self._seen:
            for entry in self._seen.values():
                if entry[2] is None:
                    entry[2] = collateral_key(entry[0])
                    self._by_content.setdefault(entry[2], entry[1])
            key = collateral_key(collateral)
            entry = [collateral, self._by_content.setdefault(key, key), key]
        else:
            entry = [collateral, ("collateral object", id(collateral)), None]
        if len(self._seen) < self.limit:
            self._seen[id(collateral)] = entry  # the object is held too, so its id is not reused
        elif entry[2] is None:  # with no room to hold it, it is identified by content
            key = collateral_key(collateral)
            entry[1] = entry[2] = self._by_content.setdefault(key, key)
        return entry[1]

    def cached(self, key: tuple, fn: Callable[[], Any]) -> Any:
        if key not in self._items:
            try:
                value: Any = fn()
            except StepFailed as exc:
                value = exc
            if len(self._items) >= self.limit:
                self._items.pop(next(iter(self._items)))
            self._items[key] = value
        value = self._items[key]
        if isinstance(value, StepFailed):
            raise value
        return value


def collateral_key(collateral: Collateral) -> str:
    h = hashlib.sha256()
    for part in (collateral.root_ca_crl, collateral.pck_crl, collateral.tcb_info_signature,
                 collateral.qe_identity_signature, collateral.tcb_info.encode(), collateral.qe_identity.encode(),
                 collateral.tcb_info_issuer_chain.encode(), collateral.qe_identity_issuer_chain.encode()):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def _parse_crl(data: bytes, name: str) -> LoadedCrl:
    try:
        return load_crl(data)
    except ValueError as exc:
        raise StepFailed(f"the {name} does not parse as a DER CRL ({exc})") from None


def verify_signed_collateral(
    collateral: Collateral, anchor: TrustAnchor, now: int, tee: str, cache: ChainCache | None = None
) -> SignedCollateral:
    """dcap.md §5 steps 5 and 6 without the time windows (those are the freshness check)."""
    at = _ts(now)
    cache = cache or ChainCache()
    root = anchor.root
    details: dict[str, Any] = {}
    chains: dict[str, list[Cert]] = {}
    # Intel ships one issuer chain for both: it is read and checked once (path and its description).
    verified: dict[str, tuple[list[Cert], list[str]]] = {}
    parsed: list[Any] = []
    items: list[tuple[str, str, str, bytes, Callable[[], Any]]] = [
        ("TCB Info", collateral.tcb_info_issuer_chain, collateral.tcb_info, collateral.tcb_info_signature,
         collateral.parsed_tcb_info),
        ("QE Identity", collateral.qe_identity_issuer_chain, collateral.qe_identity,
         collateral.qe_identity_signature, collateral.parsed_qe_identity),
    ]
    for name, chain_pem, text, signature, parse in items:
        try:
            obj = parse()
        except CollateralFormatError as exc:
            raise StepFailed(f"{name} does not parse: {exc}") from None
        held = verified.get(chain_pem)
        if held is None:
            loaded = _load_pem_chain(chain_pem.encode(), f"{name} issuer chain", anchor)
            try:
                path = verify_chain(loaded.certs[0], loaded.certs[1:], root, None, at, cache).path
            except ChainError as exc:
                raise StepFailed(f"{name} issuer chain: {exc}{_aside(loaded)}", {"code": exc.code}) from None
            held = verified[chain_pem] = (path, [c.describe() for c in path])
        path, described = held
        signer = path[0]
        if not _sig_valid(signer.key, signature, text.encode()):
            raise StepFailed(
                f"{name} signature does not verify with the key of {signer.describe()}",
                {"signer": signer.summary()},
            )
        parsed.append(obj)
        chains[name] = path
        details[name] = {
            "signer": signer.summary(),
            "chain": list(described),
            "id": obj.id,
            "version": obj.version,
            "issue_date": obj.issueDate,
            "next_update": obj.nextUpdate,
            "tcb_evaluation_data_number": obj.tcbEvaluationDataNumber,
        }
    qe_identity: QeIdentity = parsed[1]
    if tee == "TDX" and not (qe_identity.id == "TD_QE" and qe_identity.version in (2, 3)):
        raise StepFailed(f"QE Identity is {qe_identity.id} v{qe_identity.version}; a TDX quote needs TD_QE v2 or v3")
    if tee == "SGX" and not (qe_identity.id == "QE" and qe_identity.version == 2):
        raise StepFailed(f"QE Identity is {qe_identity.id} v{qe_identity.version}; an SGX quote needs QE v2")
    return SignedCollateral(parsed[0], qe_identity, chains, details)


@dataclass
class CrlSet:
    root: LoadedCrl
    pck: LoadedCrl
    store: CrlStore = field(init=False)
    details: list[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.store = CrlStore([self.root, self.pck])
        self.details = [_crl_details(self.root), _crl_details(self.pck)]

    @property
    def root_crl(self) -> x509.CertificateRevocationList:
        return self.root.crl

    @property
    def pck_crl(self) -> x509.CertificateRevocationList:
        return self.pck.crl


def verify_crls(collateral: Collateral, anchor: TrustAnchor, now: int, cache: ChainCache | None = None) -> CrlSet:
    """dcap.md §5 steps 1-2: both CRLs parse, the root CRL is signed by the anchor, current, and spares the root."""
    root = _parse_crl(collateral.root_ca_crl, "root CA CRL")
    pck = _parse_crl(collateral.pck_crl, "PCK CRL")
    anchor_cert = anchor.root
    if root.issuer != anchor_cert.names.subject:
        raise StepFailed(f"the root CA CRL is issued by {root.issuer_text}, not by the trust "
                         f"anchor {anchor_cert.describe()}")
    try:
        check_revocation(anchor_cert, anchor_cert, CrlStore([root]), _ts(now), cache)
    except ChainError as exc:
        raise StepFailed(f"root CA CRL: {exc}", {"code": exc.code}) from None
    return CrlSet(root, pck)


def _crl_details(loaded: LoadedCrl) -> dict[str, Any]:
    crl = loaded.crl
    return {
        "issuer": loaded.issuer_text,
        "this_update": crl.last_update_utc.isoformat(),
        "next_update": loaded.next_update_iso,
        "revoked_serials": len(crl),
    }


@dataclass
class HardwareResult:
    checks: list[Check]
    quote: Quote | None = None
    pck: PckInfo | None = None
    status: str | None = None
    advisory_ids: list[str] = field(default_factory=list)
    dcap_valid: bool = False
    explanation: dict[str, Any] = field(default_factory=dict)
    reference: ReferenceVerdict | None = None
    durations: dict[str, float] = field(default_factory=dict)  # seconds per step

    def check(self, check_id: str) -> Check:
        return next(c for c in self.checks if c.id == check_id)


class _Pipeline:
    """Runs steps in order; a step whose prerequisite failed or could not run is skipped with that reason."""

    def __init__(self, entity: Entity, anchor: str) -> None:
        self.entity = entity
        self.anchor = anchor
        self.checks: list[Check] = []
        self.blocked: dict[str, str] = {}
        # A pseudo-step (collateral) that could not be had because of an error makes its dependants `error`.
        self.block_status: dict[str, CheckStatus] = {}
        self.durations: dict[str, float] = {}

    def block(self, name: str, reason: str, status: CheckStatus = CheckStatus.SKIP) -> None:
        self.blocked[name] = reason
        self.block_status[name] = status

    def run(
        self, check_id: str, needs: list[str], fn: Callable[[], StepOutcome], anchor: str | None = None
    ) -> bool:
        for need in needs:
            if need in self.blocked:
                status = self.block_status.get(need, CheckStatus.SKIP)
                self._add(check_id, status, self.blocked[need], {"blocked_by": need}, anchor)
                self.blocked[check_id] = self.blocked[need]
                return False
        started = time.perf_counter()
        try:
            outcome = fn()
        except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
            # cryptography decodes certificate fields (names, keys, extensions) lazily, so a malformed
            # certificate or CRL surfaces here, at first use: that is a failed step, not a crash.
            failure = StepFailed(f"malformed certificate or CRL data: {type(exc).__name__}: {exc}".splitlines()[0])
            outcome = None
        except StepFailed as exc:
            failure = exc
            outcome = None
        if outcome is None:
            self.durations[check_id] = time.perf_counter() - started
            self._add(check_id, CheckStatus.FAIL, failure.summary, failure.details, anchor)
            self.blocked[check_id] = f"not run: {check_id} failed ({failure.summary})"
            return False
        self.durations[check_id] = time.perf_counter() - started
        self._add(check_id, outcome.status, outcome.summary, outcome.details, anchor)
        if outcome.status in (CheckStatus.FAIL, CheckStatus.ERROR, CheckStatus.SKIP):
            self.blocked[check_id] = f"not run: {check_id} did not pass ({outcome.summary})"
            return False
        return True

    def _add(
        self, check_id: str, status: CheckStatus, summary: str, details: dict[str, Any], anchor: str | None
    ) -> None:
        self.checks.append(
            Check(
                id=check_id,
                entity=self.entity,
                phase="hardware",
                status=status,
                anchor=anchor or self.anchor,
                summary=summary,
                details=details,
            )
        )


def _header_policy(q: Quote) -> None:
    h = q.header
    if h.qe_vendor_id != INTEL_QE_VENDOR_ID:
        raise StepFailed(f"unknown QE vendor ID {h.qe_vendor_id.hex()} (expected Intel's)",
                         {"field": "header.qe_vendor_id", "offset": 12})
    if h.tee_type not in (TEE_SGX, TEE_TDX):
        raise StepFailed(f"unsupported TEE type 0x{h.tee_type:x}", {"field": "header.tee_type", "offset": 4})
    if h.tee_type == TEE_SGX and h.version != 3:
        raise StepFailed("an SGX quote must have version 3", {"field": "header.version", "offset": 0})
    if h.tee_type == TEE_TDX and h.version not in (4, 5):
        raise StepFailed("a TDX quote must have version 4 or 5", {"field": "header.version", "offset": 0})
    if h.attestation_key_type != 2:
        raise StepFailed(
            f"unsupported attestation key type {h.attestation_key_type} (only 2, ECDSA P-256)",
            {"field": "header.attestation_key_type", "offset": 2},
        )


# TD attribute bits (u64 little-endian), dcap-qvl 0.7.0's policy.
_TD_DEBUG = 1 << 0
_TD_PROFILING = 0b111 << 4
_TD_RESERVED = (0b111 << 1) | (0x1FF << 7) | (0b1111 << 23) | (((1 << 30) - 1) << 32)
_TD_SERVTD_EXT = 1 << 17
_TD_SEPT_VE_DISABLE = 1 << 28
_TD_MIGRATABLE = 1 << 29


def td_attribute_problems(q: Quote) -> list[str]:
    if not q.is_tdx:
        return ["the enclave is a debug enclave"] if q.body["attributes"][0] & 0x02 else []
    problems = []
    if q.body.kind in ("td15", "td15ex") and any(q.body["mr_service_td"]):
        problems.append("MR_SERVICE_TD is set (a service TD is bound)")
    attrs = int.from_bytes(q.body["tdattributes"], "little")
    if attrs & _TD_DEBUG:
        problems.append("DEBUG is set: the host can read and change the TD's memory")
    if attrs & _TD_PROFILING:
        problems.append("TD profiling bits 4-6 are set")
    if attrs & _TD_RESERVED:
        problems.append(f"reserved bits are set (0x{attrs & _TD_RESERVED:016x})")
    if attrs & _TD_MIGRATABLE:
        problems.append("MIGRATABLE is set")
    if attrs & _TD_SERVTD_EXT:
        problems.append("SERVTD_EXT is set")
    if not attrs & _TD_SEPT_VE_DISABLE:
        problems.append("SEPT_VE_DISABLE is not set")
    return problems


def _evaluate_tcb(q: Quote, pck: PckInfo, signed: SignedCollateral) -> dict[str, Any]:
    """dcap.md §5 steps 10, 12 and 13: QE identity, platform level, TDX module, convergence, TD 1.5 relaunch."""
    info = signed.tcb_info
    qe_level = tcb.evaluate_qe_identity(signed.qe_identity, q.auth.qe_report)
    if info.fmspc.upper() != pck.fmspc.hex().upper():
        raise tcb.TcbError(f"FMSPC mismatch: PCK certificate {pck.fmspc.hex().upper()}, TCB Info {info.fmspc.upper()}")
    if q.is_tdx and not (info.version >= 3 and info.id == "TDX"):
        raise tcb.TcbError(f"a TDX quote needs TDX TCB Info v3+, the collateral has {info.id} v{info.version}")
    if not q.is_tdx and not (info.version >= 2 and info.id == "SGX"):
        raise tcb.TcbError(f"an SGX quote needs SGX TCB Info v2+, the collateral has {info.id} v{info.version}")
    tee_svn = q.body["tee_tcb_svn"] if q.is_tdx else None
    match = tcb.match_platform_level(info, pck.cpu_svn, pck.pce_svn, tee_svn)
    platform_status = match.level.tcbStatus
    advisories = list(match.level.advisoryIDs)
    module: dict[str, Any] | None = None
    if tee_svn is not None:
        mod = tcb.evaluate_tdx_module(info, q.body, tee_svn)
        if mod.level is not None:
            platform_status = tcb.converge(platform_status, mod.level.tcbStatus)
            advisories = tcb.union(advisories, mod.level.advisoryIDs)
        module = {
            "mrseam": q.body["mrseam"].hex(),
            "identity": mod.identity_id,
            "isvsvn": mod.isvsvn,
            "level_isvsvn": mod.level.tcb.isvsvn if mod.level else None,
            "status": mod.level.tcbStatus if mod.level else None,
            "tcb_date": mod.level.tcbDate if mod.level else None,
        }
    final = tcb.converge(platform_status, qe_level.tcbStatus)
    advisories = tcb.union(advisories, qe_level.advisoryIDs)
    current: dict[str, Any] | None = None
    if q.body.kind in ("td15", "td15ex"):
        svn2 = q.body["tee_tcb_svn2"]
        cur = tcb.match_platform_level(info, pck.cpu_svn, pck.pce_svn, svn2)
        cur_status = cur.level.tcbStatus
        cur_mod = tcb.evaluate_tdx_module(info, q.body, svn2)
        if cur_mod.level is not None:
            cur_status = tcb.converge(cur_status, cur_mod.level.tcbStatus)
        cur_status = tcb.converge(cur_status, qe_level.tcbStatus)
        if cur_status == "Revoked":
            raise tcb.TcbError("the current TCB (TEE_TCB_SVN2) is Revoked")
        current = {"status": cur_status, "tcb_date": cur.level.tcbDate, "advisory_ids": cur.level.advisoryIDs}
    if final == "Revoked":
        raise tcb.TcbError("the TCB status is Revoked")
    if current is not None:
        final = tcb.relaunch(final, current["status"])
    # Why not UpToDate: compare with the levels ranked above the matched one (what a better level requires).
    better = [b for b in match.better_levels if b["status"] == "UpToDate"] or match.better_levels
    shortfall = ""
    if platform_status != "UpToDate" and better:
        top = better[0]
        shortfall = f"below the {top['status']} level of {top['tcb_date']}: " + ", ".join(top["short"])
    elif module and module["status"] not in (None, "UpToDate"):
        shortfall = f"TDX module {module['identity']} ISVSVN {module['isvsvn']} is at a {module['status']} level"
    elif qe_level.tcbStatus != "UpToDate":
        shortfall = f"the QE (ISVSVN {q.auth.qe_report['isv_svn']}) is at a {qe_level.tcbStatus} level"
    tcb_info_notes = []
    if info.pceId.lower() != pck.pce_id.hex():
        tcb_info_notes.append(f"PCEID {pck.pce_id.hex()} differs from TCB Info pceId {info.pceId} (Intel QVL "
                              "checks this; dcap-qvl does not)")
    return {
        "status": final,
        "advisory_ids": advisories,
        "platform_status": platform_status,
        "matched_level": {
            "index": match.index,
            "tcb_date": match.level.tcbDate,
            "status": match.level.tcbStatus,
            "advisory_ids": match.level.advisoryIDs,
            "sgx_components": [c["svn"] for c in match.level.tcb.sgxtcbcomponents],
            "pce_svn": match.level.tcb.pcesvn,
            "tdx_components": [c["svn"] for c in match.level.tcb.tdxtcbcomponents or []] or None,
        },
        "platform": {
            "cpu_svn": list(pck.cpu_svn),
            "pce_svn": pck.pce_svn,
            "tee_tcb_svn": list(tee_svn) if tee_svn is not None else None,
            "tdx_compared_from": match.tdx_compared_from,
        },
        "levels_above": match.better_levels,
        "tdx_module": module,
        "qe": {
            "isv_svn": q.auth.qe_report["isv_svn"],
            "status": qe_level.tcbStatus,
            "tcb_date": qe_level.tcbDate,
            "advisory_ids": qe_level.advisoryIDs,
        },
        "current_tcb": current,
        "shortfall": shortfall,
        "notes": tcb_info_notes,
        "tcb_evaluation_data_number": min(info.tcbEvaluationDataNumber, signed.qe_identity.tcbEvaluationDataNumber),
    }


def _freshness(collateral: Collateral, crls: CrlSet | None, signed: SignedCollateral | None, now: int,
               policy: TcbPolicy) -> StepOutcome:
    """Issue/next-update windows of the TCB Info, QE Identity and both CRLs against the verification instant, and the
    age the policy allows the signed collateral."""
    windows: list[tuple[str, int | None, int | None, bool]] = []  # name, issued, next update, strict bound
    try:
        dated = [signed.tcb_info, signed.qe_identity] if signed else [
            collateral.parsed_tcb_info(), collateral.parsed_qe_identity()]
    except CollateralFormatError as exc:
        raise StepFailed(f"collateral does not parse: {exc}") from None
    for name, obj in zip(("TCB Info", "QE Identity"), dated, strict=True):
        windows.append((name, obj.issue_ts, obj.next_update_ts, False))
    if crls is not None:
        for name, loaded in (("root CA CRL", crls.root), ("PCK CRL", crls.pck)):
            nu = loaded.next_update
            windows.append((name, None, int(nu.timestamp()) if nu else None, True))
    rows = []
    problems, warnings = [], []
    soonest = None
    oldest = policy.max_collateral_age_seconds
    stale: list[tuple[str, int]] = []  # (item, age) of what is older than the policy allows
    for name, issued, next_update, strict in windows:
        left = None if next_update is None else next_update - now
        next_text = _iso(next_update)
        rows.append({
            "item": name,
            "issued": _iso(issued),
            "next_update": next_text,
            "seconds_left": left,
        })
        if left is not None and (soonest is None or left < soonest[0]):
            soonest = (left, name, next_text)
        if issued is not None and now < issued:
            problems.append(f"{name} is issued in the future ({_iso(issued)})")
        elif next_update is None:
            problems.append(f"{name} has no next update")
        elif left is not None and (left <= 0 if strict else left < 0):
            problems.append(f"{name} expired at {next_text}")
        elif left is not None and left < policy.freshness_warning_seconds:
            warnings.append(f"{name} is due for update at {next_text} ({left // 3600} h left)")
        if issued is not None and oldest is not None and now - issued > oldest:
            stale.append((name, now - issued))
    if stale:
        names = " and ".join(name for name, _ in stale)
        warnings.append(f"{names} {'was' if len(stale) == 1 else 'were'} issued {_days(max(a for _, a in stale))} "
                        f"before the verification instant, more than the {_days(oldest or 0)} the policy allows: the "
                        "PCCS may be serving collateral Intel has replaced")
    details = {"items": rows, "verification_time": _iso(now)}
    if oldest is not None:
        details["max_collateral_age_seconds"] = oldest
    if problems:
        raise StepFailed("; ".join(problems), details)
    if warnings:
        return StepOutcome(CheckStatus.WARN, "; ".join(warnings), details)
    assert soonest is not None  # without problems every item has a next update
    return StepOutcome(
        CheckStatus.PASS,
        f"all collateral is current; the first to update is the {soonest[1]} at {soonest[2]}",
        details,
    )


def _days(seconds: int) -> str:
    days = seconds / 86400
    return f"{days:.0f} days" if days >= 2 else f"{seconds // 3600} h"


def _iso(ts: int | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


CRYPTO_STEPS = (
    "hardware.quote_structure",
    "hardware.td_attributes",
    "hardware.pck_chain",
    "hardware.collateral_signatures",
    "hardware.revocation",
    "hardware.qe_report",
    "hardware.quote_signature",
)


def verify_quote(
    raw_quote: bytes,
    *,
    collateral: Collateral | None,
    anchor: TrustAnchor,
    now: int,
    policy: TcbPolicy | None = None,
    entity: Entity = "app",
    collateral_missing_reason: str = "no collateral was given",
    collateral_is_error: bool = False,
    memo: CollateralMemo | None = None,
    reference: bool = True,
) -> HardwareResult:
    """Verify one quote; returns the hardware.* checks (never raises for bad quote bytes)."""
    policy = policy or TcbPolicy()
    memo = memo or CollateralMemo()
    at = _ts(now)
    p = _Pipeline(entity, anchor.anchor)
    res = HardwareResult(checks=p.checks, durations=p.durations)
    if collateral is None:
        p.block("collateral", collateral_missing_reason or "no collateral was given",
                CheckStatus.ERROR if collateral_is_error else CheckStatus.SKIP)
    ckey = memo.collateral_token(collateral) if collateral is not None else ""
    state: dict[str, Any] = {}

    def quote_structure() -> StepOutcome:
        try:
            q = parse_quote(raw_quote)
        except InputError as exc:
            raise StepFailed(f"the quote does not decode: {exc.describe()}",
                             {"field": exc.field, "offset": exc.offset}) from None
        res.quote = q
        _header_policy(q)
        details = {
            "version": q.header.version,
            "tee_type": q.tee_name,
            "body": q.body.kind,
            "attestation_key_type": "ECDSA-256 with P-256",
            "size": len(raw_quote),
            "signed_length": q.signed_len,
            "trailing_bytes": len(raw_quote) - q.used_len,
        }
        if q.auth.outer_cert_type is not None and q.auth.outer_cert_type != 6:
            details["note"] = (f"outer certification data type is {q.auth.outer_cert_type}, not 6 "
                               "(not enforced, as in dcap-qvl)")
        return StepOutcome(
            CheckStatus.PASS,
            f"{q.tee_name} quote v{q.header.version} ({q.body.kind.upper()} body), ECDSA P-256 attestation key",
            details,
        )

    def td_attributes() -> StepOutcome:
        q = _q(res)
        problems = td_attribute_problems(q)
        field_name = "tdattributes" if q.is_tdx else "attributes"
        details = {field_name: q.body[field_name].hex()}
        if problems:
            raise StepFailed("; ".join(problems), details)
        summary = "no debug, no migration, SEPT_VE_DISABLE set" if q.is_tdx else "not a debug enclave"
        return StepOutcome(CheckStatus.PASS, summary, details)

    def pck_chain() -> StepOutcome:
        q = _q(res)
        if collateral is not None and collateral.pck_certificate_chain:
            pem, source = collateral.pck_certificate_chain.encode(), "collateral"
        else:
            pem, source = q.pck_chain_pem(), "quote"
            if pem is None:
                raise StepFailed(f"unsupported PCK certification data type {q.auth.cert_type} (expected 5, a "
                                 "PEM chain)")
        # The same PEM (one platform's chain) loads to the same objects, whose parsed extensions are kept.
        loaded = memo.cached(("pem", pem), lambda: _load_pem_chain(pem, "PCK certificate chain", anchor))
        certs = loaded.certs
        root = anchor.root
        try:
            path = verify_chain(certs[0], certs[1:], root, None, at, memo.chains).path
        except ChainError as exc:
            raise StepFailed(f"PCK chain: {exc}{_aside(loaded)}",
                             {"code": exc.code, "chain": [c.summary() for c in certs],
                              "unreadable": loaded.unreadable}) from None
        leaf = certs[0]
        try:
            pck = memo.cached(("pck", leaf), lambda: parse_sgx_extension(
                leaf.ext.sgx, lambda: ca_type_for_issuer(leaf.issuer_text)))
        except PckExtensionError as exc:
            raise StepFailed(f"PCK certificate {leaf.describe()}: {exc}") from None
        res.pck = pck
        state["pck_path"] = path
        return StepOutcome(
            CheckStatus.PASS,
            f"{' → '.join(c.describe() for c in path)}; FMSPC {pck.fmspc.hex().upper()}, {pck.ca_type} CA"
            f"{_aside(loaded)}",
            {
                "source": source,
                "chain": [c.summary() for c in path],
                "unreadable": loaded.unreadable,
                "trust_anchor_sha256": anchor.sha256,
                "trust_anchor_is_intel": anchor.is_intel,
                "pck": pck.to_dict(),
            },
        )

    def collateral_signatures() -> StepOutcome:
        assert collateral is not None
        tee = _q(res).tee_name
        signed = memo.cached(("signed", ckey, anchor.sha256, now, tee),
                             lambda: verify_signed_collateral(collateral, anchor, now, tee, memo.chains))
        state["signed"] = signed
        return StepOutcome(
            CheckStatus.PASS,
            f"TCB Info ({signed.tcb_info.id} v{signed.tcb_info.version}, FMSPC {signed.tcb_info.fmspc}) and QE "
            f"Identity ({signed.qe_identity.id} v{signed.qe_identity.version}) are signed by "
            f"{signed.chains['TCB Info'][0].describe()}, chained to the trust anchor",
            signed.details,
        )

    def revocation() -> StepOutcome:
        assert collateral is not None
        crls = memo.cached(
            ("crls", ckey, anchor.sha256, now), lambda: verify_crls(collateral, anchor, now, memo.chains)
        )
        state["crls"] = crls
        paths = [("PCK chain", state["pck_path"])]
        if "signed" in state:
            paths += [(f"{k} issuer chain", v) for k, v in state["signed"].chains.items()]
        checked = []
        for name, path in paths:
            for cert, issuer in itertools.pairwise(path):
                try:
                    use = check_revocation(cert, issuer, crls.store, at, memo.chains)
                except ChainError as exc:
                    raise StepFailed(f"{name}: {exc}", {"code": exc.code}) from None
                checked.append({"chain": name, "cert": use.cert, "crl": use.crl_issuer,
                                "crl_next_update": use.crl_next_update})
        return StepOutcome(
            CheckStatus.PASS,
            f"the root CA is not revoked and none of the {len(checked)} certificates below it is listed in "
            "the current CRLs",
            {"root_ca_crl": crls.details[0], "pck_crl": crls.details[1], "certificates": checked},
        )

    def qe_report() -> StepOutcome:
        q = _q(res)
        leaf = state["pck_path"][0]
        if not _sig_valid(leaf.key, q.auth.qe_report_signature, q.auth.qe_report.raw):
            raise StepFailed(f"the QE report signature does not verify with the PCK key of {leaf.describe()}")
        if len(q.auth.qe_auth_data) != 32:
            raise StepFailed(f"QE auth data is {len(q.auth.qe_auth_data)} bytes; dcap-qvl requires 32")
        expected = hashlib.sha256(q.auth.attestation_key + q.auth.qe_auth_data).digest()
        got = q.auth.qe_report["report_data"]
        if got[:32] != expected:
            raise StepFailed(
                "QE report data does not bind the attestation key: SHA-256(attestation key || QE auth data) "
                f"is {expected.hex()}, the QE report holds {got[:32].hex()}"
            )
        return StepOutcome(
            CheckStatus.PASS,
            "the QE report is signed by the PCK key and binds the attestation key",
            {"qe_report_data": got.hex(), "upper_32_bytes_zero": not any(got[32:]),
             "qe_mr_signer": q.auth.qe_report["mr_signer"].hex(), "qe_isv_svn": q.auth.qe_report["isv_svn"]},
        )

    def quote_signature() -> StepOutcome:
        q = _q(res)
        try:
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + q.auth.attestation_key)
        except ValueError:
            raise StepFailed("the attestation key is not a point on P-256") from None
        if not _sig_valid(key, q.auth.signature, q.signed_region):
            raise StepFailed(f"the quote signature over bytes 0..{q.signed_len} does not verify with the "
                             "attestation key")
        return StepOutcome(
            CheckStatus.PASS,
            f"header and body (bytes 0..{q.signed_len}) are signed by the attestation key",
            {"signed_length": q.signed_len, "attestation_key": q.auth.attestation_key.hex()},
        )

    def tcb_status() -> StepOutcome:
        q = _q(res)
        assert res.pck is not None
        try:
            outcome = _evaluate_tcb(q, res.pck, state["signed"])
        except tcb.TcbError as exc:
            raise StepFailed(f"TCB evaluation failed: {exc}") from None
        res.status = outcome["status"]
        res.advisory_ids = outcome["advisory_ids"]
        res.explanation = outcome
        summary = f"TCB status {res.status}"
        if res.advisory_ids:
            summary += f", advisories {', '.join(res.advisory_ids)}"
        if outcome["shortfall"]:
            summary += f" — {outcome['shortfall']}"
        decided = policy.decide(res.status)
        least, used = policy.min_tcb_evaluation_data_number, outcome["tcb_evaluation_data_number"]
        if least is not None and used < least:
            decided = CheckStatus.FAIL
            summary += (f"; judged with TCB evaluation data number {used}, older than the {least} the policy "
                        "requires (a later TCB recovery may have changed this platform's status)")
        if policy.allowed_mrseams is not None and q.is_tdx and q.body["mrseam"].hex() not in policy.allowed_mrseams:
            decided = CheckStatus.FAIL
            summary += (f"; the TDX module's MRSEAM {q.body['mrseam'].hex()} is not one of the "
                        f"{len(policy.allowed_mrseams)} the policy allows")
        blocked = [a for a in res.advisory_ids if policy.blocked_advisories and a.upper() in policy.blocked_advisories]
        if blocked:
            decided = CheckStatus.FAIL
            summary += f"; advisories the policy blocks: {', '.join(blocked)}"
        return StepOutcome(decided, summary, {**outcome, "policy": policy.describe()})

    def freshness() -> StepOutcome:
        assert collateral is not None
        crls = state.get("crls")
        if crls is None:
            # The revocation step failed or was skipped before it loaded the CRLs: their dates still count here.
            try:
                crls = CrlSet(_parse_crl(collateral.root_ca_crl, "root CA CRL"),
                              _parse_crl(collateral.pck_crl, "PCK CRL"))
            except StepFailed:
                crls = None
        return _freshness(collateral, crls, state.get("signed"), now, policy)

    def reference_engine() -> StepOutcome:
        assert collateral is not None
        try:
            ref = reference_verify(raw_quote, collateral, anchor.der, now)
        except ImportError as exc:
            return StepOutcome(CheckStatus.ERROR, f"the reference engine dcap-qvl is not available ({exc})")
        res.reference = ref
        details = {
            "engine": ref.engine,
            "reference_valid": ref.valid,
            "reference_status": ref.status,
            "reference_advisory_ids": ref.advisory_ids,
            "reference_error": ref.error,
            "our_valid": res.dcap_valid,
            "our_status": res.status if res.dcap_valid else None,
        }
        ours = res.status if res.dcap_valid else "invalid"
        theirs = ref.status if ref.valid else f"invalid ({ref.error})"
        if ref.valid != res.dcap_valid or (ref.valid and ref.status != res.status):
            raise StepFailed(f"the engines disagree: ours says {ours}, {ref.engine} says {theirs}", details)
        return StepOutcome(CheckStatus.PASS, f"{ref.engine} agrees: {theirs}", details)

    p.run("hardware.quote_structure", [], quote_structure)
    p.run("hardware.td_attributes", ["hardware.quote_structure"], td_attributes, Anchor.QUOTE)
    p.run("hardware.pck_chain", ["hardware.quote_structure"], pck_chain)
    p.run("hardware.collateral_signatures", ["hardware.quote_structure", "collateral"], collateral_signatures)
    p.run("hardware.revocation", ["hardware.pck_chain", "collateral"], revocation)
    p.run("hardware.qe_report", ["hardware.pck_chain"], qe_report)
    p.run("hardware.quote_signature", ["hardware.qe_report"], quote_signature)
    p.run(
        "hardware.tcb_status",
        ["hardware.revocation", "hardware.collateral_signatures", "hardware.quote_signature"],
        tcb_status,
    )
    p.run("hardware.collateral_freshness", ["hardware.quote_structure", "collateral"], freshness)
    by_id = {c.id: c for c in p.checks}
    # Valid as dcap-qvl means it: every cryptographic step passed, the collateral is inside its window and a
    # status came out (OutOfDate is a valid quote with a bad status; the policy decides what that means).
    res.dcap_valid = (
        all(by_id[i].status is CheckStatus.PASS for i in CRYPTO_STEPS if i in by_id)
        and len([i for i in CRYPTO_STEPS if i in by_id]) == len(CRYPTO_STEPS)
        and res.status is not None
        and by_id["hardware.collateral_freshness"].status is not CheckStatus.FAIL
    )
    if reference:
        p.run("hardware.reference_engine", ["hardware.quote_structure", "collateral"], reference_engine)
    return res


def _q(res: HardwareResult) -> Quote:
    assert res.quote is not None  # steps that call this run only after quote_structure passed
    return res.quote
