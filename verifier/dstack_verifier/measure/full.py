"""The full-image path: MRTD and RTMR0-2 recomputed from the files of a dstack OS image and the VM config.

Every expected event is kept with what it measures; the ACPI digests come from dstack-acpi-tables when it runs, else
from the quote's event log (and the Measurement says so).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..eventlog import Event
from .acpi_tool import select_acpi
from .image import ImageFolder
from .kernel import measure_rtmr1, replay_digests
from .model import Measurement
from .rtmr0 import rtmr0_events
from .rtmr2 import boot_cmdline, cmdline_digest, file_sha384, rtmr2_events_from_digests
from .tdhob import layout_from_sections, td_hob_digest
from .tdvf import compute_mrtd, parse_tdvf, qemu_options

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


def measure_image(folder: ImageFolder, vm_config: Mapping[str, Any], events: Sequence[Event] | None, *,
                  acpi_tool: str | Path | None = None) -> Measurement:
    """Expected registers for this image booted with this VM config. Raises InputError on anything malformed."""
    memory_size = _memory_size(vm_config)
    firmware = _read_firmware(folder.bios_path)
    metadata = parse_tdvf(firmware, source=str(folder.bios_path))
    options = qemu_options(vm_config)
    variant = "two_pass" if options.two_pass else "single_pass"
    mrtd = compute_mrtd(firmware, variant, metadata=metadata, source=str(folder.bios_path))
    layout = layout_from_sections(metadata.sections)
    acpi = select_acpi(vm_config, events or [], tool=acpi_tool, firmware=folder.bios_path, kernel=folder.kernel_path)
    ovmf_variant = str(folder.metadata.ovmf_variant or vm_config.get("ovmf_variant") or "pre202505")
    events0 = rtmr0_events(td_hob_digest(layout, memory_size), acpi, td_hob_source="image", ovmf_variant=ovmf_variant)
    initrd_digest, initrd_size = file_sha384(folder.initrd_path)
    events1 = measure_rtmr1(folder.kernel_path, initrd_size, memory_size)
    cmdline = boot_cmdline(folder.metadata.cmdline)
    events2 = rtmr2_events_from_digests(cmdline_digest(cmdline), initrd_digest)
    inputs = {
        "os_image_hash": folder.os_image_hash.hex(),
        "image_version": folder.metadata.version,
        "memory_size": memory_size,
        "cpu_count": vm_config.get("cpu_count"),
        "qemu_version": options.version_text,
        "qemu_version_given": options.version_given,
        "qemu_single_pass_add_pages": vm_config.get("qemu_single_pass_add_pages"),
        "mrtd_variant_reason": options.two_pass_reason,
        "ovmf_variant": ovmf_variant,
        "firmware_sha256": hashlib.sha256(firmware).hexdigest(),
        "cmdline": cmdline,
        "initrd_size": initrd_size,
        "td_hob": layout.to_json(),
        "acpi_source": acpi.source,
        "acpi_note": acpi.note,
        "acpi_tables_verified": acpi.source == "acpi-tool",
    }
    return Measurement(
        mrtd=mrtd,
        rtmr0=replay_digests(e.digest for e in events0),
        rtmr1=replay_digests(e.digest for e in events1),
        rtmr2=replay_digests(e.digest for e in events2),
        events=[*events0, *events1, *events2],
        mrtd_variant=variant,
        acpi_source=acpi.source,
        path="full-image",
        inputs=inputs,
    )
