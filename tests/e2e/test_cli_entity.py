"""`dstack-inspector verify` with one entity's whole evidence: event logs, app-compose, RA-TLS chains, on-chain state.

Real evidence only (tests/support/fixtures: the dstack lite GetQuote answer, the trust-center dataset1 app / gateway /
KMS), written into tmp_path in the forms dstack serves (GetQuote JSON, event log file, raw quote hex, app-compose
bytes, PEM chain, SCALE attestation JSON). No collateral exists for these quotes' FMSPCs, so the hardware collateral
checks skip (offline) or error (an unreachable PCCS) and the tests assert on the individual checks. The on-chain
check reads a real JSON-RPC node on loopback (tests/support/rpc_node.py); nothing here touches the internet.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from dstack_inspector.cli import main
from dstack_verifier.eventlog import MAX_PAYLOAD_BYTES, parse_event_log

from tests.support.fixtures import fixture_path
from tests.support.msgpack_v1 import encode_v1_attestation
from tests.support.rpc_node import RpcNode
from tests.support.scale import encode_attestation, scale_compact, scale_vec

HEAD = 31_000_000
COLLATERAL_CHECKS = ["hardware.collateral_signatures", "hardware.revocation", "hardware.tcb_status",
                     "hardware.collateral_freshness", "hardware.reference_engine"]
SOURCE_CHECKS = ["source.compose_hash", "source.mr_config_id", "source.onchain_registry"]
# The lite fixture's identity, as dstack's own tooling reports it.
LITE_APP_ID = "86b0e55f2fa8e4fb69d890f14f54d5612707646e"
LITE_MR_SYSTEM_PREFIX = "118f754a"
LITE_MR_AGGREGATED_PREFIX = "c758fa62"
# TD10 body offsets (after the 48-byte quote header) of the fields mr_system / mr_aggregated are made of.
TD_FIELDS = {"mrtd": 136, "mrconfig": 184, "mrowner": 232, "mrownerconfig": 280, "rtmr0": 328, "rtmr1": 376,
             "rtmr2": 424, "rtmr3": 472}


# -- helpers ---------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DSTACK_INSPECTOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PCCS_URL", raising=False)
    monkeypatch.delenv("DSTACK_INSPECTOR_DEBUG", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, dict[str, Any]]:
    code, out, err = run(capsys, *argv, "--json")
    assert err == "", err
    return code, json.loads(out)


def checks_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in report["checks"]}


def bad_input(capsys: pytest.CaptureFixture[str], *argv: object) -> str:
    """Runs a verification that must be refused as bad input; returns its one-line message."""
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    assert out == ""
    assert err.startswith("dstack-inspector: bad input: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def write_json(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path


@dataclass(frozen=True)
class Dataset:
    """One trust-center dataset1 entity in the forms dstack serves it."""

    quote_hex: str
    events: list[dict[str, Any]]
    vm_config: dict[str, Any]
    compose: str | None  # the exact app-compose text whose sha256 is (or, for the KMS, is not) the event's
    chain_pem: str | None
    main: dict[str, Any]

    def getquote(self, events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {"quote": self.quote_hex, "event_log": json.dumps(self.events if events is None else events),
                "vm_config": json.dumps(self.vm_config)}

    def event(self, name: str) -> tuple[int, dict[str, Any]]:
        return next((i, e) for i, e in enumerate(self.events) if e["imr"] == 3 and e["event"] == name)


def dataset(entity: str) -> Dataset:
    doc = json.loads(fixture_path("trust-center", f"dataset1-{entity}.json").read_text())
    main_fields = doc["main_fields"]
    return Dataset(
        quote_hex=doc["quote_hex"].removeprefix("0x"),
        events=doc["eventlog"],
        vm_config=doc["vm_config"],
        compose=doc["app_compose"],
        chain_pem=main_fields.get("app_cert"),
        main=main_fields,
    )


@pytest.fixture(scope="module")
def app() -> Dataset:
    return dataset("app")


@pytest.fixture(scope="module")
def gateway() -> Dataset:
    return dataset("gateway")


@pytest.fixture(scope="module")
def kms() -> Dataset:
    return dataset("kms")


@pytest.fixture(scope="module")
def lite() -> dict[str, Any]:
    return json.loads(fixture_path("dstack", "tdx-lite-getquote.json").read_text())


@pytest.fixture(scope="module")
def objects() -> dict[str, dict[str, Any]]:
    data = json.loads(fixture_path("trust-center", "debug-data-1.dataObjects.json").read_text())
    return {o["id"]: o["fields"] for o in data}


def td_field(quote: bytes, name: str) -> bytes:
    start = 48 + TD_FIELDS[name]
    return quote[start : start + 48]


def flip_hex(text: str, index: int = 0) -> str:
    """`text` with the hex digit at `index` changed (so one byte of the value differs)."""
    digit = "1" if text[index] != "1" else "2"
    return text[:index] + digit + text[index + 1 :]


# -- the lite GetQuote answer, offline -------------------------------------------------------------------------


def test_lite_getquote_offline(capsys, lite: dict[str, Any]) -> None:
    path = fixture_path("dstack", "tdx-lite-getquote.json")
    code, report = run_json(capsys, "verify", path, "--offline")
    checks = checks_of(report)
    # The fixture's vm_config was edited after capture (dstack-measurement.md §9.2): the hardware-measured
    # os-image-hash event disagrees with it, and that is reported naming both values. Everything else that can run
    # offline passes: the TDX-lite document recomputes MRTD and RTMR0-2 of the quote.
    assert code == 1 and report["verdict"] == "fail"
    image = checks["os.image_hash"]
    assert image["status"] == "fail"
    assert "07a2388c" in image["summary"] and "e6f5cfec" in image["summary"]
    for check_id in ("os.mrtd", "os.rtmr1", "os.rtmr2"):
        assert checks[check_id]["status"] == "pass", checks[check_id]
    assert checks["os.rtmr0"]["status"] == "warn"  # equal, with the ACPI tables taken as the log gives them
    assert [c["id"] for c in report["checks"] if c["status"] == "fail"] == ["os.image_hash"]
    for check_id in COLLATERAL_CHECKS:
        assert checks[check_id]["status"] == "skip" and "offline" in checks[check_id]["summary"], check_id
    for check_id in ("hardware.quote_structure", "hardware.pck_chain", "hardware.qe_report",
                     "hardware.quote_signature"):
        assert checks[check_id]["status"] == "pass", checks[check_id]
    replay = checks["eventlog.replay"]
    assert replay["status"] == "pass" and replay["anchor"] == "quote", replay
    assert replay["details"]["events"] == 29 and replay["details"]["mismatches"] == []
    payloads = checks["eventlog.rtmr3_payloads"]
    assert payloads["status"] == "pass", payloads
    assert [row["name"] for row in payloads["details"]["events"]] == [
        "system-preparing", "app-id", "compose-hash", "instance-id", "boot-mr-done", "os-image-hash",
        "key-provider", "storage-fs", "system-ready"]
    config = checks["source.mr_config_id"]
    assert config["status"] == "pass" and config["details"]["version"] == 1, config
    assert checks["source.compose_hash"]["status"] == "skip"  # no compose given: not required
    assert checks["binding.report_data"]["status"] == "skip"
    assert checks["source.onchain_registry"]["status"] == "skip"

    events = json.loads(lite["event_log"])
    payload = {e["event"]: e["event_payload"] for e in events if e["imr"] == 3}
    entity = report["entities"]["app"]
    info = entity["app_info"]
    assert info["app_id"] == payload["app-id"] == LITE_APP_ID
    assert info["compose_hash"] == payload["compose-hash"]
    assert config["details"]["mr_config_id"] == "01" + payload["compose-hash"] + "00" * 15
    assert info["instance_id"] == payload["instance-id"] and len(info["instance_id"]) == 40
    assert info["key_provider"]["name"] == "kms"
    assert bytes.fromhex(payload["key-provider"]) == json.dumps(info["key_provider"], separators=(",", ":")).encode()
    assert info["os_image_hash"] == payload["os-image-hash"]
    assert info["storage_fs"] == "zfs" and info["system_ready"] and info["boot_mr_done"]

    # Derived values, recomputed here from the quote's bytes (spec §6.3) and compared with the known prefixes.
    quote = bytes.fromhex(lite["quote"])
    boot = b"".join(td_field(quote, f) for f in ("mrtd", "rtmr0", "rtmr1", "rtmr2"))
    config_fields = b"".join(td_field(quote, f) for f in ("mrconfig", "mrowner", "mrownerconfig"))
    mr_key_provider = hashlib.sha256(bytes.fromhex(payload["key-provider"])).digest()
    derived = entity["derived"]
    assert derived["mr_key_provider"] == mr_key_provider.hex()
    assert derived["mr_system"] == hashlib.sha256(boot + mr_key_provider).hexdigest()
    assert derived["mr_system"].startswith(LITE_MR_SYSTEM_PREFIX)
    assert any(config_fields) and derived["mr_aggregated_includes_config"] is True
    aggregated = hashlib.sha256(boot + td_field(quote, "rtmr3") + config_fields).hexdigest()
    assert derived["mr_aggregated"] == aggregated
    assert derived["mr_aggregated"].startswith(LITE_MR_AGGREGATED_PREFIX)

    assert entity["event_log"]["source"] == str(path) and len(entity["event_log"]["events"]) == 29
    assert entity["vm_config"] == json.loads(lite["vm_config"])
    assert [(i["kind"], i["sha256"]) for i in report["inputs"]] == [
        ("getquote", hashlib.sha256(path.read_bytes()).hexdigest())]


@pytest.mark.parametrize("variant", ["legacy", None])
def test_a_legacy_boot_is_not_checked_the_lite_way(capsys, tmp_path: Path, lite: dict[str, Any],
                                                   variant: str | None) -> None:
    """vm_config carries the TDX-lite material on legacy boots too; as in dstack's verifier, the variant picks the
    path (absent means legacy). A legacy boot needs the image (its ACPI tables are to be recomputed), so offline
    without one the OS checks skip instead of passing on the lite document."""
    vm = json.loads(lite["vm_config"])
    if variant is None:
        del vm["tdx_attestation_variant"]
    else:
        vm["tdx_attestation_variant"] = variant
    assert "tdx_measurement" in vm
    path = write_json(tmp_path / "getquote.json", {**lite, "vm_config": json.dumps(vm)})
    code, report = run_json(capsys, "verify", path, "--offline")
    checks = checks_of(report)
    assert code == 3  # incomplete: neither the image nor collateral offline
    for check_id in ("os.image_hash", "os.mrtd", "os.rtmr0", "os.rtmr1", "os.rtmr2"):
        assert checks[check_id]["status"] == "skip", checks[check_id]
        assert checks[check_id]["details"].get("path") != "tdx-lite"
    assert "image" in checks["os.image_hash"]["summary"]


def test_an_unknown_attestation_variant_fails_the_os_checks(capsys, tmp_path: Path, lite: dict[str, Any]) -> None:
    vm = {**json.loads(lite["vm_config"]), "tdx_attestation_variant": "auto"}
    path = write_json(tmp_path / "getquote.json", {**lite, "vm_config": json.dumps(vm)})
    code, report = run_json(capsys, "verify", path, "--offline")
    checks = checks_of(report)
    assert code == 1
    for check_id in ("os.image_hash", "os.mrtd", "os.rtmr0", "os.rtmr1", "os.rtmr2"):
        assert checks[check_id]["status"] == "fail" and "'auto'" in checks[check_id]["summary"], checks[check_id]


# -- key binding: GetQuote JSON + the app's RA-TLS chain -------------------------------------------------------


def test_app_getquote_with_ratls_chain(capsys, tmp_path: Path, app: Dataset, objects: dict[str, Any]) -> None:
    getquote = write_json(tmp_path / "getquote.json", app.getquote())
    assert app.chain_pem is not None
    chain_file = tmp_path / "app-cert.pem"
    chain_file.write_text(app.chain_pem)
    code, report = run_json(capsys, "verify", getquote, chain_file, "--offline")
    assert code == 3  # collateral offline
    checks = checks_of(report)
    assert checks["eventlog.replay"]["status"] == "pass"
    assert checks["eventlog.rtmr3_payloads"]["status"] == "pass"
    binding = checks["binding.report_data"]
    assert binding["status"] == "pass", binding["summary"]

    chain = x509.load_pem_x509_certificates(app.chain_pem.encode())
    assert len(chain) == 3
    leaf_spki = chain[0].public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    root_spki = chain[-1].public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    quote = bytes.fromhex(app.quote_hex)
    report_data = quote[48 + 520 : 48 + 584]
    assert hashlib.sha512(b"ratls-cert:" + leaf_spki).digest() == report_data
    # The check names the key it found bound: the leaf's SubjectPublicKeyInfo.
    bound = binding["details"]["bound_key"]
    assert bound["spki_der"] == leaf_spki.hex()
    assert bound["spki_sha256"] == hashlib.sha256(leaf_spki).hexdigest()
    assert bound["spki_sha256"][:16] in binding["summary"]
    leaf_cn = chain[0].subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert f"'{leaf_cn}'" in binding["summary"]
    assert binding["details"]["report_data"]["expected"] == binding["details"]["report_data"]["actual"]
    assert binding["details"]["report_data"]["actual"] == report_data.hex()
    assert binding["details"]["embedded_quote"]["comparison"] in ("byte-equal", "same-body")

    # The KMS CA key named by the key-provider event is the chain's root, and the KMS's on-chain cert_pubkey.
    _, key_provider = app.event("key-provider")
    provider = json.loads(bytes.fromhex(key_provider["event_payload"]))
    assert provider["name"] == "kms"
    kms_ca = bytes.fromhex(provider["id"])
    assert kms_ca == root_spki == bytes.fromhex(objects["kms-main"]["cert_pubkey"].removeprefix("0x"))
    anchor = binding["details"]["chain"]["anchor"]
    assert anchor["kms_ca_pubkey_sha256"] == anchor["root_spki_sha256"] == hashlib.sha256(kms_ca).hexdigest()
    assert anchor["result"].startswith("the root certificate's SubjectPublicKeyInfo equals the KMS CA public key")
    assert report["entities"]["app"]["app_info"]["app_id"] == app.main["app_id"]


def test_chain_as_separate_der_files(capsys, tmp_path: Path, app: Dataset) -> None:
    """Certificates from several files (DER here) combine in the order given, leaf first."""
    assert app.chain_pem is not None
    files = []
    for i, cert in enumerate(x509.load_pem_x509_certificates(app.chain_pem.encode())):
        files.append(tmp_path / f"cert{i}.der")
        files[-1].write_bytes(cert.public_bytes(Encoding.DER))
    getquote = write_json(tmp_path / "getquote.json", app.getquote())
    code, report = run_json(capsys, "verify", getquote, *files, "--offline")
    assert code == 3
    assert checks_of(report)["binding.report_data"]["status"] == "pass"
    assert {i["kind"] for i in report["inputs"]} == {"getquote", "certificate"}


# -- app-compose -----------------------------------------------------------------------------------------------


def test_gateway_compose_hash_passes(capsys, tmp_path: Path, gateway: Dataset) -> None:
    assert gateway.compose is not None
    compose = tmp_path / "app-compose.json"
    compose.write_bytes(gateway.compose.encode())  # the exact bytes: dataset1 keeps the compose as a string
    _, event = gateway.event("compose-hash")
    assert hashlib.sha256(compose.read_bytes()).hexdigest() == event["event_payload"]
    getquote = write_json(tmp_path / "getquote.json", gateway.getquote())
    code, report = run_json(capsys, "verify", getquote, compose, "--offline")
    assert code == 3
    check = checks_of(report)["source.compose_hash"]
    assert check["status"] == "pass" and check["anchor"] == "quote", check
    assert check["details"]["calculated"] == check["details"]["event"] == event["event_payload"]
    assert event["event_payload"] in check["summary"]
    assert report["entities"]["app"]["app_compose"]["name"] == "base-gateway"
    assert {i["kind"] for i in report["inputs"]} == {"getquote", "app-compose"}


def test_kms_placeholder_compose_fails(capsys, tmp_path: Path, kms: Dataset) -> None:
    assert kms.compose is not None
    compose = tmp_path / "app-compose.json"
    compose.write_bytes(kms.compose.encode())
    getquote = write_json(tmp_path / "getquote.json", kms.getquote())
    code, report = run_json(capsys, "verify", getquote, compose, "--offline")
    assert code == 1 and report["verdict"] == "fail"
    check = checks_of(report)["source.compose_hash"]
    assert check["status"] == "fail"
    calculated = hashlib.sha256(kms.compose.encode()).hexdigest()
    _, event = kms.event("compose-hash")
    assert calculated != event["event_payload"]
    assert calculated in check["summary"] and event["event_payload"] in check["summary"]
    # Only the compose disagrees: the event log itself is bound to the quote.
    assert checks_of(report)["eventlog.rtmr3_payloads"]["status"] == "pass"


# -- combining evidence files ----------------------------------------------------------------------------------


def test_event_log_file_and_raw_quote_hex_combine(capsys, tmp_path: Path, gateway: Dataset) -> None:
    quote_file = fixture_path("trust-center", "dataset1-gateway.quote.hex")
    log = write_json(tmp_path / "eventlog.json", gateway.events)
    assert gateway.compose is not None
    compose = tmp_path / "app-compose.json"
    compose.write_text(gateway.compose)
    code, report = run_json(capsys, "verify", quote_file, log, compose, "--offline")
    assert code == 3
    checks = checks_of(report)
    for check_id in ("eventlog.replay", "eventlog.rtmr3_payloads", "source.compose_hash", "source.mr_config_id"):
        assert checks[check_id]["status"] == "pass", checks[check_id]
    entity = report["entities"]["app"]
    assert entity["event_log"]["source"] == str(log)
    assert "vm_config" not in entity  # a raw quote carries none
    assert [i["kind"] for i in report["inputs"]] == ["quote", "event-log", "app-compose"]


def test_two_event_logs_are_bad_input(capsys, tmp_path: Path, gateway: Dataset) -> None:
    getquote = write_json(tmp_path / "getquote.json", gateway.getquote())
    log = write_json(tmp_path / "eventlog.json", gateway.events)
    err = bad_input(capsys, "verify", getquote, log, "--offline")
    assert "two event logs" in err and str(getquote) in err and str(log) in err
    other = write_json(tmp_path / "eventlog2.json", gateway.events)
    err = bad_input(capsys, "verify", fixture_path("trust-center", "dataset1-gateway.quote.hex"), log, other,
                    "--offline")
    assert "several event logs" in err


def test_two_composes_are_bad_input(capsys, tmp_path: Path, gateway: Dataset, kms: Dataset) -> None:
    assert gateway.compose is not None and kms.compose is not None
    first, second = tmp_path / "gateway-compose.json", tmp_path / "kms-compose.json"
    first.write_text(gateway.compose)
    second.write_text(kms.compose)
    getquote = write_json(tmp_path / "getquote.json", gateway.getquote())
    err = bad_input(capsys, "verify", getquote, first, second, "--offline")
    assert "several app-compose files" in err and str(first) in err and str(second) in err


def attestation_blob(quote: bytes, events: list[dict[str, Any]], report_data: bytes, config: str) -> bytes:
    """dstack's `into_stripped` log (dstack-measurement §7.3): of the firmware events only the three ACPI DATA ones,
    digests kept; the runtime events with their digests emptied; then the runtime events themselves."""
    parsed = parse_event_log(events, "events")
    runtime = [e for e in parsed if e.imr == 3]
    acpi = [e for e in parsed if e.imr == 0 and e.name.startswith("acpi-")]
    assert len(acpi) == 3
    log = [*acpi, *(e.model_copy(update={"digest": None}) for e in runtime)]
    return encode_attestation(quote, log, runtime, report_data, config)


def v1_attestation_blob(quote: bytes, events: list[dict[str, Any]], report_data: bytes, config: str,
                        **kw: Any) -> bytes:
    """The same content as `attestation_blob`, as dstack's V1 (MessagePack) attestation."""
    parsed = parse_event_log(events, "events")
    runtime = [e for e in parsed if e.imr == 3]
    acpi = [e for e in parsed if e.imr == 0 and e.name.startswith("acpi-")]
    return encode_v1_attestation(quote, [*acpi, *runtime], runtime, report_data, config, **kw)


def test_scale_compact_modes() -> None:
    assert scale_compact(1) == b"\x04"
    assert scale_compact(64) == b"\x01\x01"
    assert scale_compact(5006) == (5006 * 4 + 1).to_bytes(2, "little")
    assert scale_compact(1 << 14) == b"\x02\x00\x01\x00"
    assert scale_compact(1 << 30) == b"\x03\x00\x00\x00\x40"


def test_attestation_json_decodes_and_its_events_verify(capsys, tmp_path: Path, lite: dict[str, Any]) -> None:
    quote = bytes.fromhex(lite["quote"])
    events = json.loads(lite["event_log"])
    blob = attestation_blob(quote, events, bytes.fromhex(lite["report_data"]), lite["vm_config"])
    path = write_json(tmp_path / "attestation.json", {"attestation": blob.hex()})
    code, report = run_json(capsys, "verify", path, "--offline")
    checks = checks_of(report)
    # As for the GetQuote form: only the fixture's edited vm_config disagrees with the measured os-image-hash.
    assert code == 1
    assert [c["id"] for c in report["checks"] if c["status"] == "fail"] == ["os.image_hash"]
    for check_id in ("hardware.quote_structure", "hardware.quote_signature", "eventlog.replay",
                     "eventlog.rtmr3_payloads", "source.mr_config_id", "os.mrtd", "os.rtmr1", "os.rtmr2"):
        assert checks[check_id]["status"] == "pass", checks[check_id]
    assert checks["os.rtmr0"]["status"] == "warn"  # TDX-lite's ACPI tables, taken as the stripped log gives them
    # The stripped log replays RTMR3 only; RTMR0-2 are compared by value, not event by event.
    assert checks["eventlog.replay"]["details"]["not_replayed"] == ["rtmr0", "rtmr1", "rtmr2"]
    assert "stripped" in checks["eventlog.replay"]["summary"]
    assert checks["os.rtmr1"]["details"]["logged_events"] is None
    entity = report["entities"]["app"]
    assert entity["app_info"]["app_id"] == LITE_APP_ID
    assert entity["derived"]["mr_system"].startswith(LITE_MR_SYSTEM_PREFIX)
    assert entity["derived"]["mr_aggregated"].startswith(LITE_MR_AGGREGATED_PREFIX)
    assert entity["vm_config"] == json.loads(lite["vm_config"])
    logged = entity["event_log"]["events"]
    assert len(logged) == 3 + sum(e["imr"] == 3 for e in events)
    assert all(e["event_payload"] for e in logged if e["event"] == "app-id")
    assert [i["kind"] for i in report["inputs"]] == ["attestation"]

    # The same attestation with one runtime payload byte changed no longer replays to RTMR3.
    runtime_app_id = scale_vec(b"app-id") + scale_vec(bytes.fromhex(LITE_APP_ID))
    # It is there twice: in the stripped log and in runtime_events, the list RTMR3 is replayed from (as dstack does).
    assert blob.count(runtime_app_id) == 2
    at = blob.rindex(runtime_app_id)
    changed = scale_vec(b"app-id") + scale_vec(bytes.fromhex(flip_hex(LITE_APP_ID)))
    tampered = blob[:at] + changed + blob[at + len(runtime_app_id):]
    path = write_json(tmp_path / "tampered.json", {"attestation": tampered.hex()})
    code, report = run_json(capsys, "verify", path, "--offline")
    assert code == 1
    checks = checks_of(report)
    assert checks["eventlog.rtmr3_payloads"]["status"] == "fail"
    assert checks["hardware.quote_signature"]["status"] == "pass"  # the quote itself is untouched


def test_v1_attestation_verifies_as_v0_does(capsys, tmp_path: Path, lite: dict[str, Any]) -> None:
    quote, events = bytes.fromhex(lite["quote"]), json.loads(lite["event_log"])
    args = (quote, events, bytes.fromhex(lite["report_data"]), lite["vm_config"])
    reports = []
    for name, blob in (("v0", attestation_blob(*args)), ("v1", v1_attestation_blob(*args))):
        path = write_json(tmp_path / f"{name}.json", {"attestation": blob.hex()})
        code, report = run_json(capsys, "verify", path, "--offline")
        assert code == 1
        reports.append(report)
    v0, v1 = ({c["id"]: (c["status"], c["summary"]) for c in r["checks"]} for r in reports)
    assert v1 == v0 and v1["os.rtmr0"][0] == "warn" and v1["eventlog.rtmr3_payloads"][0] == "pass"
    assert reports[1]["entities"]["app"]["app_info"] == reports[0]["entities"]["app"]["app_info"]
    assert [r["entities"]["app"]["attestation"]["format"] for r in reports] == ["scale-v0", "msgpack-v1"]
    assert reports[1]["entities"]["app"]["attestation"]["report_data"] == lite["report_data"]

    # One runtime payload byte changed in the V1 blob: RTMR3 no longer replays, the quote still verifies.
    blob = v1_attestation_blob(*args)
    app_id = bytes.fromhex(LITE_APP_ID)
    at = blob.rindex(app_id)  # the last copy: the one in stack.runtime_events, which RTMR3 is replayed from
    tampered = blob[:at] + bytes([app_id[0] ^ 1]) + blob[at + 1:]
    path = write_json(tmp_path / "tampered.json", {"attestation": tampered.hex()})
    code, report = run_json(capsys, "verify", path, "--offline")
    checks = checks_of(report)
    assert code == 1 and checks["eventlog.rtmr3_payloads"]["status"] == "fail"
    assert checks["hardware.quote_signature"]["status"] == "pass"

    # A platform this inspector does not verify is bad input, named.
    path = write_json(tmp_path / "snp.json", {"attestation": v1_attestation_blob(*args).replace(
        b"\xa4kind\xa3tdx", b"\xa4kind\xa7sev-snp").hex()})
    err = bad_input(capsys, "verify", path, "--offline")
    assert "sev-snp" in err and "only tdx" in err and "attestation.platform.kind" in err


# -- tampering, at the command line ----------------------------------------------------------------------------


def test_tampered_rtmr3_payload(capsys, tmp_path: Path, gateway: Dataset) -> None:
    index, event = gateway.event("app-id")
    events = [dict(e) for e in gateway.events]
    events[index]["event_payload"] = flip_hex(event["event_payload"], 7)  # one byte; the digest field is kept
    getquote = write_json(tmp_path / "getquote.json", gateway.getquote(events))
    code, report = run_json(capsys, "verify", getquote, "--offline")
    assert code == 1 and report["verdict"] == "fail"
    checks = checks_of(report)
    payloads = checks["eventlog.rtmr3_payloads"]
    assert payloads["status"] == "fail"
    assert payloads["summary"].startswith(f"RTMR3 event {index} (app-id): digest field"), payloads["summary"]
    row = next(r for r in payloads["details"]["events"] if r["index"] == index)
    assert row["digest_field_matches"] is False and row["payload_hex"] == events[index]["event_payload"]
    assert checks["eventlog.replay"]["status"] == "fail" and "RTMR3" in checks["eventlog.replay"]["summary"]
    # The identity of an unbound log is not believed: no app info, so the source checks have nothing to use.
    assert "app_info" not in report["entities"]["app"]
    assert checks["source.mr_config_id"]["status"] != "pass"


def test_tampered_firmware_digest(capsys, tmp_path: Path, gateway: Dataset) -> None:
    index = next(i for i, e in enumerate(gateway.events) if e["imr"] == 1)
    events = [dict(e) for e in gateway.events]
    events[index]["digest"] = flip_hex(events[index]["digest"], 10)
    getquote = write_json(tmp_path / "getquote.json", gateway.getquote(events))
    code, report = run_json(capsys, "verify", getquote, "--offline")
    assert code == 1
    checks = checks_of(report)
    replay = checks["eventlog.replay"]
    assert replay["status"] == "fail"
    assert replay["summary"].startswith("Event log does not replay to RTMR1:"), replay["summary"]
    assert replay["details"]["mismatches"] == ["rtmr1"]
    registers = replay["details"]["registers"]
    assert registers["rtmr1"]["replayed"] in replay["summary"] and registers["rtmr1"]["quoted"] in replay["summary"]
    assert all(registers[f"rtmr{i}"]["match"] for i in (0, 2, 3))
    assert checks["eventlog.rtmr3_payloads"]["status"] == "pass"  # RTMR3 is untouched


def test_tampered_compose_byte(capsys, tmp_path: Path, gateway: Dataset) -> None:
    assert gateway.compose is not None
    data = gateway.compose.encode().replace(b'"base-gateway"', b'"base-gatewaz"', 1)
    assert len(data) == len(gateway.compose.encode()) and data != gateway.compose.encode()
    compose = tmp_path / "app-compose.json"
    compose.write_bytes(data)
    getquote = write_json(tmp_path / "getquote.json", gateway.getquote())
    code, report = run_json(capsys, "verify", getquote, compose, "--offline")
    assert code == 1
    check = checks_of(report)["source.compose_hash"]
    assert check["status"] == "fail"
    _, event = gateway.event("compose-hash")
    assert hashlib.sha256(data).hexdigest() in check["summary"] and event["event_payload"] in check["summary"]
    assert check["details"]["compose"]["name"] == "base-gatewaz"  # what the reviewer reads is what was hashed


def test_report_data_not_bound_to_the_certificate(capsys, tmp_path: Path, app: Dataset, gateway: Dataset) -> None:
    # The gateway's quote with the app's RA-TLS chain: a genuine quote and a genuine chain that do not belong together.
    assert app.chain_pem is not None
    chain_file = tmp_path / "app-cert.pem"
    chain_file.write_text(app.chain_pem)
    getquote = write_json(tmp_path / "getquote.json", gateway.getquote())
    code, report = run_json(capsys, "verify", getquote, chain_file, "--offline")
    assert code == 1
    checks = checks_of(report)
    binding = checks["binding.report_data"]
    assert binding["status"] == "fail"
    assert "report_data of the verified quote is not" in binding["summary"], binding["summary"]
    leaf = x509.load_pem_x509_certificates(app.chain_pem.encode())[0]
    leaf_spki = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert hashlib.sha256(leaf_spki).hexdigest()[:16] in binding["summary"]
    assert binding["details"]["report_data"]["expected"] != binding["details"]["report_data"]["actual"]
    assert binding["details"]["embedded_quote"]["comparison"] == "different"
    # The chain itself still anchors at the KMS CA of the gateway's key-provider event: only the binding fails.
    assert binding["details"]["chain"]["anchor"]["result"].startswith("the root certificate's SubjectPublicKeyInfo")
    for check_id in ("eventlog.replay", "eventlog.rtmr3_payloads", "hardware.quote_signature"):
        assert checks[check_id]["status"] == "pass", check_id


# -- on-chain governance, against a JSON-RPC node on loopback --------------------------------------------------


@dataclass(frozen=True)
class Governance:
    kms: str
    app: str
    app_compose_hash: str
    gateway_app: str
    gateway_compose_hash: str
    os_image_hash: str


@pytest.fixture(scope="module")
def governance(objects: dict[str, dict[str, Any]]) -> Governance:
    kms_main, app_main = objects["kms-main"], objects["app-main"]
    return Governance(
        kms=kms_main["registry_smart_contract"].rsplit("/", 1)[-1],
        app=app_main["app_id"],
        app_compose_hash=app_main["compose_hash"],
        gateway_app=kms_main["gateway_app_id"],
        gateway_compose_hash=json.loads(objects["gateway-event-logs-imr3"]["compose-hash"])["event_payload"],
        os_image_hash=app_main["os_image_hash"],
    )


def start_node(g: Governance, *, app_compose_hashes: list[str] | None = None) -> RpcNode:
    node = RpcNode(chain_id=8453, head=HEAD).start()
    node.add_app(g.app, compose_hashes=[g.app_compose_hash] if app_compose_hashes is None else app_compose_hashes)
    node.add_app(g.gateway_app, compose_hashes=[g.gateway_compose_hash])
    kms = node.add_kms(g.kms, gateway_app_id=g.gateway_app)
    kms.register_app(g.app)
    kms.register_app(g.gateway_app)
    kms.os_images[bytes.fromhex(g.os_image_hash)] = 0
    return node


@pytest.fixture
def node(governance: Governance) -> Iterator[RpcNode]:
    rpc = start_node(governance)
    yield rpc
    rpc.stop()


@pytest.fixture
def no_pccs() -> Iterator[str]:
    """A PCCS URL on loopback that refuses every GET at once (HTTP 501, not retried): collateral cannot be fetched,
    so these online runs never reach the internet and the hardware collateral checks are `error`."""
    server = RpcNode().start()
    yield server.url
    server.stop()


def onchain_args(g: Governance, rpc_url: str, pccs_url: str) -> list[str]:
    return ["--kms-contract", g.kms, "--rpc-url", rpc_url, "--pccs-url", pccs_url, "--no-cache"]


@pytest.mark.parametrize("entity", ["app", "gateway"])
def test_onchain_registry_passes(capsys, tmp_path: Path, entity: str, node: RpcNode, no_pccs: str,
                                 governance: Governance) -> None:
    data = dataset(entity)
    getquote = write_json(tmp_path / "getquote.json", data.getquote())
    code, report = run_json(capsys, "verify", getquote, *onchain_args(governance, node.url, no_pccs))
    assert code == 3  # the collateral could not be fetched
    checks = checks_of(report)
    assert checks["hardware.collateral_signatures"]["status"] == "error"
    check = checks["source.onchain_registry"]
    assert check["status"] == "pass", check["summary"]
    assert check["anchor"] == f"onchain@base:{HEAD}"
    assert check["details"]["block"] == HEAD and check["details"]["chain_id"] == 8453
    app_id = governance.app if entity == "app" else governance.gateway_app
    assert check["details"]["contracts"]["DstackApp"].lower() == "0x" + app_id.lower().removeprefix("0x")
    assert check["details"]["contracts"]["DstackKms"] == governance.kms
    _, compose_event = data.event("compose-hash")
    allowed = f"compose hash 0x{compose_event['event_payload'][:8]}… in allowedComposeHashes"
    assert allowed in check["summary"] and "isAppAllowed of DstackKms" in check["summary"]
    # Every eth_call asked for the pinned block.
    calls = node.calls()
    assert calls and all(c.params[1] == hex(HEAD) for c in calls)
    assert any(i["kind"] == "recording" for i in report["inputs"])


def test_onchain_unknown_compose_hash_fails(capsys, tmp_path: Path, governance: Governance, no_pccs: str,
                                            app: Dataset) -> None:
    rpc = start_node(governance, app_compose_hashes=["ab" * 32])
    try:
        getquote = write_json(tmp_path / "getquote.json", app.getquote())
        code, report = run_json(capsys, "verify", getquote, *onchain_args(governance, rpc.url, no_pccs))
    finally:
        rpc.stop()
    assert code == 1 and report["verdict"] == "fail"
    check = checks_of(report)["source.onchain_registry"]
    assert check["status"] == "fail" and check["anchor"] == f"onchain@base:{HEAD}"
    assert f"compose hash 0x{governance.app_compose_hash} is not in allowedComposeHashes" in check["summary"]
    assert check["summary"].endswith("(and 1 more)")  # the KMS's isAppAllowed says no as well
    assert check["details"]["failures"][1].startswith(f"isAppAllowed of DstackKms {governance.kms} refused")


def test_onchain_node_down_is_an_error(capsys, tmp_path: Path, governance: Governance, no_pccs: str,
                                       app: Dataset) -> None:
    rpc = start_node(governance)
    url = rpc.url
    rpc.stop()
    getquote = write_json(tmp_path / "getquote.json", app.getquote())
    code, report = run_json(capsys, "verify", getquote, *onchain_args(governance, url, no_pccs))
    assert code == 3 and report["verdict"] == "incomplete"
    check = checks_of(report)["source.onchain_registry"]
    assert check["status"] == "error", check
    assert check["summary"].startswith("on-chain registry read failed:") and url.rstrip("/") in check["summary"]
    assert check["anchor"] == "none"


def test_onchain_recording_replays_offline(capsys, tmp_path: Path, governance: Governance, no_pccs: str,
                                          app: Dataset) -> None:
    getquote = write_json(tmp_path / "getquote.json", app.getquote())
    saved = tmp_path / "r.json"
    rpc = start_node(governance)
    try:
        code, first = run_json(capsys, "verify", getquote, *onchain_args(governance, rpc.url, no_pccs),
                               "--output", saved)
    finally:
        rpc.stop()
    assert code == 3
    live = checks_of(first)["source.onchain_registry"]
    assert live["status"] == "pass"
    assert [i["kind"] for i in first["inputs"]] == ["getquote", "recording"]

    # The node is gone; the report's recorded inputs, JSON-RPC answers included, give the same check.
    code, again = run_json(capsys, "verify", saved, "--offline")
    assert code == 3
    replayed = checks_of(again)["source.onchain_registry"]
    assert (replayed["status"], replayed["anchor"], replayed["summary"]) == (live["status"], live["anchor"],
                                                                            live["summary"])
    assert replayed["details"]["rpc_url"] == live["details"]["rpc_url"]
    for check_id in ("eventlog.replay", "eventlog.rtmr3_payloads", "source.mr_config_id"):
        assert checks_of(again)[check_id]["status"] == "pass"
    # The contracts come from the report's policy, where the first run wrote them.
    onchain = {"kms_contract": governance.kms, "chain": "base", "rpc_url": rpc.url, "app_contract": None}
    assert first["policy"]["onchain"] == again["policy"]["onchain"] == onchain
    # Other contracts given on the command line win; the recording does not hold their answers: skip, offline.
    code, other = run_json(capsys, "verify", saved, "--offline", "--kms-contract", "0x" + "44" * 20,
                           "--rpc-url", rpc.url)
    assert code == 3
    check = checks_of(other)["source.onchain_registry"]
    assert check["status"] == "skip" and "not in the recorded evidence" in check["summary"], check


@pytest.mark.parametrize(
    ("onchain", "field"),
    [
        ({"kms_contract": 5}, "policy.onchain"),
        ({"kms_contract": "0x" + "44" * 20, "evil": "x"}, "policy.onchain"),
        ({"chain": "base"}, "policy.onchain"),
        ("base", "policy.onchain"),
        ({"kms_contract": "0x" + "44" * 20, "chain": "polygon\n"}, "policy.onchain.chain"),
        ({"kms_contract": "0x" + "44" * 20, "chain": "base", "rpc_url": "file:///etc/passwd", "app_contract": None},
         "policy.onchain.rpc_url"),
    ],
)
def test_report_with_malformed_onchain_options(capsys, tmp_path: Path, app: Dataset, onchain: Any,
                                               field: str) -> None:
    getquote = write_json(tmp_path / "getquote.json", app.getquote())
    saved = tmp_path / "r.json"
    code, _ = run_json(capsys, "verify", getquote, "--offline", "--output", saved)
    assert code == 3
    report = json.loads(saved.read_text())
    report["policy"]["onchain"] = onchain
    write_json(saved, report)
    err = bad_input(capsys, "verify", saved, "--offline")
    assert f"{saved}, field {field}: " in err, err


# -- phases ----------------------------------------------------------------------------------------------------


def test_phases_hardware_with_a_full_entity(capsys, tmp_path: Path, gateway: Dataset, governance: Governance,
                                            node: RpcNode, no_pccs: str) -> None:
    assert gateway.compose is not None
    compose = tmp_path / "app-compose.json"
    compose.write_text(gateway.compose)
    getquote = write_json(tmp_path / "getquote.json", gateway.getquote())
    code, report = run_json(capsys, "verify", getquote, compose, "--phases", "hardware",
                            *onchain_args(governance, node.url, no_pccs))
    assert code == 3  # collateral error
    checks = checks_of(report)
    for check_id in SOURCE_CHECKS:
        assert checks[check_id]["status"] == "skip", checks[check_id]
        assert checks[check_id]["summary"] == "skipped: phase source not selected"
    assert checks["eventlog.replay"]["status"] == "pass"
    assert checks["eventlog.rtmr3_payloads"]["status"] == "pass"
    assert report["policy"]["phases"] == ["hardware"]
    # The source phase was not asked for: the chain was not read either (not even its id or head block).
    assert node.requests == [] and node.http_requests == 0


# -- bad input inside a GetQuote JSON --------------------------------------------------------------------------


Change = Callable[[list[dict[str, Any]]], None]


def _set(index: int, key: str, value: Any) -> Change:
    def change(events: list[dict[str, Any]]) -> None:
        events[index][key] = value

    return change


def _drop(index: int, key: str) -> Change:
    def change(events: list[dict[str, Any]]) -> None:
        del events[index][key]

    return change


def _replace(index: int, value: Any) -> Change:
    def change(events: list[dict[str, Any]]) -> None:
        events[index] = value

    return change


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (_set(0, "imr", "zero"), "event_log[0].imr", "expected an integer"),
        (_set(1, "imr", 4), "event_log[1].imr", "out of range"),
        (_set(2, "event_type", [1]), "event_log[2].event_type", "expected an integer, got array"),
        (_set(3, "digest", "zz" * 48), "event_log[3].digest", "not hex"),
        (_set(3, "digest", 7), "event_log[3].digest", "expected a hex string, got number"),
        (_set(4, "digest", "00" * 49), "event_log[4].digest", "more than the 48 allowed"),
        (_drop(5, "event_payload"), "event_log[5].event_payload", "missing"),
        (_drop(6, "imr"), "event_log[6].imr", "missing"),
        (_set(21, "event", 42), "event_log[21].event", "expected a string, got number"),
        (_set(22, "event_payload", "00" * (MAX_PAYLOAD_BYTES + 1)), "event_log[22].event_payload",
         f"more than the {MAX_PAYLOAD_BYTES} allowed"),
        (_set(23, "event_payload", "abc"), "event_log[23].event_payload", "odd number of hex digits"),
        (_replace(7, "not an event"), "event_log[7]", "expected an event object, got string"),
    ],
)
def test_malformed_event_log_in_getquote(capsys, tmp_path: Path, lite: dict[str, Any], change: Change, field: str,
                                         message: str) -> None:
    events = json.loads(lite["event_log"])
    change(events)
    path = write_json(tmp_path / "getquote.json", {**lite, "event_log": json.dumps(events)})
    err = bad_input(capsys, "verify", path, "--offline")
    assert f"{path}, field {field}: " in err and message in err, err
    assert len(err) < 400


@pytest.mark.parametrize(
    ("event_log", "message"),
    [
        ("[{", "event_log"),
        ('{"imr": 0}', "expected a JSON array of events, got object"),
        (5, "expected an event log"),
    ],
)
def test_malformed_event_log_text(capsys, tmp_path: Path, lite: dict[str, Any], event_log: Any,
                                  message: str) -> None:
    path = write_json(tmp_path / "getquote.json", {**lite, "event_log": event_log})
    err = bad_input(capsys, "verify", path, "--offline")
    assert "field event_log" in err and message in err, err


def test_attestation_whose_report_data_is_not_its_quotes(capsys, tmp_path: Path, lite: dict[str, Any]) -> None:
    """dstack's verifier rejects a blob whose report_data differs from its quote's; so do we, naming the field."""
    quote = bytes.fromhex(lite["quote"])
    report_data = bytearray.fromhex(lite["report_data"])
    report_data[0] ^= 1
    blob = attestation_blob(quote, json.loads(lite["event_log"]), bytes(report_data), lite["vm_config"])
    path = write_json(tmp_path / "attestation.json", {"attestation": blob.hex()})
    err = bad_input(capsys, "verify", path, "--offline")
    assert "field attestation.report_data" in err and "differs from the quote's" in err
    assert f"offset {blob.index(bytes(report_data))}" in err
