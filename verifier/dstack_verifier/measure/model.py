"""What a measurement produces: the expected registers and every expected event digest, with what each measures.

Every module of `measure/` speaks these types, so the checks can compare with the quote and, event by event, with
the quote's event log, and say which event differs and what it measures.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Register = Literal["rtmr0", "rtmr1", "rtmr2"]
# Where an expected digest comes from: recomputed from image bytes, taken from the event log (ACPI in TDX-lite and
# without dstack-acpi-tables), the VM config, a fixed constant of the firmware, or the TDX-lite measurement document.
DigestSource = Literal["image", "event-log-only", "vm-config", "constant", "measurement-document", "acpi-tool"]


class ExpectedEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    rtmr: Register  # which register (named so: `register` would shadow BaseModel's ABC method)
    index: int  # position within its register
    digest: bytes  # 48 bytes (SHA-384)
    what: str  # a person's words: "TD HOB", "EFI variable SecureBoot", "the kernel image", "ACPI tables"...
    source: DigestSource
    event_type: int | None = None  # the TCG event type the firmware logs it with, when known
    varies_with: str = ""  # what the digest changes with: where to look when it differs (dstack-mr's diagnosis)


# What the events' digests change with, named once for the paths that build them.
VARIES_CONSTANT = "nothing: a constant of the firmware (its ovmf_variant)"
VARIES_TD_HOB = "vm_config.memory_size (the TD's memory map) and the firmware's TDVF metadata"
VARIES_ACPI = ("the virtual hardware as QEMU lays it out: vm_config.cpu_count, memory_size, qemu_version, "
               "pci_hole64_size, hugepages, num_gpus, num_nvswitches, hotplug_off, num_nics, host_share_mode")
VARIES_KERNEL = "the bzImage, and its setup header as QEMU patches it: vm_config.memory_size and the initrd's size"
VARIES_CMDLINE = "metadata.json's cmdline, which carries the rootfs hash"
VARIES_INITRD = "the initramfs file"


class Measurement(BaseModel):
    """Expected MRTD and RTMR0-2 with every event; `inputs` names what they were computed from."""

    model_config = ConfigDict(frozen=True)

    mrtd: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    events: list[ExpectedEvent] = Field(default_factory=list)
    mrtd_variant: Literal["single_pass", "two_pass"]
    acpi_source: Literal["event-log-only", "acpi-tool", "image"]
    path: Literal["full-image", "tdx-lite"]
    inputs: dict[str, Any] = Field(default_factory=dict)  # os_image_hash, memory_size, cpu_count, qemu_version...

    def register_events(self, register: Register) -> list[ExpectedEvent]:
        return [e for e in self.events if e.rtmr == register]

    def value(self, register: str) -> bytes:
        return {"mrtd": self.mrtd, "rtmr0": self.rtmr0, "rtmr1": self.rtmr1, "rtmr2": self.rtmr2}[register]

    def to_json(self) -> dict[str, Any]:
        return {
            "mrtd": self.mrtd.hex(),
            "rtmr0": self.rtmr0.hex(),
            "rtmr1": self.rtmr1.hex(),
            "rtmr2": self.rtmr2.hex(),
            "mrtd_variant": self.mrtd_variant,
            "acpi_source": self.acpi_source,
            "path": self.path,
            "inputs": self.inputs,
            "events": [
                {"register": e.rtmr, "index": e.index, "digest": e.digest.hex(), "what": e.what,
                 "source": e.source, "event_type": e.event_type, "varies_with": e.varies_with}
                for e in self.events
            ],
        }
