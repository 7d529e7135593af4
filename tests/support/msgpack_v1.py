"""dstack "V1" attestations for test input, written with the `msgpack` package (an encoder independent of ours).

The layout follows dstack-attest `v1.rs` as rmp_serde `to_vec_named` writes it: structs as maps keyed by field
name, adjacently tagged enums as {kind, data}, a plain Vec<u8> (quote, report_data) as an array of integers, the
serde_human_bytes fields (event digests and payloads) as bin. Events are stripped the way `v1.rs` strips them for
a TDX-lite ("measurement") config: ACPI DATA events keep their digest and lose their payload, runtime events the
reverse.
"""

from __future__ import annotations

from typing import Any

import msgpack
from dstack_verifier.eventlog import Event


def tdx_event(e: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"imr": e.imr, "event_type": e.event_type, "digest": e.digest or b"", "event": e.name,
                           "event_payload": e.payload}
    if e.version != 1:  # serde skips the field for V1 events
        out["version"] = e.version
    return out


def strip_v1(events: list[Event]) -> list[Event]:
    return [e.model_copy(update={"digest": None} if e.is_runtime else {"payload": b""}) for e in events]


def v1_document(quote: bytes, log: list[Event], runtime: list[Event], report_data: bytes, config: str, *,
                stack: str = "dstack", report_data_payload: str | None = None) -> dict[str, Any]:
    stack_data: dict[str, Any] = {
        "report_data": list(report_data),
        "runtime_events": [{"event": e.name, "payload": e.payload, "version": e.version} for e in runtime],
        "config": config,
    }
    if report_data_payload is not None:
        stack_data["report_data_payload"] = report_data_payload
    return {
        "version": 1,
        "platform": {"kind": "tdx", "data": {"quote": list(quote), "event_log": [tdx_event(e) for e in log]}},
        "stack": {"kind": stack, "data": stack_data},
    }


def pack(document: dict[str, Any]) -> bytes:
    return msgpack.packb(document, use_bin_type=True)


def encode_v1_attestation(quote: bytes, log: list[Event], runtime: list[Event], report_data: bytes, config: str,
                          **kw: Any) -> bytes:
    return pack(v1_document(quote, strip_v1(log), runtime, report_data, config, **kw))
