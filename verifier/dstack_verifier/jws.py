"""Compact JWS tokens (JWTs), as NVIDIA's NRAS and Intel Trust Authority return them: split and decoded here,
trusted only once the caller has checked the signature."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from .errors import InputError
from .jsontext import json_kind, load_json

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url(text: str, source: str, field: str) -> bytes:
    """Unpadded base64url, strictly; InputError naming `field` otherwise."""
    if not _B64URL.fullmatch(text):
        raise InputError("not base64url", source=source, field=field)
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InputError("not base64url", source=source, field=field) from None


@dataclass(frozen=True)
class CompactJws:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes  # header.claims as sent: what the signature covers
    signature: bytes


def decode_compact(text: str, source: str, fields: tuple[str, str, str] = ("header", "claims", "signature"),
                   field: str | None = None) -> CompactJws:
    """Split `text` into its three parts; header and claims must be JSON objects. Errors name the part by `fields`
    (and the whole token by `field`)."""
    parts = text.split(".")
    if len(parts) != 3:
        raise InputError(f"a JWT has 3 dot-separated parts, this one has {len(parts)}", source=source, field=field)
    decoded = []
    for part, name in zip(parts[:2], fields[:2], strict=True):
        try:
            doc = load_json(b64url(part, source, name).decode("utf-8"), source, name)
        except UnicodeDecodeError:
            raise InputError("not UTF-8", source=source, field=name) from None
        if not isinstance(doc, dict):
            raise InputError(f"expected a JSON object, got {json_kind(doc)}", source=source, field=name)
        decoded.append(doc)
    return CompactJws(decoded[0], decoded[1], f"{parts[0]}.{parts[1]}".encode("ascii"),
                      b64url(parts[2], source, fields[2]))
