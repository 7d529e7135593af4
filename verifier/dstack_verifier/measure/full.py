"""The full-image path: MRTD and RTMR0-2 recomputed from the files of a dstack OS image and the VM config.

Every expected event is kept with what it measures; the ACPI digests come from dstack-acpi-tables when it runs, else
from the quote's event log (and the Measurement says so). The costly part, hashing the files (`hash_image`), depends
only on the image and the VM config, so it can be kept and reused (`measure_image(..., hashes=...)`) whatever the
source of the ACPI digests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import InputError
from ..eventlog import Event
from .acpi_tool import select_acpi
from .image import ImageFolder
from .kernel import kernel_file_authenticode, replay_digests, rtmr1_events
from .model import Measurement
from .rtmr0 import rtmr0_events
from .rtmr2 import boot_cmdline, cmdline_digest, file_sha384, rtmr2_events_from_digests
from .tdhob import layout_from_sections, td_hob_digest
from .tdvf import MrtdVariant, compute_mrtd, parse_tdvf, qemu_options

MAX_FIRMWARE_BYTES = 64 * 1024 * 1024  # OVMF images are a few MiB; the firmware is read whole


def _memory_size(vm_config: Mapping[str, Any]) -> int:
    value = vm_config.get("memory_size")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 1 << 64:
        raise InputError("missing" if value is None else f"{value!r} is not a byte count", source="vm_config",
                         field="memory_size")
    return value


def _read_firmware(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_FIRMWARE_BYTES:
        raise InputError(f"firmware is {size} bytes, more than {MAX_FIRMWARE_BYTES}", source=str(path))
    return path.read_bytes()


class ImageHashes(BaseModel):
    """What hashing an image's files gives for one VM config: every part of a full-image measurement except the
    three ACPI digests. It depends only on the image and the vm_config (memory size, QEMU version, page order), never
    on a quote or its event log, so it can be cached even when the ACPI digests come from the event log."""

    model_config = ConfigDict(frozen=True)

    os_image_hash: str  # hex of sha256(sha256sum.txt) of the folder that was hashed
    memory_size: int
    mrtd: bytes = Field(min_length=48, max_length=48)
    mrtd_variant: MrtdVariant
    td_hob_digest: bytes = Field(min_length=48, max_length=48)
    td_hob: dict[str, Any]  # the layout, for the report
    firmware_sha256: str
    kernel_authenticode: bytes = Field(min_length=48, max_length=48)
    initrd_sha384: bytes = Field(min_length=48, max_length=48)
    initrd_size: int

    def to_json(self) -> dict[str, Any]:
        return {name: value.hex() if isinstance(value, bytes) else value
                for name, value in self.model_dump(mode="python").items()}

    @classmethod
    def from_json(cls, data: Any) -> ImageHashes:
        """The inverse of to_json; a ValueError (pydantic's ValidationError is one) for anything malformed."""
        if not isinstance(data, dict):
            raise ValueError("not an object")
        values = dict(data)
        for name in _HASH_FIELDS:
            if not isinstance(values.get(name), str):
                raise ValueError(f"{name} is not a hex string")
            values[name] = bytes.fromhex(values[name])
        return cls.model_validate(values)


_HASH_FIELDS = ("mrtd", "td_hob_digest", "kernel_authenticode", "initrd_sha384")


def hash_image(folder: ImageFolder, vm_config: Mapping[str, Any]) -> ImageHashes:
    """Hash the firmware, kernel and initrd of the image as this VM config boots them (the costly part)."""
    memory_size = _memory_size(vm_config)
    firmware = _read_firmware(folder.bios_path)
    metadata = parse_tdvf(firmware, source=str(folder.bios_path))
    variant: MrtdVariant = "two_pass" if qemu_options(vm_config).two_pass else "single_pass"
    mrtd = compute_mrtd(firmware, variant, metadata=metadata, source=str(folder.bios_path))
    layout = layout_from_sections(metadata.sections)
    initrd_digest, initrd_size = file_sha384(folder.initrd_path)
    return ImageHashes(
        os_image_hash=folder.os_image_hash.hex(),
        memory_size=memory_size,
        mrtd=mrtd,
        mrtd_variant=variant,
        td_hob_digest=td_hob_digest(layout, memory_size),
        td_hob=layout.to_json(),
        firmware_sha256=hashlib.sha256(firmware).hexdigest(),
        kernel_authenticode=kernel_file_authenticode(folder.kernel_path, initrd_size, memory_size),
        initrd_sha384=initrd_digest,
        initrd_size=initrd_size,
    )


def measure_image(folder: ImageFolder, vm_config: Mapping[str, Any], events: Sequence[Event] | None, *,
                  acpi_tool: str | Path | None = None, hashes: ImageHashes | None = None) -> Measurement:
    """Expected registers for this image booted with this VM config. Raises InputError on anything malformed.

    `hashes` (from `hash_image` for the same folder and VM config, e.g. cached) saves hashing the files again.
    """
    memory_size = _memory_size(vm_config)
    options = qemu_options(vm_config)
    if hashes is None:
        hashes = hash_image(folder, vm_config)
    elif (hashes.os_image_hash, hashes.memory_size, hashes.mrtd_variant == "two_pass") != (
            folder.os_image_hash.hex(), memory_size, options.two_pass):
        raise ValueError("the image hashes were computed for another image, memory size or page order")
    acpi = select_acpi(vm_config, events or [], tool=acpi_tool, firmware=folder.bios_path, kernel=folder.kernel_path)
    ovmf_variant = str(folder.metadata.ovmf_variant or vm_config.get("ovmf_variant") or "pre202505")
    events0 = rtmr0_events(hashes.td_hob_digest, acpi, td_hob_source="image", ovmf_variant=ovmf_variant)
    events1 = rtmr1_events(hashes.kernel_authenticode)
    cmdline = boot_cmdline(folder.metadata.cmdline)
    events2 = rtmr2_events_from_digests(cmdline_digest(cmdline), hashes.initrd_sha384)
    inputs = {
        "os_image_hash": folder.os_image_hash.hex(),
        "image_version": folder.metadata.version,
        "memory_size": memory_size,
        **options.describe(vm_config),
        "ovmf_variant": ovmf_variant,
        "firmware_sha256": hashes.firmware_sha256,
        "cmdline": cmdline,
        "initrd_size": hashes.initrd_size,
        "td_hob": hashes.td_hob,
        **acpi.describe(),
    }
    return Measurement(
        mrtd=hashes.mrtd,
        rtmr0=replay_digests(e.digest for e in events0),
        rtmr1=replay_digests(e.digest for e in events1),
        rtmr2=replay_digests(e.digest for e in events2),
        events=[*events0, *events1, *events2],
        mrtd_variant=hashes.mrtd_variant,
        acpi_source=acpi.source,
        path="full-image",
        inputs=inputs,
    )
