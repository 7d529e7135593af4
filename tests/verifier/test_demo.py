"""The demo evidence pack: one synthetic dstack deployment — App, KMS, Gateway — that verifies at its instant against
its own (non-Intel) roots, every check that its evidence allows passing (the OS ones from the TDX-lite material of a
stand-in OS image, RTMR0 with a warning that its ACPI tables are taken from the log; the gateway's domain ones from its
acme-info and a demo web root), the app's own evidence alone too, and it is reproducible."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.x509.oid import NameOID
from dstack_verifier.demo import (
    DEMO_ANCHOR,
    DEMO_APP_EVIDENCE,
    DEMO_EVIDENCE,
    DEMO_FILES,
    DEMO_LABEL,
    load_demo,
)
from dstack_verifier.domain import zt_cert_report_data
from dstack_verifier.errors import InputError
from dstack_verifier.evidence import detect
from dstack_verifier.measure.cbor import decode_cbor
from dstack_verifier.measure.lite import decode_measurement_document
from dstack_verifier.model import CheckStatus, Verdict
from dstack_verifier.net import NetClient
from dstack_verifier.quote.structure import parse_quote
from dstack_verifier.ratls import acme_report_data, decode_ratls, quote_report_data, spki_der
from dstack_verifier.resources import resource_path
from dstack_verifier.sources.cloud import parse_cloud_answer
from dstack_verifier.sources.gateway import parse_acme_info
from dstack_verifier.verification import OS_CHECKS, OnchainOptions, load_anchor, verify_evidence

from tests.support.fixtures import fixture_path
from tests.support.rpc_node import RpcNode

ROOT = Path(__file__).resolve().parents[2]
MAKE_DEMO = ROOT / "packaging" / "make_demo.py"
PACK_FILES = (*DEMO_FILES, "demo.json")


APP_CHECKS = {
    "eventlog.replay",
    "eventlog.rtmr3_payloads",
    "binding.report_data",
    "source.compose_hash",
    "source.mr_config_id",
    "source.onchain_registry",
}
DOMAIN_CHECKS = {"domain.tee_controlled_key", "domain.certificate_key", "domain.dns_caa", "domain.ct_log"}
# What the three-entity verification cannot pass offline from a Phala Cloud answer, and why: no chain is named; no
# DNS nor crt.sh offline; the Cloud answer carries neither the app's vm_config nor its RA-TLS chain (the app's
# guest agent does: see the app's own evidence below), nor the KMS's certificate PEM or keys (KMS.GetMeta would).
NOT_PASSED = {
    **{(entity, "source.onchain_registry"): CheckStatus.SKIP for entity in ("app", "kms", "gateway")},
    ("gateway", "domain.dns_caa"): CheckStatus.SKIP,
    ("gateway", "domain.ct_log"): CheckStatus.SKIP,
    ("kms", "binding.report_data"): CheckStatus.SKIP,  # a Cloud answer carries neither the KMS's chain nor its keys
    # TDX-lite: the ACPI tables are taken as the log gives them (no image to recompute them from): a warning.
    **{(entity, "os.rtmr0"): CheckStatus.WARN for entity in ("app", "kms", "gateway")},
}


def _verify_demo():
    demo = load_demo()
    return demo, verify_evidence(demo.items, demo.options())


def _verify_app():
    demo = load_demo()
    return demo, verify_evidence(demo.app_items, demo.options())


def _make_demo_module():
    spec = importlib.util.spec_from_file_location("make_demo", MAKE_DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


def _item(items, kind):
    return next(e for e in items if e.kind == kind)


def test_the_three_entities_verify_to_pass_at_the_demo_instant():
    demo, report = _verify_demo()
    assert demo.now == 1_780_272_000  # 2026-06-01T00:00:00Z
    assert [e.kind for e in demo.items] == ["cloud-attestations", "acme-info", "agent-info", "kms-meta", "collateral"]
    assert [e.name for e in demo.items] == [f"demo/{name}" for name in DEMO_EVIDENCE]
    assert report.verdict is Verdict.PASS
    assert set(report.entities) == {"app", "kms", "gateway"}
    keys = [(c.entity, c.id) for c in report.checks]
    assert len(keys) == len(set(keys))
    for entity in ("app", "kms", "gateway"):
        ids = {c.id for c in report.checks if c.entity == entity}
        assert APP_CHECKS | set(OS_CHECKS) <= ids, entity
        assert len([i for i in ids if i.startswith("hardware.")]) == 10, entity
    assert DOMAIN_CHECKS <= {c.id for c in report.checks if c.entity == "gateway"}
    not_passed = {(c.entity, c.id): c.status for c in report.checks if c.status is not CheckStatus.PASS}
    assert not_passed == NOT_PASSED
    checks = {(c.entity, c.id): c for c in report.checks}
    assert checks["gateway", "source.gateway_app_id"].status is CheckStatus.PASS
    assert checks["gateway", "binding.report_data"].summary.startswith("ACME account binding holds")
    # The KMS's GetMeta: its bootstrap quote (same TD, DCAP-verified) binds the CA key that the app and gateway name.
    assert checks["kms", "binding.kms_keys"].status is CheckStatus.PASS
    assert checks["kms", "binding.kms_keys"].details["same_td_identity_as_verified_quote"] is True
    assert "the KMS whose quote binds CA key" in checks["app", "source.kms_key_provider"].summary
    assert report.policy["trust_anchor"]["intel"] is False
    assert "intel-root" not in {c.anchor for c in report.checks}
    assert [i.role for i in report.inputs] == ["cloud-attestations", "acme-info", "agent-info", "kms-meta",
                                               "collateral"]


def test_the_entities_tell_one_deployment():
    demo, report = _verify_demo()
    cloud = parse_cloud_answer(_item(demo.items, "cloud-attestations").data, "cloud")
    acme = parse_acme_info(_item(demo.items, "acme-info").data, "acme-info")
    assert cloud.problems == () and cloud.dropped_instances == () and len(cloud.instances) == 1
    assert cloud.kms_info.supports_onchain_kms and cloud.legacy_reason is None
    assert cloud.kms_info.gateway_app_url == "https://gateway.demo.dstack.invalid"
    info = {entity: report.entities[entity]["app_info"] for entity in ("app", "kms", "gateway")}
    assert info["app"]["app_id"] == cloud.app_id
    assert info["gateway"]["app_id"] == cloud.kms_info.gateway_app_id
    assert len({i["app_id"] for i in info.values()}) == 3
    # The app and the gateway take their keys from the demo KMS, named by its CA key; the KMS from the local one.
    kms_ca = spki_der(_item(demo.app_items, "certificate").certificates[-1]).hex()
    assert info["app"]["key_provider"] == info["gateway"]["key_provider"] == {"name": "kms", "id": kms_ca}
    assert info["kms"]["key_provider"]["name"] == "local-sgx"
    assert {report.entities[e]["app_compose"]["effective_key_provider"] for e in info} == {"kms", "local"}
    # Every entity booted the same OS image, which its vm_config carries (the app's comes from its guest agent).
    for entity in ("kms", "gateway"):
        assert report.entities[entity]["vm_config"]["os_image_hash"] == info[entity]["os_image_hash"]
    assert len({i["os_image_hash"] for i in info.values()}) == 1
    # The gateway publishes one quote in acme-info and in its guest-agent info; it binds the ACME account. A second
    # quote of the same TD binds the TLS key the served certificate uses.
    gateway_info = cloud.gateway_guest_agent_info
    assert gateway_info is not None and gateway_info.quote() is not None
    assert acme.account_quote == gateway_info.quote()[0]
    account = parse_quote(acme.account_quote)
    assert quote_report_data(account) == acme_report_data(acme.account_uri)
    assert acme.account_event_log == gateway_info.tcb_info.event_log
    (key,) = acme.quoted_hist_keys
    assert key.quote is not None and key.quote != acme.account_quote
    key_quote = parse_quote(key.quote)
    assert quote_report_data(key_quote) == zt_cert_report_data(key.public_key)
    assert {n: key_quote.body.fields[n] for n in ("mrtd", "rtmr3", "mrconfig")} == {
        n: account.body.fields[n] for n in ("mrtd", "rtmr3", "mrconfig")}
    assert acme.base_domain == demo.domain.domain == "demo.dstack.invalid"
    served = next(c for c in report.checks if c.id == "domain.certificate_key")
    assert served.details["key_match"]["matches"] and served.details["validation"]["result"] == "valid"
    assert served.details["served_chain_from"] == "acme-info active_cert"


def test_one_collateral_serves_every_quote_of_the_one_platform():
    _, report = _verify_demo()
    pck = {entity: report.entities[entity]["pck"] for entity in ("app", "kms", "gateway")}
    assert pck["app"] == pck["kms"] == pck["gateway"]
    assert len({report.entities[e]["quote"]["reportdata"] for e in pck}) == 3


def test_the_domain_checks_need_the_demo_web_root():
    # The gateway's certificate comes from the demo's web root: against the system's trust store it fails.
    demo = load_demo()
    assert demo.domain is not None and demo.domain.trust_roots is not None
    (root,) = demo.domain.trust_roots
    assert "not a public CA" in root.subject.rfc4514_string()
    report = verify_evidence(demo.items, demo.options(domain=None))
    assert report.verdict is Verdict.FAIL
    failed = {(c.entity, c.id) for c in report.checks if c.status is CheckStatus.FAIL}
    assert failed == {("gateway", "domain.certificate_key")}


def test_the_apps_own_evidence_verifies_to_pass():
    demo, report = _verify_app()
    assert report.verdict is Verdict.PASS
    ids = [c.id for c in report.checks]
    assert len(ids) == len(set(ids)) == 21
    assert APP_CHECKS <= set(ids) and set(OS_CHECKS) <= set(ids)
    assert all(i.startswith("hardware.") for i in set(ids) - APP_CHECKS - set(OS_CHECKS))
    # Every check passes, but the on-chain one (the demo names no chain, and the verdict does not need it) and RTMR0,
    # which warns that TDX-lite's ACPI tables are taken from the log.
    not_passed = {c.id: c.status for c in report.checks if c.status is not CheckStatus.PASS}
    assert not_passed == {"source.onchain_registry": CheckStatus.SKIP, "os.rtmr0": CheckStatus.WARN}
    # The same app as in the Cloud answer: same quote, same event log, same compose.
    cloud = parse_cloud_answer(_item(demo.items, "cloud-attestations").data, "cloud")
    getquote = _item(demo.app_items, "getquote")
    assert getquote.quote == cloud.instances[0].quote
    assert json.loads(getquote.json["event_log"]) == cloud.instances[0].event_log
    assert _item(demo.app_items, "app-compose").data.decode() == cloud.instances[0].app_compose


def test_demo_os_checks_pass_from_its_tdx_lite_material():
    demo, report = _verify_app()
    checks = {c.id: c for c in report.checks}
    assert {i: checks[i].status for i in OS_CHECKS} == {**dict.fromkeys(OS_CHECKS, CheckStatus.PASS),
                                                        "os.rtmr0": CheckStatus.WARN}
    assert all(checks[i].phase == "os" for i in OS_CHECKS)
    # The image the VM names is the one whose checksum file the vm_config carries, and the hardware measured it.
    quote = _item(demo.app_items, "getquote")
    vm_config = json.loads(quote.json["vm_config"])
    checksum_file = base64.b64decode(vm_config["tdx_measurement"]["checksum_file"], validate=True)
    measurement = base64.b64decode(vm_config["tdx_measurement"]["measurement"], validate=True)
    image_hash = hashlib.sha256(checksum_file).hexdigest()
    assert vm_config["os_image_hash"] == image_hash
    assert report.entities["app"]["app_info"]["os_image_hash"] == image_hash
    assert f"{hashlib.sha256(measurement).hexdigest()}  measurement.tdx.cbor\n" in checksum_file.decode()
    image = checks["os.image_hash"]
    assert image.anchor == f"image:{image_hash}" and image.details["path"] == "tdx-lite"
    assert image.details["problems"] == []
    assert image.details["hardware_measured"] == image.details["vm_config_os_image_hash"] == image_hash
    # A version 3 document, for a memory size TDX-lite accepts; QEMU 8.2.2 selects the two-pass MRTD.
    document = decode_measurement_document(measurement)
    assert document.version == 3 and document.ovmf == vm_config["ovmf_variant"] == "pre202505"
    assert document.unknown_keys == ()
    assert vm_config["memory_size"] == 0x80000000 or vm_config["memory_size"] >= 0xB0000000
    measured = report.entities["app"]["measurement"]
    assert (measured["path"], measured["mrtd_variant"], measured["acpi_source"]) == (
        "tdx-lite", "two_pass", "event-log-only")
    assert checks["os.mrtd"].details["expected"] == document.mrtd["two_pass"].hex()
    assert report.entities["app"]["quote"]["mrtd"] == document.mrtd["two_pass"].hex()
    # Every expected firmware event is the logged one, register by register: 13, 5 and 2 events.
    for register, count in (("os.rtmr0", 13), ("os.rtmr1", 5), ("os.rtmr2", 2)):
        details = checks[register].details
        assert details["logged_events"] == len(details["events"]) == count, register
        assert all(row["match"] for row in details["events"]), register
        assert details["expected"] == details["quoted"], register
    assert checks["os.rtmr1"].details["events"][0]["expected"] == document.kernel_authenticode.hex()
    assert [row["expected"] for row in checks["os.rtmr2"].details["events"]] == [
        document.cmdline_sha384.hex(), document.initrd_sha384.hex()]
    # The ACPI digests cannot be recomputed offline: RTMR0 says it took them from the event log.
    rtmr0 = checks["os.rtmr0"]
    assert rtmr0.details["taken_from_event_log"] == ["ACPI loader commands (etc/table-loader)", "ACPI RSDP",
                                                     "ACPI tables"]
    assert "taken from the event log" in rtmr0.summary
    assert rtmr0.summary.endswith("are taken as the log gives them (TDX-lite evidence carries no firmware or kernel "
                                  "to recompute them with dstack-acpi-tables)")
    assert [row["source"] for row in rtmr0.details["events"]].count("event-log-only") == 3


def test_demo_cbor_encoder_reproduces_dstacks_document():
    # The demo's tiny CBOR encoder writes a document the way dstack-mr does: the fixture's 384 bytes, decoded and
    # encoded again, come back byte for byte.
    make_demo = _make_demo_module()
    getquote = json.loads(fixture_path("dstack", "tdx-lite-getquote.json").read_text())
    fixture = base64.b64decode(json.loads(getquote["vm_config"])["tdx_measurement"]["measurement"])
    assert make_demo.cbor_encode(decode_cbor(fixture)) == fixture
    for value in (0, 23, 24, 255, 256, 65_535, 65_536, (1 << 32) - 1, 1 << 32, (1 << 64) - 1, "", b"", {}):
        assert decode_cbor(make_demo.cbor_encode(value)) == value
    for bad in (-1, True, 1.5, [1], {1: 2}):
        with pytest.raises(TypeError):
            make_demo.cbor_encode(bad)


def test_the_apps_own_evidence_is_one_complete_app():
    demo, report = _verify_app()
    assert [e.kind for e in demo.app_items] == ["getquote", "app-compose", "certificate", "collateral"]
    assert [e.name for e in demo.app_items] == [f"demo/{name}" for name in DEMO_APP_EVIDENCE]
    assert [i.kind for i in report.inputs] == ["getquote", "app-compose", "certificate", "collateral"]
    app = report.entities["app"]
    info = app["app_info"]
    assert info["system_ready"] and info["boot_mr_done"] and info["storage_fs"] == "zfs"
    names = [e["event"] for e in app["event_log"]["events"] if e["imr"] == 3]
    assert names == ["system-preparing", "app-id", "compose-hash", "instance-id", "boot-mr-done", "os-image-hash",
                     "key-provider", "storage-fs", "system-ready"]
    assert {e["imr"] for e in app["event_log"]["events"]} == {0, 1, 2, 3}
    # One app, told the same way everywhere: compose, events, vm_config, mr_config_id, RA-TLS chain.
    compose = next(e for e in demo.app_items if e.kind == "app-compose")
    assert info["compose_hash"] == hashlib.sha256(compose.data).hexdigest()
    assert app["app_compose"]["name"] == "demo-app" and app["app_compose"]["effective_key_provider"] == "kms"
    assert app["quote"]["mrconfig"] == "01" + info["compose_hash"] + "00" * 15
    assert info["os_image_hash"] == app["vm_config"]["os_image_hash"]
    chain = next(e for e in demo.app_items if e.kind == "certificate").certificates
    assert [c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value for c in chain[1:]] == [
        "Dstack App CA", "Dstack KMS CA"]
    assert info["key_provider"] == {"name": "kms", "id": spki_der(chain[-1]).hex()}
    leaf = decode_ratls(chain[0])
    ca = decode_ratls(chain[1])
    assert leaf is not None and ca is not None
    assert (leaf.usage, ca.usage) == ("app:custom", "app:ca")
    assert leaf.app_id == ca.app_id == bytes.fromhex(info["app_id"])
    quote = next(e for e in demo.app_items if e.kind == "getquote")
    assert leaf.quote == quote.quote
    binding = next(c for c in report.checks if c.id == "binding.report_data")
    assert binding.details["embedded_quote"]["comparison"] == "byte-equal"
    assert binding.details["warnings"] == [] and binding.details["notes"] == []
    assert quote.json["report_data"] == binding.details["report_data"]["expected"]


def test_demo_says_it_is_not_intel():
    demo = load_demo()
    assert demo.label == DEMO_LABEL == "demo root — not Intel"
    assert not demo.anchor.is_intel
    assert "Demo SGX Root CA — not Intel" in demo.anchor.cert.subject.rfc4514_string()
    assert "not Intel" in demo.description


def test_demo_does_not_verify_against_the_intel_root():
    demo = load_demo()
    report = verify_evidence(demo.items, demo.options(anchor=load_anchor(None)))
    assert report.verdict is not Verdict.PASS
    chains = [c for c in report.checks if c.id == "hardware.pck_chain"]
    assert len(chains) == 3 and all(c.status is CheckStatus.FAIL for c in chains)


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
    for name in DEMO_FILES:
        copy = tmp_path / f"tampered-{name}"
        shutil.copytree(pack, copy)
        data = bytearray((copy / name).read_bytes())
        data[200] ^= 0x01
        (copy / name).write_bytes(bytes(data))
        with pytest.raises(InputError, match=r"sha256 recorded in demo\.json"):
            load_demo(copy)


def test_a_pack_listing_other_evidence_is_refused(tmp_path):
    pack = tmp_path / "demo"
    shutil.copytree(resource_path("demo"), pack)
    manifest = json.loads((pack / "demo.json").read_text())
    manifest["evidence"] = ["getquote.json", "collateral.json"]
    (pack / "demo.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="regenerate the demo pack"):
        load_demo(pack)


def test_a_demo_resting_on_the_intel_root_is_refused(tmp_path):
    pack = tmp_path / "demo"
    shutil.copytree(resource_path("demo"), pack)
    intel = resource_path("intel_sgx_root_ca.der").read_bytes()
    (pack / DEMO_ANCHOR).write_bytes(intel)
    manifest = json.loads((pack / "demo.json").read_text())
    manifest["files"][DEMO_ANCHOR] = hashlib.sha256(intel).hexdigest()
    (pack / "demo.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="must use its own root"):
        load_demo(pack)


def test_the_verifier_does_not_import_qt():
    code = (
        "import sys, dstack_verifier.demo, dstack_verifier.verification, dstack_verifier.evidence\n"
        "dstack_verifier.demo.load_demo()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'PyQt5', 'PyQt6'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("allowed", [True, False])
def test_the_kms_is_asked_about_its_os_image(allowed: bool) -> None:
    """The KMS's on-chain check asks its own contract's allowedOsImages about the image its os.image_hash verified;
    an image the contract does not list fails it, naming the hash."""
    demo = load_demo()
    deployment = json.loads(resource_path("demo", "demo.json").read_text())["deployment"]
    image = deployment["os_image_hash"]
    kms_contract = "0x" + "4b" * 20
    with RpcNode(chain_id=8453, head=31_000_000) as node, NetClient(retries=0, timeout=5) as client:
        kms = node.add_kms(kms_contract)
        if allowed:
            kms.os_images[bytes.fromhex(image)] = 0
        options = demo.options(offline=False, onchain=OnchainOptions(kms_contract=kms_contract, rpc_url=node.url))
        report = verify_evidence(demo.items, options, client=client)
    found = {(c.entity, c.id): c for c in report.checks}
    assert found[("kms", "os.image_hash")].status is CheckStatus.PASS
    onchain = found[("kms", "source.onchain_registry")]
    if allowed:
        assert f"OS image hash 0x{image[:8]}… in allowedOsImages" in onchain.details["passed"]
    else:
        assert f"OS image hash 0x{image} is not in allowedOsImages of DstackKms" in onchain.details["failures"][0]


def _with_governance(chain_id: int, kms_contract: str) -> list:
    """The demo deployment, its Cloud answer naming on-chain governance on `chain_id`."""
    demo = load_demo()
    cloud = next(e for e in demo.items if e.kind == "cloud-attestations")
    answer = json.loads(cloud.data)
    answer["kms_info"].update({"chain_id": chain_id, "contract_address": kms_contract})
    return [detect(json.dumps(answer).encode(), cloud.name), *(e for e in demo.items if e is not cloud)]


def test_governance_on_a_chain_not_read_is_an_error_not_a_pass() -> None:
    """Governance the answer claims on a chain this inspector does not read is not checked: an error for each entity
    (verdict incomplete), never "no governance given" (which would let the verdict pass); a re-run says the same."""
    demo = load_demo()
    report = verify_evidence(_with_governance(137, "0x" + "4b" * 20), demo.options())
    found = {(c.entity, c.id): c for c in report.checks}
    for entity in ("app", "kms", "gateway"):
        check = found[(entity, "source.onchain_registry")]
        assert check.status is CheckStatus.ERROR and "unsupported chain '137'" in check.summary, check.summary
        assert "base-sepolia 84532" in check.summary and "not checked" in check.summary
    assert report.verdict is Verdict.INCOMPLETE
    again = verify_evidence([detect(report.to_json().encode(), "r.json")], demo.options())
    assert {(c.entity, c.id): c.status for c in again.checks} == {k: c.status for k, c in found.items()}


def test_governance_on_base_sepolia_is_read() -> None:
    demo = load_demo()
    kms_contract = "0x" + "4b" * 20
    with RpcNode(chain_id=84532, head=9_000_000) as node, NetClient(retries=0, timeout=5) as client:
        node.add_kms(kms_contract)
        options = demo.options(offline=False, rpc_urls={"base-sepolia": node.url})
        report = verify_evidence(_with_governance(84532, kms_contract), options, client=client)
    onchain = next(c for c in report.checks if c.entity == "kms" and c.id == "source.onchain_registry")
    assert onchain.anchor == "onchain@base-sepolia:9000000", (onchain.anchor, onchain.summary)
    assert onchain.details["chain_id"] == 84532


def test_a_chain_named_in_words_replays_to_the_same_error() -> None:
    """A Trust Center result names its chain in words ("BNB Smart Chain"); a report that recorded such a chain is
    re-run to the same error check, not refused (a name with control characters still is)."""
    demo = load_demo()
    report = verify_evidence(_with_governance(137, "0x" + "4b" * 20), demo.options())
    doc = json.loads(report.to_json())
    doc["policy"]["onchain"]["chain"] = "BNB Smart Chain"
    again = verify_evidence([detect(json.dumps(doc).encode(), "r.json")], demo.options())
    check = next(c for c in again.checks if c.id == "source.onchain_registry")
    assert check.status is CheckStatus.ERROR and "unsupported chain 'BNB Smart Chain'" in check.summary
    doc["policy"]["onchain"]["chain"] = "BNB\nSmart"
    with pytest.raises(InputError, match="unsupported chain"):
        verify_evidence([detect(json.dumps(doc).encode(), "r.json")], demo.options())
