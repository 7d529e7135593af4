"""RTMR0: the 13 events OVMF (`ovmf_variant = "pre202505"`) measures before it boots the kernel (spec §3).

  0  TD HOB                                 sha384(TD HOB bytes), see tdhob.py
  1  CFV (configuration firmware volume)    fixed for dstack's firmware
  2-6  EFI variables SecureBoot, PK, KEK, db, dbx (empty: Secure Boot is off)
  7  separator
  8-10 ACPI loader commands, RSDP, tables   from dstack-acpi-tables, or taken from the event log
  11 BootOrder, 12 Boot0000

Only the TD HOB and the three ACPI blobs vary between VMs; the others are constants of the firmware. Those the spec
defines are computed here from their definitions, so a reader can see what each digest stands for.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import InputError
from ..eventlog import Event
from .model import VARIES_ACPI, VARIES_CONSTANT, VARIES_TD_HOB, DigestSource, ExpectedEvent

DIGEST_BYTES = 48
ZERO_MR = bytes(DIGEST_BYTES)
SUPPORTED_OVMF_VARIANTS = ("pre202505",)

# TCG event types, as the CCEL logs these events.
EV_SEPARATOR = 0x4
EV_PLATFORM_CONFIG_FLAGS = 0xA
EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001
EV_EFI_VARIABLE_BOOT = 0x80000002
EV_EFI_PLATFORM_FIRMWARE_BLOB2 = 0x8000000A
EV_EFI_HANDOFF_TABLES2 = 0x8000000B

ACPI_EVENT_PAYLOAD = b"ACPI DATA"
ACPI_EVENT_NAMES = ("acpi-loader", "acpi-rsdp", "acpi-tables")  # labels the guest gives them, in log order

# The CFV (OVMF's variable store volume, base 0xFFC00000, 0x84000 bytes) as measured by dstack's firmware. dstack-mr
# hard-codes it (dstack-mr/src/tdvf.rs, spec §3 table row 1); it can only be recomputed from the firmware's CFV bytes.
CFV_DIGEST = bytes.fromhex(
    "344bc51c980ba621aaa00da3ed7436f7d6e549197dfe699515dfa2c6583d95e6412af21c097d473155875ffd561d6790"
)

EFI_GLOBAL_VARIABLE_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
EFI_IMAGE_SECURITY_DATABASE_GUID = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"
EFI_VARIABLES: tuple[tuple[str, str], ...] = (
    ("SecureBoot", EFI_GLOBAL_VARIABLE_GUID),
    ("PK", EFI_GLOBAL_VARIABLE_GUID),
    ("KEK", EFI_GLOBAL_VARIABLE_GUID),
    ("db", EFI_IMAGE_SECURITY_DATABASE_GUID),
    ("dbx", EFI_IMAGE_SECURITY_DATABASE_GUID),
)


def efi_variable_digest(name: str, vendor_guid: str) -> bytes:
    """UEFI_VARIABLE_DATA of an empty variable (spec §3.2): GUID, u64 name length in characters, u64 data length 0,
    the UTF-16LE name (no terminator), no data."""
    data = uuid.UUID(vendor_guid).bytes_le + struct.pack("<QQ", len(name), 0) + name.encode("utf-16-le")
    return hashlib.sha384(data).digest()


SEPARATOR_DIGEST = hashlib.sha384(bytes(4)).digest()  # EV_SEPARATOR measures a u32 0
BOOT_ORDER_DATA = bytes(2)  # BootOrder = [0x0000]; EV_EFI_VARIABLE_BOOT hashes only the variable data


def _device_path_node(node_type: int, subtype: int, body: bytes) -> bytes:
    return struct.pack("<BBH", node_type, subtype, 4 + len(body)) + body


# Boot0000 is OVMF's "UiApp" load option. The spec (§3.2) gives its shape (attributes 0x109, description "UiApp", a
# firmware-file device path, 62 bytes) and dstack-mr its digest; the GUIDs below are edk2's: 7CB8BDC9-… is the name
# of OVMF's DXE firmware volume, 462CAA21-… the FILE_GUID of MdeModulePkg/Application/UiApp/UiApp.inf. The tests
# check that this reconstruction hashes to dstack-mr's hard-coded digest 23ada07f…c298.
LOAD_OPTION_ACTIVE_HIDDEN_APP = 0x109  # LOAD_OPTION_ACTIVE | LOAD_OPTION_HIDDEN | LOAD_OPTION_CATEGORY_APP
OVMF_DXE_FV_GUID = "7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1"
UIAPP_FILE_GUID = "462caa21-7614-4503-836e-8ab6f4662331"
_BOOT0000_PATH = (
    _device_path_node(0x04, 0x07, uuid.UUID(OVMF_DXE_FV_GUID).bytes_le)  # MEDIA / PIWG firmware volume
    + _device_path_node(0x04, 0x06, uuid.UUID(UIAPP_FILE_GUID).bytes_le)  # MEDIA / PIWG firmware file
    + _device_path_node(0x7F, 0xFF, b"")  # end of the device path
)
BOOT0000_DATA = (
    struct.pack("<IH", LOAD_OPTION_ACTIVE_HIDDEN_APP, len(_BOOT0000_PATH)) + "UiApp\0".encode("utf-16-le")
    + _BOOT0000_PATH
)
BOOT_ORDER_DIGEST = hashlib.sha384(BOOT_ORDER_DATA).digest()
BOOT0000_DIGEST = hashlib.sha384(BOOT0000_DATA).digest()


def replay_digests(digests: Iterable[bytes]) -> bytes:
    """An RTMR from its event digests: 48 zero bytes, then mr = SHA-384(mr || digest) for each."""
    mr = ZERO_MR
    for digest in digests:
        mr = hashlib.sha384(mr + digest).digest()
    return mr


# --------------------------------------------------------------------------------------------------------------------
# ACPI digests


AcpiSource = Literal["event-log-only", "acpi-tool"]


@dataclass(frozen=True)
class AcpiDigests:
    """The three ACPI digests of RTMR0 events 8-10 and where they came from.

    `event-log-only`: taken from the quote's event log, so only the final RTMR0 comparison constrains them and the
    table contents are not verified. `acpi-tool`: recomputed by dstack-acpi-tables from the VM configuration.
    """

    loader: bytes
    rsdp: bytes
    tables: bytes
    source: AcpiSource
    note: str
    log_indices: tuple[int, int, int] | None = None  # where each digest sits in the event log, when taken from it

    def describe(self) -> dict[str, Any]:
        """What a measurement's `inputs` say about where the ACPI digests came from."""
        return {
            "acpi_source": self.source,
            "acpi_note": self.note,
            "acpi_log_indices": list(self.log_indices) if self.log_indices else None,
            "acpi_tables_verified": self.source == "acpi-tool",
        }


def acpi_from_event_log(events: Sequence[Event]) -> AcpiDigests:
    """The ACPI digests named in the log (spec §3.4): by name, not position, exactly three, each 48 bytes.

    Of the RTMR0 events, the candidates are those with type 0xA and payload "ACPI DATA"; there must be exactly three,
    named acpi-loader, acpi-rsdp and acpi-tables once each. A log whose guest did not label them fails. A V1
    attestation strips the payload of the events it keeps (it keeps only these three below RTMR3): such an event
    is a candidate by its name. The payload is a label either way, never what the digest measures.
    """
    candidates = [(i, e) for i, e in enumerate(events)
                  if e.imr == 0 and e.event_type == EV_PLATFORM_CONFIG_FLAGS
                  and (e.payload == ACPI_EVENT_PAYLOAD or (not e.payload and e.name in ACPI_EVENT_NAMES))]
    if len(candidates) != 3:
        names = [e.name for _, e in candidates]
        missing = [n for n in ACPI_EVENT_NAMES if n not in names]
        detail = f"; missing {', '.join(missing)}" if missing else ""
        raise InputError(f"expected exactly 3 RTMR0 \"ACPI DATA\" events, found {len(candidates)}{detail}",
                         source="event log", field=missing[0] if missing else "ACPI DATA events")
    found: dict[str, tuple[int, bytes]] = {}
    for name in ACPI_EVENT_NAMES:
        named = [(i, e) for i, e in candidates if e.name == name]
        if len(named) != 1:
            unnamed = " (the guest did not label its ACPI events)" if not any(e.name for _, e in candidates) else ""
            raise InputError(f"expected one \"ACPI DATA\" event named {name}, found {len(named)}{unnamed}",
                             source="event log", field=name)
        index, event = named[0]
        if event.digest is None or len(event.digest) != DIGEST_BYTES:
            size = 0 if event.digest is None else len(event.digest)
            raise InputError(f"the {name} event's digest is {size} bytes, not 48", source="event log",
                             field=f"event_log[{index}].digest")
        found[name] = (index, event.digest)
    return AcpiDigests(
        loader=found["acpi-loader"][1],
        rsdp=found["acpi-rsdp"][1],
        tables=found["acpi-tables"][1],
        source="event-log-only",
        note="ACPI digests taken from the event log (acpi-loader, acpi-rsdp, acpi-tables): the table contents are "
             "not verified, only constrained by the RTMR0 comparison",
        log_indices=(found["acpi-loader"][0], found["acpi-rsdp"][0], found["acpi-tables"][0]),
    )


# --------------------------------------------------------------------------------------------------------------------
# The 13 expected events


def rtmr0_events(td_hob_digest: bytes, acpi: AcpiDigests, *, td_hob_source: DigestSource = "image",
                 ovmf_variant: str = "pre202505") -> list[ExpectedEvent]:
    """RTMR0's expected events in log order; `td_hob_source` says where the TD HOB layout came from."""
    if ovmf_variant not in SUPPORTED_OVMF_VARIANTS:
        raise InputError(f"OVMF variant {ovmf_variant!r} is not supported (only {', '.join(SUPPORTED_OVMF_VARIANTS)})",
                         field="ovmf_variant")
    acpi_source: DigestSource = acpi.source
    rows: list[tuple[bytes, str, DigestSource, int, str]] = [
        (td_hob_digest, "TD HOB", td_hob_source, EV_EFI_HANDOFF_TABLES2, VARIES_TD_HOB),
        (CFV_DIGEST, "CFV (configuration firmware volume)", "constant", EV_EFI_PLATFORM_FIRMWARE_BLOB2,
         VARIES_CONSTANT),
        *((efi_variable_digest(name, guid), f"EFI variable {name}", "constant", EV_EFI_VARIABLE_DRIVER_CONFIG,
           VARIES_CONSTANT) for name, guid in EFI_VARIABLES),
        (SEPARATOR_DIGEST, "separator", "constant", EV_SEPARATOR, VARIES_CONSTANT),
        (acpi.loader, "ACPI loader commands (etc/table-loader)", acpi_source, EV_PLATFORM_CONFIG_FLAGS, VARIES_ACPI),
        (acpi.rsdp, "ACPI RSDP", acpi_source, EV_PLATFORM_CONFIG_FLAGS, VARIES_ACPI),
        (acpi.tables, "ACPI tables", acpi_source, EV_PLATFORM_CONFIG_FLAGS, VARIES_ACPI),
        (BOOT_ORDER_DIGEST, "BootOrder", "constant", EV_EFI_VARIABLE_BOOT, VARIES_CONSTANT),
        (BOOT0000_DIGEST, "Boot0000", "constant", EV_EFI_VARIABLE_BOOT, VARIES_CONSTANT),
    ]
    return [ExpectedEvent(rtmr="rtmr0", index=i, digest=digest, what=what, source=source, event_type=event_type,
                          varies_with=varies)
            for i, (digest, what, source, event_type, varies) in enumerate(rows)]
