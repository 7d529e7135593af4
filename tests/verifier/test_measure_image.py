"""OS image folders (metadata.json, sha256sum.txt, os_image_hash), `os.image_hash` (full image and TDX-lite), and
streaming: a 1 GiB file is hashed without being read into memory.

Every tampering of a folder (a changed byte, a missing line, `..`, a symlink out, a duplicate, bad hex) must give
an error a person can act on; every disagreement of os_image_hash values must name both values.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from dstack_verifier.errors import InputError
from dstack_verifier.eventlog import extract_app_info, parse_event_log
from dstack_verifier.measure.image import ImageFolder, ImageMetadata, parse_manifest
from dstack_verifier.measure.image_check import check_image_hash, check_image_hash_lite
from dstack_verifier.measure.kernel import measure_rtmr1
from dstack_verifier.measure.rtmr2 import file_sha384, measure_rtmr2
from dstack_verifier.model import Anchor, CheckStatus
from dstack_verifier.synth.image import make_bzimage

from tests.support.fixtures import fixture_path
from tests.verifier.test_measure_kernel import ref_rtmr1, ref_rtmr2

GiB = 1 << 30
CMDLINE = "console=ttyS0 init=/init panic=1 dstack.rootfs_hash=" + "cd" * 32 + " dstack.rootfs_size=4096"
LISTED = ["ovmf.fd", "bzImage", "initramfs.cpio.gz", "metadata.json", "measurement.tdx.cbor"]
ABSENT = "offline: no image folder given and none cached"

# spec §9.2: the lite fixture's vm_config.os_image_hash, and what its RTMR3 os-image-hash event says instead.
LITE_VM_CONFIG_HASH = "e6f5cfec20c02e7b97baa213d0f718020b55e040172d90ccbcb946d56c8b09db"
LITE_MEASURED_HASH = "07a2388c7a6a1b6a646d443f1517990a4ec294471d63146cda9d56972765051d"


def manifest_of(folder: Path, names: list[str]) -> bytes:
    return "".join(f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n" for n in names).encode()


def make_folder(root: Path, *, metadata: dict[str, Any] | None = None, digest_txt: bool = True) -> Path:
    """A small image folder laid out as assemble.sh does, with a synthetic kernel, initrd and firmware."""
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(3)
    (root / "ovmf.fd").write_bytes(rng.randbytes(8192))
    (root / "bzImage").write_bytes(make_bzimage())
    (root / "initramfs.cpio.gz").write_bytes(rng.randbytes(70_001))
    (root / "measurement.tdx.cbor").write_bytes(rng.randbytes(384))
    (root / "rootfs.img.parted.verity").write_bytes(b"not listed: bound by the cmdline's rootfs hash")
    doc = {"bios": "ovmf.fd", "kernel": "bzImage", "cmdline": CMDLINE, "initrd": "initramfs.cpio.gz",
           "rootfs": "rootfs.img.parted.verity", "version": "0.6.0", "git_revision": "abc", "shared_ro": True,
           "is_dev": False, "ovmf_variant": "pre202505"}
    (root / "metadata.json").write_text(json.dumps(metadata if metadata is not None else doc))
    manifest = manifest_of(root, LISTED)
    (root / "sha256sum.txt").write_bytes(manifest)
    if digest_txt:
        (root / "digest.txt").write_text(hashlib.sha256(manifest).hexdigest() + "\n")
    return root


def rewrite_manifest(root: Path, text: bytes) -> None:
    (root / "sha256sum.txt").write_bytes(text)
    (root / "digest.txt").unlink(missing_ok=True)


def problems(folder: ImageFolder) -> dict[str, str]:
    return {c.name: c.problem for c in folder.verify_files() if not c.ok}


# --------------------------------------------------------------------------------------------------------------------
# Opening and verifying a folder


def test_open_verify_and_os_image_hash(tmp_path):
    root = make_folder(tmp_path / "img")
    folder = ImageFolder.open(root)
    manifest = (root / "sha256sum.txt").read_bytes()
    assert folder.os_image_hash == hashlib.sha256(manifest).digest()
    assert [e.name for e in folder.entries] == LISTED
    assert folder.metadata.cmdline == CMDLINE and folder.metadata.version == "0.6.0"
    assert folder.metadata.is_dev is False and folder.metadata.ovmf_variant == "pre202505"
    assert folder.metadata.raw["shared_ro"] is True
    assert folder.kernel_path == (root / "bzImage").resolve()
    assert folder.initrd_path.name == "initramfs.cpio.gz" and folder.bios_path.name == "ovmf.fd"
    checks = folder.verify_files()
    assert all(c.ok for c in checks), [c.problem for c in checks]
    assert [c.name for c in checks] == [*LISTED, "digest.txt"]
    assert checks[1].actual == hashlib.sha256((root / "bzImage").read_bytes()).hexdigest()


def test_measurements_from_a_folder_match_reference(tmp_path):
    folder = ImageFolder.open(make_folder(tmp_path / "img"))
    kernel = folder.kernel_path.read_bytes()
    initrd = folder.initrd_path.read_bytes()
    _, initrd_size = file_sha384(folder.initrd_path)
    for mem in (2 * GiB, 3 * GiB, GiB):
        assert [e.digest for e in measure_rtmr1(folder.kernel_path, initrd_size, mem)] == \
            ref_rtmr1(kernel, len(initrd), mem)
    assert [e.digest for e in measure_rtmr2(folder.metadata.cmdline, folder.initrd_path)] == \
        ref_rtmr2(CMDLINE, initrd)


def test_a_changed_byte_names_the_file_and_both_digests(tmp_path):
    root = make_folder(tmp_path / "img")
    data = bytearray((root / "bzImage").read_bytes())
    data[0x3000] ^= 0x01
    (root / "bzImage").write_bytes(bytes(data))
    folder = ImageFolder.open(root)
    found = problems(folder)
    assert list(found) == ["bzImage"]
    assert hashlib.sha256(bytes(data)).hexdigest() in found["bzImage"]
    assert folder.entry("bzImage").sha256.hex() in found["bzImage"]
    check = check_image_hash(folder, None, None, "app", ABSENT)
    assert check.status is CheckStatus.FAIL
    assert check.summary.startswith("bzImage: its sha256 is")
    assert any(f["name"] == "bzImage" and not f["ok"] for f in check.details["files"])


def test_a_missing_line_leaves_the_file_uncovered(tmp_path):
    root = make_folder(tmp_path / "img")
    rewrite_manifest(root, manifest_of(root, [n for n in LISTED if n != "initramfs.cpio.gz"]))
    folder = ImageFolder.open(root)
    assert problems(folder) == {"initramfs.cpio.gz": "not listed in sha256sum.txt, so os_image_hash does not cover it"}
    check = check_image_hash(folder, None, None, "app", ABSENT)
    assert check.status is CheckStatus.FAIL and "initramfs.cpio.gz" in check.summary


def test_a_listed_file_that_is_missing(tmp_path):
    root = make_folder(tmp_path / "img")
    (root / "measurement.tdx.cbor").unlink()
    assert problems(ImageFolder.open(root)) == {"measurement.tdx.cbor": "is missing from the image folder"}


def test_a_wrong_digest_txt(tmp_path):
    root = make_folder(tmp_path / "img")
    (root / "digest.txt").write_text("00" * 32 + "\n")
    found = problems(ImageFolder.open(root))
    assert list(found) == ["digest.txt"] and "00" * 32 in found["digest.txt"]


@pytest.mark.parametrize("line,words,offset", [
    (b"%s  ../bzImage\n", "'/'", 68),
    (b"%s  ..\n", "not a file in the image folder", 66),
    (b"%s  /etc/passwd\n", "'/'", 66),
    (b"%s  sub\\bzImage\n", "'\\\\'", 69),
    (b"%s  C:bzImage\n", "':'", 67),
    (b"%s  bzImage\r\n", "'\\r'", 73),
    (b"%s  sha256sum.txt\n", "lists itself", 66),
    (b"%s *bzImage\n", "expected '<64 hex digits>  <name>'", 0),
    (b"%s bzImage\n", "expected '<64 hex digits>  <name>'", 0),
    (b"%s   bzImage\n", "expected '<64 hex digits>  <name>'", 0),
    (b"\\%s  bzImage\n", "escaped name", 0),
    (b"%s  \n", "expected", 0),
])
def test_bad_names_and_formats_are_refused(tmp_path, line, words, offset):
    root = make_folder(tmp_path / "img")
    good = (root / "sha256sum.txt").read_bytes()
    rewrite_manifest(root, good + line.replace(b"%s", b"ab" * 32))
    with pytest.raises(InputError) as info:
        ImageFolder.open(root)
    assert info.value.source == "sha256sum.txt"
    assert info.value.field == f"line {len(LISTED) + 1}"
    assert words in info.value.message
    assert info.value.offset == len(good) + offset


@pytest.mark.parametrize("digest,bad_at", [("AB" * 32, 0), ("ab" * 31 + "ag", 63), ("ab" * 31 + "a ", 63)])
def test_bad_hex_is_refused_with_its_offset(digest, bad_at):
    data = f"{'cd' * 32}  ovmf.fd\n{digest}  bzImage\n".encode()
    with pytest.raises(InputError) as info:
        parse_manifest(data)
    assert info.value.field == "line 2" and info.value.offset == 74 + bad_at
    assert "hex" in info.value.message


def test_duplicate_names_are_refused():
    data = f"{'cd' * 32}  bzImage\n{'ef' * 32}  ovmf.fd\n{'ab' * 32}  bzImage\n".encode()
    with pytest.raises(InputError) as info:
        parse_manifest(data)
    assert info.value.field == "line 3" and "listed twice (lines 1 and 3)" in info.value.message


@pytest.mark.parametrize("data,words", [
    (b"", "empty"),
    (b"ab" * 32 + b"  bzImage", "no newline"),
    (b"ab" * 32 + b"  bzImage\n\n", "expected"),
    (b"ab" * 32 + b"  bz\xffImage\n", "not UTF-8"),
])
def test_manifest_shape(data, words):
    with pytest.raises(InputError, match=words):
        parse_manifest(data)


def test_symlinks_inside_are_followed_and_outside_refused(tmp_path):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(make_bzimage())
    root = make_folder(tmp_path / "img")
    # A symlink to a file inside the folder is fine.
    (root / "bzImage.real").write_bytes((root / "bzImage").read_bytes())
    (root / "bzImage").unlink()
    (root / "bzImage").symlink_to("bzImage.real")
    assert problems(ImageFolder.open(root)) == {}
    # One pointing outside is refused, even with the right content.
    (root / "bzImage").unlink()
    (root / "bzImage").symlink_to(outside)
    folder = ImageFolder.open(root)
    found = problems(folder)
    assert list(found) == ["bzImage"] and "outside the image folder" in found["bzImage"]
    with pytest.raises(InputError, match="outside the image folder"):
        _ = folder.kernel_path
    # ... also through a relative path with `..`
    (root / "bzImage").unlink()
    (root / "bzImage").symlink_to(Path("..") / "outside.bin")
    assert "outside the image folder" in problems(ImageFolder.open(root))["bzImage"]
    # The manifest and metadata.json themselves may not point outside either.
    (tmp_path / "elsewhere.json").write_text((root / "metadata.json").read_text())
    (root / "metadata.json").unlink()
    (root / "metadata.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(InputError) as info:
        ImageFolder.open(root)
    assert info.value.source == "metadata.json" and "outside the image folder" in info.value.message


def test_dangling_symlink_and_non_files(tmp_path):
    root = make_folder(tmp_path / "img")
    (root / "ovmf.fd").unlink()
    (root / "ovmf.fd").symlink_to(root / "nowhere")
    (root / "bzImage").unlink()
    (root / "bzImage").mkdir()
    found = problems(ImageFolder.open(root))
    assert found == {"ovmf.fd": "is a dangling symlink", "bzImage": "is not a regular file"}


def test_folder_itself(tmp_path):
    with pytest.raises(InputError, match="cannot be opened"):
        ImageFolder.open(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        ImageFolder.open(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError) as info:
        ImageFolder.open(tmp_path / "empty")
    assert info.value.source == "sha256sum.txt" and "missing" in info.value.message
    # A folder reached through a symlink is the folder it points to.
    root = make_folder(tmp_path / "img")
    (tmp_path / "link").symlink_to(root)
    assert problems(ImageFolder.open(tmp_path / "link")) == {}


@pytest.mark.parametrize("change,field,words", [
    ({"kernel": None}, "kernel", "missing"),
    ({"cmdline": 5}, "cmdline", "not a string"),
    ({"initrd": "../initrd"}, "initrd", "'/'"),
    ({"bios": ".."}, "bios", "not a file"),
    ({"is_dev": "no"}, "is_dev", "expected a bool"),
    ({"version": 6}, "version", "expected a str"),
])
def test_bad_metadata(tmp_path, change, field, words):
    doc = {"bios": "ovmf.fd", "kernel": "bzImage", "cmdline": CMDLINE, "initrd": "initramfs.cpio.gz"}
    doc.update(change)
    doc = {k: v for k, v in doc.items() if v is not None}
    with pytest.raises(InputError) as info:
        ImageMetadata.parse(json.dumps(doc).encode())
    assert info.value.source == "metadata.json" and info.value.field == field
    assert words in info.value.message


def test_old_metadata_without_version(tmp_path):
    doc = {"bios": "ovmf.fd", "kernel": "bzImage", "cmdline": "x", "initrd": "initramfs.cpio.gz", "hda": None,
           "rootfs_hash": "00"}
    meta = ImageMetadata.parse(json.dumps(doc).encode())
    assert meta.version is None and meta.is_dev is None and meta.raw["rootfs_hash"] == "00"
    with pytest.raises(InputError, match="JSON object"):
        ImageMetadata.parse(b"[]")
    with pytest.raises(InputError, match="invalid JSON"):
        ImageMetadata.parse(b"{")


def test_metadata_names_a_file_the_manifest_leaves_out(tmp_path):
    root = make_folder(tmp_path / "img")
    doc = json.loads((root / "metadata.json").read_text())
    doc["kernel"] = "bzImage-unlisted"
    (root / "bzImage-unlisted").write_bytes(make_bzimage())
    (root / "metadata.json").write_text(json.dumps(doc))
    rewrite_manifest(root, manifest_of(root, LISTED))
    assert problems(ImageFolder.open(root)) == {
        "bzImage-unlisted": "not listed in sha256sum.txt, so os_image_hash does not cover it"}


# --------------------------------------------------------------------------------------------------------------------
# os.image_hash, full image


def test_image_hash_pass_with_both_values(tmp_path):
    folder = ImageFolder.open(make_folder(tmp_path / "img"))
    value = folder.os_image_hash
    check = check_image_hash(folder, {"os_image_hash": value.hex()}, value, "kms", ABSENT)
    assert check.status is CheckStatus.PASS, check.summary
    assert (check.id, check.phase, check.entity) == ("os.image_hash", "os", "kms")
    assert check.anchor == f"image:{value.hex()}"
    assert value.hex() in check.summary and "OS image 0.6.0" in check.summary
    assert "hardware-measured os-image-hash RTMR3 event and vm_config.os_image_hash" in check.summary
    assert check.details["hardware_measured"] == value.hex()


def test_a_dev_image_is_a_warning(tmp_path):
    doc = json.loads((make_folder(tmp_path / "plain") / "metadata.json").read_text())
    folder = ImageFolder.open(make_folder(tmp_path / "img", metadata={**doc, "is_dev": True}))
    value = folder.os_image_hash
    check = check_image_hash(folder, {"os_image_hash": value.hex()}, value, "app", ABSENT)
    assert check.status is CheckStatus.WARN, check.summary
    assert check.summary.startswith("a development build: ") and "OS image 0.6.0 (dev)" in check.summary
    assert check.details["is_dev"] is True and "is_dev" in check.details["note"]
    # The flag is the image's own: changing it changes sha256sum.txt's line for metadata.json, so os_image_hash.
    assert value != ImageFolder.open(tmp_path / "plain").os_image_hash


def test_image_hash_pass_with_nothing_to_compare(tmp_path):
    folder = ImageFolder.open(make_folder(tmp_path / "img"))
    check = check_image_hash(folder, {"os_image_hash": ""}, None, "app", ABSENT)
    assert check.status is CheckStatus.PASS
    assert "no os-image-hash RTMR3 event or vm_config.os_image_hash to compare with" in check.summary


def test_image_hash_vm_config_disagrees(tmp_path):
    folder = ImageFolder.open(make_folder(tmp_path / "img"))
    other = "11" * 32
    check = check_image_hash(folder, {"os_image_hash": other}, folder.os_image_hash, "app", ABSENT)
    assert check.status is CheckStatus.FAIL
    assert other in check.summary and folder.os_image_hash.hex() in check.summary
    assert check.anchor == f"image:{folder.os_image_hash.hex()}"


def test_image_hash_hardware_disagrees(tmp_path):
    folder = ImageFolder.open(make_folder(tmp_path / "img"))
    measured = bytes.fromhex("22" * 32)
    check = check_image_hash(folder, {"os_image_hash": folder.os_image_hash.hex()}, measured, "app", ABSENT)
    assert check.status is CheckStatus.FAIL
    assert check.summary == (f"the hardware measured os_image_hash {measured.hex()} (the os-image-hash RTMR3 event), "
                             f"but sha256(sha256sum.txt) of the image folder and vm_config.os_image_hash are "
                             f"{folder.os_image_hash.hex()}")
    assert check.details["hardware_measured"] == measured.hex() and "note" in check.details


def test_image_hash_both_disagree(tmp_path):
    folder = ImageFolder.open(make_folder(tmp_path / "img"))
    check = check_image_hash(folder, {"os_image_hash": "33" * 32}, bytes.fromhex("33" * 32), "app", ABSENT)
    assert check.status is CheckStatus.FAIL and check.summary.endswith("(and 1 more)")
    assert len(check.details["problems"]) == 2


@pytest.mark.parametrize("value", ["xyz", "ab" * 31, 42])
def test_image_hash_malformed_vm_config_value(tmp_path, value):
    folder = ImageFolder.open(make_folder(tmp_path / "img"))
    check = check_image_hash(folder, {"os_image_hash": value}, None, "app", ABSENT)
    assert check.status is CheckStatus.FAIL and "not 64 hex digits" in check.summary


def test_image_hash_accepts_uppercase_vm_config(tmp_path):
    folder = ImageFolder.open(make_folder(tmp_path / "img"))
    check = check_image_hash(folder, {"os_image_hash": folder.os_image_hash.hex().upper()}, None, "app", ABSENT)
    assert check.status is CheckStatus.PASS


def test_image_hash_skip_without_a_folder():
    check = check_image_hash(None, {"os_image_hash": "00" * 32}, b"\0" * 32, "gateway", ABSENT)
    assert check.status is CheckStatus.SKIP and check.entity == "gateway"
    assert check.summary == f"skipped: {ABSENT}" and check.anchor == Anchor.NONE


# --------------------------------------------------------------------------------------------------------------------
# os.image_hash, TDX-lite


def lite_vm_config(document: bytes = b"\xa1cbor", *, listed: bytes | None = None) -> dict[str, Any]:
    checksum = f"{hashlib.sha256(listed if listed is not None else document).hexdigest()}  measurement.tdx.cbor\n"
    checksum_bytes = checksum.encode()
    return {"os_image_hash": hashlib.sha256(checksum_bytes).hexdigest(), "tdx_attestation_variant": "lite",
            "tdx_measurement": {"checksum_file": base64.b64encode(checksum_bytes).decode(),
                                "measurement": base64.b64encode(document).decode()}}


def test_lite_pass():
    vm_config = lite_vm_config()
    measured = bytes.fromhex(vm_config["os_image_hash"])
    check = check_image_hash_lite(vm_config, measured, "app")
    assert check.status is CheckStatus.PASS, check.summary
    assert check.anchor == f"image:{vm_config['os_image_hash']}"
    assert check.details["path"] == "tdx-lite"
    assert check.details["listed_document_sha256"] == check.details["measurement_document_sha256"]


def test_lite_failures():
    vm_config = lite_vm_config()
    check = check_image_hash_lite({**vm_config, "os_image_hash": "44" * 32}, None, "app")
    assert check.status is CheckStatus.FAIL and "44" * 32 in check.summary and vm_config["os_image_hash"] in \
        check.summary
    check = check_image_hash_lite({k: v for k, v in vm_config.items() if k != "os_image_hash"}, None, "app")
    assert check.status is CheckStatus.FAIL and "absent" in check.summary
    check = check_image_hash_lite(lite_vm_config(listed=b"another document"), None, "app")
    assert check.status is CheckStatus.FAIL and "measurement document's sha256" in check.summary
    no_doc = lite_vm_config()
    no_doc["tdx_measurement"]["checksum_file"] = base64.b64encode(b"ab" * 32 + b"  ovmf.fd\n").decode()
    no_doc["os_image_hash"] = hashlib.sha256(b"ab" * 32 + b"  ovmf.fd\n").hexdigest()
    check = check_image_hash_lite(no_doc, None, "app")
    assert check.status is CheckStatus.FAIL and "does not list measurement.tdx.cbor" in check.summary
    check = check_image_hash_lite({"os_image_hash": "55" * 32}, None, "app")
    assert check.status is CheckStatus.FAIL and "tdx_measurement" in check.summary
    assert check.anchor == Anchor.NONE
    bad = lite_vm_config()
    bad["tdx_measurement"]["checksum_file"] = "not base64!"
    check = check_image_hash_lite(bad, None, "app")
    assert check.status is CheckStatus.FAIL and "checksum_file is not valid base64" in check.summary
    assert check_image_hash_lite(None, None, "app").status is CheckStatus.SKIP


def test_lite_real_fixture_reports_the_documented_mismatch():
    """spec §9.2 "Fixture history caveat": the RTMR3 event (07a2388c…) disagrees with vm_config (e6f5cfec…)."""
    doc = json.loads(fixture_path("dstack", "tdx-lite-getquote.json").read_text())
    events = parse_event_log(doc["event_log"], "lite")
    info = extract_app_info([e for e in events if e.imr == 3])
    vm_config = json.loads(doc["vm_config"])
    check = check_image_hash_lite(vm_config, info.os_image_hash, "app")
    assert check.status is CheckStatus.FAIL
    assert check.summary == (f"the hardware measured os_image_hash {LITE_MEASURED_HASH} (the os-image-hash RTMR3 "
                             f"event), but sha256(vm_config.tdx_measurement.checksum_file) and "
                             f"vm_config.os_image_hash are {LITE_VM_CONFIG_HASH}")
    assert check.anchor == f"image:{LITE_VM_CONFIG_HASH}"
    assert check.details["problems"] == [check.summary]  # the checksum file and document agree with each other
    assert check.details["listed_document_sha256"].startswith("8c9e955f")
    assert "dstack-verifier does not compare" in check.details["note"]


# --------------------------------------------------------------------------------------------------------------------
# Streaming: a 1 GiB sparse file through every hashing path, in a fresh process, under 300 MB of RSS

_STREAM_SCRIPT = textwrap.dedent("""
    import hashlib, json, os, resource, sys
    from pathlib import Path
    from dstack_verifier.measure.image import ImageFolder
    from dstack_verifier.measure.kernel import kernel_file_authenticode
    from dstack_verifier.measure.rtmr2 import file_sha384

    root = Path(sys.argv[1])
    size = 1 << 30
    with open(root / "initramfs.cpio.gz", "wb") as f:
        f.truncate(size)
    with open(root / "bzImage", "r+b") as f:
        f.truncate(size)
    def peak_kib():
        # Linux keeps ru_maxrss across execve (a child forked from a big pytest inherits its peak); VmHWM belongs to
        # this address space only.
        try:
            with open("/proc/self/status") as status:
                return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        except (OSError, StopIteration):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)

    before = peak_kib()
    initrd_digest, initrd_size = file_sha384(root / "initramfs.cpio.gz")
    kernel_digest = kernel_file_authenticode(root / "bzImage", 0x1000, 0xB0000000)
    checks = ImageFolder.open(root).verify_files()
    after = peak_kib()
    print(json.dumps({"before_kib": before, "after_kib": after, "initrd": initrd_digest.hex(), "size": initrd_size,
                      "kernel": kernel_digest.hex(), "checked": {c.name: c.actual for c in checks}}))
""")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="resource.getrusage is POSIX-only")
def test_a_1_gib_file_is_streamed(tmp_path):
    root = make_folder(tmp_path / "img")
    # A kernel whose one section covers everything after the headers: the whole GiB goes through Authenticode.
    (root / "bzImage").write_bytes(make_bzimage(size=0x1000, size_of_headers=0x1000,
                                                sections=((0x1000, (1 << 30) - 0x1000),)))
    result = subprocess.run([sys.executable, "-c", _STREAM_SCRIPT, str(root)], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["size"] == 1 << 30
    assert out["after_kib"] < 300 * 1024, out
    # The digests are really of the 1 GiB contents (all zeros after the kernel's first 4 KiB).
    zeros = hashlib.sha384()
    chunk = bytes(1 << 24)
    for _ in range(64):
        zeros.update(chunk)
    assert out["initrd"] == zeros.hexdigest()
    assert len(out["checked"]["bzImage"]) == 64 and len(out["checked"]["initramfs.cpio.gz"]) == 64
