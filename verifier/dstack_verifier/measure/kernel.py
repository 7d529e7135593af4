"""RTMR1: the kernel image as OVMF measures it, after QEMU has patched its Linux setup header (spec §4).

QEMU writes the boot parameters (loader type, heap end, command-line address, initrd address and size) into the
bzImage's setup header before OVMF loads it, and OVMF measures the patched image with Authenticode SHA-384. So the
expected digest depends on the initrd size and the VM's memory size, not only on the kernel file. dstack hashes
with its own Authenticode variant (§4.2), which differs from standard Authenticode in two places; both are kept.

Kernel files are streamed: only the first 4 KiB (the part QEMU patches) is held in memory, so a hostile or huge
file costs time, never memory.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .model import VARIES_CONSTANT, VARIES_KERNEL, DigestSource, ExpectedEvent

ACPI_DATA_SIZE = 0x28000  # what QEMU reserves below 4 GiB for ACPI data on a TDX guest (§4.1)
SETUP_SIZE = 0x1000  # QEMU refuses a kernel shorter than this, and every byte it patches lies below it
_CHUNK = 1 << 20

EV_SEPARATOR = 0x4
EV_EFI_ACTION = 0x80000007
EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003

KERNEL_EVENT_WHAT = "the kernel image (Authenticode SHA-384 of the patched bzImage)"

# The 4 events OVMF logs after the kernel; their text is fixed, so their digests are constants (§4).
RTMR1_CONSTANTS: tuple[tuple[bytes, int, str], ...] = (
    (b"Calling EFI Application from Boot Option", EV_EFI_ACTION,
     'the firmware\'s "Calling EFI Application from Boot Option" action, as it starts the kernel'),
    (b"\x00\x00\x00\x00", EV_SEPARATOR, "the separator (four zero bytes) closing the firmware's boot measurements"),
    (b"Exit Boot Services Invocation", EV_EFI_ACTION,
     'the "Exit Boot Services Invocation" action, as the kernel takes over from the firmware'),
    (b"Exit Boot Services Returned with Success", EV_EFI_ACTION,
     'the "Exit Boot Services Returned with Success" action, after the firmware has handed over'),
)


def _u16(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset:offset + 2], "little")


def _u32(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset:offset + 4], "little")


# --------------------------------------------------------------------------------------------------------------------
# A read-only view of the (patched) kernel: the setup part from memory, the rest read from the file on demand


class _KernelView:
    def __init__(self, head: bytes, size: int, read_tail: Callable[[int, int], bytes], source: str) -> None:
        self.head = head
        self.size = size
        self._read_tail = read_tail  # (offset, length) -> bytes, for offsets at or beyond len(head)
        self.source = source

    def read(self, offset: int, length: int, field: str) -> bytes:
        """Exactly `length` bytes at `offset`, or an InputError naming the field that points there."""
        if offset < 0 or offset + length > self.size:
            raise InputError(f"{field} ({length} bytes at offset {offset}) lies beyond the end of the "
                             f"{self.size}-byte kernel image", source=self.source, field=field, offset=offset)
        return b"".join(self.chunks(offset, offset + length))

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        """The bytes of [start, end), clipped to the file, in pieces of at most 1 MiB."""
        end = min(end, self.size)
        while start < end:
            if start < len(self.head):
                piece = self.head[start:min(end, len(self.head))]
            else:
                piece = self._read_tail(start, min(end - start, _CHUNK))
                if not piece:  # the file shrank under us
                    raise InputError("the kernel image ended early while it was being read", source=self.source,
                                     offset=start)
            yield piece
            start += len(piece)


# --------------------------------------------------------------------------------------------------------------------
# The Linux setup header and QEMU's patch of it (§4.1)


@dataclass(frozen=True)
class SetupHeader:
    """The Linux boot-protocol fields QEMU reads before patching (Documentation/arch/x86/boot.rst)."""

    protocol: int  # u16 @0x206, e.g. 0x20f
    loadflags: int  # u8 @0x211; bit 0 = LOADED_HIGH
    initrd_addr_max: int  # u32 @0x22C (protocol >= 2.03)
    xloadflags: int  # u16 @0x236 (protocol >= 2.12)

    @classmethod
    def parse(cls, head: bytes, source: str = "bzImage") -> SetupHeader:
        if len(head) < SETUP_SIZE:
            raise InputError(f"the kernel image is {len(head)} bytes, shorter than the {SETUP_SIZE} bytes QEMU "
                             f"requires", source=source, field="setup header", offset=len(head))
        # QEMU treats a kernel without the "HdrS" magic as a pre-2.00 image, which dstack's computation does not
        # model; and no dstack kernel lacks it. So such a file is refused rather than measured differently.
        if head[0x202:0x206] != b"HdrS":
            raise InputError(f"not a Linux bzImage: the setup header magic is {head[0x202:0x206].hex()}, "
                             f"expected 'HdrS'", source=source, field="header", offset=0x202)
        return cls(protocol=_u16(head, 0x206), loadflags=head[0x211], initrd_addr_max=_u32(head, 0x22C),
                   xloadflags=_u16(head, 0x236))


def _initrd_max(header: SetupHeader) -> int:
    if header.protocol >= 0x20C:
        # dstack (and so the spec) tests xloadflags bit 6 (0x40, XLF_5LEVEL_ENABLED in Linux) where QEMU tests bit 1
        # (0x2, XLF_CAN_BE_LOADED_ABOVE_4G). They agree for kernels with both bits set or both clear (a relocatable
        # x86-64 kernel with 5-level paging sets both); we follow dstack so the digest is the one its tools publish.
        return 0xFFFFFFFF if header.xloadflags & 0x40 else 0x37FFFFFF
    if header.protocol >= 0x203:
        return header.initrd_addr_max or 0x37FFFFFF
    return 0x37FFFFFF


def initrd_address(header: SetupHeader, initrd_size: int, memory_size: int,
                   acpi_data_size: int = ACPI_DATA_SIZE, source: str = "bzImage") -> int:
    """Where QEMU places the initrd: the top of usable memory below 4 GiB (and below initrd_addr_max), page-aligned."""
    initrd_max = _initrd_max(header)
    # Below 0xB0000000 QEMU gives the guest all memory below 4 GiB (lowmem 0xB0000000); from there on it splits at
    # 2 GiB. Which is why 2 GiB and >= 0xB0000000 give the same address and every other size below differs.
    lowmem = 0xB0000000 if memory_size < 0xB0000000 else 0x80000000
    below_4g = lowmem if memory_size >= lowmem else memory_size
    available = below_4g - acpi_data_size
    if available < 0:
        raise InputError(f"memory_size {memory_size} leaves no room below 4 GiB for the {acpi_data_size} bytes of "
                         f"ACPI data", source=source, field="memory_size")
    if initrd_max >= available:
        initrd_max = max(available - 1, 0)
    if initrd_size >= initrd_max:
        raise InputError(f"the initrd ({initrd_size} bytes) does not fit below {initrd_max:#x}", source=source,
                         field="initrd size")
    return (initrd_max - initrd_size) & ~0xFFF


def patch_setup_header(head: bytes, initrd_size: int, memory_size: int, acpi_data_size: int = ACPI_DATA_SIZE,
                       source: str = "bzImage") -> bytes:
    """The kernel's first bytes (at least 4 KiB) as QEMU leaves them for OVMF; the rest of the file is unchanged."""
    if not 0 <= initrd_size <= 0xFFFFFFFF:
        # QEMU and dstack keep the size in a 32-bit field (ramdisk_size).
        raise InputError(f"the initrd is {initrd_size} bytes; the setup header holds at most 4 GiB - 1",
                         source=source, field="initrd size")
    if not 0 <= memory_size < 1 << 64:
        raise InputError(f"memory_size {memory_size} is not a 64-bit unsigned size", source=source,
                         field="memory_size")
    header = SetupHeader.parse(head, source)
    out = bytearray(head)
    proto = header.protocol
    high = proto >= 0x200 and header.loadflags & 0x01
    real_addr, cmdline_addr = (0x10000, 0x20000) if high else (0x90000, 0x9A000)
    if proto >= 0x200:
        out[0x210] = 0xB0  # type_of_loader: QEMU
    if proto >= 0x201:
        out[0x211] |= 0x80  # CAN_USE_HEAP
        out[0x224:0x228] = max(cmdline_addr - real_addr - 0x200, 0).to_bytes(4, "little")  # heap_end_ptr
    if proto >= 0x202:
        out[0x228:0x22C] = cmdline_addr.to_bytes(4, "little")  # cmd_line_ptr
    else:  # the old command-line protocol: a magic and an offset from the real-mode base
        out[0x20:0x22] = (0xA33F).to_bytes(2, "little")
        # A 16-bit field: dstack keeps the low 16 bits (0 for a LOADED_HIGH 2.00/2.01 kernel, whose offset is 0x10000).
        out[0x22:0x24] = ((cmdline_addr - real_addr) & 0xFFFF).to_bytes(2, "little")
    if initrd_size > 0:
        if proto < 0x200:
            raise InputError(f"boot protocol {proto:#x} is too old to take an initrd", source=source,
                             field="version", offset=0x206)
        address = initrd_address(header, initrd_size, memory_size, acpi_data_size, source)
        out[0x218:0x21C] = address.to_bytes(4, "little")  # ramdisk_image
        out[0x21C:0x220] = initrd_size.to_bytes(4, "little")  # ramdisk_size
    return bytes(out)


# --------------------------------------------------------------------------------------------------------------------
# The PE layout and dstack's Authenticode variant (§4.2)


@dataclass(frozen=True)
class PeLayout:
    lfanew: int
    pe32_plus: bool
    checksum_offset: int  # the 4-byte CheckSum field, skipped by Authenticode
    cert_dir_offset: int  # the 8-byte security data-directory entry, skipped too
    size_of_headers: int
    optional_header_size: int
    sections: tuple[tuple[int, int], ...]  # (PointerToRawData, SizeOfRawData) in section-table order
    cert_table: tuple[int, int]  # (address, size) from the security directory

    @classmethod
    def parse(cls, view: _KernelView) -> PeLayout:
        if view.read(0, 2, "e_magic") != b"MZ":
            raise InputError("not a PE image: no 'MZ' at the start", source=view.source, field="e_magic", offset=0)
        lfanew = _u32(view.read(0x3C, 4, "e_lfanew"), 0)
        if view.read(lfanew, 4, "PE signature") != b"PE\0\0":
            raise InputError("not a PE image: no 'PE\\0\\0' where e_lfanew points", source=view.source,
                             field="PE signature", offset=lfanew)
        coff = lfanew + 4
        nsec = _u16(view.read(coff + 2, 2, "NumberOfSections"), 0)
        optsz = _u16(view.read(coff + 16, 2, "SizeOfOptionalHeader"), 0)
        opt = coff + 20
        magic = _u16(view.read(opt, 2, "optional header Magic"), 0)
        if magic not in (0x10B, 0x20B):
            raise InputError(f"optional header Magic is {magic:#x}, expected 0x10b (PE32) or 0x20b (PE32+)",
                             source=view.source, field="optional header Magic", offset=opt)
        pe32_plus = magic == 0x20B
        cert_dir = opt + (112 if pe32_plus else 96) + 4 * 8
        size_of_headers = _u32(view.read(opt + 60, 4, "SizeOfHeaders"), 0)
        cert_entry = view.read(cert_dir, 8, "security directory")
        # The three header ranges Authenticode hashes must be in order and inside the file.
        if size_of_headers < cert_dir + 8:
            raise InputError(f"SizeOfHeaders ({size_of_headers}) ends before the security directory entry at "
                             f"{cert_dir}", source=view.source, field="SizeOfHeaders", offset=opt + 60)
        if size_of_headers > view.size:
            raise InputError(f"SizeOfHeaders ({size_of_headers}) is beyond the end of the {view.size}-byte file",
                             source=view.source, field="SizeOfHeaders", offset=opt + 60)
        table_offset = opt + optsz
        table = view.read(table_offset, 40 * nsec, "section table")
        sections = tuple((_u32(table, 40 * i + 20), _u32(table, 40 * i + 16)) for i in range(nsec))
        return cls(lfanew=lfanew, pe32_plus=pe32_plus, checksum_offset=opt + 64, cert_dir_offset=cert_dir,
                   size_of_headers=size_of_headers, optional_header_size=optsz, sections=sections,
                   cert_table=(_u32(cert_entry, 0), _u32(cert_entry, 4)))


def _authenticode(view: _KernelView) -> bytes:
    pe = PeLayout.parse(view)
    h = hashlib.sha384()

    def feed(ranges: Iterable[tuple[int, int]]) -> None:
        for start, end in ranges:
            for piece in view.chunks(start, end):
                h.update(piece)

    feed([(0, pe.checksum_offset), (pe.checksum_offset + 4, pe.cert_dir_offset),
          (pe.cert_dir_offset + 8, pe.size_of_headers)])
    hashed = pe.size_of_headers
    sections = sorted((s for s in pe.sections if s[1] > 0), key=lambda s: s[0])
    # Sections of a real image do not overlap, so together they cover the file at most once. A hostile table of
    # thousands of sections each spanning the whole file would make us hash terabytes; refuse it instead.
    covered = sum(max(0, min(p + n, view.size) - p) for p, n in sections)
    if covered > 2 * view.size:
        raise InputError(f"the sections cover {covered} bytes of a {view.size}-byte file: they overlap",
                         source=view.source, field="section table", offset=pe.lfanew + 24 + pe.optional_header_size)
    # Sections in file order; a section running past the end of the file is hashed as far as it goes, but its full
    # size still counts, exactly as dstack does (this only matters for the trailing-data rule below).
    for pointer, size in sections:
        feed([(pointer, pointer + size)])
        hashed += size
    # dstack hashes trailing data only when a certificate table is declared (standard Authenticode always does).
    cert_addr, cert_size = pe.cert_table
    if cert_addr > 0 and cert_size > 0 and view.size > hashed:
        trailing = view.size - hashed
        if trailing > cert_size:
            feed([(hashed, hashed + trailing - cert_size)])
    # dstack pads to a multiple of 8 bytes with zeros (standard Authenticode does not).
    if view.size % 8:
        h.update(bytes(8 - view.size % 8))
    return h.digest()


def authenticode_sha384(data: bytes, source: str = "PE image") -> bytes:
    """dstack's Authenticode SHA-384 variant of a PE image held in memory (no patching)."""
    return _authenticode(_KernelView(data, len(data), lambda offset, length: b"", source))


def patched_kernel_authenticode(kernel: bytes, initrd_size: int, memory_size: int,
                                acpi_data_size: int = ACPI_DATA_SIZE, source: str = "bzImage") -> bytes:
    """RTMR1 event 0 for a kernel held in memory."""
    head = patch_setup_header(kernel[:SETUP_SIZE], initrd_size, memory_size, acpi_data_size, source)
    return _authenticode(_KernelView(head, len(kernel), lambda offset, length: kernel[offset:offset + length],
                                     source))


def kernel_file_authenticode(path: str | os.PathLike[str], initrd_size: int, memory_size: int,
                             acpi_data_size: int = ACPI_DATA_SIZE) -> bytes:
    """RTMR1 event 0 for a kernel file, streamed: only its first 4 KiB are held in memory."""
    source = Path(path).name
    _require_regular(path, source)
    with open(path, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InputError("not a regular file", source=source)
        head = patch_setup_header(f.read(SETUP_SIZE), initrd_size, memory_size, acpi_data_size, source)

        def read_tail(offset: int, length: int) -> bytes:
            f.seek(offset)
            return f.read(length)

        return _authenticode(_KernelView(head, info.st_size, read_tail, source))


def _require_regular(path: str | os.PathLike[str], source: str) -> None:
    # Checked before opening too: opening a folder fails differently on each OS, and a device would never end.
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise InputError(f"cannot be read: {exc.strerror or exc}", source=source) from None
    if not stat.S_ISREG(mode):
        raise InputError("not a regular file", source=source)


# --------------------------------------------------------------------------------------------------------------------
# The RTMR1 events


def rtmr1_events(kernel_digest: bytes, source: DigestSource = "image") -> list[ExpectedEvent]:
    """The 5 RTMR1 events: the kernel digest (from the image, or a TDX-lite measurement document), then 4 constants."""
    if len(kernel_digest) != 48:
        raise InputError(f"the kernel digest is {len(kernel_digest)} bytes, expected 48 (SHA-384)",
                         field="kernel_authenticode")
    events = [ExpectedEvent(rtmr="rtmr1", index=0, digest=kernel_digest, what=KERNEL_EVENT_WHAT, source=source,
                            event_type=EV_EFI_BOOT_SERVICES_APPLICATION, varies_with=VARIES_KERNEL)]
    for index, (text, event_type, what) in enumerate(RTMR1_CONSTANTS, start=1):
        events.append(ExpectedEvent(rtmr="rtmr1", index=index, digest=hashlib.sha384(text).digest(), what=what,
                                    source="constant", event_type=event_type, varies_with=VARIES_CONSTANT))
    return events


def measure_rtmr1(kernel_path: str | os.PathLike[str], initrd_size: int, memory_size: int) -> list[ExpectedEvent]:
    """The 5 RTMR1 events for a kernel file booted with an initrd of `initrd_size` bytes and `memory_size` of RAM."""
    return rtmr1_events(kernel_file_authenticode(kernel_path, initrd_size, memory_size))


def replay_digests(digests: Iterable[bytes]) -> bytes:
    """An RTMR after extending it with each digest in turn, from 48 zero bytes."""
    value = bytes(48)
    for digest in digests:
        value = hashlib.sha384(value + digest).digest()
    return value
