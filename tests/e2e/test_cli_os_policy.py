"""`--os-image HEX`: the OS images the user accepts (e.g. the releases they reviewed), the offline stand-in for the
KMS's allowedOsImages. On the demo app's own evidence (a TDX-lite boot), at the demo instant, offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dstack_inspector.cli import main
from dstack_verifier.resources import resource_path

DEMO = resource_path("demo")
IMAGE = json.loads((DEMO / "demo.json").read_text())["deployment"]["os_image_hash"]
OTHER = "ab" * 32
BASE = [str(DEMO / "getquote.json"), "--collateral", str(DEMO / "collateral.json"), "--root-ca",
        str(DEMO / "demo_root_ca.der"), "--at", "2026-06-01T00:00:00Z", "--offline", "--json"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["verify", *args])
    out, err = capsys.readouterr()
    assert err == "", err
    return code, json.loads(out)


def image_check(report: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["id"] == "os.image_hash")


def test_an_accepted_image_passes_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run(capsys, *BASE, "--os-image", "0x" + IMAGE.upper(), "--os-image", OTHER)
    check = image_check(report)
    assert code == 0 and check["status"] == "pass" and check["summary"].endswith("; an image the policy accepts")
    assert check["details"]["allowed"] is True
    assert report["policy"]["os_images"] == [IMAGE, OTHER]


def test_any_other_image_fails_and_a_rerun_keeps_the_list(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    saved = tmp_path / "report.json"
    code, report = run(capsys, *BASE, "--os-image", OTHER, "--output", str(saved))
    check = image_check(report)
    assert code == 1 and check["status"] == "fail"
    assert check["summary"] == f"os_image_hash {IMAGE} is not one of the 1 OS image(s) the policy accepts"
    rerun = ["--root-ca", str(DEMO / "demo_root_ca.der"), "--at", "2026-06-01T00:00:00Z", "--offline", "--json"]
    code, again = run(capsys, str(saved), *rerun)
    assert code == 1 and image_check(again)["status"] == "fail" and again["policy"]["os_images"] == [OTHER]
    code, anew = run(capsys, str(saved), *rerun, "--os-image", IMAGE)  # a list given anew replaces the recorded one
    assert code == 0 and image_check(anew)["status"] == "pass" and anew["policy"]["os_images"] == [IMAGE]
    doc = json.loads(saved.read_text())
    doc["policy"]["os_images"] = ["f1b9"]
    saved.write_text(json.dumps(doc))
    assert main(["verify", str(saved), *rerun]) == 2
    assert "field policy.os_images" in capsys.readouterr().err


def test_an_image_the_list_refuses_fails_even_unchecked(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A legacy boot with no image at hand cannot be checked, but the VM config already names an image the policy
    refuses: that fails without the files."""
    doc = json.loads((DEMO / "getquote.json").read_text())
    vm = json.loads(doc["vm_config"])
    vm["tdx_attestation_variant"] = "legacy"
    doc["vm_config"] = json.dumps(vm)
    path = tmp_path / "getquote.json"
    path.write_text(json.dumps(doc))
    code, report = run(capsys, str(path), *BASE[1:], "--os-image", OTHER)
    check = image_check(report)
    assert check["status"] == "fail" and code == 1
    assert check["summary"].startswith(f"the hardware-measured os-image-hash RTMR3 event {IMAGE} is not one")
    code, report = run(capsys, str(path), *BASE[1:], "--os-image", IMAGE)
    assert image_check(report)["status"] == "skip" and image_check(report)["details"]["allowed"] is True
    # The VM config may claim an accepted image: the image the hardware measured is what counts.
    vm["os_image_hash"] = OTHER
    doc["vm_config"] = json.dumps(vm)
    path.write_text(json.dumps(doc))
    code, report = run(capsys, str(path), *BASE[1:], "--os-image", OTHER)
    check = image_check(report)
    assert check["status"] == "fail" and code == 1
    assert check["summary"].startswith(f"the hardware-measured os-image-hash RTMR3 event {IMAGE} is not one")
    # And a VM config that names no image at all still has the hardware-measured one held to the list.
    del vm["os_image_hash"], vm["tdx_measurement"]
    doc["vm_config"] = json.dumps(vm)
    path.write_text(json.dumps(doc))
    code, report = run(capsys, str(path), *BASE[1:], "--os-image", OTHER)
    check = image_check(report)
    assert check["status"] == "fail" and "RTMR3 event" in check["summary"] and code == 1
    code, report = run(capsys, str(path), *BASE[1:])
    assert image_check(report)["summary"] == ("skipped: the VM config names no OS image (no os_image_hash, no "
                                              "TDX-lite material)")


def test_a_malformed_image_hash_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", *BASE, "--os-image", "f1b9"]) == 2
    assert "argument --os-image: 'f1b9' is not an OS image hash (32 bytes of hex)" in capsys.readouterr().err
