"""RTMR1 (the QEMU-patched bzImage, dstack's Authenticode SHA-384 variant, 4 constants) and RTMR2 (cmdline, initrd).

The expected values come from a second, deliberately plain implementation below (`ref_*`), written straight from
the spec text (dstack-measurement §4, §5) over bytes in memory; it shares no code with kernel.py or rtmr2.py.
Synthetic bzImages are PE32(+) files with a Linux setup header, built by `dstack_verifier.synth.image`.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
from pathlib import Path

import pytest
from dstack_verifier.errors import InputError
from dstack_verifier.eventlog import parse_event_log
from dstack_verifier.measure.kernel import (
    EV_EFI_ACTION,
    EV_EFI_BOOT_SERVICES_APPLICATION,
    EV_SEPARATOR,
    KERNEL_EVENT_WHAT,
    SetupHeader,
    authenticode_sha384,
    kernel_file_authenticode,
    measure_rtmr1,
    patch_setup_header,
    patched_kernel_authenticode,
    replay_digests,
    rtmr1_events,
)
from dstack_verifier.measure.rtmr2 import (
    EV_EVENT_TAG,
    boot_cmdline,
    cmdline_digest,
    file_sha384,
    measure_rtmr2,
    rtmr2_events_from_digests,
)
from dstack_verifier.quote.structure import parse_quote
from dstack_verifier.synth.image import make_bzimage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.fixtures import fixture_path

GiB = 1 << 30
CMDLINE = ("console=ttyS0 init=/init panic=1 net.ifnames=0 biosdevname=0 mce=off oops=panic pci=noearly "
           "dstack.rootfs_hash=" + "ab" * 32 + " dstack.rootfs_size=123456")

# spec §4: the digests of the 4 constant RTMR1 events, as printed there.
SPEC_CONSTANTS = [
    "77a0dab2312b4e1e57a84d865a21e5b2ee8d677a21012ada819d0a98988078d3d740f6346bfe0abaa938ca20439a8d71",
    hashlib.sha384(b"\0\0\0\0").hexdigest(),
    "214b0bef1379756011344877743fdc2a5382bac6e70362d624ccf3f654407c1b4badf7d8f9295dd3dabdef65b27677e0",
    "0a2e01c85deae718a530ad8c6d20a84009babe6c8989269e950d8cf440c6e997695e64d455c4174a652cd080f6230b74",
]


# --------------------------------------------------------------------------------------------------------------------
# The plain reference implementation (spec text, line by line)


def ref_patch(kernel: bytes, initrd_size: int, mem: int) -> bytes:
    k = bytearray(kernel)
    proto = struct.unpack_from("<H", k, 0x206)[0]
    if proto < 0x200 or (k[0x211] & 0x01) == 0:
        real_addr = 0x90000
        cmdline_addr = 0x9A000
    else:
        real_addr = 0x10000
        cmdline_addr = 0x20000
    if proto >= 0x200:
        k[0x210] = 0xB0
    if proto >= 0x201:
        k[0x211] = k[0x211] | 0x80
        heap_end = cmdline_addr - real_addr - 0x200
        if heap_end < 0:
            heap_end = 0
        struct.pack_into("<I", k, 0x224, heap_end)
    if proto >= 0x202:
        struct.pack_into("<I", k, 0x228, cmdline_addr)
    else:
        struct.pack_into("<H", k, 0x20, 0xA33F)
        struct.pack_into("<H", k, 0x22, (cmdline_addr - real_addr) % 0x10000)  # a u16 keeps the low 16 bits
    if initrd_size > 0:
        assert proto >= 0x200
        if proto >= 0x20C:
            if struct.unpack_from("<H", k, 0x236)[0] & 0x40:
                initrd_max = 0xFFFFFFFF
            else:
                initrd_max = 0x37FFFFFF
        elif proto >= 0x203:
            initrd_max = struct.unpack_from("<I", k, 0x22C)[0]
            if initrd_max == 0:
                initrd_max = 0x37FFFFFF
        else:
            initrd_max = 0x37FFFFFF
        if mem < 0xB0000000:
            lowmem = 0xB0000000
        else:
            lowmem = 0x80000000
        if mem >= lowmem:
            below_4g = lowmem
        else:
            below_4g = mem
        avail = below_4g - 0x28000
        assert avail >= 0
        if initrd_max >= avail:
            initrd_max = avail - 1
        assert initrd_size < initrd_max
        struct.pack_into("<I", k, 0x218, (initrd_max - initrd_size) & ~0xFFF)
        struct.pack_into("<I", k, 0x21C, initrd_size)
    return bytes(k)


def ref_authenticode(data: bytes) -> bytes:
    def u16(at: int) -> int:
        return struct.unpack_from("<H", data, at)[0]

    def u32(at: int) -> int:
        return struct.unpack_from("<I", data, at)[0]

    lfanew = u32(0x3C)
    assert data[lfanew:lfanew + 4] == b"PE\0\0"
    coff = lfanew + 4
    nsec = u16(coff + 2)
    optsz = u16(coff + 16)
    opt = coff + 20
    magic = u16(opt)
    checksum = opt + 64
    if magic == 0x20B:
        datadir = opt + 112
    else:
        datadir = opt + 96
    certdir = datadir + 4 * 8
    size_of_headers = u32(opt + 60)
    h = hashlib.sha384()
    h.update(data[0:checksum])
    h.update(data[checksum + 4:certdir])
    h.update(data[certdir + 8:size_of_headers])
    sections = []
    for i in range(nsec):
        entry = opt + optsz + 40 * i
        size = u32(entry + 16)
        pointer = u32(entry + 20)
        if size > 0:
            sections.append((pointer, size))
    sections.sort(key=lambda s: s[0])
    total = size_of_headers
    for pointer, size in sections:
        h.update(data[pointer:pointer + size])
        total += size
    cert_addr = u32(certdir)
    cert_size = u32(certdir + 4)
    if cert_addr > 0 and cert_size > 0 and len(data) > total:
        trailing = len(data) - total
        if trailing > cert_size:
            h.update(data[total:total + trailing - cert_size])
    if len(data) % 8 != 0:
        h.update(b"\0" * (8 - len(data) % 8))
    return h.digest()


def ref_extend(digests: list[bytes]) -> bytes:
    mr = b"\0" * 48
    for d in digests:
        mr = hashlib.sha384(mr + d).digest()
    return mr


def ref_rtmr1(kernel: bytes, initrd_size: int, mem: int) -> list[bytes]:
    return [
        ref_authenticode(ref_patch(kernel, initrd_size, mem)),
        hashlib.sha384(b"Calling EFI Application from Boot Option").digest(),
        hashlib.sha384(b"\0\0\0\0").digest(),
        hashlib.sha384(b"Exit Boot Services Invocation").digest(),
        hashlib.sha384(b"Exit Boot Services Returned with Success").digest(),
    ]


def ref_rtmr2(cmdline: str, initrd: bytes) -> list[bytes]:
    return [
        hashlib.sha384((cmdline + " initrd=initrd").encode("utf-16-le") + b"\0\0").digest(),
        hashlib.sha384(initrd).digest(),
    ]


# --------------------------------------------------------------------------------------------------------------------
# Files


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------------------------------------------------
# RTMR1


def test_rtmr1_modern_kernel_matches_reference_and_places_the_initrd(tmp_path):
    kernel = make_bzimage()
    initrd_size = 0x100000
    events = measure_rtmr1(write(tmp_path / "bzImage", kernel), initrd_size, 2 * GiB)
    expected = ref_rtmr1(kernel, initrd_size, 2 * GiB)
    assert [e.digest for e in events] == expected
    assert replay_digests(e.digest for e in events) == ref_extend(expected)
    assert [e.index for e in events] == [0, 1, 2, 3, 4]
    assert {e.rtmr for e in events} == {"rtmr1"}
    assert events[0].what == KERNEL_EVENT_WHAT and events[0].source == "image"
    assert [e.event_type for e in events] == [EV_EFI_BOOT_SERVICES_APPLICATION, EV_EFI_ACTION, EV_SEPARATOR,
                                              EV_EFI_ACTION, EV_EFI_ACTION]
    assert [e.source for e in events[1:]] == ["constant"] * 4
    assert [e.digest.hex() for e in events[1:]] == SPEC_CONSTANTS
    assert all(e.what for e in events)

    patched = patch_setup_header(kernel[:0x1000], initrd_size, 2 * GiB)
    assert patched[0x210] == 0xB0  # type_of_loader
    assert patched[0x211] == 0x81  # LOADED_HIGH | CAN_USE_HEAP
    assert struct.unpack_from("<II", patched, 0x218) == (0x7FED7000, initrd_size)  # ramdisk_image, ramdisk_size
    assert struct.unpack_from("<II", patched, 0x224) == (0xFE00, 0x20000)  # heap_end_ptr, cmd_line_ptr
    # Nothing else changes.
    changed = [i for i in range(0x1000) if patched[i] != kernel[i]]
    assert set(changed) <= {0x210, 0x211, *range(0x218, 0x220), *range(0x224, 0x22C)}


def test_rtmr1_depends_on_memory_except_at_2_gib():
    kernel = make_bzimage()
    digest = {mem: patched_kernel_authenticode(kernel, 0x123456, mem)
              for mem in (GiB, 2 * GiB, 0xA0000000, 0xB0000000, 8 * GiB, 64 * GiB)}
    assert digest[2 * GiB] == digest[0xB0000000] == digest[8 * GiB] == digest[64 * GiB]
    assert digest[GiB] != digest[2 * GiB]
    assert digest[0xA0000000] != digest[2 * GiB]
    for mem, value in digest.items():
        assert value == ref_authenticode(ref_patch(kernel, 0x123456, mem)), hex(mem)


@pytest.mark.parametrize("protocol,loadflags,xloadflags,addr_max", [
    (0x1FF, 0x01, 0, 0),  # too old for an initrd; command line by the old magic
    (0x200, 0x00, 0, 0),  # low kernel
    (0x200, 0x01, 0, 0),
    (0x201, 0x01, 0, 0),
    (0x202, 0x00, 0, 0),
    (0x203, 0x01, 0, 0),  # initrd_addr_max 0 means 0x37FFFFFF
    (0x203, 0x01, 0, 0x1FFFFFFF),
    (0x20B, 0x01, 0x40, 0x1FFFFFFF),  # xloadflags not read before 2.12
    (0x20C, 0x01, 0x00, 0x7FFFFFFF),
    (0x20C, 0x01, 0x02, 0x7FFFFFFF),  # bit 1 (QEMU's XLF_CAN_BE_LOADED_ABOVE_4G) is not what dstack reads
    (0x20C, 0x01, 0x40, 0x7FFFFFFF),
    (0x20F, 0x00, 0x7F, 0x7FFFFFFF),
])
@pytest.mark.parametrize("mem", [GiB, 2 * GiB, 0xB0000000, 16 * GiB])
def test_setup_header_patch_matches_reference(protocol, loadflags, xloadflags, addr_max, mem):
    kernel = make_bzimage(protocol=protocol, loadflags=loadflags, xloadflags=xloadflags, initrd_addr_max=addr_max)
    initrd_size = 0 if protocol < 0x200 else 0x2345
    assert patch_setup_header(kernel[:0x1000], initrd_size, mem) == ref_patch(kernel, initrd_size, mem)[:0x1000]
    assert patched_kernel_authenticode(kernel, initrd_size, mem) == \
        ref_authenticode(ref_patch(kernel, initrd_size, mem))


def test_no_initrd_leaves_the_ramdisk_fields():
    kernel = make_bzimage()
    patched = patch_setup_header(kernel[:0x1000], 0, 2 * GiB)
    assert patched[0x218:0x220] == kernel[0x218:0x220]
    assert patched == ref_patch(kernel, 0, 2 * GiB)[:0x1000]


@pytest.mark.parametrize("kwargs", [
    {},
    {"pe32_plus": False},
    {"size": 0x4000},  # a multiple of 8: no padding
    {"size": 0x4007},
    # sections in any table order, one running past the end of the file, one starting past it
    {"sections": ((0x3800, 0x1000), (0x400, 0x400), (0x9000, 0x100), (0x800, 0x2000))},
    # a certificate table: trailing data beyond it is hashed
    {"cert": (0x3C00, 0x100), "sections": ((0x400, 0x3000),), "size": 0x4005},
    # a certificate table as large as the trailing data: nothing trailing is hashed
    {"cert": (0x3400, 0xC05), "sections": ((0x400, 0x3000),), "size": 0x4005},
    # headers running past the setup part QEMU patches
    {"size_of_headers": 0x1200, "sections": ((0x1200, 0x2000),)},
    {"sections": ()},
])
def test_authenticode_variant_matches_reference(kwargs):
    kernel = make_bzimage(**kwargs)
    assert authenticode_sha384(kernel) == ref_authenticode(kernel)
    assert patched_kernel_authenticode(kernel, 0x1000, 2 * GiB) == ref_authenticode(ref_patch(kernel, 0x1000, 2 * GiB))


def test_trailing_data_counts_only_with_a_certificate_table():
    """dstack's rule (spec §4.2, gotcha 5): without a certificate table, data after the sections is not hashed."""
    base = make_bzimage(sections=((0x400, 0x2000),), size=0x4000)
    changed = base[:0x3000] + bytes(0x1000)
    assert authenticode_sha384(base) == authenticode_sha384(changed)
    with_cert = make_bzimage(sections=((0x400, 0x2000),), size=0x4000, cert=(0x3F00, 0x100))
    changed_cert = with_cert[:0x3000] + bytes(0x1000)
    assert authenticode_sha384(with_cert) != authenticode_sha384(changed_cert)
    # ... but the certificate table itself is not hashed
    assert authenticode_sha384(with_cert) == authenticode_sha384(with_cert[:0x3F00] + bytes(0x100))


def test_checksum_and_security_directory_are_not_hashed():
    kernel = bytearray(make_bzimage())
    digest = authenticode_sha384(bytes(kernel))
    opt = 0x44 + 20
    kernel[opt + 64:opt + 68] = b"\xff" * 4  # CheckSum
    assert authenticode_sha384(bytes(kernel)) == digest
    kernel[0x300] ^= 1  # a header byte that is hashed
    assert authenticode_sha384(bytes(kernel)) != digest


def test_streaming_equals_in_memory_across_chunks(tmp_path):
    # 3 MiB and a bit: sections cross the 1 MiB read chunks and the end of the file.
    size = 3 * (1 << 20) + 5
    kernel = make_bzimage(size=size, size_of_headers=0x1000,
                          sections=((0x1000, 0x180000), (0x181000, 0x200000)), cert=(size - 0x10, 0x10))
    path = write(tmp_path / "bzImage", kernel)
    expected = ref_authenticode(ref_patch(kernel, 0x5000, 4 * GiB))
    assert kernel_file_authenticode(path, 0x5000, 4 * GiB) == expected
    assert patched_kernel_authenticode(kernel, 0x5000, 4 * GiB) == expected


def test_setup_header_parse():
    header = SetupHeader.parse(make_bzimage(protocol=0x20C, loadflags=0x21, xloadflags=0x40,
                                            initrd_addr_max=0x1234))
    assert (header.protocol, header.loadflags, header.xloadflags, header.initrd_addr_max) == (0x20C, 0x21, 0x40,
                                                                                                0x1234)


# --------------------------------------------------------------------------------------------------------------------
# Malformed kernels: an InputError naming the field and the offset


def _set(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value):]


OPT = 0x44 + 20
MALFORMED = [
    ("too short", lambda k: k[:0xFFF], "setup header", 0xFFF),
    ("no HdrS", lambda k: _set(k, 0x202, b"HdrX"), "header", 0x202),
    ("no MZ", lambda k: _set(k, 0, b"ZM"), "e_magic", 0),
    ("e_lfanew beyond the file", lambda k: _set(k, 0x3C, struct.pack("<I", 0x10000000)), "PE signature",
     0x10000000),
    ("bad PE signature", lambda k: _set(k, 0x40, b"PX\0\0"), "PE signature", 0x40),
    ("bad optional header magic", lambda k: _set(k, OPT, b"\x07\x01"), "optional header Magic", OPT),
    ("SizeOfHeaders beyond the file", lambda k: _set(k, OPT + 60, struct.pack("<I", 0x100000)), "SizeOfHeaders",
     OPT + 60),
    ("SizeOfHeaders before the security directory", lambda k: _set(k, OPT + 60, struct.pack("<I", 0x40)),
     "SizeOfHeaders", OPT + 60),
    ("section table beyond the file", lambda k: _set(k, 0x46, struct.pack("<H", 0xFFFF)), "section table",
     OPT + 160),
]


@pytest.mark.parametrize("name,mutate,field,offset", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_kernel_names_field_and_offset(tmp_path, name, mutate, field, offset):
    kernel = mutate(make_bzimage())
    for compute in (lambda: patched_kernel_authenticode(kernel, 0x1000, 2 * GiB),
                    lambda: kernel_file_authenticode(write(tmp_path / "bzImage", kernel), 0x1000, 2 * GiB)):
        with pytest.raises(InputError) as info:
            compute()
        assert info.value.field == field, name
        assert info.value.offset == offset, name


@pytest.mark.parametrize("kwargs,initrd_size,mem,field,words", [
    ({"protocol": 0x1FF}, 0x1000, 2 * GiB, "version", "too old"),
    ({}, 0x7FFD7FFF, 2 * GiB, "initrd size", "does not fit"),
    ({}, 1 << 32, 2 * GiB, "initrd size", "4 GiB"),
    ({}, 0x1000, 0x20000, "memory_size", "no room"),
    ({}, 0x1000, -1, "memory_size", "64-bit"),
])
def test_impossible_boot_parameters(kwargs, initrd_size, mem, field, words):
    with pytest.raises(InputError) as info:
        patched_kernel_authenticode(make_bzimage(**kwargs), initrd_size, mem)
    assert info.value.field == field
    assert words in str(info.value)


def test_overlapping_sections_are_refused():
    """Thousands of sections over the whole file would mean hashing it thousands of times: refused, not hashed."""
    sections = tuple((0x400, 0x4000) for _ in range(3))
    with pytest.raises(InputError) as info:
        authenticode_sha384(make_bzimage(sections=sections))
    assert info.value.field == "section table" and "overlap" in info.value.message
    assert info.value.offset == OPT + 160
    # Two overlapping sections are still within what dstack (and we) hash.
    kernel = make_bzimage(sections=((0x400, 0x3000), (0x1000, 0x2000)))
    assert authenticode_sha384(kernel) == ref_authenticode(kernel)


def test_kernel_must_be_a_regular_file(tmp_path):
    with pytest.raises(InputError, match="regular file"):
        kernel_file_authenticode(tmp_path, 0, 2 * GiB)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_BASE = make_bzimage(size=0x2003, sections=((0x400, 0x800), (0x1000, 0x1800)), cert=(0x1F00, 0x80))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(_BASE) - 1), st.integers(0, 255)), max_size=8),
       st.integers(0x1000, len(_BASE)))
def test_fuzzed_kernels_raise_only_input_errors(edits, length):
    data = bytearray(_BASE[:length])
    for offset, value in edits:
        if offset < len(data):
            data[offset] = value
    kernel = bytes(data)
    try:
        digest = patched_kernel_authenticode(kernel, 0x1000, 2 * GiB)
    except InputError:
        return
    assert digest == ref_authenticode(ref_patch(kernel, 0x1000, 2 * GiB))


def test_rtmr1_events_from_a_document_digest():
    events = rtmr1_events(b"\x11" * 48, source="measurement-document")
    assert events[0].source == "measurement-document" and events[0].digest == b"\x11" * 48
    with pytest.raises(InputError, match="48"):
        rtmr1_events(b"\x11" * 32)


def test_rtmr1_replays_to_the_real_quote():
    """The lite fixture's kernel digest (event 11) with our 4 constants replays to the quote's RTMR1 (spec §9.2)."""
    doc = json.loads(fixture_path("dstack", "tdx-lite-getquote.json").read_text())
    quote = parse_quote(bytes.fromhex(doc["quote"]))
    logged = [e for e in parse_event_log(doc["event_log"], "lite") if e.imr == 1]
    events = rtmr1_events(logged[0].digest)
    assert [(e.digest, e.event_type) for e in events] == [(e.digest, e.event_type) for e in logged]
    assert replay_digests(e.digest for e in events) == quote.body["rtmr1"]


# --------------------------------------------------------------------------------------------------------------------
# RTMR2


def test_rtmr2_matches_reference(tmp_path):
    initrd = random.Random(7).randbytes(300_001)
    path = write(tmp_path / "initramfs.cpio.gz", initrd)
    events = measure_rtmr2(CMDLINE, path)
    expected = ref_rtmr2(CMDLINE, initrd)
    assert [e.digest for e in events] == expected
    assert ref_extend(expected) == replay_digests(e.digest for e in events)
    assert [(e.rtmr, e.index, e.event_type, e.source) for e in events] == [
        ("rtmr2", 0, EV_EVENT_TAG, "image"), ("rtmr2", 1, EV_EVENT_TAG, "image")]
    assert "command line" in events[0].what and "initrd" in events[1].what
    assert file_sha384(path) == (hashlib.sha384(initrd).digest(), len(initrd))


def test_cmdline_encoding():
    assert boot_cmdline("a b") == "a b initrd=initrd"
    # UTF-16LE without BOM, then a 2-byte NUL; non-ASCII (and non-BMP) characters too
    for text in ("", "console=ttyS0", "é ü", "emoji=\U0001f600"):
        assert cmdline_digest(boot_cmdline(text)) == ref_rtmr2(text, b"")[0]
    assert cmdline_digest("x") == hashlib.sha384(b"x\0\0\0").digest()
    with pytest.raises(InputError) as info:
        cmdline_digest("ok\ud800")
    assert info.value.field == "cmdline" and info.value.offset == 2


def test_rtmr2_events_from_digests():
    events = rtmr2_events_from_digests(b"\1" * 48, b"\2" * 48, source="measurement-document")
    assert [e.source for e in events] == ["measurement-document"] * 2
    with pytest.raises(InputError) as info:
        rtmr2_events_from_digests(b"\1" * 48, b"\2" * 47)
    assert info.value.field == "initrd_sha384"


def test_initrd_must_be_a_regular_file(tmp_path):
    with pytest.raises(InputError, match="regular file"):
        file_sha384(tmp_path)
