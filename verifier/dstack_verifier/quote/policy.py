"""Deciding what a TCB status means for the reviewer: pass, warn or fail. A parameter, never a global."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..model import CheckStatus

DEFAULT_PASS = ["UpToDate"]
DEFAULT_WARN = [
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "TDRelaunchAdvised",
    "TDRelaunchAdvisedConfigurationNeeded",
]


class TcbPolicy(BaseModel):
    """Statuses not listed fail: OutOfDate, OutOfDateConfigurationNeeded, Revoked, and anything unknown."""

    pass_statuses: list[str] = Field(default_factory=lambda: list(DEFAULT_PASS))
    warn_statuses: list[str] = Field(default_factory=lambda: list(DEFAULT_WARN))
    # Collateral this close to its next update gets a warning: a re-fetch is due.
    freshness_warning_seconds: int = 7 * 24 * 3600

    def decide(self, status: str) -> CheckStatus:
        if status in self.pass_statuses:
            return CheckStatus.PASS
        if status in self.warn_statuses:
            return CheckStatus.WARN
        return CheckStatus.FAIL

    def describe(self) -> dict:
        return {"pass": self.pass_statuses, "warn": self.warn_statuses, "fail": "any other status"}
