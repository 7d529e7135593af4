"""TCB evaluation with dcap-qvl 0.7.0 semantics: platform level matching (with Intel's TDX index-offset rule),
TDX module identity, QE identity, status convergence and TD 1.5 relaunch — and an explanation of each result.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

from .collateral import TCB_STATUSES, IsvTcbLevel, PlatformTcbLevel, QeIdentity, TcbInfo
from .structure import Report

CLASSIC_STATUSES = set(TCB_STATUSES)
QE_STATUSES = {"UpToDate", "OutOfDate", "ConfigurationNeeded", "Revoked", "OutOfDateConfigurationNeeded"}
MODULE_STATUSES = {"UpToDate", "OutOfDate", "Revoked"}
CONFIG_STATUSES = {"ConfigurationNeeded", "OutOfDateConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"}


class TcbError(Exception):
    """A fatal TCB evaluation failure (no matching level, identity mismatch...)."""


@dataclass
class Shortfall:
    """One component of ours below what a better TCB level requires."""

    component: str
    have: int
    need: int

    def text(self) -> str:
        return f"{self.component} is {self.have}, the level needs {self.need}"


@dataclass
class PlatformMatch:
    level: PlatformTcbLevel
    index: int  # in canonical order
    tdx_compared_from: int | None  # first TDX component index compared (Intel's offset rule), None for SGX
    better_levels: list[dict[str, Any]] = field(default_factory=list)


def _sort_key(level: PlatformTcbLevel, tdx: bool) -> tuple:
    sgx = tuple([c["svn"] for c in level.tcb.sgxtcbcomponents])
    tdxc = tuple([c["svn"] for c in (level.tcb.tdxtcbcomponents or [])]) if tdx else ()
    return (sgx, level.tcb.pcesvn, tdxc)


def _keyed_levels(info: TcbInfo) -> list[tuple[tuple, PlatformTcbLevel]]:
    tdx = info.version >= 3 and info.id == "TDX"
    keyed = [(_sort_key(level, tdx), level) for level in info.tcbLevels]
    keyed.sort(key=operator.itemgetter(0), reverse=True)
    return keyed


def canonical_levels(info: TcbInfo) -> list[PlatformTcbLevel]:
    """Intel QVL's order: descending by SGX components, then PCESVN, then (TDX v3) TDX components. Stable."""
    return [level for _, level in _keyed_levels(info)]


def _sgx_component_name(level: PlatformTcbLevel, i: int) -> str:
    comp = level.tcb.sgxtcbcomponents[i]
    label = comp.get("type") or comp.get("category")
    return f"SGX component {i + 1:02d}" + (f" ({label})" if label else "")


def _tdx_component_name(level: PlatformTcbLevel, i: int) -> str:
    comp = (level.tcb.tdxtcbcomponents or [])[i]
    label = comp.get("type") or comp.get("category")
    return f"TDX component {i:02d}" + (f" ({label})" if label else "")


def shortfalls(
    level: PlatformTcbLevel, cpu_svn: bytes, pce_svn: int, tee_tcb_svn: bytes | None, tdx_from: int
) -> list[Shortfall]:
    """What of ours is below this level's requirements; empty when the level matches."""
    out: list[Shortfall] = []
    if pce_svn < level.tcb.pcesvn:
        out.append(Shortfall("PCE SVN", pce_svn, level.tcb.pcesvn))
    for i, comp in enumerate(level.tcb.sgxtcbcomponents[:16]):
        if cpu_svn[i] < comp["svn"]:
            out.append(Shortfall(_sgx_component_name(level, i), cpu_svn[i], comp["svn"]))
    if tee_tcb_svn is not None:
        for i in range(tdx_from, 16):
            need = (level.tcb.tdxtcbcomponents or [])[i]["svn"]
            if tee_tcb_svn[i] < need:
                out.append(Shortfall(_tdx_component_name(level, i), tee_tcb_svn[i], need))
    return out


def match_platform_level(
    info: TcbInfo, cpu_svn: bytes, pce_svn: int, tee_tcb_svn: bytes | None
) -> PlatformMatch:
    is_tdx = tee_tcb_svn is not None
    # Intel's rule: with a non-zero module major version, bytes 0-1 are judged by the TDX module identity.
    tdx_from = 2 if is_tdx and tee_tcb_svn[1] > 0 else 0
    skipped: list[dict[str, Any]] = []
    # Whole-vector comparisons first; the per-component walk (which names what falls short) only where one does.
    quick = len(cpu_svn) == 16 and (tee_tcb_svn is None or len(tee_tcb_svn) >= 16)
    for index, (key, level) in enumerate(_keyed_levels(info)):
        if len(level.tcb.sgxtcbcomponents) != 16:
            raise TcbError(f"TCB level {index} has {len(level.tcb.sgxtcbcomponents)} SGX components, expected 16")
        if is_tdx and len(level.tcb.tdxtcbcomponents or []) != 16:
            raise TcbError(f"TCB level {index} has {len(level.tcb.tdxtcbcomponents or [])} TDX components, "
                           "expected 16")
        tdx = level.tcb.tdxtcbcomponents or []
        if quick and pce_svn >= key[1] and all(map(operator.ge, cpu_svn, key[0])) and (
            tee_tcb_svn is None
            or all(c["svn"] <= have for c, have in zip(tdx[tdx_from:16], tee_tcb_svn[tdx_from:16], strict=True))
        ):
            short = []
        else:
            short = shortfalls(level, cpu_svn, pce_svn, tee_tcb_svn, tdx_from)
        if not short:
            if level.tcbStatus not in CLASSIC_STATUSES:
                raise TcbError(f"unrecognised TCB status {level.tcbStatus} in TCB Info")
            return PlatformMatch(level, index, tdx_from if is_tdx else None, skipped)
        skipped.append({
            "index": index,
            "tcb_date": level.tcbDate,
            "status": level.tcbStatus,
            "short": [s.text() for s in short],
        })
    raise TcbError(
        "no matching TCB level: every level needs more than this platform has ("
        + "; ".join(f"level {s['index']} {s['status']}: {', '.join(s['short'])}" for s in skipped[:3])
        + ")"
    )


@dataclass
class ModuleMatch:
    identity_id: str | None
    level: IsvTcbLevel | None
    isvsvn: int


def _attr_check(actual: bytes, expected_hex: str, mask_hex: str, what: str) -> None:
    expected = bytes.fromhex(expected_hex)
    mask = bytes.fromhex(mask_hex)
    if len(expected) != len(actual) or len(mask) != len(actual):
        raise TcbError(f"{what}: expected value/mask are not {len(actual)} bytes")
    m = int.from_bytes(mask, "big")
    if int.from_bytes(actual, "big") & m == int.from_bytes(expected, "big") & m:
        return
    for i, (a, e, m) in enumerate(zip(actual, expected, mask, strict=True)):
        if a & m != e & m:
            raise TcbError(f"{what} mismatch at byte {i}: {a:02x} & {m:02x} != {e:02x} & {m:02x}")


def evaluate_tdx_module(info: TcbInfo, body: Report, tee_tcb_svn: bytes) -> ModuleMatch:
    if info.tdxModule is None:
        raise TcbError("TDX TCB Info is missing tdxModule")
    version, isvsvn = tee_tcb_svn[1], tee_tcb_svn[0]
    expected = info.tdxModule
    identity = None
    if version > 0:
        wanted = f"TDX_{version:02X}"
        found = [m for m in info.tdxModuleIdentities or [] if m.id.upper() == wanted]
        if not found:
            raise TcbError(f"no TDX module identity with id {wanted} in TCB Info")
        identity = found[0]
        expected = identity
    if body["mrsignerseam"] != bytes.fromhex(expected.mrsigner):
        raise TcbError(
            f"TDX module MRSIGNER mismatch: quote {body['mrsignerseam'].hex()}, TCB Info {expected.mrsigner.lower()}"
        )
    seam_attr = body["seamattributes"]
    _attr_check(seam_attr, expected.attributes, expected.attributesMask, "TDX module SEAMATTRIBUTES")
    mask = bytes.fromhex(expected.attributesMask)  # as long as seam_attr: _attr_check made sure
    if int.from_bytes(seam_attr, "big") & ~int.from_bytes(mask, "big"):
        raise TcbError("TDX module SEAMATTRIBUTES has bits set outside the mask")
    if identity is None:
        return ModuleMatch(None, None, isvsvn)
    for level in identity.tcbLevels:
        if level.tcb.isvsvn <= isvsvn:
            if level.tcbStatus not in MODULE_STATUSES:
                raise TcbError(f"unrecognised TDX module TCB status {level.tcbStatus}")
            return ModuleMatch(identity.id, level, isvsvn)
    minimum = min((lv.tcb.isvsvn for lv in identity.tcbLevels), default=None)
    raise TcbError(f"TDX module ISVSVN {isvsvn} is below the minimum {minimum} of identity {identity.id}")


def evaluate_qe_identity(qe: QeIdentity, qe_report: Report) -> IsvTcbLevel:
    """The QE report against the QE Identity: identity fields first, then its TCB level (JSON order)."""
    if qe_report["mr_signer"] != bytes.fromhex(qe.mrsigner):
        raise TcbError(f"QE MRSIGNER mismatch: expected {qe.mrsigner.lower()}, got {qe_report['mr_signer'].hex()}")
    if qe_report["attributes"][0] & 0x02:
        raise TcbError("the QE is a debug enclave")
    if qe_report["isv_prod_id"] != qe.isvprodid:
        raise TcbError(f"QE ISVPRODID mismatch: expected {qe.isvprodid}, got {qe_report['isv_prod_id']}")
    misc = int.from_bytes(bytes.fromhex(qe.miscselect), "little")
    misc_mask = int.from_bytes(bytes.fromhex(qe.miscselectMask), "little")
    if qe_report["misc_select"] & misc_mask != misc & misc_mask:
        raise TcbError(f"QE MISCSELECT mismatch: expected {misc & misc_mask:08X} (masked), "
                       f"got {qe_report['misc_select'] & misc_mask:08X}")
    _attr_check(qe_report["attributes"], qe.attributes, qe.attributesMask, "QE ATTRIBUTES")
    isv_svn = qe_report["isv_svn"]
    if not qe.tcbLevels:
        raise TcbError("no TCB levels in QE Identity")
    for level in qe.tcbLevels:
        if level.tcb.isvsvn <= isv_svn:
            if level.tcbStatus not in QE_STATUSES:
                raise TcbError(f"unrecognised TCB status {level.tcbStatus} in QE Identity")
            return level
    minimum = min(lv.tcb.isvsvn for lv in qe.tcbLevels)
    raise TcbError(f"QE ISVSVN {isv_svn} is below the minimum {minimum} required by QE Identity")


def converge(platform: str, component: str) -> str:
    """Intel's convergence of a component (QE or TDX module) status into the platform status."""
    if component == "Revoked":
        return "Revoked"
    if component == "OutOfDate":
        if platform in ("UpToDate", "SWHardeningNeeded"):
            return "OutOfDate"
        if platform in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"):
            return "OutOfDateConfigurationNeeded"
    return platform


def relaunch(launch: str, current: str) -> str:
    """TD 1.5: a TD launched on an out-of-date TCB whose current TCB is fine is advised to relaunch."""
    if launch in ("OutOfDate", "OutOfDateConfigurationNeeded") and current in (
        "UpToDate",
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
    ):
        if launch in CONFIG_STATUSES or current in CONFIG_STATUSES:
            return "TDRelaunchAdvisedConfigurationNeeded"
        return "TDRelaunchAdvised"
    return launch


def union(*lists: list[str]) -> list[str]:
    out: list[str] = []
    for items in lists:
        for item in items:
            if item not in out:
                out.append(item)
    return out
