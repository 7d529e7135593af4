"""The evidence pack as a zip: written deterministically (sorted names, fixed timestamps and modes), read safely
(bounded size and count, no absolute or parent paths, no links, no duplicates, every size checked while reading)."""

from __future__ import annotations

import io
import os
import re
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path

from ..errors import InputError
from ..evidence import MAX_EVIDENCE_BYTES

STATEMENT_FILE = "statement.dsse.json"
RENDERINGS_FILE = "renderings.dsse.json"
PUBLIC_KEY_FILE = "signing-key.pub.pem"
REPORT_FILE = "report.json"
HTML_FILE = "report.html"
PDF_FILE = "report.pdf"
EVIDENCE_DIR = "evidence/"

MAX_MEMBERS = 512
MAX_MEMBER_BYTES = MAX_EVIDENCE_BYTES
MAX_PACK_BYTES = 256 * 1024 * 1024  # the archive, and the sum of its members uncompressed
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest zip time: no clock in the archive
_UNSAFE_PART = re.compile(r"^(|\.|\.\.)$")


def write_pack(members: dict[str, bytes], out: Path) -> None:
    """Write the zip atomically (a temporary file renamed over `out`), members in name order."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".pack-", suffix=".zip", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w") as zf:
            for name in sorted(members):
                info = zipfile.ZipInfo(name, _FIXED_TIME)
                info.create_system = 3  # unix, whatever the platform, so the bytes do not depend on it
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, members[name], compresslevel=9)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_pack(path: Path) -> dict[str, bytes]:
    """The members of a pack, by name. Anything unsafe or unreadable is an InputError naming the member."""
    source = str(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError("no such file", source=source) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", source=source) from None
    if not path.is_file():
        raise InputError("not a regular file", source=source)
    if size > MAX_PACK_BYTES:
        raise InputError(f"pack is {size} bytes, more than the {MAX_PACK_BYTES} a pack may have", source=source)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_PACK_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=source) from None
    if len(data) > MAX_PACK_BYTES:
        raise InputError(f"file grew past {MAX_PACK_BYTES} bytes while being read", source=source)
    return read_pack_bytes(data, source)


def read_pack_bytes(data: bytes, source: str) -> dict[str, bytes]:
    """The members of a pack already read (as evidence is, bounded), with the same checks as `read_pack`."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return _read_members(zf, source)
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:  # a damaged directory can seek before the start
        raise InputError(f"not a zip archive ({str(exc)[:120]})", source=source) from None


def _read_members(zf: zipfile.ZipFile, source: str) -> dict[str, bytes]:
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise InputError(f"{len(infos)} members, more than the {MAX_MEMBERS} a pack may have", source=source)
    members: dict[str, bytes] = {}
    total = 0
    for info in infos:
        name = info.filename
        _check_name(name, source)
        if name in members:
            raise InputError("the archive holds this name twice", source=source, field=name)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise InputError("a symbolic link; packs hold regular files only", source=source, field=name)
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            raise InputError("an encrypted member", source=source, field=name)
        if info.file_size > MAX_MEMBER_BYTES:
            raise InputError(f"member is {info.file_size} bytes, more than {MAX_MEMBER_BYTES}", source=source,
                             field=name)
        data = _read_member(zf, info, source)
        total += len(data)
        if total > MAX_PACK_BYTES:
            raise InputError(f"members add up to more than {MAX_PACK_BYTES} bytes", source=source, field=name)
        members[name] = data
    return members


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> bytes:
    try:
        with zf.open(info) as fh:
            data = fh.read(MAX_MEMBER_BYTES + 1)  # the header's size may lie: bound what is inflated
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise InputError(f"corrupt member ({exc})", source=source, field=info.filename) from None
    except (NotImplementedError, RuntimeError) as exc:  # unknown compression method, encryption
        raise InputError(f"unreadable member ({exc})", source=source, field=info.filename) from None
    if len(data) > MAX_MEMBER_BYTES:
        raise InputError(f"member inflates past {MAX_MEMBER_BYTES} bytes", source=source, field=info.filename)
    return data


def _check_name(name: str, source: str) -> None:
    shown = name.encode("unicode_escape").decode()[:200]
    if "\\" in name or "\x00" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise InputError(f"unsafe member name {shown!r} (absolute, or not a plain relative path)", source=source)
    if any(_UNSAFE_PART.match(part) for part in name.rstrip("/").split("/")):
        raise InputError(f"unsafe member name {shown!r} (empty, '.' or '..' part)", source=source)
