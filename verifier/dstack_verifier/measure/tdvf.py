"""TDVF (OVMF for TDX): the metadata sections of a firmware image, and the MRTD they produce.

Spec dstack-measurement §2. The firmware comes from an OS image we downloaded or a file the user gave us, so it is
untrusted: every offset and length read from it is checked against the image before use, and a malformed image is an
InputError naming the field and the byte offset in the file.

MRTD is the SHA-384 of the stream the TDX module hashes while QEMU builds the TD: a 128-byte MEM.PAGE.ADD record per
added page and, for measured sections, a 128-byte MR.EXTEND record followed by 256 bytes of content per chunk. The
one per-VM choice is the page order (single or two pass), made by `choose_mrtd_variant` from the vm_config.
"""

from __future__ import annotations

import hashlib
import re
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import InputError

MrtdVariant = Literal["single_pass", "two_pass"]
MRTD_VARIANTS: tuple[MrtdVariant, ...] = ("single_pass", "two_pass")

PAGE_SIZE = 0x1000
CHUNK_SIZE = 0x100  # MR.EXTEND measures 256 bytes at a time, 16 chunks per page
CHUNKS_PER_PAGE = PAGE_SIZE // CHUNK_SIZE
RECORD_SIZE = 128

FOOTER_GUID = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d").bytes_le  # OVMF GUIDed table footer
TDX_METADATA_OFFSET_GUID = uuid.UUID("e47a6535-984a-4798-865e-4685a7bf8ec2").bytes_le
BYTES_AFTER_FOOTER = 32  # the table ends this far before the end of the image (the reset vector area)
ENTRY_TRAILER = 18  # u16 length + 16-byte GUID closing every table entry
DESCRIPTOR_SIZE = 16
SECTION_ENTRY_SIZE = 32

SECTION_TYPES = {0: "BFV", 1: "CFV", 2: "TD_HOB", 3: "TEMP_MEM", 4: "PERM_MEM", 5: "PAYLOAD", 6: "PAYLOAD_PARAM"}
SECTION_TD_HOB = 2
SECTION_TEMP_MEM = 3
ATTR_MR_EXTEND = 0x1
ATTR_PAGE_AUG = 0x2

# Bounds that keep a hostile image from costing more than a real one: dstack's OVMF is 2 MiB with 6 sections and
# about 550 added pages. The page bound matters because a section's size is a u64 and the stream has a record per page.
MAX_FIRMWARE_BYTES = 64 << 20
MAX_SECTIONS = 256
MAX_ADDED_PAGES = 1 << 18  # 1 GiB of guest memory added page by page: 32 MiB of records to hash
_U64 = 1 << 64

_MEM_PAGE_ADD = b"MEM.PAGE.ADD"
_MR_EXTEND = b"MR.EXTEND"


@dataclass(frozen=True)
class TdvfSection:
    """One 32-byte TDVF section entry; `entry_offset` is where it sits in the firmware file."""

    index: int
    entry_offset: int
    data_offset: int
    raw_data_size: int
    memory_address: int
    memory_data_size: int
    type: int
    attributes: int

    @property
    def type_name(self) -> str:
        return SECTION_TYPES.get(self.type, f"type {self.type}")

    @property
    def pages(self) -> int:
        return self.memory_data_size // PAGE_SIZE

    @property
    def mr_extend(self) -> bool:
        return bool(self.attributes & ATTR_MR_EXTEND)

    @property
    def page_aug(self) -> bool:
        return bool(self.attributes & ATTR_PAGE_AUG)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "type": self.type_name,
            "data_offset": self.data_offset,
            "raw_data_size": self.raw_data_size,
            "memory_address": f"0x{self.memory_address:x}",
            "memory_data_size": f"0x{self.memory_data_size:x}",
            "attributes": self.attributes,
        }


@dataclass(frozen=True)
class TdvfMetadata:
    descriptor_offset: int
    length: int  # the descriptor's Length field, as written (dstack does not check it, nor do we)
    version: int
    sections: tuple[TdvfSection, ...]


# --------------------------------------------------------------------------------------------------------------------
# Parsing


def _u16(fw: bytes, offset: int) -> int:
    return int(struct.unpack_from("<H", fw, offset)[0])


def _u32(fw: bytes, offset: int) -> int:
    return int(struct.unpack_from("<I", fw, offset)[0])


def _metadata_offset_entry(fw: bytes, source: str) -> tuple[int, int]:
    """(offset of the u32 `meta_off_from_end` in the file, its value), found through the GUIDed footer table."""
    size = len(fw)
    footer = size - BYTES_AFTER_FOOTER  # the footer GUID ends here
    if footer < 16 + 2:
        raise InputError(f"{size} bytes is too small for an OVMF image with a GUIDed footer table", source=source,
                         field="table footer", offset=0)
    if fw[footer - 16:footer] != FOOTER_GUID:
        raise InputError("table footer GUID is not 96b582de-1fb2-45f7-baea-a366c55a082d: not an OVMF/TDVF image",
                         source=source, field="table footer GUID", offset=footer - 16)
    tables_len = _u16(fw, footer - 18)
    tables_end = footer - ENTRY_TRAILER
    if tables_len == 0 or tables_len > tables_end:
        raise InputError(f"GUIDed table length {tables_len} does not fit before the footer", source=source,
                         field="table length", offset=footer - 18)
    tables_start = tables_end - tables_len
    # Walk the entries from the end; each ends with [u16 entry length][GUID] and the length covers the whole entry.
    o = tables_end
    while o - tables_start >= ENTRY_TRAILER:
        guid = fw[o - 16:o]
        entry_len = _u16(fw, o - 18)
        if entry_len < ENTRY_TRAILER or entry_len > o - tables_start:
            # OVMF's table length counts the footer entry, so a walk that finds nothing ends in the 18 bytes before
            # the first entry: say what was not found, not only that those bytes are not an entry.
            raise InputError(f"GUIDed table entry length {entry_len} is outside 18..{o - tables_start}, and no TDX "
                             "metadata offset entry came before it", source=source, field="table entry length",
                             offset=o - 18)
        if guid == TDX_METADATA_OFFSET_GUID:
            if entry_len < ENTRY_TRAILER + 4:
                raise InputError(f"TDX metadata offset entry is {entry_len} bytes, too short for its u32 offset",
                                 source=source, field="table entry length", offset=o - 18)
            return o - 22, _u32(fw, o - 22)
        o -= entry_len
    raise InputError("no TDX metadata offset entry (GUID e47a6535-984a-4798-865e-4685a7bf8ec2) in the GUIDed table: "
                     "not a TDX firmware", source=source, field="TDX metadata offset GUID", offset=tables_start)


def _section(fw: bytes, index: int, entry: int, source: str) -> TdvfSection:
    data_offset, raw_size, address, mem_size, sec_type, attributes = struct.unpack_from("<IIQQII", fw, entry)
    where = f"TDVF section {index}"
    if address % PAGE_SIZE:
        raise InputError(f"memory address 0x{address:x} is not 4 KiB aligned", source=source,
                         field=f"{where}.MemoryAddress", offset=entry + 8)
    if mem_size % PAGE_SIZE:
        raise InputError(f"memory data size 0x{mem_size:x} is not 4 KiB aligned", source=source,
                         field=f"{where}.MemoryDataSize", offset=entry + 16)
    if mem_size < raw_size:
        raise InputError(f"memory data size 0x{mem_size:x} is smaller than the raw data size 0x{raw_size:x}",
                         source=source, field=f"{where}.MemoryDataSize", offset=entry + 16)
    if address + mem_size > _U64:
        raise InputError("section runs past the top of the 64-bit address space", source=source,
                         field=f"{where}.MemoryDataSize", offset=entry + 16)
    # A measured section's content is read page by page for all of MemoryDataSize (dstack reads the file bytes after
    # the raw data when MemoryDataSize is larger); an unmeasured one only has to keep its raw data inside the file.
    needed = mem_size if attributes & ATTR_MR_EXTEND else raw_size
    if data_offset + needed > len(fw):
        raise InputError(f"section data 0x{data_offset:x}+0x{needed:x} runs past the end of the {len(fw)}-byte image",
                         source=source, field=f"{where}.DataOffset", offset=entry)
    return TdvfSection(index=index, entry_offset=entry, data_offset=data_offset, raw_data_size=raw_size,
                       memory_address=address, memory_data_size=mem_size, type=sec_type, attributes=attributes)


def parse_tdvf(fw: bytes, *, source: str = "ovmf.fd") -> TdvfMetadata:
    """The TDVF descriptor and sections of an OVMF image (spec §2.1)."""
    if len(fw) > MAX_FIRMWARE_BYTES:
        raise InputError(f"{len(fw)} bytes, more than the {MAX_FIRMWARE_BYTES} allowed for a firmware image",
                         source=source)
    field_offset, from_end = _metadata_offset_entry(fw, source)
    if from_end == 0 or from_end > len(fw):
        raise InputError(f"TDX metadata offset {from_end} (from the end) is outside the {len(fw)}-byte image",
                         source=source, field="TDX metadata offset", offset=field_offset)
    descriptor = len(fw) - from_end
    if descriptor + DESCRIPTOR_SIZE > len(fw):
        raise InputError("TDVF descriptor runs past the end of the image", source=source,
                         field="TDVF descriptor", offset=descriptor)
    signature, length, version, count = struct.unpack_from("<4sIII", fw, descriptor)
    if signature != b"TDVF":
        raise InputError(f"TDVF descriptor signature is {signature!r}, not b'TDVF'", source=source,
                         field="TDVF descriptor signature", offset=descriptor)
    if version != 1:
        raise InputError(f"TDVF descriptor version {version} is not supported (only 1)", source=source,
                         field="TDVF descriptor version", offset=descriptor + 8)
    table = descriptor + DESCRIPTOR_SIZE
    if count > MAX_SECTIONS or table + count * SECTION_ENTRY_SIZE > len(fw):
        raise InputError(f"{count} section entries do not fit in the image (at most "
                         f"{min(MAX_SECTIONS, (len(fw) - table) // SECTION_ENTRY_SIZE)})", source=source,
                         field="TDVF descriptor NumberOfSectionEntries", offset=descriptor + 12)
    sections = tuple(_section(fw, i, table + i * SECTION_ENTRY_SIZE, source) for i in range(count))
    added = sum(s.pages for s in sections if not s.page_aug)
    if added > MAX_ADDED_PAGES:
        raise InputError(f"the sections add {added} pages, more than the {MAX_ADDED_PAGES} allowed", source=source,
                         field="TDVF sections", offset=table)
    return TdvfMetadata(descriptor_offset=descriptor, length=length, version=version, sections=sections)


# --------------------------------------------------------------------------------------------------------------------
# MRTD


# The records as the TDX module hashes them: the tag, zeros to 16, the GPA as a u64, zeros to 128 bytes. A page's 16
# MR.EXTEND records and their 256-byte chunks are packed by one precompiled struct call (hashing them one by one
# costs more in Python calls than in SHA-384).
_PAGE_ADD_RECORD = struct.Struct("<12s4xQ104x")
_EXTEND_PAGE = struct.Struct("<" + "9s7xQ104x256s" * CHUNKS_PER_PAGE)
assert _PAGE_ADD_RECORD.size == RECORD_SIZE and _EXTEND_PAGE.size == CHUNKS_PER_PAGE * (RECORD_SIZE + CHUNK_SIZE)


def _add_page(h: Any, section: TdvfSection, page: int) -> None:
    if not section.page_aug:  # PAGE_AUG pages are accepted later by the guest, not added (and so not hashed)
        h.update(_PAGE_ADD_RECORD.pack(_MEM_PAGE_ADD, section.memory_address + page * PAGE_SIZE))


def _extend_page(h: Any, fw: bytes, section: TdvfSection, page: int) -> None:
    if not section.mr_extend:
        return
    gpa = section.memory_address + page * PAGE_SIZE
    start = section.data_offset + page * PAGE_SIZE  # parse_tdvf checked that the section's pages lie in the file
    fields: list[Any] = []
    for delta in range(0, PAGE_SIZE, CHUNK_SIZE):
        fields += (_MR_EXTEND, gpa + delta, fw[start + delta:start + delta + CHUNK_SIZE])
    h.update(_EXTEND_PAGE.pack(*fields))


def compute_mrtd(fw: bytes, variant: MrtdVariant, *, metadata: TdvfMetadata | None = None,
                 source: str = "ovmf.fd") -> bytes:
    """MRTD for one page order (spec §2.2); the two passes of two_pass are per section, not global."""
    if variant not in MRTD_VARIANTS:
        raise ValueError(f"unknown MRTD variant {variant!r}")
    meta = metadata if metadata is not None else parse_tdvf(fw, source=source)
    h = hashlib.sha384()
    for section in meta.sections:
        if section.page_aug and not section.mr_extend:
            continue  # contributes nothing; its size is unbounded (PAGE_AUG pages are not counted by parse_tdvf)
        if variant == "two_pass":
            for page in range(section.pages):
                _add_page(h, section, page)
            for page in range(section.pages):
                _extend_page(h, fw, section, page)
        else:
            for page in range(section.pages):
                _add_page(h, section, page)
                _extend_page(h, fw, section, page)
    return h.digest()


def mrtd_candidates(fw: bytes, *, source: str = "ovmf.fd") -> dict[MrtdVariant, bytes]:
    """Both MRTDs, as `measurement.tdx.cbor` carries them (`tdvf.mrtd.single_pass` / `two_pass`)."""
    meta = parse_tdvf(fw, source=source)
    return {v: compute_mrtd(fw, v, metadata=meta) for v in MRTD_VARIANTS}


# --------------------------------------------------------------------------------------------------------------------
# Choosing the page order from the vm_config (spec §2.3)

DEFAULT_QEMU_VERSION = (9, 1, 0)
_VERSION_TEXT = re.compile(r"[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}")


@dataclass(frozen=True)
class QemuOptions:
    """dstack's `versioned_options`: what the QEMU version implies, after the vm_config's explicit overrides."""

    version: tuple[int, int, int]
    version_given: bool
    pic: bool
    two_pass: bool
    two_pass_reason: str

    @property
    def version_text(self) -> str:
        return ".".join(str(part) for part in self.version)

    def describe(self, vm_config: Mapping[str, Any]) -> dict[str, Any]:
        """What a measurement's `inputs` say about the VM and the page order chosen for it."""
        return {
            "cpu_count": vm_config.get("cpu_count"),
            "qemu_version": self.version_text,
            "qemu_version_given": self.version_given,
            "qemu_single_pass_add_pages": vm_config.get("qemu_single_pass_add_pages"),
            "mrtd_variant_reason": self.two_pass_reason,
        }


def _optional_bool(vm_config: Mapping[str, Any], key: str) -> bool | None:
    value = vm_config.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise InputError(f"expected true, false or absent, got {type(value).__name__}", source="vm_config", field=key)


def qemu_options(vm_config: Mapping[str, Any]) -> QemuOptions:
    raw = vm_config.get("qemu_version")
    if raw is None:
        version, given = DEFAULT_QEMU_VERSION, False
    else:
        if not isinstance(raw, str) or not _VERSION_TEXT.fullmatch(raw):
            shown = repr(raw[:24]) if isinstance(raw, str) else type(raw).__name__
            raise InputError(f"expected a version of exactly three numbers like \"8.2.2\", got {shown}",
                             source="vm_config", field="qemu_version")
        major, minor, patch = (int(part) for part in raw.split("."))
        version, given = (major, minor, patch), True
    if version < (8, 0, 0):
        raise InputError(f"QEMU {'.'.join(map(str, version))} is older than 8.0.0, which dstack does not support",
                         source="vm_config", field="qemu_version")
    qemu8 = (8, 0, 0) <= version < (9, 0, 0)
    pic = _optional_bool(vm_config, "pic")
    override = _optional_bool(vm_config, "qemu_single_pass_add_pages")
    shown = ".".join(map(str, version)) + ("" if given else " (default)")
    if override is None:
        two_pass = qemu8
        reason = f"QEMU {shown} defaults to {'two' if two_pass else 'single'}-pass page order"
    else:
        # The quirk every dstack caller has (spec §2.3): the field is passed as the *two-pass* override, so true
        # means two-pass. Reproduced as is, because the published measurements were computed this way.
        two_pass = override
        reason = (f"qemu_single_pass_add_pages = {str(override).lower()}, which dstack passes as the two-pass "
                  f"override: {'two' if two_pass else 'single'}-pass")
    return QemuOptions(version=version, version_given=given, pic=qemu8 if pic is None else pic,
                       two_pass=two_pass, two_pass_reason=reason)


def choose_mrtd_variant(vm_config: Mapping[str, Any]) -> MrtdVariant:
    """single_pass or two_pass, exactly as dstack chooses (qemu_version default, then the quirky override)."""
    return "two_pass" if qemu_options(vm_config).two_pass else "single_pass"
