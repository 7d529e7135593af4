"""On-disk cache of `ImageHashes`: the file hashing of a full-image measurement, without the ACPI digests.

`MeasurementCache` (cache.py) refuses measurements whose ACPI digests come from a quote's event log, since those
describe the quote rather than the (image, vm_config) pair. The file hashing under them does not: MRTD, the TD HOB,
the kernel's Authenticode digest and the initrd's SHA-384 depend only on the image and the vm_config. So they are
kept here, keyed as `MeasurementCache` keys its entries, and a second verification of the same image only combines
them with the ACPI digests of its own event log.

Entries are JSON files written atomically. An unreadable, malformed or mismatching entry is deleted and missed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .cache import MeasurementCache, read_keyed_entry, write_atomically
from .full import ImageHashes

# Bump when hash_image changes what it computes, so that old entries stop matching.
HASH_CACHE_VERSION = 1
_EXTRA = {"kind": "image-hashes", "version": HASH_CACHE_VERSION}


class ImageHashCache:
    """`ImageHashes` as ``<folder>/<key>.json``, key = sha256 over the os_image_hash and the vm_config fields that
    change a measurement (`cache.MEASUREMENT_KEY_FIELDS`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @staticmethod
    def key_fields(os_image_hash: str, vm_config: Mapping[str, Any]) -> dict[str, Any]:
        return MeasurementCache.key_fields(os_image_hash, vm_config, _EXTRA)

    def path(self, os_image_hash: str, vm_config: Mapping[str, Any]) -> Path:
        return self.folder / f"{MeasurementCache.key(os_image_hash, vm_config, _EXTRA)}.json"

    def get(self, os_image_hash: str, vm_config: Mapping[str, Any]) -> ImageHashes | None:
        def parse(stored: dict[str, Any]) -> ImageHashes:
            hashes = ImageHashes.from_json(stored.get("hashes"))
            if hashes.os_image_hash != stored["key"]["os_image_hash"]:
                raise ValueError("entry for another image")
            return hashes

        return read_keyed_entry(self.path(os_image_hash, vm_config), self.key_fields(os_image_hash, vm_config), parse)

    def put(self, hashes: ImageHashes, vm_config: Mapping[str, Any]) -> None:
        body = json.dumps({"key": self.key_fields(hashes.os_image_hash, vm_config), "hashes": hashes.to_json()},
                          sort_keys=True).encode()
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path(hashes.os_image_hash, vm_config), body)
