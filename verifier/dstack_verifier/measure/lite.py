"""TDX-lite: MRTD and RTMR0-2 from `measurement.tdx.cbor`, the vm_config and the event log's ACPI digests.

Spec §10.2 (dstack's `verify_os_image_hash_for_dstack_tdx_lite`), step by step; the step numbers below are the
spec's. No image is downloaded: the vm_config carries the image's `sha256sum.txt` (whose SHA-256 is the
os_image_hash) and `measurement.tdx.cbor` (listed in it), so the document is bound to the os_image_hash and the
quote's registers are then compared with what the document, the vm_config and the log imply (step 12, in checks.py).

Every failure is an InputError naming what failed; the caller turns it into a failing check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..eventlog import Event
from .cbor import decode_cbor
from .kernel import rtmr1_events
from .model import Measurement
from .rtmr0 import (
    DIGEST_BYTES,
    SUPPORTED_OVMF_VARIANTS,
    AcpiDigests,
    acpi_from_event_log,
    replay_digests,
    rtmr0_events,
)
from .rtmr2 import rtmr2_events_from_digests
from .tdhob import decode_witness, td_hob_digest
from .tdvf import MRTD_VARIANTS, qemu_options

MEASUREMENT_FILENAME = "measurement.tdx.cbor"
DOCUMENT_VERSION = 3
MAX_CHECKSUM_FILE_BYTES = 64 << 10  # a release's sha256sum.txt lists about ten files
MAX_MEASUREMENT_BYTES = 64 << 10  # the v3 document is 384 bytes
MAX_SHOWN_ENTRIES = 64

# Memory sizes whose patched kernel header equals the one `kernel_authenticode` was computed for (spec §4.1): at
# exactly 2 GiB and from 0xB0000000 up QEMU places the initrd below the same 2 GiB limit.
LITE_MEMORY_EXACT = 0x80000000
LITE_MEMORY_HIGH = 0xB0000000

_SOURCE = "vm_config"
_DOC = MEASUREMENT_FILENAME
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class LiteMaterial:
    """`vm_config.tdx_measurement`, base64-decoded."""

    checksum_file: bytes
    measurement: bytes


@dataclass(frozen=True)
class LiteDocument:
    """`measurement.tdx.cbor` version 3 (spec §10.1)."""

    version: int
    cmdline_sha384: bytes
    kernel_authenticode: bytes
    initrd_sha384: bytes
    ovmf: str
    mrtd: dict[str, bytes]  # single_pass, two_pass
    td_hob: bytes  # TdHobWitnessV1
    unknown_keys: tuple[str, ...]  # keys dstack would ignore; reported, never used

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "image": {"cmdline_sha384": self.cmdline_sha384.hex(),
                      "kernel_authenticode": self.kernel_authenticode.hex(),
                      "initrd_sha384": self.initrd_sha384.hex()},
            "tdvf": {"ovmf": self.ovmf, "mrtd": {k: v.hex() for k, v in self.mrtd.items()},
                     "td_hob": self.td_hob.hex()},
            "unknown_keys": list(self.unknown_keys),
        }


# --------------------------------------------------------------------------------------------------------------------
# Steps 1-3: the material and its binding to os_image_hash


def _base64_field(document: Mapping[str, Any], key: str, limit: int) -> bytes:
    field = f"tdx_measurement.{key}"
    value = document.get(key)
    if not isinstance(value, str):
        raise InputError("missing" if value is None else f"expected base64 text, got {type(value).__name__}",
                         source=_SOURCE, field=field)
    if len(value) > 4 * (limit // 3 + 1):
        raise InputError(f"more than the {limit} bytes allowed", source=_SOURCE, field=field)
    try:
        # Standard alphabet with padding (serde_human_bytes); validate=True refuses anything outside it.
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("not standard base64 with padding", source=_SOURCE, field=field) from None


def lite_material(vm_config: Mapping[str, Any]) -> LiteMaterial:
    """Step 1: `vm_config.tdx_measurement` must be present; a lite boot without it has no fallback."""
    document = vm_config.get("tdx_measurement")
    if document is None:
        raise InputError("missing: a TDX-lite boot needs the image's checksum file and measurement document",
                         source=_SOURCE, field="tdx_measurement")
    if not isinstance(document, Mapping):
        raise InputError(f"expected an object, got {type(document).__name__}", source=_SOURCE,
                         field="tdx_measurement")
    return LiteMaterial(checksum_file=_base64_field(document, "checksum_file", MAX_CHECKSUM_FILE_BYTES),
                        measurement=_base64_field(document, "measurement", MAX_MEASUREMENT_BYTES))


def os_image_hash(vm_config: Mapping[str, Any]) -> bytes:
    value = vm_config.get("os_image_hash")
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        shown = "missing" if value is None else "not 64 hex digits"
        raise InputError(f"{shown}: the os_image_hash is sha256(sha256sum.txt)", source=_SOURCE,
                         field="os_image_hash")
    return bytes.fromhex(value)


def checksum_entries(checksum_file: bytes) -> list[tuple[str, str]]:
    """(name, hash text) per non-empty line, split on whitespace as dstack does; a line without a name is an error."""
    try:
        text = checksum_file.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError("not valid UTF-8", source=_SOURCE, field="tdx_measurement.checksum_file",
                         offset=exc.start) from None
    entries = []
    for number, line in enumerate(text.split("\n"), start=1):
        parts = line.strip().split()
        if not parts:
            continue
        if len(parts) < 2:
            raise InputError(f"line {number} has a hash but no file name", source=_SOURCE,
                             field="tdx_measurement.checksum_file")
        entries.append((parts[1], parts[0]))
    return entries


def checksum_entry(checksum_file: bytes, name: str = MEASUREMENT_FILENAME) -> bytes:
    """Step 3: the 32-byte hash of the one line naming `name`."""
    matches = [h for n, h in checksum_entries(checksum_file) if n == name]
    field = "tdx_measurement.checksum_file"
    if len(matches) != 1:
        what = "no line" if not matches else f"{len(matches)} lines"
        raise InputError(f"{what} for {name}; exactly one is required", source=_SOURCE, field=field)
    text = matches[0]
    if len(text) != 64 or not _HEX64.fullmatch(text):
        raise InputError(f"the {name} line's hash {text[:70]!r} is not 32 bytes of hex", source=_SOURCE, field=field)
    return bytes.fromhex(text)


def verify_binding(vm_config: Mapping[str, Any], material: LiteMaterial) -> None:
    """Steps 2 and 3: sha256(checksum_file) is the os_image_hash, and it lists sha256(measurement)."""
    expected = os_image_hash(vm_config)
    actual = hashlib.sha256(material.checksum_file).digest()
    if actual != expected:
        raise InputError(f"sha256(tdx_measurement.checksum_file) = {actual.hex()} is not vm_config.os_image_hash "
                         f"{expected.hex()}: the checksum file is not the one of this OS image", source=_SOURCE,
                         field="tdx_measurement.checksum_file")
    listed = checksum_entry(material.checksum_file)
    measured = hashlib.sha256(material.measurement).digest()
    if listed != measured:
        raise InputError(f"sha256(tdx_measurement.measurement) = {measured.hex()} is not the {MEASUREMENT_FILENAME} "
                         f"hash {listed.hex()} listed in the checksum file", source=_SOURCE,
                         field="tdx_measurement.measurement")


# --------------------------------------------------------------------------------------------------------------------
# Step 4: the document


def _map(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError("missing" if value is None else f"expected a map, got {type(value).__name__}", source=_DOC,
                         field=field)
    return value


def _digest(parent: Mapping[str, Any], key: str, field: str) -> bytes:
    value = parent.get(key)
    if not isinstance(value, bytes):
        raise InputError("missing" if value is None else f"expected a byte string, got {type(value).__name__}",
                         source=_DOC, field=field)
    if len(value) != DIGEST_BYTES:
        raise InputError(f"{len(value)} bytes, not a 48-byte SHA-384 digest", source=_DOC, field=field)
    return value


def _unknown(parent: Mapping[str, Any], known: set[str], prefix: str) -> list[str]:
    return [f"{prefix}{k}" for k in parent if k not in known]


def decode_measurement_document(data: bytes) -> LiteDocument:
    """Step 4: decode `measurement.tdx.cbor`; the version must be 3 (checked before anything else is read)."""
    top = _map(decode_cbor(data, source=_DOC), "")
    version = top.get("version")
    if version != DOCUMENT_VERSION or isinstance(version, bool):
        shown = repr(version)[:40] if version is not None else "missing"
        raise InputError(f"document version is {shown}, only {DOCUMENT_VERSION} is supported", source=_DOC,
                         field="version")
    image = _map(top.get("image"), "image")
    tdvf = _map(top.get("tdvf"), "tdvf")
    mrtd = _map(tdvf.get("mrtd"), "tdvf.mrtd")
    ovmf = tdvf.get("ovmf")
    if not isinstance(ovmf, str):
        raise InputError("missing" if ovmf is None else "expected text", source=_DOC, field="tdvf.ovmf")
    candidates = {}
    for variant in MRTD_VARIANTS:
        value = mrtd.get(variant)
        if not isinstance(value, bytes):
            raise InputError("missing" if value is None else "expected a byte string", source=_DOC,
                             field=f"tdvf.mrtd.{variant}")
        candidates[variant] = value
    witness = tdvf.get("td_hob")
    if not isinstance(witness, bytes):
        raise InputError("missing" if witness is None else "expected a byte string", source=_DOC, field="tdvf.td_hob")
    unknown = (_unknown(top, {"version", "image", "tdvf"}, "")
               + _unknown(image, {"cmdline_sha384", "kernel_authenticode", "initrd_sha384"}, "image.")
               + _unknown(tdvf, {"ovmf", "mrtd", "td_hob"}, "tdvf.")
               + _unknown(mrtd, set(MRTD_VARIANTS), "tdvf.mrtd."))
    return LiteDocument(
        version=version,
        cmdline_sha384=_digest(image, "cmdline_sha384", "image.cmdline_sha384"),
        kernel_authenticode=_digest(image, "kernel_authenticode", "image.kernel_authenticode"),
        initrd_sha384=_digest(image, "initrd_sha384", "image.initrd_sha384"),
        ovmf=ovmf,
        mrtd=candidates,
        td_hob=witness,
        unknown_keys=tuple(unknown),
    )


# --------------------------------------------------------------------------------------------------------------------
# Steps 1-11


def _memory_size(vm_config: Mapping[str, Any]) -> int:
    value = vm_config.get("memory_size")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 1 << 64:
        raise InputError("missing" if value is None else f"{value!r} is not a byte count", source=_SOURCE,
                         field="memory_size")
    return value


def measure_lite(vm_config: Mapping[str, Any], events: Sequence[Event], *,
                 acpi: AcpiDigests | None = None) -> Measurement:
    """Expected MRTD and RTMR0-2 of a TDX-lite boot (spec §10.2 steps 1-11).

    `acpi`: digests from `acpi_tool.select_acpi` when the caller could run dstack-acpi-tables; by default they are
    taken from the event log (step 6), and the Measurement says so in `acpi_source` and `inputs`.
    """
    material = lite_material(vm_config)  # 1
    verify_binding(vm_config, material)  # 2, 3
    document = decode_measurement_document(material.measurement)  # 4
    configured_ovmf = vm_config.get("ovmf_variant")  # 5
    if configured_ovmf is not None and configured_ovmf != document.ovmf:
        raise InputError(f"vm_config.ovmf_variant {str(configured_ovmf)[:40]!r} differs from the measurement "
                         f"document's tdvf.ovmf {document.ovmf[:40]!r}", source=_SOURCE, field="ovmf_variant")
    if document.ovmf not in SUPPORTED_OVMF_VARIANTS:
        raise InputError(f"OVMF variant {document.ovmf[:40]!r} has an RTMR0 layout we do not know (supported: "
                         f"{', '.join(SUPPORTED_OVMF_VARIANTS)})", source=_DOC, field="tdvf.ovmf")
    acpi_digests = acpi if acpi is not None else acpi_from_event_log(events)  # 6
    memory_size = _memory_size(vm_config)  # 7
    if memory_size != LITE_MEMORY_EXACT and memory_size < LITE_MEMORY_HIGH:
        raise InputError(f"memory_size 0x{memory_size:x} is not allowed in TDX-lite: it must be exactly 2 GiB or at "
                         f"least 0xb0000000, because below that the patched kernel (RTMR1) depends on the memory "
                         f"size", source=_SOURCE, field="memory_size")
    options = qemu_options(vm_config)  # 8
    variant = "two_pass" if options.two_pass else "single_pass"
    mrtd = document.mrtd[variant]
    if len(mrtd) != DIGEST_BYTES:
        raise InputError(f"{len(mrtd)} bytes, not a 48-byte MRTD", source=_DOC, field=f"tdvf.mrtd.{variant}")
    layout = decode_witness(document.td_hob, source=_DOC)  # 9
    events0 = rtmr0_events(td_hob_digest(layout, memory_size), acpi_digests, td_hob_source="measurement-document",
                           ovmf_variant=document.ovmf)
    # RTMR1 and RTMR2 events are built by kernel.py and rtmr2.py, so both paths describe them in the same words.
    events1 = rtmr1_events(document.kernel_authenticode, "measurement-document")  # 10
    events2 = rtmr2_events_from_digests(document.cmdline_sha384, document.initrd_sha384,  # 11
                                        source="measurement-document")
    inputs = {
        "os_image_hash": vm_config["os_image_hash"].lower(),
        "memory_size": memory_size,
        **options.describe(vm_config),
        "ovmf_variant": document.ovmf,
        "checksum_file_sha256": hashlib.sha256(material.checksum_file).hexdigest(),
        "measurement_sha256": hashlib.sha256(material.measurement).hexdigest(),
        "measurement_document": document.to_json(),
        "td_hob": layout.to_json(),
        **acpi_digests.describe(),
    }
    return Measurement(
        mrtd=mrtd,
        rtmr0=replay_digests(e.digest for e in events0),
        rtmr1=replay_digests(e.digest for e in events1),
        rtmr2=replay_digests(e.digest for e in events2),
        events=[*events0, *events1, *events2],
        mrtd_variant=variant,
        acpi_source=acpi_digests.source,
        path="tdx-lite",
        inputs=inputs,
    )


# --------------------------------------------------------------------------------------------------------------------
# For the report


def lite_binding(vm_config: Mapping[str, Any]) -> dict[str, Any]:
    """What binds the measurement document to the os_image_hash, as far as it goes; never raises on bad input.

    `ok` is true only when steps 1-3 all hold; `error` names the first one that does not.
    """
    out: dict[str, Any] = {
        "present": vm_config.get("tdx_measurement") is not None,
        "os_image_hash": vm_config.get("os_image_hash") if isinstance(vm_config.get("os_image_hash"), str) else None,
        "checksum_file": None,
        "checksum_file_matches_os_image_hash": None,
        "measurement": None,
        "listed_measurement_sha256": None,
        "measurement_matches_listing": None,
        "ok": False,
        "error": None,
    }
    try:
        material = lite_material(vm_config)
        checksum_sha256 = hashlib.sha256(material.checksum_file).hexdigest()
        try:
            entries = [{"name": n, "sha256": h} for n, h in checksum_entries(material.checksum_file)]
        except InputError:
            entries = None
        out["checksum_file"] = {"size": len(material.checksum_file), "sha256": checksum_sha256,
                                "entries": entries[:MAX_SHOWN_ENTRIES] if entries is not None else None,
                                "entries_truncated": entries is not None and len(entries) > MAX_SHOWN_ENTRIES}
        out["measurement"] = {"filename": MEASUREMENT_FILENAME, "size": len(material.measurement),
                              "sha256": hashlib.sha256(material.measurement).hexdigest()}
        expected = os_image_hash(vm_config)
        out["checksum_file_matches_os_image_hash"] = checksum_sha256 == expected.hex()
        listed = checksum_entry(material.checksum_file)
        out["listed_measurement_sha256"] = listed.hex()
        out["measurement_matches_listing"] = listed.hex() == out["measurement"]["sha256"]
        verify_binding(vm_config, material)
        out["ok"] = True
    except InputError as exc:
        out["error"] = exc.describe()
    return out
