"""Synthetic dstack OS images: a TDVF firmware, a PE bzImage, and a whole image folder, for tests and benchmarks.

Nothing here is a real OS: the files are seeded random bytes with just the structures the measurement reads laid
over them (spec dstack-measurement §2.1 for the firmware, §4 for the kernel, §8.1 for the folder). The same seed
always gives the same bytes, so expected values can be computed once and compared.

The builders write what the spec describes and share no code with `measure/`, so a test can check one against the
other; they are deliberately lenient (a test may ask for a broken firmware to see it refused).
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DESCRIPTOR_AT",
    "FOOTER_GUID",
    "IMAGE_SIZE",
    "METADATA_OFFSET_GUID",
    "OTHER_GUID",
    "SECTIONS",
    "Firmware",
    "Sec",
    "build_firmware",
    "build_image_folder",
    "dstack_cmdline",
    "dstack_firmware",
    "dstack_sections",
    "make_bzimage",
    "write_manifest",
]

FOOTER_GUID = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d").bytes_le  # OVMF GUIDed table footer
METADATA_OFFSET_GUID = uuid.UUID("e47a6535-984a-4798-865e-4685a7bf8ec2").bytes_le  # TDX metadata offset entry
OTHER_GUID = uuid.UUID("00f771de-1a7e-4fcb-890e-68c77e2fb44e").bytes_le  # any other table entry

PAGE = 0x1000
MiB = 1 << 20
FOUR_GIB = 1 << 32

# --------------------------------------------------------------------------------------------------------------------
# TDVF firmware (spec §2.1)


@dataclass(frozen=True)
class Sec:
    """One TDVF section entry, as written into the descriptor."""

    data_offset: int
    raw_size: int
    gpa: int
    mem_size: int
    type: int
    attributes: int


# A small firmware in the order of Debian's OVMF.fd / dstack's firmware: BFV, CFV, then the early memory ranges in
# descending address order; plus a PAGE_AUG section (never hashed) and a measured section larger than its raw data.
SECTIONS = (
    Sec(0x0000, 0x3000, 0xFFFFC000 - 0x3000, 0x3000, 0, 0x1),  # BFV, measured
    Sec(0x3000, 0x1000, 0xFFFF0000, 0x1000, 1, 0x0),  # CFV, page add only
    Sec(0, 0, 0x810000, 0x10000, 3, 0),  # TEMP_MEM
    Sec(0, 0, 0x80B000, 0x2000, 3, 0),  # TEMP_MEM
    Sec(0, 0, 0x809000, 0x2000, 2, 0),  # TD_HOB
    Sec(0, 0, 0x800000, 0x6000, 3, 0),  # TEMP_MEM
    Sec(0, 0, 0x1000000, 0x4000, 4, 0x2),  # PERM_MEM, PAGE_AUG
    Sec(0x1000, 0x1000, 0x1200000, 0x2000, 5, 0x1),  # PAYLOAD, measured over 2 pages from 1 page of raw data
)
DESCRIPTOR_AT = 0x4000
IMAGE_SIZE = 0x6000

# dstack's early memory ranges (spec §2.1, §10.1): TD HOB at 0x809000 and the temporary memory around it.
DSTACK_EARLY_RANGES = (
    Sec(0, 0, 0x810000, 0x10000, 3, 0),  # TEMP_MEM
    Sec(0, 0, 0x80B000, 0x2000, 3, 0),  # TEMP_MEM
    Sec(0, 0, 0x809000, 0x2000, 2, 0),  # TD_HOB
    Sec(0, 0, 0x800000, 0x6000, 3, 0),  # TEMP_MEM
)


@dataclass(frozen=True)
class Firmware:
    data: bytes
    descriptor: int
    table_start: int
    footer_guid: int  # offset of the footer GUID
    metadata_entry_end: int  # offset just past the metadata offset entry's GUID


def build_firmware(sections: tuple[Sec, ...] = SECTIONS, *, signature: bytes = b"TDVF", version: int = 1,
                   count: int | None = None, metadata_guid: bytes = METADATA_OFFSET_GUID,
                   footer_guid: bytes = FOOTER_GUID, tables_len_delta: int = 0,
                   meta_from_end: int | None = None, size: int = IMAGE_SIZE, descriptor_at: int = DESCRIPTOR_AT,
                   seed: int | str = 1234) -> Firmware:
    """Random bytes with a TDVF descriptor at `descriptor_at` and an OVMF GUIDed table before the last 32 bytes.

    The keyword arguments break one thing each (signature, version, section count, GUIDs, table length, metadata
    offset) so that tests can see a malformed image refused.
    """
    fw = bytearray(random.Random(seed).randbytes(size))
    entries = struct.pack("<4sIII", signature, 16 + 32 * len(sections), version,
                          len(sections) if count is None else count)
    for s in sections:
        entries += struct.pack("<IIQQII", s.data_offset, s.raw_size, s.gpa, s.mem_size, s.type, s.attributes)
    fw[descriptor_at:descriptor_at + len(entries)] = entries
    # GUIDed table: [other entry][metadata offset entry][another entry][footer: u16 length, GUID][32 bytes]
    other = b"\x11" * 6 + struct.pack("<H", 6 + 18) + OTHER_GUID
    meta_value = size - descriptor_at if meta_from_end is None else meta_from_end
    meta = struct.pack("<I", meta_value) + struct.pack("<H", 4 + 18) + metadata_guid
    trailing = b"\x22" * 10 + struct.pack("<H", 10 + 18) + OTHER_GUID
    table = other + meta + trailing
    footer = struct.pack("<H", len(table) + 18 + tables_len_delta) + footer_guid
    tail = table + footer + b"\x90" * 32
    start = size - len(tail)
    fw[start:] = tail
    return Firmware(data=bytes(fw), descriptor=descriptor_at, table_start=start,
                    footer_guid=size - 32 - 16, metadata_entry_end=start + len(other) + len(meta))


def dstack_sections(size: int) -> tuple[Sec, ...]:
    """A section table shaped like dstack's OVMF for a firmware of `size` bytes mapped just below 4 GiB.

    The CFV (configuration volume, page add only) comes first in the file, the BFV (boot volume, measured) is the
    rest of it, and the TD HOB / temporary memory ranges are dstack's, so the TD HOB digests equal the spec's.
    """
    if size % PAGE or size < 8 * PAGE:
        raise ValueError(f"a firmware size must be a multiple of 4 KiB and at least 32 KiB, not {size}")
    cfv = min(0x20000, size // 8 // PAGE * PAGE)
    base = FOUR_GIB - size
    return (
        Sec(cfv, size - cfv, base + cfv, size - cfv, 0, 0x1),  # BFV, measured
        Sec(0, cfv, base, cfv, 1, 0x0),  # CFV
        *DSTACK_EARLY_RANGES,
    )


def dstack_firmware(size: int = 0x40000, *, seed: int | str = "ovmf") -> bytes:
    """An `ovmf.fd` of `size` bytes with dstack's section layout; its descriptor sits in the last page, inside the
    measured BFV, as in a real OVMF."""
    return build_firmware(dstack_sections(size), size=size, descriptor_at=size - PAGE, seed=seed).data


# --------------------------------------------------------------------------------------------------------------------
# PE bzImage (spec §4)


def make_bzimage(*, protocol: int = 0x20F, loadflags: int = 0x01, xloadflags: int = 0x7F,
                 initrd_addr_max: int = 0x7FFFFFFF, pe32_plus: bool = True,
                 sections: tuple[tuple[int, int], ...] = ((0x1000, 0x2000), (0x400, 0xC00), (0x3000, 0x0)),
                 size: int = 0x4003, size_of_headers: int = 0x400, cert: tuple[int, int] = (0, 0),
                 seed: int | str = 1) -> bytes:
    """A PE image with a Linux setup header, like an EFI-stub bzImage: random bytes with the fields laid over.

    `sections` are (PointerToRawData, SizeOfRawData) pairs; `cert` is the security directory (address, size).
    """
    data = bytearray(random.Random(seed).randbytes(size))
    data[0:2] = b"MZ"
    struct.pack_into("<I", data, 0x3C, 0x40)
    data[0x40:0x44] = b"PE\0\0"
    coff = 0x44
    optsz = (112 if pe32_plus else 96) + 6 * 8
    struct.pack_into("<HH", data, coff, 0x8664 if pe32_plus else 0x14C, len(sections))
    struct.pack_into("<H", data, coff + 16, optsz)
    opt = coff + 20
    struct.pack_into("<H", data, opt, 0x20B if pe32_plus else 0x10B)
    struct.pack_into("<I", data, opt + 60, size_of_headers)
    datadir = opt + (112 if pe32_plus else 96)
    struct.pack_into("<I", data, datadir - 4, 6)  # NumberOfRvaAndSizes
    struct.pack_into("<II", data, datadir + 32, *cert)
    for i, (pointer, raw_size) in enumerate(sections):
        entry = opt + optsz + 40 * i
        data[entry:entry + 8] = f".s{i}".encode().ljust(8, b"\0")
        struct.pack_into("<II", data, entry + 16, raw_size, pointer)
    if opt + optsz + 40 * len(sections) > 0x1F1:
        raise ValueError("the PE headers must end before the setup header at 0x1f1: too many sections")
    data[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", data, 0x206, protocol)
    data[0x211] = loadflags
    struct.pack_into("<I", data, 0x22C, initrd_addr_max)
    struct.pack_into("<H", data, 0x236, xloadflags)
    return bytes(data)


# --------------------------------------------------------------------------------------------------------------------
# The image folder (spec §8.1)

FIRMWARE = "ovmf.fd"
KERNEL = "bzImage"
INITRD = "initramfs.cpio.gz"
METADATA = "metadata.json"
MANIFEST = "sha256sum.txt"
DIGEST = "digest.txt"
LISTED = (FIRMWARE, KERNEL, INITRD, METADATA)  # what sha256sum.txt lists, in assemble.sh's order


def dstack_cmdline(seed: int | str = "image") -> str:
    """A command line like os/image/kernel-cmdline.sh writes, with a rootfs hash derived from the seed."""
    rootfs_hash = hashlib.sha256(f"{seed}/rootfs".encode()).hexdigest()
    return ("console=ttyS0 init=/init panic=1 net.ifnames=0 biosdevname=0 mce=off oops=panic pci=noearly "
            "pci=nommconf random.trust_cpu=y random.trust_bootloader=n tsc=reliable no-kvmclock "
            f"dstack.rootfs_hash={rootfs_hash} dstack.rootfs_size=1073741824")


def _write_random(path: Path, size: int, seed: str) -> None:
    """`size` seeded random bytes, written 1 MiB at a time so a large initrd never sits in memory whole."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            piece = min(left, MiB)
            f.write(rng.randbytes(piece))
            left -= piece


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_manifest(folder: Path, names: tuple[str, ...] | list[str] = LISTED) -> bytes:
    """(Re)write sha256sum.txt over `names` as `sha256sum` does, and digest.txt = its sha256; returns the manifest.

    sha256(manifest) is the image's os_image_hash.
    """
    manifest = "".join(f"{_sha256_file(folder / name)}  {name}\n" for name in names).encode()
    (folder / MANIFEST).write_bytes(manifest)
    (folder / DIGEST).write_text(hashlib.sha256(manifest).hexdigest() + "\n")
    return manifest


def build_image_folder(dest: Path, *, seed: int | str = "image", firmware_size: int = 0x40000,
                       kernel_size: int = 0x40000, initrd_size: int = 0x80000, cmdline: str | None = None,
                       version: str = "0.6.0", is_dev: bool = False) -> Path:
    """An OS image folder as assemble.sh lays it out: ovmf.fd, bzImage, initramfs.cpio.gz, metadata.json,
    sha256sum.txt (over those four) and digest.txt. Returns `dest` (created if needed).

    The kernel's setup part is 4 KiB and its one body section spans the rest of the file, so Authenticode hashes
    nearly all of it. There is no rootfs and no measurement.tdx.cbor: the full-image path needs neither.
    """
    if kernel_size < 2 * PAGE:
        raise ValueError(f"a kernel needs at least 8 KiB, not {kernel_size}")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / FIRMWARE).write_bytes(dstack_firmware(firmware_size, seed=f"{seed}/ovmf"))
    (dest / KERNEL).write_bytes(make_bzimage(size=kernel_size, size_of_headers=0x400,
                                             sections=((0x400, 0xC00), (0x1000, kernel_size - 0x1000)),
                                             seed=f"{seed}/kernel"))
    _write_random(dest / INITRD, initrd_size, f"{seed}/initrd")
    metadata = {
        "bios": FIRMWARE,
        "kernel": KERNEL,
        "cmdline": dstack_cmdline(seed) if cmdline is None else cmdline,
        "initrd": INITRD,
        "rootfs": "rootfs.img.parted.verity",
        "version": version,
        "git_revision": hashlib.sha256(f"{seed}/git".encode()).hexdigest()[:40],
        "shared_ro": True,
        "is_dev": is_dev,
        "ovmf_variant": "pre202505",
    }
    (dest / METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    write_manifest(dest)
    return dest
