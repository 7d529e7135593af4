"""`os.mrtd` and `os.rtmr0..2`: the expected registers against the quote and, event by event, against the quote's
event log, so that a mismatch says which event differs and what it measures."""

from __future__ import annotations

from typing import Any

from ..eventlog import Event
from ..model import Anchor, Check, CheckStatus, Entity, image_anchor
from ..quote.structure import Quote
from .model import ExpectedEvent, Measurement, Register

REGISTERS: tuple[Register, ...] = ("rtmr0", "rtmr1", "rtmr2")
_IMR = {"rtmr0": 0, "rtmr1": 1, "rtmr2": 2}


def _anchor(measurement: Measurement) -> str:
    image_hash = measurement.inputs.get("os_image_hash")
    return image_anchor(image_hash) if image_hash else Anchor.CALLER_SUPPLIED


def _skip(check_id: str, entity: Entity, reason: str) -> Check:
    return Check(id=check_id, entity=entity, phase="os", status=CheckStatus.SKIP, anchor=Anchor.NONE,
                 summary=f"skipped: {reason}", details={"reason": reason})


def check_mrtd(measurement: Measurement, quote: Quote, entity: Entity) -> Check:
    quoted = quote.body["mrtd"]
    details: dict[str, Any] = {
        "expected": measurement.mrtd.hex(),
        "quoted": quoted.hex(),
        "variant": measurement.mrtd_variant,
        "path": measurement.path,
        "inputs": measurement.inputs,
    }
    if measurement.mrtd == quoted:
        status, summary = CheckStatus.PASS, (f"MRTD ({measurement.mrtd_variant.replace('_', '-')} page order) "
                                             f"recomputed from the firmware equals the quote")
    else:
        status = CheckStatus.FAIL
        summary = (f"MRTD differs: the firmware gives {measurement.mrtd.hex()[:16]}… "
                   f"({measurement.mrtd_variant}), the quote has {quoted.hex()[:16]}…")
    return Check(id="os.mrtd", entity=entity, phase="os", status=status, anchor=_anchor(measurement),
                 summary=summary, details=details)


def _event_rows(expected: list[ExpectedEvent], logged: list[Event] | None) -> list[dict[str, Any]]:
    rows = []
    for i, exp in enumerate(expected):
        log = logged[i] if logged is not None and i < len(logged) else None
        rows.append({
            "index": i,
            "what": exp.what,
            "source": exp.source,
            "varies_with": exp.varies_with,
            "expected": exp.digest.hex(),
            "logged": log.digest.hex() if log is not None and log.digest is not None else None,
            "match": None if log is None or log.digest is None else log.digest == exp.digest,
        })
    return rows


def check_rtmr(register: Register, measurement: Measurement, quote: Quote, events: list[Event] | None,
               entity: Entity) -> Check:
    expected = measurement.register_events(register)
    quoted = quote.body[register]
    value = measurement.value(register)
    logged = None if events is None else [e for e in events if e.imr == _IMR[register]]
    rows = _event_rows(expected, logged)
    from_log = [r["what"] for r in rows if r["source"] == "event-log-only"]
    details: dict[str, Any] = {
        "expected": value.hex(),
        "quoted": quoted.hex(),
        "events": rows,
        "logged_events": None if logged is None else len(logged),
        "taken_from_event_log": from_log,
    }
    name = register.upper()
    differing = [r for r in rows if r["match"] is False]
    if logged is not None and len(logged) != len(expected):
        differing.append({"index": min(len(logged), len(expected)), "what": "the number of events",
                          "expected": str(len(expected)), "logged": str(len(logged))})
    note = f"; {', '.join(from_log)} taken from the event log (anchor event-log-only)" if from_log else ""
    if value == quoted and not differing:
        # The ACPI tables are the host's making. dstack's verifier recomputes them (QEMU), for TDX-lite boots too since
        # its PR #1051; digests that had to be taken from the host-written log leave RTMR0 self-consistent but not
        # checked there, which a reviewer is told as a warning.
        if from_log:
            details["acpi_note"] = measurement.inputs.get("acpi_note")
            note += (": this legacy boot's ACPI tables, which the host makes, were not recomputed "
                     "(install dstack-acpi-tables)" if measurement.path == "full-image" else
                     ": the ACPI tables, which the host makes, are taken as the log gives them (TDX-lite evidence "
                     "carries no firmware or kernel to recompute them with dstack-acpi-tables)")
        return Check(id=f"os.{register}", entity=entity, phase="os",
                     status=CheckStatus.WARN if from_log else CheckStatus.PASS, anchor=_anchor(measurement),
                     summary=f"{name} recomputed from {len(expected)} expected events equals the quote{note}",
                     details=details)
    if differing:
        first = differing[0]
        summary = (f"{name} event {first['index']}, {first['what']}, differs: expected {first['expected'][:16]}…, "
                   f"the event log has {str(first['logged'])[:16]}…")
        if first.get("varies_with"):
            summary += f"; it varies with {first['varies_with']}"
        if len(differing) > 1:
            summary += f" (and {len(differing) - 1} more)"
    else:
        summary = f"{name} differs: expected {value.hex()[:16]}…, the quote has {quoted.hex()[:16]}…"
    return Check(id=f"os.{register}", entity=entity, phase="os", status=CheckStatus.FAIL,
                 anchor=_anchor(measurement), summary=summary, details=details)


def check_registers(measurement: Measurement | None, quote: Quote, events: list[Event] | None, entity: Entity,
                    reason_if_absent: str) -> list[Check]:
    """The four register checks; all `skip` with the reason when there is no measurement."""
    ids = ["os.mrtd", *(f"os.{r}" for r in REGISTERS)]
    if measurement is None:
        return [_skip(check_id, entity, reason_if_absent) for check_id in ids]
    if not quote.is_tdx:
        return [_skip(check_id, entity, "an SGX quote has no TD measurements") for check_id in ids]
    return [check_mrtd(measurement, quote, entity), *(check_rtmr(r, measurement, quote, events, entity)
                                                     for r in REGISTERS)]
