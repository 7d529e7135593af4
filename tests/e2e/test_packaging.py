"""The packaged app: packaging/build.py builds the one-folder bundle once per session, then its executable runs.

The bundled executable must work on its own: ``--version``, the offline verification of the demo evidence exactly as
the README gives it (the demo files and root CA taken from inside the bundle), the pinned Intel root, the on-chain
check through web3 against a JSON-RPC node on loopback, bad input, and the GUI rendering a screenshot on Qt's
offscreen platform. It runs in a clean working folder with its own app folders, so nothing of the checkout can
stand in for what the bundle lacks. The desktop entry and icons are checked without a build.
"""

from __future__ import annotations

import configparser
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dstack_inspector.cli import main
from dstack_verifier import __version__
from dstack_verifier.demo import DEMO_ANCHOR, DEMO_APP_EVIDENCE, DEMO_EVIDENCE, DEMO_WEB_ROOT
from dstack_verifier.resources import app_icon_path, resource_path

from tests.support.fixtures import fixture_path
from tests.support.rpc_node import RpcNode

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
BUILD_TIMEOUT = 900  # seconds; the build takes about one minute on two cores
RUN_TIMEOUT = 120
REAL_AT = "1751624191"  # the real dcap-qvl sample collateral is current then
KMS_CONTRACT = "0x" + "4d" * 20
HEAD = 30_000_000


@dataclass(frozen=True)
class Bundle:
    exe: Path
    internal: Path  # PyInstaller's folder of libraries and data beside the executable
    work: Path  # a clean working folder for the runs

    @property
    def demo(self) -> Path:
        """The demo pack as bundled: package data of dstack_verifier, where the resources accessor looks."""
        return self.internal / "dstack_verifier" / "resources" / "demo"

    @property
    def demo_at(self) -> str:
        """The instant the demo is verified at, as its manifest gives it."""
        return json.loads((self.demo / "demo.json").read_text())["verified_at"]

    def run(self, *argv: object) -> subprocess.CompletedProcess[str]:
        # Nothing of the developer's environment leaks in: no PYTHONPATH, no app folders, no PCCS.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DSTACK_INSPECTOR", "PCCS"))}
        env.update(DSTACK_INSPECTOR_CACHE_DIR=str(self.work / "cache"),
                   DSTACK_INSPECTOR_DATA_DIR=str(self.work / "data"), QT_QPA_PLATFORM="offscreen")
        return subprocess.run([str(self.exe), *map(str, argv)], capture_output=True, text=True, timeout=RUN_TIMEOUT,
                              cwd=self.work, env=env, check=False)

    def demo_args(self) -> list[str]:
        """`verify` of the demo evidence as the README and resources/demo/demo.json give it."""
        return ["verify", "--offline", "--root-ca", str(self.demo / DEMO_ANCHOR),
                "--tls-roots", str(self.demo / DEMO_WEB_ROOT), "--at", self.demo_at,
                *(str(self.demo / name) for name in DEMO_EVIDENCE)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    if importlib.util.find_spec("PyInstaller") is None:
        message = "PyInstaller is not installed (pip install -e '.[test]')"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    base = tmp_path_factory.mktemp("bundle")
    dist, work = base / "dist", base / "work"
    proc = subprocess.run([sys.executable, str(PACKAGING / "build.py"), "--dist", str(dist), "--work", str(work)],
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT, cwd=ROOT, check=False)
    assert proc.returncode == 0, f"build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    printed = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    exe = Path(printed["executable"])
    assert exe.is_file() and exe.parent == dist / "dstack-inspector", proc.stdout
    assert Path(printed["bundle"]) == exe.parent and printed["size"].endswith(" bytes)"), proc.stdout
    runs = base / "runs"
    runs.mkdir()
    return Bundle(exe=exe, internal=exe.parent / "_internal", work=runs)


def _checks(report: dict[str, Any]) -> dict[tuple[str, str], tuple[str, str]]:
    return {(c["entity"], c["id"]): (c["status"], c["anchor"]) for c in report["checks"]}


@pytest.mark.slow
def test_version(bundle: Bundle) -> None:
    proc = bundle.run("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"dstack-inspector {__version__}"


@pytest.mark.slow
def test_resources_are_package_data(bundle: Bundle) -> None:
    bundled = bundle.internal / "dstack_verifier" / "resources"
    for source in resource_path().rglob("*"):
        if source.is_file():
            copy = bundled / source.relative_to(resource_path())
            assert copy.is_file(), f"{copy} missing from the bundle"
            assert copy.read_bytes() == source.read_bytes(), copy


@pytest.mark.slow
def test_offline_demo_verification(bundle: Bundle, capsys: pytest.CaptureFixture[str]) -> None:
    proc = bundle.run(*bundle.demo_args())
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith(f"verdict: PASS   at {bundle.demo_at}   trust anchor: caller-supplied root ")
    assert "PASS  app     hardware.reference_engine          dcap-qvl" in proc.stdout  # the compiled extension

    # The JSON report of the bundle has the very checks, statuses and anchors of the library run in this process.
    proc = bundle.run(*bundle.demo_args(), "--json")
    assert proc.returncode == 0, proc.stderr
    frozen = json.loads(proc.stdout)
    assert frozen["verdict"] == "pass"
    assert main([*bundle.demo_args(), "--json"]) == 0
    here = json.loads(capsys.readouterr().out)
    assert _checks(frozen) == _checks(here)
    assert {e for e, _ in _checks(frozen)} == {"app", "kms", "gateway"}
    statuses = {status for status, _ in _checks(frozen).values()}
    # Nothing fails; the skips are what a demo cannot have (a chain), the warnings TDX-lite's ACPI tables.
    assert statuses == {"pass", "skip", "warn"}
    assert {k for k, (status, _) in _checks(frozen).items() if status == "warn"} == {
        (e, "os.rtmr0") for e in ("app", "kms", "gateway")}
    assert _checks(frozen)[("app", "source.onchain_registry")][0] == "skip"


@pytest.mark.slow
def test_pinned_intel_root_is_bundled(bundle: Bundle) -> None:
    # Without --root-ca the pinned Intel root (SHA-256 checked at load) is the anchor: the demo chain does not reach it.
    argv = bundle.demo_args()
    root_at = argv.index("--root-ca")
    del argv[root_at:root_at + 2]
    proc = bundle.run(*argv)
    assert proc.returncode == 1, proc.stderr
    assert "trust anchor: Intel SGX Root CA" in proc.stdout.splitlines()[0]
    assert "FAIL  app     hardware.pck_chain" in proc.stdout


@pytest.mark.slow
def test_real_quote_against_intel_root(bundle: Bundle) -> None:
    quote = fixture_path("dcap-qvl", "tdx_quote")
    collateral = fixture_path("dcap-qvl", "tdx_quote_collateral.json")
    proc = bundle.run("verify", quote, "--collateral", collateral, "--at", REAL_AT, "--offline")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("verdict: PASS   at 2025-07-04T10:16:31Z   trust anchor: Intel SGX Root CA")


@pytest.mark.slow
def test_onchain_check_through_web3(bundle: Bundle) -> None:
    """web3 and its eth_* stack are imported lazily by the library: the frozen app must still find all of them."""
    deployment = json.loads((bundle.demo / "demo.json").read_text())["deployment"]
    demo = {**deployment["entities"]["app"], "os_image_hash": deployment["os_image_hash"]}
    with RpcNode(chain_id=8453, head=HEAD) as node, RpcNode() as no_pccs:
        node.add_app(demo["app_id"], compose_hashes=[demo["compose_hash"]])
        kms = node.add_kms(KMS_CONTRACT)
        kms.register_app(demo["app_id"])
        kms.os_images[bytes.fromhex(demo["os_image_hash"])] = 0
        argv = ["verify", "--root-ca", str(bundle.demo / DEMO_ANCHOR), "--at", bundle.demo_at,
                *(str(bundle.demo / name) for name in DEMO_APP_EVIDENCE)]  # the app alone: its contract is served
        proc = bundle.run(*argv, "--kms-contract", KMS_CONTRACT, "--rpc-url", node.url, "--pccs-url", no_pccs.url,
                          "--no-cache", "--json")
        assert no_pccs.http_requests == 0  # the collateral was given: nothing to fetch
        calls = [r for r in node.requests if r.method == "eth_call"]
    assert proc.returncode == 0, proc.stderr
    check = next(c for c in json.loads(proc.stdout)["checks"] if c["id"] == "source.onchain_registry")
    assert check["status"] == "pass", check["summary"]
    assert check["anchor"] == f"onchain@base:{HEAD}"
    assert calls and all(c.params[1] == hex(HEAD) for c in calls)


@pytest.mark.slow
def test_bad_input_is_one_line(bundle: Bundle) -> None:
    broken = bundle.work / "broken.json"
    broken.write_text('{"quote": "zz"}')
    for argv in (["verify", "--offline", bundle.work / "absent.bin"], ["verify", "--offline", broken],
                 ["verify", "--no-such-option"]):
        proc = bundle.run(*argv)
        assert proc.returncode == 2, (argv, proc.stderr)
        assert proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("dstack-inspector: "), proc.stderr
        assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_gui_screenshot_offscreen(bundle: Bundle) -> None:
    plugins = bundle.internal / "PySide6" / "Qt" / "plugins" / "platforms"
    assert any(p.name.startswith(("libqoffscreen", "qoffscreen")) for p in plugins.iterdir())
    shot = bundle.work / "shot.png"
    proc = bundle.run("gui", "--screenshot", shot)
    assert proc.returncode == 0, proc.stderr
    from PySide6.QtGui import QImage

    image = QImage(str(shot))
    assert not image.isNull()
    assert (image.width(), image.height()) == (1440, 900)
    # Not a blank window: the rendered report has many colours (text, status badges, the hex view's selection).
    colours = {image.pixel(x, y) for x in range(0, 1440, 7) for y in range(0, 900, 7)}
    assert len(colours) > 20


@pytest.mark.slow
def test_unused_parts_are_left_out(bundle: Bundle) -> None:
    names = {p.name for p in bundle.internal.rglob("*")}
    for absent in ("tkinter", "_tkinter", "pytest", "hypothesis", "PyInstaller", "translations",
                   "QtWebEngineCore.abi3.so", "QtQml.abi3.so", "QtQuick.abi3.so", "QtNetwork.abi3.so",
                   "libQt6Qml.so.6", "libQt6Quick.so.6", "libQt6WebEngineCore.so.6", "libQt6Pdf.so.6"):
        assert absent not in names, f"{absent} is in the bundle"
    assert not any(name.startswith("_tkinter") for name in names)


# -- the desktop entry and the icons (no build needed) -----------------------------------------------------------


def test_desktop_entry() -> None:
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    entry.read(PACKAGING / "dstack-inspector.desktop", encoding="utf-8")
    desktop = entry["Desktop Entry"]
    assert desktop["Type"] == "Application"
    assert desktop["Exec"].split()[0] == "dstack-inspector" and desktop["Exec"].split()[1] == "gui"
    assert desktop["Icon"] == "dstack-inspector"
    assert desktop["Terminal"] == "false"
    assert desktop["Categories"].endswith(";")


def test_icons() -> None:
    from PySide6.QtGui import QImage

    for size in (32, 64, 128, 256):
        image = QImage(str(PACKAGING / "icons" / f"dstack-inspector-{size}.png"))
        assert (image.width(), image.height()) == (size, size)
        assert image.hasAlphaChannel()
    for platform_icon in ("dstack-inspector.ico", "dstack-inspector.icns"):
        assert not QImage(str(PACKAGING / "icons" / platform_icon)).isNull(), platform_icon
    # The GUI's window icon is the 256 px rendering, found through the resources accessor.
    assert app_icon_path().is_file()
    digest = hashlib.sha256(app_icon_path().read_bytes()).hexdigest()
    assert digest == hashlib.sha256((PACKAGING / "icons" / "dstack-inspector-256.png").read_bytes()).hexdigest()
