"""The TD HOB that OVMF measures as RTMR0 event 0, rebuilt from the memory layout (spec §3.1, §10.1).

The HOB depends on two things only: the guest memory size and the ranges the firmware accepts early (its TD_HOB and
TEMP_MEM sections). Those ranges come either from the firmware's TDVF sections (full image) or from the compact
TdHobWitnessV1 in `measurement.tdx.cbor` (TDX-lite); both give the same `TdHobLayout`, and one builder turns a layout
and a memory size into the measured bytes.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from .tdvf import PAGE_SIZE, SECTION_TD_HOB, SECTION_TEMP_MEM, TdvfSection

DEFAULT_HOB_BASE = 0x809000  # dstack's fallback when a firmware has no TD_HOB section
HIGH_MEMORY_THRESHOLD = 0xB0000000  # from here on QEMU caps low memory at 2 GiB and puts the rest above 4 GiB
LOW_MEMORY_CAP = 0x80000000
HIGH_MEMORY_START = 0x100000000
MAX_MEMORY_SIZE = (1 << 64) - 1

RESOURCE_SYSTEM_MEMORY = 0x00  # accepted
RESOURCE_UNACCEPTED = 0x07
RESOURCE_ATTRIBUTES = 0x7
PHIT_VERSION = 9

# Witness bounds: dstack's firmware has 4 ranges; a u64 LEB128 needs at most 10 bytes.
MAX_WITNESS_BYTES = 4096
MAX_WITNESS_RANGES = 64
MAX_VARINT_BYTES = 10
_MAX_PAGE = ((1 << 64) - 1) // PAGE_SIZE


@dataclass(frozen=True)
class TdHobLayout:
    """The accepted ranges [start, end) in the order they are accepted, and the TD HOB's own address."""

    hob_base: int
    ranges: tuple[tuple[int, int], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "hob_base": f"0x{self.hob_base:x}",
            "accepted_ranges": [{"start": f"0x{s:x}", "size": f"0x{e - s:x}"} for s, e in self.ranges],
        }


def layout_from_sections(sections: Iterable[TdvfSection]) -> TdHobLayout:
    """The layout a firmware implies: every TD_HOB and TEMP_MEM section, in firmware order; the last TD_HOB wins."""
    hob_base = DEFAULT_HOB_BASE
    ranges: list[tuple[int, int]] = []
    for s in sections:
        if s.type in (SECTION_TD_HOB, SECTION_TEMP_MEM):
            ranges.append((s.memory_address, s.memory_address + s.memory_data_size))
        if s.type == SECTION_TD_HOB:
            hob_base = s.memory_address
    return TdHobLayout(hob_base=hob_base, ranges=tuple(ranges))


# --------------------------------------------------------------------------------------------------------------------
# TdHobWitnessV1: unsigned LEB128 varints, all in 4 KiB pages


def _read_varint(data: bytes, pos: int, what: str, source: str) -> tuple[int, int]:
    value = shift = 0
    start = pos
    while True:
        if pos >= len(data):
            raise InputError(f"witness ends inside {what}", source=source, field=f"td_hob.{what}", offset=start)
        if pos - start >= MAX_VARINT_BYTES:
            raise InputError(f"{what} is longer than a 64-bit varint", source=source, field=f"td_hob.{what}",
                             offset=start)
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    # A final zero byte after others (e.g. 80 00) is an overlong encoding: the encoder never writes one.
    if pos - start > 1 and data[pos - 1] == 0:
        raise InputError(f"{what} is not in its shortest encoding", source=source, field=f"td_hob.{what}",
                         offset=start)
    if value >= 1 << 64:
        raise InputError(f"{what} does not fit in 64 bits", source=source, field=f"td_hob.{what}", offset=start)
    return value, pos


def decode_witness(data: bytes, *, source: str = "measurement.tdx.cbor") -> TdHobLayout:
    """Decode a TdHobWitnessV1 (spec §10.1), accepting only what dstack's encoder writes: shortest varints, the
    lowest range at base_page, ranges non-empty, sorted by start and non-overlapping, nothing after the last."""
    if len(data) > MAX_WITNESS_BYTES:
        raise InputError(f"TD HOB witness is {len(data)} bytes, more than {MAX_WITNESS_BYTES}", source=source,
                         field="td_hob")
    base, pos = _read_varint(data, 0, "base_page", source)
    hob_delta, pos = _read_varint(data, pos, "td_hob_page", source)
    count_offset = pos
    count, pos = _read_varint(data, pos, "range_count", source)
    if count == 0 or count > MAX_WITNESS_RANGES:
        raise InputError(f"range_count {count} is outside 1..{MAX_WITNESS_RANGES}", source=source,
                         field="td_hob.range_count", offset=count_offset)
    if base + hob_delta > _MAX_PAGE:
        raise InputError("TD HOB page is beyond the 64-bit address space", source=source, field="td_hob.td_hob_page")
    ranges: list[tuple[int, int]] = []
    previous_end = None
    for i in range(count):
        range_offset = pos
        delta, pos = _read_varint(data, pos, f"ranges[{i}].start_page", source)
        pages, pos = _read_varint(data, pos, f"ranges[{i}].page_count", source)
        start_page = base + delta
        if i == 0 and delta != 0:
            # base_page is defined as the lowest range start; any other base is not what the encoder writes.
            raise InputError("base_page is not the start of the lowest range", source=source,
                             field="td_hob.ranges[0].start_page", offset=range_offset)
        if pages == 0:
            raise InputError("range has no pages", source=source, field=f"td_hob.ranges[{i}].page_count",
                             offset=range_offset)
        if start_page + pages > _MAX_PAGE:
            raise InputError("range runs past the 64-bit address space", source=source,
                             field=f"td_hob.ranges[{i}]", offset=range_offset)
        if previous_end is not None and start_page < previous_end:
            raise InputError("ranges are not sorted by start or overlap the previous one", source=source,
                             field=f"td_hob.ranges[{i}].start_page", offset=range_offset)
        previous_end = start_page + pages
        ranges.append((start_page * PAGE_SIZE, (start_page + pages) * PAGE_SIZE))
    if pos != len(data):
        raise InputError(f"{len(data) - pos} bytes after the last range", source=source, field="td_hob", offset=pos)
    return TdHobLayout(hob_base=(base + hob_delta) * PAGE_SIZE, ranges=tuple(ranges))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def encode_witness(layout: TdHobLayout) -> bytes:
    """The TdHobWitnessV1 of a layout, as `dstack-mr` writes it: for comparing an image's firmware with its document."""
    if not layout.ranges:
        raise ValueError("a TD HOB witness needs at least one range")
    ranges = sorted(layout.ranges)
    if any(s % PAGE_SIZE or e % PAGE_SIZE or e <= s for s, e in ranges) or layout.hob_base % PAGE_SIZE:
        raise ValueError("witness ranges must be non-empty and page aligned")
    base = ranges[0][0] // PAGE_SIZE
    if layout.hob_base // PAGE_SIZE < base:
        raise ValueError("the TD HOB lies below the lowest accepted range")
    out = _varint(base) + _varint(layout.hob_base // PAGE_SIZE - base) + _varint(len(ranges))
    for s, e in ranges:
        out += _varint(s // PAGE_SIZE - base) + _varint((e - s) // PAGE_SIZE)
    return out


# --------------------------------------------------------------------------------------------------------------------
# The HOB bytes


def _accept(ranges: list[tuple[bool, int, int]], start: int, end: int) -> list[tuple[bool, int, int]]:
    """dstack's memory acceptor: split the unaccepted ranges around [start, end); adjacent ranges are not merged."""
    if start >= end:
        return ranges
    out: list[tuple[bool, int, int]] = []
    for accepted, rs, re in ranges:
        if accepted or re <= start or rs >= end:
            out.append((accepted, rs, re))
            continue
        if rs < start:
            out.append((False, rs, start))
        if re > end:
            out.append((False, end, re))
    out.append((True, start, end))
    out.sort(key=lambda r: r[1])  # stable, as Rust's sort_by_key: equal starts keep their order
    return out


def _resource_hob(resource_type: int, start: int, length: int) -> bytes:
    return struct.pack("<HHI16sB3sIQQ", 3, 48, 0, bytes(16), resource_type, bytes(3), RESOURCE_ATTRIBUTES,
                       start, length)


def build_td_hob(layout: TdHobLayout, memory_size: int) -> bytes:
    """The measured TD HOB bytes (PHIT + resource descriptors, without the end-of-list HOB), spec §3.1."""
    if isinstance(memory_size, bool) or not isinstance(memory_size, int) or not 0 < memory_size <= MAX_MEMORY_SIZE:
        raise InputError(f"memory_size {memory_size!r} is not a positive 64-bit byte count", source="vm_config",
                         field="memory_size")
    top = max(e for _, e in layout.ranges) if layout.ranges else 0
    if memory_size < top:
        # The firmware's early ranges would lie outside guest memory: such a TD cannot boot, so this is not a layout
        # we want to describe (dstack would silently produce a HOB for it).
        raise InputError(f"memory_size 0x{memory_size:x} is below the firmware's TD HOB/TEMP_MEM ranges (up to "
                         f"0x{top:x})", source="vm_config", field="memory_size")
    ranges: list[tuple[bool, int, int]] = [(False, 0, memory_size)]
    for start, end in layout.ranges:
        ranges = _accept(ranges, start, end)
    *body, (_, last_start, last_end) = ranges
    hob = bytearray(struct.pack("<HHIII4Q", 1, 56, 0, PHIT_VERSION, 0, 0, 0, 0, 0)) + bytes(8)
    for accepted, start, end in body:
        hob += _resource_hob(RESOURCE_SYSTEM_MEMORY if accepted else RESOURCE_UNACCEPTED, start, end - start)
    if memory_size >= HIGH_MEMORY_THRESHOLD:
        # QEMU keeps at most 2 GiB below 4 GiB and maps the rest from 4 GiB up.
        if last_start < LOW_MEMORY_CAP:
            hob += _resource_hob(RESOURCE_UNACCEPTED, last_start, LOW_MEMORY_CAP - last_start)
        if last_end > LOW_MEMORY_CAP:
            hob += _resource_hob(RESOURCE_UNACCEPTED, HIGH_MEMORY_START, last_end - LOW_MEMORY_CAP)
    else:
        hob += _resource_hob(RESOURCE_UNACCEPTED, last_start, last_end - last_start)
    # EfiEndOfHobList points past the end-of-list HOB (8 bytes), which itself is not part of the measured bytes.
    struct.pack_into("<Q", hob, 48, (layout.hob_base + len(hob) + 8) % (1 << 64))
    return bytes(hob)


def td_hob_digest(layout: TdHobLayout, memory_size: int) -> bytes:
    """RTMR0 event 0: SHA-384 of the TD HOB for this layout and memory size."""
    return hashlib.sha384(build_td_hob(layout, memory_size)).digest()


def td_hob_from_sections(sections: Iterable[TdvfSection], memory_size: int) -> bytes:
    """The TD HOB from a firmware's TDVF sections (full-image path)."""
    return build_td_hob(layout_from_sections(sections), memory_size)


def td_hob_from_witness(witness: bytes, memory_size: int, *, source: str = "measurement.tdx.cbor") -> bytes:
    """The TD HOB from a TdHobWitnessV1 (TDX-lite path); the ranges are accepted in sorted order."""
    return build_td_hob(decode_witness(witness, source=source), memory_size)
