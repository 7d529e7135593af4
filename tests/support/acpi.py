"""ACPI test material: a small tables blob shaped like QEMU's, and a stand-in `dstack-acpi-tables` executable."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
from dstack_verifier.measure.acpi_tool import TOOL_NAME


def acpi_table(signature: bytes, length: int) -> bytes:
    return signature + struct.pack("<I", length) + bytes(length - 8)


ACPI_TABLES = b"".join(acpi_table(s, n) for s, n in [(b"FACS", 64), (b"DSDT", 200), (b"FACP", 244), (b"APIC", 120),
                                                     (b"MCFG", 60), (b"WAET", 40), (b"RSDT", 52)])
RSDT_AT = 64 + 200 + 244 + 120 + 60 + 40

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="the fake tool is a POSIX script")


def fake_acpi_tool(directory: Path, body: str) -> Path:
    """An executable named like the real tool, running `body` (Python, with os, sys, json and time imported)."""
    tool = directory / TOOL_NAME
    tool.write_text(f"#!{sys.executable}\nimport os, sys, json, time\n{body}\n")
    tool.chmod(0o755)
    return tool


def printing_acpi_tool(directory: Path, tables: bytes = ACPI_TABLES) -> Path:
    """A tool that prints `tables`, as the real one prints the tables QEMU builds."""
    blob = directory / "acpi-tables.bin"
    blob.write_bytes(tables)
    return fake_acpi_tool(directory, f"sys.stdout.buffer.write(open({str(blob)!r}, 'rb').read())")
