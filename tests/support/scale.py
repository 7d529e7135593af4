"""A small SCALE encoder for the dstack "V0" attestation blob (dstack-measurement.md §9.3), for building test input."""

from __future__ import annotations

import struct

from dstack_verifier.eventlog import Event


def scale_compact(n: int) -> bytes:
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return ((n << 2) | 1).to_bytes(2, "little")
    if n < 1 << 30:
        return ((n << 2) | 2).to_bytes(4, "little")
    raw = n.to_bytes((n.bit_length() + 7) // 8, "little")
    return bytes([((len(raw) - 4) << 2) | 3]) + raw


def scale_vec(data: bytes) -> bytes:
    return scale_compact(len(data)) + data


def scale_str(text: str) -> bytes:
    return scale_vec(text.encode("utf-8"))


def scale_tdx_event(e: Event) -> bytes:
    return (struct.pack("<II", e.imr, e.event_type) + scale_vec(e.digest or b"") + scale_str(e.name)
            + scale_vec(e.payload))


def encode_attestation(quote: bytes, log: list[Event], runtime: list[Event], report_data: bytes, config: str) -> bytes:
    """version 0, platform 0 (dstack-tdx), the quote, the event log as given, the runtime events as (name, payload),
    report_data (64 bytes, no length), the VM config text."""
    return (b"\x00\x00" + scale_vec(quote)
            + scale_compact(len(log)) + b"".join(scale_tdx_event(e) for e in log)
            + scale_compact(len(runtime)) + b"".join(scale_str(e.name) + scale_vec(e.payload) for e in runtime)
            + report_data + scale_str(config))
