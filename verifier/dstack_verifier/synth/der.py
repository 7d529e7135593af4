"""Minimal DER encoder for the Intel SGX PCK certificate extension.

`cryptography` has no public generic ASN.1 writer, and the SGX extension is an
opaque blob to it, so the few universal types the extension needs are encoded
here by hand. Only definite-length DER is produced.
"""

from __future__ import annotations

TAG_BOOLEAN = 0x01
TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_OID = 0x06
TAG_ENUMERATED = 0x0A
TAG_SEQUENCE = 0x30


def encode_length(length: int) -> bytes:
    """Short form below 128, otherwise long form with the minimal number of length bytes."""
    if length < 0:
        raise ValueError("negative DER length")
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + encode_length(len(content)) + content


def _signed_content(value: int) -> bytes:
    # Two's complement with the minimal length; a leading 0x00 is kept when the
    # top bit would otherwise make a positive value look negative (255 -> 00 FF).
    length = max(1, (value.bit_length() + 8) // 8)
    return value.to_bytes(length, "big", signed=True)


def integer(value: int) -> bytes:
    return tlv(TAG_INTEGER, _signed_content(value))


def enumerated(value: int) -> bytes:
    return tlv(TAG_ENUMERATED, _signed_content(value))


def boolean(value: bool) -> bytes:
    # DER requires TRUE to be exactly 0xFF.
    return tlv(TAG_BOOLEAN, b"\xff" if value else b"\x00")


def octet_string(value: bytes) -> bytes:
    return tlv(TAG_OCTET_STRING, bytes(value))


def oid(dotted: str) -> bytes:
    arcs = [int(part) for part in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2:
        raise ValueError(f"invalid OID {dotted!r}")
    first = arcs[0] * 40 + arcs[1]
    out = bytearray()
    for arc in [first, *arcs[2:]]:
        # Base-128, most significant group first, continuation bit on all but the last.
        groups = [arc & 0x7F]
        arc >>= 7
        while arc:
            groups.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(groups))
    return tlv(TAG_OID, bytes(out))


def sequence(*items: bytes) -> bytes:
    return tlv(TAG_SEQUENCE, b"".join(items))
