"""The file hashing of a full-image measurement (`hash_image`), reused by `measure_image(..., hashes=...)` and kept
by `ImageHashCache` whatever the source of the ACPI digests."""

from __future__ import annotations

import hashlib
import json

import pytest
from dstack_verifier.eventlog import Event
from dstack_verifier.measure.full import ImageHashes, hash_image, measure_image
from dstack_verifier.measure.hash_cache import ImageHashCache
from dstack_verifier.measure.image import ImageFolder
from dstack_verifier.synth.image import build_image_folder

GiB = 1 << 30
VM_CONFIG = {"memory_size": 2 * GiB, "cpu_count": 2, "qemu_version": "8.2.2"}
ACPI = [Event(imr=0, event_type=0xA, name=name, payload=b"ACPI DATA", digest=hashlib.sha384(name.encode()).digest())
        for name in ("acpi-loader", "acpi-rsdp", "acpi-tables")]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> ImageFolder:
    return ImageFolder.open(build_image_folder(tmp_path_factory.mktemp("img") / "img", seed="hashes"))


def test_measuring_from_hashes_equals_measuring_the_files(folder: ImageFolder) -> None:
    hashes = hash_image(folder, VM_CONFIG)
    assert hashes.os_image_hash == folder.os_image_hash.hex() and hashes.mrtd_variant == "two_pass"
    assert hashes.initrd_size == folder.initrd_path.stat().st_size
    direct = measure_image(folder, VM_CONFIG, ACPI)
    assert measure_image(folder, VM_CONFIG, ACPI, hashes=hashes) == direct
    assert direct.mrtd == hashes.mrtd and direct.register_events("rtmr1")[0].digest == hashes.kernel_authenticode
    assert ImageHashes.from_json(json.loads(json.dumps(hashes.to_json()))) == hashes


@pytest.mark.parametrize("change", [{"memory_size": 4 * GiB}, {"qemu_version": "9.2.1"}])
def test_hashes_for_another_vm_config_are_refused(folder: ImageFolder, change: dict[str, object]) -> None:
    hashes = hash_image(folder, VM_CONFIG)
    with pytest.raises(ValueError, match="another image, memory size or page order"):
        measure_image(folder, {**VM_CONFIG, **change}, ACPI, hashes=hashes)


def test_cache_round_trip_and_keys(folder: ImageFolder, tmp_path) -> None:
    cache = ImageHashCache(tmp_path / "c")
    image_hash = folder.os_image_hash.hex()
    assert cache.get(image_hash, VM_CONFIG) is None
    hashes = hash_image(folder, VM_CONFIG)
    cache.put(hashes, VM_CONFIG)
    assert cache.get(image_hash, VM_CONFIG) == hashes
    assert cache.get(image_hash, {**VM_CONFIG, "memory_size": 3 * GiB}) is None  # another key
    assert cache.get(image_hash, {**VM_CONFIG, "qemu_single_pass_add_pages": False}) is None
    assert [p.name for p in (tmp_path / "c").iterdir()] == [cache.path(image_hash, VM_CONFIG).name]


@pytest.mark.parametrize("damage", ["not json", "other key", "bad hex", "short digest", "other image"])
def test_damaged_entries_are_missed_and_removed(folder: ImageFolder, tmp_path, damage: str) -> None:
    cache = ImageHashCache(tmp_path / "c")
    image_hash = folder.os_image_hash.hex()
    hashes = hash_image(folder, VM_CONFIG)
    cache.put(hashes, VM_CONFIG)
    path = cache.path(image_hash, VM_CONFIG)
    stored = json.loads(path.read_text())
    if damage == "not json":
        path.write_text("{")
    else:
        if damage == "other key":
            stored["key"]["vm_config"]["memory_size"] = 1
        elif damage == "bad hex":
            stored["hashes"]["mrtd"] = "zz"
        elif damage == "short digest":
            stored["hashes"]["initrd_sha384"] = "00" * 47
        else:
            stored["hashes"]["os_image_hash"] = "11" * 32
        path.write_text(json.dumps(stored))
    assert cache.get(image_hash, VM_CONFIG) is None
    assert not path.exists()
