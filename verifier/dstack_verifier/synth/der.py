"""Minimal DER encoder for the Intel SGX PCK certificate extension.

`cryptography` has no public generic ASN.1 writer, and the SGX extension is an
opaque blob to it, so the few universal types the extension needs are encoded
here by hand. Only definite-length DER is produced.
"""

from __future__ import annotations

from ..quote.der import (
    TAG_BOOLEAN,
    TAG_ENUMERATED,
    TAG_INTEGER,
    TAG_OCTET_STRING,
    TAG_OID,
    TAG_SEQUENCE,
    encode_oid,
)

__all__ = ["TAG_BOOLEAN", "TAG_ENUMERATED", "TAG_INTEGER", "TAG_OCTET_STRING", "TAG_OID", "TAG_SEQUENCE"]


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
    return tlv(TAG_OID, encode_oid(dotted))


def sequence(*items: bytes) -> bytes:
    return tlv(TAG_SEQUENCE, b"".join(items))
