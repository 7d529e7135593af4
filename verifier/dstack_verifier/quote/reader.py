"""A bounds-checked little-endian reader that records the byte range of every field it reads.

The byte-range map feeds the GUI's hex pane, and every short read becomes an InputError naming the field and
offset, so a truncated or hostile quote never raises anything else.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import InputError

MAX_FIELD_LEN = 1 << 20  # dcap-qvl's bound on any length-prefixed field


class FieldSpan(NamedTuple):
    """A named byte range (a tuple: a quote records a dozen of these per parse, and a tuple is cheap to make)."""

    name: str
    start: int
    end: int


class Reader:
    def __init__(self, data: bytes, spans: list[FieldSpan] | None = None) -> None:
        self.data = data
        self.pos = 0
        self.spans: list[FieldSpan] = [] if spans is None else spans

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, name: str, size: int) -> bytes:
        if size > self.remaining():
            raise InputError(
                f"truncated: needs {size} bytes, only {self.remaining()} left (quote is {len(self.data)} bytes)",
                field=name,
                offset=self.pos,
            )
        start = self.pos
        self.pos += size
        self.spans.append(FieldSpan(name, start, self.pos))
        return self.data[start : self.pos]

    def u16(self, name: str) -> int:
        return int.from_bytes(self.take(name, 2), "little")

    def u32(self, name: str) -> int:
        return int.from_bytes(self.take(name, 4), "little")

    def length(self, name: str, size_bytes: int) -> int:
        """A length prefix, bounded so a hostile length cannot make us allocate or scan gigabytes."""
        start = self.pos
        value = self.u16(name) if size_bytes == 2 else self.u32(name)
        if value > MAX_FIELD_LEN:
            raise InputError(f"length {value} exceeds the maximum of {MAX_FIELD_LEN}", field=name, offset=start)
        return value
