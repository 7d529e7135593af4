"""Source identity: app-compose parsing, the compose hash against RTMR3, mr_config_id v1/v2/v3.

Real data: dataset1-gateway's app-compose hashes to its compose-hash event; dataset1-kms's compose is a placeholder
(its README says so) and must fail. Every compose byte and every mr_config_id byte is changed once.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from functools import cache
from typing import Any

import pytest
from Crypto.Hash import keccak
from dstack_verifier.errors import InputError
from dstack_verifier.eventlog import RUNTIME_EVENT_TYPE, AppInfo, Event, extract_app_info, parse_event_log
from dstack_verifier.model import CheckStatus
from dstack_verifier.quote.structure import Quote, parse_quote
from dstack_verifier.source import check_compose_hash, check_mr_config_id, parse_compose

from tests.support.fixtures import fixture_path


@cache
def _doc(name: str) -> dict[str, Any]:
    if name == "lite":
        return json.loads(fixture_path("dstack", "tdx-lite-getquote.json").read_text())
    return json.loads(fixture_path("trust-center", f"dataset1-{name}.json").read_text())


def entity(name: str) -> tuple[dict[str, Any], Quote, AppInfo]:
    doc = _doc(name)
    if name == "lite":
        quote = parse_quote(bytes.fromhex(doc["quote"]))
        events = parse_event_log(doc["event_log"], "lite")
    else:
        quote = parse_quote(bytes.fromhex(doc["quote_hex"].removeprefix("0x")))
        events = parse_event_log(doc["eventlog"], name, field="eventlog")
    return doc, quote, extract_app_info(events)


def with_mr_config_id(quote: Quote, value: bytes) -> Quote:
    span = next(s for s in quote.spans if s.name == "body.mrconfig")
    return parse_quote(quote.raw[: span.start] + value + quote.raw[span.end :])


def runtime(name: str, payload: bytes = b"") -> Event:
    return Event(imr=3, event_type=RUNTIME_EVENT_TYPE, name=name, payload=payload)


# --------------------------------------------------------------------------------------------------------------------
# parse_compose


def test_parse_real_gateway_compose() -> None:
    doc, _, _ = entity("gateway")
    raw = doc["app_compose"].encode()
    info = parse_compose(raw, "gateway compose")
    assert info.sha256 == hashlib.sha256(raw).hexdigest() and info.size == len(raw)
    assert info.manifest_version == 2 and info.name == "base-gateway" and info.runner == "docker-compose"
    assert info.docker_compose_file is not None and info.docker_compose_file.startswith("services:\n  gateway:")
    assert info.kms_enabled is True and info.gateway_enabled is False and info.local_key_provider_enabled is False
    assert info.public_logs is True and info.public_sysinfo is True and info.no_instance_id is True
    assert info.key_provider_id == "" and info.effective_key_provider == "kms"
    assert info.effective_gateway_enabled is False
    assert "CF_API_TOKEN" in info.allowed_envs and info.launch_token_hash is not None
    assert info.pre_launch_script is not None and info.other_keys == []
    summary = info.summary()
    json.dumps(summary)
    assert summary["effective_key_provider"] == "kms" and "tproxy_enabled" not in summary


def test_parse_compose_forms() -> None:
    info = parse_compose(b'{"manifest_version":"3","name":"x","runner":"docker-compose","tproxy_enabled":true,'
                         b'"features":["kms"],"event_log_version":2,"key_provider":"tpm","zz":1,"aa":{}}', "c")
    assert info.manifest_version == "3" and info.effective_gateway_enabled and info.effective_key_provider == "tpm"
    assert info.event_log_version == 2 and info.other_keys == ["aa", "zz"]
    legacy = parse_compose(b'{"manifest_version":1,"name":"kms","runner":"docker","features":["tproxy-net"],'
                           b'"local_key_provider_enabled":true}', "c")
    assert legacy.effective_gateway_enabled and legacy.effective_key_provider == "local"
    assert parse_compose(b"{}", "c").effective_key_provider == "none"
    long = parse_compose(json.dumps({"docker_compose_file": "x" * 70_000}).encode(), "c").summary()
    assert long["docker_compose_file_truncated"] is True and len(long["docker_compose_file"]) == 64 * 1024


@pytest.mark.parametrize(
    ("data", "message", "field"),
    [
        (b"[]", "must be a JSON object, got array", None),
        (b'"x"', "got string", None),
        (b"null", "got null", None),
        (b"\xff{}", "not UTF-8", None),
        (b"\xef\xbb\xbf{}", "invalid JSON", None),
        (b"{", "invalid JSON", None),
        (b'{"a":1,"a":2}', "duplicate key 'a'", None),
        (b'{"x":NaN}', "non-standard JSON constant NaN", None),
        (b"[" * 100_000, "nests too deeply", None),
        (b'{"kms_enabled":"yes"}', "expected true or false, got string", "kms_enabled"),
        (b'{"name":5}', "expected a string, got number", "name"),
        (b'{"allowed_envs":["A",1]}', "expected an array of strings", "allowed_envs"),
        (b'{"features":"kms"}', "expected an array of strings", "features"),
        (b'{"manifest_version":true}', "expected an integer or a string", "manifest_version"),
        (b'{"event_log_version":3}', "expected 1 or 2, got 3", "event_log_version"),
        (b'{"event_log_version":true}', "expected 1 or 2", "event_log_version"),
        (b'{"swap_size":[]}', "expected a size", "swap_size"),
        (b'{"requirements":[]}', "expected an object", "requirements"),
        (b"{}" + b" " * (4 << 20), "more than", None),
    ],
)
def test_parse_compose_bad_input(data: bytes, message: str, field: str | None) -> None:
    with pytest.raises(InputError, match=message) as info:
        parse_compose(data, "compose.json")
    assert info.value.source == "compose.json" and info.value.field == field


def test_deep_compose_is_refused_even_with_a_raised_recursion_limit() -> None:
    """py_ecc (imported with web3) sets the recursion limit to 100000; json.loads then overflows the C stack."""
    script = (
        "import sys; sys.setrecursionlimit(100000)\n"
        "from dstack_verifier.errors import InputError\n"
        "from dstack_verifier.source import parse_compose\n"
        "try:\n"
        "    parse_compose(b'{\"a\":' * 500_000, 'deep')\n"
        "except InputError as exc:\n"
        "    print(exc.message)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "JSON nests too deeply (more than 128 levels)"


# --------------------------------------------------------------------------------------------------------------------
# source.compose_hash


def test_gateway_compose_hash_passes() -> None:
    doc, _, info = entity("gateway")
    check = check_compose_hash(doc["app_compose"].encode(), info, "gateway", "no compose")
    assert check.status is CheckStatus.PASS, check.summary
    assert check.id == "source.compose_hash" and check.phase == "source" and check.anchor == "quote"
    assert check.details["calculated"] == check.details["event"] == info.compose_hash.hex()  # type: ignore[union-attr]
    assert check.details["event_index"] == 22 and check.details["compose"]["name"] == "base-gateway"
    json.dumps(check.details)


def test_kms_placeholder_compose_fails() -> None:
    doc, _, info = entity("kms")
    raw = doc["app_compose"].encode()
    check = check_compose_hash(raw, info, "kms", "no compose")
    assert check.status is CheckStatus.FAIL
    calculated = hashlib.sha256(raw).hexdigest()
    assert calculated in check.summary and info.compose_hash.hex() in check.summary  # type: ignore[union-attr]
    assert check.details["match"] is False and check.details["compose"]["name"] == "kms"


def test_every_compose_byte_is_bound() -> None:
    doc, _, info = entity("gateway")
    raw = doc["app_compose"].encode()
    for pos in range(len(raw)):
        changed = raw[:pos] + bytes([raw[pos] ^ 0x01]) + raw[pos + 1 :]
        check = check_compose_hash(changed, info, "gateway", "no compose")
        assert check.status is CheckStatus.FAIL
        assert check.summary.startswith(f"sha256 of the app-compose ({hashlib.sha256(changed).hexdigest()})")
    for changed in (raw + b"\n", raw[:-1], json.dumps(json.loads(raw), indent=2).encode()):  # re-serialising fails
        assert check_compose_hash(changed, info, "gateway", "no compose").status is CheckStatus.FAIL


def test_compose_hash_event_is_what_is_compared() -> None:
    doc, _, info = entity("gateway")
    raw = doc["app_compose"].encode()
    other = info.model_copy(update={"compose_hash": bytes(32)})
    check = check_compose_hash(raw, other, "gateway", "no compose")
    assert check.status is CheckStatus.FAIL and "00" * 32 in check.summary


def test_compose_hash_skips_or_fails_with_reasons() -> None:
    doc, _, info = entity("gateway")
    raw = doc["app_compose"].encode()
    check = check_compose_hash(None, info, "app", "the app has no app-compose in the evidence")
    assert check.status is CheckStatus.SKIP and check.summary == "skipped: the app has no app-compose in the evidence"
    no_event = extract_app_info([runtime("app-id", b"\x01" * 20), runtime("system-ready")])
    check = check_compose_hash(raw, no_event, "app", "unused")  # a boot that measured no compose: not this one
    assert check.status is CheckStatus.FAIL and "no compose-hash event" in check.summary
    assert check.anchor == "quote"
    assert check.details["calculated"] == hashlib.sha256(raw).hexdigest()
    assert check_compose_hash(raw, None, "app", "unused").summary == "skipped: no event log to compare with"
    # a compose that does not parse is still hashed; the parse error is shown
    bad = check_compose_hash(b"not json", info, "app", "unused")
    assert bad.status is CheckStatus.FAIL and "invalid JSON" in bad.details["compose_parse_error"]


# --------------------------------------------------------------------------------------------------------------------
# source.mr_config_id


@pytest.mark.parametrize("name", ["lite", "app", "gateway", "kms"])
def test_mr_config_id_v1_on_fixtures(name: str) -> None:
    _, quote, info = entity(name)
    check = check_mr_config_id(quote, info, "app")
    assert check.status is CheckStatus.PASS, check.summary
    assert check.id == "source.mr_config_id" and check.phase == "source" and check.anchor == "quote"
    assert check.details["version"] == 1
    assert check.details["mr_config_id"] == "01" + info.compose_hash.hex() + "00" * 15  # type: ignore[union-attr]
    json.dumps(check.details)


def test_every_mr_config_id_byte_is_compared() -> None:
    _, quote, info = entity("gateway")
    original = quote.body["mrconfig"]
    for pos in range(48):
        changed = original[:pos] + bytes([original[pos] ^ 0xFF]) + original[pos + 1 :]
        check = check_mr_config_id(with_mr_config_id(quote, changed), info, "gateway")
        assert check.status is CheckStatus.FAIL
        if pos == 0:
            assert check.summary == "mr_config_id has unknown version 254 (dstack uses 1, 2 or 3)"
        else:
            assert check.summary.startswith(f"mr_config_id v1 {changed.hex()} does not match")


def test_mr_config_id_v1_against_another_compose_hash() -> None:
    _, quote, info = entity("gateway")
    check = check_mr_config_id(quote, info.model_copy(update={"compose_hash": b"\x01" * 32}), "gateway")
    assert check.status is CheckStatus.FAIL and ("01" * 33) in check.details["expected"]
    missing = check_mr_config_id(quote, info.model_copy(update={"compose_hash": None}), "gateway")
    assert missing.status is CheckStatus.WARN and "no compose-hash event" in missing.summary


def test_mr_config_id_zero_unknown_and_absent_log() -> None:
    _, quote, info = entity("lite")
    zero = check_mr_config_id(with_mr_config_id(quote, bytes(48)), info, "app")
    assert zero.status is CheckStatus.PASS and "not use" in zero.summary and zero.details["used"] is False
    unknown = check_mr_config_id(with_mr_config_id(quote, b"\x09" + bytes(47)), info, "app")
    assert unknown.status is CheckStatus.FAIL and "unknown version 9" in unknown.summary
    absent = check_mr_config_id(quote, None, "app")
    assert absent.status is CheckStatus.SKIP and "no event log" in absent.summary


def _keccak(data: bytes) -> bytes:
    h = keccak.new(digest_bits=256)
    h.update(data)
    return h.digest()


def test_mr_config_id_v2() -> None:
    _, quote, info = entity("lite")
    assert info.key_provider is not None and info.key_provider.name == "kms"
    # 02 || keccak256(compose_hash(32) || app_id(20) || kind (kms = 2) || key-provider id bytes) || 15 zeros
    preimage = info.compose_hash + info.app_id + b"\x02" + bytes.fromhex(info.key_provider.id)  # type: ignore[operator]
    v2 = b"\x02" + _keccak(preimage) + bytes(15)
    check = check_mr_config_id(with_mr_config_id(quote, v2), info, "app")
    assert check.status is CheckStatus.PASS, check.summary
    assert check.details["inputs"]["key_provider_kind"] == 2
    for pos in (1, 20, 32, 40, 47):
        bad = v2[:pos] + bytes([v2[pos] ^ 1]) + v2[pos + 1 :]
        assert check_mr_config_id(with_mr_config_id(quote, bad), info, "app").status is CheckStatus.FAIL
    other_kind = info.model_copy(update={"key_provider": info.key_provider.model_copy(update={"name": "tpm"})})
    assert check_mr_config_id(with_mr_config_id(quote, v2), other_kind, "app").status is CheckStatus.FAIL
    no_app_id = check_mr_config_id(with_mr_config_id(quote, v2), info.model_copy(update={"app_id": None}), "app")
    assert no_app_id.status is CheckStatus.WARN and "lacks app-id" in no_app_id.summary
    odd = info.model_copy(update={"key_provider": info.key_provider.model_copy(update={"id": "zz"})})
    assert "hex key-provider id" in check_mr_config_id(with_mr_config_id(quote, v2), odd, "app").summary


def _v3(document: str) -> bytes:
    return b"\x03" + hashlib.sha256(b"dstack-mr-config-v3:\x00" + document.encode()).digest() + bytes(15)


def test_mr_config_id_v3_rebuilt_from_the_event_log() -> None:
    _, quote, info = entity("lite")
    assert info.key_provider is not None
    # the JCS document dstack writes (all of app_id, compose_hash, instance_id, key_provider, key_provider_id)
    document = (f'{{"app_id":"{info.app_id.hex()}","compose_hash":"{info.compose_hash.hex()}",'  # type: ignore[union-attr]
                f'"instance_id":"{info.instance_id.hex()}","key_provider":"kms",'  # type: ignore[union-attr]
                f'"key_provider_id":"{info.key_provider.id}","version":3}}')
    check = check_mr_config_id(with_mr_config_id(quote, _v3(document)), info, "app")
    assert check.status is CheckStatus.PASS, check.summary
    assert check.details["document"] == document
    assert check.details["document_source"] == "reconstructed from the event log"
    # the spec's minimal form (optional fields left out) is found as well
    minimal = f'{{"compose_hash":"{info.compose_hash.hex()}","key_provider":"kms","version":3}}'  # type: ignore[union-attr]
    assert check_mr_config_id(with_mr_config_id(quote, _v3(minimal)), info, "app").status is CheckStatus.PASS


def test_mr_config_id_v3_needs_the_document_otherwise() -> None:
    _, quote, info = entity("lite")
    foreign = '{"compose_hash":"00","key_provider":"kms","version":3}'
    v3_quote = with_mr_config_id(quote, _v3(foreign))
    check = check_mr_config_id(v3_quote, info, "app")
    assert check.status is CheckStatus.WARN and "MrConfigV3 document" in check.summary
    assert check.details["missing"] == ["MrConfigV3 document"]
    # the supplied document hashes right but disagrees with the compose-hash event
    supplied = check_mr_config_id(v3_quote, info, "app", mr_config_document=foreign)
    assert supplied.status is CheckStatus.FAIL and "compose_hash differs" in supplied.summary
    wrong_hash = check_mr_config_id(v3_quote, info, "app", mr_config_document=foreign + " ")
    assert wrong_hash.status is CheckStatus.FAIL and "does not match the hash" in wrong_hash.summary
    good = (f'{{"compose_hash":"{info.compose_hash.hex()}","instance_id":"{info.instance_id.hex()}",'  # type: ignore[union-attr]
            '"key_provider":"kms","version":3}')
    ok = check_mr_config_id(with_mr_config_id(quote, _v3(good)), info, "app", mr_config_document=good)
    assert ok.status is CheckStatus.PASS and ok.details["document_source"] == "supplied"
    no_events = check_mr_config_id(v3_quote, extract_app_info([]), "app")
    assert no_events.status is CheckStatus.WARN and "compose-hash or key-provider event missing" in no_events.summary
