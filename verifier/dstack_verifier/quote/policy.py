"""Deciding what a TCB status means for the reviewer: pass, warn or fail. A parameter, never a global."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from ..model import CheckStatus

DEFAULT_PASS = ["UpToDate"]
DEFAULT_WARN = [
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "TDRelaunchAdvised",
    "TDRelaunchAdvisedConfigurationNeeded",
]


def mrseam_hex(text: str) -> str:
    """An MRSEAM as the policy keeps it: 96 lower-case hex digits (a `0x` prefix is dropped); ValueError otherwise."""
    value = text.strip().lower().removeprefix("0x")
    if len(value) != 96 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"{text[:40]!r} is not an MRSEAM (48 bytes of hex)")
    return value


# The policy's optional fields, recorded in a report only when set (an older report has none of them).
OPTIONAL_FIELDS = ("max_collateral_age_seconds", "min_tcb_evaluation_data_number", "allowed_mrseams",
                   "blocked_advisories")
_ADVISORY_RE = re.compile(r"INTEL-SA-\d{5}")


def advisory_id(text: str) -> str:
    """An Intel security advisory id as the policy keeps it (INTEL-SA-NNNNN); ValueError otherwise."""
    value = text.strip().upper()
    if not _ADVISORY_RE.fullmatch(value):
        raise ValueError(f"{text[:40]!r} is not an Intel advisory id (INTEL-SA- and five digits)")
    return value


class TcbPolicy(BaseModel):
    """Statuses not listed fail: OutOfDate, OutOfDateConfigurationNeeded, Revoked, and anything unknown."""

    pass_statuses: list[str] = Field(default_factory=lambda: list(DEFAULT_PASS))
    warn_statuses: list[str] = Field(default_factory=lambda: list(DEFAULT_WARN))
    # Collateral this close to its next update gets a warning: a re-fetch is due.
    freshness_warning_seconds: int = 7 * 24 * 3600
    # Off by default. A PCCS may go on serving Intel-signed collateral that is still inside its window but older than
    # Intel's current one, so a platform a TCB recovery has since made OutOfDate still looks UpToDate. These two
    # bound that: TCB Info / QE Identity issued longer ago than this get a warning ...
    max_collateral_age_seconds: int | None = Field(default=None, gt=0)
    # ... and a TCB status judged with TCB evaluation data older than this number fails.
    min_tcb_evaluation_data_number: int | None = Field(default=None, ge=0)
    # Off by default: the TDX module builds (MRSEAM, hex) the reviewer accepts. DCAP only checks the module's signer
    # and TCB level; a pin names the exact build.
    allowed_mrseams: list[str] | None = None
    # Off by default: advisories the reviewer will not accept, whatever the status. Intel lists advisories even with
    # UpToDate (mitigations that need a configuration or software change), so a status alone can hide one.
    blocked_advisories: list[str] | None = None

    @field_validator("allowed_mrseams", "blocked_advisories")
    @classmethod
    def _listed(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if v is None:
            return None
        if not v:  # an empty list would read as "none accepted" or "none blocked": given, a list names something
            raise ValueError(f"{info.field_name} needs at least one value when given")
        form = mrseam_hex if info.field_name == "allowed_mrseams" else advisory_id
        return [form(item) for item in v]

    def decide(self, status: str) -> CheckStatus:
        if status in self.pass_statuses:
            return CheckStatus.PASS
        if status in self.warn_statuses:
            return CheckStatus.WARN
        return CheckStatus.FAIL

    def describe(self) -> dict:
        out: dict = {"pass": self.pass_statuses, "warn": self.warn_statuses, "fail": "any other status"}
        return out | {k: getattr(self, k) for k in OPTIONAL_FIELDS if getattr(self, k) is not None}

    @staticmethod
    def text(described: dict) -> str:
        """describe()'s output in one line, for a reader of the signed report."""
        parts = [f"pass: {', '.join(map(str, described.get('pass') or []))}",
                 f"warn: {', '.join(map(str, described.get('warn') or []))}", "fail: any other status"]
        age = described.get("max_collateral_age_seconds")
        if isinstance(age, int):
            parts.append(f"collateral issued more than {age / 86400:g} days before the verification instant warns")
        least = described.get("min_tcb_evaluation_data_number")
        if isinstance(least, int):
            parts.append(f"a TCB status judged with TCB evaluation data number below {least} fails")
        for key, label in (("allowed_mrseams", "TDX modules accepted (MRSEAM)"),
                           ("blocked_advisories", "advisories that fail whatever the status")):
            values = described.get(key)
            if isinstance(values, list):
                parts.append(f"{label}: {', '.join(map(str, values))}")
        return "; ".join(parts)

    @classmethod
    def from_description(cls, described: dict) -> TcbPolicy:
        """The policy a report recorded (describe()'s output); ValueError when it is malformed."""
        return cls(pass_statuses=described.get("pass"), warn_statuses=described.get("warn"),
                   **{k: described.get(k) for k in OPTIONAL_FIELDS})
