"""The models at the library's boundary: checks, anchors, inputs, data objects and the report."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

REPORT_SCHEMA = "dstack-inspector/report/v1"

Entity = Literal["app", "kms", "gateway"]
Phase = Literal["hardware", "os", "source", "domain"]


class CheckStatus(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"
    SKIP = "skip"
    ERROR = "error"


class Anchor(StrEnum):
    """What a check's result rests on. Parametrised anchors (onchain, image) are built by helpers below."""

    INTEL_ROOT = "intel-root"
    QUOTE = "quote"
    EVENT_LOG_ONLY = "event-log-only"
    CALLER_SUPPLIED = "caller-supplied"
    NONE = "none"


def onchain_anchor(chain: str, block: int) -> str:
    return f"onchain@{chain}:{block}"


def image_anchor(os_image_hash: str) -> str:
    return f"image:{os_image_hash}"


class Check(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    entity: Entity = "app"
    phase: Phase
    status: CheckStatus
    anchor: str = Anchor.NONE
    summary: str
    details: dict[str, Any] = Field(default_factory=dict)


class InputFile(BaseModel):
    """One input of a verification, with its digest so a report names exactly what was verified."""

    name: str
    kind: str
    sha256: str
    size: int
    role: str = ""
    # The bytes themselves (base64) for inputs up to 1 MiB, so a report can be re-run offline as it was.
    content_b64: str | None = None


class Calculation(BaseModel):
    """A value of an object computed here from others (the Trust Center's ``calculations``, §2.1): ``inputs`` are
    field names ("*": every field), ``outputs`` the fields it gave. Descriptive; the checks hold the comparisons."""

    inputs: list[str]
    function: str
    outputs: list[str]


class DataObject(BaseModel):
    id: str
    name: str
    entity: Entity
    kind: str = ""
    fields: dict[str, Any] = Field(default_factory=dict)
    check_ids: list[str] = Field(default_factory=list)
    calculations: list[Calculation] = Field(default_factory=list)


class Relationship(BaseModel):
    source: str
    target: str
    kind: str
    field: str = ""  # the source's field that vouches ("" : the source as a whole)
    target_field: str = ""  # the target's field it vouches for, when one (the Trust Center's selfFieldName)


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCOMPLETE = "incomplete"


class Report(BaseModel):
    schema_: str = Field(default=REPORT_SCHEMA, alias="schema")
    verdict: Verdict
    verified_at: int
    verifier_version: str
    policy: dict[str, Any] = Field(default_factory=dict)
    inputs: list[InputFile] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)
    data_objects: list[DataObject] = Field(default_factory=list)
    relationships: list[Relationship] = Field(default_factory=list)
    entities: dict[str, dict[str, Any]] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)

    model_config = ConfigDict(populate_by_name=True)

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(by_alias=True, indent=indent)


def decide_verdict(checks: list[Check], required: set[str] | None = None) -> Verdict:
    """pass: nothing failed or errored; fail: something failed; incomplete: something could not run.

    A `skip` makes the verdict incomplete only for checks the chosen phases required (`required` holds their
    ids; None means every skipped check was required).
    """
    if any(c.status is CheckStatus.FAIL for c in checks):
        return Verdict.FAIL
    for c in checks:
        if c.status is CheckStatus.ERROR:
            return Verdict.INCOMPLETE
        if c.status is CheckStatus.SKIP and (required is None or c.id in required):
            return Verdict.INCOMPLETE
    return Verdict.PASS
