"""DSSE envelopes (Dead Simple Signing Envelope, v1): the signature covers PAE(payloadType, payload), the exact
payload bytes, so verifying needs no re-serialisation."""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from ..errors import InputError
from ..jsontext import load_json
from ..validation import validate_model
from .keys import key_id

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


class SignatureError(Exception):
    """The envelope is not signed by the key it was checked against."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """Pre-Authentication Encoding: "DSSEv1" SP len(type) SP type SP len(body) SP body (lengths in ASCII decimal)."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


class Signature(BaseModel):
    keyid: str = ""
    sig: str


class Envelope(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    payload_type: str = Field(alias="payloadType")
    payload: str
    signatures: list[Signature]

    def to_json(self) -> bytes:
        return (self.model_dump_json(by_alias=True, indent=2) + "\n").encode()

    def verify(self, key: Ed25519PublicKey) -> bytes:
        """The payload bytes, when one signature verifies with `key` (keyids are hints only, per DSSE)."""
        payload = _b64(self.payload, "payload")
        message = pae(self.payload_type, payload)
        for signature in self.signatures:
            try:
                key.verify(_b64(signature.sig, "signatures[].sig"), message)
            except (InvalidSignature, InputError):
                continue
            return payload
        raise SignatureError(f"no signature of the envelope verifies with key {key_id(key)[:16]}… "
                             f"(signed by keyid {', '.join(s.keyid[:16] + '…' for s in self.signatures) or 'none'})")


def sign_envelope(payload: bytes, key: Ed25519PrivateKey, payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> Envelope:
    signature = key.sign(pae(payload_type, payload))  # Ed25519 is deterministic: same key and payload, same bytes
    return Envelope(payload_type=payload_type, payload=base64.b64encode(payload).decode(),
                    signatures=[Signature(keyid=key_id(key.public_key()), sig=base64.b64encode(signature).decode())])


def parse_envelope(data: bytes, source: str) -> Envelope:
    envelope = validate_model(Envelope, load_json(data.decode("utf-8", "replace"), source), source, "a DSSE envelope")
    if not envelope.signatures:
        raise InputError("the DSSE envelope has no signature", source=source, field="signatures")
    _b64(envelope.payload, "payload", source)
    return envelope


def _b64(text: str, field: str, source: str | None = None) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("not valid base64", source=source, field=field) from None
