"""OS image download, safe extraction, verification and caching, against a real HTTP server on loopback.

The server (started here, 127.0.0.1, random port) serves byte strings at paths, honours ``Range: bytes=N-``, and can
be told to misbehave: drop the connection after N bytes, ignore Range, answer a different range, serve other bytes
to a ranged request, omit Content-Length, redirect.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import re
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from dstack_verifier.measure.cache import (
    ImageCache,
    ImageHashMismatch,
    ImageVerificationError,
    MeasurementCache,
)
from dstack_verifier.measure.download import (
    ExtractLimits,
    ImageFetchError,
    UnsafeArchiveError,
    fetch_image,
    image_urls,
)
from dstack_verifier.measure.model import ExpectedEvent, Measurement
from dstack_verifier.net import (
    RECORDED_SHA256_HEADER,
    DownloadCancelled,
    HashMismatchError,
    NetClient,
    NetError,
    NotRecordedError,
    OfflineError,
    ReplayClient,
)

from tests.support.loopback import LoopbackServer

# -- the server --------------------------------------------------------------------------------------------------


@dataclass
class Seen:
    path: str
    headers: dict[str, str]  # lower-case names


@dataclass
class ImageServer:
    files: dict[str, bytes] = field(default_factory=dict)
    drop_after: dict[str, int] = field(default_factory=dict)  # path → bytes sent before closing, once
    ignore_range: bool = False
    shift_range: int = 0  # answer a ranged request from this many bytes later than asked
    ranged_content: dict[str, bytes] = field(default_factory=dict)  # other bytes for ranged requests
    no_length: bool = False  # close-delimited body, no Content-Length
    redirects: dict[str, str] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    serving: LoopbackServer | None = None

    @property
    def url(self) -> str:
        assert self.serving is not None
        return self.serving.url

    def ranges(self, path: str) -> list[str | None]:
        with self.lock:
            return [s.headers.get("range") for s in self.seen if s.path == path]

    def take_drop(self, path: str) -> int | None:
        with self.lock:
            return self.drop_after.pop(path, None)


def _handler(server: ImageServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            path = self.path
            with server.lock:
                server.seen.append(Seen(path, {k.lower(): v for k, v in self.headers.items()}))
            if path in server.redirects:
                self.send_response(302)
                self.send_header("Location", server.redirects[path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = server.files.get(path)
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "9")
                self.end_headers()
                self.wfile.write(b"not here\n")
                return
            status, start = 200, 0
            asked = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if asked and not server.ignore_range:
                body = server.ranged_content.get(path, body)
                start = int(asked[1]) + server.shift_range
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            chunk = body[start:]
            drop = server.take_drop(path)
            self.send_response(status)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            if not server.no_length:
                self.send_header("Content-Length", str(len(chunk)))
            self.end_headers()
            if drop is not None:
                chunk = chunk[:drop]
            try:
                for i in range(0, len(chunk), 32 * 1024):
                    self.wfile.write(chunk[i : i + 32 * 1024])
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading (size limit, cancel): expected
            self.close_connection = True

    return Handler


@pytest.fixture
def server() -> Iterator[ImageServer]:
    srv = ImageServer()
    handler = _handler(srv)

    class Serving(LoopbackServer):
        def _handler_class(self) -> type[BaseHTTPRequestHandler]:
            return handler

    with Serving() as serving:
        srv.serving = serving
        yield srv


@pytest.fixture
def client() -> Iterator[NetClient]:
    with NetClient(timeout=5.0, retries=0, sleep=lambda _s: None) as c:
        yield c


# -- archives ----------------------------------------------------------------------------------------------------

LIMITS = ExtractLimits(max_members=20, max_member_bytes=1_000_000, max_total_bytes=2_000_000, max_header_bytes=65536)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_files(seed: int = 1) -> dict[str, bytes]:
    rnd = random.Random(seed)
    metadata = {
        "bios": "ovmf.fd",
        "kernel": "bzImage",
        "cmdline": "console=ttyS0",
        "initrd": "initramfs.cpio.gz",
        "rootfs": "rootfs.img.verity",
        "version": "0.5.3",
        "is_dev": False,
    }
    return {
        "ovmf.fd": rnd.randbytes(150_000),
        "bzImage": rnd.randbytes(200_000),
        "initramfs.cpio.gz": rnd.randbytes(100_000),
        "metadata.json": json.dumps(metadata).encode(),
        "measurement.tdx.cbor": rnd.randbytes(300),
    }


def manifest(files: dict[str, bytes]) -> bytes:
    return "".join(f"{sha(data)}  {name}\n" for name, data in sorted(files.items())).encode()


def _info(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, **extra: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size if kind == tarfile.REGTYPE else 0
    info.type = kind
    info.mode = 0o644
    for key, value in extra.items():
        setattr(info, key, value)
    return info


def make_archive(members: list[tuple[tarfile.TarInfo, bytes | None]], *, fmt: int = tarfile.GNU_FORMAT) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return gzip.compress(raw.getvalue(), mtime=0)


def files_members(files: dict[str, bytes], prefix: str = "./") -> list[tuple[tarfile.TarInfo, bytes | None]]:
    return [(_info(prefix + name, len(data)), data) for name, data in files.items()]


@dataclass
class Image:
    archive: bytes
    os_image_hash: str
    files: dict[str, bytes]


def good_image(*, top: str | None = None, seed: int = 1) -> Image:
    """mr_<hash>.tar.gz style (flat, "./" names) or, with ``top``, a GitHub release archive (one top folder),
    both with files sha256sum.txt does not list (dropped) and a rootfs (not extracted)."""
    files = image_files(seed)
    listing = manifest(files)
    extra = {
        "sha256sum.txt": listing,
        "digest.txt": (sha(listing) + "\n").encode(),
        "README": b"unlisted\n",
        "rootfs.img.verity": b"\0" * 300_000,
    }
    prefix = f"{top}/" if top else "./"
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    if top:
        members.append((_info(top, kind=tarfile.DIRTYPE, mode=0o755), None))
    else:
        members.append((_info(".", kind=tarfile.DIRTYPE, mode=0o755), None))
    members += files_members({**files, **extra}, prefix)
    return Image(make_archive(members), sha(listing), files)


def leftovers(folder: Path) -> list[str]:
    """Every file and image folder under the cache except the index."""
    found = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != "index.json"]
    images = folder / "images"
    if images.is_dir():
        found += [f"images/{p.name}/" for p in images.iterdir()]
    return sorted(found)


def serve_by_hash(server: ImageServer, image: Image, archive: bytes | None = None) -> str:
    path = f"/mr_{image.os_image_hash}.tar.gz"
    server.files[path] = image.archive if archive is None else archive
    return path


@pytest.fixture
def cache(tmp_path: Path) -> ImageCache:
    return ImageCache(tmp_path / "cache", cap_bytes=50_000_000)


# -- image_urls --------------------------------------------------------------------------------------------------

H = "e6f5cfec20c02e7b97baa213d0f718020b55e040172d90ccbcb946d56c8b09db"


def test_image_urls_by_hash_and_by_version() -> None:
    assert image_urls(None, H.upper()) == [f"https://download.dstack.org/os-images/mr_{H}.tar.gz"]
    assert image_urls(None, H, base_url="http://mirror.local/imgs/") == [f"http://mirror.local/imgs/mr_{H}.tar.gz"]
    meta = "https://github.com/Dstack-TEE/meta-dstack/releases/download"
    assert image_urls("0.5.3", None) == [f"{meta}/v0.5.3/dstack-0.5.3.tar.gz"]
    assert image_urls("dstack-dev-0.5.3", None) == [f"{meta}/v0.5.3/dstack-dev-0.5.3.tar.gz"]
    assert image_urls("0.6.0", H) == [
        f"https://download.dstack.org/os-images/mr_{H}.tar.gz",
        "https://github.com/Dstack-TEE/dstack/releases/download/guest-os-v0.6.0/dstack-0.6.0.tar.gz",
        f"{meta}/v0.6.0/dstack-0.6.0.tar.gz",
    ]
    assert image_urls("dstack-nvidia-0.5.5", None) == [
        "https://github.com/nearai/private-ml-sdk/releases/download/v0.5.5/dstack-nvidia-0.5.5.tar.gz"
    ]
    assert image_urls("dstack-nvidia-dev-0.5.6", None) == [f"{meta}/v0.5.6/dstack-nvidia-dev-0.5.6.tar.gz"]
    assert image_urls("0.5.3", None, github_url="http://gh.local") == [
        "http://gh.local/Dstack-TEE/meta-dstack/releases/download/v0.5.3/dstack-0.5.3.tar.gz"
    ]


@pytest.mark.parametrize(
    "bad", [("0.5.3/../x", None), ("latest", None), (None, "abc"), (None, None), ("0.5", "zz" * 32)]
)
def test_image_urls_refuses_odd_input(bad: tuple[str | None, str | None]) -> None:
    with pytest.raises(ValueError):
        image_urls(*bad)


# -- NetClient.download ------------------------------------------------------------------------------------------


def test_download_streams_hashes_reports_progress_and_records_metadata(
    server: ImageServer, client: NetClient, tmp_path: Path
) -> None:
    body = random.Random(7).randbytes(300_000)
    server.files["/f"] = body
    calls: list[tuple[int, int | None]] = []
    dest = tmp_path / "dl" / "f.bin"
    result = client.download(
        server.url + "/f",
        dest,
        max_bytes=10**6,
        expected_sha256=sha(body).upper(),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert dest.read_bytes() == body and not (tmp_path / "dl" / "f.bin.part").exists()
    assert (result.size, result.sha256, result.resumed_from) == (len(body), sha(body), 0)
    assert calls[0] == (0, len(body)) and calls[-1] == (len(body), len(body)) and len(calls) > 2
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    recorded = client.recorder[-1]
    assert recorded.body == "" and recorded.status == 200
    assert recorded.headers[RECORDED_SHA256_HEADER] == sha(body)
    # A replay never answers with the (unrecorded) body.
    with pytest.raises(NotRecordedError):
        ReplayClient(client.recorder).get(server.url + "/f")
    with pytest.raises(OfflineError):
        ReplayClient(client.recorder).download(server.url + "/f", tmp_path / "x", max_bytes=10**6)


def test_interrupted_download_resumes_with_range(server: ImageServer, client: NetClient, tmp_path: Path) -> None:
    body = random.Random(8).randbytes(300_000)
    server.files["/f"] = body
    server.drop_after["/f"] = 100_000
    dest = tmp_path / "f.bin"
    with pytest.raises(NetError, match="connection"):
        client.download(server.url + "/f", dest, max_bytes=10**6, expected_sha256=sha(body))
    assert not dest.exists() and (tmp_path / "f.bin.part").stat().st_size == 100_000
    result = client.download(server.url + "/f", dest, max_bytes=10**6, expected_sha256=sha(body))
    assert server.ranges("/f") == [None, "bytes=100000-"]
    assert result.resumed_from == 100_000 and dest.read_bytes() == body and result.sha256 == sha(body)
    assert client.recorder[-1].status == 206


def test_dropped_connection_is_resumed_within_the_retries(server: ImageServer, tmp_path: Path) -> None:
    body = random.Random(9).randbytes(200_000)
    server.files["/f"] = body
    server.drop_after["/f"] = 70_000
    with NetClient(timeout=5.0, retries=1, sleep=lambda _s: None) as client:
        result = client.download(server.url + "/f", tmp_path / "f", max_bytes=10**6)
    assert server.ranges("/f") == [None, "bytes=70000-"]
    assert (tmp_path / "f").read_bytes() == body and result.resumed_from == 70_000


def test_server_ignoring_range_restarts_cleanly(server: ImageServer, client: NetClient, tmp_path: Path) -> None:
    body = random.Random(10).randbytes(200_000)
    server.files["/f"] = body
    (tmp_path / "f.part").write_bytes(body[:50_000])
    server.ignore_range = True
    result = client.download(server.url + "/f", tmp_path / "f", max_bytes=10**6, expected_sha256=sha(body))
    assert server.ranges("/f") == ["bytes=50000-"]
    assert result.resumed_from == 0 and (tmp_path / "f").read_bytes() == body


def test_wrong_range_answer_restarts_from_zero(server: ImageServer, client: NetClient, tmp_path: Path) -> None:
    body = random.Random(11).randbytes(200_000)
    server.files["/f"] = body
    (tmp_path / "f.part").write_bytes(body[:50_000])
    server.shift_range = 10  # 206 but from byte 50010: splicing it would corrupt the file
    result = client.download(server.url + "/f", tmp_path / "f", max_bytes=10**6, expected_sha256=sha(body))
    assert server.ranges("/f") == ["bytes=50000-", None]
    assert result.resumed_from == 0 and (tmp_path / "f").read_bytes() == body


def test_changed_content_on_resume_fails_the_hash_and_leaves_nothing(
    server: ImageServer, client: NetClient, tmp_path: Path
) -> None:
    body = random.Random(12).randbytes(200_000)
    server.files["/f"] = body
    server.ranged_content["/f"] = random.Random(13).randbytes(200_000)  # the file changed on the server
    (tmp_path / "f.part").write_bytes(body[:50_000])
    with pytest.raises(HashMismatchError, match=sha(body)) as err:
        client.download(server.url + "/f", tmp_path / "f", max_bytes=10**6, expected_sha256=sha(body))
    assert err.value.expected == sha(body)
    assert list(tmp_path.iterdir()) == []


def test_size_limit_announced_and_mid_stream(server: ImageServer, client: NetClient, tmp_path: Path) -> None:
    server.files["/big"] = b"x" * 300_000
    with pytest.raises(NetError, match=r"too large \(300000 bytes > limit 100000\)"):
        client.download(server.url + "/big", tmp_path / "a", max_bytes=100_000)
    server.no_length = True  # nothing announced: the limit bites while streaming
    with pytest.raises(NetError, match="too large \\(more than 100000 bytes\\)"):
        client.download(server.url + "/big", tmp_path / "b", max_bytes=100_000)
    assert list(tmp_path.iterdir()) == []
    result = client.download(server.url + "/big", tmp_path / "c", max_bytes=300_000)  # close-delimited body is fine
    assert result.size == 300_000


def test_offline_download_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OfflineError):
        NetClient(offline=True).download("http://127.0.0.1:9/f", tmp_path / "f", max_bytes=10)
    assert list(tmp_path.iterdir()) == []


def test_cancel_stops_and_keeps_the_part_for_a_resume(server: ImageServer, client: NetClient, tmp_path: Path) -> None:
    body = random.Random(14).randbytes(400_000)
    server.files["/f"] = body
    seen: list[int] = []

    def cancel() -> bool:
        return len(seen) >= 2

    with pytest.raises(DownloadCancelled):
        client.download(
            server.url + "/f",
            tmp_path / "f",
            max_bytes=10**6,
            cancel=cancel,
            progress=lambda done, _total: seen.append(done),
        )
    assert not (tmp_path / "f").exists()
    kept = (tmp_path / "f.part").stat().st_size
    assert 0 < kept < len(body)
    result = client.download(server.url + "/f", tmp_path / "f", max_bytes=10**6, expected_sha256=sha(body))
    assert result.resumed_from == kept and (tmp_path / "f").read_bytes() == body


def test_redirect_is_followed_and_http_errors_are_reported(
    server: ImageServer, client: NetClient, tmp_path: Path
) -> None:
    server.files["/real"] = b"payload"
    server.redirects["/moved"] = "/real"
    result = client.download(server.url + "/moved", tmp_path / "f", max_bytes=100)
    assert result.url.endswith("/real") and (tmp_path / "f").read_bytes() == b"payload"
    with pytest.raises(NetError, match="HTTP 404"):
        client.download(server.url + "/missing", tmp_path / "g", max_bytes=100)


# -- fetch_image: good archives ----------------------------------------------------------------------------------


def test_good_archive_downloads_verifies_and_extracts(
    server: ImageServer, client: NetClient, cache: ImageCache
) -> None:
    image = good_image()
    serve_by_hash(server, image)
    calls: list[tuple[int, int | None]] = []
    folder = fetch_image(
        client,
        os_image_hash=image.os_image_hash,
        cache=cache,
        base_url=server.url,
        limits=LIMITS,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert folder == cache.folder / "images" / image.os_image_hash
    # Listed files and the manifest only: the rootfs was not written, unlisted files were dropped.
    assert sorted(p.name for p in folder.iterdir()) == sorted([*image.files, "sha256sum.txt"])
    for name, data in image.files.items():
        assert (folder / name).read_bytes() == data
    assert leftovers(cache.folder) == sorted(
        [
            f"images/{image.os_image_hash}/",
            *(f"images/{image.os_image_hash}/{n}" for n in [*image.files, "sha256sum.txt"]),
        ]
    )
    assert calls[-1] == (len(image.archive), len(image.archive))
    # A second fetch is a cache hit that needs no network.
    assert fetch_image(NetClient(offline=True), os_image_hash=image.os_image_hash, cache=cache) == folder
    assert len(server.seen) == 1


def test_github_release_archive_by_version(server: ImageServer, client: NetClient, cache: ImageCache) -> None:
    image = good_image(top="dstack-0.5.3")
    server.files["/Dstack-TEE/meta-dstack/releases/download/v0.5.3/dstack-0.5.3.tar.gz"] = image.archive
    folder = fetch_image(client, os_version="0.5.3", cache=cache, github_url=server.url, limits=LIMITS)
    assert folder.name == image.os_image_hash and (folder / "bzImage").read_bytes() == image.files["bzImage"]
    # Found again by name, offline.
    assert fetch_image(NetClient(offline=True), os_version="dstack-0.5.3", cache=cache) == folder
    with pytest.raises(OfflineError):
        fetch_image(NetClient(offline=True), os_version="0.5.4", cache=cache)


def test_candidates_are_tried_in_order_and_all_failures_named(
    server: ImageServer, client: NetClient, cache: ImageCache
) -> None:
    image = good_image(top="dstack-0.5.3")
    with pytest.raises(ImageFetchError) as err:
        fetch_image(
            client,
            os_version="0.5.3",
            os_image_hash=image.os_image_hash,
            cache=cache,
            base_url=server.url,
            github_url=server.url,
            limits=LIMITS,
        )
    assert len(err.value.failures) == 2 and "HTTP 404" in str(err.value) and image.os_image_hash in str(err.value)
    server.files["/Dstack-TEE/meta-dstack/releases/download/v0.5.3/dstack-0.5.3.tar.gz"] = image.archive
    folder = fetch_image(
        client,
        os_version="0.5.3",
        os_image_hash=image.os_image_hash,
        cache=cache,
        base_url=server.url,
        github_url=server.url,
        limits=LIMITS,
    )
    assert folder.name == image.os_image_hash


def test_interrupted_image_download_resumes(server: ImageServer, client: NetClient, cache: ImageCache) -> None:
    image = good_image()
    path = serve_by_hash(server, image)
    server.drop_after[path] = 200_000
    kwargs = {"os_image_hash": image.os_image_hash, "cache": cache, "base_url": server.url, "limits": LIMITS}
    with pytest.raises(ImageFetchError, match="connection"):
        fetch_image(client, **kwargs)  # type: ignore[arg-type]
    folder = fetch_image(client, **kwargs)  # type: ignore[arg-type]
    assert server.ranges(path) == [None, "bytes=200000-"]
    assert (folder / "ovmf.fd").read_bytes() == image.files["ovmf.fd"]
    assert not any(cache.downloads_dir.iterdir())


# -- fetch_image: hostile or wrong archives ----------------------------------------------------------------------


def _hostile(members: list[tuple[tarfile.TarInfo, bytes | None]], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    # Good files first, so that a partial extraction exists when the bad member is met.
    return make_archive([*files_members(image_files()), *members], fmt=fmt)


HOSTILE = {
    "traversal": (_hostile([(_info("../x", 3), b"pwn")]), "path traversal"),
    "nested traversal": (_hostile([(_info("a/../../x", 3), b"pwn")]), "path traversal"),
    "absolute": (_hostile([(_info("/etc/x", 3), b"pwn")]), "absolute path"),
    "symlink out": (_hostile([(_info("evil", kind=tarfile.SYMTYPE, linkname="/etc"), None)]), "symbolic link"),
    "symlink then write through it": (
        _hostile([(_info("d", kind=tarfile.SYMTYPE, linkname="/tmp"), None), (_info("d/x", 3), b"pwn")]),
        "symbolic link",
    ),
    "hardlink": (_hostile([(_info("hl", kind=tarfile.LNKTYPE, linkname="/etc/passwd"), None)]), "hard link"),
    "device": (_hostile([(_info("null", kind=tarfile.CHRTYPE, devmajor=1, devminor=3), None)]), "device file"),
    "fifo": (_hostile([(_info("pipe", kind=tarfile.FIFOTYPE), None)]), "FIFO"),
    "oversized member": (_hostile([(_info("big", 1_200_000), bytes(1_200_000))]), "too large"),
    "too many members": (_hostile([(_info(f"f{i}", 1), b"x") for i in range(20)]), "more than 20 members"),
    "total size bomb": (_hostile([(_info(f"z{i}", 900_000), bytes(900_000)) for i in range(3)]), "decompression bomb"),
    "duplicate": (_hostile([(_info("./bzImage", 3), b"two")]), "appears twice"),
    "case-folded duplicate": (_hostile([(_info("BZIMAGE", 3), b"two")]), "appears twice"),
    "member below a file": (_hostile([(_info("bzImage/x", 3), b"pwn")]), "collides"),
    "long name bomb": (_hostile([(_info("n" * 200_000, 1), b"x")]), "bytes of tar headers"),
    "pax header bomb": (
        _hostile([(_info("p", 1, pax_headers={"comment": "c" * 200_000}), b"x")], fmt=tarfile.PAX_FORMAT),
        "bytes of tar headers",
    ),
    "not gzip": (b"PK\x03\x04 this is a zip", "not a readable tar.gz"),
    "truncated": (good_image().archive[:50_000], "not a readable tar.gz"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_and_leaves_nothing(
    case: str, server: ImageServer, client: NetClient, cache: ImageCache
) -> None:
    archive, message = HOSTILE[case]
    image = good_image()
    serve_by_hash(server, image, archive)
    with pytest.raises(UnsafeArchiveError, match=re.escape(message)) as err:
        fetch_image(client, os_image_hash=image.os_image_hash, cache=cache, base_url=server.url, limits=LIMITS)
    assert server.url in str(err.value)  # the message names where the archive came from
    assert leftovers(cache.folder) == []


def test_wrong_archive_hash_is_refused(server: ImageServer, client: NetClient, cache: ImageCache) -> None:
    image = good_image()
    serve_by_hash(server, image)
    with pytest.raises(HashMismatchError, match="0" * 64):
        fetch_image(
            client,
            os_image_hash=image.os_image_hash,
            cache=cache,
            base_url=server.url,
            limits=LIMITS,
            archive_sha256="0" * 64,
        )
    assert leftovers(cache.folder) == []
    # With the right archive hash it goes through.
    fetch_image(
        client,
        os_image_hash=image.os_image_hash,
        cache=cache,
        base_url=server.url,
        limits=LIMITS,
        archive_sha256=sha(image.archive),
    )


def test_wrong_os_image_hash_is_refused_naming_both(server: ImageServer, client: NetClient, cache: ImageCache) -> None:
    image = good_image()
    wanted = "ab" * 32
    server.files[f"/mr_{wanted}.tar.gz"] = image.archive  # a real image, but not the one asked for
    with pytest.raises(ImageHashMismatch) as err:
        fetch_image(client, os_image_hash=wanted, cache=cache, base_url=server.url, limits=LIMITS)
    assert wanted in str(err.value) and image.os_image_hash in str(err.value)
    assert (err.value.expected, err.value.actual) == (wanted, image.os_image_hash)
    assert leftovers(cache.folder) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("tampered file", "bzImage: sha256 is"),
        ("missing file", "missing from the image"),
        ("no manifest", "has no sha256sum.txt"),
        ("manifest lists a path", "not a plain file name"),
    ],
)
def test_archive_not_matching_its_manifest_is_refused(
    change: str, message: str, server: ImageServer, client: NetClient, cache: ImageCache
) -> None:
    files = image_files()
    listing = manifest(files)
    if change == "tampered file":
        files["bzImage"] = b"evil kernel"
    elif change == "missing file":
        del files["initramfs.cpio.gz"]
    elif change == "manifest lists a path":
        listing += f"{sha(b'x')}  ../etc/passwd\n".encode()
    contents = dict(files) if change == "no manifest" else {**files, "sha256sum.txt": listing}
    image = Image(make_archive(files_members(contents)), sha(listing), files)
    serve_by_hash(server, image)
    with pytest.raises(ImageVerificationError, match=re.escape(message)):
        fetch_image(client, os_image_hash=image.os_image_hash, cache=cache, base_url=server.url, limits=LIMITS)
    assert leftovers(cache.folder) == []


def test_offline_fetch_is_refused_without_leftovers(cache: ImageCache) -> None:
    with pytest.raises(OfflineError):
        fetch_image(NetClient(offline=True), os_image_hash=H, cache=cache)
    assert not cache.folder.exists() or leftovers(cache.folder) == []


def test_cancel_during_fetch(server: ImageServer, client: NetClient, cache: ImageCache) -> None:
    image = good_image()
    serve_by_hash(server, image)
    with pytest.raises(DownloadCancelled):
        fetch_image(
            client,
            os_image_hash=image.os_image_hash,
            cache=cache,
            base_url=server.url,
            limits=LIMITS,
            cancel=lambda: True,
        )
    assert not (cache.folder / "images").exists() or not any((cache.folder / "images").iterdir())


def test_cancel_during_extraction(server: ImageServer, client: NetClient, cache: ImageCache) -> None:
    image = good_image()
    serve_by_hash(server, image)
    downloaded = []

    def progress(done: int, total: int | None) -> None:
        if done == total:
            downloaded.append(done)

    with pytest.raises(DownloadCancelled):
        fetch_image(
            client,
            os_image_hash=image.os_image_hash,
            cache=cache,
            base_url=server.url,
            limits=LIMITS,
            progress=progress,
            cancel=lambda: bool(downloaded),
        )
    assert downloaded and leftovers(cache.folder) == []


# -- ImageCache --------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def stage_image(cache: ImageCache, seed: int) -> tuple[Path, str]:
    rnd = random.Random(seed)
    files = {"metadata.json": b"{}", "bzImage": rnd.randbytes(10_000)}
    folder = cache.new_staging_folder()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    listing = manifest(files)
    (folder / "sha256sum.txt").write_bytes(listing)
    return folder, sha(listing)


def test_lru_eviction_keeps_the_recently_used(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "c", cap_bytes=25_000, clock=Clock())  # room for two ~10.2 kB images
    a_dir, a = stage_image(cache, 1)
    b_dir, b = stage_image(cache, 2)
    c_dir, c = stage_image(cache, 3)
    cache.put(a_dir, a)
    cache.put(b_dir, b)
    assert cache.get(a) is not None  # a is now more recent than b
    cache.put(c_dir, c)
    assert {e.os_image_hash for e in cache.entries()} == {a, c}
    assert cache.get(b) is None
    assert [e.os_image_hash for e in cache.entries()] == [a, c]  # least recently used first
    assert cache.size() <= 25_000


def test_eviction_spares_held_and_new_images_and_survives_a_broken_index(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "c", cap_bytes=15_000, clock=Clock())  # room for one
    a_dir, a = stage_image(cache, 1)
    b_dir, b = stage_image(cache, 2)
    cache.put(a_dir, a)
    with cache.hold(a):
        cache.put(b_dir, b)  # over the cap, but a is in use and b is the new one
        assert {e.os_image_hash for e in cache.entries()} == {a, b}
    (cache.folder / "index.json").write_text("{not json")  # the order of use is lost, the sizes are not
    evicted = cache.evict()
    assert len(evicted) == 1 and [e.os_image_hash for e in cache.entries()] == sorted({a, b} - set(evicted))


def test_tampered_cached_image_is_a_miss(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "c", cap_bytes=10**6)
    folder, key = stage_image(cache, 1)
    path = cache.put(folder, key)
    (path / "bzImage").write_bytes(b"changed on disk")
    assert cache.get(key) is None and not path.exists()


# -- MeasurementCache --------------------------------------------------------------------------------------------

VM_CONFIG = {
    "os_image_hash": H,
    "cpu_count": 2,
    "memory_size": 2 * 1024**3,
    "qemu_version": "8.2.2",
    "pci_hole64_size": 0,
    "hugepages": False,
    "num_gpus": 0,
    "num_nvswitches": 0,
    "hotplug_off": False,
    "image": "dstack-0.6.0",
    "ovmf_variant": "pre202505",
    "spec_version": 1,
}


def measurement(**changes: object) -> Measurement:
    base: dict[str, object] = {
        "mrtd": bytes(range(48)),
        "rtmr0": b"\x01" * 48,
        "rtmr1": b"\xff" * 48,
        "rtmr2": b"\x80" * 48,
        "events": [
            ExpectedEvent(
                rtmr="rtmr0", index=0, digest=b"\xfe" * 48, what="TD HOB", source="image", event_type=0x8000000A
            )
        ],
        "mrtd_variant": "two_pass",
        "acpi_source": "acpi-tool",
        "path": "full-image",
        "inputs": {"os_image_hash": H, "cpu_count": 2},
    }
    base.update(changes)
    return Measurement.model_validate(base)


def test_measurement_cache_hit_miss_and_corruption(tmp_path: Path) -> None:
    cache = MeasurementCache(tmp_path / "m")
    m = measurement()
    assert cache.get(H, VM_CONFIG) is None
    assert cache.put(H, VM_CONFIG, m)
    assert cache.get(H, VM_CONFIG) == m
    # Fields that do not change the measurement do not change the key; those that do, do.
    assert cache.get(H, {**VM_CONFIG, "spec_version": 2, "tdx_measurement": {"x": 1}}) == m
    assert cache.get(H, {**VM_CONFIG, "cpu_count": 4}) is None
    assert cache.get(H, {**VM_CONFIG, "qemu_single_pass_add_pages": True}) is None
    assert cache.get("00" * 32, VM_CONFIG) is None
    assert cache.get(H, VM_CONFIG, extra={"path": "tdx-lite"}) is None
    path = cache.path(H, VM_CONFIG)
    stored = json.loads(path.read_text())
    assert stored["measurement"]["mrtd"] == bytes(range(48)).hex()  # bytes as hex
    for damage in [
        "{broken",
        json.dumps({**stored, "measurement": {**stored["measurement"], "rtmr1": "zz"}}),
        json.dumps({**stored, "key": {}}),
        json.dumps([1, 2]),
    ]:
        path.write_text(damage)
        assert cache.get(H, VM_CONFIG) is None
        assert not path.exists()  # dropped, so the next run recomputes
        cache.put(H, VM_CONFIG, m)


def test_measurement_from_the_event_log_is_not_cached(tmp_path: Path) -> None:
    cache = MeasurementCache(tmp_path / "m")
    assert not cache.put(H, VM_CONFIG, measurement(acpi_source="event-log-only"))
    assert cache.get(H, VM_CONFIG) is None
