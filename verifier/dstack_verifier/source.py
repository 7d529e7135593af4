"""Source identity: the app-compose file, its hash in RTMR3, and the quote's mr_config_id.

The compose hash is sha256 of the EXACT file bytes the guest booted with (spec §6.2): re-serialised JSON (a pretty
printer, key masking) changes the hash, so the checks here only ever hash the bytes they were given. `parse_compose`
is for showing what the compose says; the verdict never rests on the parsed form.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable
from typing import Any

from Crypto.Hash import keccak
from pydantic import BaseModel, ConfigDict, Field

from .errors import InputError
from .eventlog import AppInfo
from .jsontext import json_kind, load_json
from .model import Anchor, Check, CheckStatus, Entity
from .quote.structure import Quote

MAX_COMPOSE_BYTES = 4 << 20
DETAIL_TEXT_CHARS = 64 * 1024  # docker_compose_file shown in check details up to this many characters
MR_CONFIG_V3_DOMAIN = b"dstack-mr-config-v3:"
# Key-provider names as the `key-provider` event writes them → (compose / MrConfigV3 kind, mr_config v2 kind byte).
KEY_PROVIDER_KINDS = {"none": ("none", 0), "local-sgx": ("local", 1), "local": ("local", 1), "kms": ("kms", 2),
                      "tpm": ("tpm", 3)}


class ComposeInfo(BaseModel):
    """The fields of an app-compose.json a reviewer needs to see (dstack-types `AppCompose`)."""

    model_config = ConfigDict(frozen=True)

    sha256: str  # of the exact bytes parsed
    size: int
    manifest_version: int | str | None = None
    name: str | None = None
    runner: str | None = None
    docker_compose_file: str | None = None
    bash_script: str | None = None  # the legacy "bash" runner
    pre_launch_script: str | None = None
    kms_enabled: bool | None = None
    gateway_enabled: bool | None = None
    tproxy_enabled: bool | None = None  # the old name of gateway_enabled
    public_logs: bool | None = None
    public_sysinfo: bool | None = None
    public_tcbinfo: bool | None = None
    local_key_provider_enabled: bool | None = None
    key_provider: str | None = None
    key_provider_id: str | None = None
    event_log_version: int | None = None
    allowed_envs: list[str] = Field(default_factory=list)
    features: list[str] = Field(default_factory=list)
    no_instance_id: bool | None = None
    secure_time: bool | None = None
    no_tee: bool | None = None
    storage_fs: str | None = None
    swap_size: int | str | None = None
    launch_token_hash: str | None = None
    requirements: dict[str, Any] | None = None
    other_keys: list[str] = Field(default_factory=list)

    @property
    def effective_gateway_enabled(self) -> bool:
        """What the guest does: gateway_enabled or tproxy_enabled or the deprecated "tproxy-net" feature."""
        return bool(self.gateway_enabled or self.tproxy_enabled or "tproxy-net" in self.features)

    @property
    def effective_key_provider(self) -> str:
        """dstack's rule: an explicit key_provider, else kms if kms_enabled, else local if enabled, else none."""
        if self.key_provider:
            return self.key_provider
        if self.kms_enabled:
            return "kms"
        return "local" if self.local_key_provider_enabled else "none"

    def summary(self) -> dict[str, Any]:
        out = self.model_dump(exclude_none=True)
        text = self.docker_compose_file
        if text is not None and len(text) > DETAIL_TEXT_CHARS:
            out["docker_compose_file"] = text[:DETAIL_TEXT_CHARS]
            out["docker_compose_file_truncated"] = True
        out["effective_gateway_enabled"] = self.effective_gateway_enabled
        out["effective_key_provider"] = self.effective_key_provider
        return out


_STR_FIELDS = ("name", "runner", "docker_compose_file", "bash_script", "pre_launch_script", "key_provider",
               "key_provider_id", "storage_fs", "launch_token_hash")
_BOOL_FIELDS = ("kms_enabled", "gateway_enabled", "tproxy_enabled", "public_logs", "public_sysinfo",
                "public_tcbinfo", "local_key_provider_enabled", "no_instance_id", "secure_time", "no_tee")
_LIST_FIELDS = ("allowed_envs", "features")
_KNOWN = {"manifest_version", "event_log_version", "swap_size", "requirements", *_STR_FIELDS, *_BOOL_FIELDS,
          *_LIST_FIELDS}


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A key given twice would let the reviewer read one value while the guest's parser (serde) refuses or differs.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key[:60]!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def parse_compose(data: bytes, source: str) -> ComposeInfo:
    """Parse app-compose.json bytes. InputError when not a UTF-8 JSON object, or a known field has the wrong type."""
    if len(data) > MAX_COMPOSE_BYTES:
        raise InputError(f"app-compose is {len(data)} bytes, more than {MAX_COMPOSE_BYTES}", source=source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError("app-compose is not UTF-8", source=source, offset=exc.start) from None
    doc = load_json(text, source, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    if not isinstance(doc, dict):
        raise InputError(f"app-compose must be a JSON object, got {json_kind(doc)}", source=source)

    def wrong(key: str, expected: str) -> InputError:
        return InputError(f"expected {expected}, got {json_kind(doc[key])}", source=source, field=key)

    fields: dict[str, Any] = {}
    for key in _STR_FIELDS:
        if doc.get(key) is not None:
            if not isinstance(doc[key], str):
                raise wrong(key, "a string")
            fields[key] = doc[key]
    for key in _BOOL_FIELDS:
        if doc.get(key) is not None:
            if not isinstance(doc[key], bool):
                raise wrong(key, "true or false")
            fields[key] = doc[key]
    for key in _LIST_FIELDS:
        if doc.get(key) is not None:
            if not isinstance(doc[key], list) or not all(isinstance(v, str) for v in doc[key]):
                raise wrong(key, "an array of strings")
            fields[key] = doc[key]
    version = doc.get("manifest_version")
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int | str):
            raise wrong("manifest_version", "an integer or a string")
        fields["manifest_version"] = version
    log_version = doc.get("event_log_version")
    if log_version is not None:
        if isinstance(log_version, bool) or log_version not in (1, 2):
            raise InputError(f"expected 1 or 2, got {json.dumps(log_version)[:40]}", source=source,
                             field="event_log_version")
        fields["event_log_version"] = log_version
    swap = doc.get("swap_size")
    if swap is not None:
        if isinstance(swap, bool) or not isinstance(swap, int | str):
            raise wrong("swap_size", "a size")
        fields["swap_size"] = swap
    if doc.get("requirements") is not None:
        if not isinstance(doc["requirements"], dict):
            raise wrong("requirements", "an object")
        fields["requirements"] = doc["requirements"]
    return ComposeInfo(
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        other_keys=sorted(k for k in doc if k not in _KNOWN),
        **fields,
    )


def check_compose_hash(compose: bytes | None, app_info: AppInfo | None, entity: Entity,
                       reason_if_absent: str) -> Check:
    """`source.compose_hash`: sha256 of the exact app-compose bytes equals the compose-hash event of RTMR3.

    The event is only as good as `eventlog.rtmr3_payloads`, which binds it to the quote; hence the anchor.
    """
    if compose is None:
        return Check(id="source.compose_hash", entity=entity, phase="source", status=CheckStatus.SKIP,
                     anchor=Anchor.NONE, summary=f"skipped: {reason_if_absent}", details={"reason": reason_if_absent})
    calculated = hashlib.sha256(compose).digest()
    details: dict[str, Any] = {"calculated": calculated.hex(), "compose_size": len(compose)}
    try:
        details["compose"] = parse_compose(compose, "app-compose").summary()
    except InputError as exc:  # the hash still decides; the summary is only for reading
        details["compose_parse_error"] = exc.message if exc.field is None else f"{exc.field}: {exc.message}"
    if app_info is None:
        details["reason"] = "no event log to compare with"
        return Check(id="source.compose_hash", entity=entity, phase="source", status=CheckStatus.SKIP,
                     anchor=Anchor.NONE, summary="skipped: no event log to compare with", details=details)
    if app_info.compose_hash is None:
        # The boot bound to the quote measured no compose: this compose is not what runs (the Trust Center's
        # "invalid"), whatever it hashes to.
        return Check(id="source.compose_hash", entity=entity, phase="source", status=CheckStatus.FAIL,
                     anchor=Anchor.QUOTE, details=details,
                     summary="the event log bound to the quote has no compose-hash event before system-ready: the "
                             "app-compose given is not measured by this quote")
    event_hash = app_info.compose_hash
    details["event"] = event_hash.hex()
    details["event_index"] = app_info.event_indices.get("compose_hash")
    details["match"] = calculated == event_hash
    if calculated == event_hash:
        return Check(id="source.compose_hash", entity=entity, phase="source", status=CheckStatus.PASS,
                     anchor=Anchor.QUOTE, details=details,
                     summary=f"sha256 of the app-compose ({len(compose)} bytes) equals the compose-hash event "
                             f"{event_hash.hex()}")
    return Check(id="source.compose_hash", entity=entity, phase="source", status=CheckStatus.FAIL,
                 anchor=Anchor.QUOTE, details=details,
                 summary=f"sha256 of the app-compose ({calculated.hex()}) does not match the compose-hash event "
                         f"({event_hash.hex()})")


def _keccak256(data: bytes) -> bytes:
    h = keccak.new(digest_bits=256)
    h.update(data)
    return h.digest()


def _config_id(version: int, digest: bytes) -> bytes:
    return bytes([version]) + digest + bytes(48 - 1 - len(digest))


def _v3_candidates(app_info: AppInfo) -> list[tuple[str, dict[str, Any]]]:
    """MrConfigV3 documents the event log allows, as JCS text: the required fields plus every subset of optional ones.

    dstack's schema moved (spec §6.5 lists optional gpu_policy_hash / init_script_hashes; later sources always write
    app_id, instance_id and key_provider_id). Any document whose hash matches binds only values equal to the events'.
    """
    kp = app_info.key_provider
    if app_info.compose_hash is None or kp is None or kp.name not in KEY_PROVIDER_KINDS:
        return []
    base: dict[str, Any] = {"version": 3, "compose_hash": app_info.compose_hash.hex(),
                            "key_provider": KEY_PROVIDER_KINDS[kp.name][0]}
    optional: dict[str, Any] = {"key_provider_id": kp.id}
    if app_info.app_id is not None:
        optional["app_id"] = app_info.app_id.hex()
    if app_info.instance_id is not None:
        optional["instance_id"] = app_info.instance_id.hex()
    if app_info.gpu_policy_hash is not None:
        optional["gpu_policy_hash"] = app_info.gpu_policy_hash.hex()
    if app_info.init_script_hashes:
        optional["init_script_hashes"] = [h.hex() for h in app_info.init_script_hashes]
    out = []
    keys = sorted(optional)
    for n in range(len(keys), -1, -1):
        for subset in itertools.combinations(keys, n):
            doc = {**base, **{k: optional[k] for k in subset}}
            out.append((json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False), doc))
    return out


def _v3_hash(document: str) -> bytes:
    return hashlib.sha256(MR_CONFIG_V3_DOMAIN + b"\x00" + document.encode("utf-8")).digest()


def _v3_document_conflicts(document: str, app_info: AppInfo) -> list[str]:
    """Fields of a caller-supplied MrConfigV3 document that contradict the verified events (or cannot be read)."""
    try:
        doc = load_json(document, "mr_config document")
    except InputError as exc:
        return [f"the document is not JSON ({exc.message})"]
    if not isinstance(doc, dict):
        return ["the document is not a JSON object"]
    expected: dict[str, Any] = {}
    if app_info.compose_hash is not None:
        expected["compose_hash"] = app_info.compose_hash.hex()
    if app_info.app_id is not None:
        expected["app_id"] = app_info.app_id.hex()
    if app_info.instance_id is not None:
        expected["instance_id"] = app_info.instance_id.hex()
    if app_info.key_provider is not None and app_info.key_provider.name in KEY_PROVIDER_KINDS:
        expected["key_provider"] = KEY_PROVIDER_KINDS[app_info.key_provider.name][0]
        expected["key_provider_id"] = app_info.key_provider.id.lower()
    if app_info.gpu_policy_hash is not None:
        expected["gpu_policy_hash"] = app_info.gpu_policy_hash.hex()
    expected["init_script_hashes"] = [h.hex() for h in app_info.init_script_hashes]
    problems = []
    for key, value in doc.items():
        if key == "version":
            if value != 3:
                problems.append(f"version is {json.dumps(value)[:20]}, not 3")
        elif key not in expected:
            problems.append(f"{key} has no verified event to compare with")
        elif (value.lower() if isinstance(value, str) else value) != expected[key]:
            problems.append(f"{key} differs from the event log")
    if "compose_hash" not in doc:
        problems.append("compose_hash is missing")
    return problems


def check_mr_config_id(quote: Quote, app_info: AppInfo | None, entity: Entity, *,
                       mr_config_document: str | None = None) -> Check:
    """`source.mr_config_id`: the quote's MRCONFIGID is consistent with the verified runtime events (spec §6.5).

    v1 = 01 || compose_hash || zeros; v2 = 02 || keccak256(compose_hash || app_id || kind || kp_id) || zeros;
    v3 = 03 || sha256("dstack-mr-config-v3:" || 00 || document) || zeros, where the document is the MrConfigV3 JSON:
    taken from `mr_config_document` when given, else reconstructed from the events when possible.
    """

    def result(status: CheckStatus, summary: str, **details: Any) -> Check:
        anchor = Anchor.QUOTE if status in (CheckStatus.PASS, CheckStatus.FAIL) else Anchor.NONE
        return Check(id="source.mr_config_id", entity=entity, phase="source", status=status, anchor=anchor,
                     summary=summary, details={"mr_config_id": mr_config_id.hex(), **details})

    if quote.body.kind == "sgx":
        return Check(id="source.mr_config_id", entity=entity, phase="source", status=CheckStatus.SKIP,
                     summary="skipped: the quote is an SGX quote, which has no mr_config_id")
    mr_config_id: bytes = quote.body["mrconfig"]
    if not any(mr_config_id):
        return result(CheckStatus.PASS, "mr_config_id is all zero: this app does not use it (nothing to compare)",
                      used=False)
    version = mr_config_id[0]
    if version not in (1, 2, 3):
        return result(CheckStatus.FAIL, f"mr_config_id has unknown version {version} (dstack uses 1, 2 or 3)",
                      version=version)
    if app_info is None:
        return result(CheckStatus.SKIP, f"skipped: mr_config_id is version {version}, but there is no event log "
                                        "to compare it with", version=version)
    compose_hash = app_info.compose_hash
    if version == 1:
        if compose_hash is None:
            return result(CheckStatus.WARN, "mr_config_id v1 binds a compose hash, but the event log has no "
                                            "compose-hash event to compare it with", version=1)
        expected = _config_id(1, compose_hash)
        return _compare(result, 1, expected, mr_config_id, "01 || compose_hash || zeros",
                        compose_hash=compose_hash.hex())
    if version == 2:
        missing = [name for name, value in (("compose-hash", compose_hash), ("app-id", app_info.app_id),
                                            ("key-provider", app_info.key_provider)) if value is None]
        kp = app_info.key_provider
        if kp is not None and kp.name not in KEY_PROVIDER_KINDS:
            missing.append(f"a known key provider (got {kp.name[:40]!r})")
        kp_id: bytes | None = None
        if kp is not None:
            try:
                kp_id = bytes.fromhex(kp.id)
            except ValueError:
                missing.append("a hex key-provider id")
        if missing or compose_hash is None or app_info.app_id is None or kp is None or kp_id is None:
            return result(CheckStatus.WARN, f"mr_config_id v2 cannot be recomputed: the event log lacks "
                                            f"{', '.join(missing)}", version=2, missing=missing)
        kind = KEY_PROVIDER_KINDS[kp.name][1]
        digest = _keccak256(compose_hash + app_info.app_id + bytes([kind]) + kp_id)
        return _compare(result, 2, _config_id(2, digest), mr_config_id,
                        "02 || keccak256(compose_hash || app_id || key_provider_kind || key_provider_id) || zeros",
                        compose_hash=compose_hash.hex(), app_id=app_info.app_id.hex(), key_provider_kind=kind,
                        key_provider_id=kp.id)
    # Version 3 commits to a document, not to the values directly.
    if mr_config_document is not None:
        expected = _config_id(3, _v3_hash(mr_config_document))
        if expected != mr_config_id:
            return result(CheckStatus.FAIL, "mr_config_id v3 does not match the hash of the supplied MrConfigV3 "
                                            f"document (expected {expected.hex()})", version=3,
                          expected=expected.hex(), document=mr_config_document[:DETAIL_TEXT_CHARS])
        conflicts = _v3_document_conflicts(mr_config_document, app_info)
        if conflicts:
            return result(CheckStatus.FAIL, f"The MrConfigV3 document bound by mr_config_id disagrees with the "
                                            f"event log: {conflicts[0]}", version=3, problems=conflicts,
                          document=mr_config_document[:DETAIL_TEXT_CHARS])
        return result(CheckStatus.PASS, "mr_config_id v3 is the hash of the supplied MrConfigV3 document, whose "
                                        "fields equal the event log's", version=3, document=mr_config_document,
                      document_source="supplied")
    candidates = _v3_candidates(app_info)
    for text, doc in candidates:
        if _config_id(3, _v3_hash(text)) == mr_config_id:
            return result(CheckStatus.PASS, f"mr_config_id v3 is the hash of a MrConfigV3 document rebuilt from the "
                                            f"event log (fields: {', '.join(sorted(doc))})", version=3,
                          document=text, document_source="reconstructed from the event log")
    missing_doc = ("the MrConfigV3 document (it could not be rebuilt from the event log"
                   + (f"; {len(candidates)} forms tried)" if candidates
                      else ": compose-hash or key-provider event missing)"))
    return result(CheckStatus.WARN, f"mr_config_id v3 cannot be checked without {missing_doc}", version=3,
                  missing=["MrConfigV3 document"], forms_tried=len(candidates))


def _compare(result: Callable[..., Check], version: int, expected: bytes, actual: bytes, rule: str,
             **inputs: Any) -> Check:
    if expected == actual:
        return result(CheckStatus.PASS, f"mr_config_id v{version} = {rule}, recomputed from the event log",
                      version=version, expected=expected.hex(), rule=rule, inputs=inputs)
    return result(CheckStatus.FAIL, f"mr_config_id v{version} {actual.hex()} does not match {rule} = "
                                    f"{expected.hex()}", version=version, expected=expected.hex(), rule=rule,
                  inputs=inputs)
