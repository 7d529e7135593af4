"""dstack's "V1" attestation: a MessagePack map (dstack-attest `v1.rs`, rmp_serde `to_vec_named`).

    {version: 1,
     platform: {kind: "tdx", data: {quote, event_log: [TdxEvent]}},
     stack: {kind: "dstack" | "dstack-pod", data: {report_data, runtime_events: [RuntimeEvent], config
                                                   [, report_data_payload]}}}

Fields are read by name in any order, as serde does; a key we do not know is skipped (still well-formed, and
bounded), a key given twice is refused. rmp writes the serde_human_bytes fields (event digests and payloads) as `bin`
and a plain `Vec<u8>` (the quote, report_data) as an array of integers 0..255; either field reads in either form.
Every defect is an InputError naming the field path and the byte offset. Only the `tdx` platform is decoded: the
others (GCP's TDX+TPM, SEV-SNP, Nitro) measure their OS with evidence this inspector does not verify.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator

from .errors import InputError
from .eventlog import (
    MAX_CONFIG_BYTES,
    MAX_DIGEST_BYTES,
    MAX_EVENTS,
    MAX_NAME_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_PREIMAGE_BYTES,
    MAX_QUOTE_BYTES,
    RUNTIME_EVENT_TYPE,
    Attestation,
    Event,
    _Cursor,
)

ATTESTATION_VERSION = 1
MAX_DEPTH = 32  # nesting allowed inside a skipped value: the V1 schema itself is five levels deep
REPORT_DATA_BYTES = 64
MAX_PAYLOAD_TEXT = 1 << 20  # a dstack-pod's report_data_payload
# The kinds decoded ("" keys the reason given for any other). GCP's TDX+TPM, SEV-SNP and the Nitro kinds measure
# their OS with evidence this inspector does not verify.
PLATFORMS = {"tdx": "", "": "only tdx (not gcp-tdx, sev-snp, nitro-enclave or aws-nitro-tpm)"}
STACKS = {"dstack": "", "dstack-pod": "", "": "only dstack and dstack-pod"}
MAX_KEY_BYTES = 1024
MAX_SKIPPED = 1 << 16  # values under keys this reader does not know: dstack writes none, so a few suffice

# MessagePack first bytes: the fix forms of a family hold a small length in the byte itself; the others are
# followed by a big-endian length (or value) of the size given.
_FIXMAP, _FIXARRAY, _FIXSTR = range(0x80, 0x90), range(0x90, 0xA0), range(0xA0, 0xC0)
_STR = {0xD9: 1, 0xDA: 2, 0xDB: 4}
_BIN = {0xC4: 1, 0xC5: 2, 0xC6: 4}
_ARRAY = {0xDC: 2, 0xDD: 4}
_MAP = {0xDE: 2, 0xDF: 4}
_UINT = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_INT = {0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
_EXT = {0xC7: 1, 0xC8: 2, 0xC9: 4}
_FIXEXT = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
_FLOAT = {0xCA: 4, 0xCB: 8}
# For stepping over any value: the first bytes followed by a value of known size, by a byte length, by a count.
_SCALAR = {**_UINT, **_INT, **_FLOAT}
_BYTES = {**_STR, **_BIN}
_CONTAINER = {**_ARRAY, **_MAP}


# rmp writes an integer below 128 as itself, and 128..255 as uint8 (0xcc, then the byte). In a run of such items a
# 0xcc byte at an item's start is always a marker, so deleting each marker (scanning left to right) leaves the bytes.
_MARKER = re.compile(rb"\xcc(.)", re.DOTALL)


@functools.lru_cache(maxsize=16)
def _canonical_items(count: int) -> re.Pattern[bytes]:
    return re.compile(rb"(?:[\x00-\x7f]|\xcc[\x80-\xff]){%d}" % count)


def _kind(first: int) -> str:
    """What a MessagePack first byte introduces, for messages."""
    if first <= 0x7F or first >= 0xE0 or first in _UINT or first in _INT:
        return "an integer"
    if 0x80 <= first <= 0x8F or first in _MAP:
        return "a map"
    if 0x90 <= first <= 0x9F or first in _ARRAY:
        return "an array"
    if 0xA0 <= first <= 0xBF or first in _STR:
        return "a string"
    if first in _BIN:
        return "binary data"
    if first == 0xC0:
        return "nil"
    if first in (0xC2, 0xC3):
        return "a boolean"
    if first in _FLOAT:
        return "a float"
    if first in _EXT or first in _FIXEXT:
        return "an extension value"
    return f"the unused byte 0x{first:02x}"


class MsgpackCursor(_Cursor):
    """Typed MessagePack reads over the bytes; a value of the wrong type names what was found instead."""

    def __init__(self, data: bytes, source: str, what: str) -> None:
        super().__init__(data, source, what)
        self.skipped = 0

    def _first(self, field: str) -> int:
        return self.uint(1, field)

    def _big(self, size: int, field: str) -> int:
        return int.from_bytes(self.take(size, field), "big")

    def _wrong(self, expected: str, first: int, field: str, at: int) -> InputError:
        return self.fail(f"expected {expected}, found {_kind(first)}", field, at)

    def _count(self, count: int, field: str, at: int, limit: int, unit: str) -> int:
        # Each item takes at least one byte: a count beyond what is left is truncation, found before any loop.
        if count > limit:
            raise self.fail(f"{count} {unit}, more than the {limit} allowed", field, at)
        if count > self.remaining():
            raise self.fail(f"truncated: {count} {unit} announced, only {self.remaining()} bytes left", field, at)
        return count

    def unsigned(self, field: str, limit: int) -> int:
        at = self.pos
        first = self._first(field)
        if first <= 0x7F:
            value = first
        elif first in _UINT:
            value = self._big(_UINT[first], field)
        elif first in _INT:
            value = int.from_bytes(self.take(_INT[first], field), "big", signed=True)
        elif first >= 0xE0:
            value = first - 0x100
        else:
            raise self._wrong("an integer", first, field, at)
        if not 0 <= value <= limit:
            raise self.fail(f"value {value} is out of range 0..{limit}", field, at)
        return value

    def _header(self, field: str, fixed: range, sized: dict[int, int], expected: str) -> tuple[int, int]:
        """(offset, length) of a string, array or map: the fix form holds the length in its low bits, the others
        in a big-endian field after the first byte."""
        at = self.pos
        first = self._first(field)
        if first in fixed:
            return at, first - fixed.start
        if first in sized:
            return at, self._big(sized[first], field)
        raise self._wrong(expected, first, field, at)

    def string(self, field: str, limit: int) -> str:
        at, size = self._header(field, _FIXSTR, _STR, "a string")
        if size > limit:
            raise self.fail(f"string of {size} bytes, more than the {limit} allowed", field, at)
        start = self.pos
        try:
            return self.take(size, field).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail("string is not UTF-8", field, start + exc.start) from None

    def blob(self, field: str, limit: int) -> bytes:
        """`bin`, or an array of integers 0..255 (how serde writes a plain Vec<u8>)."""
        if self.remaining() and self.data[self.pos] in _BIN:
            at, size = self.pos, self._big(_BIN[self._first(field)], field)
            if size > limit:
                raise self.fail(f"{size} bytes, more than the {limit} allowed", field, at)
            return self.take(size, field)
        at, count = self._header(field, _FIXARRAY, _ARRAY, "bytes (bin or an array of integers)")
        self._count(count, field, at, limit, "bytes")
        canonical = _canonical_items(count).match(self.data, self.pos)
        if canonical:  # the way rmp writes bytes: read at C speed (a 5 kB quote is 5,000 items)
            self.pos = canonical.end()
            return _MARKER.sub(rb"\1", canonical.group())
        out = bytearray(count)
        data, pos, end = self.data, self.pos, len(self.data)
        for i in range(count):
            if pos < end and data[pos] <= 0x7F:  # the common case, one byte each, read without a call
                out[i] = data[pos]
                pos += 1
            else:
                self.pos = pos
                out[i] = self.unsigned(f"{field}[{i}]", 0xFF)
                pos = self.pos
        self.pos = pos
        return bytes(out)

    def array(self, field: str, limit: int, unit: str) -> int:
        at, count = self._header(field, _FIXARRAY, _ARRAY, "an array")
        return self._count(count, field, at, limit, unit)

    def fields(self, field: str) -> Iterator[tuple[str, str]]:
        """The keys of a map, each with its field path; the caller reads (or skips) each value in turn."""
        at, count = self._header(field, _FIXMAP, _MAP, "a map")
        self._count(count, field, at, 64, "keys")
        seen: set[str] = set()
        for _ in range(count):
            key_at = self.pos
            key = self.string(f"{field} key", MAX_KEY_BYTES)
            if key in seen:
                raise self.fail(f"key {key[:40]!r} given twice", f"{field}.{key[:40]}", key_at)
            seen.add(key)
            yield key, f"{field}.{key[:40]}"

    def skip(self, field: str, depth: int = 0) -> None:
        """Step over one well-formed value of any type (an unknown key's)."""
        at = self.pos
        if depth > MAX_DEPTH:
            raise self.fail(f"values nested more than {MAX_DEPTH} deep", field, at)
        self.skipped += 1
        if self.skipped > MAX_SKIPPED:
            raise self.fail(f"more than {MAX_SKIPPED} values under keys dstack does not write", field, at)
        first = self._first(field)
        if first <= 0x7F or first >= 0xE0 or first in (0xC0, 0xC2, 0xC3):
            return
        if first in _SCALAR:
            self.take(_SCALAR[first], field)
        elif first in _FIXSTR:
            self.take(first - _FIXSTR.start, field)
        elif first in _BYTES:
            self.take(self._big(_BYTES[first], field), field)
        elif first in _FIXEXT:
            self.take(1 + _FIXEXT[first], field)
        elif first in _EXT:
            self.take(1 + self._big(_EXT[first], field), field)
        elif 0x80 <= first <= 0x9F or first in _ARRAY or first in _MAP:
            is_map = first <= 0x8F or first in _MAP
            count = first & 0x0F if first <= 0x9F else self._big(_CONTAINER[first], field)
            items = self._count(count * (2 if is_map else 1), field, at, 1 << 33, "items")
            for _ in range(items):
                self.skip(field, depth + 1)
        else:
            raise self.fail("byte 0xc1 is not MessagePack", field, at)


def _read(r: MsgpackCursor, field: str, readers: dict[str, Callable[[str], object]],
          required: tuple[str, ...]) -> dict[str, object]:
    """A map read as a struct: each known key by its reader, unknown keys skipped, required keys checked."""
    start = r.pos
    out: dict[str, object] = {}
    for key, where in r.fields(field):
        reader = readers.get(key)
        if reader is None:
            r.skip(where)
        else:
            out[key] = reader(where)
    for key in required:
        if key not in out:
            raise r.fail("missing", f"{field}.{key}", start)
    return out


def _tagged(r: MsgpackCursor, field: str, kinds: dict[str, str],
            data: Callable[[str, str], object]) -> object:
    """An adjacently tagged enum, {kind, data}: the kind must be one of `kinds` (else the error says what it is),
    then `data(kind, path)` reads the value. serde writes the kind first; when the data comes first it is stepped
    over, then read once the kind is known. A unit variant has no data: its kind alone is refused, as it should."""
    start = r.pos
    kind: str | None = None
    value: object = None
    value_at: int | None = None
    for key, where in r.fields(field):
        if key == "kind":
            kind_at = r.pos
            kind = r.string(where, 64)
            if kind not in kinds:
                reason = kinds.get("", "")
                raise r.fail(f"{field.rsplit('.', 1)[-1]} {kind[:40]!r} is not supported; {reason}", where, kind_at)
        elif key == "data" and kind is not None:
            value_at, value = r.pos, data(kind, where)
        elif key == "data":
            value_at = r.pos
            r.skip(where)
        else:
            r.skip(where)
    if kind is None:
        raise r.fail("missing", f"{field}.kind", start)
    if value_at is None:
        raise r.fail("missing", f"{field}.data", start)
    if value is None:
        end, r.pos = r.pos, value_at
        value = data(kind, f"{field}.data")
        r.pos = end
    return value


def _version(r: MsgpackCursor, where: str) -> int:
    at = r.pos
    value = r.unsigned(where, 0xFFFFFFFF)
    if value not in (1, 2):
        raise r.fail(f"event log version {value} (expected 1 or 2)", where, at)
    return value


def _hash_input(r: MsgpackCursor, where: str) -> bytes | None:
    """The optional preimage, a hex string (nil is None, as serde reads it)."""
    at = r.pos
    if r.remaining() and r.data[at] == 0xC0:
        r.pos += 1
        return None
    text = r.string(where, 2 * MAX_PREIMAGE_BYTES)
    if len(text) % 2 or not all(c in "0123456789abcdefABCDEF" for c in text):
        raise r.fail("not an even number of hex digits", where, at)
    return bytes.fromhex(text)


def _tdx_event(r: MsgpackCursor, where: str) -> Event:
    fields = _read(r, where, {
        "imr": lambda w: r.unsigned(w, 3),
        "event_type": lambda w: r.unsigned(w, 0xFFFFFFFF),
        "digest": lambda w: r.blob(w, MAX_DIGEST_BYTES),
        "event": lambda w: r.string(w, MAX_NAME_BYTES),
        "event_payload": lambda w: r.blob(w, MAX_PAYLOAD_BYTES),
        "version": lambda w: _version(r, w),
        "hash_input": lambda w: _hash_input(r, w),
    }, ("imr", "event_type", "event", "event_payload"))
    return Event(imr=fields["imr"], event_type=fields["event_type"], digest=fields.get("digest") or None,
                 name=fields["event"], payload=fields["event_payload"], version=fields.get("version", 1),
                 preimage=fields.get("hash_input") or None)


def _runtime_event(r: MsgpackCursor, where: str) -> Event:
    fields = _read(r, where, {
        "event": lambda w: r.string(w, MAX_NAME_BYTES),
        "payload": lambda w: r.blob(w, MAX_PAYLOAD_BYTES),
        "version": lambda w: _version(r, w),
    }, ("event", "payload"))
    return Event(imr=3, event_type=RUNTIME_EVENT_TYPE, name=fields["event"], payload=fields["payload"],
                 version=fields.get("version", 1))


def _events(r: MsgpackCursor, where: str, one: Callable[[MsgpackCursor, str], Event]) -> list[Event]:
    return [one(r, f"{where}[{i}]") for i in range(r.array(where, MAX_EVENTS, "events"))]


def _platform(r: MsgpackCursor, kind: str, where: str) -> dict[str, object]:
    return _read(r, where, {
        "quote": lambda w: r.blob(w, MAX_QUOTE_BYTES),
        "event_log": lambda w: _events(r, w, _tdx_event),
    }, ("quote", "event_log"))


def _stack(r: MsgpackCursor, kind: str, where: str) -> dict[str, object]:
    def report_data(w: str) -> tuple[bytes, int]:
        at = r.pos
        value = r.blob(w, REPORT_DATA_BYTES)
        if len(value) != REPORT_DATA_BYTES:
            raise r.fail(f"report_data is {len(value)} bytes, not {REPORT_DATA_BYTES}", w, at)
        return value, at

    readers: dict[str, Callable[[str], object]] = {
        "report_data": report_data,
        "runtime_events": lambda w: _events(r, w, _runtime_event),
        "config": lambda w: r.string(w, MAX_CONFIG_BYTES),
    }
    required = ("report_data", "runtime_events", "config")
    if kind == "dstack-pod":
        readers["report_data_payload"] = lambda w: r.string(w, MAX_PAYLOAD_TEXT)
        required += ("report_data_payload",)
    return {"kind": kind, **_read(r, where, readers, required)}


def decode_msgpack_attestation(blob: bytes, source: str) -> Attestation:
    """Decode a V1 attestation whose platform is `tdx` (the caller has bounded its size)."""
    r = MsgpackCursor(blob, source, "attestation")

    def version(w: str) -> int:
        at = r.pos
        value = r.unsigned(w, 1 << 64)
        if value != ATTESTATION_VERSION:
            raise r.fail(f"attestation version {value} (expected {ATTESTATION_VERSION})", w, at)
        return value

    top = _read(r, "attestation", {
        "version": version,
        "platform": lambda w: _tagged(r, w, PLATFORMS, lambda kind, d: _platform(r, kind, d)),
        "stack": lambda w: _tagged(r, w, STACKS, lambda kind, d: _stack(r, kind, d)),
    }, ("version", "platform", "stack"))
    if r.remaining():
        raise r.fail(f"{r.remaining()} trailing bytes after the attestation", "attestation")
    platform: dict = top["platform"]  # type: ignore[assignment]
    stack: dict = top["stack"]  # type: ignore[assignment]
    report_data, report_data_offset = stack["report_data"]
    return Attestation(format="msgpack-v1", quote=platform["quote"], event_log=platform["event_log"],
                       runtime_events=stack["runtime_events"], report_data=report_data,
                       report_data_offset=report_data_offset, config=stack["config"], stack=stack["kind"],
                       report_data_payload=stack.get("report_data_payload"))
