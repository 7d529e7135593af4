"""The in-toto Statement v1 of an evidence pack and its predicate: what was verified, when, under which policy and
anchor, by which verifier, and each entity's checks. Its bytes are RFC 8785 canonical, so one task always gives one
statement."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ..errors import InputError
from ..jsontext import load_json
from ..model import Report
from ..validation import M, validate_model
from .canonical import canonical_json

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
VERIFICATION_PREDICATE = "https://dstack-inspector.dev/verification/v1"
RENDERING_PREDICATE = "https://dstack-inspector.dev/rendering/v1"
VERIFIER_ID = "dstack-inspector"


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Subject(_Camel):
    name: str
    digest: dict[str, str]


class Statement(_Camel):
    type_: str = Field(default=STATEMENT_TYPE, alias="_type")
    subject: list[Subject]
    predicate_type: str
    predicate: dict[str, Any]

    def payload(self) -> bytes:
        return canonical_json(self.model_dump(mode="json", by_alias=True))

    def digests(self) -> dict[str, str]:
        return {s.name: s.digest.get("sha256", "") for s in self.subject}


class VerifierInfo(_Camel):
    id: str = VERIFIER_ID
    version: str


class PackedInput(_Camel):
    """One evidence file of the pack and the report input it is."""

    file: str  # its name in the pack
    name: str  # its name in the report
    kind: str
    role: str
    sha256: str
    size: int


class AnchorInfo(_Camel):
    sha256: str
    subject: str
    intel: bool
    file: str | None  # the anchor's certificate in the pack (None: the built-in Intel root)


class CheckResult(_Camel):
    id: str
    phase: str
    status: str
    anchor: str
    summary: str


class EntityResult(_Camel):
    # The entity's appraisal in the terms of RATS EAR (affirming, warning, contraindicated, none), for policy tools
    # that read only that; absent from packs made before it was added.
    status: str | None = None
    checks: list[CheckResult]


def ear_status(statuses: list[str], incomplete: bool = False) -> str:
    """EAR's trustworthiness tier of one entity's checks: a failure contraindicates; an error, nothing that ran, or
    a skipped check in a verification left incomplete (something it needed was not checked) makes no claim; a
    warning warns; else affirming."""
    if "fail" in statuses:
        return "contraindicated"
    if "error" in statuses or all(s == "skip" for s in statuses) or (incomplete and "skip" in statuses):
        return "none"
    return "warning" if "warn" in statuses else "affirming"


class VerificationPredicate(_Camel):
    verifier: VerifierInfo
    time_verified: str
    verified_at: int
    verdict: str
    policy: dict[str, Any]
    policy_digest: dict[str, str]
    trust_anchor: AnchorInfo
    evidence: list[PackedInput]
    submods: dict[str, EntityResult]


class RenderingPredicate(_Camel):
    """Binds the human renderings to the verification statement they were made from."""

    statement: dict[str, str]


def subject(name: str, data: bytes) -> Subject:
    return Subject(name=name, digest={"sha256": hashlib.sha256(data).hexdigest()})


_IDENTITY = re.compile(r"dstack-(app|kms|gateway):[0-9a-f]{1,128}")


def is_identity_subject(name: str) -> bool:
    return _IDENTITY.fullmatch(name) is not None


def identity_subjects(report: Report) -> list[Subject]:
    """What each verified entity is, as the statement's subjects say it to policy tools: `dstack-<entity>:<app id>`
    with the compose hash as its sha256 (the digest of the app-compose it runs). Only from RTMR3 events bound to the
    quote: a report keeps `app_info` only once `eventlog.rtmr3_payloads` held."""
    out = []
    for entity in ("app", "kms", "gateway"):
        info = report.entities.get(entity, {}).get("app_info")
        if not isinstance(info, dict):
            continue
        app_id, compose = info.get("app_id"), info.get("compose_hash")
        name = f"dstack-{entity}:{app_id}"
        if isinstance(app_id, str) and isinstance(compose, str) and is_identity_subject(name) \
                and re.fullmatch(r"[0-9a-f]{64}", compose):
            out.append(Subject(name=name, digest={"sha256": compose}))
    return out


def verification_predicate(report: Report, evidence: list[PackedInput], anchor: AnchorInfo) -> VerificationPredicate:
    submods: dict[str, EntityResult] = {}
    for c in report.checks:  # timings and check details stay out: the report.json subject carries them
        submods.setdefault(c.entity, EntityResult(checks=[])).checks.append(
            CheckResult(id=c.id, phase=c.phase, status=c.status.value, anchor=str(c.anchor), summary=c.summary))
    incomplete = report.verdict.value == "incomplete"
    for result in submods.values():
        result.status = ear_status([c.status for c in result.checks], incomplete)
    return VerificationPredicate(
        verifier=VerifierInfo(version=report.verifier_version),
        time_verified=datetime.fromtimestamp(report.verified_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        verified_at=report.verified_at,
        verdict=report.verdict.value,
        policy=report.policy,
        policy_digest={"sha256": hashlib.sha256(canonical_json(report.policy)).hexdigest()},
        trust_anchor=anchor,
        evidence=evidence,
        submods=submods,
    )


def make_statement(subjects: list[Subject], predicate_type: str, predicate: BaseModel) -> Statement:
    return Statement(subject=sorted(subjects, key=lambda s: s.name), predicate_type=predicate_type,
                     predicate=predicate.model_dump(mode="json", by_alias=True))


def parse_statement(payload: bytes, source: str, predicate_type: str) -> Statement:
    """A signed payload, decoded: an in-toto Statement v1 of the expected predicate type."""
    statement = validate_model(Statement, load_json(payload.decode("utf-8", "replace"), source), source,
                               "an in-toto statement")
    if statement.type_ != STATEMENT_TYPE:
        raise InputError(f"statement type {statement.type_!r}, expected {STATEMENT_TYPE}", source=source,
                         field="_type")
    if statement.predicate_type != predicate_type:
        raise InputError(f"predicate type {statement.predicate_type!r}, expected {predicate_type}", source=source,
                         field="predicateType")
    return statement


def parse_predicate(statement: Statement, model: type[M], source: str) -> M:
    return validate_model(model, statement.predicate, source, "the expected predicate", "predicate")
