"""Compare two reports (two tasks): what changed per entity in the measurements, the app identity and the TCB, which
checks changed status, and which inputs differ.

Only recorded results are compared; nothing is verified again here. Values absent from a report compare as None, so
"the OS phase did not run in A" shows as a change from nothing to a value rather than hiding the field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from .model import InputFile, Report

Change = Literal["same", "changed", "added", "removed"]

# (label, how to read it from entities[entity]): the fields a reviewer compares between two runs of an app.
_ENTITY_FIELDS: tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...] = (
    ("MRTD", lambda e: (e.get("quote") or {}).get("mrtd")),
    ("RTMR0", lambda e: (e.get("quote") or {}).get("rtmr0")),
    ("RTMR1", lambda e: (e.get("quote") or {}).get("rtmr1")),
    ("RTMR2", lambda e: (e.get("quote") or {}).get("rtmr2")),
    ("RTMR3", lambda e: (e.get("quote") or {}).get("rtmr3")),
    ("mr_config_id", lambda e: (e.get("quote") or {}).get("mrconfig")),
    ("compose hash", lambda e: (e.get("app_info") or {}).get("compose_hash")),
    ("OS image hash", lambda e: (e.get("app_info") or {}).get("os_image_hash")
     or (e.get("vm_config") or {}).get("os_image_hash")),
    ("app id", lambda e: (e.get("app_info") or {}).get("app_id")),
    ("TCB status", lambda e: (e.get("tcb") or {}).get("status")),
    # Advisories compare as a set: Intel lists them in no meaningful order.
    ("TCB advisories", lambda e: sorted((e.get("tcb") or {}).get("advisory_ids") or []) if e.get("tcb") else None),
)
ENTITY_FIELD_NAMES = tuple(label for label, _ in _ENTITY_FIELDS)


def _change(a: Any, b: Any) -> Change:
    if a == b:
        return "same"
    if a is None:
        return "added"
    if b is None:
        return "removed"
    return "changed"


class FieldDiff(BaseModel):
    field: str
    a: Any = None
    b: Any = None
    change: Change


class EntityDiff(BaseModel):
    entity: str
    in_a: bool
    in_b: bool
    fields: list[FieldDiff]

    @property
    def changed(self) -> list[FieldDiff]:
        return [f for f in self.fields if f.change != "same"]


class CheckDiff(BaseModel):
    entity: str
    id: str
    a: str | None = None  # status in A, None when A has no such check
    b: str | None = None
    summary_a: str = ""
    summary_b: str = ""
    change: Change


class InputDiff(BaseModel):
    role: str
    name_a: str | None = None
    name_b: str | None = None
    sha256_a: str | None = None
    sha256_b: str | None = None
    change: Change


class Comparison(BaseModel):
    verdict_a: str
    verdict_b: str
    verified_at_a: int
    verified_at_b: int
    entities: list[EntityDiff]
    checks: list[CheckDiff]
    inputs: list[InputDiff]

    @property
    def differences(self) -> int:
        """How many compared items differ (fields, checks, inputs, and the verdict)."""
        return (int(self.verdict_a != self.verdict_b)
                + sum(len(e.changed) for e in self.entities)
                + sum(c.change != "same" for c in self.checks)
                + sum(i.change != "same" for i in self.inputs))


def _ordered_union(a: list[str], b: list[str]) -> list[str]:
    return a + [x for x in b if x not in a]


def _entity_diff(entity: str, a: Report, b: Report) -> EntityDiff:
    ea, eb = a.entities.get(entity), b.entities.get(entity)
    fields = []
    for label, read in _ENTITY_FIELDS:
        va = read(ea) if ea is not None else None
        vb = read(eb) if eb is not None else None
        fields.append(FieldDiff(field=label, a=va, b=vb, change=_change(va, vb)))
    return EntityDiff(entity=entity, in_a=ea is not None, in_b=eb is not None, fields=fields)


def _check_diffs(a: Report, b: Report) -> list[CheckDiff]:
    checks_a = {(c.entity, c.id): c for c in a.checks}
    checks_b = {(c.entity, c.id): c for c in b.checks}
    keys = list(checks_a) + [k for k in checks_b if k not in checks_a]
    out = []
    for key in keys:
        ca, cb = checks_a.get(key), checks_b.get(key)
        sa = ca.status.value if ca is not None else None
        sb = cb.status.value if cb is not None else None
        out.append(CheckDiff(entity=key[0], id=key[1], a=sa, b=sb, summary_a=ca.summary if ca else "",
                             summary_b=cb.summary if cb else "", change=_change(sa, sb)))
    return out


def _pair_inputs(a: list[InputFile], b: list[InputFile]) -> list[tuple[InputFile | None, InputFile | None]]:
    """Inputs paired by role: same name first, then in order (two runs of one app rarely share file names)."""
    pairs: list[tuple[InputFile | None, InputFile | None]] = []
    for role in _ordered_union([i.role for i in a], [i.role for i in b]):
        left = [i for i in a if i.role == role]
        right = [i for i in b if i.role == role]
        for item in list(left):
            twin = next((r for r in right if r.name == item.name), None)
            if twin is not None:
                pairs.append((item, twin))
                left.remove(item)
                right.remove(twin)
        for k in range(max(len(left), len(right))):
            pairs.append((left[k] if k < len(left) else None, right[k] if k < len(right) else None))
    return pairs


def _input_diff(pa: InputFile | None, pb: InputFile | None) -> InputDiff:
    sa = pa.sha256 if pa is not None else None
    sb = pb.sha256 if pb is not None else None
    role = (pa or pb).role if (pa or pb) is not None else ""
    return InputDiff(role=role, name_a=pa.name if pa else None, name_b=pb.name if pb else None,
                     sha256_a=sa, sha256_b=sb, change=_change(sa, sb))


def compare_reports(a: Report, b: Report) -> Comparison:
    """What differs between report A (the baseline) and report B."""
    entities = _ordered_union(list(a.entities), list(b.entities))
    return Comparison(
        verdict_a=a.verdict.value,
        verdict_b=b.verdict.value,
        verified_at_a=a.verified_at,
        verified_at_b=b.verified_at,
        entities=[_entity_diff(e, a, b) for e in entities],
        checks=_check_diffs(a, b),
        inputs=[_input_diff(pa, pb) for pa, pb in _pair_inputs(a.inputs, b.inputs)],
    )
