"""`dstack-inspector verify --image-dir` and `measure --image-dir` end to end, on a synthetic OS image.

The image folder comes from `dstack_verifier.synth.image`. Its expected MRTD and RTMR0-2 are computed once with
`measure_image` (and cross-checked against the plain reference implementations of the unit tests). The boot is then
written out as dstack serves it: an event log with exactly those firmware events, interleaved as OVMF logs them,
plus the dstack runtime events (with os-image-hash = sha256(sha256sum.txt)), and a signed synthetic quote whose
MRTD and RTMRs are those values and the RTMR3 replay. The image folder is then changed one way or another, and
each change must fail the check that covers it, naming what differs. Nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dstack_inspector.cli import main
from dstack_verifier.eventlog import Event
from dstack_verifier.measure.acpi_tool import synthesize
from dstack_verifier.measure.full import measure_image
from dstack_verifier.measure.image import ImageFolder
from dstack_verifier.measure.model import Measurement
from dstack_verifier.synth import SynthEvidence, make_evidence
from dstack_verifier.synth.image import build_image_folder, write_manifest

from tests.support.acpi import ACPI_TABLES, printing_acpi_tool
from tests.support.fixtures import fixture_path
from tests.support.rpc_node import RpcNode
from tests.verifier.test_measure_kernel import ref_extend, ref_rtmr1, ref_rtmr2
from tests.verifier.test_measure_tdvf import plain_mrtd

SYNTH_NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
GiB = 1 << 30
OS_CHECKS = ["os.image_hash", "os.mrtd", "os.rtmr0", "os.rtmr1", "os.rtmr2"]
RUNTIME = 0x08000001
ACPI_NAMES = ("acpi-loader", "acpi-rsdp", "acpi-tables")
# Where a firmware byte is measured: inside the BFV (after the CFV's first 0x8000 bytes of a 256 KiB firmware) and
# away from the TDVF descriptor in the last page.
MEASURED_FIRMWARE_BYTE = 0x10000
KERNEL_BYTE = 0x2345  # inside the kernel's body section
INITRD_BYTE = 0x1234


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DSTACK_INSPECTOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PCCS_URL", raising=False)
    monkeypatch.delenv("DSTACK_INSPECTOR_DEBUG", raising=False)


# -- the scenario: an image, its expected measurement, and a boot of it as dstack reports it ----------------------


def runtime_digest(name: str, payload: bytes) -> bytes:
    """dstack's V1 runtime event digest (spec §6.1), written out here rather than taken from the library."""
    return hashlib.sha384(RUNTIME.to_bytes(4, "little") + b":" + name.encode() + b":" + payload).digest()


def acpi_events() -> list[Event]:
    """The 3 labelled "ACPI DATA" events, with the digests of the tables the stand-in dstack-acpi-tables prints and
    of the RSDP and loader made for them."""
    made = synthesize(ACPI_TABLES)
    blobs = {"acpi-loader": made.loader, "acpi-rsdp": made.rsdp, "acpi-tables": ACPI_TABLES}
    return [Event(imr=0, event_type=0xA, name=name, payload=b"ACPI DATA", digest=hashlib.sha384(blobs[name]).digest())
            for name in ACPI_NAMES]


def firmware_log(measurement: Measurement) -> list[dict[str, Any]]:
    """RTMR0-2 as OVMF logs them: RTMR0 up to the ACPI tables, the kernel (RTMR1 0), BootOrder and Boot0000, the
    next two RTMR1 events, the EFI stub's RTMR2 events, then the exit-boot-services actions."""
    r0, r1, r2 = (measurement.register_events(r) for r in ("rtmr0", "rtmr1", "rtmr2"))  # type: ignore[arg-type]
    order = [*r0[:11], r1[0], *r0[11:], *r1[1:3], *r2, *r1[3:]]
    out = []
    for e in order:
        acpi = e.source == "event-log-only"
        out.append({"imr": int(e.rtmr[-1]), "event_type": e.event_type, "digest": e.digest.hex(),
                    "event": ACPI_NAMES[e.index - 8] if acpi else "",
                    "event_payload": b"ACPI DATA".hex() if acpi else ""})
    return out


def runtime_log(os_image_hash: bytes) -> list[tuple[str, bytes]]:
    key_provider = json.dumps({"name": "kms", "id": hashlib.sha256(b"kms root").hexdigest()}).encode()
    return [
        ("system-preparing", b""),
        ("app-id", hashlib.sha256(b"app").digest()[:20]),
        ("compose-hash", hashlib.sha256(b"app-compose").digest()),
        ("instance-id", hashlib.sha256(b"instance").digest()[:20]),
        ("boot-mr-done", b""),
        ("os-image-hash", os_image_hash),
        ("key-provider", key_provider),
        ("storage-fs", b"zfs"),
        ("system-ready", b""),
    ]


@dataclass(frozen=True)
class Scenario:
    image: Path  # the genuine image folder (copy it before changing it)
    getquote: Path
    collateral: Path
    root: Path
    vm_config: dict[str, Any]
    expected: Measurement
    acpi_tool: Path  # prints the tables whose digests the log carries, as dstack-acpi-tables would

    def verify_args(self, *extra: object) -> list[str]:
        return ["verify", str(self.getquote), "--collateral", str(self.collateral), "--root-ca", str(self.root),
                "--at", str(SYNTH_NOW), "--acpi-tool", str(self.acpi_tool), *map(str, extra)]


def write_boot(path: Path, expected: Measurement, vm_config: dict[str, Any],
               runtime: list[tuple[str, bytes]]) -> tuple[Path, SynthEvidence]:
    """A GetQuote answer for a boot of the image: its firmware log, these runtime events, a quote signed over them."""
    events = firmware_log(expected) + [{"imr": 3, "event_type": RUNTIME, "digest": "", "event": name,
                                        "event_payload": payload.hex()} for name, payload in runtime]
    rtmr3 = ref_extend([runtime_digest(name, payload) for name, payload in runtime])
    ev = make_evidence(seed="image-e2e", now=SYNTH_NOW, report={
        "mr_td": expected.mrtd, "rt_mr0": expected.rtmr0, "rt_mr1": expected.rtmr1, "rt_mr2": expected.rtmr2,
        "rt_mr3": rtmr3})
    path.write_text(json.dumps({"quote": ev.quote.hex(), "event_log": json.dumps(events),
                                "vm_config": json.dumps(vm_config)}))
    return path, ev


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    work = tmp_path_factory.mktemp("image-e2e")
    image = build_image_folder(work / "dstack-0.6.0", seed="e2e")
    folder = ImageFolder.open(image)
    vm_config = {
        "os_image_hash": hashlib.sha256((image / "sha256sum.txt").read_bytes()).hexdigest(),
        "cpu_count": 2, "memory_size": 2 * GiB, "qemu_version": "9.2.1", "qemu_single_pass_add_pages": False,
        "pci_hole64_size": 0, "hugepages": False, "num_gpus": 0, "num_nvswitches": 0, "hotplug_off": False,
        "image": "dstack-0.6.0", "host_share_mode": "9p", "ovmf_variant": "pre202505", "spec_version": 1,
    }
    expected = measure_image(folder, vm_config, acpi_events())
    # The same values from the plain reference implementations of the unit tests.
    kernel, initrd = (image / "bzImage").read_bytes(), (image / "initramfs.cpio.gz").read_bytes()
    assert expected.mrtd == plain_mrtd((image / "ovmf.fd").read_bytes(), two_pass=False)
    assert expected.rtmr1 == ref_extend(ref_rtmr1(kernel, len(initrd), 2 * GiB))
    assert expected.rtmr2 == ref_extend(ref_rtmr2(folder.metadata.cmdline, initrd))

    getquote, ev = write_boot(work / "getquote.json", expected, vm_config, runtime_log(folder.os_image_hash))
    collateral = work / "collateral.json"
    collateral.write_text(json.dumps(ev.collateral))
    root = work / "root.der"
    root.write_bytes(ev.root_ca_der)
    return Scenario(image=image, getquote=getquote, collateral=collateral, root=root, vm_config=vm_config,
                    expected=expected, acpi_tool=printing_acpi_tool(work))


def copy_image(scenario: Scenario, tmp_path: Path) -> Path:
    return Path(shutil.copytree(scenario.image, tmp_path / "image"))


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def verify(capsys: pytest.CaptureFixture[str], scenario: Scenario, *extra: object) -> tuple[int, dict[str, Any]]:
    code = main([*scenario.verify_args(*extra), "--json"])
    out, err = capsys.readouterr()
    assert err == "", err
    return code, json.loads(out)


def checks_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in report["checks"]}


def statuses(report: dict[str, Any], ids: list[str]) -> dict[str, str]:
    found = checks_of(report)
    return {i: found[i]["status"] for i in ids}


# -- the genuine image ---------------------------------------------------------------------------------------------


def test_synthetic_log_is_shaped_like_a_real_one(scenario: Scenario) -> None:
    """The firmware events have the event types and interleaving of dstack's own lite fixture."""
    ours = [(e["imr"], e["event_type"], e["event"]) for e in firmware_log(scenario.expected)]
    real_doc = json.loads(fixture_path("dstack", "tdx-lite-getquote.json").read_text())
    real = [(e["imr"], e["event_type"], e["event"]) for e in json.loads(real_doc["event_log"]) if e["imr"] < 3]
    assert ours == real


def test_verify_with_the_image_passes(capsys: pytest.CaptureFixture[str], scenario: Scenario) -> None:
    code, report = verify(capsys, scenario, "--image-dir", scenario.image)
    checks = checks_of(report)
    assert statuses(report, OS_CHECKS) == dict.fromkeys(OS_CHECKS, "pass"), {i: checks[i]["summary"]
                                                                             for i in OS_CHECKS}
    assert report["verdict"] == "pass" and code == 0
    image_hash = scenario.vm_config["os_image_hash"]
    assert image_hash in checks["os.image_hash"]["summary"]
    assert "os-image-hash RTMR3 event and vm_config.os_image_hash" in checks["os.image_hash"]["summary"]
    assert checks["os.rtmr0"]["details"]["taken_from_event_log"] == []  # the ACPI tables were recomputed
    assert checks["os.mrtd"]["details"]["variant"] == "single_pass"
    measured = report["entities"]["app"]["measurement"]
    for register in ("mrtd", "rtmr0", "rtmr1", "rtmr2"):
        assert measured[register] == scenario.expected.value(register).hex()
    assert measured["acpi_source"] == "acpi-tool" and measured["inputs"]["os_image_hash"] == image_hash
    assert "os" in report["timings"]
    # The OS object says what was measured: the image's files, the dev flag, the VM shape, the MRTD page order.
    os_object = next(o for o in report["data_objects"] if o["id"] == "app-os")["fields"]
    assert os_object["is_dev"] is False and "bzImage" in os_object["image_files"].split(", ")
    assert os_object["mrtd_variant"] == "single_pass" and os_object["memory_size"] == measured["inputs"]["memory_size"]


def test_without_the_acpi_tool_rtmr0_warns(capsys: pytest.CaptureFixture[str], scenario: Scenario,
                                           tmp_path: Path) -> None:
    """A legacy boot's ACPI tables are the host's: dstack's verifier recomputes them. Without dstack-acpi-tables we
    can only take their digests from the log, so RTMR0 agreeing with the quote proves less, and says so."""
    code, report = verify(capsys, scenario, "--image-dir", scenario.image, "--acpi-tool", tmp_path / "nowhere")
    checks = checks_of(report)
    assert statuses(report, OS_CHECKS) == {**dict.fromkeys(OS_CHECKS, "pass"), "os.rtmr0": "warn"}
    assert report["verdict"] == "pass" and code == 0  # a warning is a finding, not a failure
    rtmr0 = checks["os.rtmr0"]
    assert "ACPI tables, which the host makes, were not recomputed" in rtmr0["summary"]
    assert "install dstack-acpi-tables" in rtmr0["summary"]
    assert rtmr0["details"]["taken_from_event_log"] == [
        "ACPI loader commands (etc/table-loader)", "ACPI RSDP", "ACPI tables"]
    assert "not found at" in rtmr0["details"]["acpi_note"]


def test_the_onchain_check_asks_about_the_verified_image(capsys: pytest.CaptureFixture[str], scenario: Scenario,
                                                          tmp_path: Path) -> None:
    """A boot without the os-image-hash event (a KMS's) is still asked about: the on-chain check takes the image hash
    os.image_hash verified, as dstack's boot_info takes the verified vm_config's."""
    runtime = [(name, payload) for name, payload in runtime_log(bytes(32)) if name != "os-image-hash"]
    getquote, _ = write_boot(tmp_path / "getquote.json", scenario.expected, scenario.vm_config, runtime)
    app_id = dict(runtime)["app-id"].hex()
    kms_contract = "0x" + "4b" * 20
    with RpcNode(chain_id=8453, head=31_000_000) as node:
        node.add_app(app_id, compose_hashes=[dict(runtime)["compose-hash"].hex()])
        kms = node.add_kms(kms_contract)
        kms.register_app(app_id)
        kms.os_images[bytes.fromhex(scenario.vm_config["os_image_hash"])] = 0
        code = main(["verify", str(getquote), "--collateral", str(scenario.collateral), "--root-ca",
                     str(scenario.root), "--at", str(SYNTH_NOW), "--acpi-tool", str(scenario.acpi_tool),
                     "--image-dir", str(scenario.image), "--kms-contract", kms_contract, "--rpc-url", node.url,
                     "--json"])
    out, err = capsys.readouterr()
    checks = checks_of(json.loads(out))
    assert checks["os.image_hash"]["status"] == "pass", checks["os.image_hash"]["summary"]
    onchain = checks["source.onchain_registry"]
    assert onchain["status"] == "pass" and code == 0, (onchain["summary"], err)
    assert f"OS image 0x{scenario.vm_config['os_image_hash'][:8]}… in allowedOsImages" in onchain["details"]["passed"]


def test_an_unusual_boot_sequence_still_checks_the_compose(capsys: pytest.CaptureFixture[str], scenario: Scenario,
                                                           tmp_path: Path) -> None:
    """An event dstack's boot does not write only warns: the app's identity stands (the first values are still the
    ones used), so the compose is still held to the compose-hash event, and a wrong one fails."""
    compose = json.dumps({"manifest_version": 2, "name": "measured"}).encode()
    runtime = [(name, hashlib.sha256(compose).digest() if name == "compose-hash" else payload)
               for name, payload in runtime_log(bytes.fromhex(scenario.vm_config["os_image_hash"]))]
    runtime.insert(3, ("my-event", b"1"))  # before system-ready
    getquote, _ = write_boot(tmp_path / "getquote.json", scenario.expected, scenario.vm_config, runtime)
    other = tmp_path / "app-compose.json"
    other.write_bytes(json.dumps({"manifest_version": 2, "name": "another"}).encode())
    code = main(["verify", str(getquote), str(other), "--collateral", str(scenario.collateral), "--root-ca",
                 str(scenario.root), "--at", str(SYNTH_NOW), "--phases", "hardware,source", "--json"])
    checks = checks_of(json.loads(capsys.readouterr().out))
    assert checks["eventlog.rtmr3_payloads"]["status"] == "warn"
    assert checks["source.compose_hash"]["status"] == "fail" and code == 1
    other.write_bytes(compose)
    code = main(["verify", str(getquote), str(other), "--collateral", str(scenario.collateral), "--root-ca",
                 str(scenario.root), "--at", str(SYNTH_NOW), "--phases", "hardware,source", "--json"])
    assert checks_of(json.loads(capsys.readouterr().out))["source.compose_hash"]["status"] == "pass"


def test_measure_prints_the_same_registers(capsys: pytest.CaptureFixture[str], scenario: Scenario) -> None:
    code = main(["measure", "--image-dir", str(scenario.image), "--vm-config", str(scenario.getquote), "--json"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    printed = json.loads(out)
    for register in ("mrtd", "rtmr0", "rtmr1", "rtmr2"):
        assert printed[register] == scenario.expected.value(register).hex()
    assert printed["path"] == "full-image" and printed["acpi_source"] == "event-log-only"
    assert [e["digest"] for e in printed["events"]] == [e.digest.hex() for e in scenario.expected.events]


# -- a changed image -----------------------------------------------------------------------------------------------


def test_a_changed_kernel(capsys: pytest.CaptureFixture[str], scenario: Scenario, tmp_path: Path) -> None:
    image = copy_image(scenario, tmp_path)
    flip(image / "bzImage", KERNEL_BYTE)
    new_hash = hashlib.sha256(write_manifest(image)).hexdigest()
    code, report = verify(capsys, scenario, "--image-dir", image)
    checks = checks_of(report)
    assert code == 1 and report["verdict"] == "fail"
    assert statuses(report, OS_CHECKS) == {"os.image_hash": "fail", "os.mrtd": "pass", "os.rtmr0": "pass",
                                           "os.rtmr1": "fail", "os.rtmr2": "pass"}
    # The folder's hash differs from both vm_config and the hardware-measured RTMR3 event; both are named.
    image_check = checks["os.image_hash"]
    old_hash = scenario.vm_config["os_image_hash"]
    assert new_hash in image_check["summary"] and old_hash in image_check["summary"]
    problems = image_check["details"]["problems"]
    assert any("vm_config.os_image_hash" in p and old_hash in p for p in problems)
    assert any("the hardware measured os_image_hash" in p and old_hash in p and new_hash in p for p in problems)
    summary = checks["os.rtmr1"]["summary"]
    assert summary.startswith("RTMR1 event 0, the kernel image") and "differs" in summary, summary
    # Where to look: what the differing event's digest changes with.
    assert summary.endswith("; it varies with the bzImage, and its setup header as QEMU patches it: "
                            "vm_config.memory_size and the initrd's size")
    rows = checks["os.rtmr1"]["details"]["events"]
    assert rows[1]["varies_with"] == "nothing: a constant of the firmware (its ovmf_variant)"


def test_a_changed_initrd(capsys: pytest.CaptureFixture[str], scenario: Scenario, tmp_path: Path) -> None:
    image = copy_image(scenario, tmp_path)
    flip(image / "initramfs.cpio.gz", INITRD_BYTE)
    write_manifest(image)
    code, report = verify(capsys, scenario, "--image-dir", image)
    assert code == 1
    assert statuses(report, OS_CHECKS) == {"os.image_hash": "fail", "os.mrtd": "pass", "os.rtmr0": "pass",
                                           "os.rtmr1": "pass", "os.rtmr2": "fail"}
    summary = checks_of(report)["os.rtmr2"]["summary"]
    assert summary.startswith("RTMR2 event 1, the initrd") and "differs" in summary, summary


def test_a_changed_measured_firmware_byte(capsys: pytest.CaptureFixture[str], scenario: Scenario,
                                          tmp_path: Path) -> None:
    image = copy_image(scenario, tmp_path)
    flip(image / "ovmf.fd", MEASURED_FIRMWARE_BYTE)
    write_manifest(image)
    code, report = verify(capsys, scenario, "--image-dir", image)
    assert code == 1
    assert statuses(report, OS_CHECKS) == {"os.image_hash": "fail", "os.mrtd": "fail", "os.rtmr0": "pass",
                                           "os.rtmr1": "pass", "os.rtmr2": "pass"}
    mrtd = checks_of(report)["os.mrtd"]
    assert mrtd["summary"].startswith("MRTD differs: the firmware gives")
    assert mrtd["details"]["quoted"] == scenario.expected.mrtd.hex() != mrtd["details"]["expected"]


def test_a_manifest_line_that_does_not_match_its_file(capsys: pytest.CaptureFixture[str], scenario: Scenario,
                                                      tmp_path: Path) -> None:
    image = copy_image(scenario, tmp_path)
    manifest = (image / "sha256sum.txt").read_text()
    real = hashlib.sha256((image / "bzImage").read_bytes()).hexdigest()
    claimed = hashlib.sha256(b"another kernel").hexdigest()
    (image / "sha256sum.txt").write_text(manifest.replace(f"{real}  bzImage", f"{claimed}  bzImage"))
    code, report = verify(capsys, scenario, "--image-dir", image)
    assert code == 1
    image_check = checks_of(report)["os.image_hash"]
    assert image_check["status"] == "fail"
    assert image_check["summary"].startswith(f"bzImage: its sha256 is {real}, sha256sum.txt (line 2) says {claimed}")
    assert [f["name"] for f in image_check["details"]["files"] if not f["ok"]] == ["bzImage", "digest.txt"]
    # The files themselves are the genuine ones: the registers still match.
    assert statuses(report, OS_CHECKS[1:]) == dict.fromkeys(OS_CHECKS[1:], "pass")


@pytest.mark.parametrize("case", ["path through ..", "manifest names ../bzImage", "metadata names ../bzImage"])
def test_names_with_dot_dot_are_bad_input(capsys: pytest.CaptureFixture[str], scenario: Scenario, tmp_path: Path,
                                          case: str) -> None:
    image = copy_image(scenario, tmp_path)
    target: Path = image
    if case == "path through ..":
        (image / "sub").mkdir()
        target = image / "sub" / ".." / ".."  # resolves to tmp_path: not an image folder
    elif case == "manifest names ../bzImage":
        manifest = (image / "sha256sum.txt").read_text()
        (image / "sha256sum.txt").write_text(manifest.replace("  bzImage\n", "  ../bzImage\n"))
    else:
        metadata = json.loads((image / "metadata.json").read_text())
        metadata["kernel"] = "../bzImage"
        (image / "metadata.json").write_text(json.dumps(metadata))
        write_manifest(image)
    code = main(scenario.verify_args("--image-dir", target))
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert out == "" and err.startswith("dstack-inspector: bad input: ") and err.count("\n") == 1, err
    if case == "path through ..":
        assert "sha256sum.txt" in err
    else:
        assert "'../bzImage'" in err and "'/'" in err


def test_no_image_offline_skips_with_the_reason(capsys: pytest.CaptureFixture[str], scenario: Scenario) -> None:
    code, report = verify(capsys, scenario, "--offline")
    checks = checks_of(report)
    assert statuses(report, OS_CHECKS) == dict.fromkeys(OS_CHECKS, "skip")
    wanted = scenario.vm_config["os_image_hash"][:16]
    for check_id in OS_CHECKS:
        reason = checks[check_id]["details"]["reason"]
        assert reason.startswith(f"offline: image {wanted}") and "--image-dir" in reason, reason
        assert checks[check_id]["summary"] == f"skipped: {reason}"
    assert report["verdict"] == "incomplete" and code == 3


# -- the caches ----------------------------------------------------------------------------------------------------


def test_second_run_uses_the_cached_file_hashes(capsys: pytest.CaptureFixture[str], scenario: Scenario,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache" / "image-hashes"
    no_tool = ("--acpi-tool", tmp_path / "nowhere")
    code, first = verify(capsys, scenario, "--image-dir", scenario.image, *no_tool)
    assert code == 0
    entries = list(cache.glob("*.json"))
    assert len(entries) == 1
    stored = json.loads(entries[0].read_text())
    assert stored["hashes"]["mrtd"] == scenario.expected.mrtd.hex()
    assert stored["key"]["os_image_hash"] == scenario.vm_config["os_image_hash"]
    # ACPI digests from the event log describe this quote: no full measurement is cached, only the file hashes.
    assert not list((tmp_path / "cache" / "measurements").glob("*.json"))

    def no_hashing(*args: object, **kwargs: object) -> None:
        raise AssertionError("the image was hashed again")

    monkeypatch.setattr("dstack_verifier.measure.full.hash_image", no_hashing)
    code, second = verify(capsys, scenario, "--image-dir", scenario.image, *no_tool)
    assert code == 0 and statuses(second, OS_CHECKS) == {**dict.fromkeys(OS_CHECKS, "pass"), "os.rtmr0": "warn"}
    assert second["entities"]["app"]["measurement"] == first["entities"]["app"]["measurement"]
    assert "os" in first["timings"] and "os" in second["timings"]


def test_a_folder_that_fails_its_manifest_neither_reads_nor_fills_the_cache(
        capsys: pytest.CaptureFixture[str], scenario: Scenario, tmp_path: Path) -> None:
    """A changed kernel under the genuine sha256sum.txt claims the genuine os_image_hash: it must be measured as
    what it is, and must not replace what the cache holds for that hash."""
    cache = tmp_path / "cache" / "image-hashes"
    assert verify(capsys, scenario, "--image-dir", scenario.image)[0] == 0
    before = {p.name: p.read_bytes() for p in cache.glob("*.json")}
    image = copy_image(scenario, tmp_path)
    flip(image / "bzImage", KERNEL_BYTE)  # sha256sum.txt left as it was
    code, report = verify(capsys, scenario, "--image-dir", image)
    assert code == 1
    checks = checks_of(report)
    assert checks["os.image_hash"]["summary"].startswith("bzImage: its sha256 is")
    assert checks["os.rtmr1"]["status"] == "fail" and "RTMR1 event 0" in checks["os.rtmr1"]["summary"]
    assert {p.name: p.read_bytes() for p in cache.glob("*.json")} == before
