"""Event logs: parsing (JSON forms, CCEL, SCALE attestation), RTMR replay, RTMR3 payload binding, app info.

Real data: the dstack TDX-lite GetQuote fixture (spec dstack-measurement §9.2) and the Trust Center dataset1 entities.
Every digest and payload byte a check rests on is changed once, and the check resting on it must fail naming it.
"""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
from functools import cache
from typing import Any

import pytest
from dstack_verifier.errors import InputError
from dstack_verifier.eventlog import (
    MAX_EVENTS,
    MAX_LOG_BYTES,
    MAX_PAYLOAD_BYTES,
    RUNTIME_EVENT_TYPE,
    Attestation,
    Event,
    PreimageError,
    check_replay,
    check_rtmr3_payloads,
    decode_attestation,
    decode_key_provider,
    derived_values,
    extract_app_info,
    parse_ccel,
    parse_event_log,
    replay,
    runtime_event_digest,
    v2_preimages,
)
from dstack_verifier.jsontext import MAX_JSON_DEPTH, json_too_deep
from dstack_verifier.model import Check, CheckStatus
from dstack_verifier.quote.structure import Quote, parse_quote
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.fixtures import fixture_path
from tests.support.msgpack_v1 import encode_v1_attestation
from tests.support.scale import encode_attestation as encode
from tests.support.scale import scale_compact, scale_str, scale_vec

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# spec §9.2: the replay of tdx-lite-getquote.json equals these quote registers.
LITE_RTMRS = {
    0: "f8438db36b96f85d8752ff7f24a89ec05c79ec9eda2ba732c897fb970ca429365b7471b1c054cb84f17b1c2b23ba6640",
    1: "2023546e7f3b9d1228e274f70c44d481162540f8452544520a796a52f06879709b81a824a26792a7822327504b0d2aee",
    2: "4c1b739ed451a637b0f82642e48a5ea83925d23633c72e7385c8e9aca4175e133ed1625b7d92eb39edf509c27ff392dc",
    3: "6f24c170d0fd63fc2b1b53202eea47b013978437fa6982cf5e0438ff95c208994aaa0f4ebab2e3a66824b5b56869137e",
}
LITE_MRTD = "fd685522ce791dfef67414614eb07d03fc07a32c5a66f36288b329dab92b724b1564c73d436ffb9ea84488c51ac5a1c5"
ACPI_NAMES = ("acpi-loader", "acpi-rsdp", "acpi-tables")


# --------------------------------------------------------------------------------------------------------------------
# Fixtures and helpers


@cache
def _lite_doc() -> dict[str, Any]:
    return json.loads(fixture_path("dstack", "tdx-lite-getquote.json").read_text())


def lite() -> tuple[dict[str, Any], Quote, list[Event]]:
    doc = _lite_doc()
    return doc, parse_quote(bytes.fromhex(doc["quote"])), parse_event_log(doc["event_log"], "lite")


@cache
def _dataset_doc(name: str) -> dict[str, Any]:
    return json.loads(fixture_path("trust-center", f"dataset1-{name}.json").read_text())


def dataset(name: str) -> tuple[dict[str, Any], Quote, list[Event]]:
    doc = _dataset_doc(name)
    quote = parse_quote(bytes.fromhex(doc["quote_hex"].removeprefix("0x")))
    return doc, quote, parse_event_log(doc["eventlog"], f"dataset1-{name}", field="eventlog")


def quote_with(quote: Quote, field: str, value: bytes) -> Quote:
    """The same quote with one body field replaced (parsing does not check signatures)."""
    span = next(s for s in quote.spans if s.name == f"body.{field}")
    assert span.end - span.start == len(value)
    return parse_quote(quote.raw[: span.start] + value + quote.raw[span.end :])


def flip(data: bytes, pos: int) -> bytes:
    return data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1 :]


def runtime(name: str, payload: bytes = b"", **kw: Any) -> Event:
    return Event(imr=3, event_type=RUNTIME_EVENT_TYPE, name=name, payload=payload, **kw)


# --------------------------------------------------------------------------------------------------------------------
# Digest rules: spec test vectors


def test_v1_test_vectors() -> None:
    assert runtime_event_digest(runtime("system-preparing")).hex() == (
        "f9974020ef507068183313d0ca808e0d1ca9b2d1ad0c61f5784e7157c362c06536f5ddacdad4451693f48fcc72fff624")
    assert runtime_event_digest(runtime("boot-mr-done")).hex() == (
        "98bd7e6bd3952720b65027fd494834045d06b4a714bf737a06b874638b3ea00ff402f7f583e3e3b05e921c8570433ac6")
    # the rule itself: u32le(type) ":" name ":" payload
    event = runtime("app-id", bytes.fromhex("deadbeef"))
    expected = hashlib.sha384(b"\x01\x00\x00\x08:app-id:\xde\xad\xbe\xef").digest()
    assert runtime_event_digest(event) == expected


def test_v2_test_vector_and_preimage() -> None:
    event = runtime("compose-hash", bytes.fromhex("abcd"), version=2)
    canonical = b'{"name":"compose-hash","payload":"abcd","type":134217729}'
    assert v2_preimages(event)[0] == canonical
    assert runtime_event_digest(event).hex() == (
        "9dde1673f544faa94b921825209593ddde08d0baf9cd6990175dffaf3081f1bb10311d56de189491feb33842a050ad7b")
    # a correct preimage is accepted; one that hashes elsewhere or says something else is refused
    assert runtime_event_digest(event.model_copy(update={"preimage": canonical})) == hashlib.sha384(canonical).digest()
    with pytest.raises(PreimageError):
        runtime_event_digest(event.model_copy(update={"preimage": canonical.replace(b"abcd", b"abce")}))
    with pytest.raises(PreimageError):
        runtime_event_digest(event.model_copy(update={"preimage": canonical + b" "}))


def test_v2_later_canonical_form_is_selected_by_preimage_or_digest() -> None:
    event = runtime("compose-hash", bytes.fromhex("abcd"), version=2)
    later = b'{"event":"compose-hash","event_type":134217729,"payload":"abcd","version":2}'
    assert v2_preimages(event)[1] == later
    digest = hashlib.sha384(later).digest()
    assert runtime_event_digest(event.model_copy(update={"preimage": later})) == digest
    assert runtime_event_digest(event.model_copy(update={"digest": digest})) == digest
    # a digest field matching neither form does not steer anything: the spec form is used
    assert runtime_event_digest(event.model_copy(update={"digest": bytes(48)})) == hashlib.sha384(
        v2_preimages(event)[0]).digest()


def test_v2_canonical_json_escapes_like_jcs() -> None:
    event = runtime('a"\\\b\f\n\r\t\x01é🦀', b"\xff", version=2)
    assert v2_preimages(event)[0] == ('{"name":"a\\"\\\\\\b\\f\\n\\r\\t\\u0001é🦀","payload":"ff",'
                                      '"type":134217729}').encode()


def test_v1_preimage_is_checked_when_given() -> None:
    event = runtime("app-id", b"\x01")
    good = b"\x01\x00\x00\x08:app-id:\x01"
    assert runtime_event_digest(event.model_copy(update={"preimage": good})) == hashlib.sha384(good).digest()
    with pytest.raises(PreimageError):
        runtime_event_digest(event.model_copy(update={"preimage": good + b"x"}))


# --------------------------------------------------------------------------------------------------------------------
# The real fixtures replay


def test_lite_fixture_parses_as_spec_describes() -> None:
    _, quote, events = lite()
    assert len(events) == 29
    assert sum(e.imr < 3 for e in events) == 20
    runtime_events = [e for e in events if e.is_runtime]
    assert [e.name for e in runtime_events] == ["system-preparing", "app-id", "compose-hash", "instance-id",
                                                "boot-mr-done", "os-image-hash", "key-provider", "storage-fs",
                                                "system-ready"]
    assert all(e.digest is None for e in runtime_events)  # served logs blank runtime digests
    assert [e.name for e in events[8:11]] == list(ACPI_NAMES)
    assert all(e.payload == b"ACPI DATA" for e in events[8:11])
    assert quote.body["mrtd"].hex() == LITE_MRTD


def test_lite_fixture_replays_to_the_quote() -> None:
    _, quote, events = lite()
    registers = replay(events)
    assert {i: registers[i].hex() for i in range(4)} == LITE_RTMRS
    for i in range(4):
        assert registers[i] == quote.body[f"rtmr{i}"]
    check = check_replay(events, quote, "app")
    assert check.status is CheckStatus.PASS, check.summary
    assert check.id == "eventlog.replay" and check.phase == "hardware" and check.anchor == "quote"
    assert check.details["registers"]["rtmr3"] == {"events": 9, "replayed": LITE_RTMRS[3], "quoted": LITE_RTMRS[3],
                                                   "match": True}
    assert [check.details["registers"][f"rtmr{i}"]["events"] for i in range(4)] == [13, 5, 2, 9]
    payloads = check_rtmr3_payloads(events, quote, "app")
    assert payloads.status is CheckStatus.PASS, payloads.summary
    rows = payloads.details["events"]
    assert [r["index"] for r in rows] == list(range(20, 29))
    assert rows[0]["recomputed_digest"] == runtime_event_digest(events[20]).hex()
    assert rows[6]["decoded"]["name"] == "kms"
    assert rows[7]["decoded"] == "zfs"
    assert all(r["digest_field"] is None and r["digest_field_matches"] is None for r in rows)
    json.dumps(payloads.details)  # details are JSON-ready
    json.dumps(check.details)


def test_lite_app_info_and_derived_values() -> None:
    _, quote, events = lite()
    info = extract_app_info(events)
    assert info.app_id.hex() == "86b0e55f2fa8e4fb69d890f14f54d5612707646e"  # type: ignore[union-attr]
    assert info.compose_hash.hex().startswith("86b0e55f")  # type: ignore[union-attr]
    assert info.compose_hash.hex().endswith("77caa9")  # type: ignore[union-attr]
    assert info.instance_id.hex() == "050bf89570575fe8fab4cb8f0a62a9e64efe8ead"  # type: ignore[union-attr]
    assert info.os_image_hash.hex().startswith("07a2388c")  # type: ignore[union-attr]
    assert info.key_provider is not None and info.key_provider.name == "kms"
    assert info.key_provider.id.startswith("3059301306072a8648ce3d0201")
    assert info.boot_mr_done and info.system_ready and info.storage_fs == "zfs"
    assert info.init_script_hashes == [] and info.gpu_policy_hash is None
    assert [(o.index, o.name) for o in info.other_events] == [(20, "system-preparing")]
    assert info.event_indices["compose_hash"] == 22
    json.dumps(info.summary())
    derived = derived_values(quote, info, None)
    assert derived["mr_system"] == "118f754a080ecb8527df65656ee4e7e97b891cf488ad6a38886ff0dbca0c8f70"
    assert derived["mr_aggregated"] == "c758fa624b62536ca77504c4c52745e70880220a178a615a859c52f8b101d2ee"
    assert derived["mr_aggregated_includes_config"] is True  # mr_config_id is non-zero in the fixture
    assert derived["mr_key_provider"] == hashlib.sha256(info.key_provider_info).hexdigest()
    assert derived["device_id"] is None
    assert derived_values(quote, info, b"\x01" * 16)["device_id"] == hashlib.sha256(b"\x01" * 16).hexdigest()


def test_derived_values_without_config_or_key_provider() -> None:
    _, quote, events = lite()
    zeroed = quote_with(quote, "mrconfig", bytes(48))
    info = extract_app_info([e for e in events if e.name != "key-provider"])
    derived = derived_values(zeroed, info, None)
    b = zeroed.body
    assert derived["mr_aggregated_includes_config"] is False
    assert derived["mr_aggregated"] == hashlib.sha256(
        b["mrtd"] + b["rtmr0"] + b["rtmr1"] + b["rtmr2"] + b["rtmr3"]).hexdigest()
    assert derived["mr_key_provider"] == "00" * 32
    assert derived["mr_system"] == hashlib.sha256(
        b["mrtd"] + b["rtmr0"] + b["rtmr1"] + b["rtmr2"] + bytes(32)).hexdigest()


@pytest.mark.parametrize("name", ["app", "gateway", "kms"])
def test_dataset1_replays_and_binds(name: str) -> None:
    doc, quote, events = dataset(name)
    assert len(events) == (27 if name == "kms" else 29)
    replay_check = check_replay(events, quote, name)  # type: ignore[arg-type]
    assert replay_check.status is CheckStatus.PASS, replay_check.summary
    payloads = check_rtmr3_payloads(events, quote, name)  # type: ignore[arg-type]
    assert payloads.status is CheckStatus.PASS, payloads.summary
    # these logs keep RTMR3 digest fields: each equals the recomputed digest
    assert all(r["digest_field_matches"] is True for r in payloads.details["events"])
    info = extract_app_info(events)
    assert info.compose_hash is not None
    assert info.compose_hash.hex() == doc["td_report"]["mr_config_id"][2:66]
    if name == "app":
        fields = doc["main_fields"]
        assert info.app_id.hex() == fields["app_id"]  # type: ignore[union-attr]
        assert info.instance_id.hex() == fields["instance_id"]  # type: ignore[union-attr]
        assert info.os_image_hash.hex() == fields["os_image_hash"]  # type: ignore[union-attr]
        assert derived_values(quote, info, None)["mr_aggregated"] == fields["mr_aggregated"]
    if name == "gateway":
        assert info.instance_id == b""  # no_instance_id: the event is there, empty
    if name == "kms":
        assert info.key_provider is not None and info.key_provider.name == "local-sgx"


def test_gateway_mr_kms_event_is_the_kms_mr_aggregated() -> None:
    """Surprising but consistent: the gateway's historic `mr-kms` event carries the KMS's mr_aggregated."""
    _, kms_quote, kms_events = dataset("kms")
    _, _, gw_events = dataset("gateway")
    kms_aggregated = derived_values(kms_quote, extract_app_info(kms_events), None)["mr_aggregated"]
    mr_kms = next(e for e in gw_events if e.name == "mr-kms")
    assert mr_kms.payload.hex() == kms_aggregated


# --------------------------------------------------------------------------------------------------------------------
# Every byte a check rests on


def _rtmr3_indices(events: list[Event]) -> list[int]:
    return [i for i, e in enumerate(events) if e.imr == 3]


@pytest.mark.parametrize("source", ["lite", "dataset1-app"])
def test_every_rtmr3_payload_byte_is_bound(source: str) -> None:
    _, quote, events = lite() if source == "lite" else dataset("app")
    for index in _rtmr3_indices(events):
        event = events[index]
        variants = [flip(event.payload, pos) for pos in range(len(event.payload))] or [b"\x00"]
        for payload in variants:
            changed = [*events[:index], event.model_copy(update={"payload": payload}), *events[index + 1 :]]
            check = check_rtmr3_payloads(changed, quote, "app")
            assert check.status is CheckStatus.FAIL
            if event.digest is not None:  # the kept digest field names the altered event
                assert check.summary.startswith(f"RTMR3 event {index} ({event.name}): digest field")
            else:  # a served log without digests: the replay names the register
                assert check.summary.startswith("RTMR3 replayed from the recomputed digests is")
            assert check.details["match"] is False
            # replay recomputes runtime digests too, so it fails on RTMR3 (never trusting the kept digest field)
            replay_check = check_replay(changed, quote, "app")
            assert replay_check.status is CheckStatus.FAIL
            assert replay_check.summary.startswith("Event log does not replay to RTMR3:")


def test_renaming_an_rtmr3_event_fails() -> None:
    _, quote, events = dataset("app")
    index = next(i for i, e in enumerate(events) if e.name == "compose-hash")
    changed = [*events[:index], events[index].model_copy(update={"name": "compose-hasH"}), *events[index + 1 :]]
    check = check_rtmr3_payloads(changed, quote, "app")
    assert check.status is CheckStatus.FAIL and f"RTMR3 event {index} (compose-hasH)" in check.summary


def test_every_rtmr3_digest_field_byte_is_checked() -> None:
    _, quote, events = dataset("app")
    for index in _rtmr3_indices(events):
        event = events[index]
        assert event.digest is not None
        for pos in range(len(event.digest)):
            changed = [*events[:index], event.model_copy(update={"digest": flip(event.digest, pos)}),
                       *events[index + 1 :]]
            check = check_rtmr3_payloads(changed, quote, "app")
            assert check.status is CheckStatus.FAIL
            assert check.summary.startswith(f"RTMR3 event {index} ({event.name}): digest field")
            # the replay never used that field, so it still passes
            assert check_replay(changed, quote, "app").status is CheckStatus.PASS


@pytest.mark.parametrize("source", ["lite", "dataset1-gateway"])
def test_every_firmware_digest_byte_is_bound(source: str) -> None:
    _, quote, events = lite() if source == "lite" else dataset("gateway")
    for index, event in enumerate(events):
        if event.imr == 3:
            continue
        assert event.digest is not None
        for pos in range(len(event.digest)):
            changed = [*events[:index], event.model_copy(update={"digest": flip(event.digest, pos)}),
                       *events[index + 1 :]]
            check = check_replay(changed, quote, "app")
            assert check.status is CheckStatus.FAIL
            register = f"rtmr{event.imr}"
            detail = check.details["registers"][register]
            assert check.summary == (f"Event log does not replay to RTMR{event.imr}: replayed {detail['replayed']}, "
                                     f"quoted {detail['quoted']}")
            assert check.details["mismatches"] == [register]
            assert detail["quoted"] == quote.body[register].hex() and detail["match"] is False
        # RTMR3 does not rest on firmware events
    assert check_rtmr3_payloads(events, quote, "app").status is CheckStatus.PASS


def test_every_quote_rtmr_byte_is_compared() -> None:
    _, quote, events = lite()
    for i in range(4):
        register = quote.body[f"rtmr{i}"]
        for pos in range(48):
            changed = quote_with(quote, f"rtmr{i}", flip(register, pos))
            check = check_replay(events, changed, "app")
            assert check.status is CheckStatus.FAIL
            assert check.summary.startswith(f"Event log does not replay to RTMR{i}: replayed {LITE_RTMRS[i]}")
            assert (check_rtmr3_payloads(events, changed, "app").status is CheckStatus.FAIL) == (i == 3)


def test_order_and_membership_matter() -> None:
    _, quote, events = lite()
    swapped = [*events[:21], events[22], events[21], *events[23:]]
    assert check_rtmr3_payloads(swapped, quote, "app").status is CheckStatus.FAIL
    dropped = events[:25] + events[26:]
    assert check_rtmr3_payloads(dropped, quote, "app").status is CheckStatus.FAIL
    extra = [*events, runtime("compose-hash", b"\x00" * 32)]
    assert check_replay(extra, quote, "app").status is CheckStatus.FAIL
    moved = [*events[:11], events[11].model_copy(update={"imr": 2}), *events[12:]]
    check = check_replay(moved, quote, "app")
    assert check.status is CheckStatus.FAIL and check.details["mismatches"] == ["rtmr1", "rtmr2"]
    assert check.summary.endswith("(also RTMR2)")
    # interleaving registers differently does not matter: only the order within one register does
    reordered = sorted(events, key=lambda e: e.imr)
    assert check_replay(reordered, quote, "app").status is CheckStatus.PASS


def test_rtmr3_event_of_another_type_fails_the_payload_check() -> None:
    _, quote, events = lite()
    odd = Event(imr=3, event_type=0x1, digest=bytes(48), name="note")
    check = check_rtmr3_payloads([*events, odd], quote, "app")
    assert check.status is CheckStatus.FAIL
    assert check.summary.startswith("RTMR3 event 29 (note) has type 0x00000001")


def test_missing_firmware_digest_fails_replay_naming_the_event() -> None:
    _, quote, events = lite()
    changed = [*events[:3], events[3].model_copy(update={"digest": None}), *events[4:]]
    check = check_replay(changed, quote, "app")
    assert check.status is CheckStatus.FAIL
    assert "event 3 (RTMR0" in check.summary and check.details["field"] == "event_log[3].digest"
    with pytest.raises(InputError) as info:
        replay(changed)
    assert info.value.field == "event_log[3].digest"


def test_replay_pads_short_digests() -> None:
    short = Event(imr=1, event_type=4, digest=b"\x01" * 32)
    assert replay([short])[1] == hashlib.sha384(bytes(48) + b"\x01" * 32 + bytes(16)).digest()


def test_sgx_quote_skips_the_eventlog_checks() -> None:
    from dstack_verifier.synth import make_evidence

    sgx = parse_quote(make_evidence(seed="eventlog-sgx", tee="sgx").quote)
    for check in (check_replay([], sgx, "app"), check_rtmr3_payloads([], sgx, "app")):
        assert check.status is CheckStatus.SKIP and "SGX" in check.summary
    with pytest.raises(InputError):
        derived_values(sgx, extract_app_info([]), None)


# --------------------------------------------------------------------------------------------------------------------
# V2 logs


def test_v2_log_parses_replays_and_checks_preimages() -> None:
    _, quote, events = lite()
    v2 = []
    for e in events:
        if e.is_runtime:
            e = e.model_copy(update={"version": 2})
            e = e.model_copy(update={"preimage": v2_preimages(e)[0]})
        v2.append(e)
    rtmr3 = replay(v2)[3]
    assert rtmr3 != quote.body["rtmr3"]
    v2_quote = quote_with(quote, "rtmr3", rtmr3)
    text = json.dumps([e.to_json() for e in v2])
    parsed = parse_event_log(text, "v2")
    assert parsed == v2
    assert check_rtmr3_payloads(parsed, v2_quote, "app").status is CheckStatus.PASS
    assert check_replay(parsed, v2_quote, "app").status is CheckStatus.PASS
    # `hash_input` is accepted as the preimage's other name
    renamed = json.loads(text)
    for item in renamed:
        if "preimage" in item:
            item["hash_input"] = item.pop("preimage")
    assert parse_event_log(renamed, "v2") == v2
    # a preimage that is not the canonical JSON of the event names the event
    index = 22
    bad = v2[index].model_copy(update={"preimage": v2[index].preimage.replace(b'"payload":"86', b'"payload":"87')})
    check = check_rtmr3_payloads([*v2[:index], bad, *v2[index + 1 :]], v2_quote, "app")
    assert check.status is CheckStatus.FAIL
    assert check.summary.startswith(f"RTMR3 event {index} (compose-hash): its V2 preimage is not the canonical")


# --------------------------------------------------------------------------------------------------------------------
# App info


def test_app_info_uses_first_events_before_system_ready() -> None:
    ch1, ch2 = b"\x11" * 32, b"\x22" * 32
    events = [
        runtime("system-preparing"),
        runtime("compose-hash", ch1),
        runtime("compose-hash", ch2),
        runtime("init-script-hash", b"\x01" * 32),
        runtime("init-script-hash", b"\x02" * 32),
        runtime("gpu-policy-hash", b"\x03" * 32),
        runtime("key-provider", b"not json"),
        Event(imr=2, event_type=RUNTIME_EVENT_TYPE, name="app-id", payload=b"\x09" * 20),  # not RTMR3: ignored
        runtime("system-ready"),
        runtime("app-id", b"\x07" * 20),
        runtime("LIUM_MINER_HOTKEY", b"x"),
    ]
    info = extract_app_info(events)
    assert info.compose_hash == ch1
    assert [(o.name, o.duplicate) for o in info.other_events] == [("system-preparing", False),
                                                                   ("compose-hash", True)]
    assert info.init_script_hashes == [b"\x01" * 32, b"\x02" * 32]
    assert info.gpu_policy_hash == b"\x03" * 32
    assert info.key_provider_info == b"not json" and info.key_provider is None
    assert info.app_id is None  # the app-id after system-ready does not count
    assert info.system_ready and not info.boot_mr_done and info.events_after_system_ready == 2
    assert extract_app_info([]).model_dump()["compose_hash"] is None


@pytest.mark.parametrize("payload", [b"", b"[]", b'{"name":1,"id":"x"}', b'{"name":"kms"}', b"\xff", b"[" * 5000])
def test_key_provider_decoding_is_best_effort(payload: bytes) -> None:
    assert decode_key_provider(payload) is None


# --------------------------------------------------------------------------------------------------------------------
# SCALE "V0" attestation blob (spec §9.3), encoded here from the lite fixture


def lite_attestation_parts() -> dict[str, Any]:
    doc, quote, events = lite()
    stripped = [e for e in events if e.name in ACPI_NAMES or e.is_runtime]
    runtime_events = [e for e in events if e.is_runtime]
    return {
        "quote": quote.raw,
        "stripped": stripped,
        "runtime": runtime_events,
        "report_data": quote.body["reportdata"],
        "config": doc["vm_config"],
    }


def encode_attestation(parts: dict[str, Any]) -> bytes:
    return encode(parts["quote"], parts["stripped"], parts["runtime"], parts["report_data"], parts["config"])


def test_attestation_blob_round_trip() -> None:
    parts = lite_attestation_parts()
    blob = encode_attestation(parts)
    assert len(blob) == 7305  # the fixture's blob size in spec §9.3: our encoder reproduces the layout
    att = decode_attestation(blob, "att")
    assert isinstance(att, Attestation)
    assert att.quote == parts["quote"] and att.config == parts["config"] and att.report_data == parts["report_data"]
    assert len(att.event_log) == 12 and len(att.runtime_events) == 9
    assert [e.name for e in att.event_log[:3]] == list(ACPI_NAMES)
    assert att.event_log[:3] == parts["stripped"][:3]
    assert all(e.digest is None and e.version == 1 for e in att.runtime_events)
    assert [(e.name, e.payload) for e in att.runtime_events] == [(e.name, e.payload) for e in parts["runtime"]]
    quote = parse_quote(att.quote)
    assert att.report_data == quote.body["reportdata"]
    assert check_rtmr3_payloads(att.runtime_events, quote, "kms").status is CheckStatus.PASS
    stripped_check = check_replay(att.event_log, quote, "kms", registers=(3,))
    assert stripped_check.status is CheckStatus.PASS and list(stripped_check.details["registers"]) == ["rtmr3"]
    positions = {"event_indices", "other_events"}  # indices differ: the runtime events list has no firmware events
    assert extract_app_info(att.runtime_events).model_dump(exclude=positions) == extract_app_info(
        lite()[2]).model_dump(exclude=positions)


def test_attestation_truncations_are_input_errors() -> None:
    blob = encode_attestation(lite_attestation_parts())
    for cut in range(len(blob)):
        with pytest.raises(InputError) as info:
            decode_attestation(blob[:cut], "att")
        assert info.value.source == "att"
        if cut:
            assert info.value.field and info.value.field.startswith("attestation")


def test_attestation_errors_name_field_and_offset() -> None:
    parts = lite_attestation_parts()
    blob = encode_attestation(parts)
    with pytest.raises(InputError, match="trailing"):
        decode_attestation(blob + b"\x00", "att")
    for first in (0x80, 0x85, 0x8F, 0xDE, 0xDF):  # a MessagePack map: read as V1 (test_attestation_v1), and refused
        with pytest.raises(InputError) as info:
            decode_attestation(bytes([first]) + blob[1:], "att")
        assert info.value.field and info.value.field.startswith("attestation")
    with pytest.raises(InputError, match="unknown attestation format"):
        decode_attestation(b"\x05" + blob[1:], "att")
    with pytest.raises(InputError, match="gcp-tdx") as info:
        decode_attestation(b"\x00\x01" + blob[2:], "att")
    assert info.value.field == "attestation.platform" and info.value.offset == 1
    with pytest.raises(InputError, match="exceeds the maximum") as info:
        decode_attestation(b"\x00\x00" + scale_compact(MAX_PAYLOAD_BYTES * 2) + bytes(16), "att")
    assert info.value.field == "attestation.quote" and info.value.offset == 2
    with pytest.raises(InputError, match="too large"):
        decode_attestation(b"\x00\x00" + bytes([0xFF]) + bytes(80), "att")
    bad_imr = parts | {"stripped": [parts["stripped"][0].model_copy(update={"imr": 3})]}
    raw = bytearray(encode_attestation(bad_imr))
    imr_at = 2 + len(scale_vec(parts["quote"])) + 1
    raw[imr_at] = 7
    with pytest.raises(InputError, match="imr 7") as info:
        decode_attestation(bytes(raw), "att")
    assert info.value.field == "attestation.event_log[0].imr" and info.value.offset == imr_at
    bad_name = encode_attestation(parts | {"runtime": []}).replace(scale_str(parts["config"]),
                                                                 scale_vec(b"\xff\xfe"))
    with pytest.raises(InputError, match="not UTF-8") as info:
        decode_attestation(bad_name, "att")
    assert info.value.field == "attestation.config"
    with pytest.raises(InputError):
        decode_attestation(b"", "att")
    with pytest.raises(InputError, match="more than"):
        decode_attestation(bytes(11 << 20), "att")


# --------------------------------------------------------------------------------------------------------------------
# CCEL binary


def spec_id_header() -> bytes:
    spec = (b"Spec ID Event03\x00" + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, 1) + struct.pack("<HH", 0x0C, 48)
            + b"\x00")
    return struct.pack("<II", 0, 3) + bytes(20) + struct.pack("<I", len(spec)) + spec


def ccel_record(mr_index: int, event_type: int, digests: list[tuple[int, bytes]], data: bytes) -> bytes:
    body = b"".join(struct.pack("<H", alg) + d for alg, d in digests)
    return struct.pack("<III", mr_index, event_type, len(digests)) + body + struct.pack("<I", len(data)) + data


def lite_ccel() -> tuple[bytes, list[int], list[Event]]:
    _, _, events = lite()
    firmware = [e for e in events if e.imr < 3]
    records = [ccel_record(0, 0x1, [(0x0C, b"\x55" * 48)], b"MRTD entry: dropped"),
               ccel_record(1, 3, [(0x0C, bytes(48))], b"StartupLocality\x00\x00")]  # EV_NO_ACTION: dropped
    records += [ccel_record(e.imr + 1, e.event_type, [(0x0C, e.digest or b"")], e.payload) for e in firmware]
    blob = spec_id_header()
    boundaries = [len(blob)]
    for rec in records:
        blob += rec
        boundaries.append(len(blob))
    return blob + b"\xff" * 64, boundaries, firmware


def test_ccel_parses_and_replays_firmware_registers() -> None:
    blob, _, firmware = lite_ccel()
    _, quote, _ = lite()
    events = parse_ccel(blob, "ccel")
    assert [(e.imr, e.event_type, e.digest, e.payload) for e in events] == [
        (e.imr, e.event_type, e.digest, e.payload) for e in firmware]
    assert parse_event_log(blob, "ccel") == events  # bytes that are not JSON are read as CCEL
    registers = replay(events)
    for i in range(3):
        assert registers[i] == quote.body[f"rtmr{i}"]
    check = check_replay(events, quote, "app", registers=(0, 1, 2))
    assert check.status is CheckStatus.PASS and check.summary.endswith("RTMR0–RTMR2 of the quote")
    # the end of the data ends the log too; zero fill reads as empty MRTD records, which are dropped
    assert parse_ccel(blob.rstrip(b"\xff"), "ccel") == events
    assert parse_ccel(blob.rstrip(b"\xff") + bytes(64), "ccel") == events
    with pytest.raises(InputError, match="truncated"):
        parse_ccel(blob.rstrip(b"\xff") + bytes(40), "ccel")


def test_ccel_truncations_and_defects() -> None:
    blob, boundaries, _ = lite_ccel()
    end = boundaries[-1]
    for cut in range(end):
        if cut in boundaries:  # a cut between records is a shorter, valid log
            assert isinstance(parse_ccel(blob[:cut], "ccel"), list)
            continue
        with pytest.raises(InputError) as info:
            parse_ccel(blob[:cut], "ccel")
        assert info.value.field and info.value.field.startswith("ccel") and info.value.offset is not None
    header = spec_id_header()
    good = ccel_record(1, 4, [(0x0C, bytes(48))], b"")
    cases = [
        (ccel_record(1, 4, [(0x0B, bytes(32))], b""), "ccel[0].digest_count", "SHA-384"),
        (ccel_record(1, 4, [(0x0C, bytes(48)), (0x0B, bytes(32))], b""), "ccel[0].digest_count", "SHA-384"),
        (ccel_record(1, 4, [(0x99, bytes(48))], b""), "ccel[0].digests[0].alg", "unknown digest algorithm"),
        (ccel_record(9, 4, [(0x0C, bytes(48))], b""), "ccel[0].mr_index", "register index 9"),
        (struct.pack("<III", 1, 4, 1000), "ccel[0].digest_count", "1000 digests"),
        (ccel_record(1, 4, [(0x0C, bytes(48))], b"")[:-4] + struct.pack("<I", MAX_PAYLOAD_BYTES + 1),
         "ccel[0].event_size", "more than"),
    ]
    for record, field, message in cases:
        with pytest.raises(InputError, match=message) as info:
            parse_ccel(header + record + b"\xff" * 8, "ccel")
        assert info.value.field == field
    with pytest.raises(InputError, match="Spec ID"):
        parse_ccel(struct.pack("<II", 0, 4) + bytes(20) + struct.pack("<I", 4) + b"abcd" + good, "ccel")
    with pytest.raises(InputError, match="more than 4096 events"):
        parse_ccel(header + good * (MAX_EVENTS + 1), "ccel")
    with pytest.raises(InputError, match="more than 16384 records"):
        parse_ccel(header + bytes(16 * 20000), "ccel")
    with pytest.raises(InputError, match="more than"):
        parse_ccel(bytes(MAX_LOG_BYTES + 1), "ccel")


# --------------------------------------------------------------------------------------------------------------------
# Bad JSON input


GOOD_EVENT: dict[str, Any] = {"imr": 3, "event_type": RUNTIME_EVENT_TYPE, "digest": "", "event": "app-id",
                              "event_payload": "00" * 20}


BAD_FIELDS: list[tuple[str, Any, str]] = [
        ("imr", "x", "expected an integer"),
        ("imr", True, "expected an integer, got boolean"),
        ("imr", 4, "out of range 0..3"),
        ("imr", -1, "out of range"),
        ("imr", 3.0, "got number"),
        ("imr", None, "got null"),
        ("imr", " 3", "expected an integer"),
        ("event_type", -1, "out of range"),
        ("event_type", 1 << 32, "out of range"),
        ("event_type", 10**5000, "too large to show"),
        ("event_type", "0x1" + "0" * 40, "expected an integer"),
        ("digest", 123, "expected a hex string, got number"),
        ("digest", "zz", "not hex: character 'z' at position 0"),
        ("digest", "abc", "odd number of hex digits"),
        ("digest", "ab cd", "not hex: character ' '"),
        ("digest", "00" * 49, "more than the 48 allowed"),
        ("digest", ["00"], "got array"),
        ("event", 5, "expected a string"),
        ("event", "\ud800", "lone surrogate"),
        ("event", "a" * 5000, "more than the 4096 allowed"),
        ("event_payload", "g0", "not hex"),
        ("event_payload", "00" * (MAX_PAYLOAD_BYTES + 1), "more than the 1048576 allowed"),
        ("event_payload", {"hex": "00"}, "got object"),
        ("version", 3, "out of range 1..2"),
        ("version", "two", "expected an integer"),
        ("preimage", "xyz", "not hex"),
        ("hash_input", 7, "expected a hex string"),
]


# ids by position: a 5000-digit integer cannot be turned into a test id
@pytest.mark.parametrize(("key", "value", "message"), BAD_FIELDS, ids=[f"{k}-{i}" for i, (k, _, _) in
                                                                       enumerate(BAD_FIELDS)])
def test_bad_event_fields_name_the_field(key: str, value: Any, message: str) -> None:
    bad = GOOD_EVENT | {key: value}
    with pytest.raises(InputError, match=message) as info:
        parse_event_log([GOOD_EVENT, bad], "log.json")
    assert info.value.field == f"event_log[1].{key}"
    assert info.value.source == "log.json"
    assert f"event_log[1].{key}" in str(info.value)


@pytest.mark.parametrize("key", ["imr", "event_type", "event", "event_payload"])
def test_missing_fields_are_named(key: str) -> None:
    bad = {k: v for k, v in GOOD_EVENT.items() if k != key}
    with pytest.raises(InputError, match="missing") as info:
        parse_event_log([bad], "log", field="eventlog")
    assert info.value.field == f"eventlog[0].{key}"


def test_lenient_forms_are_accepted() -> None:
    event = GOOD_EVENT | {"imr": "3", "event_type": "0x08000001", "event_payload": "0X" + "AB" * 20,
                          "digest": "0x" + "11" * 48, "version": "1"}
    (parsed,) = parse_event_log([event], "log")
    assert parsed.imr == 3 and parsed.event_type == RUNTIME_EVENT_TYPE and parsed.payload == b"\xab" * 20
    assert parsed.digest == b"\x11" * 48 and parsed.version == 1
    no_digest = {k: v for k, v in GOOD_EVENT.items() if k != "digest"}
    assert parse_event_log([no_digest | {"digest": None}], "log")[0].digest is None
    assert parse_event_log([no_digest], "log")[0].digest is None
    assert parse_event_log([GOOD_EVENT | {"digest": "0x"}], "log")[0].digest is None
    assert parse_event_log(json.dumps([GOOD_EVENT]).encode(), "log")[0].payload == bytes(20)
    with pytest.raises(InputError, match="disagree"):
        parse_event_log([GOOD_EVENT | {"preimage": "00", "hash_input": "01"}], "log")


def test_bad_logs_as_a_whole() -> None:
    cases: list[tuple[Any, str]] = [
        ({"a": 1}, "got object"),
        ('{"a": 1}', "expected a JSON array"),
        ("[{", "invalid JSON"),
        ("[" * 100_000, "nests too deeply"),
        ("[1" + "0" * 5000 + "]", "invalid JSON"),
        (b"[\xff]", "not UTF-8"),
        (5, "got number"),
        ([5], "expected an event object, got number"),
        ([GOOD_EVENT] * (MAX_EVENTS + 1), "more than the 4096 allowed"),
        (" " * (MAX_LOG_BYTES + 1), "more than"),
        (b" " * (MAX_LOG_BYTES + 1), "more than"),
        (b"", "truncated"),
    ]
    for data, message in cases:
        with pytest.raises(InputError, match=message) as info:
            parse_event_log(data, "log")
        assert info.value.source == "log"
    big = GOOD_EVENT | {"event_payload": "00" * MAX_PAYLOAD_BYTES}
    with pytest.raises(InputError, match="payloads exceed") as info:
        parse_event_log([big] * 17, "log")
    assert info.value.field == "event_log[16]"


def test_json_depth_is_measured_outside_strings() -> None:
    assert json_too_deep("[" * (MAX_JSON_DEPTH + 1))
    assert not json_too_deep("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)
    assert not json_too_deep('["' + "[{" * 1000 + '"]')  # brackets inside strings do not nest
    assert not json_too_deep('["\\"' + "[" * 1000 + '"]')  # an escaped quote does not end the string
    assert not json_too_deep("[]" * 100_000)


def test_deep_json_is_refused_even_with_a_raised_recursion_limit() -> None:
    """py_ecc (imported with web3) sets the recursion limit to 100000; json.loads then overflows the C stack."""
    script = (
        "import sys; sys.setrecursionlimit(100000)\n"
        "from dstack_verifier.errors import InputError\n"
        "from dstack_verifier.eventlog import parse_event_log, decode_key_provider\n"
        "for data in ('[' * 1_000_000, b'[' * 1_000_000, '[{\"a\":' * 300_000):\n"
        "    try:\n"
        "        parse_event_log(data, 'deep')\n"
        "    except InputError as exc:\n"
        "        print(exc.message)\n"
        "print(decode_key_provider(b'[' * 1_000_000))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [f"JSON nests too deeply (more than {MAX_JSON_DEPTH} levels)"] * 3 + ["None"]


# --------------------------------------------------------------------------------------------------------------------
# Fuzz: only results or InputError


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)
hexish = st.binary(max_size=60).map(bytes.hex) | st.text(alphabet="0123456789abcdefxX g", max_size=40) | json_values
event_like = st.fixed_dictionaries(
    {},
    optional={
        "imr": st.integers(-2, 6) | st.sampled_from(["3", "0x3", "x", "03"]) | json_values,
        "event_type": st.integers(-1, 1 << 33) | st.just(RUNTIME_EVENT_TYPE) | json_values,
        "digest": hexish,
        "event": st.text(max_size=20) | json_values,
        "event_payload": hexish,
        "version": st.sampled_from([1, 2, 3, "2"]) | json_values,
        "preimage": hexish,
        "hash_input": hexish,
    },
)


def _only_events_or_input_error(data: Any) -> None:
    try:
        events = parse_event_log(data, "fuzz")
    except InputError:
        return
    assert all(isinstance(e, Event) for e in events)
    # whatever parses can be replayed (or names the event without a digest) and checked without raising
    try:
        replay(events)
    except InputError as exc:
        assert exc.field and exc.field.endswith(".digest")
    extract_app_info(events)


@FUZZ
@given(st.lists(event_like, max_size=5) | json_values)
def test_fuzz_parse_event_log_json(value: Any) -> None:
    _only_events_or_input_error(value)
    try:
        text = json.dumps(value)
    except (ValueError, TypeError):
        return
    _only_events_or_input_error(text)
    _only_events_or_input_error(text.encode())


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_parse_event_log_bytes(data: bytes) -> None:
    _only_events_or_input_error(data)
    _only_events_or_input_error(spec_id_header() + data)


@FUZZ
@given(st.binary(max_size=300) | st.binary(max_size=300).map(lambda b: b"\x00\x00" + b))
def test_fuzz_decode_attestation_random_bytes(blob: bytes) -> None:
    try:
        att = decode_attestation(blob, "fuzz")
    except InputError:
        return
    assert isinstance(att, Attestation)


@pytest.fixture(scope="module", params=["scale-v0", "msgpack-v1"])
def lite_blob(request: pytest.FixtureRequest) -> bytes:
    parts = lite_attestation_parts()
    if request.param == "scale-v0":
        return encode_attestation(parts)
    return encode_v1_attestation(parts["quote"], parts["stripped"], parts["runtime"], parts["report_data"],
                                 parts["config"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_decode_attestation_mutations(lite_blob: bytes, data: st.DataObject) -> None:
    blob = bytearray(lite_blob)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    try:
        att = decode_attestation(bytes(blob), "fuzz")
    except InputError:
        return
    assert isinstance(att, Attestation)


# --------------------------------------------------------------------------------------------------------------------
# The order of dstack's boot events


def boot(*names: str) -> list[Event]:
    return [runtime(name, bytes(20) if name in ("app-id", "instance-id") else b"") for name in names]


GENUINE_BOOT = ("system-preparing", "app-id", "compose-hash", "instance-id", "boot-mr-done", "os-image-hash",
                "key-provider", "storage-fs", "system-ready")


def payloads_check(events: list[Event]) -> Check:
    _, quote, _ = lite()
    return check_rtmr3_payloads(events, quote_with(quote, "rtmr3", replay(events)[3]), "app")


def test_genuine_boots_have_no_anomalies() -> None:
    _, quote, events = lite()
    check = check_rtmr3_payloads(events, quote, "app")
    assert check.status is CheckStatus.PASS and check.details["anomalies"] == []
    for name in ("app", "kms", "gateway"):
        _, quote, events = dataset(name)
        assert check_rtmr3_payloads(events, quote, name).details["anomalies"] == []  # type: ignore[arg-type]
    # The app's own events after system-ready are part of RTMR3 but not of the boot.
    check = payloads_check([*boot(*GENUINE_BOOT), runtime("LIUM_MINER_HOTKEY", b"5F"), runtime("compose-hash")])
    assert check.status is CheckStatus.PASS and check.details["anomalies"] == []


@pytest.mark.parametrize(("names", "words"), [
    (("system-preparing", "app-id", "compose-hash", "compose-hash", "instance-id", "boot-mr-done", "system-ready"),
     "compose-hash is stated again at event 3; the first, event 2, is the one used"),
    (("system-preparing", "compose-hash", "instance-id", "boot-mr-done", "app-id", "system-ready"),
     "app-id (event 4) comes after boot-mr-done (event 3), where dstack never emits it"),
    (("system-preparing", "app-id", "compose-hash", "instance-id", "boot-mr-done", "my-event", "system-ready"),
     "event 5 ('my-event') is not one dstack's boot emits before system-ready"),
    (("system-preparing", "app-id", "compose-hash", "instance-id", "boot-mr-done", "key-provider"),
     "the log has no system-ready event, so the app's own events cannot be told from the boot's"),
    (("system-preparing", "app-id", "compose-hash", "instance-id", "system-ready"),
     "the log has no boot-mr-done event"),
])
def test_an_unusual_boot_sequence_warns(names: tuple[str, ...], words: str) -> None:
    """The digests still bind every payload and the first value is still the one used, but a reviewer is told the
    log holds what dstack's boot does not write."""
    check = payloads_check(boot(*names))
    assert check.status is CheckStatus.WARN
    assert check.details["anomalies"] == [words]
    assert check.summary.endswith(f", but {words}")
