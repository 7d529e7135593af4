"""The gateway's public endpoints (spec §1.6), under ``kms_info.gateway_app_url``.

* ``GET {gateway}/.dstack/acme-info`` (dstack's ``AcmeInfoResponse``): ``account_uri``; ``account_quote``, JSON text
  ``{"quote": <hex>, "event_log": <JSON text of the event list>}`` — the gateway's quote and event log, its
  report_data binding the ACME account; ``quoted_hist_keys: [{public_key: <hex SPKI DER>, quote: <same JSON form or
  hex>}]``; optionally ``account_attestation``; legacy gateways also send ``hist_keys`` (derived from
  ``quoted_hist_keys`` when absent), ``active_cert`` (PEM chain) and ``base_domain``.
* ``GET {gateway}/.dstack/app-info``: the gateway's app info, the shape of the guest agent's ``/prpc/Info``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from ..evidence import MAX_QUOTE_BYTES
from ..net import NetClient
from . import (
    MAX_LIST_ITEMS,
    MAX_TEXT_CHARS,
    EntityMaterial,
    Fields,
    SourceError,
    decode_answer,
    fetch_json,
    hex_value,
    pem_chain,
    quote_value,
    runtime_event_payload,
)
from .agent import AgentInfo, agent_info_from_json

__all__ = [
    "ACME_INFO_PATH",
    "APP_INFO_PATH",
    "AcmeInfo",
    "QuotedKey",
    "fetch_acme_info",
    "fetch_app_info",
    "parse_acme_info",
    "parse_app_info",
]

ACME_INFO_PATH = "/.dstack/acme-info"
APP_INFO_PATH = "/.dstack/app-info"
MAX_KEY_BYTES = 1024  # an SPKI DER

_BYTES_HEX = ConfigDict(frozen=True, ser_json_bytes="hex", val_json_bytes="hex")


class QuotedKey(BaseModel):
    """A TLS public key the gateway used, with the quote that binds it (when the gateway sent one)."""

    model_config = _BYTES_HEX

    public_key: bytes  # SPKI DER
    quote: bytes | None = None
    event_log: list[dict[str, Any]] | None = None
    attestation: bytes | None = None


class AcmeInfo(BaseModel):
    """``/.dstack/acme-info``, typed and validated."""

    model_config = _BYTES_HEX

    source: str
    account_uri: str
    account_quote: bytes | None = None
    account_event_log: list[dict[str, Any]] | None = None
    account_attestation: bytes | None = None
    quoted_hist_keys: tuple[QuotedKey, ...] = ()
    hist_keys: tuple[bytes, ...] = ()
    hist_keys_derived: bool = False  # True: the answer had no hist_keys, they come from quoted_hist_keys
    active_cert: str | None = None
    base_domain: str | None = None

    def material(self) -> EntityMaterial:
        return EntityMaterial(
            entity="gateway",
            label="gateway",
            sources=(self.source,),
            quote=self.account_quote,
            quote_source=f"{self.source} account_quote.quote" if self.account_quote is not None else None,
            event_log=self.account_event_log,
            event_log_source=(f"{self.source} account_quote.event_log"
                              if self.account_event_log is not None else None),
            other_certificates_pem=self.active_cert,
            app_id=runtime_event_payload(self.account_event_log, "app-id"),
            instance_id=runtime_event_payload(self.account_event_log, "instance-id"),
            acme_account_uri=self.account_uri,
            acme_hist_keys=self.hist_keys,
        )


def fetch_acme_info(client: NetClient, gateway_url: str) -> AcmeInfo:
    return acme_info_from_json(*fetch_json(client, gateway_url, ACME_INFO_PATH, "gateway"))


def parse_acme_info(data: bytes, source: str) -> AcmeInfo:
    return acme_info_from_json(decode_answer(data, source), source)


def fetch_app_info(client: NetClient, gateway_url: str) -> AgentInfo:
    return agent_info_from_json(*fetch_json(client, gateway_url, APP_INFO_PATH, "gateway"), form="gateway-app-info")


def parse_app_info(data: bytes, source: str) -> AgentInfo:
    return agent_info_from_json(decode_answer(data, source), source, form="gateway-app-info")


def acme_info_from_json(doc: Any, source: str) -> AcmeInfo:
    f = Fields(doc, source)
    account_uri = f.text("account_uri", required=True) or ""
    quote, event_log = _quote_pair(f, "account_quote")
    quoted: list[QuotedKey] = []
    for index, item in enumerate(f.array("quoted_hist_keys") or []):
        q = Fields(item, source, f"quoted_hist_keys[{index}]")
        key_quote, key_log = _quote_pair(q, "quote")
        quoted.append(QuotedKey(
            public_key=q.hexbytes("public_key", limit=MAX_KEY_BYTES, required=True) or b"",
            quote=key_quote,
            event_log=key_log,
            attestation=q.hexbytes("attestation", limit=10 * MAX_QUOTE_BYTES),
        ))
    raw_hist = f.array("hist_keys", limit=MAX_LIST_ITEMS)
    hist: list[bytes] = []
    for index, key in enumerate(raw_hist or []):
        if not isinstance(key, str) or not key:
            raise SourceError("expected a hex string", source=source, field=f"hist_keys[{index}]")
        hist.append(hex_value(key, source, f"hist_keys[{index}]", MAX_KEY_BYTES))
    active = f.text("active_cert", limit=MAX_TEXT_CHARS)
    if active and active.strip():
        pem_chain(active, source, "active_cert")
    else:
        active = None
    return AcmeInfo(
        source=source,
        account_uri=account_uri,
        account_quote=quote,
        account_event_log=event_log,
        account_attestation=f.hexbytes("account_attestation", limit=10 * MAX_QUOTE_BYTES),
        quoted_hist_keys=tuple(quoted),
        hist_keys=tuple(hist) if raw_hist is not None else tuple(k.public_key for k in quoted),
        hist_keys_derived=raw_hist is None,
        active_cert=active,
        base_domain=f.text("base_domain"),
    )


def _quote_pair(f: Fields, key: str) -> tuple[bytes | None, list[dict[str, Any]] | None]:
    """A quote as dstack's gateway sends it: JSON text ``{"quote": hex, "event_log": JSON text}`` (or that object),
    or bare hex. Empty → (None, None)."""
    value = f.raw(key)
    if value is None or value == "":
        return None, None
    if isinstance(value, dict) or (isinstance(value, str) and value.lstrip().startswith("{")):
        inner = f.object(key, json_string=True)
        assert inner is not None
        raw = inner.hexbytes("quote", limit=MAX_QUOTE_BYTES, required=True)
        assert raw is not None
        return quote_value(raw, f.source, inner.name("quote")), inner.event_log("event_log")
    raw = f.hexbytes(key, limit=MAX_QUOTE_BYTES)
    return (quote_value(raw, f.source, f.name(key)) if raw is not None else None), None
