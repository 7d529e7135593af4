"""Fetch a dstack OS image: download the release archive, extract it safely, verify it, cache it.

Where images come from (dstack-measurement.md §8.2, trust-center.md §1.11):

* by os_image_hash: ``<base>/mr_<hash>.tar.gz`` (download.dstack.org), files at the archive root;
* by version: GitHub releases, ``dstack[-nvidia][-dev]-<ver>.tar.gz``, files under one top folder. Guest OS 0.6.0 and
  later are released from Dstack-TEE/dstack (tag ``guest-os-v<ver>``), older ones from Dstack-TEE/meta-dstack
  (``v<ver>``, which trust-center uses for every version, so it is the fallback); NVIDIA images below 0.5.6 come
  from nearai/private-ml-sdk.

Unlike trust-center, which runs ``tar -xzf`` on whatever arrives and never checks sha256sum.txt (trust-center.md
§7), the archive is treated as hostile: only plain files and folders are extracted (no links, devices or other
special members, no absolute paths or ``..``), with limits on member count, member size, total size and header
size; every file listed in sha256sum.txt is checked, files it does not list are dropped, and when an os_image_hash
is expected sha256(sha256sum.txt) must equal it. Only then is the folder renamed into the cache.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import re
import shutil
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..net import DownloadCancelled, HashMismatchError, NetClient, NetError, OfflineError
from .cache import (
    MANIFEST,
    ImageCache,
    ImageError,
    ImageHashMismatch,
    ImageVerificationError,
    normalise_image_hash,
    read_manifest,
    verify_image_folder,
)

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_ARCHIVE_BYTES",
    "DOWNLOAD_BASE_URL",
    "GITHUB_BASE_URL",
    "ExtractCancelled",
    "ExtractLimits",
    "ImageError",
    "ImageFetchError",
    "ImageHashMismatch",
    "ImageVerificationError",
    "UnsafeArchiveError",
    "extract_archive",
    "fetch_image",
    "image_name",
    "image_urls",
]

DOWNLOAD_BASE_URL = "https://download.dstack.org/os-images"
GITHUB_BASE_URL = "https://github.com"
DEFAULT_MAX_ARCHIVE_BYTES = 8 * 1024**3

_VERSION = re.compile(r"\d{1,4}(?:\.\d{1,4}){1,3}")
_IMAGE_NAME = re.compile(r"dstack-(nvidia-)?(dev-)?(\d{1,4}(?:\.\d{1,4}){1,3})")
# Members whose bytes are not needed to measure (the rootfs is bound through the cmdline's rootfs hash, and is by
# far the largest file): checked like any other member, then not written.
_SKIPPED = re.compile(r"rootfs[^/]*")
_WINDOWS_RESERVED = re.compile(r"(con|prn|aux|nul|com\d|lpt\d)(\..*)?", re.IGNORECASE)
_MAX_DEPTH = 8


class UnsafeArchiveError(ImageError):
    """The archive holds something that must not be extracted (or breaks a size limit)."""


class ExtractCancelled(ImageError):
    """The cancel callback asked to stop during extraction (:func:`fetch_image` turns it into DownloadCancelled)."""

    def __init__(self) -> None:
        super().__init__("cancelled while extracting the OS image")


class ImageFetchError(ImageError):
    """None of the candidate URLs gave the image; ``failures`` holds (url, problem) for each."""

    def __init__(self, failures: list[tuple[str, str]]) -> None:
        self.failures = failures
        tried = "; ".join(f"{url}: {problem}" for url, problem in failures)
        super().__init__(f"could not download the OS image ({tried})")


@dataclass(frozen=True)
class ExtractLimits:
    max_members: int = 256
    max_member_bytes: int = 8 * 1024**3
    max_total_bytes: int = 16 * 1024**3  # uncompressed, all members (skipped ones too): the decompression bomb
    max_header_bytes: int = 1024 * 1024  # tar headers, long names and pax records between two members


DEFAULT_LIMITS = ExtractLimits()


# -- URLs --------------------------------------------------------------------------------------------------------


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def image_name(os_version: str) -> str:
    """``0.5.3`` → ``dstack-0.5.3``; an image name (``dstack-[nvidia-][dev-]<ver>``, as in vm_config.image) is kept.
    Anything else is a ValueError: the name goes into URLs."""
    text = os_version.strip()
    if text.startswith("v") and _VERSION.fullmatch(text[1:]):
        text = text[1:]
    if _VERSION.fullmatch(text):
        return f"dstack-{text}"
    if _IMAGE_NAME.fullmatch(text):
        return text
    raise ValueError(f"not a dstack OS version or image name: {os_version!r}")


def image_urls(
    os_version: str | None,
    os_image_hash: str | None,
    *,
    base_url: str = DOWNLOAD_BASE_URL,
    github_url: str = GITHUB_BASE_URL,
) -> list[str]:
    """Candidate archive URLs, best first: the content-addressed one (by hash), then the GitHub releases (by
    version). ``os_version`` is a version (``0.5.3``) or an image name (``dstack-nvidia-dev-0.5.6``)."""
    urls: list[str] = []
    if os_image_hash is not None:
        urls.append(f"{base_url.rstrip('/')}/mr_{normalise_image_hash(os_image_hash)}.tar.gz")
    if os_version is not None:
        name = image_name(os_version)
        match = _IMAGE_NAME.fullmatch(name)
        assert match is not None
        nvidia, version = bool(match[1]), match[3]
        file = f"{name}.tar.gz"
        gh = github_url.rstrip("/")
        parsed = _version_tuple(version)
        if nvidia and parsed < (0, 5, 6):
            urls.append(f"{gh}/nearai/private-ml-sdk/releases/download/v{version}/{file}")
        else:
            if parsed >= (0, 6):
                urls.append(f"{gh}/Dstack-TEE/dstack/releases/download/guest-os-v{version}/{file}")
            urls.append(f"{gh}/Dstack-TEE/meta-dstack/releases/download/v{version}/{file}")
    if not urls:
        raise ValueError("need an OS version or an os_image_hash to find the image")
    return urls


# -- extraction --------------------------------------------------------------------------------------------------


class _BoundedReader:
    """Counts the decompressed bytes tarfile reads. Refuses more than ``total`` in all, and more than ``window``
    while tarfile is reading headers, i.e. between :meth:`headers` and :meth:`data` (tarfile reads long names and
    pax records into memory whole, so a huge "name" is a memory bomb)."""

    def __init__(self, raw: IO[bytes], *, total: int, window: int) -> None:
        self._raw = raw
        self._total = total
        self._window = window
        self.count = 0
        self._mark: int | None = 0

    def headers(self) -> None:
        self._mark = self.count

    def data(self) -> None:
        self._mark = None

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = 1 << 16
        data = self._raw.read(size)
        self.count += len(data)
        if self.count > self._total:
            raise UnsafeArchiveError(f"archive expands to more than {self._total} bytes (decompression bomb?)")
        if self._mark is not None and self.count - self._mark > self._window:
            raise UnsafeArchiveError(f"archive has more than {self._window} bytes of tar headers in a row")
        return data


def _member_parts(name: str) -> tuple[str, ...]:
    """The member's path as safe relative components; UnsafeArchiveError when it is not one."""
    shown = repr(name[:120])
    if not name or "\x00" in name:
        raise UnsafeArchiveError(f"archive member with an empty or NUL-bearing name: {shown}")
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        raise UnsafeArchiveError(f"archive member with an absolute path: {shown}")
    if "\\" in name:
        raise UnsafeArchiveError(f"archive member with a backslash in its path: {shown}")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(f"archive member with '..' in its path (path traversal): {shown}")
    if len(parts) > _MAX_DEPTH:
        raise UnsafeArchiveError(f"archive member nested too deep: {shown}")
    for part in parts:
        if any(ord(c) < 32 or c == ":" for c in part) or part.endswith((" ", ".")) or _WINDOWS_RESERVED.fullmatch(part):
            raise UnsafeArchiveError(f"archive member with a name that is not portable: {shown}")
    return parts


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"symbolic link (to {member.linkname[:120]!r})"
    if member.islnk():
        return f"hard link (to {member.linkname[:120]!r})"
    if member.ischr() or member.isblk():
        return "device file"
    if member.isfifo():
        return "FIFO"
    if member.issparse():
        return "sparse file"
    return f"member of tar type {member.type!r}"


def extract_archive(
    archive: Path,
    dest: Path,
    *,
    limits: ExtractLimits = DEFAULT_LIMITS,
    cancel: Callable[[], bool] | None = None,
) -> None:
    """Extract the tar.gz ``archive`` into the existing empty folder ``dest``, refusing anything unsafe (see the
    module docstring). Members named ``rootfs*`` are checked but not written. On error ``dest`` may hold a partial
    extraction: the caller deletes it."""
    root = dest.resolve()
    seen: set[str] = set()
    members = 0
    total = 0
    try:
        with archive.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
            reader = _BoundedReader(
                unzipped,  # type: ignore[arg-type]
                total=limits.max_total_bytes + (limits.max_members + 2) * limits.max_header_bytes,
                window=limits.max_header_bytes + 64 * 1024,
            )
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    reader.data()
                    if cancel is not None and cancel():
                        raise ExtractCancelled()
                    members += 1
                    if members > limits.max_members:
                        raise UnsafeArchiveError(f"archive has more than {limits.max_members} members")
                    total += member.size
                    _extract_member(tar, member, root, seen, limits, total, cancel)
                    reader.headers()
    except ImageError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UnsafeArchiveError(f"not a readable tar.gz archive ({type(exc).__name__}: {exc})") from exc
    if members == 0:
        raise UnsafeArchiveError("the archive is empty")


def _extract_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    root: Path,
    seen: set[str],
    limits: ExtractLimits,
    total: int,
    cancel: Callable[[], bool] | None,
) -> None:
    shown = repr(member.name[:120])
    parts = _member_parts(member.name)
    if not (member.isreg() or member.isdir()) or member.issparse():
        raise UnsafeArchiveError(f"archive member {shown} is a {_kind(member)}")
    if member.size > limits.max_member_bytes:
        raise UnsafeArchiveError(
            f"archive member {shown} is too large ({member.size} bytes > limit {limits.max_member_bytes})"
        )
    if total > limits.max_total_bytes:
        raise UnsafeArchiveError(f"archive expands to more than {limits.max_total_bytes} bytes (decompression bomb?)")
    if not parts:  # "./": the archive root itself
        return
    target = root.joinpath(*parts)
    if not target.resolve().is_relative_to(root):  # cannot happen without links; belt and braces
        raise UnsafeArchiveError(f"archive member {shown} leaves the folder")
    folded = "/".join(parts).casefold()  # case-insensitive file systems (macOS, Windows) would merge these
    if member.isdir():
        try:
            target.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise UnsafeArchiveError(f"archive member {shown} collides with another member") from exc
        seen.add(folded)
        return
    if folded in seen:
        raise UnsafeArchiveError(f"archive member {shown} appears twice")
    seen.add(folded)
    try:
        _copy_member(tar, member, target, write=not _SKIPPED.fullmatch(parts[-1]), cancel=cancel)
    except (FileExistsError, NotADirectoryError) as exc:
        raise UnsafeArchiveError(f"archive member {shown} collides with another member") from exc


def _copy_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    target: Path,
    *,
    write: bool,
    cancel: Callable[[], bool] | None,
) -> None:
    source = tar.extractfile(member)
    assert source is not None  # a regular file
    copied = 0
    if write:
        target.parent.mkdir(parents=True, exist_ok=True)
    # "xb": never overwrite, never follow something already there. No mode, owner or time from the archive.
    sink: Any = target.open("xb") if write else contextlib.nullcontext()
    with sink as out:
        while chunk := source.read(1 << 20):
            if cancel is not None and cancel():
                raise ExtractCancelled()
            copied += len(chunk)
            if out is not None:
                out.write(chunk)
    if copied != member.size:
        raise UnsafeArchiveError(f"archive member {member.name[:120]!r} is truncated")


def _image_root(staging: Path) -> Path:
    """Where the image files are: the staging folder itself (mr_<hash> archives are flat) or its only top folder
    (GitHub release archives, extracted by trust-center with --strip-components=1)."""
    if (staging / MANIFEST).is_file():
        return staging
    children = list(staging.iterdir())
    if len(children) == 1 and children[0].is_dir() and (children[0] / MANIFEST).is_file():
        return children[0]
    raise ImageVerificationError(f"the archive has no {MANIFEST} at its root or in a single top folder")


def _keep_listed_only(folder: Path) -> None:
    """Delete everything sha256sum.txt does not list (as dstack's verifier does), so the cache holds checked
    bytes only."""
    _raw, entries = read_manifest(folder)
    for child in folder.iterdir():
        if child.name == MANIFEST or (child.name in entries and child.is_file() and not child.is_symlink()):
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


# -- fetching ----------------------------------------------------------------------------------------------------


def _archive_path(cache: ImageCache, url: str) -> Path:
    tag = hashlib.sha256(url.encode()).hexdigest()[:16]
    base = re.sub(r"[^A-Za-z0-9._-]", "_", url.rsplit("/", 1)[-1])[:100] or "image.tar.gz"
    return cache.downloads_dir / f"{tag}-{base}"


def fetch_image(
    client: NetClient,
    *,
    os_version: str | None = None,
    os_image_hash: str | None = None,
    cache: ImageCache,
    max_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES,
    progress: Callable[[int, int | None], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    archive_sha256: str | None = None,
    base_url: str = DOWNLOAD_BASE_URL,
    github_url: str = GITHUB_BASE_URL,
    limits: ExtractLimits = DEFAULT_LIMITS,
) -> Path:
    """The verified image folder for ``os_image_hash`` and/or ``os_version``, from the cache or downloaded.

    With an ``os_image_hash`` the result's sha256(sha256sum.txt) equals it; with only a version the image is as
    published on GitHub (TLS is then the only anchor) and is cached under the hash it turns out to have.
    ``archive_sha256`` pins the archive bytes when known (it applies to every candidate URL, so pass it with the
    inputs that select one scheme). The candidate URLs (:func:`image_urls`) are tried in
    order while they fail at the network level (not found, connection...); an archive that arrives but is
    unsafe or does not verify stops the fetch with that error, since it is a finding in itself.

    Raises OfflineError (offline and not cached), DownloadCancelled (while downloading or extracting; a partial
    download is kept for a resume), HashMismatchError (archive_sha256), UnsafeArchiveError, ImageVerificationError
    / ImageHashMismatch, ImageFetchError (every candidate failed at the network level). Nothing is left in the cache
    after an error but a resumable ``downloads/*.part``. Wrap the use of the folder in ``cache.hold(hash)`` when
    other images may be fetched meanwhile.
    """
    expected = normalise_image_hash(os_image_hash) if os_image_hash is not None else None
    name = image_name(os_version) if os_version is not None else None
    urls = image_urls(os_version, expected, base_url=base_url, github_url=github_url)

    cached_key = expected if expected is not None else cache.find(name) if name is not None else None
    if cached_key is not None:
        folder = cache.get(cached_key, name=name)
        if folder is not None:
            return folder

    failures: list[tuple[str, str]] = []
    for url in urls:
        archive = _archive_path(cache, url)
        try:
            client.download(
                url, archive, max_bytes=max_bytes, expected_sha256=archive_sha256, progress=progress, cancel=cancel
            )
        except (OfflineError, DownloadCancelled, HashMismatchError):
            raise
        except NetError as exc:
            failures.append((url, exc.problem))
            continue
        try:
            return _install(archive, url, expected, name, cache, limits, cancel)
        except ExtractCancelled as exc:
            raise DownloadCancelled(url) from exc
        finally:
            archive.unlink(missing_ok=True)
    raise ImageFetchError(failures)


def _install(
    archive: Path,
    url: str,
    expected: str | None,
    name: str | None,
    cache: ImageCache,
    limits: ExtractLimits,
    cancel: Callable[[], bool] | None,
) -> Path:
    staging = cache.new_staging_folder()
    try:
        try:
            extract_archive(archive, staging, limits=limits, cancel=cancel)
            root = _image_root(staging)
            actual = verify_image_folder(root, None)
        except UnsafeArchiveError as exc:
            raise UnsafeArchiveError(f"{url}: {exc}") from exc
        except ImageHashMismatch:
            raise
        except ImageVerificationError as exc:
            raise ImageVerificationError(f"{url}: {exc}") from exc
        if expected is not None and actual != expected:
            raise ImageHashMismatch(expected, actual, source=url)
        _keep_listed_only(root)
        return cache.put(root, actual, name=name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
