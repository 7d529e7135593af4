"""A minimal DER TLV walker: enough for the Intel SGX extension of PCK certificates."""

from __future__ import annotations

from typing import NamedTuple

TAG_BOOLEAN = 0x01
TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_OID = 0x06
TAG_ENUMERATED = 0x0A
TAG_SEQUENCE = 0x30


class DerError(ValueError):
    pass


class Tlv(NamedTuple):
    tag: int
    value: bytes


def read_tlvs(data: bytes) -> list[Tlv]:
    """Split a run of DER TLVs; raises DerError on any length that does not fit."""
    out: list[Tlv] = []
    pos = 0
    end = len(data)
    while pos < end:
        tag, start, pos = header(data, pos, end)
        out.append(Tlv(tag, data[start:pos]))
    return out


def header(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """The TLV starting at `pos` and ending by `end`: (tag, first value byte, end of value), without copying.

    Raises DerError for a header or length that does not fit, as read_tlvs does."""
    if end - pos < 2:
        raise DerError(f"truncated TLV header at offset {pos}")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length >= 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > end:
            raise DerError(f"bad long-form length at offset {pos - 1}")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > end:
        raise DerError(f"TLV at offset {pos} declares {length} bytes, {end - pos} left")
    return tag, pos, pos + length


def spans(data: bytes, pos: int, end: int) -> list[tuple[int, int, int]] | None:
    """(tag, first value byte, end of value) of each TLV in data[pos:end], without copying; None where read_tlvs
    would raise (the caller then takes the path that reports the error)."""
    out = []
    while pos < end:
        if end - pos < 2:
            return None
        n = data[pos + 1]
        v = pos + 2
        if n >= 0x80:
            k = n & 0x7F
            if k == 0 or k > 4 or v + k > end:
                return None
            n = int.from_bytes(data[v : v + k], "big")
            v += k
        e = v + n
        if e > end:
            return None
        out.append((data[pos], v, e))
        pos = e
    return out


def decode_oid(value: bytes) -> str:
    if not value:
        raise DerError("empty OID")
    first = value[0]
    arcs = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    acc = 0
    for b in value[1:]:
        acc = (acc << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(acc)
            acc = 0
    return ".".join(str(a) for a in arcs)


def encode_oid(dotted: str) -> bytes:
    """The DER content bytes of an OID (base-128 arcs, most significant group first)."""
    arcs = [int(part) for part in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2:
        raise ValueError(f"invalid OID {dotted!r}")
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        groups = [arc & 0x7F]
        arc >>= 7
        while arc:
            groups.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(groups))
    return bytes(out)


def decode_uint(value: bytes) -> int:
    if not value or value[0] & 0x80:
        raise DerError("not a non-negative INTEGER")
    return int.from_bytes(value, "big")
