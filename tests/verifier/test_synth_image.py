"""The synthetic OS image builders (`dstack_verifier.synth.image`): what they build is what the spec describes.

The firmware is checked with the plain MRTD of test_measure_tdvf and dstack's TD HOB layout and digest; the folder
with `ImageFolder` and the plain RTMR1/RTMR2 of test_measure_kernel.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from dstack_verifier.measure.image import ImageFolder
from dstack_verifier.measure.kernel import measure_rtmr1
from dstack_verifier.measure.rtmr2 import measure_rtmr2
from dstack_verifier.measure.tdhob import encode_witness, layout_from_sections, td_hob_from_sections
from dstack_verifier.measure.tdvf import mrtd_candidates, parse_tdvf
from dstack_verifier.synth.image import (
    build_image_folder,
    dstack_cmdline,
    dstack_firmware,
    dstack_sections,
    make_bzimage,
    write_manifest,
)

from tests.verifier.test_measure_kernel import ref_rtmr1, ref_rtmr2
from tests.verifier.test_measure_tdvf import FIXTURE_WITNESS, TD_HOB_VECTORS, plain_mrtd

GiB = 1 << 30


@pytest.mark.parametrize("size", [0x8000, 0x40000, 4 << 20])
def test_dstack_firmware_has_dstacks_layout(size: int) -> None:
    fw = dstack_firmware(size, seed="t")
    assert len(fw) == size
    sections = parse_tdvf(fw).sections
    assert [(s.type_name, s.attributes) for s in sections] == [
        ("BFV", 1), ("CFV", 0), ("TEMP_MEM", 0), ("TEMP_MEM", 0), ("TD_HOB", 0), ("TEMP_MEM", 0)]
    bfv, cfv = sections[0], sections[1]
    assert cfv.memory_address == (1 << 32) - size and bfv.memory_address + bfv.memory_data_size == 1 << 32
    assert cfv.data_offset == 0 and bfv.data_offset == cfv.raw_data_size and bfv.data_offset + bfv.raw_data_size == size
    assert encode_witness(layout_from_sections(sections)) == FIXTURE_WITNESS
    hob = td_hob_from_sections(sections, 0x80000000)
    assert hashlib.sha384(hob).hexdigest().startswith(TD_HOB_VECTORS[0x80000000])
    if size <= 0x40000:  # the plain implementation builds the whole stream in memory
        candidates = mrtd_candidates(fw)
        assert candidates["single_pass"] == plain_mrtd(fw, two_pass=False)
        assert candidates["two_pass"] == plain_mrtd(fw, two_pass=True)


def test_dstack_sections_refuse_odd_sizes() -> None:
    for size in (0x7000, 0x40001):
        with pytest.raises(ValueError, match="multiple of 4 KiB"):
            dstack_sections(size)


def test_make_bzimage_refuses_headers_over_the_setup_header() -> None:
    with pytest.raises(ValueError, match="setup header"):
        make_bzimage(sections=tuple((0x400, 0x100) for _ in range(7)))


def test_build_image_folder(tmp_path) -> None:
    root = build_image_folder(tmp_path / "img", seed="s", firmware_size=0x10000, kernel_size=0x5003,
                              initrd_size=(1 << 20) + 7, version="0.5.9")
    assert root == tmp_path / "img"
    sizes = {p.name: p.stat().st_size for p in root.iterdir()}
    assert sizes["ovmf.fd"] == 0x10000 and sizes["bzImage"] == 0x5003 and sizes["initramfs.cpio.gz"] == (1 << 20) + 7
    assert sorted(sizes) == ["bzImage", "digest.txt", "initramfs.cpio.gz", "metadata.json", "ovmf.fd",
                             "sha256sum.txt"]
    folder = ImageFolder.open(root)
    assert [e.name for e in folder.entries] == ["ovmf.fd", "bzImage", "initramfs.cpio.gz", "metadata.json"]
    assert all(c.ok for c in folder.verify_files())
    assert folder.metadata.version == "0.5.9" and folder.metadata.ovmf_variant == "pre202505"
    assert folder.metadata.cmdline == dstack_cmdline("s") and "dstack.rootfs_hash=" in folder.metadata.cmdline
    assert (root / "digest.txt").read_text() == folder.os_image_hash.hex() + "\n"
    kernel, initrd = (root / "bzImage").read_bytes(), (root / "initramfs.cpio.gz").read_bytes()
    assert [e.digest for e in measure_rtmr1(folder.kernel_path, len(initrd), 2 * GiB)] == \
        ref_rtmr1(kernel, len(initrd), 2 * GiB)
    assert [e.digest for e in measure_rtmr2(folder.metadata.cmdline, folder.initrd_path)] == \
        ref_rtmr2(folder.metadata.cmdline, initrd)


def test_same_seed_same_image_and_a_new_manifest_after_a_change(tmp_path) -> None:
    a = build_image_folder(tmp_path / "a", seed=7, cmdline="console=ttyS0")
    b = build_image_folder(tmp_path / "b", seed=7, cmdline="console=ttyS0")
    c = build_image_folder(tmp_path / "c", seed=8, cmdline="console=ttyS0")
    manifest = (a / "sha256sum.txt").read_bytes()
    assert manifest == (b / "sha256sum.txt").read_bytes() != (c / "sha256sum.txt").read_bytes()
    assert json.loads((a / "metadata.json").read_text())["cmdline"] == "console=ttyS0"
    (a / "bzImage").write_bytes(b"x" + (a / "bzImage").read_bytes()[1:])
    rewritten = write_manifest(a)
    assert rewritten != manifest and rewritten == (a / "sha256sum.txt").read_bytes()
    assert (a / "digest.txt").read_text().strip() == hashlib.sha256(rewritten).hexdigest()
    assert all(check.ok for check in ImageFolder.open(a).verify_files())
