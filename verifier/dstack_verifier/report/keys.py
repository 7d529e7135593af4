"""Ed25519 signing keys: generated on first use (file mode 0600), loaded from PEM (PKCS#8 / SubjectPublicKeyInfo),
raw 32 bytes or 64 hex digits; a key is named by the SHA-256 of its raw public key."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import InputError
from ..evidence import read_bounded

MAX_KEY_FILE = 64 * 1024
_HEX_KEY = re.compile(rb"\s*(?:0x)?([0-9a-fA-F]{64})\s*")


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """The DSSE keyid: SHA-256 of the raw 32-byte public key, hex."""
    return hashlib.sha256(raw_public(key)).hexdigest()


def fingerprint(key: Ed25519PublicKey) -> str:
    """The key id grouped by four hex digits, for people comparing it by eye."""
    return group_hex(key_id(key))


def group_hex(digest: str) -> str:
    return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """The key at `path`; generated there (PKCS#8 PEM, mode 0600 from creation on) when the file does not exist."""
    if path.exists():
        return load_signing_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        # O_EXCL: never overwrite a key; the mode is set at creation, so the key is never readable by others.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use that one
        return load_signing_key(path)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return key


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    data = read_bounded(path, MAX_KEY_FILE)
    source = str(path)
    if b"-----BEGIN" in data:
        if b"ENCRYPTED" in data:
            raise InputError("encrypted private keys are not supported (export it unencrypted, PKCS#8)", source=source)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise InputError("not a PEM private key (PKCS#8 Ed25519 expected)", source=source) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise InputError(f"a {type(key).__name__.removeprefix('_')} key; only Ed25519 signs packs", source=source)
        return key
    return Ed25519PrivateKey.from_private_bytes(_raw_key(data, source, "private"))


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A trusted key: a PEM public key (or a PEM private key, whose public half is taken), raw 32 bytes or hex."""
    data = read_bounded(path, MAX_KEY_FILE)
    source = str(path)
    if b"PRIVATE KEY-----" in data:
        return load_signing_key(path).public_key()
    if b"-----BEGIN" in data:
        return public_key_from_pem(data, source)
    return Ed25519PublicKey.from_public_bytes(_raw_key(data, source, "public"))


def public_key_from_pem(data: bytes, source: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise InputError("not a PEM public key", source=source) from None
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"a {type(key).__name__.removeprefix('_')} key; packs are signed with Ed25519", source=source)
    return key


def _raw_key(data: bytes, source: str, what: str) -> bytes:
    if len(data) == 32:
        return data
    match = _HEX_KEY.fullmatch(data)
    if match:
        return bytes.fromhex(match.group(1).decode())
    raise InputError(f"not an Ed25519 {what} key: expected PEM, 32 raw bytes or 64 hex digits ({len(data)} bytes)",
                     source=source)
