"""dstack "V1" (MessagePack) attestations: decoded from blobs written by the independent `msgpack` encoder.
(Byte mutations of a genuine V1 blob are fuzzed with the V0 ones, in test_eventlog.)

The content is the real TDX-lite fixture (dstack-measurement §9.2), laid out as dstack-attest `v1.rs` writes it;
the V1 decoding must give what the V0 decoding of the same content gives.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import msgpack
import pytest
from dstack_verifier.attestation_v1 import MAX_DEPTH, MAX_SKIPPED
from dstack_verifier.errors import InputError
from dstack_verifier.eventlog import (
    Attestation,
    Event,
    check_replay,
    check_rtmr3_payloads,
    decode_attestation,
    extract_app_info,
)
from dstack_verifier.evidence import detect
from dstack_verifier.measure.rtmr0 import acpi_from_event_log
from dstack_verifier.model import CheckStatus
from dstack_verifier.quote.structure import parse_quote
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.msgpack_v1 import encode_v1_attestation, pack, strip_v1, v1_document
from tests.verifier.test_eventlog import encode_attestation, lite_attestation_parts


def v1_parts() -> dict[str, Any]:
    return lite_attestation_parts()


def v1_blob(**kw: Any) -> bytes:
    p = v1_parts()
    return encode_v1_attestation(p["quote"], p["stripped"], p["runtime"], p["report_data"], p["config"], **kw)


def v1_doc() -> dict[str, Any]:
    p = v1_parts()
    return v1_document(p["quote"], strip_v1(p["stripped"]), p["runtime"], p["report_data"], p["config"])


def decode_doc(doc: Any) -> Attestation:
    return decode_attestation(pack(doc), "att")


def fails(doc_or_blob: Any, match: str) -> InputError:
    blob = doc_or_blob if isinstance(doc_or_blob, bytes) else pack(doc_or_blob)
    with pytest.raises(InputError, match=match) as info:
        decode_attestation(blob, "att")
    assert info.value.source == "att"
    return info.value


def test_v1_gives_what_v0_gives() -> None:
    parts = v1_parts()
    v0 = decode_attestation(encode_attestation(parts), "att")
    v1 = decode_attestation(v1_blob(), "att")
    assert v1.format == "msgpack-v1" and v0.format == "scale-v0"
    assert (v1.quote, v1.report_data, v1.config, v1.runtime_events) == (v0.quote, v0.report_data, v0.config,
                                                                        v0.runtime_events)
    assert v1.stack == "dstack" and v1.report_data_payload is None
    # v1.rs strips the kept ACPI DATA events of their payload: the digests, what RTMR0 needs, are the same.
    assert [(e.imr, e.event_type, e.name, e.digest) for e in v1.event_log] == [
        (e.imr, e.event_type, e.name, e.digest) for e in v0.event_log]
    assert all(not e.payload for e in v1.event_log if e.imr == 0)
    assert acpi_from_event_log(v1.event_log).tables == acpi_from_event_log(v0.event_log).tables
    # report_data sits in the blob where its error offsets point: an array header, then one byte per value < 128.
    blob = v1_blob()
    assert blob[v1.report_data_offset] == 0xDC  # array16 of 64 integers
    quote = parse_quote(v1.quote)
    assert check_rtmr3_payloads(v1.runtime_events, quote, "app").status is CheckStatus.PASS
    assert check_replay(v1.event_log, quote, "app", registers=(3,)).status is CheckStatus.PASS
    assert extract_app_info(v1.runtime_events) == extract_app_info(v0.runtime_events)


def test_any_key_order_unknown_keys_and_both_byte_forms() -> None:
    expected = decode_doc(v1_doc())

    def reverse(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: reverse(v) for k, v in reversed(list(value.items()))}
        if isinstance(value, list) and value and not isinstance(value[0], int):
            return [reverse(v) for v in value]
        return value

    offset = {"report_data_offset"}  # where report_data sits moves with the key order
    assert decode_doc(reverse(v1_doc())).model_dump(exclude=offset) == expected.model_dump(exclude=offset)
    doc = v1_doc()
    doc["future"] = {"nested": [1, -2, 3.5, None, True, b"x", "s", msgpack.ExtType(5, b"ext")]}
    doc["platform"]["data"]["event_log"][0]["hash_input"] = "00ff"
    doc["stack"]["data"]["report_data"] = bytes(doc["stack"]["data"]["report_data"])  # bin, as serde_bytes writes
    doc["platform"]["data"]["quote"] = bytes(doc["platform"]["data"]["quote"])
    got = decode_doc(doc)
    assert got.quote == expected.quote and got.report_data == expected.report_data
    assert got.event_log[0].preimage == b"\x00\xff"
    # Integers in wider forms than rmp writes them still read (a byte array item as uint16, a version as uint64).
    blob = pack(v1_doc()).replace(b"\xa7version\x01", b"\xa7version\xcf" + (1).to_bytes(8, "big"), 1)
    quote_at = blob.index(b"\xdc\x13\x8e\x04")  # the quote: 5006 items, the first the version 4
    blob = blob[:quote_at] + b"\xdc\x13\x8e\xcd\x00\x04" + blob[quote_at + 4:]
    assert decode_attestation(blob, "att").model_dump(exclude=offset) == expected.model_dump(exclude=offset)


def test_v2_events_and_dstack_pod() -> None:
    doc = v1_doc()
    for item in doc["stack"]["data"]["runtime_events"]:
        item["version"] = 2
    doc["stack"]["kind"] = "dstack-pod"
    doc["stack"]["data"]["report_data_payload"] = '{"hello":"world"}'
    att = decode_doc(doc)
    assert all(e.version == 2 for e in att.runtime_events)
    assert att.stack == "dstack-pod" and att.report_data_payload == '{"hello":"world"}'
    del doc["stack"]["data"]["report_data_payload"]
    assert fails(doc, "missing").field == "attestation.stack.data.report_data_payload"


def test_errors_name_field_and_offset() -> None:
    doc = v1_doc()
    doc["version"] = 2
    assert "version 2" in str(fails(doc, "expected 1"))
    for kind in ("sev-snp", "gcp-tdx", "nitro-enclave"):
        doc = v1_doc()
        doc["platform"]["kind"] = kind
        error = fails(doc, f"platform '{kind}' is not supported; only tdx")
        assert error.field == "attestation.platform.kind" and pack(doc)[error.offset] == 0xA0 + len(kind)
    doc = v1_doc()
    doc["platform"] = {"kind": "gcp-tdx"}  # a unit variant, as some dstack versions have it: no data at all
    fails(doc, "'gcp-tdx' is not supported")
    doc = v1_doc()
    doc["stack"]["kind"] = "other"
    fails(doc, "only dstack")
    doc = v1_doc()
    del doc["stack"]["data"]["config"]
    assert fails(doc, "missing").field == "attestation.stack.data.config"
    doc = v1_doc()
    del doc["platform"]["kind"]
    assert fails(doc, "missing").field == "attestation.platform.kind"
    doc = v1_doc()
    doc["stack"]["data"]["report_data"] = doc["stack"]["data"]["report_data"][:63]
    error = fails(doc, "63 bytes, not 64")
    assert error.field == "attestation.stack.data.report_data"
    doc = v1_doc()
    doc["stack"]["data"]["runtime_events"][2]["payload"] = "text"
    error = fails(doc, "expected bytes .* found a string")
    assert error.field == "attestation.stack.data.runtime_events[2].payload"
    blob = pack(doc)
    assert blob[error.offset] == 0xA4  # the fixstr "text" itself
    doc = v1_doc()
    doc["platform"]["data"]["quote"][10] = 256
    assert fails(doc, "out of range 0..255").field == "attestation.platform.data.quote[10]"
    doc = v1_doc()
    doc["platform"]["data"]["event_log"][0]["imr"] = 4
    assert fails(doc, "out of range 0..3").field == "attestation.platform.data.event_log[0].imr"
    doc = v1_doc()
    doc["platform"]["data"]["event_log"][0]["digest"] = bytes(49)
    assert fails(doc, "more than the 48").field == "attestation.platform.data.event_log[0].digest"
    doc = v1_doc()
    doc["platform"]["data"]["event_log"][0]["hash_input"] = "0zz1"
    error = fails(doc, "hex digits")
    assert error.field == "attestation.platform.data.event_log[0].hash_input" and pack(doc)[error.offset] == 0xA4
    doc["platform"]["data"]["event_log"][0]["hash_input"] = None  # nil reads as absent, as serde reads it
    assert decode_doc(doc).event_log[0].preimage is None
    doc = v1_doc()
    doc["stack"]["data"]["runtime_events"][0]["version"] = 3
    fails(doc, "event log version 3")
    doc = v1_doc()
    doc["stack"]["data"]["config"] = b"\xff"
    fails(doc, "expected a string, found binary data")
    blob = v1_blob()
    fails(blob + b"\x00", "1 trailing bytes")
    # A duplicate key (msgpack's encoder cannot write one: splice it in).
    dup = bytes([blob[0] + 1]) + blob[1:] + pack({"version": 1})[1:]
    assert fails(dup, "given twice").field == "attestation.version"
    fails(b"\x81\xa7version\xc1", "0xc1")
    fails(b"\x81\xa1x\xc1", "0xc1")
    # An unknown key's value is still bounded: nesting, and counts larger than what is left.
    deep = b"\x81\xa1x" + b"\x91" * (MAX_DEPTH + 5) + b"\x00"
    fails(deep, "nested more than")
    fails(b"\x81\xa1x\xdd\x7f\xff\xff\xff", "truncated: 2147483647 items")
    fails(b"\x81\xa1x\xdb\x7f\xff\xff\xff", "truncated")
    fails(b"\xdf\x7f\xff\xff\xff", "more than the 64 allowed")
    doc = v1_doc()
    doc["future"] = [None] * (MAX_SKIPPED + 1)  # the skipping of unknown values is bounded too
    fails(doc, f"more than {MAX_SKIPPED} values")


def test_every_truncation_is_an_input_error() -> None:
    blob = v1_blob()
    for cut in range(1, len(blob)):
        with pytest.raises(InputError) as info:
            decode_attestation(blob[:cut], "att")
        assert info.value.field and info.value.field.startswith("attestation"), cut
        assert info.value.offset is not None and info.value.offset <= cut


def test_attestation_json_evidence_accepts_v1() -> None:
    blob = v1_blob()
    ev = detect(json.dumps({"attestation": blob.hex()}).encode(), "att.json")
    v0 = detect(json.dumps({"attestation": encode_attestation(v1_parts()).hex()}).encode(), "att.json")
    assert ev.kind == v0.kind == "attestation"
    assert ev.quote == v0.quote and ev.vm_config == v0.vm_config and ev.log_stripped
    assert [(e.imr, e.name, e.digest) for e in ev.events or []] == [(e.imr, e.name, e.digest) for e in v0.events or []]
    # A report_data other than the quote's is refused, naming where it sits.
    doc = v1_doc()
    doc["stack"]["data"]["report_data"][0] ^= 1
    with pytest.raises(InputError, match="differs from the quote's") as info:
        detect(json.dumps({"attestation": pack(doc).hex()}).encode(), "att.json")
    assert info.value.field == "attestation.report_data" and pack(doc)[info.value.offset] == 0xDC


@pytest.fixture(scope="module")
def genuine_doc() -> dict[str, Any]:
    return v1_doc()


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(value=st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.binary(max_size=8) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20))
def test_fuzz_v1_documents(genuine_doc: dict[str, Any], value: Any) -> None:
    """Any MessagePack value, alone or in place of a part of a genuine attestation: an attestation or InputError."""
    doc = copy.deepcopy(genuine_doc)
    doc["stack"]["data"]["runtime_events"][0] = value
    for candidate in (value, doc, {"version": 1, "platform": value, "stack": value}):
        try:
            att = decode_doc(candidate)
        except InputError:
            continue
        assert isinstance(att, Attestation) and all(isinstance(e, Event) for e in att.event_log)
