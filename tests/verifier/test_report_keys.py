"""Signing keys (generated 0600, loaded from PEM/raw/hex) and DSSE envelopes (PAE, sign, verify)."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dstack_verifier.errors import InputError
from dstack_verifier.report.dsse import SignatureError, pae, parse_envelope, sign_envelope
from dstack_verifier.report.keys import (
    fingerprint,
    key_id,
    load_or_create_signing_key,
    load_public_key,
    load_signing_key,
    public_pem,
    raw_public,
)

SEED = bytes(range(32))


def test_key_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "data" / "signing-key.pem"
    key = load_or_create_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    again = load_or_create_signing_key(path)
    assert raw_public(again.public_key()) == raw_public(key.public_key())


def test_fingerprint_is_the_sha256_of_the_raw_public_key_grouped() -> None:
    public = Ed25519PrivateKey.from_private_bytes(SEED).public_key()
    ident = key_id(public)
    assert len(ident) == 64
    assert fingerprint(public) == " ".join(ident[i:i + 4] for i in range(0, 64, 4))
    assert ident == hashlib.sha256(raw_public(public)).hexdigest()


def test_private_key_from_raw_bytes_hex_and_pem_agree(tmp_path: Path) -> None:
    expected = raw_public(Ed25519PrivateKey.from_private_bytes(SEED).public_key())
    (tmp_path / "raw").write_bytes(SEED)
    (tmp_path / "hex").write_text("0x" + SEED.hex() + "\n")
    pem = Ed25519PrivateKey.from_private_bytes(SEED).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "pem").write_bytes(pem)
    for name in ("raw", "hex", "pem"):
        assert raw_public(load_signing_key(tmp_path / name).public_key()) == expected


def test_public_key_from_pem_raw_or_a_private_key(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.from_private_bytes(SEED)
    expected = raw_public(private.public_key())
    (tmp_path / "pub.pem").write_bytes(public_pem(private.public_key()))
    (tmp_path / "pub.raw").write_bytes(expected)
    (tmp_path / "priv.pem").write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    for name in ("pub.pem", "pub.raw", "priv.pem"):
        assert raw_public(load_public_key(tmp_path / name)) == expected


def test_keys_that_cannot_sign_packs_are_refused_with_one_line(tmp_path: Path) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.pem").write_bytes(ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "ec.pub").write_bytes(ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "short").write_bytes(b"\x01" * 31)
    (tmp_path / "enc.pem").write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    cases = [(load_signing_key, "ec.pem", "only Ed25519"), (load_public_key, "ec.pub", "Ed25519"),
             (load_signing_key, "short", "31 bytes"), (load_signing_key, "enc.pem", "encrypted"),
             (load_public_key, "absent", "no such file")]
    for loader, name, words in cases:
        with pytest.raises(InputError) as err:
            loader(tmp_path / name)
        assert words in str(err.value) and name in str(err.value) and "\n" not in str(err.value)


def test_pae_matches_the_dsse_specification_example() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world")


def test_envelope_signs_the_exact_payload_and_verifies_only_with_its_key() -> None:
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    envelope = sign_envelope(b'{"x":1}', key)
    parsed = parse_envelope(envelope.to_json(), "statement.dsse.json")
    assert parsed.verify(key.public_key()) == b'{"x":1}'
    assert parsed.signatures[0].keyid == key_id(key.public_key())
    with pytest.raises(SignatureError, match="no signature"):
        parsed.verify(Ed25519PrivateKey.generate().public_key())
    forged = parsed.model_copy(update={"payload": base64.b64encode(b'{"x":2}').decode()})
    with pytest.raises(SignatureError):
        forged.verify(key.public_key())
    retyped = parsed.model_copy(update={"payload_type": "text/plain"})  # PAE binds the payload type too
    with pytest.raises(SignatureError):
        retyped.verify(key.public_key())


@pytest.mark.parametrize(("text", "words"), [
    (b"not json", "invalid JSON"), (b'{"payloadType": "t", "payload": "e30=", "signatures": []}', "no signature"),
    (b'{"payloadType": "t", "payload": "@@", "signatures": [{"sig": "AA=="}]}', "base64"),
    (b'{"payload": "e30=", "signatures": [{"sig": "AA=="}]}', "payloadType"),
])
def test_malformed_envelopes_are_input_errors(text: bytes, words: str) -> None:
    with pytest.raises(InputError) as err:
        parse_envelope(text, "statement.dsse.json")
    assert words in str(err.value) and "statement.dsse.json" in str(err.value)
