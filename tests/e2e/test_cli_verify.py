"""`dstack-inspector verify` end to end: exit codes, the JSON report, evidence forms, trust anchors, replay, PCCS.

Most cases call ``main(argv)`` in-process (fast, capsys); a few run the real interpreter in a subprocess to prove
that nothing but the one-line message reaches stderr. No test touches the internet: collateral comes from a file,
from a recorded report, or from the loopback PCCS server of tests/support.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from dstack_inspector.cli import main
from dstack_verifier.evidence import load_evidence
from dstack_verifier.model import REPORT_SCHEMA, CheckStatus, Verdict
from dstack_verifier.net import NetClient
from dstack_verifier.quote.collateral import COLLATERAL_KEYS
from dstack_verifier.quote.pccs import CollateralCache
from dstack_verifier.synth import SynthEvidence, make_evidence
from dstack_verifier.verification import VerifyOptions, load_anchor, verify_evidence

from tests.support.checks import HARDWARE_CHECKS, OTHER_CHECKS
from tests.support.fixtures import fixture_path
from tests.support.pccs_server import PCK_CRL_PATH, ROOT_CRL_PATH, PccsServer, qe_identity_path, tcb_path

REAL_AT = 1751624191  # 2025-07-04T10:16:31Z: the real collateral is current, dcap-qvl says UpToDate
SYNTH_NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
NEED_COLLATERAL = [
    "hardware.collateral_signatures",
    "hardware.revocation",
    "hardware.tcb_status",
    "hardware.collateral_freshness",
    "hardware.reference_engine",
]


# -- fixtures and helpers --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test gets its own collateral cache and no PCCS from the environment."""
    monkeypatch.setenv("DSTACK_INSPECTOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PCCS_URL", raising=False)
    monkeypatch.delenv("DSTACK_INSPECTOR_DEBUG", raising=False)


@pytest.fixture
def real_quote() -> Path:
    return fixture_path("dcap-qvl", "tdx_quote")


@pytest.fixture
def real_collateral() -> Path:
    return fixture_path("dcap-qvl", "tdx_quote_collateral.json")


class SynthFiles:
    def __init__(self, ev: SynthEvidence, folder: Path) -> None:
        self.ev = ev
        self.quote = folder / "synth.quote"
        self.root = folder / "synth-root.der"
        self.collateral = folder / "synth-collateral.json"
        self.quote.write_bytes(ev.quote)
        self.root.write_bytes(ev.root_ca_der)
        self.collateral.write_text(json.dumps(ev.collateral))


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> SynthFiles:
    return SynthFiles(make_evidence(seed="cli-e2e", now=SYNTH_NOW), tmp_path_factory.mktemp("synth"))


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """``main`` in-process; returns (exit status, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, dict[str, Any], str]:
    code, out, err = run(capsys, *argv, "--json")
    return code, json.loads(out), err


def checks_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in report["checks"]}


def outline(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """What a reviewer compares between two runs: each check's id, status and summary."""
    return [(c["id"], c["status"], c["summary"]) for c in report["checks"]]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_one_line(err: str) -> None:
    assert err.endswith("\n"), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err


# -- the real quote: the happy path and the report -------------------------------------------------------------


def test_real_quote_passes_with_json_report(capsys, real_quote: Path, real_collateral: Path) -> None:
    code, report, err = run_json(capsys, "verify", real_quote, "--collateral", real_collateral, "--at", REAL_AT)
    assert code == 0
    assert err == ""
    assert report["schema"] == REPORT_SCHEMA == "dstack-inspector/report/v1"
    assert report["verdict"] == "pass"
    assert report["verified_at"] == REAL_AT
    assert report["policy"]["trust_anchor"]["intel"] is True

    inputs = {i["role"]: i for i in report["inputs"]}
    assert set(inputs) == {"quote", "collateral"}
    assert inputs["quote"]["sha256"] == sha256_file(real_quote)
    assert inputs["quote"]["size"] == real_quote.stat().st_size
    assert inputs["quote"]["kind"] == "quote"
    assert inputs["collateral"]["sha256"] == sha256_file(real_collateral)
    assert inputs["collateral"]["kind"] == "collateral"

    checks = checks_of(report)
    assert [c["id"] for c in report["checks"] if c["id"].startswith("hardware.")] == HARDWARE_CHECKS
    # A raw quote carries no event log, compose or keys: those checks are skipped, saying why.
    others = {c["id"]: c for c in report["checks"] if not c["id"].startswith("hardware.")}
    assert set(others) == set(OTHER_CHECKS)
    for check_id, c in others.items():
        if check_id == "source.mr_config_id":  # all zero in this quote: nothing to compare, which is a pass
            assert c["status"] == "pass" and "all zero" in c["summary"]
        else:
            assert c["status"] == "skip" and c["details"]["reason"], c
    for c in report["checks"]:
        if not c["id"].startswith("hardware."):
            continue
        assert c["status"] == "pass", c
        assert c["entity"] == "app" and c["phase"] == "hardware"
        assert c["summary"] and "\n" not in c["summary"]
    assert checks["hardware.pck_chain"]["anchor"] == "intel-root"
    assert checks["hardware.td_attributes"]["anchor"] == "quote"
    assert checks["hardware.reference_engine"]["details"]["reference_status"] == "UpToDate"

    app = report["entities"]["app"]
    quote = app["quote"]
    assert quote["version"] == 4
    assert quote["tee_type"] == "TDX"
    assert quote["attestation_key_type"] == 2
    assert quote["body_kind"] == "td10"
    assert quote["qe_vendor_id"] == "939a7233f79c4ca9940a0db3957f0607"
    for name in ("mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrconfig"):
        assert len(bytes.fromhex(quote[name])) == 48, name
    assert len(bytes.fromhex(quote["reportdata"])) == 64
    assert quote["quote_length"] == real_quote.stat().st_size
    assert quote["signed_length"] == 632
    assert app["tcb"]["status"] == "UpToDate"
    assert app["tcb"]["advisory_ids"] == []
    assert app["pck"]["fmspc"].upper() == "B0C06F000000"
    assert isinstance(report["data_objects"], list) and isinstance(report["relationships"], list)
    assert isinstance(report["timings"], dict)


def test_real_quote_human_output(capsys, real_quote: Path, real_collateral: Path) -> None:
    code, out, err = run(capsys, "verify", real_quote, "--collateral", real_collateral, "--at", REAL_AT)
    assert code == 0
    assert err == ""
    assert out.startswith("verdict: PASS")
    assert "trust anchor: Intel SGX Root CA" in out
    assert "TCB status: UpToDate" in out
    assert all(check_id in out for check_id in HARDWARE_CHECKS)


def test_output_file(capsys, tmp_path: Path, real_quote: Path, real_collateral: Path) -> None:
    target = tmp_path / "out" / "report.json"
    target.parent.mkdir()
    code, out, err = run(
        capsys, "verify", real_quote, "--collateral", real_collateral, "--at", REAL_AT, "--output", target
    )
    assert code == 0
    assert err == ""
    assert out.startswith("verdict: PASS")  # --output alone keeps the human text on stdout
    written = json.loads(target.read_text())
    assert written["schema"] == REPORT_SCHEMA
    assert written["verdict"] == "pass"

    code, both, _ = run(
        capsys, "verify", real_quote, "--collateral", real_collateral, "--at", REAL_AT, "--output", target, "--json"
    )
    assert code == 0
    assert outline(json.loads(both)) == outline(json.loads(target.read_text())) == outline(written)


@pytest.mark.parametrize(
    "at",
    [
        "1751624191",
        "2025-07-04T10:16:31Z",
        "2025-07-04T10:16:31+00:00",
        "2025-07-04T10:16:31",
        "2025-07-04T12:16:31+02:00",
        " 1751624191 ",
    ],
)
def test_at_iso_and_unix(capsys, at: str, real_quote: Path, real_collateral: Path) -> None:
    code, report, _ = run_json(capsys, "verify", real_quote, "--collateral", real_collateral, "--at", at)
    assert code == 0
    assert report["verified_at"] == REAL_AT


def test_later_instant_fails(capsys, real_quote: Path, real_collateral: Path) -> None:
    code, report, err = run_json(
        capsys, "verify", real_quote, "--collateral", real_collateral, "--at", "2030-01-01T00:00:00Z"
    )
    assert code == 1
    assert err == ""
    assert report["verdict"] == "fail"
    checks = checks_of(report)
    assert checks["hardware.revocation"]["status"] == "fail"
    assert "expired" in checks["hardware.revocation"]["summary"]
    assert checks["hardware.collateral_freshness"]["status"] == "fail"
    # The quote itself is still genuine: what rests only on the quote and the PCK chain passes.
    assert checks["hardware.quote_signature"]["status"] == "pass"
    # dcap-qvl says invalid too, so the engines agree.
    assert checks["hardware.reference_engine"]["status"] == "pass"
    assert checks["hardware.reference_engine"]["details"]["reference_valid"] is False


@pytest.mark.parametrize("at", ["yesterday", "²", "99999999999999", "-5", "2025-13-01"])
def test_bad_at_is_usage_error(capsys, at: str, real_quote: Path, real_collateral: Path) -> None:
    code, out, err = run(capsys, "verify", real_quote, "--collateral", real_collateral, "--at", at)
    assert code == 2
    assert out == ""
    assert_one_line(err)
    assert "--at" in err


@pytest.mark.parametrize(("option", "value"), [("--max-collateral-age", "0"), ("--max-collateral-age", "-1"),
                                               ("--max-collateral-age", "nan"), ("--max-collateral-age", "a week"),
                                               ("--min-tcb-eval", "-3"), ("--min-tcb-eval", "1.5"),
                                               ("--mrseam", "12"), ("--mrseam", "g" * 96),
                                               ("--block-advisory", "CVE-2024-0001")])
def test_bad_tcb_policy_values_are_usage_errors(capsys, option: str, value: str, real_quote: Path,
                                               real_collateral: Path) -> None:
    code, out, err = run(capsys, "verify", real_quote, "--collateral", real_collateral, option, value)
    assert code == 2 and out == ""
    assert_one_line(err)
    assert option in err


def test_stricter_tcb_policy_on_the_real_quote(capsys, real_quote: Path, real_collateral: Path) -> None:
    # Its TCB Info and QE Identity were issued 15 days before the instant, with TCB evaluation data number 17.
    code, report, _ = run_json(capsys, "verify", real_quote, "--collateral", real_collateral, "--at", REAL_AT,
                               "--max-collateral-age", "14", "--min-tcb-eval", "18")
    checks = checks_of(report)
    assert checks["hardware.collateral_freshness"]["status"] == "warn"
    assert "were issued 15 days before the verification instant" in checks["hardware.collateral_freshness"]["summary"]
    assert checks["hardware.tcb_status"]["status"] == "fail"
    assert checks["hardware.reference_engine"]["status"] == "pass"  # the quote is as valid as before
    assert report["verdict"] == "fail" and code == 1


def test_a_re_run_decides_under_the_recorded_tcb_policy(capsys, tmp_path: Path, real_quote: Path,
                                                         real_collateral: Path) -> None:
    saved = tmp_path / "r.json"
    code, _, _ = run_json(capsys, "verify", real_quote, "--collateral", real_collateral, "--at", REAL_AT,
                          "--min-tcb-eval", "18", "--output", saved)
    assert code == 1
    code, again, _ = run_json(capsys, "verify", saved, "--offline", "--at", REAL_AT)
    assert code == 1 and again["policy"]["tcb"]["min_tcb_evaluation_data_number"] == 18
    code, lenient, _ = run_json(capsys, "verify", saved, "--offline", "--at", REAL_AT, "--min-tcb-eval", "17")
    assert code == 0 and checks_of(lenient)["hardware.tcb_status"]["status"] == "pass"  # a policy given anew wins
    doc = json.loads(saved.read_text())
    doc["policy"]["tcb"]["allowed_mrseams"] = ["12"]
    saved.write_text(json.dumps(doc))
    code, out, err = run(capsys, "verify", saved, "--offline")
    assert code == 2 and out == "" and "policy.tcb" in err and "malformed TCB policy" in err
    assert_one_line(err)


def test_an_advisory_block_list_is_recorded(capsys, real_quote: Path, real_collateral: Path) -> None:
    """The real quote's level lists no advisory, so blocking one changes nothing but the recorded policy."""
    code, report, _ = run_json(capsys, "verify", real_quote, "--collateral", real_collateral, "--at", REAL_AT,
                               "--block-advisory", "intel-sa-00615", "--block-advisory", "INTEL-SA-00828")
    assert code == 0 and checks_of(report)["hardware.tcb_status"]["status"] == "pass"
    assert report["policy"]["tcb"]["blocked_advisories"] == ["INTEL-SA-00615", "INTEL-SA-00828"]


def test_an_mrseam_pin_on_the_real_quote(capsys, real_quote: Path, real_collateral: Path) -> None:
    base = ["verify", real_quote, "--collateral", real_collateral, "--at", REAL_AT]
    _, report, _ = run_json(capsys, *base)
    mrseam = checks_of(report)["hardware.tcb_status"]["details"]["tdx_module"]["mrseam"]
    code, pinned, _ = run_json(capsys, *base, "--mrseam", "ab" * 48, "--mrseam", mrseam)
    assert code == 0 and pinned["policy"]["tcb"]["allowed_mrseams"] == ["ab" * 48, mrseam]
    code, other, _ = run_json(capsys, *base, "--mrseam", "ab" * 48)
    assert code == 1 and checks_of(other)["hardware.tcb_status"]["status"] == "fail"


def test_offline_without_collateral_is_incomplete(capsys, real_quote: Path) -> None:
    code, report, err = run_json(capsys, "verify", real_quote, "--offline", "--at", REAL_AT)
    assert code == 3
    assert err == ""
    assert report["verdict"] == "incomplete"
    checks = checks_of(report)
    for check_id in NEED_COLLATERAL:
        assert checks[check_id]["status"] == "skip", check_id
        assert "offline" in checks[check_id]["summary"]
    # What needs no collateral still ran.
    for check_id in (
        "hardware.quote_structure",
        "hardware.pck_chain",
        "hardware.qe_report",
        "hardware.quote_signature",
    ):
        assert checks[check_id]["status"] == "pass", check_id
    assert [i["role"] for i in report["inputs"]] == ["quote"]
    assert report["entities"]["app"]["tcb"]["status"] is None


# -- other evidence forms give the same result -----------------------------------------------------------------


def test_hex_and_getquote_forms_match_binary(capsys, tmp_path: Path, real_quote: Path, real_collateral: Path) -> None:
    raw = real_quote.read_bytes()
    digits = raw.hex()
    hex_file = tmp_path / "quote.hex"
    lines = [digits[i : i + 64] for i in range(0, len(digits), 64)]
    hex_file.write_text("  0x" + "\n".join(lines) + "\r\n\n")
    upper_file = tmp_path / "quote-upper.txt"
    upper_file.write_text(digits.upper())
    getquote = tmp_path / "getquote.json"
    getquote.write_text(json.dumps({"quote": digits}))
    getquote_0x = tmp_path / "getquote-0x.json"
    getquote_0x.write_text(json.dumps({"quote": "0x" + digits, "event_log": "", "vm_config": "{}"}, indent=2))

    base = ["--collateral", real_collateral, "--at", REAL_AT]
    code, reference, _ = run_json(capsys, "verify", real_quote, *base)
    assert code == 0
    for path, kind in ((hex_file, "quote"), (upper_file, "quote"), (getquote, "getquote"), (getquote_0x, "getquote")):
        code, report, err = run_json(capsys, "verify", path, *base)
        assert code == 0, path
        assert err == ""
        assert outline(report) == outline(reference), path
        assert report["entities"]["app"]["quote"] == reference["entities"]["app"]["quote"]
        quote_input = report["inputs"][0]
        assert quote_input["kind"] == kind
        assert quote_input["sha256"] == sha256_file(path)  # the file as given, not the decoded quote


def test_collateral_may_be_given_as_evidence(capsys, real_quote: Path, real_collateral: Path) -> None:
    """The kind comes from the content: collateral among the EVIDENCE files works like --collateral."""
    code, report, _ = run_json(capsys, "verify", real_collateral, real_quote, "--at", REAL_AT)
    assert code == 0
    assert {i["role"] for i in report["inputs"]} == {"quote", "collateral"}


def test_collateral_option_must_be_collateral(capsys, real_quote: Path) -> None:
    code, _, err = run(capsys, "verify", real_quote, "--collateral", real_quote, "--at", REAL_AT)
    assert code == 2
    assert_one_line(err)
    assert "is not DCAP collateral" in err


def test_two_quotes_are_bad_input(capsys, real_quote: Path, real_collateral: Path) -> None:
    code, _, err = run(capsys, "verify", real_quote, real_quote, "--collateral", real_collateral, "--at", REAL_AT)
    assert code == 2
    assert_one_line(err)
    assert "several quotes" in err


def test_collateral_alone_is_bad_input(capsys, real_collateral: Path) -> None:
    code, _, err = run(capsys, "verify", real_collateral, "--offline")
    assert code == 2
    assert_one_line(err)
    assert "no quote" in err


# -- trust anchors ---------------------------------------------------------------------------------------------


def test_synthetic_evidence_with_its_root_ca(capsys, synth: SynthFiles) -> None:
    code, report, err = run_json(
        capsys, "verify", synth.quote, "--collateral", synth.collateral, "--root-ca", synth.root, "--at", SYNTH_NOW
    )
    assert code == 0
    assert err == ""
    assert report["verdict"] == "pass"
    anchor = report["policy"]["trust_anchor"]
    assert anchor["intel"] is False
    assert anchor["sha256"] == hashlib.sha256(synth.ev.root_ca_der).hexdigest()
    assert "not Intel" in anchor["subject"]
    checks = checks_of(report)
    assert checks["hardware.pck_chain"]["anchor"] == "caller-supplied"
    assert checks["hardware.pck_chain"]["details"]["trust_anchor_is_intel"] is False
    assert all(c["status"] == "pass" for c in report["checks"] if c["phase"] == "hardware" and c["id"] in checks
               and not c["id"].startswith(("eventlog.", "binding.")))

    code, out, _ = run(
        capsys, "verify", synth.quote, "--collateral", synth.collateral, "--root-ca", synth.root, "--at", SYNTH_NOW
    )
    assert code == 0
    assert "trust anchor: caller-supplied root" in out.splitlines()[0]
    assert "Intel SGX Root CA" not in out.splitlines()[0]


def test_root_ca_as_pem(capsys, tmp_path: Path, synth: SynthFiles) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = tmp_path / "root.pem"
    pem.write_bytes(x509.load_der_x509_certificate(synth.ev.root_ca_der).public_bytes(Encoding.PEM))
    code, report, _ = run_json(
        capsys, "verify", synth.quote, "--collateral", synth.collateral, "--root-ca", pem, "--at", SYNTH_NOW
    )
    assert code == 0
    assert report["policy"]["trust_anchor"]["sha256"] == hashlib.sha256(synth.ev.root_ca_der).hexdigest()


def test_root_ca_not_a_certificate(capsys, tmp_path: Path, synth: SynthFiles) -> None:
    junk = tmp_path / "root.der"
    junk.write_bytes(b"\x30\x03\x02\x01\x00 not a certificate")
    code, out, err = run(capsys, "verify", synth.quote, "--collateral", synth.collateral, "--root-ca", junk)
    assert code == 2
    assert out == ""
    assert_one_line(err)
    assert str(junk) in err and "certificate" in err


def test_synthetic_quote_without_its_root_does_not_reach_intel(capsys, synth: SynthFiles) -> None:
    code, report, err = run_json(capsys, "verify", synth.quote, "--collateral", synth.collateral, "--at", SYNTH_NOW)
    assert code == 1
    assert err == ""
    assert report["verdict"] == "fail"
    assert report["policy"]["trust_anchor"]["intel"] is True
    checks = checks_of(report)
    assert checks["hardware.pck_chain"]["status"] == "fail"
    assert "trust anchor" in checks["hardware.pck_chain"]["summary"]
    assert checks["hardware.collateral_signatures"]["status"] == "fail"
    # Nothing that rests on the chain is reported as passing.
    for check_id in ("hardware.revocation", "hardware.qe_report", "hardware.quote_signature", "hardware.tcb_status"):
        assert checks[check_id]["status"] == "skip", check_id
        assert "hardware.pck_chain failed" in checks[check_id]["summary"]


# -- phases and usage ------------------------------------------------------------------------------------------


def test_os_phase_named_without_a_vm_config_is_incomplete(capsys, real_quote: Path, real_collateral: Path) -> None:
    """A raw quote names no OS image: the OS phase the user asked for cannot be verified."""
    code, report, _ = run_json(
        capsys, "verify", real_quote, "--collateral", real_collateral, "--at", REAL_AT, "--phases", "hardware,os"
    )
    assert code == 3 and report["verdict"] == "incomplete"
    for c in report["checks"]:
        if c["phase"] == "os":
            assert c["status"] == "skip" and "no VM config" in c["details"]["reason"], c
        elif c["id"].startswith("hardware."):
            assert c["status"] == "pass", c


@pytest.mark.parametrize("phases", ["hardware", " hardware ,"])
def test_phases_hardware(capsys, phases: str, real_quote: Path, real_collateral: Path) -> None:
    code, report, _ = run_json(
        capsys, "verify", real_quote, "--collateral", real_collateral, "--at", REAL_AT, "--phases", phases
    )
    assert code == 0
    assert "hardware" in report["policy"]["phases"]
    assert all(c["status"] == "pass" for c in report["checks"] if c["id"].startswith("hardware."))
    # The checks of phases not chosen say so; those with no evidence say what is missing.
    for c in report["checks"]:
        if c["phase"] != "hardware":
            assert c["status"] == "skip" and c["summary"] == f"skipped: phase {c['phase']} not selected", c


@pytest.mark.parametrize("phases", ["os", "source,domain"])
def test_phases_that_run_nothing_are_not_a_pass(capsys, phases: str, real_quote: Path, real_collateral: Path) -> None:
    """No check of the chosen phases ran (the evidence has nothing for them): nothing was verified."""
    code, report, _ = run_json(
        capsys, "verify", real_quote, "--collateral", real_collateral, "--at", REAL_AT, "--phases", phases
    )
    assert code == 3
    assert report["verdict"] == "incomplete"
    for c in report["checks"]:
        if c["id"] == "source.mr_config_id" and "source" in phases:  # all zero here: nothing to compare
            continue
        assert c["status"] == "skip"
        if c["id"].startswith("eventlog."):  # they run whenever there is a log, whatever the phases: here there is none
            assert c["details"]["reason"].startswith("no event log given")
        elif c["phase"] not in phases:
            assert c["summary"] == f"skipped: phase {c['phase']} not selected", c


def test_empty_event_log_fails_replay(capsys, tmp_path: Path, real_quote: Path, real_collateral: Path) -> None:
    getquote = tmp_path / "getquote.json"
    getquote.write_text(json.dumps({"quote": real_quote.read_bytes().hex(), "event_log": "[]"}))
    code, report, _ = run_json(capsys, "verify", getquote, "--collateral", real_collateral, "--at", REAL_AT)
    assert code == 1
    replay = checks_of(report)["eventlog.replay"]
    assert replay["status"] == "fail" and "RTMR0" in replay["summary"]


@pytest.mark.parametrize("phases", ["hardware,bogus", "gpu", ",", ""])
def test_bad_phases_is_usage_error(capsys, phases: str, real_quote: Path, real_collateral: Path) -> None:
    code, out, err = run(
        capsys, "verify", real_quote, "--collateral", real_collateral, "--at", REAL_AT, "--phases", phases
    )
    if phases == "":
        # An empty value means the default (all phases), as when the option is absent.
        assert code == 0
        return
    assert code == 2
    assert out == ""
    assert_one_line(err)
    assert "--phases" in err
    if "bogus" in phases:
        assert "bogus" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "QUOTE", "--bogus"],
        ["verify", "QUOTE", "--at"],
        ["verify"],
        ["frobnicate"],
        ["verify", "QUOTE", "--bogus=a\nb"],
        ["verify", "QUOTE", "--kms-contract", "xyz"],
        ["verify", "QUOTE", "--kms-contract", "0x" + "44" * 20, "--app-contract", "0x44"],
    ],
    ids=["unknown-option", "missing-value", "no-evidence", "unknown-command", "newline-in-option", "kms-contract",
         "app-contract"],
)
def test_usage_errors(capsys, argv: list[str], real_quote: Path) -> None:
    code, out, err = run(capsys, *[str(real_quote) if a == "QUOTE" else a for a in argv])
    assert code == 2
    assert out == ""
    assert_one_line(err)
    assert err.startswith("dstack-inspector: usage error:")
    if len(argv) > 3 and "contract" in argv[-2]:
        assert argv[-2] in err and "not a 20-byte address" in err


def test_a_closed_pipe_keeps_the_verdicts_exit_status(tmp_path: Path, real_quote: Path, real_collateral: Path) -> None:
    """`verify … | head -1`: the reader leaves early, and the exit status is still the verdict's (0 here)."""
    script = "import sys; from dstack_inspector.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = ["verify", str(real_quote), "--collateral", str(real_collateral), "--at", str(REAL_AT)]
    proc = subprocess.Popen([sys.executable, "-c", script, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "DSTACK_INSPECTOR_DATA_DIR": str(tmp_path)})
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before anything is read: every write of the report meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in err and "internal error" not in err, err


def test_a_report_of_another_root_says_which(capsys, tmp_path: Path) -> None:
    """Re-running a report made under a caller-supplied root, without that root, fails its chains: the output says
    which root the report recorded (it is never taken from the report unasked)."""
    ev = make_evidence("other-root", now=1_750_000_000)
    quote, collateral, root = tmp_path / "q.hex", tmp_path / "col.json", tmp_path / "root.der"
    quote.write_text(ev.quote.hex())
    collateral.write_text(json.dumps(ev.collateral))
    root.write_bytes(ev.root_ca_der)
    saved = tmp_path / "r.json"
    assert main(["verify", str(quote), "--collateral", str(collateral), "--root-ca", str(root), "--at",
                 str(ev.now), "--output", str(saved)]) == 0
    capsys.readouterr()
    code, _, err = run(capsys, "verify", saved, "--offline", "--at", ev.now)
    assert code == 1
    assert f"note: {saved} was verified under the root CA" in err and "give --root-ca FILE" in err
    assert hashlib.sha256(ev.root_ca_der).hexdigest()[:16] in err
    code, _, err = run(capsys, "verify", saved, "--offline", "--at", ev.now, "--root-ca", root)
    assert code == 0 and "note:" not in err
    # A report whose policy is malformed: the note looks for nothing there, and never crashes the run.
    for policy in ([], "x", {"trust_anchor": []}, {"trust_anchor": {"sha256": "\x1b[2J" + "0" * 60}}):
        doc = json.loads(saved.read_text())
        doc["policy"] = policy
        odd = tmp_path / "odd.json"
        odd.write_text(json.dumps(doc))
        code, _, err = run(capsys, "verify", odd, "--offline", "--at", ev.now)
        assert "internal error" not in err and "Traceback" not in err and "note:" not in err, (policy, err)


def test_newline_in_a_file_name_stays_one_line(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, "verify", tmp_path / "two\nlines.quote")
    assert code == 2
    assert_one_line(err)
    assert "two\\nlines.quote" in err and "no such file" in err


# -- a report is evidence too: replay ---------------------------------------------------------------------------


def test_report_replay_gives_the_same_checks(capsys, tmp_path: Path, real_quote: Path, real_collateral: Path) -> None:
    saved = tmp_path / "r.json"
    code, first, _ = run_json(
        capsys, "verify", real_quote, "--collateral", real_collateral, "--at", REAL_AT, "--output", saved
    )
    assert code == 0
    code, replayed, err = run_json(capsys, "verify", saved, "--offline", "--at", REAL_AT)
    assert code == 0
    assert err == ""
    assert outline(replayed) == outline(first)
    assert [(i["role"], i["sha256"]) for i in replayed["inputs"]] == [(i["role"], i["sha256"]) for i in first["inputs"]]
    assert replayed["entities"]["app"]["quote"] == first["entities"]["app"]["quote"]
    # The recorded inputs are the original bytes.
    recorded = {i["role"]: base64.b64decode(i["content_b64"]) for i in replayed["inputs"]}
    assert recorded["quote"] == real_quote.read_bytes()
    assert recorded["collateral"] == real_collateral.read_bytes()

    # A replay at another instant re-verifies rather than copying the old verdict.
    code, later, _ = run_json(capsys, "verify", saved, "--offline", "--at", "2030-01-01")
    assert code == 1
    assert later["verdict"] == "fail"


def test_report_of_a_report_replays(capsys, tmp_path: Path, real_quote: Path, real_collateral: Path) -> None:
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    assert (
        run(capsys, "verify", real_quote, "--collateral", real_collateral, "--at", REAL_AT, "--output", first)[0] == 0
    )
    assert run(capsys, "verify", first, "--offline", "--at", REAL_AT, "--output", second)[0] == 0
    code, third, _ = run_json(capsys, "verify", second, "--offline", "--at", REAL_AT)
    assert code == 0
    assert outline(third) == outline(json.loads(first.read_text()))


# -- online: collateral from a PCCS ------------------------------------------------------------------------------


def _online_argv(synth: SynthFiles, server: PccsServer, *extra: object) -> list[object]:
    return ["verify", synth.quote, "--root-ca", synth.root, "--pccs-url", server.url, "--at", SYNTH_NOW, *extra]


def test_online_fetch_then_cache(capsys, tmp_path: Path, synth: SynthFiles) -> None:
    cache_dir = tmp_path / "cache"
    with PccsServer(synth.ev.collateral) as server:
        code, report, err = run_json(capsys, *_online_argv(synth, server))
        assert code == 0, report["checks"]
        assert err == ""
        assert report["verdict"] == "pass"
        assert server.total_requests == 4
        assert server.counts[PCK_CRL_PATH] == 1
        assert server.counts[tcb_path("tdx")] == 1
        assert server.counts[qe_identity_path("tdx")] == 1
        assert server.counts[ROOT_CRL_PATH] == 1

        fetched = [i for i in report["inputs"] if i["role"] == "collateral"]
        assert len(fetched) == 1
        assert server.url in fetched[0]["name"]
        data = base64.b64decode(fetched[0]["content_b64"])
        assert fetched[0]["sha256"] == hashlib.sha256(data).hexdigest()
        collateral = json.loads(data)
        assert tuple(collateral) == COLLATERAL_KEYS
        for key in COLLATERAL_KEYS:  # exactly what the PCCS served, the signed JSON texts byte for byte
            assert collateral[key].lower() == synth.ev.collateral[key].lower(), key

        assert (cache_dir / "collateral").is_dir()
        assert sorted(p.name for p in (cache_dir / "collateral").iterdir())

        # The second run is served from the cache: not one request more.
        code, again, _ = run_json(capsys, *_online_argv(synth, server))
        assert code == 0
        assert server.total_requests == 4
        assert outline(again) == outline(report)

        # --no-cache goes to the server again.
        code, _, _ = run_json(capsys, *_online_argv(synth, server, "--no-cache"))
        assert code == 0
        assert server.total_requests == 8

    # The report of the online run replays offline, without the server.
    saved = tmp_path / "online.json"
    saved.write_text(json.dumps(report))
    code, replayed, _ = run_json(capsys, "verify", saved, "--root-ca", synth.root, "--offline", "--at", SYNTH_NOW)
    assert code == 0
    assert outline(replayed) == outline(report)


def test_offline_flag_never_asks_the_server(capsys, synth: SynthFiles) -> None:
    with PccsServer(synth.ev.collateral) as server:
        code, report, _ = run_json(capsys, *_online_argv(synth, server, "--offline"))
        assert server.total_requests == 0
    assert code == 3
    assert checks_of(report)["hardware.tcb_status"]["status"] == "skip"


@pytest.mark.parametrize(
    ("path", "mode", "item"),
    [
        (PCK_CRL_PATH, "404", "PCK CRL"),
        (tcb_path("tdx"), "500", "TCB Info"),
        (qe_identity_path("tdx"), "malformed", "QE Identity"),
        (tcb_path("tdx"), "missing-header", "TCB Info"),
        (qe_identity_path("tdx"), "bad-hex", "QE Identity"),
    ],
)
def test_online_server_failure_is_incomplete(capsys, synth: SynthFiles, path: str, mode: str, item: str) -> None:
    with PccsServer(synth.ev.collateral) as server:
        server.fail(path, mode)  # type: ignore[arg-type]
        code, report, err = run_json(capsys, *_online_argv(synth, server))
        assert server.counts[path] >= 1
    assert code == 3
    assert err == ""
    assert report["verdict"] == "incomplete"
    checks = checks_of(report)
    errors = [c for c in report["checks"] if c["status"] == "error"]
    assert errors, report["checks"]
    for c in errors:
        assert "\n" not in c["summary"]
        assert c["summary"].startswith("collateral could not be fetched"), c["summary"]
        assert item in c["summary"]
        assert path in c["summary"]
    assert checks["hardware.collateral_signatures"]["status"] == "error"
    assert checks["hardware.tcb_status"]["status"] in ("skip", "error")
    # Nothing was fetched, so no collateral is recorded as an input.
    assert [i["role"] for i in report["inputs"]] == ["quote"]

    # The same in the human output: the reason is on one line, naming the item.
    with PccsServer(synth.ev.collateral) as server:
        server.fail(path, mode)  # type: ignore[arg-type]
        code, out, err = run(capsys, *_online_argv(synth, server, "--no-cache"))
    assert code == 3
    assert out.startswith("verdict: INCOMPLETE")
    assert any(line.split()[0] == "ERR" and item in line for line in out.splitlines()[1:])


def test_online_failure_then_success_is_not_cached_wrongly(capsys, synth: SynthFiles) -> None:
    with PccsServer(synth.ev.collateral) as server:
        server.fail(tcb_path("tdx"), "500", times=1)
        assert run_json(capsys, *_online_argv(synth, server))[0] == 3
        code, report, _ = run_json(capsys, *_online_argv(synth, server))
    assert code == 0
    assert report["verdict"] == "pass"


def _verify_with_client(synth: SynthFiles, url: str, client: NetClient, cache_dir: Path):  # type: ignore[no-untyped-def]
    options = VerifyOptions(now=SYNTH_NOW, anchor=load_anchor(synth.root), pccs_url=url)
    try:
        return verify_evidence([load_evidence(synth.quote)], options, client=client, cache=CollateralCache(cache_dir))
    finally:
        client.close()


def test_online_timeout_is_incomplete(tmp_path: Path, synth: SynthFiles) -> None:
    with PccsServer(synth.ev.collateral, hang_seconds=10) as server:
        server.fail(qe_identity_path("tdx"), "hang")
        started = time.monotonic()
        report = _verify_with_client(synth, server.url, NetClient(timeout=0.5, retries=0), tmp_path / "c")
        elapsed = time.monotonic() - started
    assert elapsed < 5, elapsed
    assert report.verdict is Verdict.INCOMPLETE
    errors = [c for c in report.checks if c.status is CheckStatus.ERROR]
    assert errors
    for c in errors:
        assert "\n" not in c.summary
        assert "QE Identity" in c.summary
        assert "timed out" in c.summary


def test_online_nothing_listening_is_incomplete(tmp_path: Path, synth: SynthFiles) -> None:
    with PccsServer(synth.ev.collateral) as server:
        url = server.url  # a port that was just closed
    report = _verify_with_client(synth, url, NetClient(timeout=0.5, retries=0), tmp_path / "c")
    assert report.verdict is Verdict.INCOMPLETE
    errors = [c for c in report.checks if c.status is CheckStatus.ERROR]
    assert errors
    assert all("PCK CRL" in c.summary and "connection failed" in c.summary for c in errors)


# -- the real executable: nothing but one line on stderr --------------------------------------------------------


def _subprocess(tmp_path: Path, *argv: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DSTACK_INSPECTOR_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("DSTACK_INSPECTOR_DEBUG", None)
    env.pop("PCCS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "dstack_inspector.cli", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
        check=False,
    )


def test_subprocess_pass_json(tmp_path: Path, real_quote: Path, real_collateral: Path) -> None:
    proc = _subprocess(tmp_path, "verify", real_quote, "--collateral", real_collateral, "--at", REAL_AT, "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    report = json.loads(proc.stdout)
    assert report["schema"] == REPORT_SCHEMA
    assert report["verdict"] == "pass"


def test_subprocess_fail_and_incomplete(tmp_path: Path, real_quote: Path, real_collateral: Path) -> None:
    proc = _subprocess(tmp_path, "verify", real_quote, "--collateral", real_collateral, "--at", "2030-01-01")
    assert proc.returncode == 1
    assert proc.stderr == ""
    proc = _subprocess(tmp_path, "verify", real_quote, "--offline")
    assert proc.returncode == 3
    assert proc.stderr == ""


def test_subprocess_bad_input_and_usage(tmp_path: Path, real_quote: Path) -> None:
    cut = tmp_path / "cut.quote"
    cut.write_bytes(real_quote.read_bytes()[:700])
    proc = _subprocess(tmp_path, "verify", cut, "--offline")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert_one_line(proc.stderr)
    assert "field auth_data_size, offset 632" in proc.stderr

    proc = _subprocess(tmp_path, "verify", real_quote, "--no-such-option")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert_one_line(proc.stderr)

    proc = _subprocess(tmp_path, "verify", tmp_path / "absent.quote")
    assert proc.returncode == 2
    assert_one_line(proc.stderr)
    assert "no such file" in proc.stderr


def test_subprocess_version_and_help(tmp_path: Path) -> None:
    proc = _subprocess(tmp_path, "--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("dstack-inspector ")
    proc = _subprocess(tmp_path, "verify", "--help")
    assert proc.returncode == 0
    assert "--collateral" in proc.stdout and "--root-ca" in proc.stdout
    assert proc.stderr == ""


def test_a_deployment_prints_each_entitys_tcb(capsys) -> None:
    from dstack_verifier.resources import resource_path

    demo = resource_path("demo")
    code, out, err = run(capsys, "verify", demo / "cloud-attestations.json", "--collateral", demo / "collateral.json",
                         "--root-ca", demo / "demo_root_ca.der", "--at", "2026-06-01T00:00:00Z", "--offline")
    assert err == "" and code == 0
    assert out.splitlines()[-3:] == [f"TCB status ({entity}): UpToDate   advisories: none"
                                     for entity in ("app", "kms", "gateway")]
