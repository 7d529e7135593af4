"""`source.other_instances`: the app's other running instances, each held to the one verified in full.

A Phala Cloud answer lists every running instance of the app; one of them (the one whose guest agent answered, else
the first) is verified in full. The Trust Center stopped there (trust-center.md §7.1-4), so a second instance could
run anything. Each other instance is verified here too — its quote (DCAP, the same steps and policy), its RTMR3 log
(replayed, payloads bound) — and then compared with the instance verified in full: the same app id (else it is
another app), the same compose hash and the same MRTD and RTMR0-2 (else it runs another compose, or another OS or VM
shape, which only the full verification of that instance could vouch for: a warning naming it).

Parse (`sources.to_evidence`), verify (`verification._verify_entity`, given as a callable) and decide (here) stay
apart: this module only reads the reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .model import Anchor, Check, CheckStatus, Report

CHECK_ID = "source.other_instances"
BOUND_BY = ("eventlog.replay", "eventlog.rtmr3_payloads")  # what ties an instance's app info to its quote
SAME_OS = ("mrtd", "rtmr0", "rtmr1", "rtmr2")
_RANK = {CheckStatus.PASS: 0, CheckStatus.WARN: 1, CheckStatus.ERROR: 2, CheckStatus.FAIL: 3}
SHOWN_PROBLEMS = 3


@dataclass(frozen=True)
class InstanceOutcome:
    index: int  # position in the answer's instances list
    instance_id: str | None
    report: Report | None  # None: its evidence could not be read (`problem` says why)
    problem: str | None = None


def _app(report: Report) -> dict[str, Any]:
    app = report.entities.get("app")
    return app if isinstance(app, dict) else {}


def _field(part: dict[str, Any], section: str, name: str) -> Any:
    value = part.get(section)
    return value.get(name) if isinstance(value, dict) else None


def _measured(part: dict[str, Any], name: str) -> Any:
    """A register of the entity's decoded quote (its fields are named as the Trust Center names them)."""
    return _field(part, "quote", name)


def _judge(main: dict[str, Any], outcome: InstanceOutcome) -> tuple[CheckStatus, list[str], dict[str, Any]]:
    """The status of one instance, its problems (each a phrase), and its row of the details."""
    row: dict[str, Any] = {"index": outcome.index, "instance_id": outcome.instance_id}
    if outcome.report is None:
        row.update(status=CheckStatus.ERROR.value, problems=[f"its evidence is unusable ({outcome.problem})"])
        return CheckStatus.ERROR, row["problems"], row
    report = outcome.report
    mine = _app(report)
    row["tcb_status"] = _field(mine, "tcb", "status")
    problems: list[tuple[CheckStatus, str]] = []
    for check in report.checks:
        dcap = check.id.startswith("hardware.")  # the quote itself (bindings to keys are the full verification's)
        if (dcap or check.id in BOUND_BY) and check.status is CheckStatus.FAIL:
            problems.append((CheckStatus.FAIL, f"{check.id} fails: {check.summary}"))
        elif dcap and check.status in (CheckStatus.ERROR, CheckStatus.SKIP) and check.id != "hardware.reference_engine":
            problems.append((CheckStatus.ERROR, f"{check.id} could not run: {check.summary}"))
        elif dcap and check.status is CheckStatus.WARN:
            problems.append((CheckStatus.WARN, f"{check.id}: {check.summary}"))
    app_id, compose = _field(mine, "app_info", "app_id"), _field(mine, "app_info", "compose_hash")
    row.update(app_id=app_id, compose_hash=compose)
    if not any(s is CheckStatus.FAIL for s, _ in problems):
        if app_id is None:
            problems.append((CheckStatus.ERROR, "no app id bound to its quote (no event log, or one that does not "
                                                "replay)"))
        elif app_id != _field(main, "app_info", "app_id"):
            problems.append((CheckStatus.FAIL, f"its quote is of another app ({app_id})"))
        elif compose != _field(main, "app_info", "compose_hash"):
            problems.append((CheckStatus.WARN, f"it runs another compose (hash {compose})"))
        differ = [name for name in SAME_OS if _measured(mine, name) != _measured(main, name)]
        if any(_measured(main, name) is None for name in SAME_OS):
            differ = list(SAME_OS)  # nothing to compare with: never taken for "the same"
        if differ and app_id is not None:
            problems.append((CheckStatus.WARN, f"its {', '.join(differ)} differ: another OS or VM shape, not "
                                               "verified here"))
    status = max((s for s, _ in problems), key=_RANK.__getitem__, default=CheckStatus.PASS)
    row["status"] = status.value
    row["problems"] = [text for _, text in problems]
    return status, row["problems"], row


def check_other_instances(main: Report, outcomes: Sequence[InstanceOutcome]) -> Check:
    """`main` is the report of the instance verified in full; one outcome per other running instance."""
    reference = _app(main)
    judged = [(_judge(reference, o), o) for o in outcomes]
    status = max((s for (s, _, _), _ in judged), key=_RANK.__getitem__, default=CheckStatus.PASS)
    details = {"verified_in_full": {"app_id": _field(reference, "app_info", "app_id"),
                                    "compose_hash": _field(reference, "app_info", "compose_hash")},
               "instances": [row for (_, _, row), _ in judged]}
    n = len(outcomes)
    if status is CheckStatus.PASS:
        summary = (f"{n} other running instance{'s' if n > 1 else ''}: DCAP valid, RTMR3 bound, the same app id, "
                   "compose hash, MRTD and RTMR0-2 as the instance verified in full")
    else:
        found = [f"instance {o.index}: {text}" for (s, texts, _), o in judged for text in texts]
        more = f" (and {len(found) - SHOWN_PROBLEMS} more)" if len(found) > SHOWN_PROBLEMS else ""
        summary = f"{n} other running instance{'s' if n > 1 else ''}: " + "; ".join(found[:SHOWN_PROBLEMS]) + more
    # Like the hardware checks it repeats, the result rests on the trust anchor the quotes were verified under.
    anchor = next((c.anchor for c in main.checks if c.id == "hardware.quote_signature"), Anchor.NONE)
    return Check(id=CHECK_ID, entity="app", phase="source", status=status,
                 anchor=anchor if status is not CheckStatus.ERROR else Anchor.NONE, summary=summary, details=details)
