"""TCB evaluation (tcb.py) with dcap-qvl 0.7.0 semantics: canonical level order, Intel's TDX offset rule, status
convergence (dcap.md §6.2), TD 1.5 relaunch (§6.3), the explanation in `hardware.tcb_status`, advisories and the
default policy, each cross-checked with dcap-qvl through `hardware.reference_engine`.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from dstack_verifier.model import CheckStatus
from dstack_verifier.quote import tcb
from dstack_verifier.quote.collateral import TCB_STATUSES, Collateral, TcbInfo
from dstack_verifier.quote.verify import HardwareResult, TrustAnchor, verify_quote
from dstack_verifier.synth import IsvLevel, SynthEvidence, SynthPki, TcbInfoSpec, TcbLevel, build_pki, make_evidence
from dstack_verifier.synth.pki import DAY, DEFAULT_CPU_SVN, DEFAULT_PCE_SVN, YEAR

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
SEED = "tcb"
CPU = list(DEFAULT_CPU_SVN)  # 04 04 02 02 03 01 00 05 00..
PCE = DEFAULT_PCE_SVN  # 13
TEE_SVN = [5, 1, 2] + [0] * 13  # module SVN 5, major version 1 (identity TDX_01), late microcode SVN 2
TDX_STATUSES = list(TCB_STATUSES)
CONFIG = {"ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded", "OutOfDateConfigurationNeeded"}


@pytest.fixture(scope="module")
def pki() -> SynthPki:
    return build_pki(SEED, issued_at=(NOW - YEAR) // DAY * DAY)


def evidence(pki: SynthPki, **kw: Any) -> SynthEvidence:
    return make_evidence(SEED, now=NOW, pki=pki, **kw)


def run(ev: SynthEvidence) -> HardwareResult:
    return verify_quote(ev.quote, collateral=Collateral.from_dict(ev.collateral),
                        anchor=TrustAnchor.from_der(ev.root_ca_der), now=ev.now)


def agreed(res: HardwareResult) -> HardwareResult:
    """dcap-qvl reached the same verdict, status and advisories."""
    ref = res.check("hardware.reference_engine")
    assert ref.status is CheckStatus.PASS, ref.summary
    assert res.reference is not None and res.reference.valid == res.dcap_valid
    if res.dcap_valid:
        assert res.reference.status == res.status
        assert res.reference.advisory_ids == res.advisory_ids
    return res


def level(sgx: list[int] | None = None, pce: int = PCE, tdx: list[int] | None = None, status: str = "UpToDate",
          date: int = 1_735_689_600, advisories: tuple[str, ...] = ()) -> TcbLevel:
    return TcbLevel(sgx_components=sgx if sgx is not None else CPU, pcesvn=pce,
                    tdx_components=tdx if tdx is not None else TEE_SVN, status=status, tcb_date=date,
                    advisory_ids=advisories)


def tcb_info(levels: list[TcbLevel], tee: str = "TDX") -> TcbInfo:
    spec = TcbInfoSpec(issue_date=NOW - DAY, next_update=NOW + 29 * DAY, tcb_levels=levels, fmspc=bytes(6), tee=tee)
    return TcbInfo.model_validate(spec.to_json())


# --- canonical order ----------------------------------------------------------------------------------------


def test_canonical_order_sorts_by_sgx_then_pcesvn_then_tdx() -> None:
    ordered = [
        level(sgx=[5, *CPU[1:]], pce=10, tdx=[0] * 16, status="UpToDate"),
        level(sgx=CPU, pce=14, tdx=[0] * 16, status="SWHardeningNeeded"),
        level(sgx=CPU, pce=13, tdx=[0, 0, 3] + [0] * 13, status="ConfigurationNeeded"),
        level(sgx=CPU, pce=13, tdx=[0, 0, 2] + [0] * 13, status="ConfigurationAndSWHardeningNeeded"),
        level(sgx=[*CPU[:1], 3, *CPU[2:]], pce=20, tdx=[9] * 16, status="OutOfDate"),
        level(sgx=[0] * 16, pce=0, tdx=[0] * 16, status="OutOfDateConfigurationNeeded"),
    ]
    shuffled = ordered[:]
    random.Random(7).shuffle(shuffled)
    assert shuffled != ordered
    got = [lv.tcbStatus for lv in tcb.canonical_levels(tcb_info(shuffled))]
    assert got == [lv.status for lv in ordered]


def test_canonical_order_is_stable_and_ignores_tdx_for_sgx_tcb_info() -> None:
    a = level(tdx=[1] * 16, status="OutOfDate")
    b = level(tdx=[2] * 16, status="UpToDate")
    # SGX TCB Info: TDX components play no part, ties keep JSON order.
    assert [lv.tcbStatus for lv in tcb.canonical_levels(tcb_info([a, b], tee="SGX"))] == ["OutOfDate", "UpToDate"]
    # TDX v3 TCB Info: the higher TDX components come first.
    assert [lv.tcbStatus for lv in tcb.canonical_levels(tcb_info([a, b]))] == ["UpToDate", "OutOfDate"]


def test_json_order_of_platform_levels_does_not_matter(pki: SynthPki) -> None:
    """A worse level listed first is not picked: the levels are matched in canonical order, as dcap-qvl does."""
    floor = level(sgx=[max(0, s - 1) for s in CPU], pce=PCE - 1, status="OutOfDate", advisories=("INTEL-SA-00001",))
    own = level(status="UpToDate")
    for levels in ([floor, own], [own, floor]):
        res = agreed(run(evidence(pki, tcb_levels=levels)))
        assert res.status == "UpToDate" and res.advisory_ids == []
        assert res.explanation["matched_level"]["index"] == 0


def test_qe_levels_are_walked_in_json_order(pki: SynthPki) -> None:
    """QE Identity levels are NOT re-sorted (dcap.md §5 step 10.6): the first level at or below the QE's ISVSVN."""
    ev = evidence(pki)
    ev.collateral_builder.qe_identity.tcb_levels = [IsvLevel(isvsvn=4, status="OutOfDate"), IsvLevel(isvsvn=8)]
    res = agreed(run(ev.rebuild()))
    assert res.explanation["qe"]["status"] == "OutOfDate"
    assert res.status == "OutOfDate"


# --- Intel's TDX offset rule ----------------------------------------------------------------------------------


def test_offset_rule_unit() -> None:
    info = tcb_info([level(tdx=[9, 9, 2] + [0] * 13, status="UpToDate"),
                     level(tdx=[0, 0, 2] + [0] * 13, status="OutOfDate")])
    major = tcb.match_platform_level(info, bytes(CPU), PCE, bytes([5, 1, 2] + [0] * 13))
    assert (major.level.tcbStatus, major.tdx_compared_from, major.better_levels) == ("UpToDate", 2, [])
    zero = tcb.match_platform_level(info, bytes(CPU), PCE, bytes([5, 0, 2] + [0] * 13))
    assert (zero.level.tcbStatus, zero.tdx_compared_from) == ("OutOfDate", 0)
    assert zero.better_levels[0]["short"] == ["TDX component 00 is 5, the level needs 9",
                                               "TDX component 01 is 0, the level needs 9"]
    # Bytes 2.. are always compared.
    with pytest.raises(tcb.TcbError, match="TDX component 02 is 1, the level needs 2"):
        tcb.match_platform_level(info, bytes(CPU), PCE, bytes([5, 1, 1] + [0] * 13))
    # An SGX platform has no TDX components to compare.
    sgx = tcb.match_platform_level(tcb_info([level()], tee="SGX"), bytes(CPU), PCE, None)
    assert sgx.tdx_compared_from is None


@pytest.mark.parametrize(("svn", "status", "compared_from"), [
    pytest.param([5, 1, 2], "UpToDate", 2, id="major-1-skips-bytes-0-1"),
    pytest.param([5, 0, 2], "OutOfDate", 0, id="major-0-compares-all"),
])
def test_offset_rule_end_to_end(pki: SynthPki, svn: list[int], status: str, compared_from: int) -> None:
    levels = [level(tdx=[9, 9, 2] + [0] * 13, status="UpToDate"), level(tdx=[0, 0, 2] + [0] * 13, status="OutOfDate")]
    res = agreed(run(evidence(pki, tee_tcb_svn=bytes(svn + [0] * 13), tcb_levels=levels)))
    assert res.status == status
    assert res.explanation["platform"]["tdx_compared_from"] == compared_from
    assert res.explanation["tdx_module"]["identity"] == ("TDX_01" if svn[1] else None)


# --- convergence (dcap.md §6.2) and relaunch (§6.3) --------------------------------------------------------


def expected_convergence(component: str, platform: str) -> str:
    if component == "Revoked":
        return "Revoked"
    if component == "OutOfDate" and platform in ("UpToDate", "SWHardeningNeeded"):
        return "OutOfDate"
    if component == "OutOfDate" and platform in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"):
        return "OutOfDateConfigurationNeeded"
    return platform


@pytest.mark.parametrize(("component", "platform"), list(itertools.product(TDX_STATUSES, TDX_STATUSES)))
def test_convergence_table(component: str, platform: str) -> None:
    assert tcb.converge(platform, component) == expected_convergence(component, platform)


def test_convergence_differs_from_worst_wins() -> None:
    # dcap.md §6.2, the two places where 0.7.0 and 0.5.2 differ
    assert tcb.converge("ConfigurationNeeded", "OutOfDate") == "OutOfDateConfigurationNeeded"
    assert tcb.converge("UpToDate", "ConfigurationNeeded") == "UpToDate"


@pytest.mark.parametrize(("platform", "qe", "module", "expected"), [
    pytest.param("ConfigurationNeeded", "OutOfDate", "UpToDate", "OutOfDateConfigurationNeeded", id="qe-ood+config"),
    pytest.param("UpToDate", "ConfigurationNeeded", "UpToDate", "UpToDate", id="qe-config-ignored"),
    pytest.param("SWHardeningNeeded", "UpToDate", "OutOfDate", "OutOfDate", id="module-ood+swh"),
    pytest.param("ConfigurationAndSWHardeningNeeded", "UpToDate", "OutOfDate", "OutOfDateConfigurationNeeded",
                 id="module-ood+config-swh"),
    pytest.param("OutOfDate", "UpToDate", "UpToDate", "OutOfDate", id="platform-ood"),
    pytest.param("UpToDate", "OutOfDateConfigurationNeeded", "UpToDate", "UpToDate", id="qe-oodc-ignored"),
])
def test_convergence_end_to_end(pki: SynthPki, platform: str, qe: str, module: str, expected: str) -> None:
    res = agreed(run(evidence(pki, platform_status=platform, qe_status=qe, module_status=module)))
    assert res.status == expected
    assert res.explanation["platform_status"] == expected_convergence(module, platform)
    assert res.explanation["qe"]["status"] == qe


RELAUNCH_CURRENT_OK = ["UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"]


def expected_relaunch(launch: str, current: str) -> str:
    if launch in ("OutOfDate", "OutOfDateConfigurationNeeded") and current in RELAUNCH_CURRENT_OK:
        if launch in CONFIG or current in CONFIG:
            return "TDRelaunchAdvisedConfigurationNeeded"
        return "TDRelaunchAdvised"
    return launch


@pytest.mark.parametrize(("launch", "current"), list(itertools.product(TDX_STATUSES[:-1], TDX_STATUSES[:-1])))
def test_relaunch_table(launch: str, current: str) -> None:
    assert tcb.relaunch(launch, current) == expected_relaunch(launch, current)


def td15(pki: SynthPki, svn2_module: int, **kw: Any) -> SynthEvidence:
    svn2 = bytes([svn2_module, 1, 2] + [0] * 13)
    return evidence(pki, version=5, body="td15", report={"tee_tcb_svn2": svn2}, **kw)


@pytest.mark.parametrize(("platform", "expected"), [
    pytest.param("UpToDate", "TDRelaunchAdvised", id="relaunch"),
    pytest.param("ConfigurationNeeded", "TDRelaunchAdvisedConfigurationNeeded", id="relaunch-config"),
])
def test_td15_relaunch_end_to_end(pki: SynthPki, platform: str, expected: str) -> None:
    # Launched with module SVN 5 (an OutOfDate module level); a TD-preserving update brought SVN 6 (UpToDate).
    res = agreed(run(td15(pki, 6, module_status="OutOfDate", module_advisories=["INTEL-SA-00999"],
                          platform_status=platform)))
    assert res.status == expected
    assert res.explanation["current_tcb"]["status"] == platform
    assert res.advisory_ids == ["INTEL-SA-00999"]
    assert res.check("hardware.tcb_status").status is CheckStatus.WARN  # the default policy warns on relaunch


def test_td15_without_update_is_not_relaunch(pki: SynthPki) -> None:
    res = agreed(run(td15(pki, 5, module_status="OutOfDate")))
    assert res.status == "OutOfDate"
    assert res.check("hardware.tcb_status").status is CheckStatus.FAIL


def test_td15_current_revoked_is_fatal(pki: SynthPki) -> None:
    ev = td15(pki, 6)
    ident = ev.collateral_builder.tcb_info.tdx_module_identities[0]
    ident.tcb_levels = [IsvLevel(isvsvn=6, status="Revoked"), IsvLevel(isvsvn=5)]
    res = agreed(run(ev.rebuild()))
    check = res.check("hardware.tcb_status")
    assert check.status is CheckStatus.FAIL
    assert "current TCB (TEE_TCB_SVN2) is Revoked" in check.summary
    assert not res.dcap_valid


# --- the explanation ---------------------------------------------------------------------------------------------


def test_explanation_sgx_component_short(pki: SynthPki) -> None:
    ev = evidence(pki, platform_status="OutOfDate", platform_advisories=["INTEL-SA-00837"])
    doc = ev.collateral_builder.tcb_info.to_json()
    for lv in doc["tcbLevels"]:
        lv["tcb"]["sgxtcbcomponents"][0].update(category="BIOS", type="Early Microcode Update")
    ev.collateral_builder.tcb_info = doc
    res = agreed(run(ev.rebuild()))
    check = res.check("hardware.tcb_status")
    details = check.details
    assert check.status is CheckStatus.FAIL
    assert details["matched_level"]["status"] == "OutOfDate"
    assert details["matched_level"]["index"] == 1
    assert details["matched_level"]["sgx_components"] == CPU
    assert details["matched_level"]["pce_svn"] == PCE
    assert details["matched_level"]["advisory_ids"] == ["INTEL-SA-00837"]
    short = "SGX component 01 (Early Microcode Update) is 4, the level needs 5"
    assert details["levels_above"] == [{"index": 0, "tcb_date": details["levels_above"][0]["tcb_date"],
                                        "status": "UpToDate", "short": [short]}]
    assert details["shortfall"] == f"below the UpToDate level of {details['levels_above'][0]['tcb_date']}: {short}"
    assert check.summary == f"TCB status OutOfDate, advisories INTEL-SA-00837 — {details['shortfall']}"


def test_explanation_pce_svn_short(pki: SynthPki) -> None:
    levels = [level(pce=PCE + 1), level(status="SWHardeningNeeded")]
    res = agreed(run(evidence(pki, tcb_levels=levels)))
    assert res.status == "SWHardeningNeeded"
    assert res.explanation["levels_above"][0]["short"] == ["PCE SVN is 13, the level needs 14"]
    assert res.explanation["shortfall"].endswith("PCE SVN is 13, the level needs 14")


def test_explanation_tdx_component_short(pki: SynthPki) -> None:
    levels = [level(tdx=[5, 1, 3] + [0] * 13), level(status="ConfigurationNeeded")]
    res = agreed(run(evidence(pki, tcb_levels=levels)))
    assert res.status == "ConfigurationNeeded"
    assert res.explanation["shortfall"].endswith("TDX component 02 is 2, the level needs 3")


def test_explanation_several_components_short(pki: SynthPki) -> None:
    better = level(sgx=[5, 4, 2, 2, 3, 1, 0, 6] + [0] * 8, pce=PCE + 2)
    res = agreed(run(evidence(pki, tcb_levels=[better, level(status="OutOfDate")])))
    assert res.explanation["levels_above"][0]["short"] == [
        "PCE SVN is 13, the level needs 15",
        "SGX component 01 is 4, the level needs 5",
        "SGX component 08 is 5, the level needs 6",
    ]


def test_explanation_tdx_module_short(pki: SynthPki) -> None:
    res = agreed(run(evidence(pki, module_status="OutOfDate")))
    assert res.status == "OutOfDate"
    assert res.explanation["platform_status"] == "OutOfDate"
    assert res.explanation["matched_level"]["status"] == "UpToDate"
    module = res.explanation["tdx_module"]
    assert (module["identity"], module["isvsvn"], module["level_isvsvn"], module["status"]) == (
        "TDX_01", 5, 5, "OutOfDate")
    assert "TDX module TDX_01 ISVSVN 5" in res.explanation["shortfall"]
    assert "OutOfDate" in res.explanation["shortfall"]


def test_explanation_qe_short(pki: SynthPki) -> None:
    res = agreed(run(evidence(pki, qe_status="OutOfDate", qe_advisories=["INTEL-SA-00615"])))
    assert res.status == "OutOfDate" and res.advisory_ids == ["INTEL-SA-00615"]
    assert res.explanation["qe"] == {"isv_svn": 8, "status": "OutOfDate",
                                     "tcb_date": res.explanation["qe"]["tcb_date"], "advisory_ids": ["INTEL-SA-00615"]}
    assert "QE (ISVSVN 8)" in res.explanation["shortfall"] and "OutOfDate" in res.explanation["shortfall"]


def test_no_matching_level_explains_each_level(pki: SynthPki) -> None:
    levels = [level(sgx=[5, *CPU[1:]]), level(pce=PCE + 1, status="OutOfDate")]
    res = agreed(run(evidence(pki, tcb_levels=levels)))
    check = res.check("hardware.tcb_status")
    assert check.status is CheckStatus.FAIL
    assert "no matching TCB level" in check.summary
    assert "level 0 UpToDate: SGX component 01 is 4, the level needs 5" in check.summary
    assert "level 1 OutOfDate: PCE SVN is 13, the level needs 14" in check.summary


def test_unit_shortfalls_and_union() -> None:
    lv = tcb_info([level(sgx=[9, *CPU[1:]], pce=20, tdx=[0, 0, 7] + [0] * 13)]).tcbLevels[0]
    got = [s.text() for s in tcb.shortfalls(lv, bytes(CPU), PCE, bytes(TEE_SVN), 2)]
    assert got == ["PCE SVN is 13, the level needs 20", "SGX component 01 is 4, the level needs 9",
                   "TDX component 02 is 2, the level needs 7"]
    assert tcb.shortfalls(lv, bytes([9] * 16), 20, None, 0) == []
    assert tcb.union(["A", "B"], ["B", "C"], ["D", "A"]) == ["A", "B", "C", "D"]


# --- advisories ---------------------------------------------------------------------------------------------------


def test_advisories_with_up_to_date(pki: SynthPki) -> None:
    res = agreed(run(evidence(pki, platform_advisories=["INTEL-SA-01111", "INTEL-SA-01112"])))
    check = res.check("hardware.tcb_status")
    assert res.status == "UpToDate"
    assert res.advisory_ids == ["INTEL-SA-01111", "INTEL-SA-01112"]
    assert check.status is CheckStatus.PASS
    assert check.summary == "TCB status UpToDate, advisories INTEL-SA-01111, INTEL-SA-01112"
    assert check.details["advisory_ids"] == res.advisory_ids
    assert check.details["shortfall"] == ""


def test_advisories_union_platform_module_qe(pki: SynthPki) -> None:
    res = agreed(run(evidence(pki, platform_advisories=["INTEL-SA-A", "INTEL-SA-B"],
                              module_advisories=["INTEL-SA-B", "INTEL-SA-C"],
                              qe_advisories=["INTEL-SA-D", "INTEL-SA-A"])))
    assert res.status == "UpToDate"
    assert res.advisory_ids == ["INTEL-SA-A", "INTEL-SA-B", "INTEL-SA-C", "INTEL-SA-D"]


# --- the default policy, and agreement with dcap-qvl for each status -----------------------------------------------

DEFAULT_POLICY = [
    pytest.param("UpToDate", CheckStatus.PASS, True, id="UpToDate"),
    pytest.param("SWHardeningNeeded", CheckStatus.WARN, True, id="SWHardeningNeeded"),
    pytest.param("ConfigurationNeeded", CheckStatus.WARN, True, id="ConfigurationNeeded"),
    pytest.param("ConfigurationAndSWHardeningNeeded", CheckStatus.WARN, True, id="ConfigurationAndSWHardeningNeeded"),
    pytest.param("OutOfDate", CheckStatus.FAIL, True, id="OutOfDate"),
    pytest.param("OutOfDateConfigurationNeeded", CheckStatus.FAIL, True, id="OutOfDateConfigurationNeeded"),
    pytest.param("Revoked", CheckStatus.FAIL, False, id="Revoked"),
]


@pytest.mark.parametrize(("status", "decision", "valid"), DEFAULT_POLICY)
@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_default_policy(pki: SynthPki, tee: str, status: str, decision: CheckStatus, valid: bool) -> None:
    res = agreed(run(evidence(pki, tee=tee, platform_status=status, platform_advisories=["INTEL-SA-00001"])))
    check = res.check("hardware.tcb_status")
    assert check.status is decision, check.summary
    assert res.dcap_valid is valid
    if valid:
        # a valid quote with a status the policy dislikes: dcap-qvl returns the same status
        assert res.status == res.reference.status == status
        assert res.advisory_ids == ["INTEL-SA-00001"]
        assert check.summary.startswith(f"TCB status {status}, advisories INTEL-SA-00001")
    else:
        assert "TCB status is Revoked" in check.summary
        assert "Revoked" in (res.reference.error or "")


def test_no_matching_level_fails_in_both_engines(pki: SynthPki) -> None:
    res = agreed(run(evidence(pki, tcb_levels=[level(sgx=[99] * 16)])))
    assert res.check("hardware.tcb_status").status is CheckStatus.FAIL
    assert "No matching TCB level found" in (res.reference.error or "")
