"""TDVF parsing, MRTD and the TD HOB (spec dstack-measurement §2, §3.1, §10.1).

The firmware is synthetic, built by `dstack_verifier.synth.image`: a GUIDed footer table, a TDVF descriptor and
sections, and page contents. Its MRTD is computed twice, by `measure.tdvf` and by a deliberately plain implementation
below that follows the spec's words line by line and shares no code with either; both page orders must agree.
Malformed images must fail with an InputError naming the field and the byte offset.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from dataclasses import replace

import pytest
from dstack_verifier.errors import InputError
from dstack_verifier.measure.tdhob import (
    TdHobLayout,
    build_td_hob,
    decode_witness,
    encode_witness,
    layout_from_sections,
    td_hob_digest,
    td_hob_from_sections,
    td_hob_from_witness,
)
from dstack_verifier.measure.tdvf import (
    choose_mrtd_variant,
    compute_mrtd,
    mrtd_candidates,
    parse_tdvf,
    qemu_options,
)
from dstack_verifier.synth.image import DESCRIPTOR_AT, IMAGE_SIZE, SECTIONS, build_firmware
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FOOTER_GUID = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d").bytes_le
METADATA_GUID = uuid.UUID("e47a6535-984a-4798-865e-4685a7bf8ec2").bytes_le
OTHER_GUID = uuid.UUID("00f771de-1a7e-4fcb-890e-68c77e2fb44e").bytes_le  # any other table entry
FIXTURE_WITNESS = bytes.fromhex("80100904000609020b021010")  # spec §10.1: dstack's firmware layout

# Spec §12: TD HOB digests of the standard layout at four memory sizes.
TD_HOB_VECTORS = {
    0x80000000: "0b8772e5b0b41b83",
    0xB0000000: "8eb1a02074362aa0",
    0x100000000: "5b684faf8d02a733",
    0x1000000000: "8ae1e425351df799",
}


# --------------------------------------------------------------------------------------------------------------------
# The plain second implementation: spec §2.1 and §2.2 as written, no shared code


def plain_mrtd(fw: bytes, two_pass: bool) -> bytes:
    size = len(fw)
    off = size - 32
    assert fw[off - 16:off] == FOOTER_GUID
    tables_len = int.from_bytes(fw[off - 18:off - 16], "little")
    tables = fw[off - 18 - tables_len:off - 18]
    o = len(tables)
    meta_off_from_end = None
    while o >= 18:
        guid = tables[o - 16:o]
        entry_len = int.from_bytes(tables[o - 18:o - 16], "little")
        if guid == METADATA_GUID:
            meta_off_from_end = int.from_bytes(tables[o - 22:o - 18], "little")
            break
        o -= entry_len
    assert meta_off_from_end is not None
    d = size - meta_off_from_end
    assert fw[d:d + 4] == b"TDVF"
    number_of_sections = int.from_bytes(fw[d + 12:d + 16], "little")
    stream = b""
    for n in range(number_of_sections):
        e = d + 16 + 32 * n
        data_offset = int.from_bytes(fw[e:e + 4], "little")
        memory_address = int.from_bytes(fw[e + 8:e + 16], "little")
        memory_data_size = int.from_bytes(fw[e + 16:e + 24], "little")
        attributes = int.from_bytes(fw[e + 28:e + 32], "little")
        page_adds = []
        extends = []
        for page in range(memory_data_size // 4096):
            gpa = memory_address + page * 4096
            if not attributes & 0x2:
                page_adds.append(b"MEM.PAGE.ADD" + b"\0" * 4 + gpa.to_bytes(8, "little") + b"\0" * 104)
            else:
                page_adds.append(b"")
            chunks = b""
            if attributes & 0x1:
                for i in range(16):
                    chunk_gpa = gpa + i * 256
                    start = data_offset + page * 4096 + i * 256
                    chunks += b"MR.EXTEND" + b"\0" * 7 + chunk_gpa.to_bytes(8, "little") + b"\0" * 104
                    chunks += fw[start:start + 256]
            extends.append(chunks)
        if two_pass:
            stream += b"".join(page_adds) + b"".join(extends)
        else:
            stream += b"".join(a + x for a, x in zip(page_adds, extends, strict=True))
    return hashlib.sha384(stream).digest()


def plain_leb128(values: list[int]) -> bytes:
    out = b""
    for v in values:
        while True:
            low = v & 0x7F
            v >>= 7
            out += bytes([low | 0x80]) if v else bytes([low])
            if not v:
                break
    return out


# --------------------------------------------------------------------------------------------------------------------
# Parsing and MRTD


def test_parse_reads_every_section() -> None:
    fw = build_firmware()
    meta = parse_tdvf(fw.data)
    assert meta.descriptor_offset == DESCRIPTOR_AT and meta.version == 1
    got = [(s.data_offset, s.raw_data_size, s.memory_address, s.memory_data_size, s.type, s.attributes)
           for s in meta.sections]
    assert got == [(s.data_offset, s.raw_size, s.gpa, s.mem_size, s.type, s.attributes) for s in SECTIONS]
    assert [s.type_name for s in meta.sections][:6] == ["BFV", "CFV", "TEMP_MEM", "TEMP_MEM", "TD_HOB", "TEMP_MEM"]
    assert meta.sections[3].entry_offset == DESCRIPTOR_AT + 16 + 3 * 32


@pytest.mark.parametrize("variant", ["single_pass", "two_pass"])
def test_mrtd_equals_the_plain_implementation(variant: str) -> None:
    fw = build_firmware().data
    assert compute_mrtd(fw, variant) == plain_mrtd(fw, two_pass=variant == "two_pass")  # type: ignore[arg-type]


def test_page_orders_differ_and_candidates_agree() -> None:
    fw = build_firmware().data
    candidates = mrtd_candidates(fw)
    assert candidates["single_pass"] != candidates["two_pass"]
    assert candidates["single_pass"] == plain_mrtd(fw, two_pass=False)
    assert candidates["two_pass"] == plain_mrtd(fw, two_pass=True)


def test_mrtd_depends_on_measured_content_only() -> None:
    fw = build_firmware()
    base = mrtd_candidates(fw.data)
    measured = bytearray(fw.data)
    measured[0x2345] ^= 1  # inside the BFV (MR_EXTEND)
    assert mrtd_candidates(bytes(measured)) != base
    unmeasured = bytearray(fw.data)
    unmeasured[0x3456] ^= 1  # inside the CFV (page add only)
    assert mrtd_candidates(bytes(unmeasured)) == base


def test_page_aug_sections_are_not_hashed() -> None:
    without = tuple(s for s in SECTIONS if not s.attributes & 0x2)
    assert mrtd_candidates(build_firmware().data) == mrtd_candidates(build_firmware(without).data)


def test_table_length_including_or_excluding_the_footer_entry() -> None:
    # spec §2.1 step 3: whether the length counts the footer entry does not matter, the walk starts from the end.
    assert mrtd_candidates(build_firmware(tables_len_delta=-18).data) == mrtd_candidates(build_firmware().data)


# --------------------------------------------------------------------------------------------------------------------
# Malformed firmware


def _error(fw: bytes) -> InputError:
    with pytest.raises(InputError) as info:
        parse_tdvf(fw)
    assert info.value.offset is not None, info.value
    assert info.value.field, info.value
    return info.value


def test_bad_footer_guid() -> None:
    fw = build_firmware(footer_guid=bytes(16))
    err = _error(fw.data)
    assert err.field == "table footer GUID" and err.offset == fw.footer_guid


def test_missing_metadata_guid() -> None:
    # The table length counts the footer entry (as OVMF's does): the walk ends in the bytes before the first entry.
    err = _error(build_firmware(metadata_guid=OTHER_GUID).data)
    assert "TDX metadata" in err.message and err.field == "table entry length"
    # Without the footer entry, the walk ends exactly at the table start.
    fw = build_firmware(metadata_guid=OTHER_GUID, tables_len_delta=-18)
    err = _error(fw.data)
    assert err.field == "TDX metadata offset GUID" and err.offset == fw.table_start


def test_truncated_table() -> None:
    fw = build_firmware(tables_len_delta=IMAGE_SIZE)
    err = _error(fw.data)
    assert err.field == "table length" and err.offset == IMAGE_SIZE - 32 - 18


def test_entry_length_past_the_table_start() -> None:
    fw = bytearray(build_firmware().data)
    # the last entry claims to be longer than everything before it
    last_len_at = IMAGE_SIZE - 32 - 18 - 18
    fw[last_len_at:last_len_at + 2] = struct.pack("<H", 0x3000)
    err = _error(bytes(fw))
    assert err.field == "table entry length" and err.offset == last_len_at


def test_zero_entry_length_cannot_loop() -> None:
    fw = bytearray(build_firmware().data)
    last_len_at = IMAGE_SIZE - 32 - 18 - 18
    fw[last_len_at:last_len_at + 2] = b"\0\0"
    assert _error(bytes(fw)).field == "table entry length"


def test_truncated_image() -> None:
    with pytest.raises(InputError) as info:
        parse_tdvf(build_firmware().data[-40:])
    assert info.value.offset == 0


def test_metadata_offset_outside_the_image() -> None:
    fw = build_firmware(meta_from_end=IMAGE_SIZE + 1)
    assert _error(fw.data).field == "TDX metadata offset"


def test_bad_descriptor_signature_and_version() -> None:
    assert _error(build_firmware(signature=b"TDVX").data).offset == DESCRIPTOR_AT
    assert _error(build_firmware(version=2).data).offset == DESCRIPTOR_AT + 8


def test_section_count_past_the_end() -> None:
    err = _error(build_firmware(count=10_000).data)
    assert err.field == "TDVF descriptor NumberOfSectionEntries" and err.offset == DESCRIPTOR_AT + 12


def test_section_past_the_end() -> None:
    sections = list(SECTIONS)
    sections[1] = replace(SECTIONS[1], data_offset=IMAGE_SIZE - 0x800)
    err = _error(build_firmware(tuple(sections)).data)
    assert err.field == "TDVF section 1.DataOffset" and err.offset == DESCRIPTOR_AT + 16 + 32


def test_measured_section_reads_past_the_end() -> None:
    sections = list(SECTIONS)
    sections[7] = replace(SECTIONS[7], data_offset=IMAGE_SIZE - 0x1000)  # raw fits, MemoryDataSize does not
    err = _error(build_firmware(tuple(sections)).data)
    assert err.field == "TDVF section 7.DataOffset"


@pytest.mark.parametrize(("change", "field"), [
    ({"gpa": 0x810001}, "TDVF section 2.MemoryAddress"),
    ({"mem_size": 0x10001}, "TDVF section 2.MemoryDataSize"),
    ({"raw_size": 0x20000}, "TDVF section 2.MemoryDataSize"),
    ({"gpa": (1 << 64) - 0x1000}, "TDVF section 2.MemoryDataSize"),
])
def test_section_fields(change: dict[str, int], field: str) -> None:
    sections = list(SECTIONS)
    sections[2] = replace(SECTIONS[2], **change)
    err = _error(build_firmware(tuple(sections)).data)
    assert err.field == field and err.offset is not None and err.offset >= DESCRIPTOR_AT + 16 + 64


def test_huge_sections_are_refused_before_hashing() -> None:
    sections = list(SECTIONS)
    sections[2] = replace(SECTIONS[2], mem_size=1 << 40)
    assert _error(build_firmware(tuple(sections)).data).field == "TDVF sections"


def test_huge_page_aug_section_costs_nothing() -> None:
    # PAGE_AUG pages are neither added nor extended: a 2^60-byte one must not be walked page by page.
    sections = list(SECTIONS)
    sections[6] = replace(SECTIONS[6], mem_size=1 << 60)
    assert mrtd_candidates(build_firmware(tuple(sections)).data) == mrtd_candidates(build_firmware().data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, IMAGE_SIZE - 1), st.integers(0, 255)), min_size=1, max_size=6))
def test_fuzzed_firmware_parses_or_fails_cleanly(patches: list[tuple[int, int]]) -> None:
    fw = bytearray(build_firmware().data)
    for where, value in patches:
        # aim most patches at the bytes that drive parsing: the descriptor and the GUIDed table
        target = where if where % 3 else DESCRIPTOR_AT + where % 300 if where % 2 else IMAGE_SIZE - 1 - where % 120
        fw[target] = value
    try:
        meta = parse_tdvf(bytes(fw))
    except InputError as exc:
        assert exc.offset is not None
        return
    compute_mrtd(bytes(fw), "two_pass", metadata=meta)


# --------------------------------------------------------------------------------------------------------------------
# Page order from the vm_config (spec §2.3)


@pytest.mark.parametrize(("config", "variant"), [
    ({}, "single_pass"),  # default QEMU 9.1.0
    ({"qemu_version": "8.2.2"}, "two_pass"),  # the lite fixture
    ({"qemu_version": "9.2.1", "qemu_single_pass_add_pages": False}, "single_pass"),  # quote-report.json
    ({"qemu_version": "9.2.1", "qemu_single_pass_add_pages": True}, "two_pass"),  # the quirk: true means two-pass
    ({"qemu_version": "8.2.2", "qemu_single_pass_add_pages": False}, "single_pass"),
    ({"qemu_version": "8.0.0"}, "two_pass"),
    ({"qemu_version": "9.0.0"}, "single_pass"),
    ({"qemu_version": None, "qemu_single_pass_add_pages": None}, "single_pass"),
])
def test_choose_mrtd_variant(config: dict[str, object], variant: str) -> None:
    assert choose_mrtd_variant(config) == variant


def test_pic_defaults_and_override() -> None:
    assert qemu_options({"qemu_version": "8.2.2"}).pic is True
    assert qemu_options({"qemu_version": "9.2.1"}).pic is False
    assert qemu_options({"qemu_version": "8.2.2", "pic": False}).pic is False
    assert "two-pass override" in qemu_options({"qemu_single_pass_add_pages": True}).two_pass_reason


@pytest.mark.parametrize(("config", "field"), [
    ({"qemu_version": "7.2.0"}, "qemu_version"),
    ({"qemu_version": "9.1"}, "qemu_version"),
    ({"qemu_version": "9.1.0.1"}, "qemu_version"),
    ({"qemu_version": ""}, "qemu_version"),
    ({"qemu_version": 9}, "qemu_version"),
    ({"qemu_single_pass_add_pages": "yes"}, "qemu_single_pass_add_pages"),
    ({"pic": 1}, "pic"),
])
def test_bad_qemu_options(config: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as info:
        choose_mrtd_variant(config)
    assert info.value.field == field


# --------------------------------------------------------------------------------------------------------------------
# TD HOB: from the memory layout and from the witness


def test_witness_of_the_synthetic_firmware_is_dstacks() -> None:
    layout = layout_from_sections(parse_tdvf(build_firmware().data).sections)
    assert layout.hob_base == 0x809000
    assert layout.ranges == ((0x810000, 0x820000), (0x80B000, 0x80D000), (0x809000, 0x80B000), (0x800000, 0x806000))
    plain = plain_leb128([0x800, 0x809 - 0x800, 4, 0, 6, 9, 2, 0xB, 2, 0x10, 0x10])
    assert plain == FIXTURE_WITNESS
    assert encode_witness(layout) == FIXTURE_WITNESS
    decoded = decode_witness(FIXTURE_WITNESS)
    assert decoded.hob_base == 0x809000 and decoded.ranges == tuple(sorted(layout.ranges))


@pytest.mark.parametrize("memory_size", [*TD_HOB_VECTORS, 0x90000000, 0xC0000000, 0x80001000])
def test_td_hob_from_layout_equals_from_witness(memory_size: int) -> None:
    sections = parse_tdvf(build_firmware().data).sections
    from_layout = td_hob_from_sections(sections, memory_size)
    from_witness = td_hob_from_witness(FIXTURE_WITNESS, memory_size)
    assert from_layout == from_witness
    if memory_size in TD_HOB_VECTORS:
        assert hashlib.sha384(from_layout).hexdigest().startswith(TD_HOB_VECTORS[memory_size])


def test_td_hob_bytes_at_2_gib() -> None:
    hob = td_hob_from_witness(FIXTURE_WITNESS, 0x80000000)
    assert len(hob) == 440  # PHIT + 8 resource descriptors (spec §3.1)
    assert struct.unpack_from("<HHI", hob, 0) == (1, 56, 0)
    assert struct.unpack_from("<Q", hob, 48)[0] == 0x809000 + 440 + 8
    descriptors = [struct.unpack_from("<HH4x16sB3xIQQ", hob, 56 + 48 * i) for i in range(8)]
    assert [(d[3], d[5], d[6]) for d in descriptors] == [
        (7, 0, 0x800000), (0, 0x800000, 0x6000), (7, 0x806000, 0x3000), (0, 0x809000, 0x2000),
        (0, 0x80B000, 0x2000), (7, 0x80D000, 0x3000), (0, 0x810000, 0x10000), (7, 0x820000, 0x80000000 - 0x820000),
    ]


def test_high_memory_splits_at_2_gib() -> None:
    hob = td_hob_from_witness(FIXTURE_WITNESS, 0x100000000)
    low, high = (struct.unpack_from("<QQ", hob, len(hob) - 48 * k + 32) for k in (2, 1))
    assert low == (0x820000, 0x80000000 - 0x820000)
    assert high == (0x100000000, 0x100000000 - 0x80000000)


def test_td_hob_digest_helper() -> None:
    layout = decode_witness(FIXTURE_WITNESS)
    assert td_hob_digest(layout, 0x80000000) == hashlib.sha384(build_td_hob(layout, 0x80000000)).digest()


@pytest.mark.parametrize(("witness", "field"), [
    (FIXTURE_WITNESS[:-1], "td_hob.ranges[3].page_count"),  # truncated
    (FIXTURE_WITNESS + b"\x00", "td_hob"),  # trailing byte
    (bytes.fromhex("8010") + b"\x89\x00" + FIXTURE_WITNESS[3:], "td_hob.td_hob_page"),  # overlong varint
    (bytes.fromhex("80100900"), "td_hob.range_count"),  # no ranges
    (bytes.fromhex("8010090200060002"), "td_hob.ranges[1].start_page"),  # overlapping
    (bytes.fromhex("801009020906000a"), "td_hob.ranges[0].start_page"),  # base is not the lowest start
    (bytes.fromhex("80100901000000"), "td_hob.ranges[0].page_count"),  # empty range
    (b"\xff" * 11, "td_hob.base_page"),  # longer than 64 bits
])
def test_bad_witness(witness: bytes, field: str) -> None:
    with pytest.raises(InputError) as info:
        decode_witness(witness)
    assert info.value.field == field and info.value.offset is not None


def test_memory_below_the_early_ranges_is_refused() -> None:
    with pytest.raises(InputError) as info:
        build_td_hob(TdHobLayout(hob_base=0x809000, ranges=((0x800000, 0x806000),)), 0x400000)
    assert info.value.field == "memory_size"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_fuzzed_witness_decodes_or_fails_cleanly(data: bytes) -> None:
    try:
        layout = decode_witness(data)
    except InputError:
        return
    assert encode_witness(layout) == data  # what decodes is exactly what the encoder writes
