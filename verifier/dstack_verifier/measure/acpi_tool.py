"""Adapter for the external `dstack-acpi-tables` tool: the three ACPI digests of RTMR0 from the VM configuration.

The tool is dstack's patched QEMU built to dump the ACPI tables blob to stdout and exit, without running a guest
(spec §3.3; I/O in external/acpi-tables.md). We build its command line from the vm_config exactly as dstack-mr does,
run it with a timeout, bound its output, and synthesise the RSDP and the table-loader commands from the tables blob.

It is optional: without it (or without the image's firmware and kernel it needs), `select_acpi` takes the digests
from the event log and says so, and the ACPI contents stay unverified.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..eventlog import Event
from .rtmr0 import AcpiDigests, acpi_from_event_log
from .tdvf import qemu_options

TOOL_NAME = "dstack-acpi-tables"
DEFAULT_TIMEOUT_SECONDS = 60.0
MAX_TABLES_BYTES = 4 << 20  # q35 tables are a few KiB; anything near this is not an ACPI dump
MAX_STDERR_SHOWN = 2000
MAX_DEVICES = 64  # GPUs, NVSwitches, NICs, volumes: bounds the command line a hostile vm_config can ask for
MAX_CPUS = 1024

# dstack-mr passes these as stand-ins for the disk images and the shared folder: only the device layout matters.
DUMMY_DISK = "/bin/sh"
SHARED_DIR = "/bin"
LOADER_BYTES = 4096
FILE_NAME_BYTES = 56
RSDP_FILE = "etc/acpi/rsdp"
TABLES_FILE = "etc/acpi/tables"
REQUIRED_TABLES = ("DSDT", "FACP", "APIC", "MCFG", "WAET", "RSDT")


# --------------------------------------------------------------------------------------------------------------------
# Finding the tool


def find_acpi_tool(configured: str | os.PathLike[str] | None = None) -> Path | None:
    """The configured path when it is an executable file, else `dstack-acpi-tables` on PATH, else None."""
    if configured:
        path = Path(configured)
        return path if path.is_file() and os.access(path, os.X_OK) else None
    found = shutil.which(TOOL_NAME)
    return Path(found) if found else None


# --------------------------------------------------------------------------------------------------------------------
# The command line


def _int(vm_config: Mapping[str, Any], key: str, default: int | None, lo: int, hi: int) -> int:
    value = vm_config.get(key)
    if value is None:
        if default is None:
            raise InputError("missing", source="vm_config", field=key)
        value = default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"expected an integer, got {type(value).__name__}", source="vm_config", field=key)
    if not lo <= value <= hi:
        raise InputError(f"{value} is outside {lo}..{hi}", source="vm_config", field=key)
    return value


def _bool(vm_config: Mapping[str, Any], key: str) -> bool:
    value = vm_config.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InputError(f"expected true or false, got {type(value).__name__}", source="vm_config", field=key)
    return value


def _disk(drive_id: str) -> list[str]:
    return ["-drive", f"file={DUMMY_DISK},if=none,id={drive_id},format=raw,readonly=on",
            "-device", f"virtio-blk-pci,drive={drive_id}"]


def qemu_arguments(vm_config: Mapping[str, Any], *, firmware: str, kernel: str) -> list[str]:
    """The tool's arguments for this VM, in dstack-mr's order (spec §3.3); the device order shapes the tables."""
    cpus = _int(vm_config, "cpu_count", None, 1, MAX_CPUS)
    memory = _int(vm_config, "memory_size", None, 1 << 20, (1 << 64) - 1)
    nics = _int(vm_config, "num_nics", 1, 0, MAX_DEVICES)
    volumes = _int(vm_config, "num_verity_volumes", 0, 0, MAX_DEVICES)
    gpus = _int(vm_config, "num_gpus", 0, 0, MAX_DEVICES)
    nvswitches = _int(vm_config, "num_nvswitches", 0, 0, MAX_DEVICES)
    hole64 = _int(vm_config, "pci_hole64_size", 0, 0, (1 << 64) - 1)
    hugepages = _bool(vm_config, "hugepages")
    if _bool(vm_config, "swtpm"):
        raise InputError("swtpm = true is not supported by dstack's measurement", source="vm_config", field="swtpm")
    share = vm_config.get("host_share_mode") or ""
    if share not in ("", "9p", "vvfat", "vhd"):
        raise InputError(f"unknown host_share_mode {str(share)[:24]!r}", source="vm_config", field="host_share_mode")
    options = qemu_options(vm_config)
    mem_mb = memory // (1 << 20)

    args = ["-cpu", "qemu64", "-smp", str(cpus), "-m", f"{mem_mb}M", "-nographic", "-nodefaults",
            "-serial", "stdio", "-bios", firmware, "-kernel", kernel, "-initrd", DUMMY_DISK, *_disk("hd1")]
    for i in range(volumes):
        args += _disk(f"vol{i}")
    for i in range(nics):
        args += ["-netdev", f"user,id=net{i}", "-device", f"virtio-net-pci,netdev=net{i}"]
    args += ["-object", "tdx-guest,id=tdx", "-device", "vhost-vsock-pci,guest-cid=3"]
    if share in ("", "9p"):
        args += ["-virtfs", f"local,path={SHARED_DIR},mount_tag=host-shared,readonly=on,security_model=none,"
                            "id=virtfs0"]
    else:
        args += _disk("hd2")
    args += _disk("hd0")  # root_verity is always true in the verifier, so the root disk is virtio-blk, not a cdrom
    machine = "q35,kernel-irqchip=split,confidential-guest-support=tdx,hpet=off,smm=off"
    args += ["-machine", f"{machine},pic={'on' if options.pic else 'off'}"]
    if hugepages:
        args += ["-numa", f"node,nodeid=0,cpus=0-{cpus - 1},memdev=mem0",
                 "-object", f"memory-backend-file,id=mem0,size={mem_mb}M,mem-path=/dev/hugepages,share=on,"
                            "prealloc=no,host-nodes=0,policy=bind"]
    port = 0
    if gpus:
        args += ["-object", "iommufd,id=iommufd0"]
        bus = "pcie.0"
        if hugepages:
            args += ["-device", "pxb-pcie,id=pcie.node0,bus=pcie.0,addr=10,numa_node=0,bus_nr=5"]
            bus = "pcie.node0"
        for _ in range(gpus):
            args += ["-device", f"pcie-root-port,id=pci.{port},bus={bus},chassis={port}",
                     "-device", f"vfio-pci,host=00:00.0,bus=pci.{port},iommufd=iommufd0"]
            port += 1
    for _ in range(nvswitches):
        args += ["-device", f"pcie-root-port,id=pci.{port},bus=pcie.0,chassis={port}",
                 "-device", f"vfio-pci,host=00:00.0,bus=pci.{port},iommufd=iommufd0"]
        port += 1
    if _bool(vm_config, "hotplug_off"):
        args += ["-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off"]
    if hole64:
        args += ["-global", f"q35-pcihost.pci-hole64-size=0x{hole64:x}"]
    return args


def tool_environment(vm_config: Mapping[str, Any]) -> dict[str, str]:
    """The variables the tool reads: QEMU_ACPI_COMPAT_VER selects the ACPI layout of that QEMU version."""
    return {"QEMU_ACPI_COMPAT_VER": qemu_options(vm_config).version_text}


# --------------------------------------------------------------------------------------------------------------------
# Parsing the output: the tables blob, and the RSDP and loader that go with it


@dataclass(frozen=True)
class AcpiTables:
    tables: bytes
    rsdp: bytes
    loader: bytes
    table_list: tuple[tuple[str, int, int], ...]  # (signature, offset, length) in blob order, for display

    def digests(self, note: str) -> AcpiDigests:
        sha384 = hashlib.sha384
        return AcpiDigests(loader=sha384(self.loader).digest(), rsdp=sha384(self.rsdp).digest(),
                           tables=sha384(self.tables).digest(), source="acpi-tool", note=note)


def list_tables(blob: bytes) -> list[tuple[str, int, int]]:
    """Walk the blob table by table (4-byte signature, u32 length); each table must lie inside the blob."""
    out: list[tuple[str, int, int]] = []
    offset = 0
    while offset < len(blob):
        if offset + 8 > len(blob):
            raise InputError(f"{len(blob) - offset} bytes left, too few for a table header", source=TOOL_NAME,
                             field="tables", offset=offset)
        signature = blob[offset:offset + 4].decode("latin-1")
        length = struct.unpack_from("<I", blob, offset + 4)[0]
        if length < 8 or offset + length > len(blob):
            raise InputError(f"table {signature!r} has length {length}, outside 8..{len(blob) - offset}",
                             source=TOOL_NAME, field="tables", offset=offset + 4)
        out.append((signature, offset, length))
        offset += length
    return out


def _name(file: str) -> bytes:
    return file.encode("ascii").ljust(FILE_NAME_BYTES, b"\0")


def _allocate(file: str, align: int, zone: int) -> bytes:
    return struct.pack("<I", 1) + _name(file) + struct.pack("<IB", align, zone) + bytes(63)


def _add_pointer(pointer_file: str, pointee_file: str, offset: int, size: int) -> bytes:
    names = _name(pointer_file) + _name(pointee_file)
    return struct.pack("<I", 2) + names + struct.pack("<IB", offset, size) + bytes(7)


def _add_checksum(file: str, result_offset: int, start: int, length: int) -> bytes:
    return struct.pack("<I", 3) + _name(file) + struct.pack("<III", result_offset, start, length) + bytes(56)


def synthesize(blob: bytes) -> AcpiTables:
    """RSDP and loader for a tables blob, as dstack-mr writes them (spec §3.3): 17 commands padded to 4096 bytes.

    The command sequence assumes QEMU's usual q35 set (FACS, DSDT, FACP, APIC, MCFG, WAET, RSDT with 4 entries);
    with extra tables QEMU's real loader differs, which shows up as an RTMR0 mismatch, not as an error here.
    """
    listed = list_tables(blob)
    first: dict[str, tuple[int, int]] = {}
    for signature, offset, length in listed:
        first.setdefault(signature, (offset, length))
    missing = [s for s in REQUIRED_TABLES if s not in first]
    if missing:
        raise InputError(f"the tables blob has no {', '.join(missing)} table", source=TOOL_NAME, field="tables")
    dsdt, facp, apic, mcfg, waet, rsdt = (first[s] for s in REQUIRED_TABLES)
    rsdp = b"RSD PTR " + b"\0" + b"BOCHS " + b"\0" + struct.pack("<I", rsdt[0])

    def checksum(table: tuple[int, int]) -> bytes:
        return _add_checksum(TABLES_FILE, table[0] + 9, table[0], table[1])  # the checksum byte is at offset 9

    def pointer(table: tuple[int, int], field: int, size: int) -> bytes:
        return _add_pointer(TABLES_FILE, TABLES_FILE, table[0] + field, size)

    commands = [
        _allocate(RSDP_FILE, 16, 2),  # FSEG
        _allocate(TABLES_FILE, 64, 1),  # HIGH
        checksum(dsdt),
        pointer(facp, 36, 4), pointer(facp, 40, 4), pointer(facp, 140, 8),  # FACS, DSDT, X_DSDT
        checksum(facp), checksum(apic), checksum(mcfg), checksum(waet),
        pointer(rsdt, 36, 4), pointer(rsdt, 40, 4), pointer(rsdt, 44, 4), pointer(rsdt, 48, 4),
        checksum(rsdt),
        _add_pointer(RSDP_FILE, TABLES_FILE, 16, 4),
        _add_checksum(RSDP_FILE, 8, 0, 20),
    ]
    loader = b"".join(commands).ljust(LOADER_BYTES, b"\0")
    return AcpiTables(tables=blob, rsdp=rsdp, loader=loader, table_list=tuple(listed))


# --------------------------------------------------------------------------------------------------------------------
# Running it


def run_acpi_tool(tool: str | os.PathLike[str], vm_config: Mapping[str, Any], *, firmware: str | os.PathLike[str],
                  kernel: str | os.PathLike[str], timeout: float = DEFAULT_TIMEOUT_SECONDS) -> AcpiTables:
    """Run the tool for this VM and return its tables with the synthesised RSDP and loader.

    stdout and stderr go to temporary files, so a runaway tool costs disk, not memory, and the size is checked
    before anything is read. Failures (timeout, exit status, oversized or malformed output) are InputErrors.
    """
    args = [os.fspath(tool), *qemu_arguments(vm_config, firmware=os.fspath(firmware), kernel=os.fspath(kernel))]
    env = {**os.environ, **tool_environment(vm_config)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            result = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                                    timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise InputError(f"did not finish within {timeout:g} s", source=TOOL_NAME) from None
        except OSError as exc:
            raise InputError(f"could not be started: {exc.strerror or exc}", source=TOOL_NAME) from None
        size = out.seek(0, os.SEEK_END)
        err.seek(0)
        stderr = err.read(MAX_STDERR_SHOWN).decode("utf-8", "replace").strip()
        if result.returncode != 0:
            detail = f": {stderr}" if stderr else ""
            raise InputError(f"exited with status {result.returncode}{detail}", source=TOOL_NAME)
        if size == 0 or size > MAX_TABLES_BYTES:
            raise InputError(f"wrote {size} bytes of tables; expected 1..{MAX_TABLES_BYTES}", source=TOOL_NAME,
                             field="tables")
        out.seek(0)
        blob = out.read()
    return synthesize(blob)


def acpi_from_tool(tool: str | os.PathLike[str], vm_config: Mapping[str, Any], *, firmware: str | os.PathLike[str],
                   kernel: str | os.PathLike[str], timeout: float = DEFAULT_TIMEOUT_SECONDS) -> AcpiDigests:
    tables = run_acpi_tool(tool, vm_config, firmware=firmware, kernel=kernel, timeout=timeout)
    return tables.digests(f"ACPI tables regenerated by {TOOL_NAME} ({os.fspath(tool)}) from the VM configuration")


def select_acpi(vm_config: Mapping[str, Any], events: Sequence[Event], *,
                tool: str | os.PathLike[str] | None = None, firmware: str | os.PathLike[str] | None = None,
                kernel: str | os.PathLike[str] | None = None,
                timeout: float = DEFAULT_TIMEOUT_SECONDS) -> AcpiDigests:
    """The tool's digests when it can run, else the event log's, with a note saying which and why.

    A tool that is present but fails falls back too (its error goes into the note): the event-log source is what
    dstack itself uses for TDX-lite, so a broken optional tool must not turn into a failed verification.
    """
    path = find_acpi_tool(tool)
    if path is None:
        why = f"{TOOL_NAME} not found" + (f" at {os.fspath(tool)}" if tool else " on PATH")
    elif firmware is None or kernel is None:
        why = f"{TOOL_NAME} needs the image's ovmf.fd and bzImage, which are not available"
    else:
        try:
            return acpi_from_tool(path, vm_config, firmware=firmware, kernel=kernel, timeout=timeout)
        except InputError as exc:
            why = f"{TOOL_NAME} failed ({exc.describe()})"
    fallback = acpi_from_event_log(events)
    return AcpiDigests(loader=fallback.loader, rsdp=fallback.rsdp, tables=fallback.tables, source=fallback.source,
                       note=f"{why}; {fallback.note}", log_indices=fallback.log_indices)
