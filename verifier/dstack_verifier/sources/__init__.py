"""Where evidence comes from: the Phala Cloud attestations API, the guest agent, the gateway and the KMS.

Every answer is untrusted input. The fetchers go through :class:`~dstack_verifier.net.NetClient` (so each answer is
recorded and a :class:`~dstack_verifier.net.ReplayClient` can answer an offline re-run), bound the body, decode it
with :func:`~dstack_verifier.jsontext.load_json`, and turn it into frozen pydantic models. Anything that makes an
answer unusable is a :class:`SourceError`: one line naming the source and the field.

Modules:

* :mod:`.cloud` — ``GET {base}/apps/{app_id}/attestations`` (every instance, the KMS and gateway guest-agent info);
* :mod:`.agent` — the guest agent's ``/prpc/Info`` (``/prpc/Worker.Info`` before dstack 0.5.0) and the KMS's
  ``/prpc/KMS.GetMeta``;
* :mod:`.gateway` — the gateway's ``/.dstack/acme-info`` and ``/.dstack/app-info``.

This module holds what they share: the error type, the field reader, the version rules of the spec (§4.1), and the
per-entity :class:`EntityMaterial` with :func:`to_evidence`, which turns what the sources said into the
:class:`~dstack_verifier.evidence.Evidence` items the verifier consumes.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict

from ..errors import InputError
from ..eventlog import RUNTIME_EVENT_TYPE, parse_event_log
from ..evidence import MAX_QUOTE_BYTES, Evidence, check_quote, detect
from ..jsontext import json_kind, load_json
from ..model import Entity
from ..net import NetClient, NetError, NetResponse
from ..ratls import load_certificates

if TYPE_CHECKING:
    from .agent import AgentInfo, KmsMeta
    from .cloud import CloudAttestations
    from .gateway import AcmeInfo

__all__ = [
    "ENTITIES",
    "EntityMaterial",
    "ImageVersion",
    "KeyProvider",
    "SourceError",
    "collect",
    "compare_versions",
    "material_evidence",
    "merge_materials",
    "parse_image_version",
    "parse_kms_version",
    "supports_info_endpoint",
    "supports_onchain_kms",
    "to_evidence",
    "version_tuple",
]

ENTITIES: tuple[Entity, ...] = ("app", "kms", "gateway")

# Bounds applied to every answer before and while it is decoded.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
MAX_TEXT_CHARS = 2 * 1024 * 1024  # app-compose, PEM chains, JSON-in-a-string fields
MAX_SHORT_CHARS = 4096  # names, URLs, versions
MAX_ID_BYTES = 64  # app ids, instance ids, hashes, public keys
MAX_LIST_ITEMS = 256

ErrorKind = Literal["input", "http", "network", "offline"]


class SourceError(InputError):
    """A source's answer is unusable, or no answer arrived. ``str(err)`` is one line naming the source and field.

    ``kind`` tells callers what went wrong: ``input`` (the answer is malformed, or says the app has no running
    instance), ``http`` (the server answered with an error status, kept in ``status``), ``network`` (no usable
    answer: timeout, connection failure, body too large) or ``offline`` (the client refused to go online, or a
    replay does not hold the request).
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        field: str | None = None,
        offset: int | None = None,
        kind: ErrorKind = "input",
        status: int | None = None,
    ) -> None:
        self.kind: ErrorKind = kind
        self.status = status
        super().__init__(_one_line(message), source=source, field=field, offset=offset)

    def with_source(self, source: str) -> SourceError:
        return SourceError(self.message, source=source, field=self.field, offset=self.offset, kind=self.kind,
                           status=self.status)


def _one_line(text: str, limit: int = 400) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def from_input_error(exc: InputError, source: str, prefix: str | None = None) -> SourceError:
    """An InputError of a parser, attributed to the source (and the field path the parser did not know)."""
    if isinstance(exc, SourceError):
        return exc
    field = exc.field
    if prefix:
        field = f"{prefix}.{field}" if field and not field.startswith(prefix) else (field or prefix)
    return SourceError(exc.message, source=source, field=field, offset=exc.offset)


# --------------------------------------------------------------------------------------------------------------------
# Fetching and decoding answers


def base_url(url: str, what: str) -> str:
    """An http(s) base URL without a trailing slash; anything else is a SourceError (nothing is fetched)."""
    if not isinstance(url, str) or not url.strip():
        raise SourceError(f"{what} URL is empty")
    text = url.strip()
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, ValueError) as exc:
        raise SourceError(f"{what} URL {text[:120]!r} is not a URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise SourceError(f"{what} URL {text[:120]!r} is not an http(s) URL with a host")
    if parsed.query or parsed.fragment:
        raise SourceError(f"{what} URL {text[:120]!r} must not carry a query or fragment")
    return text.rstrip("/")


def get_answer(client: NetClient, url: str, what: str) -> NetResponse:
    """GET ``url`` through the client; transport failures become a SourceError (kind network / offline)."""
    try:
        return client.get(url, headers={"Accept": "application/json"})
    except NetError as exc:
        raise SourceError(exc.problem, source=f"{what} {exc.url}", kind="offline" if exc.offline else "network") \
            from exc


def fetch_json(client: NetClient, endpoint: str, path: str, what: str) -> tuple[Any, str]:
    """GET `path` under the endpoint `endpoint` as JSON: (the decoded answer, the source label naming the URL)."""
    response = get_answer(client, base_url(endpoint, what) + path, what)
    return json_answer(response, what), f"{what} {response.url}"


def status_error(response: NetResponse, what: str, message: str | None = None) -> SourceError:
    problem = response.status_problem()
    text = f"{message} ({problem})" if message else f"request failed: {problem}"
    return SourceError(text, source=f"{what} {response.url}", kind="http", status=response.status)


def decode_answer(data: bytes, source: str, limit: int = MAX_ANSWER_BYTES, *, size_kind: ErrorKind = "input") -> Any:
    """UTF-8 JSON text → value, bounded; every failure a SourceError with the byte offset when known."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SourceError(f"expected the answer's bytes, got {type(data).__name__}", source=source)
    data = bytes(data)
    if len(data) > limit:
        raise SourceError(f"answer is {len(data)} bytes, more than the {limit} allowed", source=source,
                          kind=size_kind)
    if not data.strip():
        raise SourceError("empty answer (expected JSON)", source=source)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError("answer is not UTF-8", source=source, offset=exc.start) from None
    try:
        return load_json(text, source)
    except InputError as exc:
        raise from_input_error(exc, source) from None


def json_answer(response: NetResponse, what: str, limit: int = MAX_ANSWER_BYTES) -> Any:
    source = f"{what} {response.url}"
    if 300 <= response.status < 400:
        raise SourceError(f"unexpected redirect (HTTP {response.status} to {response.header('location') or '?'})",
                          source=source, kind="http", status=response.status)
    if not response.ok:
        raise status_error(response, what)
    return decode_answer(response.content, source, limit, size_kind="network")


# --------------------------------------------------------------------------------------------------------------------
# Reading fields of untrusted JSON objects

_HEX = re.compile(r"[0-9a-fA-F]*")
_EVM_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


class Fields:
    """Typed, bounded access to one JSON object of an answer; every problem names ``path.key``."""

    def __init__(self, obj: Any, source: str, path: str = "") -> None:
        if not isinstance(obj, dict):
            raise SourceError(f"expected a JSON object, got {json_kind(obj)}", source=source, field=path or None)
        self.obj = obj
        self.source = source
        self.path = path

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> SourceError:
        return SourceError(message, source=self.source, field=self.name(key))

    def has(self, key: str) -> bool:
        """The key is present with a value other than null or the empty string."""
        return self.obj.get(key) not in (None, "")

    def raw(self, key: str) -> Any:
        return self.obj.get(key)

    def text(self, key: str, *, required: bool = False, limit: int = MAX_SHORT_CHARS) -> str | None:
        """A string (null or absent → None; "" stays "" unless required)."""
        value = self.obj.get(key)
        if value is None:
            if required:
                raise self.error(key, "missing")
            return None
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {json_kind(value)}")
        if required and not value:
            raise self.error(key, "empty")
        if len(value) > limit:
            raise self.error(key, f"{len(value)} characters, more than the {limit} allowed")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise self.error(key, "not valid Unicode (lone surrogate)") from None
        return value

    def integer(self, key: str, *, lo: int = 0, hi: int = 2**63 - 1, required: bool = False) -> int | None:
        """A JSON number or a decimal string (APIs send both)."""
        value = self.obj.get(key)
        if value is None or value == "":
            if required:
                raise self.error(key, "missing")
            return None
        if isinstance(value, str) and value.isascii() and value.isdecimal() and len(value) <= 20:
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            shown = f"the string {value[:24]!r}" if isinstance(value, str) else json_kind(value)
            raise self.error(key, f"expected an integer, got {shown}")
        if not lo <= value <= hi:
            raise self.error(key, f"value {value if abs(value) < 10**20 else '(huge)'} is out of range {lo}..{hi}")
        return value

    def boolean(self, key: str) -> bool | None:
        value = self.obj.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {json_kind(value)}")
        return value

    def hexbytes(self, key: str, *, limit: int, required: bool = False) -> bytes | None:
        """Hex with or without 0x; null, absent, "" or "0x" → None."""
        value = self.text(key, limit=2 * limit + 2)
        data = hex_value(value, self.source, self.name(key), limit) if value else b""
        if not data:  # "0x" is what some answers send for "none"
            if required:
                raise self.error(key, "missing")
            return None
        return data

    def hexid(self, key: str, *, required: bool = False, limit: int = MAX_ID_BYTES) -> str | None:
        """An id or hash as lowercase hex without 0x; null, absent or "" → None."""
        data = self.hexbytes(key, limit=limit, required=required)
        return None if data is None else data.hex()

    def address(self, key: str) -> str | None:
        """An EVM address ("0x" + 40 hex digits, case kept); "" and null → None."""
        value = self.text(key)
        if not value:
            return None
        if not _EVM_ADDRESS.fullmatch(value):
            raise self.error(key, f"not an EVM address (0x and 40 hex digits): {value[:50]!r}")
        return value

    def object(self, key: str, *, required: bool = False, json_string: bool = False) -> Fields | None:
        """A nested object; with ``json_string`` it may also arrive as JSON text (dstack's stringified fields)."""
        value = self.obj.get(key)
        if value is None or (json_string and value == ""):
            if required:
                raise self.error(key, "missing")
            return None
        if json_string and isinstance(value, str):
            if len(value) > MAX_ANSWER_BYTES:
                raise self.error(key, f"{len(value)} characters of JSON text, more than {MAX_ANSWER_BYTES}")
            try:
                value = load_json(value, self.source, self.name(key))
            except InputError as exc:
                raise from_input_error(exc, self.source) from None
        return Fields(value, self.source, self.name(key))

    def array(self, key: str, *, required: bool = False, limit: int = MAX_LIST_ITEMS) -> list[Any] | None:
        value = self.obj.get(key)
        if value is None:
            if required:
                raise self.error(key, "missing")
            return None
        if not isinstance(value, list):
            raise self.error(key, f"expected an array, got {json_kind(value)}")
        if len(value) > limit:
            raise self.error(key, f"{len(value)} items, more than the {limit} allowed")
        return value

    def event_log(self, key: str, *, required: bool = False) -> list[dict[str, Any]] | None:
        """An event log: a JSON array of event objects, or its JSON text. Validated; returned as given."""
        value = self.obj.get(key)
        if value is None or value == "":
            if required:
                raise self.error(key, "missing")
            return None
        return event_log_value(value, self.source, self.name(key))


def hex_value(value: str, source: str, field: str, limit: int) -> bytes:
    text = value.strip()
    if text[:2] in ("0x", "0X"):
        text = text[2:]
    if len(text) > 2 * limit:
        raise SourceError(f"{len(text) // 2} bytes, more than the {limit} allowed", source=source, field=field)
    good = _HEX.match(text)
    end = good.end() if good else 0
    if end != len(text):
        raise SourceError(f"not hex: character {text[end]!r} at position {end}", source=source, field=field)
    if len(text) % 2:
        raise SourceError(f"odd number of hex digits ({len(text)})", source=source, field=field)
    return bytes.fromhex(text)


def event_log_value(value: Any, source: str, field: str) -> list[dict[str, Any]]:
    """Validate an event log with the verifier's own parser and return the list of event objects as given."""
    if isinstance(value, str):
        try:
            value = load_json(value, source, field)
        except InputError as exc:
            raise from_input_error(exc, source) from None
    if not isinstance(value, list):
        raise SourceError(f"expected an event log (a JSON array), got {json_kind(value)}", source=source, field=field)
    try:
        parse_event_log(value, source, field=field)
    except InputError as exc:
        raise from_input_error(exc, source) from None
    return value


def quote_value(data: bytes, source: str, field: str) -> bytes:
    """A quote's structure is checked as soon as it is read, so that a broken one is reported by field."""
    if len(data) > MAX_QUOTE_BYTES:
        raise SourceError(f"quote is {len(data)} bytes, more than {MAX_QUOTE_BYTES}", source=source, field=field)
    try:
        check_quote(data, source, field)
    except InputError as exc:
        raise from_input_error(exc, source) from None
    return data


def pem_chain(text: str, source: str, field: str) -> list[Any]:
    """Certificates of a PEM chain (leaf first); a malformed one is a SourceError naming the field."""
    try:
        return load_certificates(text.encode("utf-8"), source)
    except InputError as exc:
        raise SourceError(exc.message, source=source, field=field) from None


def runtime_event_payload(events: list[dict[str, Any]] | None, name: str) -> str | None:
    """The hex payload of the (last) RTMR3 runtime event called ``name`` — a claim until the log is replayed."""
    found = None
    for item in events or []:
        if not isinstance(item, dict) or item.get("event") != name:
            continue
        try:
            event_type = int(item.get("event_type", -1))
            imr = int(item.get("imr", -1))
        except (TypeError, ValueError):
            continue
        if imr == 3 and event_type == RUNTIME_EVENT_TYPE:
            payload = item.get("event_payload")
            found = payload.lower().removeprefix("0x") if isinstance(payload, str) else None
    return found or None


# --------------------------------------------------------------------------------------------------------------------
# Versions (spec §4.1)

_VERSION_IN_TEXT = re.compile(r"(?<![0-9.])v?(\d{1,6}(?:\.\d{1,6}){2,3})(?![0-9])")
_KMS_VERSION = re.compile(r"v?(\d{1,6}\.\d{1,6}\.\d{1,6}(?:\.\d{1,6})?)(?:\s*\(git:([0-9a-fA-F]{4,40})\))?")
_IMAGE_VERSION = re.compile(
    r"(?P<dstack>dstack-)?(?P<nvidia>nvidia-)?(?P<dev>dev-)?v?(?P<version>\d{1,6}\.\d{1,6}\.\d{1,6}(?:\.\d{1,6})?)"
    r"(?:\s*\(git:(?P<git>[0-9a-fA-F]{4,40})\))?"
)


def version_tuple(text: str | None) -> tuple[int, ...] | None:
    """The first X.Y.Z or X.Y.Z.W in ``text`` (a leading v allowed), as integers; None when there is none."""
    if not isinstance(text, str):
        return None
    match = _VERSION_IN_TEXT.search(text)
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def compare_versions(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """-1, 0 or 1; missing components count as 0 (0.5 == 0.5.0)."""
    width = max(len(a), len(b))
    left, right = a + (0,) * (width - len(a)), b + (0,) * (width - len(b))
    return (left > right) - (left < right)


def parse_kms_version(text: str) -> tuple[str, str | None] | None:
    """``"v0.5.3 (git:ca4af023e974427e4153)"`` → ``("v0.5.3", "ca4af023e974427e4153")``; None when the string is
    not of that form (the version rules then fall back on the first X.Y.Z in it)."""
    match = _KMS_VERSION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        return None
    return "v" + match.group(1), (match.group(2).lower() if match.group(2) else None)


def _at_least(version: str | None, minimum: tuple[int, ...]) -> bool:
    found = version_tuple(version)
    return found is not None and compare_versions(found, minimum) >= 0


def supports_info_endpoint(kms_version: str | None) -> bool:
    """KMS ≥ 0.5.0: the guest agent answers ``/prpc/Info``; before that ``/prpc/Worker.Info``. Unparseable → False."""
    return _at_least(kms_version, (0, 5, 0))


def supports_onchain_kms(kms_version: str | None) -> bool:
    """KMS ≥ 0.5.3: on-chain KMS and the current (non-stub) KMS/gateway verifiers. Unparseable → False."""
    return _at_least(kms_version, (0, 5, 3))


class ImageVersion(BaseModel):
    """A dstack OS image version as the Cloud API labels it (``dstack-[nvidia-][dev-]X.Y.Z[.W]``)."""

    model_config = ConfigDict(frozen=True)

    raw: str  # as received
    name: str  # trimmed, the known "vnvidia-" typo fixed: the image's folder / release name
    version: str | None = None  # "0.5.3" or "0.5.4.1" (the 4th component is kept); None when unparseable
    nvidia: bool = False
    dev: bool = False
    git_commit: str | None = None  # when the label carries "(git:…)"
    problem: str | None = None  # why the label did not parse (the instance is still used)

    @property
    def version_tuple(self) -> tuple[int, ...] | None:
        return version_tuple(self.version)


def parse_image_version(text: str, *, require_prefix: bool = True) -> ImageVersion:
    """Normalise an image label (spec §1.3, §4.1). Never raises: a label that does not parse keeps ``problem``."""
    name = text.strip()
    if name.startswith("vnvidia-"):
        name = "dstack-nvidia-" + name[len("vnvidia-"):]
    match = _IMAGE_VERSION.fullmatch(name)
    problem = None
    if match is None:
        problem = "not of the form dstack-[nvidia-][dev-]X.Y.Z[.W]"
    elif require_prefix and not match.group("dstack"):
        problem = "does not start with dstack-"
    if match is None:
        return ImageVersion(raw=text, name=name, problem=problem)
    return ImageVersion(
        raw=text,
        name=name,
        version=match.group("version"),
        nvidia=bool(match.group("nvidia")),
        dev=bool(match.group("dev")),
        git_commit=match.group("git").lower() if match.group("git") else None,
        problem=problem,
    )


# --------------------------------------------------------------------------------------------------------------------
# What each entity's sources said, combined, and the evidence made from it


class KeyProvider(BaseModel):
    """The key provider an app was booted with (``{"name": "kms", "id": <KMS CA public key, hex>}``)."""

    model_config = ConfigDict(frozen=True)

    name: str
    id: str


_BYTES_HEX = ConfigDict(frozen=True, ser_json_bytes="hex", val_json_bytes="hex")


class EntityMaterial(BaseModel):
    """Everything the sources said about one entity (one app instance, the KMS, or the gateway).

    Every value is a claim of its source: the quote is verified by the hardware phase, the event log by replaying it
    into the quote's RTMRs, and the rest (ids, hashes, key provider) is bound to the quote only through the replayed
    RTMR3 events. ``*_source`` and ``sources`` say where each piece came from; ``notes`` what was not combined.
    """

    model_config = _BYTES_HEX

    entity: Entity
    label: str  # e.g. "app/instance-0", "kms", "gateway": names the evidence made from it
    sources: tuple[str, ...] = ()
    quote: bytes | None = None
    quote_source: str | None = None
    event_log: list[dict[str, Any]] | None = None  # as served, for parse_event_log
    event_log_source: str | None = None
    vm_config: dict[str, Any] | None = None
    app_compose: str | None = None  # the exact text whose SHA-256 is the compose hash
    certificates_pem: str | None = None  # an RA-TLS chain, leaf first (binds a key to the quote's report_data)
    other_certificates_pem: str | None = None  # not RA-TLS: the gateway's TLS chain, the KMS CA certificate
    app_id: str | None = None  # lowercase hex, no 0x
    instance_id: str | None = None
    app_name: str | None = None
    device_id: str | None = None
    compose_hash: str | None = None
    os_image_hash: str | None = None
    mr_aggregated: str | None = None
    key_provider: KeyProvider | None = None
    version: str | None = None  # app: the image version; KMS and gateway: the KMS software version
    ca_pubkey: bytes | None = None  # KMS: the CA public key (SPKI DER)
    k256_pubkey: bytes | None = None  # KMS: the root k256 public key (compressed SEC1)
    acme_account_uri: str | None = None  # gateway
    acme_hist_keys: tuple[bytes, ...] = ()  # gateway: TLS public keys (SPKI DER) the ACME account used
    notes: tuple[str, ...] = ()

    def provenance(self) -> dict[str, Any]:
        """The metadata (not the quote, log, config, compose or certificates) as JSON values."""
        skip = {"quote", "event_log", "vm_config", "app_compose", "certificates_pem"}
        return self.model_dump(mode="json", exclude=skip)


_IDENTITY = ("app_id", "instance_id")
_PAIR = ("quote", "quote_source", "event_log", "event_log_source")


def merge_materials(parts: Iterable[EntityMaterial | None]) -> EntityMaterial | None:
    """Combine what several sources said about one entity; the first one given wins every field it has.

    The quote and its event log travel together (the first part with a quote brings its own log; a log from another
    part is used only when that part has none). A part that names another app id or instance id than the parts
    before it describes another VM (e.g. ``/prpc/Info`` answered by another instance behind the gateway): it is left
    out, and a note says so. A differing app-compose text is noted too.
    """
    chosen = [p for p in parts if p is not None]
    if not chosen:
        return None
    merged = chosen[0].model_dump()
    notes = list(merged["notes"])
    for part in chosen[1:]:
        values = part.model_dump()
        clash = [k for k in _IDENTITY if merged[k] and values[k] and merged[k] != values[k]]
        if clash:
            key = clash[0]
            notes.append(f"not combined: {', '.join(part.sources) or part.label} names {key.replace('_', ' ')} "
                         f"{values[key]}, not {merged[key]}")
            continue
        if merged["quote"] is None and values["quote"] is not None:
            for key in _PAIR:
                merged[key] = values[key]
        elif merged["event_log"] is None and values["event_log"] is not None:
            merged["event_log"], merged["event_log_source"] = values["event_log"], values["event_log_source"]
            if merged["quote"] is not None:
                notes.append(f"the event log comes from {values['event_log_source']}, not from the quote's source")
        if merged["app_compose"] and values["app_compose"] and merged["app_compose"] != values["app_compose"]:
            notes.append(f"{', '.join(part.sources) or part.label} gives another app-compose (not used)")
        for key, value in values.items():
            if key in (*_PAIR, "entity", "label", "sources", "notes"):
                continue
            if merged[key] in (None, (), "") and value not in (None, (), ""):
                merged[key] = value
        merged["sources"] = tuple(dict.fromkeys((*merged["sources"], *part.sources)))
        notes.extend(part.notes)
    merged["notes"] = tuple(dict.fromkeys(notes))
    return EntityMaterial.model_validate(merged)


def collect(
    cloud: CloudAttestations | None = None,
    *,
    instance: int = 0,
    app_info: AgentInfo | None = None,
    kms_meta: KmsMeta | None = None,
    acme_info: AcmeInfo | None = None,
    gateway_info: AgentInfo | None = None,
) -> dict[Entity, EntityMaterial]:
    """Per entity, what the given answers said (entities no answer speaks of are absent).

    Precedence (first wins): app — the Cloud instance (``instance``), then ``/prpc/Info``; KMS — the Cloud API's
    ``kms_guest_agent_info``, then ``KMS.GetMeta`` (whose bootstrap quote, log and keys fill what is missing);
    gateway — ``/.dstack/acme-info`` (the ACME account quote, as the Trust Center uses it), then the Cloud API's
    ``gateway_guest_agent_info``, then ``/.dstack/app-info``.
    """
    found: dict[Entity, EntityMaterial] = {}
    parts: dict[Entity, list[EntityMaterial | None]] = {
        "app": [
            cloud.app_material(instance) if cloud is not None else None,
            app_info.material("app", f"app/instance-{instance}" if cloud is not None else "app") if app_info else None,
        ],
        "kms": [
            cloud.kms_material() if cloud is not None else None,
            kms_meta.material() if kms_meta is not None else None,
        ],
        "gateway": [
            acme_info.material() if acme_info is not None else None,
            cloud.gateway_material() if cloud is not None else None,
            gateway_info.material("gateway") if gateway_info is not None else None,
        ],
    }
    for entity in ENTITIES:
        merged = merge_materials(parts[entity])
        if merged is not None:
            found[entity] = merged
    return found


def material_evidence(material: EntityMaterial) -> list[Evidence]:
    """The Evidence items of one entity: a GetQuote-shaped JSON (quote, event log, vm_config, plus the provenance
    under ``source``), the app-compose with its exact bytes, and the RA-TLS chain. No quote → no evidence."""
    if material.quote is None:
        return []
    doc: dict[str, Any] = {
        "quote": material.quote.hex(),
        "event_log": json.dumps(material.event_log) if material.event_log is not None else "",
        "vm_config": json.dumps(material.vm_config) if material.vm_config is not None else "",
        "source": material.provenance(),
    }
    name = material.label
    try:
        quote = detect(json.dumps(doc, indent=1).encode(), f"{name}/getquote.json")
    except InputError as exc:  # the parsers validated every part already; this is a belt and braces
        raise from_input_error(exc, f"{name}/getquote.json") from None
    quote.extra["material"] = material
    items = [quote]
    if material.app_compose is not None:
        data = material.app_compose.encode("utf-8")
        try:
            parsed = load_json(material.app_compose, f"{name}/app-compose.json")
        except InputError:
            parsed = None  # the source phase reports a compose that does not parse
        items.append(Evidence(f"{name}/app-compose.json", "app-compose", data, json=parsed))
    if material.certificates_pem:
        pem = material.certificates_pem.encode("utf-8")
        items.append(Evidence(f"{name}/app-cert.pem", "certificate", pem,
                              certificates=load_certificates(pem, f"{name}/app-cert.pem")))
    return items


def to_evidence(
    cloud: CloudAttestations | None = None,
    *,
    instance: int = 0,
    app_info: AgentInfo | None = None,
    kms_meta: KmsMeta | None = None,
    acme_info: AcmeInfo | None = None,
    gateway_info: AgentInfo | None = None,
) -> dict[str, list[Evidence]]:
    """Entity → the Evidence items of that entity, for every entity some answer gave a quote for.

    One verification per entity: ``verify_evidence(result["gateway"], options)``. Each app instance is its own
    verification: call once per index of ``cloud.instances``.
    """
    materials = collect(cloud, instance=instance, app_info=app_info, kms_meta=kms_meta, acme_info=acme_info,
                        gateway_info=gateway_info)
    out: dict[str, list[Evidence]] = {}
    for entity, material in materials.items():
        items = material_evidence(material)
        if items:
            out[entity] = items
    return out


# The fetchers live in the submodules; they are re-exported lazily (they import this module).
_EXPORTS = {
    "CloudAttestations": "cloud",
    "CloudInstance": "cloud",
    "KmsInfo": "cloud",
    "fetch_attestations": "cloud",
    "parse_cloud_answer": "cloud",
    "AgentInfo": "agent",
    "KmsMeta": "agent",
    "fetch_info": "agent",
    "parse_info": "agent",
    "fetch_kms_meta": "agent",
    "parse_kms_meta": "agent",
    "AcmeInfo": "gateway",
    "fetch_acme_info": "gateway",
    "fetch_app_info": "gateway",
    "parse_acme_info": "gateway",
    "parse_app_info": "gateway",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
