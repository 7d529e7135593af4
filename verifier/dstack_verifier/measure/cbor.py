"""A minimal, strict, bounded CBOR decoder (RFC 8949 subset) for dstack measurement documents.

`measurement.tdx.cbor` arrives inside an untrusted vm_config, so the decoder accepts only what those documents use:
definite-length maps with text keys, definite-length arrays, text and byte strings, unsigned integers, false, true
and null. Everything else (negative integers, tags, floats, undefined, simple values, indefinite lengths, reserved
encodings, non-shortest argument encodings, duplicate keys, trailing bytes) is an InputError naming the path and the
byte offset. Lengths are checked against the remaining input before anything is sliced or allocated, and nesting
depth and item count are capped, so a hostile document costs at most a pass over its own bytes.

cbor2 is deliberately not used: it is not a dependency, and a general decoder accepts far more than we want.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError

MAX_DOCUMENT_BYTES = 1 << 20  # the TDX document is 384 bytes; other platforms' documents are a few KiB
MAX_DEPTH = 16
MAX_ITEMS = 4096  # containers, keys and values together

_MAJOR_UINT, _MAJOR_NEGINT, _MAJOR_BYTES, _MAJOR_TEXT = 0, 1, 2, 3
_MAJOR_ARRAY, _MAJOR_MAP, _MAJOR_TAG, _MAJOR_SIMPLE = 4, 5, 6, 7
_SIMPLE_VALUES = {20: False, 21: True, 22: None}
# The smallest value each argument width may carry: anything below it had a shorter encoding (RFC 8949 §4.2.1).
_MIN_FOR_WIDTH = {1: 24, 2: 1 << 8, 4: 1 << 16, 8: 1 << 32}
_MAJOR_NAMES = {_MAJOR_NEGINT: "negative integer", _MAJOR_TAG: "tag"}


class _Decoder:
    def __init__(self, data: bytes, source: str, max_depth: int, max_items: int) -> None:
        self.data = data
        self.pos = 0
        self.source = source
        self.max_depth = max_depth
        self.items_left = max_items

    def fail(self, message: str, path: str, offset: int) -> InputError:
        return InputError(message, source=self.source, field=path or None, offset=offset)

    def head(self, path: str) -> tuple[int, int, int, int]:
        """(major type, additional info, argument, offset of the head) of the next item."""
        start = self.pos
        if start >= len(self.data):
            raise self.fail("unexpected end of data", path, start)
        initial = self.data[start]
        major, info = initial >> 5, initial & 0x1F
        self.pos += 1
        if info < 24:
            return major, info, info, start
        if info == 31:
            raise self.fail("indefinite-length items are not accepted", path, start)
        if info > 27:
            raise self.fail(f"reserved additional information {info}", path, start)
        width = 1 << (info - 24)
        if major == _MAJOR_SIMPLE:
            # 24 is a one-byte simple value, 25-27 are floats: none belongs in a measurement document.
            kind = "simple value" if info == 24 else "floating-point number"
            raise self.fail(f"{kind} not accepted", path, start)
        end = self.pos + width
        if end > len(self.data):
            raise self.fail("unexpected end of data inside an item head", path, start)
        argument = int.from_bytes(self.data[self.pos:end], "big")
        self.pos = end
        if argument < _MIN_FOR_WIDTH[width]:
            raise self.fail(f"{argument} is not in its shortest encoding", path, start)
        return major, info, argument, start

    def take_item(self, path: str, offset: int) -> None:
        self.items_left -= 1
        if self.items_left < 0:
            raise self.fail("too many items", path, offset)

    def value(self, depth: int, path: str) -> Any:
        major, info, argument, start = self.head(path)
        self.take_item(path, start)
        if major == _MAJOR_UINT:
            return argument
        if major in (_MAJOR_BYTES, _MAJOR_TEXT):
            end = self.pos + argument
            if end > len(self.data):
                raise self.fail(f"string of {argument} bytes runs past the end of the data", path, start)
            raw = self.data[self.pos:end]
            self.pos = end
            if major == _MAJOR_BYTES:
                return raw
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail("text string is not valid UTF-8", path, start) from None
        if major == _MAJOR_SIMPLE:
            if info not in _SIMPLE_VALUES:
                raise self.fail(f"simple value {info} not accepted", path, start)
            return _SIMPLE_VALUES[info]
        if major in (_MAJOR_ARRAY, _MAJOR_MAP):
            if depth >= self.max_depth:
                raise self.fail(f"nested deeper than {self.max_depth}", path, start)
            # Every element takes at least one byte: a count above what is left cannot be honest.
            needed = argument * (2 if major == _MAJOR_MAP else 1)
            if needed > len(self.data) - self.pos:
                raise self.fail(f"{argument} elements cannot fit in the remaining data", path, start)
            if major == _MAJOR_ARRAY:
                return [self.value(depth + 1, f"{path}[{i}]") for i in range(argument)]
            return self.map(argument, depth, path)
        raise self.fail(f"{_MAJOR_NAMES.get(major, f'major type {major}')} not accepted", path, start)

    def map(self, count: int, depth: int, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for _ in range(count):
            key_offset = self.pos
            key = self.value(depth + 1, f"{path}.<key>" if path else "<key>")
            if not isinstance(key, str):
                raise self.fail("map keys must be text strings", path, key_offset)
            if key in out:
                raise self.fail(f"duplicate map key {key[:40]!r}", path, key_offset)
            out[key] = self.value(depth + 1, f"{path}.{key}" if path else key)
        return out


def decode_cbor(
    data: bytes,
    *,
    source: str = "CBOR",
    max_bytes: int = MAX_DOCUMENT_BYTES,
    max_depth: int = MAX_DEPTH,
    max_items: int = MAX_ITEMS,
) -> Any:
    """Decode exactly one CBOR item that spans all of `data`: dict[str, …], list, str, bytes, int, bool or None.

    Errors name the path of the offending item (e.g. `tdvf.mrtd.two_pass`) and its byte offset.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InputError(f"expected bytes, got {type(data).__name__}", source=source)
    raw = bytes(data)
    if len(raw) > max_bytes:
        raise InputError(f"{len(raw)} bytes, more than the {max_bytes} allowed", source=source)
    decoder = _Decoder(raw, source, max_depth, max_items)
    value = decoder.value(0, "")
    if decoder.pos != len(raw):
        raise InputError(f"{len(raw) - decoder.pos} trailing bytes after the item", source=source,
                         offset=decoder.pos)
    return value
