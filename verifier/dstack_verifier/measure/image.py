"""A dstack OS image folder: metadata.json, sha256sum.txt and the files it lists (spec §8.1).

os_image_hash = sha256(the exact bytes of sha256sum.txt), so the manifest is parsed strictly: every line is
`<64 lowercase hex><two spaces><name>\\n` as `sha256sum` writes it, and every name is a plain file name in the
folder. A folder comes from a downloaded archive, so no name or symlink may lead outside it.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..errors import InputError
from ..jsontext import load_json

MANIFEST = "sha256sum.txt"
METADATA = "metadata.json"
DIGEST = "digest.txt"  # hex(sha256(sha256sum.txt)) and a newline, written by assemble.sh next to the manifest
MAX_MANIFEST_BYTES = 1 << 20
MAX_METADATA_BYTES = 1 << 20
MAX_DIGEST_BYTES = 4096

_HEX64 = re.compile(r"[0-9a-f]{64}")
# Characters no file name from `sha256sum` can hold: separators (which would reach into subfolders or, on
# Windows, another drive) and control characters (a CR from a CRLF file included).
_BAD_NAME_CHAR = re.compile(r"[/\\:\x00-\x1f\x7f]")


def check_name(name: str, source: str, field: str | None, offset: int | None = None) -> None:
    """Refuse anything but a plain file name inside the folder."""
    if not name:
        raise InputError("the file name is empty", source=source, field=field, offset=offset)
    if name in (".", ".."):
        raise InputError(f"the file name {name!r} is not a file in the image folder", source=source, field=field,
                         offset=offset)
    bad = _BAD_NAME_CHAR.search(name)
    if bad:
        raise InputError(f"the file name {name!r} contains {bad.group()!r}: only plain file names in the image folder "
                         f"are allowed", source=source, field=field,
                         offset=None if offset is None else offset + len(name[:bad.start()].encode()))


@dataclass(frozen=True)
class ManifestEntry:
    name: str
    sha256: bytes
    line: int  # 1-based line number in sha256sum.txt


def parse_manifest(data: bytes, source: str = MANIFEST) -> tuple[ManifestEntry, ...]:
    """The entries of a sha256sum.txt, in file order; anything but the exact `sha256sum` format is an InputError."""
    if not data:
        raise InputError("the manifest is empty", source=source, offset=0)
    if not data.endswith(b"\n"):
        raise InputError("the last line has no newline", source=source, offset=len(data))
    entries: list[ManifestEntry] = []
    seen: dict[str, int] = {}
    offset = 0
    for number, raw in enumerate(data[:-1].split(b"\n"), start=1):
        field = f"line {number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError("not UTF-8", source=source, field=field, offset=offset + exc.start) from None
        if line.startswith("\\"):
            raise InputError("an escaped name (leading backslash) is not allowed", source=source, field=field,
                             offset=offset)
        if len(line) < 67 or line[64:66] != "  " or line[66] == " ":
            raise InputError(f"expected '<64 hex digits>  <name>', got {line[:90]!r}", source=source, field=field,
                             offset=offset)
        digest = line[:64]
        if not _HEX64.fullmatch(digest):
            bad = next(i for i, c in enumerate(digest) if c not in "0123456789abcdef")
            raise InputError(f"bad hex in the digest: {digest[bad]!r} where 64 lowercase hex digits are expected",
                             source=source, field=field, offset=offset + bad)
        name = line[66:]
        check_name(name, source, field, offset + 66)
        if name == MANIFEST:
            raise InputError("the manifest lists itself", source=source, field=field, offset=offset + 66)
        if name in seen:
            raise InputError(f"{name!r} is listed twice (lines {seen[name]} and {number})", source=source,
                             field=field, offset=offset + 66)
        seen[name] = number
        entries.append(ManifestEntry(name=name, sha256=bytes.fromhex(digest), line=number))
        offset += len(raw) + 1
    return tuple(entries)


class ImageMetadata(BaseModel):
    """metadata.json: which files boot the VM, its command line, and what release it is."""

    model_config = ConfigDict(frozen=True)

    bios: str
    kernel: str
    initrd: str
    cmdline: str
    version: str | None = None  # older images lack version, is_dev and ovmf_variant
    git_revision: str | None = None
    is_dev: bool | None = None
    ovmf_variant: str | None = None
    rootfs: str | None = None
    raw: dict[str, Any]

    @classmethod
    def parse(cls, data: bytes, source: str = METADATA) -> ImageMetadata:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError("not UTF-8", source=source, offset=exc.start) from None
        doc = load_json(text, source)
        if not isinstance(doc, dict):
            raise InputError("expected a JSON object", source=source)
        values: dict[str, Any] = {}
        for key in ("bios", "kernel", "initrd", "cmdline"):
            value = doc.get(key)
            if not isinstance(value, str):
                what = "missing" if value is None else f"a {type(value).__name__}, not a string"
                raise InputError(f"{key} is {what}", source=source, field=key)
            values[key] = value
        for key in ("bios", "kernel", "initrd"):
            check_name(values[key], source, key)
        for key, kind in (("version", str), ("git_revision", str), ("is_dev", bool), ("ovmf_variant", str),
                          ("rootfs", str)):
            value = doc.get(key)
            if value is not None and not isinstance(value, kind):
                raise InputError(f"{key} is a {type(value).__name__}, expected a {kind.__name__}", source=source,
                                 field=key)
            values[key] = value
        return cls(**values, raw=doc)


@dataclass(frozen=True)
class FileCheck:
    """One file of the folder against sha256sum.txt."""

    name: str
    expected: str | None  # hex from sha256sum.txt; None when the file is not listed
    actual: str | None  # hex of the file's bytes; None when it could not be read
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "expected": self.expected, "actual": self.actual, "ok": self.ok,
                "problem": self.problem}


def _sha256_file(path: Path) -> bytes:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


class ImageFolder:
    """An opened image folder. Opening checks the format; `verify_files` checks the contents."""

    def __init__(self, root: Path, manifest: bytes, entries: tuple[ManifestEntry, ...],
                 metadata: ImageMetadata) -> None:
        self.root = root
        self.manifest = manifest
        self.entries = entries
        self.metadata = metadata

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> ImageFolder:
        try:
            root = Path(path).resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            raise InputError(f"the image folder cannot be opened: {exc}", source=str(path)) from None
        if not root.is_dir():
            raise InputError("not a folder", source=str(path))
        manifest = _read_capped(_resolve(root, MANIFEST), MAX_MANIFEST_BYTES, MANIFEST)
        entries = parse_manifest(manifest)
        metadata = ImageMetadata.parse(_read_capped(_resolve(root, METADATA), MAX_METADATA_BYTES, METADATA))
        return cls(root, manifest, entries, metadata)

    @property
    def os_image_hash(self) -> bytes:
        return hashlib.sha256(self.manifest).digest()

    def entry(self, name: str) -> ManifestEntry | None:
        return next((e for e in self.entries if e.name == name), None)

    def path_of(self, name: str) -> Path:
        """The file `name` in the folder; an InputError if it is missing, not a regular file, or leads outside."""
        return _resolve(self.root, name)

    @property
    def kernel_path(self) -> Path:
        return self.path_of(self.metadata.kernel)

    @property
    def initrd_path(self) -> Path:
        return self.path_of(self.metadata.initrd)

    @property
    def bios_path(self) -> Path:
        return self.path_of(self.metadata.bios)

    def required_names(self) -> list[str]:
        """The files a measurement reads, which the manifest must cover for os_image_hash to vouch for them."""
        names = [METADATA, self.metadata.bios, self.metadata.kernel, self.metadata.initrd]
        return list(dict.fromkeys(names))

    def verify_files(self) -> list[FileCheck]:
        """Every listed file hashed (streamed) and compared; then the required files the manifest leaves out, and
        digest.txt when present. The result lists every file, good or bad."""
        checks = [self._check_entry(e) for e in self.entries]
        listed = {e.name for e in self.entries}
        checks += [FileCheck(name, None, None, "not listed in sha256sum.txt, so os_image_hash does not cover it")
                   for name in self.required_names() if name not in listed]
        digest = self._check_digest_txt()
        if digest is not None:
            checks.append(digest)
        return checks

    def _check_entry(self, entry: ManifestEntry) -> FileCheck:
        expected = entry.sha256.hex()
        try:
            actual = _sha256_file(self.path_of(entry.name)).hex()
        except InputError as exc:
            return FileCheck(entry.name, expected, None, exc.message)
        except OSError as exc:
            return FileCheck(entry.name, expected, None, f"cannot be read: {exc.strerror or exc}")
        if actual != expected:
            return FileCheck(entry.name, expected, actual,
                             f"its sha256 is {actual}, sha256sum.txt (line {entry.line}) says {expected}")
        return FileCheck(entry.name, expected, actual)

    def _check_digest_txt(self) -> FileCheck | None:
        # digest.txt is not hashed into anything; a wrong one only means the folder was assembled inconsistently.
        expected = self.os_image_hash.hex()
        if not os.path.lexists(self.root / DIGEST):
            return None
        try:
            text = _read_capped(self.path_of(DIGEST), MAX_DIGEST_BYTES, DIGEST).decode("ascii", "replace").strip()
        except InputError as exc:
            return FileCheck(DIGEST, expected, None, exc.message)
        except OSError as exc:
            return FileCheck(DIGEST, expected, None, f"cannot be read: {exc.strerror or exc}")
        if text != expected:
            return FileCheck(DIGEST, expected, text[:80],
                             f"digest.txt says {text[:80]}, but sha256(sha256sum.txt) is {expected}")
        return FileCheck(DIGEST, expected, text)


def _resolve(root: Path, name: str) -> Path:
    check_name(name, name, None)
    candidate = root / name
    try:
        target = candidate.resolve(strict=True)
    except FileNotFoundError:
        if candidate.is_symlink():
            raise InputError("is a dangling symlink", source=name) from None
        raise InputError("is missing from the image folder", source=name) from None
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop on older Pythons
        raise InputError(f"cannot be resolved: {exc}", source=name) from None
    if not target.is_relative_to(root):
        raise InputError(f"is a symlink to {target}, outside the image folder", source=name)
    try:
        mode = target.stat().st_mode
    except OSError as exc:
        raise InputError(f"cannot be read: {exc.strerror or exc}", source=name) from None
    if not stat.S_ISREG(mode):
        raise InputError("is not a regular file", source=name)
    return target


def _read_capped(path: Path, limit: int, source: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"larger than the {limit} bytes allowed", source=source)
    return data

