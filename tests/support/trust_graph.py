"""Trust-graph inputs for the graph tests: one entity's objects and edges as the Trust Center lays them out
(trust-center.md §2.2 and §2.4), and the real debug-data object set converted to our models."""

from __future__ import annotations

import json

from dstack_verifier.model import Check, DataObject, Relationship

from tests.support.fixtures import fixture_path

TITLES = {"app": "APP", "kms": "KMS", "gateway": "GATEWAY"}  # as the Trust Center spells them in names
MAIN_NAMES = {"app": "App", "kms": "KMS", "gateway": "Gateway"}

# component → (name after the entity title, check ids that concern it)
COMPONENTS: dict[str, tuple[str, list[str]]] = {
    "main": ("", []),
    "quote": ("Attestation Report", ["hardware.quote_structure", "hardware.pck_chain", "hardware.tcb_status"]),
    "cpu": ("TEE Hardware", ["hardware.tcb_status"]),
    "event-logs-imr0": ("Event Logs for RTMR0", ["eventlog.replay"]),
    "event-logs-imr1": ("Event Logs for RTMR1", ["eventlog.replay"]),
    "event-logs-imr2": ("Event Logs for RTMR2", ["eventlog.replay"]),
    "event-logs-imr3": ("Event Logs for RTMR3", ["eventlog.replay", "eventlog.rtmr3_payloads"]),
    "os": ("OS", ["os.mrtd", "os.rtmr0"]),
    "os-code": ("OS Code", []),
    "code": ("Code", ["source.compose_hash"]),
}

# (source component, target component, field on the source): §2.4, the source vouches for the target.
EDGES = [
    ("quote", "cpu", ""),
    ("main", "quote", "intel_attestation_report"),
    *[("quote", f"event-logs-imr{n}", f"rtmr{n}") for n in range(4)],
    ("quote", "os", "mrtd"),
    ("quote", "os", "rtmr0"),
    ("event-logs-imr3", "os", "os-image-hash"),
    ("os", "os-code", "artifacts"),
    ("event-logs-imr3", "code", "compose-hash"),
]


def entity_objects(entity: str) -> list[DataObject]:
    title = TITLES[entity]
    return [
        DataObject(id=f"{entity}-{component}", name=f"{title} {name}" if name else MAIN_NAMES[entity],
                   entity=entity, kind=component, check_ids=checks)
        for component, (name, checks) in COMPONENTS.items()
    ]


def entity_relationships(entity: str) -> list[Relationship]:
    return [Relationship(source=f"{entity}-{s}", target=f"{entity}-{t}", kind="measured_by", field=f)
            for s, t, f in EDGES]


def three_entities() -> tuple[list[DataObject], list[Relationship]]:
    objects = [o for e in ("app", "kms", "gateway") for o in entity_objects(e)]
    relationships = [r for e in ("app", "kms", "gateway") for r in entity_relationships(e)]
    relationships += [Relationship(source="kms-main", target=f"{e}-main", kind="kms_of") for e in ("app", "gateway")]
    return objects, relationships


def checks_for(entity: str, statuses: dict[str, str]) -> list[Check]:
    """One check per id the entity's objects name, passing unless ``statuses`` says otherwise."""
    ids = dict.fromkeys(cid for _, checks in COMPONENTS.values() for cid in checks)
    phases = {"os": "os", "source": "source"}
    return [Check(id=cid, entity=entity, phase=phases.get(cid.split(".")[0], "hardware"),
                  status=statuses.get(cid, "pass"), summary=cid) for cid in ids]


def debug_data_graph() -> tuple[list[DataObject], list[Relationship]]:
    """The Trust Center's debug-data-1 objects (older layout, §2.5) with their measuredBy as our relationships."""
    raw = json.loads(fixture_path("trust-center", "debug-data-1.dataObjects.json").read_text())
    objects = [DataObject(id=o["id"], name=o["name"], entity=o["kind"], fields=o["fields"]) for o in raw]
    relationships = [
        Relationship(source=m["objectId"], target=o["id"], kind="measured_by", field=m.get("fieldName") or "")
        for o in raw for m in o.get("measuredBy", [])
    ]
    return objects, relationships
