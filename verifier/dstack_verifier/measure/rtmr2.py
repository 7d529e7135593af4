"""RTMR2: what the Linux EFI stub measures, the kernel command line and the initrd (spec §5)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from ..errors import InputError
from .model import VARIES_CMDLINE, VARIES_INITRD, DigestSource, ExpectedEvent

EV_EVENT_TAG = 0x6
# OVMF passes the initrd to the kernel as a file named "initrd"; the EFI stub sees (and measures) this suffix too.
INITRD_SUFFIX = " initrd=initrd"

CMDLINE_WHAT = "the kernel command line (UTF-16LE, with \" initrd=initrd\"), which binds the rootfs hash"
INITRD_WHAT = "the initrd (SHA-384 of initramfs)"


def boot_cmdline(metadata_cmdline: str) -> str:
    """The command line the kernel receives for metadata.json's `cmdline`."""
    return metadata_cmdline + INITRD_SUFFIX


def cmdline_digest(cmdline: str) -> bytes:
    """sha384 of the command line as the EFI stub sees it: UTF-16LE, no BOM, with a 2-byte NUL terminator."""
    try:
        encoded = cmdline.encode("utf-16-le")
    except UnicodeEncodeError as exc:  # a lone surrogate from JSON "\\ud800" has no UTF-16 form
        raise InputError("the command line cannot be encoded as UTF-16", field="cmdline", offset=exc.start) from None
    return hashlib.sha384(encoded + b"\x00\x00").digest()


def file_sha384(path: str | os.PathLike[str]) -> tuple[bytes, int]:
    """(sha384, size) of a regular file, streamed; the size comes from the same open file as the digest."""
    source = Path(path).name
    try:  # checked before opening too: opening a folder fails differently on each OS, and a device never ends
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise InputError("not a regular file", source=source)
    except OSError as exc:
        raise InputError(f"cannot be read: {exc.strerror or exc}", source=source) from None
    with open(path, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InputError("not a regular file", source=source)
        digest = hashlib.file_digest(f, "sha384").digest()
        size = f.tell()
    if size != info.st_size:
        raise InputError(f"the file changed while it was hashed ({info.st_size} bytes, then {size})",
                         source=source)
    return digest, size


def rtmr2_events_from_digests(cmdline_sha384: bytes, initrd_sha384: bytes,
                              source: DigestSource = "image") -> list[ExpectedEvent]:
    """The 2 RTMR2 events from their digests (recomputed, or from a TDX-lite measurement document)."""
    for field, digest in (("cmdline_sha384", cmdline_sha384), ("initrd_sha384", initrd_sha384)):
        if len(digest) != 48:
            raise InputError(f"{len(digest)} bytes, expected 48 (SHA-384)", field=field)
    return [
        ExpectedEvent(rtmr="rtmr2", index=0, digest=cmdline_sha384, what=CMDLINE_WHAT, source=source,
                      event_type=EV_EVENT_TAG, varies_with=VARIES_CMDLINE),
        ExpectedEvent(rtmr="rtmr2", index=1, digest=initrd_sha384, what=INITRD_WHAT, source=source,
                      event_type=EV_EVENT_TAG, varies_with=VARIES_INITRD),
    ]


def measure_rtmr2(metadata_cmdline: str, initrd_path: str | os.PathLike[str]) -> list[ExpectedEvent]:
    """The 2 RTMR2 events for metadata.json's `cmdline` and an initrd file."""
    initrd_digest, _ = file_sha384(initrd_path)
    return rtmr2_events_from_digests(cmdline_digest(boot_cmdline(metadata_cmdline)), initrd_digest)
