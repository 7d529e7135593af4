"""A Phala Trust Center result, re-verified: its VerificationResponse (``dataObjects``, ``success``, ``errors``,
``failures``) or the bare DataObject list (trust-center.md §1.13, §2).

The Trust Center keeps, for each entity P (app, kms, gateway), the evidence it was given: the quote
(``P-main.intel_attestation_report``), the event log (``P-main.event_log`` in older results, else the
``P-event-logs-imr0..3`` objects), the VM config (``P-os.vm_config``), the app-compose (``P-code.compose_file``) and
the app's RA-TLS chain (``app-main.app_cert``). They become each entity's material, verified from scratch like any
other source's; what the Trust Center concluded (its ``success``, its failures, the TCB status it shows in
``P-cpu``) is kept apart as claims, for the report to set beside our own verdict. Nothing it derived (hashes, ids,
``is_registered``) is taken as established.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..evidence import MAX_QUOTE_BYTES
from ..model import Entity
from . import (
    ENTITIES,
    MAX_ANSWER_BYTES,
    MAX_LIST_ITEMS,
    MAX_TEXT_CHARS,
    EntityMaterial,
    Fields,
    SourceError,
    decode_answer,
    event_log_value,
    quote_value,
)

WHAT = "Trust Center result"
MAX_OBJECTS = 256
_ADDRESS_AT_END = re.compile(r"(0x[0-9a-fA-F]{40})/?$")
_EVENT_LOG_FIELD = re.compile(r"event_log_(\d{1,4})")


class TrustCenterClaims(BaseModel):
    """What the Trust Center concluded: shown beside our verdict, never used as evidence."""

    model_config = ConfigDict(frozen=True)

    success: bool | None = None  # absent from a bare DataObject list
    completed_at: str | None = None
    errors: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()
    tcb_status: dict[str, str] = {}  # entity -> P-cpu.verification_status


class TrustCenterResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    source: str
    materials: dict[str, EntityMaterial]  # entity -> what its objects carry (entities with a quote only)
    kms_contract: str | None = None  # from kms-main.registry_smart_contract (an explorer URL)
    chain: str | None = None  # kms-main.blockchain, e.g. "Base"
    gateway_app_id: str | None = None  # kms-main.gateway_app_id: the gateway app the KMS names (hex, no 0x)
    gateway_url: str | None = None  # gateway-main.endpoint
    claims: TrustCenterClaims
    notes: tuple[str, ...] = ()


def data_objects(doc: Any) -> list[Any] | None:
    """The DataObject list of a VerificationResponse or of a bare list; None for anything else (an event log, whose
    entries have no ``id`` and ``fields``, is a JSON list too)."""
    objects = doc.get("dataObjects") if isinstance(doc, dict) else doc
    if not isinstance(objects, list) or not objects:
        return None
    if not all(isinstance(o, dict) and "id" in o and isinstance(o.get("fields"), dict) for o in objects):
        return None
    return objects


def parse_trust_center_result(data: bytes, source: str) -> TrustCenterResult:
    doc = decode_answer(data, source, MAX_ANSWER_BYTES)
    objects = data_objects(doc)
    if objects is None:
        raise SourceError("not a Trust Center result (a dataObjects list of objects with id and fields)",
                          source=source, field="dataObjects")
    if len(objects) > MAX_OBJECTS:
        raise SourceError(f"{len(objects)} DataObjects, more than {MAX_OBJECTS}", source=source, field="dataObjects")
    by_id: dict[str, Fields] = {}
    for i, obj in enumerate(objects):
        object_id = obj["id"]
        if not isinstance(object_id, str) or len(object_id) > 100:
            raise SourceError("expected a short string", source=source, field=f"dataObjects[{i}].id")
        if object_id in by_id:  # the collector keys objects by id: a second one would have replaced the first
            raise SourceError(f"two DataObjects with id {object_id!r}", source=source, field=f"dataObjects[{i}].id")
        by_id[object_id] = Fields(obj["fields"], source, f"{object_id}.fields")
    notes: list[str] = []
    materials = {}
    for entity in ENTITIES:
        material = _material(entity, by_id, source, notes)
        if material is not None:
            materials[entity] = material
    if not materials:
        raise SourceError("the result holds no quote (no *-main object with intel_attestation_report)", source=source)
    kms = by_id.get("kms-main")
    gateway = by_id.get("gateway-main")
    return TrustCenterResult(
        source=source,
        materials=materials,
        kms_contract=_contract(kms, notes),
        chain=kms.text("blockchain") if kms is not None else None,
        gateway_app_id=kms.hexid("gateway_app_id", limit=20) if kms is not None else None,
        gateway_url=gateway.text("endpoint") if gateway is not None else None,
        claims=_claims(doc, by_id, source),
        notes=tuple(notes),
    )


def _material(entity: Entity, by_id: dict[str, Fields], source: str, notes: list[str]) -> EntityMaterial | None:
    main = by_id.get(f"{entity}-main")
    if main is None or not main.has("intel_attestation_report"):
        return None
    quote_data = main.hexbytes("intel_attestation_report", limit=MAX_QUOTE_BYTES, required=True)
    assert quote_data is not None
    quote = quote_value(quote_data, source, main.name("intel_attestation_report"))
    event_log, log_source = _event_log(entity, main, by_id, source, notes)
    os_object = by_id.get(f"{entity}-os")
    code = by_id.get(f"{entity}-code")
    vm_config = os_object.object("vm_config", json_string=True) if os_object is not None and _given(
        os_object, "vm_config") else None
    cert = main.text("app_cert", limit=MAX_TEXT_CHARS) if entity != "kms" else None
    pem = cert if cert and cert.lstrip().startswith("-----BEGIN CERTIFICATE-----") else None
    return EntityMaterial(
        entity=entity,
        label=f"trust-center/{entity}",
        sources=(source,),
        quote=quote,
        quote_source=f"{source} {main.name('intel_attestation_report')}",
        event_log=event_log,
        event_log_source=log_source,
        vm_config=vm_config.obj if vm_config is not None else None,
        app_compose=code.text("compose_file", limit=MAX_TEXT_CHARS) if code is not None else None,
        # The app's app_cert is its RA-TLS chain; the gateway's is its web TLS chain (not bound by report_data).
        certificates_pem=pem if entity == "app" else None,
        other_certificates_pem=pem if entity == "gateway" else None,
        app_id=main.hexid("app_id", limit=20),
        instance_id=main.hexid("instance_id", limit=20),
        device_id=main.hexid("device_id"),
        compose_hash=main.hexid("compose_hash"),
        os_image_hash=main.hexid("os_image_hash"),
        mr_aggregated=main.hexid("mr_aggregated"),
        version=os_object.text("os") if os_object is not None else None,
    )


def _given(fields: Fields, key: str) -> bool:
    """The Trust Center writes "N/A" for what it did not have."""
    return fields.has(key) and fields.raw(key) != "N/A"


def _event_log(entity: Entity, main: Fields, by_id: dict[str, Fields], source: str,
               notes: list[str]) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The whole log from ``P-main.event_log`` (older results), else rebuilt from the per-register objects: RTMR0-2
    from their ``event_log_<k>`` fields in k order, RTMR3 from its fields in order (one per event name)."""
    if main.has("event_log"):
        return main.event_log("event_log"), f"{source} {main.name('event_log')}"
    entries: list[Any] = []
    for imr in range(4):
        obj = by_id.get(f"{entity}-event-logs-imr{imr}")
        if obj is None:
            return None, None
        keys = list(obj.obj)
        if imr < 3:
            numbered = {int(m.group(1)): k for k in keys if (m := _EVENT_LOG_FIELD.fullmatch(k))}
            keys = [numbered[k] for k in sorted(numbered)]
        else:  # the fields that hold a log entry (JSON text of an object); others are values computed from them
            keys = [k for k in keys if isinstance(obj.raw(k), str) and obj.raw(k).lstrip().startswith("{")]
            if keys:
                notes.append(f"{entity}: the Trust Center keeps one RTMR3 event per name ({obj.path}), so a log "
                             "that repeats a name no longer replays")
        if len(entries) + len(keys) > MAX_LIST_ITEMS * 8:
            raise SourceError("too many events", source=source, field=obj.path)
        for key in keys:
            entry = obj.object(key, json_string=True, required=True)
            entries.append(entry.obj if entry is not None else None)
    return event_log_value(entries, source, f"{entity}-event-logs-imr0..3"), \
        f"{source} {entity}-event-logs-imr0..3 (rebuilt)"


def _contract(kms: Fields | None, notes: list[str]) -> str | None:
    url = kms.text("registry_smart_contract") if kms is not None else None
    if not url:
        return None
    found = _ADDRESS_AT_END.search(url)
    if found is None:
        notes.append(f"kms-main.registry_smart_contract {url[:80]!r} names no contract address")
        return None
    return found.group(1)


def _claims(doc: Any, by_id: dict[str, Fields], source: str) -> TrustCenterClaims:
    tcb = {}
    for entity in ENTITIES:
        cpu = by_id.get(f"{entity}-cpu")
        status = cpu.text("verification_status") if cpu is not None else None
        if status:
            tcb[entity] = status
    if not isinstance(doc, dict):
        return TrustCenterClaims(tcb_status=tcb)
    top = Fields(doc, source)
    return TrustCenterClaims(
        success=top.boolean("success"),
        completed_at=top.text("completedAt"),
        errors=tuple(_messages(top, "errors", "message")),
        failures=tuple(_messages(top, "failures", "error", "componentId")),
        tcb_status=tcb,
    )


def _messages(top: Fields, key: str, text_key: str, where_key: str | None = None) -> list[str]:
    out = []
    for i, item in enumerate(top.array(key) or []):
        entry = Fields(item, top.source, f"{key}[{i}]")
        text = entry.text(text_key) or json.dumps(item)[:200]
        where = entry.text(where_key) if where_key else None
        out.append(f"{where}: {text}" if where else text)
    return out


def claims_line(entities: dict[str, Any]) -> str | None:
    """One line of what a Trust Center result claimed, from a report's entities (None when it came from none)."""
    found = {e: data["trust_center_claims"] for e, data in entities.items()
             if isinstance(data, dict) and isinstance(data.get("trust_center_claims"), dict)}
    if not found:
        return None
    first = next(iter(found.values()))
    success = first.get("success")
    overall = ("success" if success is True else "failure" if success is False else
               "no overall verdict (a bare DataObject list)")
    statuses = ", ".join(f"{e} {str(c.get('tcb_status') or '?')[:40]}" for e, c in found.items())
    failures = sum(len(v) for v in (first.get("failures"), first.get("errors")) if isinstance(v, list))
    recorded = f"; {failures} failure(s) recorded" if failures else ""
    return f"the Trust Center claimed {overall}; TCB status {statuses}{recorded}"
