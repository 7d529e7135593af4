"""The demo evidence pack: it verifies at its instant against its own (non-Intel) root, and it is reproducible."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dstack_verifier.demo import DEMO_FILES, DEMO_LABEL, load_demo
from dstack_verifier.errors import InputError
from dstack_verifier.model import CheckStatus, Verdict
from dstack_verifier.resources import resource_path
from dstack_verifier.verification import VerifyOptions, load_anchor, verify_evidence

ROOT = Path(__file__).resolve().parents[2]
MAKE_DEMO = ROOT / "packaging" / "make_demo.py"
PACK_FILES = (*DEMO_FILES, "demo.json")


def test_demo_verifies_to_pass_at_its_instant():
    demo = load_demo()
    assert demo.now == 1_780_272_000  # 2026-06-01T00:00:00Z
    report = verify_evidence(demo.items, VerifyOptions(now=demo.now, anchor=demo.anchor, offline=True))
    assert report.verdict is Verdict.PASS
    assert all(c.status is CheckStatus.PASS for c in report.checks)
    assert report.policy["trust_anchor"]["intel"] is False
    assert "intel-root" not in {c.anchor for c in report.checks}


def test_demo_says_it_is_not_intel():
    demo = load_demo()
    assert demo.label == DEMO_LABEL == "demo root — not Intel"
    assert not demo.anchor.is_intel
    assert "Demo SGX Root CA — not Intel" in demo.anchor.cert.subject.rfc4514_string()
    assert "not Intel" in demo.description


def test_demo_does_not_verify_against_the_intel_root():
    demo = load_demo()
    report = verify_evidence(demo.items, VerifyOptions(now=demo.now, anchor=load_anchor(None), offline=True))
    assert report.verdict is not Verdict.PASS
    chain = next(c for c in report.checks if c.id == "hardware.pck_chain")
    assert chain.status is CheckStatus.FAIL


def _make(out: Path) -> None:
    subprocess.run([sys.executable, str(MAKE_DEMO), str(out)], check=True, capture_output=True, timeout=120)


def test_make_demo_is_deterministic_and_matches_the_shipped_pack(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    _make(first)
    _make(second)
    assert sorted(p.name for p in first.iterdir()) == sorted(PACK_FILES)
    for name in PACK_FILES:
        data = (first / name).read_bytes()
        assert data == (second / name).read_bytes(), name
        assert data == resource_path("demo", name).read_bytes(), f"resources/demo/{name} is stale: rerun make_demo.py"


def test_a_tampered_pack_is_refused(tmp_path):
    pack = tmp_path / "demo"
    shutil.copytree(resource_path("demo"), pack)
    load_demo(pack)  # an intact copy loads
    quote = pack / "quote.hex"
    text = quote.read_text()
    quote.write_text(text[:200] + ("0" if text[200] != "0" else "1") + text[201:])
    with pytest.raises(InputError, match=r"sha256 recorded in demo\.json"):
        load_demo(pack)


def test_the_verifier_does_not_import_qt():
    code = (
        "import sys, dstack_verifier.demo, dstack_verifier.verification, dstack_verifier.evidence\n"
        "dstack_verifier.demo.load_demo()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'PyQt5', 'PyQt6'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
