"""`dstack-inspector report export|verify|key` end to end: exit codes, one-line errors, the key file, the PDF.

In-process calls of ``main`` leave the PDF out (creating a QGuiApplication here would clash with the GUI tests'
QApplication); the PDF is made by the real interpreter in a subprocess, which also proves two exports identical.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dstack_inspector.cli import main
from dstack_verifier.demo import DEMO_ANCHOR, DEMO_APP_EVIDENCE, DEMO_EVIDENCE, DEMO_WEB_ROOT, load_demo
from dstack_verifier.report.keys import fingerprint
from dstack_verifier.report.pack import read_pack, write_pack
from dstack_verifier.resources import resource_path


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DSTACK_INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DSTACK_INSPECTOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DSTACK_INSPECTOR_DEBUG", raising=False)


def verified(tmp_path: Path, capsys: pytest.CaptureFixture[str], files: tuple[str, ...], *extra: str) -> Path:
    out = tmp_path / "report.json"
    demo = [str(resource_path("demo", name)) for name in files]
    code = main(["verify", *demo, "--root-ca", str(resource_path("demo", DEMO_ANCHOR)), "--offline",
                 "--at", str(load_demo().now), "--output", str(out), *extra])
    assert code == 0
    capsys.readouterr()
    return out


@pytest.fixture
def report_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """The demo app on its own: four evidence files the tampering tests name."""
    return verified(tmp_path, capsys, DEMO_APP_EVIDENCE)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def export(capsys: pytest.CaptureFixture[str], report: Path, out: Path, *extra: str) -> Path:
    code, stdout, err = run(capsys, "report", "export", str(report), "--out", str(out), "--no-pdf", *extra)
    assert code == 0, err
    assert f"wrote {out}" in stdout and "verdict PASS" in stdout
    return out


def test_export_then_verify_passes(tmp_path: Path, report_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pack = export(capsys, report_file, tmp_path / "demo.zip")
    key_path = tmp_path / "data" / "signing-key.pem"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600  # generated on first use, private to the user
    code, out, err = run(capsys, "report", "verify", str(pack))
    assert code == 0 and err == ""
    assert out.startswith(f"pack: VERIFIED   {pack}")
    assert "not a trusted one" in out and "verdict PASS, re-run verdict PASS; 4 evidence files" in out


def test_a_trusted_signer_by_fingerprint(tmp_path: Path, report_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pack = export(capsys, report_file, tmp_path / "demo.zip")
    code, out, _ = run(capsys, "report", "key")
    shown = next(line for line in out.splitlines() if "fingerprint" in line).split(":", 1)[1].strip()
    code, out, err = run(capsys, "report", "verify", str(pack), "--trusted-signer", shown)
    assert code == 0 and err == "" and "one of the signers you trust" in out
    code, out, err = run(capsys, "report", "verify", str(pack), "--trusted-signer", "ab" * 32)
    # Intact, but signed by none of the signers named to be checked: that is not what was asked for.
    assert code == 1 and "not a trusted one" in out
    assert f"signed by {shown}, none of the --trusted-signer fingerprints given" in err
    code, out, _ = run(capsys, "report", "verify", str(pack), "--trusted-signer", "ab" * 32, "--trusted-signer",
                       shown)
    assert code == 0 and "one of the signers you trust" in out
    code, _, err = run(capsys, "report", "verify", str(pack), "--trusted-signer", "bbf1 b234")
    assert code == 2 and "is not a key id" in err


def test_a_pack_is_evidence_for_verify(tmp_path: Path, report_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`verify PACK.zip` verifies again the evidence the pack's report recorded, as `verify REPORT.json` does (its
    signature is `report verify`'s business); a zip that is no pack is bad input."""
    pack = export(capsys, report_file, tmp_path / "demo.zip")
    anchor = ["--root-ca", str(resource_path("demo", DEMO_ANCHOR)), "--at", str(load_demo().now), "--offline"]
    code, out, err = run(capsys, "verify", str(pack), *anchor, "--json")
    assert code == 0 and err == ""
    again = json.loads(out)
    signed = json.loads(report_file.read_text())
    assert [(c["id"], c["status"]) for c in again["checks"]] == [(c["id"], c["status"]) for c in signed["checks"]]
    other = tmp_path / "other.zip"
    write_pack({"notes.txt": b"hello"}, other)
    code, out, err = run(capsys, "verify", str(other), "--offline")
    assert code == 2 and "without report.json: not an evidence pack" in err


def test_three_entity_demo_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The whole demo deployment: the re-run finds the gateway's TLS roots in the signed report's policy."""
    report = verified(tmp_path, capsys, DEMO_EVIDENCE, "--tls-roots", str(resource_path("demo", DEMO_WEB_ROOT)))
    pack = export(capsys, report, tmp_path / "deployment.zip")
    code, out, err = run(capsys, "report", "verify", str(pack))
    assert code == 0 and err == "", out
    assert "verdict PASS, re-run verdict PASS; 5 evidence files" in out  # answer, acme-info, /prpc/Info, GetMeta,
    # collateral


def test_key_command_shows_and_exports_the_key_that_signs(tmp_path: Path, report_file: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    public = tmp_path / "me.pub.pem"
    code, out, _ = run(capsys, "report", "key", "--export-public", str(public))
    assert code == 0 and "fingerprint: " in out and public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    pack = export(capsys, report_file, tmp_path / "demo.zip")
    code, out, _ = run(capsys, "report", "verify", str(pack), "--trusted-key", str(public))
    assert code == 0 and "signature checked with the trusted key" in out
    code, out, _ = run(capsys, "report", "verify", str(pack), "--json")
    assert code == 0 and json.loads(out)["key_source"] == "embedded"


def test_export_with_a_given_key(tmp_path: Path, report_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed = tmp_path / "seed.key"
    seed.write_bytes(b"\x05" * 32)
    pack = export(capsys, report_file, tmp_path / "demo.zip", "--key", str(seed))
    expected = fingerprint(Ed25519PrivateKey.from_private_bytes(b"\x05" * 32).public_key())
    assert expected in capsys.readouterr().out or expected in read_pack(pack)["report.html"].decode()
    assert not (tmp_path / "data" / "signing-key.pem").exists()  # the default key is not created for nothing
    other = tmp_path / "other.pem"
    other.write_bytes(b"\x06" * 32)
    code, _, err = run(capsys, "report", "verify", str(pack), "--trusted-key", str(other))
    assert code == 1
    assert err.startswith("dstack-inspector: pack verification failed: no signature of the envelope verifies")
    assert err.count("\n") == 1


@pytest.mark.parametrize(("member", "data", "words"), [
    ("evidence/01-getquote.json", b"{}", "evidence/01-getquote.json: changed since signing"),
    ("evidence/02-app-compose.json", None, "evidence/02-app-compose.json: signed, but missing from the pack"),
    ("evidence/09-extra.pem", b"x", "evidence/09-extra.pem: not covered by the signature"),
    ("report.json", b"{}", "report.json: changed since signing"),
    ("statement.dsse.json", b'{"payloadType": "x", "payload": "e30=", "signatures": [{"sig": "AAAA"}]}',
     "no signature of the envelope verifies"),
])
def test_tampered_pack_exits_1_with_one_line(tmp_path: Path, report_file: Path, capsys: pytest.CaptureFixture[str],
                                             member: str, data: bytes | None, words: str) -> None:
    pack = export(capsys, report_file, tmp_path / "demo.zip")
    members = read_pack(pack)
    if data is None:
        del members[member]
    else:
        members[member] = data
    write_pack(members, pack)
    code, out, err = run(capsys, "report", "verify", str(pack))
    assert code == 1
    assert out.startswith("pack: FAILED") and words in out
    assert err.startswith("dstack-inspector: pack verification failed: ") and words in err
    assert err.count("\n") == 1


def test_unusable_packs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_zip = tmp_path / "x.zip"
    not_zip.write_text("hello")
    slip = tmp_path / "slip.zip"
    with zipfile.ZipFile(slip, "w") as zf:
        zf.writestr("../../outside.txt", b"x")
    for path, words in ((not_zip, "not a zip archive"), (slip, "unsafe member name '../../outside.txt'"),
                        (tmp_path / "absent.zip", "no such file")):
        code, _, err = run(capsys, "report", "verify", str(path))
        assert code == 2 and err.startswith(f"dstack-inspector: bad input: {path}: ") and words in err
        assert err.count("\n") == 1
    assert not (tmp_path.parent / "outside.txt").exists()


def test_export_refusals_exit_2(tmp_path: Path, report_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(report_file.read_text())
    doc["inputs"][2]["content_b64"] = None
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps(doc))
    code, _, err = run(capsys, "report", "export", str(partial), "--out", str(tmp_path / "p.zip"), "--no-pdf")
    assert code == 2 and f"{partial}, field inputs[2]: input " in err and "app-cert.pem' was not recorded" in err
    code, _, err = run(capsys, "report", "export", str(resource_path("demo", "app-compose.json")), "--out",
                       str(tmp_path / "p.zip"))
    assert code == 2 and "is not a dstack-inspector report" in err
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a report")
    code, _, err = run(capsys, "report", "export", str(text), "--out", str(tmp_path / "p.zip"))
    assert code == 2 and f"{text}" in err and "not a dstack-inspector report (not hex" in err
    code, _, err = run(capsys, "report", "export", str(report_file), "--out", str(tmp_path / "p.zip"), "--key",
                       str(tmp_path / "nokey.pem"), "--no-pdf")
    assert code == 2 and "nokey.pem: no such file" in err
    code, _, err = run(capsys, "report")
    assert code == 2 and "usage error" in err
    assert not (tmp_path / "p.zip").exists()


def test_export_of_a_task_from_the_history(tmp_path: Path, report_file: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    store_module = pytest.importorskip("dstack_inspector.store", reason="the task store is not in this tree yet")
    from dstack_verifier.model import Report

    store = store_module.TaskStore.open_default()
    try:
        task = store.add(Report.model_validate_json(report_file.read_text()), title="demo", source="demo")
    finally:
        store.close()
    pack = export(capsys, Path(str(task)), tmp_path / "task.zip")
    assert run(capsys, "report", "verify", str(pack))[0] == 0
    code, _, err = run(capsys, "report", "export", "999999", "--out", str(tmp_path / "none.zip"), "--no-pdf")
    assert code == 2 and "999999" in err


def test_verify_save_then_list_then_export_by_id(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's way to the history: `verify --save` saves, `report list` shows the ids, `report export ID` uses one."""
    code, out, _ = run(capsys, "report", "list")
    assert code == 0 and out.strip() == "0 of 0 task(s)"
    verified(tmp_path, capsys, DEMO_APP_EVIDENCE, "--save")  # (its stderr is consumed by the helper)
    code, _, err = run(capsys, "verify", *(str(resource_path("demo", n)) for n in DEMO_APP_EVIDENCE), "--root-ca",
                       str(resource_path("demo", DEMO_ANCHOR)), "--offline", "--at", str(load_demo().now), "--save")
    assert code == 0 and "saved as task 2 of the history" in err
    code, out, _ = run(capsys, "report", "list")
    lines = out.splitlines()
    assert code == 0 and lines[-1] == "2 of 2 task(s)"
    assert lines[0].split()[0] == "2" and "PASS" in lines[0] and "getquote.json" in lines[0]
    code, out, _ = run(capsys, "report", "list", "no-such-words", "--limit", "1")
    assert code == 0 and out.strip() == "0 of 0 task(s) matching 'no-such-words'"
    pack = export(capsys, Path("2"), tmp_path / "task2.zip")
    assert run(capsys, "report", "verify", str(pack))[0] == 0
    # The verdict stands when the history cannot be written; only the saving is reported.
    broken = tmp_path / "broken-data"
    (broken / "history.sqlite3").mkdir(parents=True)  # not a database: opening it fails
    monkeypatch.setenv("DSTACK_INSPECTOR_DATA_DIR", str(broken))
    code, _, err = run(capsys, "verify", *(str(resource_path("demo", n)) for n in DEMO_APP_EVIDENCE), "--root-ca",
                       str(resource_path("demo", DEMO_ANCHOR)), "--offline", "--at", str(load_demo().now), "--save")
    assert code == 0 and "dstack-inspector: not saved in the history: " in err and "saved as task" not in err


def test_pdf_is_written_and_two_exports_are_identical(tmp_path: Path, report_file: Path) -> None:
    env = {**os.environ, "DSTACK_INSPECTOR_DATA_DIR": str(tmp_path / "data"), "QT_QPA_PLATFORM": "offscreen"}
    packs = [tmp_path / "a.zip", tmp_path / "b.zip"]
    for pack in packs:  # separate processes: nothing (hash seeds, clocks) is shared between the two exports
        done = subprocess.run([sys.executable, "-m", "dstack_inspector.cli", "report", "export", str(report_file),
                               "--out", str(pack)], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stderr == "", done.stderr
    assert packs[0].read_bytes() == packs[1].read_bytes()
    members = read_pack(packs[0])
    assert members["report.pdf"].startswith(b"%PDF-")
    done = subprocess.run([sys.executable, "-m", "dstack_inspector.cli", "report", "verify", str(packs[0])],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_a_stricter_tcb_policy_is_signed_and_re_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report_file = verified(tmp_path, capsys, DEMO_APP_EVIDENCE, "--max-collateral-age", "0.5", "--min-tcb-eval", "17")
    report = json.loads(report_file.read_text())
    assert report["policy"]["tcb"]["max_collateral_age_seconds"] == 43200
    assert report["policy"]["tcb"]["min_tcb_evaluation_data_number"] == 17
    fresh = next(c for c in report["checks"] if c["id"] == "hardware.collateral_freshness")
    assert fresh["status"] == "warn" and "more than the 12 h the policy allows" in fresh["summary"]
    pack = export(capsys, report_file, tmp_path / "strict.zip")
    code, out, err = run(capsys, "report", "verify", str(pack))
    assert code == 0 and err == "", out  # the re-run under the signed policy warns alike
    assert "verdict PASS, re-run verdict PASS" in out


def test_damaged_and_nested_packs_are_bad_input(tmp_path: Path, report_file: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A central directory said to start past where it does (Python's zipfile then seeks before the file's start),
    and a pack whose report.json is a pack again: one line each, exit 2, for `verify` and `report verify`."""
    import struct

    pack = export(capsys, report_file, tmp_path / "demo.zip")
    data = bytearray(pack.read_bytes())
    end = data.rindex(b"PK\x05\x06")
    (offset,) = struct.unpack_from("<L", data, end + 16)
    struct.pack_into("<L", data, end + 16, offset + 7)
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(data))
    inner = pack.read_bytes()
    for _ in range(3):  # a pack inside a pack inside a pack
        nested = tmp_path / "nested.zip"
        write_pack({"report.json": inner}, nested)
        inner = nested.read_bytes()
    for argv, status, words in (
            (["verify", str(damaged), "--offline"], 2, "not a zip archive"),
            (["report", "verify", str(damaged)], 2, "not a zip archive"),
            (["verify", str(nested), "--offline"], 2, "report.json of the pack is not a dstack-inspector report"),
            (["report", "verify", str(nested)], 1, "pack verification failed")):  # a zip, but not a pack that verifies
        code, _, err = run(capsys, *argv)
        assert code == status and err.count("\n") == 1 and words in err, (argv, err)


def test_a_report_in_the_trust_center_shape_verifies_again_as_one(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`report trust-center` writes the Trust Center's VerificationResponse; read back as a Trust Center result, its
    objects carry what verifying the three entities again needs, and its claims are ours."""
    report = verified(tmp_path, capsys, DEMO_EVIDENCE, "--tls-roots", str(resource_path("demo", DEMO_WEB_ROOT)))
    out = tmp_path / "tc.json"
    code, stdout, _ = run(capsys, "report", "trust-center", str(report), "--out", str(out))
    assert code == 0 and stdout.strip() == f"wrote {out}"
    doc = json.loads(out.read_text())
    assert doc["success"] is True and doc["failures"] == [] and doc["completedAt"].endswith("Z")
    objects = {o["id"]: o for o in doc["dataObjects"]}
    assert {"objectId": "app-quote", "fieldName": "mrtd", "selfFieldName": "expected_mrtd"} in objects["app-os"][
        "measuredBy"]
    assert objects["kms-main"]["kind"] == "kms"
    assert {"inputs": ["compose_file"], "calcFunc": "sha256", "outputs": ["compose_hash"]} in objects["app-code"][
        "calculations"]
    code, stdout, _ = run(capsys, "verify", str(out), "--root-ca", str(resource_path("demo", DEMO_ANCHOR)),
                          "--offline", "--at", str(load_demo().now), "--collateral",
                          str(resource_path("demo", "collateral.json")), "--json")
    again = json.loads(stdout)
    assert again["inputs"][0]["kind"] == "trust-center-result"
    assert set(again["entities"]) == {"app", "kms", "gateway"}
    for entity in ("app", "kms", "gateway"):
        assert again["entities"][entity]["trust_center_claims"]["success"] is True
        statuses = {c["id"]: c["status"] for c in again["checks"] if c["entity"] == entity}
        for check_id in ("hardware.quote_signature", "eventlog.replay", "eventlog.rtmr3_payloads", "os.mrtd"):
            assert statuses[check_id] == "pass", (entity, check_id)
    assert code in (0, 1, 3)
    # To standard output without --out; a file that is no report is refused.
    code, stdout, _ = run(capsys, "report", "trust-center", str(report))
    assert code == 0 and json.loads(stdout)["success"] is True
    code, _, err = run(capsys, "report", "trust-center", str(resource_path("demo", "app-compose.json")))
    assert code == 2 and "is not a dstack-inspector report" in err
