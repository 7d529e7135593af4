"""verify_quote end to end: the real Intel quote across its validity window (dcap.md §5.16, §8.1), verification
without collateral, the TCB policy as a parameter, the freshness warning window, and CollateralMemo reuse.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from dstack_verifier.model import Anchor, CheckStatus
from dstack_verifier.quote import verify as verify_module
from dstack_verifier.quote.collateral import Collateral
from dstack_verifier.quote.policy import TcbPolicy
from dstack_verifier.quote.verify import CollateralMemo, HardwareResult, TrustAnchor, verify_quote
from dstack_verifier.resources import intel_root_ca_der
from dstack_verifier.synth import SynthEvidence, SynthPki, build_pki, make_evidence
from dstack_verifier.synth.pki import DAY, YEAR

from tests.support.checks import HARDWARE_CHECKS
from tests.support.fixtures import fixture_path

MID_WINDOW = 1751624191  # dcap.md §8.1: the middle of the tdx_quote collateral's window
PCK_CRL_NEXT_UPDATE = 1752919235  # 2025-07-19T10:00:35Z, exclusive
QE_IDENTITY_ISSUED = 1750329147  # 2025-06-19T10:32:27Z, the latest issue date of the collateral
NOV_2026 = 1795564800  # 2026-11-25T00:00:00Z: the root CA CRL (next update 2026-04-03) has expired

NEEDS_COLLATERAL = [
    "hardware.collateral_signatures",
    "hardware.revocation",
    "hardware.tcb_status",
    "hardware.collateral_freshness",
    "hardware.reference_engine",
]
SYNTH_NOW = 1_767_225_600  # 2026-01-01T00:00:00Z


@pytest.fixture(scope="module")
def real_quote() -> bytes:
    return fixture_path("dcap-qvl", "tdx_quote").read_bytes()


@pytest.fixture(scope="module")
def real_collateral() -> Collateral:
    return Collateral.from_dict(json.loads(fixture_path("dcap-qvl", "tdx_quote_collateral.json").read_text()))


@pytest.fixture(scope="module")
def intel() -> TrustAnchor:
    return TrustAnchor.from_der(intel_root_ca_der())


def statuses(res: HardwareResult) -> dict[str, CheckStatus]:
    return {c.id: c.status for c in res.checks}


# --- the real quote --------------------------------------------------------------------------------------


def test_real_quote_is_up_to_date(real_quote: bytes, real_collateral: Collateral, intel: TrustAnchor) -> None:
    res = verify_quote(real_quote, collateral=real_collateral, anchor=intel, now=MID_WINDOW)
    assert statuses(res) == dict.fromkeys(HARDWARE_CHECKS, CheckStatus.PASS)
    assert res.status == "UpToDate"
    assert res.advisory_ids == []
    assert res.dcap_valid
    assert intel.is_intel and all(c.anchor in (Anchor.INTEL_ROOT, Anchor.QUOTE) for c in res.checks)
    assert res.check("hardware.td_attributes").anchor == Anchor.QUOTE
    # the reference engine agrees
    assert res.reference is not None and res.reference.valid and res.reference.status == "UpToDate"
    ref = res.check("hardware.reference_engine")
    assert ref.details["reference_status"] == ref.details["our_status"] == "UpToDate"
    assert ref.details["reference_advisory_ids"] == []
    # the facts dcap.md §3 and §8.2 give for this quote
    assert res.pck is not None
    assert res.pck.fmspc.hex().upper() == "B0C06F000000"
    assert res.pck.pce_svn == 11 and res.pck.ca_type == "platform"
    assert res.pck.ppid.hex() == "811dca2a26b952e85bb6448b097ba4fd"
    tcb = res.check("hardware.tcb_status").details
    assert tcb["tdx_module"]["identity"] == "TDX_01" and tcb["tdx_module"]["status"] == "UpToDate"
    assert tcb["platform"]["tdx_compared_from"] == 2  # tee_tcb_svn[1] == 1 > 0
    assert tcb["qe"]["isv_svn"] == 6 and tcb["qe"]["status"] == "UpToDate"
    assert tcb["tcb_evaluation_data_number"] == 17


def test_pck_crl_next_update_is_exclusive(real_quote: bytes, real_collateral: Collateral, intel: TrustAnchor) -> None:
    res = verify_quote(real_quote, collateral=real_collateral, anchor=intel, now=PCK_CRL_NEXT_UPDATE)
    assert not res.dcap_valid and res.status is None
    rev = res.check("hardware.revocation")
    assert rev.status is CheckStatus.FAIL
    assert "Intel SGX PCK Platform CA" in rev.summary and "expired" in rev.summary
    assert rev.details["code"] == "CrlExpired"
    fresh = res.check("hardware.collateral_freshness")
    assert fresh.status is CheckStatus.FAIL and "PCK CRL expired" in fresh.summary
    tcb = res.check("hardware.tcb_status")
    assert tcb.status is CheckStatus.SKIP and "hardware.revocation failed" in tcb.summary
    # the quote itself is still genuine
    assert res.check("hardware.quote_signature").status is CheckStatus.PASS
    # dcap-qvl says invalid too: the engines agree
    assert res.reference is not None and not res.reference.valid and "CrlExpired" in (res.reference.error or "")
    assert res.check("hardware.reference_engine").status is CheckStatus.PASS


def test_one_second_before_is_valid(real_quote: bytes, real_collateral: Collateral, intel: TrustAnchor) -> None:
    res = verify_quote(real_quote, collateral=real_collateral, anchor=intel, now=PCK_CRL_NEXT_UPDATE - 1)
    assert res.dcap_valid and res.status == "UpToDate"
    assert res.check("hardware.revocation").status is CheckStatus.PASS
    # a second before the PCK CRL's next update: inside the default one-week warning window
    fresh = res.check("hardware.collateral_freshness")
    assert fresh.status is CheckStatus.WARN
    assert "PCK CRL is due for update at 2025-07-19T10:00:35Z" in fresh.summary
    assert res.check("hardware.reference_engine").status is CheckStatus.PASS


def test_before_qe_identity_issue_date(real_quote: bytes, real_collateral: Collateral, intel: TrustAnchor) -> None:
    res = verify_quote(real_quote, collateral=real_collateral, anchor=intel, now=QE_IDENTITY_ISSUED - 1)
    fresh = res.check("hardware.collateral_freshness")
    assert fresh.status is CheckStatus.FAIL
    assert "QE Identity is issued in the future (2025-06-19T10:32:27Z)" in fresh.summary
    assert not res.dcap_valid
    assert res.reference is not None and "QE Identity issue date is in the future" in (res.reference.error or "")
    assert res.check("hardware.reference_engine").status is CheckStatus.PASS
    at_issue = verify_quote(real_quote, collateral=real_collateral, anchor=intel, now=QE_IDENTITY_ISSUED)
    assert at_issue.dcap_valid and at_issue.check("hardware.collateral_freshness").status is CheckStatus.PASS


def test_november_2026_fails(real_quote: bytes, real_collateral: Collateral, intel: TrustAnchor) -> None:
    res = verify_quote(real_quote, collateral=real_collateral, anchor=intel, now=NOV_2026)
    assert not res.dcap_valid
    rev = res.check("hardware.revocation")
    assert rev.status is CheckStatus.FAIL
    assert rev.summary.startswith("root CA CRL:") and "Intel SGX Root CA expired at 2026-04-03" in rev.summary
    fresh = res.check("hardware.collateral_freshness")
    assert fresh.status is CheckStatus.FAIL
    for item in ("TCB Info expired", "QE Identity expired", "root CA CRL expired", "PCK CRL expired"):
        assert item in fresh.summary
    assert res.check("hardware.tcb_status").status is CheckStatus.SKIP
    assert res.check("hardware.reference_engine").status is CheckStatus.PASS


def test_without_collateral(real_quote: bytes, intel: TrustAnchor) -> None:
    res = verify_quote(real_quote, collateral=None, anchor=intel, now=MID_WINDOW)
    for check_id in NEEDS_COLLATERAL:
        check = res.check(check_id)
        assert check.status is CheckStatus.SKIP, check_id
        assert check.summary == "no collateral was given"
    for check_id in set(HARDWARE_CHECKS) - set(NEEDS_COLLATERAL):
        assert res.check(check_id).status is CheckStatus.PASS, check_id
    assert res.status is None and not res.dcap_valid and res.reference is None


def test_without_collateral_because_of_an_error(real_quote: bytes, intel: TrustAnchor) -> None:
    reason = "offline: the collateral could not be fetched"
    res = verify_quote(real_quote, collateral=None, anchor=intel, now=MID_WINDOW, collateral_missing_reason=reason,
                       collateral_is_error=True)
    for check_id in NEEDS_COLLATERAL:
        check = res.check(check_id)
        assert check.status in (CheckStatus.ERROR, CheckStatus.SKIP), check_id
        assert check.summary == reason
    assert res.check("hardware.revocation").status is CheckStatus.ERROR
    assert res.check("hardware.qe_report").status is CheckStatus.PASS
    assert res.check("hardware.quote_signature").status is CheckStatus.PASS


def test_reference_can_be_left_out(real_quote: bytes, real_collateral: Collateral, intel: TrustAnchor) -> None:
    res = verify_quote(real_quote, collateral=real_collateral, anchor=intel, now=MID_WINDOW, reference=False)
    assert "hardware.reference_engine" not in statuses(res)
    assert res.dcap_valid and res.reference is None


def test_bad_bytes_never_raise(intel: TrustAnchor, real_collateral: Collateral) -> None:
    for raw in (b"", b"\x04\x00", bytes(5006)):
        res = verify_quote(raw, collateral=real_collateral, anchor=intel, now=MID_WINDOW)
        structure = res.check("hardware.quote_structure")
        assert structure.status is CheckStatus.FAIL
        assert "offset" in structure.summary or "vendor" in structure.summary
        assert all(c.status is CheckStatus.SKIP for c in res.checks if c.id != "hardware.quote_structure")


# --- the policy is a parameter ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki() -> SynthPki:
    return build_pki("verify", issued_at=(SYNTH_NOW - YEAR) // DAY * DAY)


def synth(pki: SynthPki, **kw) -> SynthEvidence:
    return make_evidence("verify", now=SYNTH_NOW, pki=pki, **kw)


def run(ev: SynthEvidence, **kw) -> HardwareResult:
    return verify_quote(ev.quote, collateral=Collateral.from_dict(ev.collateral),
                        anchor=TrustAnchor.from_der(ev.root_ca_der), now=ev.now, **kw)


def test_custom_policy_passes_sw_hardening_needed(pki: SynthPki) -> None:
    ev = synth(pki, platform_status="SWHardeningNeeded", platform_advisories=["INTEL-SA-00615"])
    default = run(ev)
    assert default.status == "SWHardeningNeeded" and default.advisory_ids == ["INTEL-SA-00615"]
    assert default.check("hardware.tcb_status").status is CheckStatus.WARN
    lenient = TcbPolicy(pass_statuses=["UpToDate", "SWHardeningNeeded"])
    res = run(ev, policy=lenient)
    tcb = res.check("hardware.tcb_status")
    assert tcb.status is CheckStatus.PASS
    assert tcb.details["policy"]["pass"] == ["UpToDate", "SWHardeningNeeded"]
    # the policy decides what a status means; it does not change the status or the validity
    assert (res.status, res.advisory_ids, res.dcap_valid) == (default.status, default.advisory_ids, True)
    assert res.check("hardware.reference_engine").status is CheckStatus.PASS
    # and a policy object is never shared state: the default is untouched
    assert TcbPolicy().decide("SWHardeningNeeded") is CheckStatus.WARN


def test_strict_policy_fails_what_the_default_warns(pki: SynthPki) -> None:
    ev = synth(pki, platform_status="ConfigurationNeeded")
    strict = TcbPolicy(warn_statuses=[])
    assert run(ev).check("hardware.tcb_status").status is CheckStatus.WARN
    assert run(ev, policy=strict).check("hardware.tcb_status").status is CheckStatus.FAIL


def test_a_minimum_tcb_evaluation_data_number_fails_older_data(pki: SynthPki) -> None:
    ev = synth(pki, tcb_evaluation_data_number=17)
    res = run(ev, policy=TcbPolicy(min_tcb_evaluation_data_number=18))
    tcb = res.check("hardware.tcb_status")
    assert tcb.status is CheckStatus.FAIL
    assert "TCB evaluation data number 17, older than the 18 the policy requires" in tcb.summary
    assert tcb.details["policy"]["min_tcb_evaluation_data_number"] == 18
    # The quote is as valid as before, so dcap-qvl, which has no such policy, still agrees.
    assert res.status == "UpToDate" and res.dcap_valid
    assert res.check("hardware.reference_engine").status is CheckStatus.PASS
    assert run(ev, policy=TcbPolicy(min_tcb_evaluation_data_number=17)).check(
        "hardware.tcb_status").status is CheckStatus.PASS


def test_an_mrseam_allow_list_pins_the_tdx_module(pki: SynthPki) -> None:
    ev = synth(pki)
    default = run(ev)
    mrseam = default.quote.body["mrseam"].hex() if default.quote else ""
    assert default.check("hardware.tcb_status").details["tdx_module"]["mrseam"] == mrseam
    pinned = run(ev, policy=TcbPolicy(allowed_mrseams=["0x" + mrseam.upper(), "ab" * 48]))
    assert pinned.check("hardware.tcb_status").status is CheckStatus.PASS
    other = run(ev, policy=TcbPolicy(allowed_mrseams=["ab" * 48]))
    tcb = other.check("hardware.tcb_status")
    assert tcb.status is CheckStatus.FAIL and other.dcap_valid
    assert f"the TDX module's MRSEAM {mrseam} is not one of the 1 the policy allows" in tcb.summary
    assert other.check("hardware.reference_engine").status is CheckStatus.PASS
    for bad in ([], ["12"], ["zz" * 48]):
        with pytest.raises(ValueError):
            TcbPolicy(allowed_mrseams=bad)


def test_an_advisory_block_list_fails_a_status_that_lists_one(pki: SynthPki) -> None:
    """Intel lists advisories even with an acceptable status; a blocked one fails the TCB status, the quote stays
    DCAP-valid and dcap-qvl agrees on what it sees."""
    ev = synth(pki, platform_status="UpToDate", platform_advisories=["INTEL-SA-00615", "INTEL-SA-00828"])
    default = run(ev)
    assert default.check("hardware.tcb_status").status is CheckStatus.PASS
    blocked = run(ev, policy=TcbPolicy(blocked_advisories=["intel-sa-00828"]))
    tcb = blocked.check("hardware.tcb_status")
    assert tcb.status is CheckStatus.FAIL and blocked.dcap_valid
    assert tcb.summary.endswith("; advisories the policy blocks: INTEL-SA-00828")
    assert blocked.check("hardware.reference_engine").status is CheckStatus.PASS
    other = run(ev, policy=TcbPolicy(blocked_advisories=["INTEL-SA-00001"]))
    assert other.check("hardware.tcb_status").status is CheckStatus.PASS
    assert "INTEL-SA-00001" in TcbPolicy.text(other.check("hardware.tcb_status").details["policy"])
    for bad in ([], ["CVE-2024-1"], ["INTEL-SA-1"]):
        with pytest.raises(ValueError):
            TcbPolicy(blocked_advisories=bad)


def test_policy_description_round_trips() -> None:
    policy = TcbPolicy(warn_statuses=[], max_collateral_age_seconds=7 * DAY, min_tcb_evaluation_data_number=19,
                       allowed_mrseams=["cd" * 48], blocked_advisories=["INTEL-SA-00615"])
    assert TcbPolicy.from_description(policy.describe()) == policy
    assert TcbPolicy.from_description(TcbPolicy().describe()) == TcbPolicy()
    with pytest.raises(ValueError):
        TcbPolicy.from_description({"pass": ["UpToDate"], "max_collateral_age_seconds": 0})


# --- freshness --------------------------------------------------------------------------------------------


def test_collateral_older_than_the_policy_allows_is_a_warning(pki: SynthPki) -> None:
    ev = synth(pki, collateral_issued=SYNTH_NOW - 10 * DAY)  # 20 days left: inside its window, not due
    assert run(ev).check("hardware.collateral_freshness").status is CheckStatus.PASS
    res = run(ev, policy=TcbPolicy(max_collateral_age_seconds=7 * DAY))
    fresh = res.check("hardware.collateral_freshness")
    assert fresh.status is CheckStatus.WARN and res.dcap_valid
    assert fresh.summary.startswith("TCB Info and QE Identity were issued 10 days before the verification instant, "
                                    "more than the 7 days the policy allows")
    assert fresh.details["max_collateral_age_seconds"] == 7 * DAY
    assert run(ev, policy=TcbPolicy(max_collateral_age_seconds=11 * DAY)).check(
        "hardware.collateral_freshness").status is CheckStatus.PASS


def test_freshness_warns_inside_the_window(pki: SynthPki) -> None:
    # Collateral issued a day before `now`, valid 30 days; at 27 days in, 3 days are left of the 7-day window.
    ev = synth(pki, collateral_issued=SYNTH_NOW - 27 * DAY)
    res = run(ev)
    fresh = res.check("hardware.collateral_freshness")
    assert fresh.status is CheckStatus.WARN
    assert "TCB Info is due for update" in fresh.summary and "(72 h left)" in fresh.summary
    assert res.dcap_valid  # a warning is not a failure
    rows = {r["item"]: r for r in fresh.details["items"]}
    assert rows["TCB Info"]["seconds_left"] == 3 * DAY
    assert set(rows) == {"TCB Info", "QE Identity", "root CA CRL", "PCK CRL"}
    # a policy with a shorter window passes
    quiet = run(ev, policy=TcbPolicy(freshness_warning_seconds=DAY))
    assert quiet.check("hardware.collateral_freshness").status is CheckStatus.PASS


def test_freshness_boundaries(pki: SynthPki) -> None:
    ev = synth(pki)
    next_update = SYNTH_NOW - DAY + 30 * DAY
    # TCB Info / QE Identity: now == nextUpdate is accepted (dcap.md §5 step 5b); the CRL bound is exclusive.
    ev.collateral_builder.pck_crl.next_update = next_update + DAY
    ev = ev.rebuild()
    at_bound = run(replace(ev, now=next_update))
    assert at_bound.check("hardware.collateral_freshness").status is CheckStatus.WARN
    assert at_bound.dcap_valid
    after = run(replace(ev, now=next_update + 1))
    assert after.check("hardware.collateral_freshness").status is CheckStatus.FAIL
    assert not after.dcap_valid


# --- CollateralMemo ---------------------------------------------------------------------------------------


def dump(res: HardwareResult) -> list[dict]:
    return [c.model_dump() for c in res.checks]


def test_memo_reuse_gives_identical_results(pki: SynthPki, monkeypatch: pytest.MonkeyPatch) -> None:
    a = synth(pki, report={"report_data": b"\x01" * 64})
    b = synth(pki, report={"report_data": b"\x02" * 64})
    assert a.collateral == b.collateral and a.quote != b.quote
    alone = [run(a), run(b)]

    calls = {"signed": 0, "crls": 0}
    real_signed, real_crls = verify_module.verify_signed_collateral, verify_module.verify_crls

    def counting_signed(*args, **kw):
        calls["signed"] += 1
        return real_signed(*args, **kw)

    def counting_crls(*args, **kw):
        calls["crls"] += 1
        return real_crls(*args, **kw)

    monkeypatch.setattr(verify_module, "verify_signed_collateral", counting_signed)
    monkeypatch.setattr(verify_module, "verify_crls", counting_crls)
    memo = CollateralMemo()
    shared = [run(a, memo=memo), run(b, memo=memo), run(a, memo=memo)]
    assert calls == {"signed": 1, "crls": 1}  # the collateral was checked once for three quotes
    assert dump(shared[0]) == dump(alone[0]) == dump(shared[2])
    assert dump(shared[1]) == dump(alone[1])
    assert [r.status for r in shared] == ["UpToDate"] * 3


def test_memo_reuse_of_a_failure(pki: SynthPki) -> None:
    ev = synth(pki)
    bad = dict(ev.collateral, tcb_info=ev.collateral["tcb_info"].replace(",", ", ", 1))
    ev = replace(ev, collateral=bad)
    memo = CollateralMemo()
    first, second = run(ev, memo=memo), run(ev, memo=memo)
    assert dump(first) == dump(second) == dump(run(ev))
    assert first.check("hardware.collateral_signatures").status is CheckStatus.FAIL


def test_memo_keys_on_the_instant(real_quote: bytes, real_collateral: Collateral, intel: TrustAnchor) -> None:
    memo = CollateralMemo()
    ok = verify_quote(real_quote, collateral=real_collateral, anchor=intel, now=MID_WINDOW, memo=memo)
    late = verify_quote(real_quote, collateral=real_collateral, anchor=intel, now=PCK_CRL_NEXT_UPDATE, memo=memo)
    again = verify_quote(real_quote, collateral=real_collateral, anchor=intel, now=MID_WINDOW, memo=memo)
    assert ok.dcap_valid and not late.dcap_valid and again.dcap_valid
    assert dump(ok) == dump(again)
