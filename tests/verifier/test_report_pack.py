"""Evidence packs: export → verify round trip, every kind of tampering, determinism, and hostile archives.

The evidence is the built-in demo (its own root CA, carried in the pack) and synthetic DCAP evidence; nothing
needs the shared fixtures or the network.
"""

from __future__ import annotations

import base64
import json
import stat
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dstack_verifier.demo import load_demo
from dstack_verifier.errors import InputError
from dstack_verifier.evidence import detect
from dstack_verifier.model import CheckStatus, Report
from dstack_verifier.quote.verify import TrustAnchor
from dstack_verifier.report import export_pack, verify_pack
from dstack_verifier.report.dsse import parse_envelope, sign_envelope
from dstack_verifier.report.pack import MAX_MEMBER_BYTES, read_pack, write_pack
from dstack_verifier.report.statement import VERIFICATION_PREDICATE, parse_statement
from dstack_verifier.resources import INTEL_ROOT_CA_SHA256
from dstack_verifier.synth import make_evidence
from dstack_verifier.verification import ImageOptions, VerifyOptions, verify_evidence

KEY = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(b"\x08" * 32)


@pytest.fixture(scope="module")
def demo_report() -> Report:
    demo = load_demo()
    report = verify_evidence(demo.app_items, VerifyOptions(now=demo.now, anchor=demo.anchor, offline=True))
    assert report.verdict.value == "pass"
    return report


@pytest.fixture
def pack(tmp_path: Path, demo_report: Report) -> Path:
    out = tmp_path / "demo.attest.zip"
    export_pack(demo_report, out, KEY)
    return out


def rewrite(pack: Path, out: Path, changes: dict[str, bytes | None]) -> Path:
    """The pack with members replaced, added, or (None) removed."""
    members = read_pack(pack)
    for name, data in changes.items():
        if data is None:
            members.pop(name)
        else:
            members[name] = data
    write_pack(members, out)
    return out


def problem_kinds(path: Path, **kwargs) -> list[str]:  # type: ignore[no-untyped-def]
    result = verify_pack(path, **kwargs)
    assert not result.ok
    return [p.kind for p in result.problems]


# -- round trip ----------------------------------------------------------------------------------------------


def test_round_trip_verifies_and_re_runs_every_check(pack: Path, demo_report: Report) -> None:
    result = verify_pack(pack)
    assert result.ok, [p.line() for p in result.problems]
    assert result.key_source == "embedded" and "not who signed it" in result.key_note
    assert "caller-supplied root carried in the pack" in result.anchor_note
    assert result.rerun is not None and result.rerun.verified_at == demo_report.verified_at
    assert [(c.id, c.status) for c in result.rerun.checks] == [(c.id, c.status) for c in demo_report.checks]
    assert result.differences == []
    trusted = verify_pack(pack, KEY.public_key())
    assert trusted.ok and trusted.key_source == "trusted"


def test_ear_status_of_an_entity() -> None:
    from dstack_verifier.report.statement import ear_status

    assert ear_status(["pass", "skip"]) == "affirming"
    assert ear_status(["pass", "warn", "skip"]) == "warning"
    assert ear_status(["pass", "warn", "fail"]) == "contraindicated"
    assert ear_status(["pass", "error"]) == "none" and ear_status(["skip", "skip"]) == "none"
    # In a verification left incomplete, an entity with a skipped check was not fully appraised.
    assert ear_status(["pass", "skip"], incomplete=True) == "none"
    assert ear_status(["pass"], incomplete=True) == "affirming"


def test_a_pack_re_runs_under_the_os_images_it_accepted(tmp_path: Path) -> None:
    """The accepted OS images are part of the signed policy: the re-run refuses the same image the signed run did
    (without them, it would pass os.image_hash and differ from what was signed)."""
    demo = load_demo()
    options = VerifyOptions(now=demo.now, anchor=demo.anchor, offline=True, images=ImageOptions(allowed=("ab" * 32,)))
    report = verify_evidence(demo.app_items, options)
    assert report.policy["os_images"] == ["ab" * 32]
    assert next(c for c in report.checks if c.id == "os.image_hash").status is CheckStatus.FAIL
    out = tmp_path / "pack.zip"
    export_pack(report, out, KEY)
    result = verify_pack(out)
    assert result.ok and result.differences == [], [p.line() for p in result.problems]
    assert result.rerun is not None and result.rerun.policy["os_images"] == ["ab" * 32]
    assert result.predicate is not None and result.predicate.submods["app"].status == "contraindicated"
    html = read_pack(out)["report.html"].decode()
    assert f"<td>Accepted OS images</td><td><span class='mono'>{'ab' * 32}</span>" in html


def test_a_carried_key_whose_id_is_trusted_counts_as_trusted(pack: Path) -> None:
    from dstack_verifier.report.keys import key_id

    trusted = verify_pack(pack, trusted_ids={key_id(KEY.public_key())})
    assert trusted.ok and trusted.key_source == "trusted" and "one of the signers you trust" in trusted.key_note
    other = verify_pack(pack, trusted_ids={key_id(OTHER_KEY.public_key())})
    assert other.ok and other.key_source == "embedded" and "not a trusted one" in other.key_note


def test_pack_layout_and_statement(pack: Path, demo_report: Report) -> None:
    members = read_pack(pack)
    evidence = sorted(n for n in members if n.startswith("evidence/"))
    assert evidence == ["evidence/01-getquote.json", "evidence/02-app-compose.json", "evidence/03-app-cert.pem",
                        "evidence/04-collateral.json", "evidence/trust-anchor.der"]
    for i, item in enumerate(demo_report.inputs):  # the evidence exactly as verified
        assert members[evidence[i]] == base64.b64decode(item.content_b64 or "")
    envelope = parse_envelope(members["statement.dsse.json"], "statement.dsse.json")
    assert envelope.payload_type == "application/vnd.in-toto+json"
    statement = parse_statement(envelope.verify(KEY.public_key()), "s", VERIFICATION_PREDICATE)
    app = demo_report.entities["app"]["app_info"]
    identity = f"dstack-app:{app['app_id']}"
    assert set(statement.digests()) == {*evidence, "report.json", identity}
    assert statement.digests()[identity] == app["compose_hash"]  # the app, named by what it runs
    predicate = statement.predicate
    assert predicate["verifiedAt"] == demo_report.verified_at and predicate["timeVerified"].endswith("Z")
    assert predicate["trustAnchor"]["sha256"] == demo_report.policy["trust_anchor"]["sha256"]
    assert predicate["submods"]["app"]["status"] == "warning"  # EAR's tier: RTMR0 warns (TDX-lite's ACPI tables)
    signed = [(c["id"], c["status"], c["anchor"]) for c in predicate["submods"]["app"]["checks"]]
    assert signed == [(c.id, c.status.value, c.anchor) for c in demo_report.checks]
    assert "timings" not in json.dumps(predicate)
    html = members["report.html"].decode()
    assert "hardware.quote_signature" in html and key_fingerprint_in(html)
    assert "<span class='note'>(appraisal: warning)</span></h2>" in html
    assert "<script" not in html


def test_a_statement_naming_another_app_fails_the_re_run(tmp_path: Path, pack: Path) -> None:
    """The identity subjects are held to the evidence: a statement re-signed (by the same key, renderings bound
    anew) to give the app another compose hash is refused by the re-run."""
    import hashlib

    from dstack_verifier.report.pack import HTML_FILE, RENDERINGS_FILE
    from dstack_verifier.report.statement import (
        RENDERING_PREDICATE,
        RenderingPredicate,
        is_identity_subject,
        make_statement,
        subject,
    )

    members = read_pack(pack)
    signed = parse_statement(parse_envelope(members["statement.dsse.json"], "s").verify(KEY.public_key()), "s",
                             VERIFICATION_PREDICATE)
    lying = signed.model_copy(update={"subject": [
        s.model_copy(update={"digest": {"sha256": "00" * 32}}) if is_identity_subject(s.name) else s
        for s in signed.subject]})
    payload = lying.payload()
    members["statement.dsse.json"] = sign_envelope(payload, KEY).to_json()
    bound = make_statement([subject(HTML_FILE, members[HTML_FILE])], RENDERING_PREDICATE,
                           RenderingPredicate(statement={"sha256": hashlib.sha256(payload).hexdigest()}))
    members[RENDERINGS_FILE] = sign_envelope(bound.payload(), KEY).to_json()
    out = tmp_path / "lying.zip"
    write_pack(members, out)
    result = verify_pack(out)
    assert [p.kind for p in result.problems] == ["difference"], [p.line() for p in result.problems]
    assert "the evidence tells other app identities than the statement" in result.problems[0].message


def key_fingerprint_in(html: str) -> bool:
    from dstack_verifier.report.keys import fingerprint

    return fingerprint(KEY.public_key()) in html


def test_html_escapes_what_the_report_says(tmp_path: Path, demo_report: Report) -> None:
    hostile = demo_report.model_copy(update={"checks": [
        demo_report.checks[0].model_copy(update={"summary": "<script>alert(1)</script> & <b>"})]})
    out = tmp_path / "p.zip"
    export_pack(hostile, out, KEY)
    html = read_pack(out)["report.html"].decode()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;" in html


def test_html_states_the_whole_tcb_policy(tmp_path: Path, demo_report: Report) -> None:
    tcb = {**demo_report.policy["tcb"], "max_collateral_age_seconds": 7 * 86400, "min_tcb_evaluation_data_number": 18,
           "allowed_mrseams": ["ab" * 48]}
    strict = demo_report.model_copy(update={"policy": {**demo_report.policy, "tcb": tcb}})
    out = tmp_path / "p.zip"
    export_pack(strict, out, KEY)
    html = read_pack(out)["report.html"].decode()
    assert "pass: UpToDate; warn: SWHardeningNeeded" in html and "fail: any other status" in html
    assert "collateral issued more than 7 days before the verification instant warns" in html
    assert "TCB evaluation data number below 18 fails" in html and f"(MRSEAM): {'ab' * 48}" in html


# -- determinism ---------------------------------------------------------------------------------------------


def test_two_exports_are_byte_identical(tmp_path: Path, demo_report: Report) -> None:
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    first, second = export_pack(demo_report, a, KEY), export_pack(demo_report, b, KEY)
    assert a.read_bytes() == b.read_bytes()
    assert first.statement_sha256 == second.statement_sha256
    # The same report re-read from its JSON (as the task store gives it back) exports the same bytes.
    again = Report.model_validate_json(demo_report.to_json())
    export_pack(again, b, KEY)
    assert a.read_bytes() == b.read_bytes()


def test_another_key_changes_only_the_signature_and_keyid(tmp_path: Path, demo_report: Report) -> None:
    export_pack(demo_report, tmp_path / "a.zip", KEY)
    export_pack(demo_report, tmp_path / "b.zip", OTHER_KEY)
    a, b = read_pack(tmp_path / "a.zip"), read_pack(tmp_path / "b.zip")
    ea, eb = (json.loads(m["statement.dsse.json"]) for m in (a, b))
    assert ea["payload"] == eb["payload"] and ea["payloadType"] == eb["payloadType"]
    assert ea["signatures"][0]["keyid"] != eb["signatures"][0]["keyid"]
    assert ea["signatures"][0]["sig"] != eb["signatures"][0]["sig"]
    assert {k: v for k, v in ea.items() if k != "signatures"} == {k: v for k, v in eb.items() if k != "signatures"}
    same = {n for n in a if a[n] == b.get(n)}
    # The renderings show the signer's fingerprint, so they (and what binds them) follow the key.
    assert set(a) - same == {"statement.dsse.json", "renderings.dsse.json", "report.html", "signing-key.pub.pem"}


# -- tampering -----------------------------------------------------------------------------------------------


def test_changed_evidence_file_fails(tmp_path: Path, pack: Path) -> None:
    compose = read_pack(pack)["evidence/02-app-compose.json"]
    bad = rewrite(pack, tmp_path / "bad.zip", {"evidence/02-app-compose.json": compose.replace(b"{", b"{ ", 1)})
    result = verify_pack(bad)
    assert [p.kind for p in result.problems] == ["changed", "rerun"]
    assert result.problems[0].member == "evidence/02-app-compose.json"
    assert "changed since signing" in result.problems[0].line()


def test_changed_report_json_fails(tmp_path: Path, pack: Path) -> None:
    report = json.loads(read_pack(pack)["report.json"])
    report["verdict"] = "fail"
    bad = rewrite(pack, tmp_path / "bad.zip", {"report.json": json.dumps(report).encode()})
    assert problem_kinds(bad)[0] == "changed"


def test_changed_statement_fails_the_signature(tmp_path: Path, pack: Path) -> None:
    envelope = json.loads(read_pack(pack)["statement.dsse.json"])
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["submods"]["app"]["checks"][0]["status"] = "pass-ish"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    bad = rewrite(pack, tmp_path / "bad.zip", {"statement.dsse.json": json.dumps(envelope).encode()})
    result = verify_pack(bad)
    assert [p.kind for p in result.problems] == ["signature"]
    assert "no signature of the envelope verifies" in result.problems[0].message


def test_bad_signature_fails(tmp_path: Path, pack: Path) -> None:
    envelope = json.loads(read_pack(pack)["statement.dsse.json"])
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[5] ^= 1
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    bad = rewrite(pack, tmp_path / "bad.zip", {"statement.dsse.json": json.dumps(envelope).encode()})
    assert problem_kinds(bad) == ["signature"]


def test_resigned_by_another_key_passes_only_without_a_trusted_key(tmp_path: Path, pack: Path,
                                                                   demo_report: Report) -> None:
    other = tmp_path / "other.zip"
    export_pack(demo_report, other, OTHER_KEY)
    assert verify_pack(other).ok  # integrity only: the embedded key is whoever made the pack
    result = verify_pack(other, KEY.public_key())
    assert [p.kind for p in result.problems] == ["signature"] and result.key_source == "trusted"


def test_wrong_trusted_key_fails(pack: Path) -> None:
    assert problem_kinds(pack, trusted_key=OTHER_KEY.public_key()) == ["signature"]


@pytest.mark.parametrize("member", ["evidence/01-getquote.json", "evidence/trust-anchor.der", "report.json",
                                    "report.html"])
def test_missing_file_fails(tmp_path: Path, pack: Path, member: str) -> None:
    result = verify_pack(rewrite(pack, tmp_path / "bad.zip", {member: None}))
    assert not result.ok
    assert result.problems[0].kind == "missing" and result.problems[0].member == member


def test_missing_statement_or_public_key_fails(tmp_path: Path, pack: Path) -> None:
    assert problem_kinds(rewrite(pack, tmp_path / "a.zip", {"statement.dsse.json": None})) == ["statement"]
    assert problem_kinds(rewrite(pack, tmp_path / "b.zip", {"signing-key.pub.pem": None})) == ["signature"]


def test_extra_file_fails(tmp_path: Path, pack: Path) -> None:
    result = verify_pack(rewrite(pack, tmp_path / "bad.zip", {"evidence/05-more.json": b"{}"}))
    assert (result.problems[0].kind, result.problems[0].member) == ("extra", "evidence/05-more.json")


def test_changed_rendering_fails(tmp_path: Path, pack: Path) -> None:
    html = read_pack(pack)["report.html"].replace(b"PASS", b"FAIL")
    assert problem_kinds(rewrite(pack, tmp_path / "bad.zip", {"report.html": html}))[0] == "changed"


def test_renderings_of_another_statement_fail(tmp_path: Path, pack: Path, demo_report: Report) -> None:
    other_report = demo_report.model_copy(update={"checks": demo_report.checks[:-1]})
    other = tmp_path / "other.zip"
    export_pack(other_report, other, KEY)
    theirs = read_pack(other)
    bad = rewrite(pack, tmp_path / "bad.zip", {n: theirs[n] for n in ("renderings.dsse.json", "report.html")})
    result = verify_pack(bad)
    assert ("statement", "renderings.dsse.json") in [(p.kind, p.member) for p in result.problems]


def test_signed_results_that_the_evidence_does_not_give_are_differences(tmp_path: Path,
                                                                        demo_report: Report) -> None:
    # A statement signed over a report whose check says something the evidence does not support (the signer lied
    # or the verifier changed): the signature holds, the re-run disagrees, and the difference is named.
    checks = [c.model_copy(update={"status": CheckStatus.WARN}) if c.id == "hardware.tcb_status" else c
              for c in demo_report.checks]
    out = tmp_path / "lie.zip"
    export_pack(demo_report.model_copy(update={"checks": checks}), out, KEY)
    result = verify_pack(out)
    assert [p.kind for p in result.problems] == ["difference"]
    assert [(d.id, d.signed, d.rerun) for d in result.differences] == [
        ("hardware.tcb_status", "warn @ caller-supplied", "pass @ caller-supplied")]


# -- export refusals and other anchors ----------------------------------------------------------------------


def test_input_without_content_cannot_be_packed(tmp_path: Path, demo_report: Report) -> None:
    inputs = [demo_report.inputs[0], demo_report.inputs[1].model_copy(update={"content_b64": None})]
    with pytest.raises(InputError) as err:
        export_pack(demo_report.model_copy(update={"inputs": inputs}), tmp_path / "p.zip", KEY)
    assert "demo/app-compose.json" in str(err.value) and "inputs[1]" in str(err.value)
    assert not (tmp_path / "p.zip").exists()


def test_unknown_anchor_must_be_given_and_then_travels_in_the_pack(tmp_path: Path) -> None:
    ev = make_evidence(seed="report-pack", now=1_767_225_600)
    anchor = TrustAnchor.from_der(ev.root_ca_der, "synth-root.der")
    items = [detect(ev.quote, "synth.quote"), detect(ev.collateral_json.encode(), "collateral.json")]
    report = verify_evidence(items, VerifyOptions(now=ev.now, anchor=anchor, offline=True, reference=False))
    with pytest.raises(InputError, match="neither Intel's nor the demo's"):
        export_pack(report, tmp_path / "p.zip", KEY)
    export_pack(report, tmp_path / "p.zip", KEY, anchor=anchor)
    result = verify_pack(tmp_path / "p.zip")
    assert result.ok, [p.line() for p in result.problems]
    assert read_pack(tmp_path / "p.zip")["evidence/trust-anchor.der"] == ev.root_ca_der


def test_intel_anchored_pack_uses_the_built_in_root(tmp_path: Path, demo_report: Report) -> None:
    # A report claiming the Intel root: the pack carries no anchor file and the re-run uses the built-in root,
    # under which the demo evidence does not verify -- so every hardware check differs.
    policy = {**demo_report.policy, "trust_anchor": {**demo_report.policy["trust_anchor"],
                                                     "sha256": INTEL_ROOT_CA_SHA256, "intel": True}}
    out = tmp_path / "p.zip"
    export_pack(demo_report.model_copy(update={"policy": policy}), out, KEY)
    assert "evidence/trust-anchor.der" not in read_pack(out)
    result = verify_pack(out)
    assert result.anchor_note == "trust anchor: the built-in Intel SGX Root CA"
    assert "hardware.pck_chain" in {d.id for d in result.differences}


# -- hostile archives ---------------------------------------------------------------------------------------


def raw_zip(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return path


def symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(("entries", "words"), [
    ([("../evil.txt", b"x")], "'..' part"),
    ([("evidence/../../evil.txt", b"x")], "'..' part"),
    ([("/etc/evil", b"x")], "absolute"),
    ([("C:/evil", b"x")], "absolute"),
    ([("evidence\\evil", b"x")], "absolute"),
    ([("evidence//x", b"x")], "empty"),
    ([(symlink_info("evidence/link"), b"/etc/passwd")], "symbolic link"),
    ([("report.json", b"a"), ("report.json", b"b")], "twice"),
])
def test_unsafe_members_are_refused(tmp_path: Path, entries: list, words: str) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name we write on purpose
        path = raw_zip(tmp_path / "evil.zip", entries)
    with pytest.raises(InputError) as err:
        verify_pack(path)
    assert words in str(err.value) and str(path) in str(err.value)
    assert not (tmp_path / "evil.txt").exists()


def test_oversized_member_is_refused_before_it_is_inflated(tmp_path: Path) -> None:
    path = raw_zip(tmp_path / "big.zip", [("evidence/01-big.bin", bytes(MAX_MEMBER_BYTES + 1))])
    assert path.stat().st_size < 1 << 20  # a small archive that would inflate past the bound
    with pytest.raises(InputError, match=r"evidence/01-big\.bin.*more than"):
        read_pack(path)


def test_member_whose_header_understates_its_size_is_refused(tmp_path: Path) -> None:
    path = raw_zip(tmp_path / "liar.zip", [("a.bin", bytes(MAX_MEMBER_BYTES + 10))])
    data = bytearray(path.read_bytes())
    # Rewrite the declared uncompressed size (local header at 22, central directory entry at +24) to 10 bytes.
    central = data.rfind(b"PK\x01\x02")
    for offset in (22, central + 24):
        data[offset:offset + 4] = (10).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"a\.bin.*(inflates past|corrupt member)"):
        read_pack(path)


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    path = raw_zip(tmp_path / "many.zip", [(f"evidence/{i}", b"") for i in range(600)])
    with pytest.raises(InputError, match="600 members"):
        read_pack(path)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"just text\n"])
def test_not_a_zip_is_an_input_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "pack.zip"
    path.write_bytes(content)
    with pytest.raises(InputError, match="not a zip archive"):
        verify_pack(path)
    with pytest.raises(InputError, match="no such file"):
        verify_pack(tmp_path / "absent.zip")


def test_a_hostile_statement_is_a_failure_not_a_crash(tmp_path: Path, pack: Path) -> None:
    # Validly signed by its own embedded key, but not an in-toto statement: a clear problem, no traceback.
    envelope = sign_envelope(b'{"_type": 5}', KEY)
    bad = rewrite(pack, tmp_path / "bad.zip", {"statement.dsse.json": envelope.to_json()})
    result = verify_pack(bad)
    assert [p.kind for p in result.problems] == ["statement"]
    assert "statement.dsse.json" in result.problems[0].line()


def test_a_check_that_could_not_run_then_and_cannot_offline_is_not_a_problem(tmp_path: Path) -> None:
    """Signed with the collateral unreachable (errors), re-run offline (skips): listed, but the pack verifies."""
    from dstack_verifier.net import NetClient
    from dstack_verifier.report.keys import load_or_create_signing_key
    from dstack_verifier.verification import verify_evidence

    demo = load_demo()
    quote_only = [e for e in demo.app_items if e.kind != "collateral"]
    # Online, with a PCCS that is not there: the collateral checks are errors.
    with NetClient(retries=0, timeout=2) as client:
        report = verify_evidence(quote_only, replace(demo.options(), offline=False, pccs_url="http://127.0.0.1:9"),
                                 client=client)
    assert any(c.status.value == "error" for c in report.checks)
    pack = tmp_path / "p.zip"
    export_pack(report, pack, load_or_create_signing_key(tmp_path / "k.pem"))
    result = verify_pack(pack)
    assert result.ok, [p.message for p in result.problems]
    assert result.differences and all(d.not_run_either for d in result.differences)
