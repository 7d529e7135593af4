"""dstack event logs: parse them, replay them into RTMR0-3, and bind RTMR3 runtime events to their payloads.

Three steps, kept apart:
  * parse: untrusted JSON (GetQuote `event_log`, Phala Cloud `eventlog` / `tcb_info.event_log`), CCEL binary and the
    SCALE attestation blob become `Event`s; every defect is an InputError naming the event index and the field;
  * compute: `replay`, `runtime_event_digest`, `extract_app_info`, `derived_values` (pure functions, no decisions);
  * decide: `check_replay` and `check_rtmr3_payloads` compare with the quote and return `Check`s.

The rule that matters most (spec dstack-measurement §6.1, trust-center §7.1.1): a runtime event's digest is always
RECOMPUTED from (type, name, payload). Served logs blank the digest field, and a digest field kept next to an altered
payload would otherwise replay fine while the payload (e.g. the compose hash) lies.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import InputError
from .jsontext import json_kind, load_json
from .model import Anchor, Check, CheckStatus, Entity
from .quote.structure import Quote

RUNTIME_EVENT_TYPE = 0x08000001  # dstack runtime events (not a TCG type)
EV_NO_ACTION = 0x3  # TCG: logged but never extended into a register
TPM_ALG_SHA384 = 0x000C
TPM_DIGEST_SIZES = {0x0004: 20, 0x000B: 32, 0x000C: 48, 0x000D: 64}
MR_BYTES = 48
ZERO_MR = bytes(MR_BYTES)

# Bounds applied before anything is decoded or allocated: a hostile log cannot make us hash or hold gigabytes.
MAX_EVENTS = 4096
MAX_PAYLOAD_BYTES = 1 << 20
MAX_LOG_BYTES = 16 << 20
MAX_NAME_BYTES = 4096
MAX_DIGEST_BYTES = MR_BYTES
# CCEL records include dropped ones (MRTD, EV_NO_ACTION, an all-zero fill reads as empty MRTD records).
MAX_CCEL_RECORDS = 4 * MAX_EVENTS
# A V2 preimage is JSON: the payload in hex, the name with escapes (at most 6 bytes per character), a few keys.
MAX_PREIMAGE_BYTES = 2 * MAX_PAYLOAD_BYTES + 6 * MAX_NAME_BYTES + 256
MAX_ATTESTATION_BYTES = 10 << 20  # dstack's own limit on attestation blobs
MAX_QUOTE_BYTES = 1 << 20
MAX_CONFIG_BYTES = 1 << 20
DETAIL_PAYLOAD_BYTES = 4096  # payload bytes shown in check details; the size and a sha256 are always given

ATTESTATION_PLATFORMS = {0: "dstack-tdx", 1: "gcp-tdx", 2: "nitro-enclave", 3: "amd-sev-snp", 4: "aws-nitro-tpm"}


class PreimageError(ValueError):
    """A runtime event's preimage is not the exact byte string its (type, name, payload) hash."""


class Event(BaseModel):
    """One event, whatever the log format. `name` is the JSON `event` field ("" for unlabelled firmware events)."""

    model_config = ConfigDict(frozen=True, strict=True)

    imr: int = Field(ge=0, le=3)
    event_type: int = Field(ge=0, le=0xFFFFFFFF)
    digest: bytes | None = Field(default=None, min_length=1, max_length=MAX_DIGEST_BYTES)
    name: str = ""
    payload: bytes = Field(default=b"", max_length=MAX_PAYLOAD_BYTES)
    version: Literal[1, 2] = 1
    preimage: bytes | None = Field(default=None, max_length=MAX_PREIMAGE_BYTES)

    @field_validator("name")
    @classmethod
    def _name_is_utf8(cls, value: str) -> str:
        # A lone surrogate cannot be hashed as UTF-8; refusing it here keeps every digest computable.
        if len(value.encode("utf-8")) > MAX_NAME_BYTES:
            raise ValueError(f"event name longer than {MAX_NAME_BYTES} bytes")
        return value

    @property
    def is_runtime(self) -> bool:
        """A dstack runtime event: its digest is defined by (type, name, payload), never taken from the log."""
        return self.event_type == RUNTIME_EVENT_TYPE

    def to_json(self) -> dict[str, Any]:
        """The dstack JSON form (lowercase hex, no 0x)."""
        out: dict[str, Any] = {
            "imr": self.imr,
            "event_type": self.event_type,
            "digest": self.digest.hex() if self.digest else "",
            "event": self.name,
            "event_payload": self.payload.hex(),
        }
        if self.version != 1:
            out["version"] = self.version
        if self.preimage is not None:
            out["preimage"] = self.preimage.hex()
        return out


class Attestation(BaseModel):
    """A decoded dstack attestation: SCALE "V0" (spec §9.3) or MessagePack "V1" (attestation_v1)."""

    model_config = ConfigDict(frozen=True)

    format: Literal["scale-v0", "msgpack-v1"] = "scale-v0"
    platform: Literal["dstack-tdx"] = "dstack-tdx"
    quote: bytes
    event_log: list[Event]  # the stripped log: ACPI DATA events with digests, runtime events without
    runtime_events: list[Event]  # imr 3, V1, no digest: replay them to get RTMR3
    report_data: bytes
    report_data_offset: int  # where report_data sits in the blob, for an error that names it
    config: str
    stack: Literal["dstack", "dstack-pod"] = "dstack"
    report_data_payload: str | None = None  # a dstack-pod's: what its report_data was made from, shown as given

    def events(self) -> list[Event]:
        """The log to verify: the stripped log's events below RTMR3 (the ACPI ones), then the runtime events, which
        RTMR3 is replayed from (as dstack does; the stripped log's copies of them are not repeated)."""
        return [e for e in self.event_log if e.imr != 3] + list(self.runtime_events)


# --------------------------------------------------------------------------------------------------------------------
# Parsing: JSON forms


def _shown_int(n: int) -> str:
    # str() of a huge int raises (Python's digit limit) and would flood the message anyway.
    return str(n) if -(10**20) < n < 10**20 else "a number too large to show"


_INT_TEXT = re.compile(r"0[xX][0-9a-fA-F]{1,16}|[0-9]{1,20}")
_HEX_PREFIX = re.compile(r"[0-9a-fA-F]*")


def _int_value(value: Any, lo: int, hi: int, source: str, field: str) -> int:
    """An integer given as a JSON number or a decimal / 0x-hex string (Phala Cloud forms use both)."""
    if isinstance(value, str):
        if not _INT_TEXT.fullmatch(value):
            raise InputError(f"expected an integer, got the string {value[:24]!r}", source=source, field=field)
        number = int(value, 0) if value[:2] in ("0x", "0X") else int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise InputError(f"expected an integer, got {json_kind(value)}", source=source, field=field)
    if not lo <= number <= hi:
        raise InputError(f"value {_shown_int(number)} is out of range {lo}..{hi}", source=source, field=field)
    return number


def hex_field(value: Any, max_bytes: int, source: str, field: str) -> bytes:
    """Hex with or without 0x; no whitespace (bytes.fromhex alone would accept spaces)."""
    if value is None:
        return b""
    if not isinstance(value, str):
        raise InputError(f"expected a hex string, got {json_kind(value)}", source=source, field=field)
    text = value[2:] if value[:2] in ("0x", "0X") else value
    if len(text) > 2 * max_bytes:
        raise InputError(f"{len(text) // 2} bytes, more than the {max_bytes} allowed", source=source, field=field)
    good = _HEX_PREFIX.match(text)
    end = good.end() if good else 0
    if end != len(text):
        raise InputError(f"not hex: character {text[end]!r} at position {end}", source=source, field=field)
    if len(text) % 2:
        raise InputError(f"odd number of hex digits ({len(text)})", source=source, field=field)
    return bytes.fromhex(text)


def _name_value(value: Any, source: str, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"expected a string, got {json_kind(value)}", source=source, field=field)
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InputError("not valid Unicode (lone surrogate)", source=source, field=field) from None
    if size > MAX_NAME_BYTES:
        raise InputError(f"{size} bytes, more than the {MAX_NAME_BYTES} allowed", source=source, field=field)
    return value


_REQUIRED_KEYS = ("imr", "event_type", "event", "event_payload")


def _event_from_json(item: Any, source: str, where: str) -> Event:
    if not isinstance(item, dict):
        raise InputError(f"expected an event object, got {json_kind(item)}", source=source, field=where)
    for key in _REQUIRED_KEYS:
        if key not in item:
            raise InputError("missing", source=source, field=f"{where}.{key}")
    imr = _int_value(item["imr"], 0, 3, source, f"{where}.imr")
    event_type = _int_value(item["event_type"], 0, 0xFFFFFFFF, source, f"{where}.event_type")
    # Served logs blank runtime digests ("" or absent); None then means "the log does not say".
    digest = hex_field(item.get("digest"), MAX_DIGEST_BYTES, source, f"{where}.digest") or None
    name = _name_value(item["event"], source, f"{where}.event")
    payload = hex_field(item["event_payload"], MAX_PAYLOAD_BYTES, source, f"{where}.event_payload")
    raw_version = item.get("version")
    version = 1 if raw_version is None else _int_value(raw_version, 1, 2, source, f"{where}.version")
    # dstack has called the preimage both `preimage` and `hash_input`; two different values would be ambiguous.
    preimage_key = "preimage" if item.get("preimage") not in (None, "") else "hash_input"
    other_key = "hash_input" if preimage_key == "preimage" else "preimage"
    preimage = hex_field(item.get(preimage_key), MAX_PREIMAGE_BYTES, source, f"{where}.{preimage_key}") or None
    if preimage is not None and item.get(other_key) not in (None, ""):
        other = hex_field(item.get(other_key), MAX_PREIMAGE_BYTES, source, f"{where}.{other_key}")
        if other != preimage:
            raise InputError("`preimage` and `hash_input` disagree", source=source, field=f"{where}.{other_key}")
    return Event(
        imr=imr,
        event_type=event_type,
        digest=digest,
        name=name,
        payload=payload,
        version=version,  # type: ignore[arg-type]  # bounded to 1..2 above
        preimage=preimage,
    )


def _json_or_none(payload: bytes) -> Any:
    """Best-effort JSON of an event payload, for display: None when it is not (bounded) UTF-8 JSON."""
    try:
        return load_json(payload.decode("utf-8"), "payload")
    except (UnicodeDecodeError, InputError):
        return None


def parse_event_log(
    data: str | bytes | bytearray | list[Any], source: str, *, field: str = "event_log"
) -> list[Event]:
    """Parse an event log in any of the forms dstack and Phala Cloud serve.

    `data` is the GetQuote `event_log` JSON text (str or bytes), an already-decoded list of event objects (Phala
    Cloud `eventlog` / `tcb_info.event_log`), or a CCEL binary (TCG2 crypto-agile). `field` names the log in errors,
    e.g. "event_log[12].digest".
    """
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        if len(raw) > MAX_LOG_BYTES:
            raise InputError(f"event log is {len(raw)} bytes, more than {MAX_LOG_BYTES}", source=source, field=field)
        head = raw[:64].lstrip()
        if not head.startswith((b"[", b"{", b'"')):
            return parse_ccel(raw, source)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError("event log JSON is not UTF-8", source=source, field=field, offset=exc.start) from None
        items = load_json(text, source, field)
    elif isinstance(data, str):
        if len(data) > MAX_LOG_BYTES:
            raise InputError(f"event log is {len(data)} characters, more than {MAX_LOG_BYTES}", source=source,
                             field=field)
        items = load_json(data, source, field)
    elif isinstance(data, list):
        items = data
    else:
        raise InputError(f"expected an event log (JSON array, its text, or CCEL bytes), got {json_kind(data)}",
                         source=source, field=field)
    if not isinstance(items, list):
        raise InputError(f"expected a JSON array of events, got {json_kind(items)}", source=source, field=field)
    if len(items) > MAX_EVENTS:
        raise InputError(f"{len(items)} events, more than the {MAX_EVENTS} allowed", source=source, field=field)
    events: list[Event] = []
    total = 0
    for index, item in enumerate(items):
        event = _event_from_json(item, source, f"{field}[{index}]")
        total += len(event.payload) + len(event.preimage or b"")
        if total > MAX_LOG_BYTES:
            raise InputError(f"payloads exceed {MAX_LOG_BYTES} bytes in total", source=source,
                             field=f"{field}[{index}]")
        events.append(event)
    return events


# --------------------------------------------------------------------------------------------------------------------
# Parsing: binary forms (CCEL, SCALE)


class _Cursor:
    """Bounds-checked little-endian reads; every short read is an InputError with the field and byte offset."""

    def __init__(self, data: bytes, source: str, what: str) -> None:
        self.data = data
        self.pos = 0
        self.source = source
        self.what = what

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def fail(self, message: str, field: str, offset: int | None = None) -> InputError:
        return InputError(message, source=self.source, field=field, offset=self.pos if offset is None else offset)

    def take(self, size: int, field: str) -> bytes:
        if size > self.remaining():
            raise self.fail(f"truncated: needs {size} bytes, only {self.remaining()} left ({self.what} is "
                            f"{len(self.data)} bytes)", field)
        start = self.pos
        self.pos += size
        return self.data[start : self.pos]

    def uint(self, size: int, field: str) -> int:
        return int.from_bytes(self.take(size, field), "little")

    def compact(self, field: str) -> int:
        """A SCALE compact integer (low two bits of the first byte select 1, 2, 4 or 4+ bytes)."""
        start = self.pos
        first = self.uint(1, field)
        mode = first & 3
        if mode == 0:
            return first >> 2
        if mode in (1, 2):
            rest = self.take(1 if mode == 1 else 3, field)
            return int.from_bytes(bytes([first]) + rest, "little") >> 2
        size = (first >> 2) + 4
        if size > 8:
            raise self.fail(f"compact integer of {size} bytes is too large for a length", field, start)
        return self.uint(size, field)

    def length(self, field: str, limit: int, unit: str = "bytes") -> int:
        start = self.pos
        value = self.compact(field)
        if value > limit:
            raise self.fail(f"length {_shown_int(value)} {unit} exceeds the maximum of {limit}", field, start)
        return value

    def vec(self, field: str, limit: int) -> bytes:
        return self.take(self.length(field, limit), field)

    def text(self, field: str, limit: int) -> str:
        start = self.pos
        raw = self.vec(field, limit)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail("string is not UTF-8", field, start + exc.start) from None


def parse_ccel(data: bytes, source: str) -> list[Event]:
    """The CCEL ACPI table data (TCG2 crypto-agile log, spec §7.1) as events of RTMR0-3.

    Dropped, as dstack drops them: MRTD entries (mr_index 0) and EV_NO_ACTION records (never extended). The log
    ends at the 0xFFFFFFFF marker or at the end of the data; a record cut short is an error, never an end.
    CCEL carries no event names, so `name` is "" and `payload` is the raw TCG event data.
    """
    if len(data) > MAX_LOG_BYTES:
        raise InputError(f"CCEL is {len(data)} bytes, more than {MAX_LOG_BYTES}", source=source, field="ccel")
    r = _Cursor(data, source, "CCEL")
    r.uint(4, "ccel.header.mr_index")
    header_type = r.uint(4, "ccel.header.event_type")
    r.take(20, "ccel.header.digest")
    spec_size = r.uint(4, "ccel.header.event_size")
    if spec_size > MAX_PAYLOAD_BYTES:
        raise r.fail(f"Spec ID event of {spec_size} bytes", "ccel.header.event_size", r.pos - 4)
    spec = r.take(spec_size, "ccel.header.event")
    if header_type != EV_NO_ACTION or not spec.startswith(b"Spec ID Event03\x00"):
        raise InputError("not a TCG2 crypto-agile event log: the first event is not a 'Spec ID Event03' event",
                         source=source, field="ccel.header", offset=0)
    events: list[Event] = []
    record = 0
    while r.remaining():
        start = r.pos
        if data[start : start + 4] == b"\xff\xff\xff\xff":
            break  # end marker; the ACPI table is padded with 0xFF after it
        where = f"ccel[{record}]"
        if record >= MAX_CCEL_RECORDS:
            raise r.fail(f"more than {MAX_CCEL_RECORDS} records", where, start)
        mr_index = r.uint(4, f"{where}.mr_index")
        event_type = r.uint(4, f"{where}.event_type")
        count = r.uint(4, f"{where}.digest_count")
        if count > len(TPM_DIGEST_SIZES):
            raise r.fail(f"{count} digests in one record", f"{where}.digest_count", r.pos - 4)
        digests: list[tuple[int, bytes]] = []
        for k in range(count):
            alg_at = r.pos
            alg = r.uint(2, f"{where}.digests[{k}].alg")
            size = TPM_DIGEST_SIZES.get(alg)
            if size is None:
                raise r.fail(f"unknown digest algorithm 0x{alg:04x}", f"{where}.digests[{k}].alg", alg_at)
            digests.append((alg, r.take(size, f"{where}.digests[{k}].digest")))
        size_at = r.pos
        event_size = r.uint(4, f"{where}.event_size")
        if event_size > MAX_PAYLOAD_BYTES:
            raise r.fail(f"event of {event_size} bytes, more than {MAX_PAYLOAD_BYTES}", f"{where}.event_size",
                         size_at)
        payload = r.take(event_size, f"{where}.event")
        record += 1
        if mr_index == 0 or event_type == EV_NO_ACTION:
            continue
        if mr_index > 4:
            raise r.fail(f"register index {mr_index} (expected 1..4 for RTMR0..3)", f"{where}.mr_index", start)
        if count != 1 or digests[0][0] != TPM_ALG_SHA384:
            raise r.fail("expected exactly one SHA-384 digest (TDX)", f"{where}.digest_count", start + 8)
        if len(events) >= MAX_EVENTS:
            raise r.fail(f"more than {MAX_EVENTS} events", where, start)
        events.append(Event(imr=mr_index - 1, event_type=event_type, digest=digests[0][1], payload=payload))
    return events


def _is_msgpack_attestation(first: int) -> bool:
    return 0x80 <= first <= 0x8F or first in (0xDE, 0xDF)  # a msgpack map header


def decode_attestation(blob: bytes, source: str) -> Attestation:
    """Decode a dstack attestation blob, SCALE "V0" or MessagePack "V1", whose quote is a TDX one."""
    if len(blob) > MAX_ATTESTATION_BYTES:
        raise InputError(f"attestation is {len(blob)} bytes, more than {MAX_ATTESTATION_BYTES}", source=source,
                         field="attestation")
    if not blob:
        raise InputError("empty attestation", source=source, field="attestation")
    if _is_msgpack_attestation(blob[0]):
        from .attestation_v1 import decode_msgpack_attestation  # why here: that module builds on this one's Event

        return decode_msgpack_attestation(blob, source)
    if blob[0] != 0:
        raise InputError(f"unknown attestation format (first byte 0x{blob[0]:02x}; expected 0x00 for V0 or a "
                         "MessagePack map for V1)",
                         source=source, field="attestation.version", offset=0)
    r = _Cursor(blob, source, "attestation")
    r.uint(1, "attestation.version")
    kind = r.uint(1, "attestation.platform")
    if kind != 0:
        name = ATTESTATION_PLATFORMS.get(kind, "unknown")
        raise InputError(f"attestation platform {kind} ({name}) is not supported; only dstack-tdx", source=source,
                         field="attestation.platform", offset=1)
    quote = r.vec("attestation.quote", MAX_QUOTE_BYTES)
    count = r.length("attestation.event_log", MAX_EVENTS, "events")
    event_log: list[Event] = []
    for i in range(count):
        where = f"attestation.event_log[{i}]"
        imr_at = r.pos
        imr = r.uint(4, f"{where}.imr")
        if imr > 3:
            raise r.fail(f"imr {imr} (expected 0..3)", f"{where}.imr", imr_at)
        event_type = r.uint(4, f"{where}.event_type")
        digest = r.vec(f"{where}.digest", MAX_DIGEST_BYTES) or None
        name = r.text(f"{where}.event", MAX_NAME_BYTES)
        payload = r.vec(f"{where}.event_payload", MAX_PAYLOAD_BYTES)
        event_log.append(Event(imr=imr, event_type=event_type, digest=digest, name=name, payload=payload))
    count = r.length("attestation.runtime_events", MAX_EVENTS, "events")
    runtime: list[Event] = []
    for i in range(count):
        where = f"attestation.runtime_events[{i}]"
        name = r.text(f"{where}.event", MAX_NAME_BYTES)
        payload = r.vec(f"{where}.payload", MAX_PAYLOAD_BYTES)
        # V0 attestations hold V1 events only (the version is not SCALE-encoded).
        runtime.append(Event(imr=3, event_type=RUNTIME_EVENT_TYPE, name=name, payload=payload))
    report_data_offset = r.pos
    report_data = r.take(64, "attestation.report_data")
    config = r.text("attestation.config", MAX_CONFIG_BYTES)
    if r.remaining():
        raise r.fail(f"{r.remaining()} trailing bytes after the attestation", "attestation")
    return Attestation(quote=quote, event_log=event_log, runtime_events=runtime, report_data=report_data,
                       report_data_offset=report_data_offset, config=config)


# --------------------------------------------------------------------------------------------------------------------
# Computing: digests and replay


def _canonical_json(obj: dict[str, Any]) -> bytes:
    # For string and integer values this is RFC 8785 (JCS): sorted ASCII keys, no whitespace, raw non-ASCII,
    # short escapes for \b \f \n \r \t and \u00xx for other control characters.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def v1_preimage(event: Event) -> bytes:
    return event.event_type.to_bytes(4, "little") + b":" + event.name.encode("utf-8") + b":" + event.payload


def v2_preimages(event: Event) -> tuple[bytes, bytes]:
    """The canonical JSON forms dstack has hashed for V2 events, the spec's form first.

    dstack changed the V2 document once ({name, payload, type} → {event, event_type, payload, version}). Both are
    injective encodings of (name, payload), so accepting the one a log's preimage or digest names loses nothing.
    """
    hex_payload = event.payload.hex()
    return (
        _canonical_json({"name": event.name, "payload": hex_payload, "type": event.event_type}),
        _canonical_json({"event": event.name, "event_type": event.event_type, "payload": hex_payload, "version": 2}),
    )


def _pad(digest: bytes) -> bytes:
    return digest if len(digest) == MR_BYTES else digest.ljust(MR_BYTES, b"\x00")


def runtime_preimage(event: Event) -> bytes:
    """The bytes whose SHA-384 is the event's digest. Never fails: for V2 the log only selects among valid forms."""
    if event.version == 1:
        return v1_preimage(event)
    forms = v2_preimages(event)
    if event.preimage in forms:
        return event.preimage  # type: ignore[return-value]  # `in forms` implies bytes
    if event.digest is not None:
        for form in forms:
            if hashlib.sha384(form).digest() == _pad(event.digest):
                return form
    return forms[0]


def runtime_event_digest(event: Event) -> bytes:
    """SHA-384 of the event's V1 or V2 preimage, from (type, name, payload) only.

    Raises PreimageError when the event carries a preimage that is not exactly the canonical bytes: a preimage that
    hashes to the digest but says something else than (name, payload) must not be believed.
    """
    preimage = runtime_preimage(event)
    if event.preimage is not None and event.preimage != preimage:
        raise PreimageError(f"the V{event.version} preimage is not the canonical encoding of the event's "
                            "type, name and payload")
    return hashlib.sha384(preimage).digest()


def replay_digest(event: Event, index: int) -> bytes:
    """The 48 bytes extended for this event: recomputed for runtime events, the log's digest for the others."""
    if event.is_runtime:
        return hashlib.sha384(runtime_preimage(event)).digest()
    if event.digest is None:
        raise InputError(f"event {index} (RTMR{event.imr}, type 0x{event.event_type:08x}) has no digest, so the "
                         "log cannot be replayed", field=f"event_log[{index}].digest")
    return _pad(event.digest)


def replay(events: Iterable[Event]) -> dict[int, bytes]:
    """RTMR0-3 from the log: each starts at 48 zero bytes, then mr = SHA-384(mr || digest) per event in order."""
    registers = dict.fromkeys(range(4), ZERO_MR)
    sha384 = hashlib.sha384
    for index, event in enumerate(events):
        registers[event.imr] = sha384(registers[event.imr] + replay_digest(event, index)).digest()
    return registers


# --------------------------------------------------------------------------------------------------------------------
# Computing: app info and derived values


class KeyProvider(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    id: str


class OtherEvent(BaseModel):
    """A runtime event before system-ready that carries no AppInfo field (or repeats one that was already set)."""

    model_config = ConfigDict(frozen=True)

    index: int
    name: str
    payload: bytes
    duplicate: bool = False


class AppInfo(BaseModel):
    """What the RTMR3 runtime events say about the app, from the events before `system-ready` only (spec §6.2)."""

    model_config = ConfigDict(frozen=True)

    app_id: bytes | None = None
    compose_hash: bytes | None = None
    instance_id: bytes | None = None  # b"" when the event is there but empty (no_instance_id)
    key_provider_info: bytes = b""  # the raw key-provider payload; b"" when absent
    key_provider: KeyProvider | None = None  # decoded on a best-effort basis
    os_image_hash: bytes | None = None
    boot_mr_done: bool = False
    system_ready: bool = False
    storage_fs: str | None = None
    init_script_hashes: list[bytes] = Field(default_factory=list)
    gpu_policy_hash: bytes | None = None
    other_events: list[OtherEvent] = Field(default_factory=list)
    event_indices: dict[str, int] = Field(default_factory=dict)  # field -> index in the log it came from
    events_after_system_ready: int = 0

    def summary(self) -> dict[str, Any]:
        def hx(value: bytes | None) -> str | None:
            return None if value is None else value.hex()

        return {
            "app_id": hx(self.app_id),
            "compose_hash": hx(self.compose_hash),
            "instance_id": hx(self.instance_id),
            "key_provider_info": _text_or_hex(self.key_provider_info),
            "key_provider": self.key_provider.model_dump() if self.key_provider else None,
            "os_image_hash": hx(self.os_image_hash),
            "boot_mr_done": self.boot_mr_done,
            "system_ready": self.system_ready,
            "storage_fs": self.storage_fs,
            "init_script_hashes": [h.hex() for h in self.init_script_hashes],
            "gpu_policy_hash": hx(self.gpu_policy_hash),
            "other_events": [
                {"index": e.index, "name": e.name, "payload": _text_or_hex(e.payload), "duplicate": e.duplicate}
                for e in self.other_events
            ],
            "event_indices": dict(self.event_indices),
            "events_after_system_ready": self.events_after_system_ready,
        }


def _text_or_hex(payload: bytes) -> str:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.hex()
    return text if text.isprintable() else payload.hex()


def decode_key_provider(payload: bytes) -> KeyProvider | None:
    """`{"name": str, "id": str}` (spec §6.4), or None when the payload is empty or not that shape."""
    if not payload:
        return None
    doc = _json_or_none(payload)
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str) or not isinstance(doc.get("id"), str):
        return None
    return KeyProvider(name=doc["name"], id=doc["id"])


_FIRST_ONLY = {
    "app-id": "app_id",
    "compose-hash": "compose_hash",
    "instance-id": "instance_id",
    "key-provider": "key_provider_info",
    "os-image-hash": "os_image_hash",
    "storage-fs": "storage_fs",
    "gpu-policy-hash": "gpu_policy_hash",
}


def extract_app_info(events: Sequence[Event]) -> AppInfo:
    """AppInfo from the RTMR3 runtime events; the first occurrence of each field before `system-ready` wins.

    Events after `system-ready` (application events) count towards RTMR3 but may not redefine the app's identity.
    This trusts the events as given: run it on a log whose RTMR3 check passed.
    """
    values: dict[str, Any] = {}
    indices: dict[str, int] = {}
    init_scripts: list[bytes] = []
    others: list[OtherEvent] = []
    boot_mr_done = system_ready = False
    after = 0
    for index, event in enumerate(events):
        if event.imr != 3 or not event.is_runtime:
            continue
        if system_ready:
            after += 1
            continue
        name = event.name
        if name == "system-ready":
            system_ready = True
            indices["system_ready"] = index
        elif name == "boot-mr-done":
            boot_mr_done = True
            indices.setdefault("boot_mr_done", index)
        elif name == "init-script-hash":
            init_scripts.append(event.payload)
        elif name in _FIRST_ONLY and _FIRST_ONLY[name] not in values:
            key = _FIRST_ONLY[name]
            values[key] = event.payload.decode("utf-8", "replace") if key == "storage_fs" else event.payload
            indices[key] = index
        else:
            others.append(OtherEvent(index=index, name=name, payload=event.payload, duplicate=name in _FIRST_ONLY))
    key_provider_info = values.pop("key_provider_info", b"")
    return AppInfo(
        **values,
        key_provider_info=key_provider_info,
        key_provider=decode_key_provider(key_provider_info),
        boot_mr_done=boot_mr_done,
        system_ready=system_ready,
        init_script_hashes=init_scripts,
        other_events=others,
        event_indices=indices,
        events_after_system_ready=after,
    )


def _td_fields(quote: Quote) -> dict[str, Any] | None:
    return None if quote.body.kind == "sgx" else quote.body.fields


def derived_values(quote: Quote, app_info: AppInfo, ppid: bytes | None) -> dict[str, Any]:
    """mr_key_provider, mr_system, mr_aggregated and device_id (spec §6.3), as lowercase hex.

    RTMR3 is the quote's (equal to the replay once `eventlog.rtmr3_payloads` passed). device_id is None when the PPID
    is unknown: sha256 of an empty PPID would look like a real device id.
    """
    td = _td_fields(quote)
    if td is None:
        raise InputError("mr_system and mr_aggregated need a TDX quote; this is an SGX quote", field="quote")
    kpi = app_info.key_provider_info
    mr_key_provider = hashlib.sha256(kpi).digest() if kpi else bytes(32)
    boot = td["mrtd"] + td["rtmr0"] + td["rtmr1"] + td["rtmr2"]
    config = td["mrconfig"] + td["mrowner"] + td["mrownerconfig"]
    include_config = any(config)  # dstack appends the three fields only when one of them is non-zero
    aggregated = boot + td["rtmr3"] + (config if include_config else b"")
    return {
        "mr_key_provider": mr_key_provider.hex(),
        "mr_system": hashlib.sha256(boot + mr_key_provider).hexdigest(),
        "mr_aggregated": hashlib.sha256(aggregated).hexdigest(),
        "mr_aggregated_includes_config": include_config,
        "device_id": hashlib.sha256(ppid).hexdigest() if ppid is not None else None,
    }


# --------------------------------------------------------------------------------------------------------------------
# Deciding: checks

_HEX_PAYLOAD_EVENTS = {"app-id", "compose-hash", "instance-id", "os-image-hash", "init-script-hash",
                       "gpu-policy-hash", "mr-kms", "rootfs-hash", "device-id"}
_JSON_PAYLOAD_EVENTS = {"key-provider", "gpu-attestation"}


def decode_payload(name: str, payload: bytes) -> Any:
    """A readable form of a known runtime event's payload (hex digest, JSON, text); None when there is none."""
    if not payload:
        return None
    if name in _HEX_PAYLOAD_EVENTS:
        return payload.hex()
    if name in _JSON_PAYLOAD_EVENTS:
        return _json_or_none(payload)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


def _short(value: bytes) -> str:
    text = value.hex()
    return text if len(text) <= 16 else f"{text[:16]}…"


def _sgx_skip(check_id: str, entity: Entity) -> Check:
    return Check(id=check_id, entity=entity, phase="hardware", status=CheckStatus.SKIP, anchor=Anchor.NONE,
                 summary="skipped: the quote is an SGX quote, which has no RTMRs to compare the event log with")


def check_replay(
    events: Sequence[Event], quote: Quote, entity: Entity, *, registers: Sequence[int] = (0, 1, 2, 3),
    narrowed_because: str = "",
) -> Check:
    """`eventlog.replay`: the log's digests replay to the quote's RTMRs (runtime digests recomputed).

    `registers` narrows the comparison, e.g. to (3,) for a stripped attestation log that only holds RTMR3 events;
    `narrowed_because` then says why, in the summary.
    """
    if not registers:
        raise ValueError("check_replay needs at least one register to compare")
    td = _td_fields(quote)
    if td is None:
        return _sgx_skip("eventlog.replay", entity)
    try:
        replayed = replay(events)
    except InputError as exc:
        return Check(id="eventlog.replay", entity=entity, phase="hardware", status=CheckStatus.FAIL,
                     anchor=Anchor.QUOTE, summary=f"The event log cannot be replayed: {exc.message}",
                     details={"error": exc.message, "field": exc.field, "events": len(events)})
    counts = Counter(e.imr for e in events)
    per_register: dict[str, dict[str, Any]] = {}
    mismatches: list[int] = []
    for i in registers:
        quoted = td[f"rtmr{i}"]
        match = replayed[i] == quoted
        per_register[f"rtmr{i}"] = {"events": counts[i], "replayed": replayed[i].hex(), "quoted": quoted.hex(),
                                    "match": match}
        if not match:
            mismatches.append(i)
    names = "–".join(f"RTMR{i}" for i in (registers[0], registers[-1])) if len(registers) > 1 else f"RTMR{registers[0]}"
    details = {
        "events": len(events),
        "registers": per_register,
        "mismatches": [f"rtmr{i}" for i in mismatches],
        "runtime_digests": "recomputed from (type, name, payload); digest fields of runtime events are not used",
        "not_replayed": [f"rtmr{i}" for i in range(4) if i not in registers],
    }
    if mismatches:
        first = mismatches[0]
        also = f" (also {', '.join(f'RTMR{i}' for i in mismatches[1:])})" if len(mismatches) > 1 else ""
        summary = (f"Event log does not replay to RTMR{first}: replayed {replayed[first].hex()}, "
                   f"quoted {td[f'rtmr{first}'].hex()}{also}")
        status = CheckStatus.FAIL
    else:
        summary = f"The event log ({len(events)} events) replays to {names} of the quote"
        if narrowed_because:
            summary += f"; {narrowed_because}"
        status = CheckStatus.PASS
    return Check(id="eventlog.replay", entity=entity, phase="hardware", status=status, anchor=Anchor.QUOTE,
                 summary=summary, details=details)


def _payload_details(event: Event) -> dict[str, Any]:
    shown = event.payload[:DETAIL_PAYLOAD_BYTES]
    return {
        "payload_size": len(event.payload),
        "payload_hex": shown.hex(),
        "payload_truncated": len(shown) < len(event.payload),
        "payload_sha256": hashlib.sha256(event.payload).hexdigest(),
        "decoded": decode_payload(event.name, event.payload),
    }


def check_rtmr3_payloads(events: Sequence[Event], quote: Quote, entity: Entity) -> Check:
    """`eventlog.rtmr3_payloads`: every RTMR3 digest recomputed from (type, name, payload), replayed, compared.

    A digest field that the log does carry must equal the recomputed digest, and a preimage must be the canonical
    one; either disagreement names the event. The recomputed digests must replay to the quote's RTMR3.
    """
    td = _td_fields(quote)
    if td is None:
        return _sgx_skip("eventlog.rtmr3_payloads", entity)
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    mr = ZERO_MR
    for index, event in enumerate(events):
        if event.imr != 3:
            continue
        label = f"RTMR3 event {index} ({event.name or 'unnamed'})"
        preimage = runtime_preimage(event)
        recomputed = hashlib.sha384(preimage).digest()
        row: dict[str, Any] = {
            "index": index,
            "name": event.name,
            "event_type": event.event_type,
            "version": event.version,
            **_payload_details(event),
            "recomputed_digest": recomputed.hex(),
            "digest_field": event.digest.hex() if event.digest is not None else None,
            "digest_field_matches": None,
            "preimage_matches": None,
        }
        if not event.is_runtime:
            problems.append(f"{label} has type 0x{event.event_type:08x}, not the dstack runtime type 0x08000001, so "
                            "its payload is not bound by the runtime digest rule")
        if event.preimage is not None:
            row["preimage_matches"] = event.preimage == preimage
            if not row["preimage_matches"]:
                problems.append(f"{label}: its V{event.version} preimage is not the canonical encoding of its "
                                "type, name and payload")
        if event.digest is not None:
            row["digest_field_matches"] = _pad(event.digest) == recomputed
            if not row["digest_field_matches"]:
                problems.append(f"{label}: digest field {_short(event.digest)} does not match the digest "
                                f"{_short(recomputed)} recomputed from its payload")
        mr = hashlib.sha384(mr + recomputed).digest()
        rows.append(row)
    quoted = td["rtmr3"]
    match = mr == quoted
    if not match:
        problems.append(f"RTMR3 replayed from the recomputed digests is {mr.hex()}, the quote has {quoted.hex()}")
    details = {"events": rows, "replayed": mr.hex(), "quoted": quoted.hex(), "match": match, "problems": problems}
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        return Check(id="eventlog.rtmr3_payloads", entity=entity, phase="hardware", status=CheckStatus.FAIL,
                     anchor=Anchor.QUOTE, summary=problems[0] + more, details=details)
    summary = (f"All {len(rows)} RTMR3 runtime events are bound to their payloads: digests recomputed from "
               "(type, name, payload) replay to RTMR3 of the quote")
    anomalies = sequence_anomalies(events)
    details["anomalies"] = anomalies
    if anomalies:
        more = f" (+{len(anomalies) - 1} more)" if len(anomalies) > 1 else ""
        return Check(id="eventlog.rtmr3_payloads", entity=entity, phase="hardware", status=CheckStatus.WARN,
                     anchor=Anchor.QUOTE, summary=f"{summary}, but {anomalies[0]}{more}", details=details)
    return Check(id="eventlog.rtmr3_payloads", entity=entity, phase="hardware", status=CheckStatus.PASS,
                 anchor=Anchor.QUOTE, summary=summary, details=details)


# What dstack's boot emits before system-ready (spec §6.2, with the names older images used), and which of them
# state the app's identity: dstack-util emits those before boot-mr-done, once each (init-script-hash excepted).
BOOT_EVENTS = frozenset({
    "system-preparing", "app-id", "compose-hash", "init-script-hash", "gpu-policy-hash", "gpu-attestation",
    "instance-id", "boot-mr-done", "os-image-hash", "key-provider", "storage-fs", "system-ready", "mr-kms",
    "rootfs-hash",
})
_IDENTITY_EVENTS = ("app-id", "compose-hash", "instance-id", "init-script-hash", "gpu-policy-hash")


def sequence_anomalies(events: Sequence[Event]) -> list[str]:
    """What a genuine dstack boot would not have logged before system-ready: an identity event stated twice or after
    boot-mr-done, a name dstack does not emit, or a boot without boot-mr-done / system-ready. The first value of a
    field is still the one used (as dstack does); these say the log was added to from somewhere else, e.g. by
    software in the CVM that can extend RTMR3."""
    if not any(e.imr == 3 for e in events):
        return []
    out: list[str] = []
    seen: dict[str, int] = {}
    boot_done: int | None = None
    for index, event in enumerate(events):
        if event.imr != 3 or not event.is_runtime:
            continue
        name = event.name
        if name == "system-ready":
            break
        if name == "boot-mr-done" and boot_done is None:
            boot_done = index
        elif name not in BOOT_EVENTS:
            out.append(f"event {index} ({name[:60]!r}) is not one dstack's boot emits before system-ready")
        elif name in _FIRST_ONLY and name in seen:
            out.append(f"{name} is stated again at event {index}; the first, event {seen[name]}, is the one used")
        elif name in _IDENTITY_EVENTS and boot_done is not None:
            out.append(f"{name} (event {index}) comes after boot-mr-done (event {boot_done}), where dstack never "
                       "emits it")
        seen.setdefault(name, index)
    else:
        out.append("the log has no system-ready event, so the app's own events cannot be told from the boot's")
    if boot_done is None:
        out.append("the log has no boot-mr-done event")
    return out
