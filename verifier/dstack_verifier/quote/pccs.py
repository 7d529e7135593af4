"""DCAP collateral retrieval from a PCCS (Phala's by default) or Intel's PCS, plus an on-disk cache.

The requests, parameters, headers and decoding rules follow what dcap-qvl does (spec dcap.md §10), and the
result is dcap-qvl's ``QuoteCollateralV3`` JSON shape (dcap.md §4.1). One deliberate difference: the
``tcbInfo`` / ``enclaveIdentity`` values are kept as the exact text of the HTTP body rather than
re-serialised, because Intel's signature covers those exact bytes.

All network access goes through :class:`~dstack_verifier.net.NetClient` (recorded, replayable); every
failure becomes a one-line :class:`CollateralFetchError` naming the item, the URL and the problem.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import urllib.parse
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import BaseModel, ValidationError

from dstack_verifier.net import NetClient, NetError, NetResponse
from dstack_verifier.quote.collateral import COLLATERAL_KEYS

__all__ = [
    "COLLATERAL_KEYS",
    "INTEL_PCS_URL",
    "PHALA_PCCS_URL",
    "CaType",
    "CollateralCache",
    "CollateralFetchError",
    "PckCrl",
    "SignedJson",
    "Tee",
    "Update",
    "fetch_collateral",
    "fetch_pck_crl",
    "fetch_qe_identity",
    "fetch_root_ca_crl",
    "fetch_tcb_info",
    "get_collateral",
    "is_intel_pcs",
    "normalize_base_url",
    "raw_json_member",
    "root_crl_distribution_point",
]

log = logging.getLogger(__name__)

PHALA_PCCS_URL = "https://pccs.phala.network"
INTEL_PCS_URL = "https://api.trustedservices.intel.com"

Tee = Literal["tdx", "sgx"]
CaType = Literal["processor", "platform"]
Update = Literal["standard", "early"]

ITEM_PCK_CRL = "PCK CRL"
ITEM_TCB_INFO = "TCB Info"
ITEM_QE_IDENTITY = "QE Identity"
ITEM_ROOT_CRL = "root CA CRL"


_CERT_PATH = "certification/v4"
_BASE_SUFFIXES = (f"/sgx/{_CERT_PATH}", f"/tdx/{_CERT_PATH}")
_PCK_CRL_CHAIN_HEADERS = ("SGX-PCK-CRL-Issuer-Chain",)
# v3 name first (what dcap-qvl asks for), then the v4 name Intel's PCS uses for TDX.
_TCB_CHAIN_HEADERS = ("SGX-TCB-Info-Issuer-Chain", "TCB-Info-Issuer-Chain")
_QE_CHAIN_HEADERS = ("SGX-Enclave-Identity-Issuer-Chain",)
_SIGNATURE_BYTES = 64  # ECDSA P-256 r‖s
_FMSPC_RE = re.compile(r"[0-9A-Fa-f]{12}")
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_JSON_WS = " \t\n\r"
_DECODER = json.JSONDecoder()


class CollateralFetchError(NetError):
    """Fetching one collateral item failed; ``str(err)`` names the item, the URL and the problem."""

    def __init__(self, item: str, url: str, problem: str, *, offline: bool = False) -> None:
        self.item = item
        super().__init__(url, problem, offline=offline)

    def _message(self) -> str:
        return f"{self.item} ({self.url}): {self.problem}"


@dataclass(frozen=True)
class PckCrl:
    crl_der: bytes
    issuer_chain: str  # PEM


@dataclass(frozen=True)
class SignedJson:
    """TCB Info or QE Identity: the signed JSON text exactly as served, its signature and issuer chain."""

    raw: str
    signature: bytes
    issuer_chain: str  # PEM


# -- base URL ------------------------------------------------------------------------------------------------


def normalize_base_url(base_url: str) -> str:
    """Strip a trailing "/" and a trailing "/sgx/certification/v4" or "/tdx/certification/v4", as dcap-qvl."""
    base = base_url.strip().rstrip("/")
    for suffix in _BASE_SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)].rstrip("/")
            break
    return base


def is_intel_pcs(base_url: str) -> bool:
    """Intel's PCS has no rootcacrl endpoint; the root CRL then comes from its distribution point."""
    try:
        host = urllib.parse.urlsplit(normalize_base_url(base_url)).hostname or ""
    except ValueError:
        return False
    return host.lower() == urllib.parse.urlsplit(INTEL_PCS_URL).hostname


# -- raw JSON extraction -------------------------------------------------------------------------------------


def _skip_ws(text: str, index: int) -> int:
    while index < len(text) and text[index] in _JSON_WS:
        index += 1
    return index


def raw_json_member(text: str, key: str, parsed: dict[str, Any] | None = None) -> str:
    """Return the exact source text of the value of top-level member ``key`` of the JSON object ``text``.

    The signature over TCB Info / QE Identity covers the bytes as served; re-serialising the parsed value
    could change whitespace, escapes or number spelling and break it. This walks the top-level members,
    letting ``raw_decode`` find where each value ends. Like ``json.loads``, a duplicated key yields the last
    value. The result is checked against the parsed document. Raises ValueError on any inconsistency.
    """
    if parsed is None:
        parsed = json.loads(text)
    if not isinstance(parsed, dict):
        raise ValueError("top level is not a JSON object")
    span: tuple[int, int] | None = None
    i = _skip_ws(text, 0)
    if text[i : i + 1] != "{":
        raise ValueError("top level is not a JSON object")
    i = _skip_ws(text, i + 1)
    if text[i : i + 1] != "}":
        while True:
            if text[i : i + 1] != '"':
                raise ValueError(f"expected a member name at offset {i}")
            name, i = _DECODER.raw_decode(text, i)
            i = _skip_ws(text, i)
            if text[i : i + 1] != ":":
                raise ValueError(f"expected ':' at offset {i}")
            start = _skip_ws(text, i + 1)
            _value, end = _DECODER.raw_decode(text, start)
            if name == key:
                span = (start, end)
            i = _skip_ws(text, end)
            if text[i : i + 1] == ",":
                i = _skip_ws(text, i + 1)
                continue
            if text[i : i + 1] == "}":
                break
            raise ValueError(f"expected ',' or '}}' at offset {i}")
    if _skip_ws(text, i + 1) != len(text):
        raise ValueError("data after the top-level JSON object")
    if span is None or key not in parsed:
        raise ValueError(f'no member "{key}"')
    raw = text[span[0] : span[1]]
    if json.loads(raw) != parsed[key]:
        raise ValueError(f'the text found for "{key}" does not parse to its value')
    return raw


# -- decoding helpers ----------------------------------------------------------------------------------------


def _request(client: NetClient, item: str, url: str, params: dict[str, str] | None = None) -> NetResponse:
    try:
        response = client.get(url, params=params)
    except NetError as exc:
        raise CollateralFetchError(item, exc.url, exc.problem, offline=exc.offline) from exc
    if not response.ok:
        raise CollateralFetchError(item, response.url, response.status_problem())
    return response


def _issuer_chain(item: str, response: NetResponse, names: Sequence[str]) -> str:
    """The issuer chain header: percent-encoded PEM (``+`` is a literal base64 character, not a space)."""
    value = next((v for v in (response.header(n) for n in names) if v is not None), None)
    if value is None:
        wanted = " or ".join(names)
        raise CollateralFetchError(item, response.url, f"missing issuer-chain header {wanted}")
    try:
        pem = urllib.parse.unquote(value, errors="strict")
    except UnicodeDecodeError as exc:
        raise CollateralFetchError(
            item, response.url, "malformed issuer-chain header (percent-decoding is not UTF-8)"
        ) from exc
    try:
        # Checked here so a broken header is reported as a fetch problem, not later as a chain failure.
        x509.load_pem_x509_certificates(pem.encode("utf-8"))
    except (ValueError, x509.InvalidVersion) as exc:
        raise CollateralFetchError(
            item, response.url, "malformed issuer-chain header (no valid PEM certificates)"
        ) from exc
    return pem


def _signed_json(item: str, response: NetResponse, key: str, chain_headers: Sequence[str]) -> SignedJson:
    url = response.url
    try:
        text = response.content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CollateralFetchError(item, url, "malformed JSON (body is not UTF-8)") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CollateralFetchError(
            item, url, f"malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from exc
    except RecursionError as exc:
        raise CollateralFetchError(item, url, "malformed JSON (nested too deeply)") from exc
    if not isinstance(document, dict):
        raise CollateralFetchError(item, url, "malformed JSON (top level is not an object)")
    if key not in document:
        raise CollateralFetchError(item, url, f'missing field "{key}"')
    if not isinstance(document[key], dict):
        raise CollateralFetchError(item, url, f'field "{key}" is not a JSON object')
    if "signature" not in document:
        raise CollateralFetchError(item, url, 'missing field "signature"')
    signature_hex = document["signature"]
    if not isinstance(signature_hex, str):
        raise CollateralFetchError(item, url, 'field "signature" is not a string')
    try:
        signature = bytes.fromhex(signature_hex)
    except ValueError as exc:
        raise CollateralFetchError(item, url, 'bad hex in field "signature"') from exc
    if len(signature) != _SIGNATURE_BYTES:
        raise CollateralFetchError(
            item, url, f'field "signature" is {len(signature)} bytes, expected {_SIGNATURE_BYTES}'
        )
    try:
        raw = raw_json_member(text, key, document)
    except (ValueError, RecursionError) as exc:
        raise CollateralFetchError(item, url, f"malformed JSON ({exc})") from exc
    chain = _issuer_chain(item, response, chain_headers)
    return SignedJson(raw=raw, signature=signature, issuer_chain=chain)


def _crl_der(item: str, url: str, body: bytes, *, hex_expected: bool) -> bytes:
    """A CRL body as DER. PCCS serves the root CRL as hex text of the DER; PCS serves DER; accept PEM too."""
    stripped = body.strip()
    if stripped and all(b in _HEX_DIGITS for b in stripped):
        # DER always starts with 0x30 0x8x, which is not all-hex text, so this test cannot misfire on DER.
        if len(stripped) % 2:
            raise CollateralFetchError(item, url, "bad hex (odd number of digits)")
        der = bytes.fromhex(stripped.decode("ascii"))
    elif stripped.startswith(b"-----BEGIN X509 CRL-----"):
        try:
            der = x509.load_pem_x509_crl(stripped).public_bytes(Encoding.DER)
        except ValueError as exc:
            raise CollateralFetchError(item, url, "malformed CRL (bad PEM)") from exc
    elif body[:1] == b"\x30":
        der = body
    elif hex_expected:
        raise CollateralFetchError(item, url, "bad hex (body is neither hex text nor a DER CRL)")
    else:
        raise CollateralFetchError(item, url, "malformed CRL (body is not DER, PEM or hex)")
    try:
        x509.load_der_x509_crl(der)
    except ValueError as exc:
        raise CollateralFetchError(item, url, "malformed CRL (not a DER X.509 CRL)") from exc
    return der


def root_crl_distribution_point(issuer_chain_pem: str) -> str:
    """The CRL distribution point URI of the last certificate (the root) of an issuer chain."""
    certs = x509.load_pem_x509_certificates(issuer_chain_pem.encode("utf-8"))
    try:
        points = certs[-1].extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound as exc:
        raise ValueError("the root certificate has no CRL distribution point") from exc
    for point in points:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier):
                return name.value
    raise ValueError("the root certificate's CRL distribution point has no URI")


# -- the four items ------------------------------------------------------------------------------------------


# Caller inputs go into URLs and cache file names, so they are checked strictly.
def _check_tee(tee: str) -> str:
    if tee not in ("tdx", "sgx"):
        raise ValueError(f"tee must be 'tdx' or 'sgx', not {tee!r}")
    return tee


def _check_fmspc(fmspc: str) -> str:
    if not isinstance(fmspc, str) or not _FMSPC_RE.fullmatch(fmspc):
        raise ValueError(f"fmspc must be 12 hex digits, not {fmspc!r}")
    return fmspc.upper()


def _check_ca(ca: str) -> str:
    if ca not in ("processor", "platform"):
        raise ValueError(f"ca must be 'processor' or 'platform', not {ca!r}")
    return ca


def _check_update(update: str) -> str:
    if update not in ("standard", "early"):
        raise ValueError(f"update must be 'standard' or 'early', not {update!r}")
    return update


def fetch_pck_crl(client: NetClient, base_url: str, ca: CaType) -> PckCrl:
    """PCK CRL: always on the sgx path, also for TDX."""
    url = f"{normalize_base_url(base_url)}/sgx/{_CERT_PATH}/pckcrl"
    response = _request(client, ITEM_PCK_CRL, url, {"ca": ca, "encoding": "der"})
    der = _crl_der(ITEM_PCK_CRL, response.url, response.content, hex_expected=False)
    chain = _issuer_chain(ITEM_PCK_CRL, response, _PCK_CRL_CHAIN_HEADERS)
    return PckCrl(crl_der=der, issuer_chain=chain)


def fetch_tcb_info(client: NetClient, base_url: str, tee: Tee, fmspc: str, update: Update) -> SignedJson:
    url = f"{normalize_base_url(base_url)}/{tee}/{_CERT_PATH}/tcb"
    response = _request(client, ITEM_TCB_INFO, url, {"fmspc": fmspc.upper(), "update": update})
    return _signed_json(ITEM_TCB_INFO, response, "tcbInfo", _TCB_CHAIN_HEADERS)


def fetch_qe_identity(client: NetClient, base_url: str, tee: Tee, update: Update) -> SignedJson:
    url = f"{normalize_base_url(base_url)}/{tee}/{_CERT_PATH}/qe/identity"
    response = _request(client, ITEM_QE_IDENTITY, url, {"update": update})
    return _signed_json(ITEM_QE_IDENTITY, response, "enclaveIdentity", _QE_CHAIN_HEADERS)


def fetch_root_ca_crl(
    client: NetClient,
    base_url: str,
    qe_identity_issuer_chain: str,
    *,
    intel_pcs: bool | None = None,
    root_crl_url: str | None = None,
) -> bytes:
    """Root CA CRL (DER): from the PCCS ``rootcacrl`` endpoint, else from the root's distribution point.

    ``intel_pcs`` None means "decide from the host name". ``root_crl_url`` overrides the distribution point
    read from the last certificate of the QE identity issuer chain (tests, mirrors).
    """
    base = normalize_base_url(base_url)
    pccs_problem = ""
    if not (is_intel_pcs(base) if intel_pcs is None else intel_pcs):
        url = f"{base}/sgx/{_CERT_PATH}/rootcacrl"
        try:
            response = client.get(url)
        except NetError as exc:
            pccs_problem = exc.problem
        else:
            if response.ok:
                # An answer that does not decode is fatal (as dcap-qvl): no silent fallback on bad data.
                return _crl_der(ITEM_ROOT_CRL, response.url, response.content, hex_expected=True)
            pccs_problem = response.status_problem()
    if root_crl_url is None:
        try:
            root_crl_url = root_crl_distribution_point(qe_identity_issuer_chain)
        except ValueError as exc:
            raise CollateralFetchError(ITEM_ROOT_CRL, "QE identity issuer chain", str(exc)) from exc
    try:
        response = _request(client, ITEM_ROOT_CRL, root_crl_url)
    except CollateralFetchError as exc:
        if not pccs_problem:
            raise
        problem = f"{exc.problem}; the PCCS rootcacrl request failed too: {pccs_problem}"
        raise CollateralFetchError(exc.item, exc.url, problem, offline=exc.offline) from exc
    return _crl_der(ITEM_ROOT_CRL, response.url, response.content, hex_expected=False)


def _assemble(pck: PckCrl, root_der: bytes, tcb: SignedJson, qe: SignedJson) -> dict[str, str]:
    collateral = {
        "pck_crl_issuer_chain": pck.issuer_chain,
        "root_ca_crl": root_der.hex(),
        "pck_crl": pck.crl_der.hex(),
        "tcb_info_issuer_chain": tcb.issuer_chain,
        "tcb_info": tcb.raw,
        "tcb_info_signature": tcb.signature.hex(),
        "qe_identity_issuer_chain": qe.issuer_chain,
        "qe_identity": qe.raw,
        "qe_identity_signature": qe.signature.hex(),
    }
    assert tuple(collateral) == COLLATERAL_KEYS
    return collateral


def fetch_collateral(
    client: NetClient,
    base_url: str,
    *,
    tee: Tee,
    fmspc: str,
    ca: CaType,
    update: Update = "standard",
    intel_pcs: bool | None = None,
    root_crl_url: str | None = None,
) -> dict[str, str]:
    """Fetch the collateral for one quote, as dcap-qvl's QuoteCollateralV3 JSON dict (9 keys, no cache)."""
    return get_collateral(
        client,
        base_url,
        tee=tee,
        fmspc=fmspc,
        ca=ca,
        now=None,
        cache=None,
        update=update,
        intel_pcs=intel_pcs,
        root_crl_url=root_crl_url,
    )


def get_collateral(
    client: NetClient,
    base_url: str,
    *,
    tee: Tee,
    fmspc: str,
    ca: CaType,
    now: datetime | float | None,
    cache: CollateralCache | None,
    update: Update = "standard",
    intel_pcs: bool | None = None,
    root_crl_url: str | None = None,
) -> dict[str, str]:
    """Like :func:`fetch_collateral`, but items still valid at ``now`` come from ``cache``; fetched items
    are stored there. Requests go out in dcap-qvl's order: PCK CRL, TCB Info, QE Identity, root CA CRL."""
    _check_tee(tee)
    fmspc = _check_fmspc(fmspc)
    _check_ca(ca)
    _check_update(update)
    if cache is not None and now is None:
        raise ValueError("a cache needs the current time 'now'")
    moment = None if now is None else _as_datetime(now)

    pck = cache.load_pck_crl(ca, moment) if cache is not None and moment is not None else None
    if pck is None:
        pck = fetch_pck_crl(client, base_url, ca)
        if cache is not None:
            cache.store_pck_crl(ca, pck)

    tcb = cache.load_tcb_info(tee, fmspc, update, moment) if cache is not None and moment is not None else None
    if tcb is None:
        tcb = fetch_tcb_info(client, base_url, tee, fmspc, update)
        if cache is not None:
            cache.store_tcb_info(tee, fmspc, update, tcb)

    qe = cache.load_qe_identity(tee, update, moment) if cache is not None and moment is not None else None
    if qe is None:
        qe = fetch_qe_identity(client, base_url, tee, update)
        if cache is not None:
            cache.store_qe_identity(tee, update, qe)

    root = cache.load_root_ca_crl(moment) if cache is not None and moment is not None else None
    if root is None:
        root = fetch_root_ca_crl(client, base_url, qe.issuer_chain, intel_pcs=intel_pcs, root_crl_url=root_crl_url)
        if cache is not None:
            cache.store_root_ca_crl(root)

    return _assemble(pck, root, tcb, qe)


# -- cache ---------------------------------------------------------------------------------------------------

_CACHE_SCHEMA = "dstack-inspector/collateral-cache/v1"
_MAX_CACHE_FILE = 64 * 1024 * 1024


class _SignedEntry(BaseModel):
    format: Literal["dstack-inspector/collateral-cache/v1"]
    raw: str
    signature: str  # hex
    issuer_chain: str


class _PckCrlEntry(BaseModel):
    format: Literal["dstack-inspector/collateral-cache/v1"]
    crl: str  # hex DER
    issuer_chain: str


class _RootCrlEntry(BaseModel):
    format: Literal["dstack-inspector/collateral-cache/v1"]
    crl: str  # hex DER


def _as_datetime(now: datetime | float) -> datetime:
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("'now' must be timezone-aware")
        return now.astimezone(UTC)
    return datetime.fromtimestamp(float(now), UTC)


def _parse_rfc3339(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("not a date string")
    parsed = datetime.fromisoformat(value)
    # Intel writes UTC with "Z"; a date without an offset is read as UTC rather than local time.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _json_next_update(raw: str) -> datetime:
    document = json.loads(raw)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return _parse_rfc3339(document.get("nextUpdate"))


def _crl_next_update(der: bytes) -> datetime:
    next_update = x509.load_der_x509_crl(der).next_update_utc
    if next_update is None:
        raise ValueError("CRL without nextUpdate")
    return next_update


class CollateralCache:
    """Collateral items on disk, one JSON file per cache key (dcap.md §10 "Caching advice").

    An entry is used only while ``now`` is strictly before its own nextUpdate (read from the item itself,
    not from a stored copy). Files are written atomically; unreadable, corrupted or stale files are misses,
    and write failures are logged, never raised: the cache only ever saves requests.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    # File names are built only from checked inputs, so a hostile value cannot point outside the folder.
    @staticmethod
    def _tcb_name(tee: str, fmspc: str, update: str) -> str:
        return f"tcb-info-{_check_tee(tee)}-{_check_fmspc(fmspc)}-{_check_update(update)}.json"

    @staticmethod
    def _qe_name(tee: str, update: str) -> str:
        return f"qe-identity-{_check_tee(tee)}-{_check_update(update)}.json"

    @staticmethod
    def _pck_name(ca: str) -> str:
        return f"pck-crl-{_check_ca(ca)}.json"

    _ROOT_NAME = "root-ca-crl.json"

    # -- TCB Info / QE Identity ------------------------------------------------------------------------------

    def load_tcb_info(self, tee: Tee, fmspc: str, update: Update, now: datetime | float) -> SignedJson | None:
        item = self._load_signed(self._tcb_name(tee, fmspc, update), now)
        if item is None:
            return None
        # Guard against a file that holds another platform's TCB Info (a raw that is not an object was
        # already rejected by _load_signed).
        served = json.loads(item.raw).get("fmspc")
        return item if isinstance(served, str) and served.upper() == fmspc.upper() else None

    def store_tcb_info(self, tee: Tee, fmspc: str, update: Update, item: SignedJson) -> None:
        self._store_signed(self._tcb_name(tee, fmspc, update), item)

    def load_qe_identity(self, tee: Tee, update: Update, now: datetime | float) -> SignedJson | None:
        return self._load_signed(self._qe_name(tee, update), now)

    def store_qe_identity(self, tee: Tee, update: Update, item: SignedJson) -> None:
        self._store_signed(self._qe_name(tee, update), item)

    def _load_signed(self, name: str, now: datetime | float) -> SignedJson | None:
        moment = _as_datetime(now)
        text = self._read(name)
        if text is None:
            return None
        try:
            entry = _SignedEntry.model_validate_json(text)
            item = SignedJson(raw=entry.raw, signature=bytes.fromhex(entry.signature), issuer_chain=entry.issuer_chain)
            x509.load_pem_x509_certificates(item.issuer_chain.encode("utf-8"))
            valid = moment < _json_next_update(item.raw)
        except (ValidationError, ValueError, TypeError, RecursionError) as exc:
            log.info("ignoring cache file %s: %s", self.folder / name, exc)
            return None
        return item if valid else None

    def _store_signed(self, name: str, item: SignedJson) -> None:
        entry = _SignedEntry(
            format=_CACHE_SCHEMA, raw=item.raw, signature=item.signature.hex(), issuer_chain=item.issuer_chain
        )
        self._write(name, entry.model_dump_json())

    # -- CRLs ------------------------------------------------------------------------------------------------

    def load_pck_crl(self, ca: CaType, now: datetime | float) -> PckCrl | None:
        moment = _as_datetime(now)
        name = self._pck_name(ca)
        text = self._read(name)
        if text is None:
            return None
        try:
            entry = _PckCrlEntry.model_validate_json(text)
            item = PckCrl(crl_der=bytes.fromhex(entry.crl), issuer_chain=entry.issuer_chain)
            x509.load_pem_x509_certificates(item.issuer_chain.encode("utf-8"))
            valid = moment < _crl_next_update(item.crl_der)
        except (ValidationError, ValueError, TypeError) as exc:
            log.info("ignoring cache file %s: %s", self.folder / name, exc)
            return None
        return item if valid else None

    def store_pck_crl(self, ca: CaType, item: PckCrl) -> None:
        entry = _PckCrlEntry(format=_CACHE_SCHEMA, crl=item.crl_der.hex(), issuer_chain=item.issuer_chain)
        self._write(self._pck_name(ca), entry.model_dump_json())

    def load_root_ca_crl(self, now: datetime | float) -> bytes | None:
        moment = _as_datetime(now)
        text = self._read(self._ROOT_NAME)
        if text is None:
            return None
        try:
            der = bytes.fromhex(_RootCrlEntry.model_validate_json(text).crl)
            valid = moment < _crl_next_update(der)
        except (ValidationError, ValueError, TypeError) as exc:
            log.info("ignoring cache file %s: %s", self.folder / self._ROOT_NAME, exc)
            return None
        return der if valid else None

    def store_root_ca_crl(self, der: bytes) -> None:
        self._write(self._ROOT_NAME, _RootCrlEntry(format=_CACHE_SCHEMA, crl=der.hex()).model_dump_json())

    # -- files -----------------------------------------------------------------------------------------------

    def _read(self, name: str) -> str | None:
        path = self.folder / name
        try:
            if path.stat().st_size > _MAX_CACHE_FILE:
                log.info("ignoring oversized cache file %s", path)
                return None
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            log.info("ignoring unreadable cache file %s: %s", path, exc)
            return None

    def _write(self, name: str, text: str) -> None:
        # temp file in the same folder + os.replace: readers see the old file or the new one, never half.
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.folder)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, self.folder / name)
            except BaseException:
                with suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            log.warning("could not write cache file %s: %s", self.folder / name, exc)
