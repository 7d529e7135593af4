"""The reference engine: dcap-qvl's verdict on the same quote, collateral, trust anchor and instant.

It is a second opinion only; our own steps decide.
"""

from __future__ import annotations

from dataclasses import dataclass

from .collateral import Collateral


@dataclass(frozen=True)
class ReferenceVerdict:
    engine: str
    valid: bool
    status: str | None
    advisory_ids: list[str]
    error: str | None


def reference_verify(raw_quote: bytes, collateral: Collateral, root_ca_der: bytes, now: int) -> ReferenceVerdict:
    import dcap_qvl  # imported here: a missing or broken wheel must not stop our own verification

    engine = f"dcap-qvl {getattr(dcap_qvl, '__version__', '?')}"
    qvl_collateral = dcap_qvl.QuoteCollateralV3.from_json(collateral.to_json())
    try:
        result = dcap_qvl.verify_with_root_ca(raw_quote, qvl_collateral, root_ca_der, now)
    except ValueError as exc:
        # anyhow's debug text: first line is the message, causes follow.
        lines = [line.strip() for line in str(exc).splitlines()]
        text = " / ".join(line for line in lines if line and line != "Caused by:")
        return ReferenceVerdict(engine, False, None, [], text)
    return ReferenceVerdict(engine, True, result.status, list(result.advisory_ids), None)
