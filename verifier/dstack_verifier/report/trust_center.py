"""A report in the Trust Center's own shape: its ``VerificationResponse`` (trust-center.md §1.13, §2.1).

For tools and people who read Trust Center results: the DataObjects with their ``measuredBy`` edges (ours are kept
as relationships, "source vouches for target"; the Trust Center keeps each on its target), ``failures`` (the checks
that failed, on their entity's main object), ``errors`` (the checks that could not run) and ``success``. The
Trust Center's own rule holds: success is no error and no failure. Warnings and skips have no place in that shape;
the report itself keeps them. What the objects carry (quotes, event logs, VM configs, composes, the RA-TLS chain)
is what a Trust Center result carries, so the response can be verified again as one (`verify FILE`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ..model import CheckStatus, Report


def _edge(source: str, field: str, target_field: str) -> dict[str, str]:
    edge = {"objectId": source}
    if field:
        edge["fieldName"] = field
    if target_field:
        edge["selfFieldName"] = target_field
    return edge


def trust_center_response(report: Report) -> dict[str, Any]:
    measured_by: dict[str, list[dict[str, str]]] = {}
    for rel in report.relationships:
        edges = measured_by.setdefault(rel.target, [])
        edge = _edge(rel.source, rel.field, rel.target_field)
        if edge not in edges:  # the Trust Center de-duplicates them too
            edges.append(edge)
    objects = []
    for obj in report.data_objects:
        entry: dict[str, Any] = {"id": obj.id, "name": obj.name, "fields": obj.fields, "kind": obj.entity}
        if obj.id in measured_by:
            entry["measuredBy"] = measured_by[obj.id]
        if obj.calculations:
            entry["calculations"] = [{"inputs": c.inputs, "calcFunc": c.function, "outputs": c.outputs}
                                     for c in obj.calculations]
        objects.append(entry)
    failures = [{"componentId": f"{c.entity}-main", "error": f"{c.id}: {c.summary}"}
                for c in report.checks if c.status is CheckStatus.FAIL]
    errors = [{"message": f"{c.entity} {c.id}: {c.summary}"} for c in report.checks if c.status is CheckStatus.ERROR]
    return {
        "dataObjects": objects,
        "completedAt": datetime.fromtimestamp(report.verified_at, UTC).isoformat().replace("+00:00", "Z"),
        "errors": errors,
        "failures": failures,
        "success": not errors and not failures,
    }


def trust_center_json(report: Report) -> str:
    """The response as the file `report trust-center` and the GUI's export write."""
    return json.dumps(trust_center_response(report), indent=2) + "\n"
