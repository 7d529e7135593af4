"""`dstack-inspector verify --fetch-image --image-base-url` end to end: the synthetic OS image of test_cli_image,
packed as the release archive ``mr_<os_image_hash>.tar.gz`` and served by a loopback HTTP server, is downloaded,
checked, cached and measured; later runs use the cache; a tampered archive is refused and nothing is cached.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from dstack_inspector.cli import main
from dstack_verifier.synth.image import write_manifest

from tests.e2e import test_cli_image
from tests.e2e.test_cli_image import KERNEL_BYTE, OS_CHECKS, Scenario, checks_of, copy_image, flip, statuses, verify
from tests.support.loopback import LoopbackServer

# The fixtures of test_cli_image: its scenario, and its cache folder under tmp_path (DSTACK_INSPECTOR_CACHE_DIR).
scenario = test_cli_image.scenario
_isolated = test_cli_image._isolated


class ArchiveServer(LoopbackServer):
    """Serves byte strings at paths, honouring ``Range: bytes=N-``; records the paths asked for."""

    thread_name = "archive-test-server"

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, bytes] = {}
        self.seen: list[str] = []
        self.lock = threading.Lock()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with server.lock:
                    server.seen.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                asked = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if asked and int(asked[1]) < len(body):
                    start = int(asked[1])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

        return Handler


@pytest.fixture
def server() -> Iterator[ArchiveServer]:
    with ArchiveServer() as srv:
        yield srv


def release_archive(folder: Path) -> bytes:
    """The folder as download.dstack.org serves it: a tar.gz with the files at its root ("./name")."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path in sorted(folder.iterdir()):
            info = tarfile.TarInfo(f"./{path.name}")
            info.size, info.mode = path.stat().st_size, 0o644
            with path.open("rb") as fh:
                tar.addfile(info, fh)
    return gzip.compress(raw.getvalue(), mtime=0)


def archive_path(os_image_hash: str) -> str:
    return f"/mr_{os_image_hash}.tar.gz"


def cached_files(cache: Path) -> list[str]:
    """Everything under the image cache but its index."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file() and p.name != "index.json")


def test_fetched_image_is_verified_cached_and_reused_offline(
        capsys: pytest.CaptureFixture[str], scenario: Scenario, server: ArchiveServer, tmp_path: Path) -> None:
    image_hash = scenario.vm_config["os_image_hash"]
    server.files[archive_path(image_hash)] = release_archive(scenario.image)
    code, report = verify(capsys, scenario, "--fetch-image", "--image-base-url", server.url)
    checks = checks_of(report)
    assert statuses(report, OS_CHECKS) == dict.fromkeys(OS_CHECKS, "pass"), {i: checks[i]["summary"]
                                                                             for i in OS_CHECKS}
    assert code == 0 and report["verdict"] == "pass"
    assert server.seen == [archive_path(image_hash)]
    cached = tmp_path / "cache" / "os-images" / "images" / image_hash
    assert checks["os.image_hash"]["details"]["folder"] == str(cached)
    listed = [line.split()[1] for line in (scenario.image / "sha256sum.txt").read_text().splitlines()]
    assert sorted(p.name for p in cached.iterdir()) == sorted([*listed, "sha256sum.txt"])  # digest.txt is unlisted
    assert (cached / "sha256sum.txt").read_bytes() == (scenario.image / "sha256sum.txt").read_bytes()
    measured = report["entities"]["app"]["measurement"]

    server.stop()
    code, again = verify(capsys, scenario, "--offline")
    assert statuses(again, OS_CHECKS) == dict.fromkeys(OS_CHECKS, "pass")
    assert checks_of(again)["os.image_hash"]["details"]["folder"] == str(cached)
    assert again["entities"]["app"]["measurement"] == measured
    assert code == 0 and again["verdict"] == "pass"
    assert server.seen == [archive_path(image_hash)]


def test_without_fetch_image_nothing_is_downloaded(
        capsys: pytest.CaptureFixture[str], scenario: Scenario, server: ArchiveServer, tmp_path: Path) -> None:
    server.files[archive_path(scenario.vm_config["os_image_hash"])] = release_archive(scenario.image)
    code, report = verify(capsys, scenario, "--image-base-url", server.url)
    checks = checks_of(report)
    assert statuses(report, OS_CHECKS) == dict.fromkeys(OS_CHECKS, "skip")
    for check_id in OS_CHECKS:
        reason = checks[check_id]["details"]["reason"]
        assert "is not cached" in reason and "--fetch-image" in reason, reason
    assert code == 3 and report["verdict"] == "incomplete"
    assert server.seen == []
    assert cached_files(tmp_path / "cache" / "os-images") == []


@pytest.mark.parametrize("change", ["a changed file", "a rewritten manifest"])
def test_a_tampered_archive_is_refused_and_not_cached(
        capsys: pytest.CaptureFixture[str], scenario: Scenario, server: ArchiveServer, tmp_path: Path,
        change: str) -> None:
    image_hash = scenario.vm_config["os_image_hash"]
    tampered = copy_image(scenario, tmp_path)
    genuine_kernel = hashlib.sha256((tampered / "bzImage").read_bytes()).hexdigest()
    flip(tampered / "bzImage", KERNEL_BYTE)
    changed_kernel = hashlib.sha256((tampered / "bzImage").read_bytes()).hexdigest()
    if change == "a rewritten manifest":
        new_hash = hashlib.sha256(write_manifest(tampered)).hexdigest()
    server.files[archive_path(image_hash)] = release_archive(tampered)
    code, report = verify(capsys, scenario, "--fetch-image", "--image-base-url", server.url)
    checks = checks_of(report)
    assert statuses(report, OS_CHECKS) == dict.fromkeys(OS_CHECKS, "skip")
    for check_id in OS_CHECKS:
        reason = checks[check_id]["details"]["reason"]
        assert reason.startswith(f"image {image_hash[:16]}… could not be fetched: "), reason
        if change == "a changed file":
            assert f"bzImage: sha256 is {changed_kernel}, sha256sum.txt says {genuine_kernel}" in reason, reason
        else:
            assert image_hash in reason and new_hash in reason, reason
    assert code == 3 and report["verdict"] == "incomplete"
    assert server.seen == [archive_path(image_hash)]
    assert cached_files(tmp_path / "cache" / "os-images") == []


def test_image_base_url_must_be_http(capsys: pytest.CaptureFixture[str], scenario: Scenario) -> None:
    code = main(scenario.verify_args("--fetch-image", "--image-base-url", "ftp://mirror.example/os-images"))
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.startswith("dstack-inspector: usage error: --image-base-url: 'ftp://mirror.example/os-images'"), err
