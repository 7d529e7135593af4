"""One verification: evidence in, Report out. Sources of collateral (file, recorded, PCCS) are resolved here;
the checks themselves come from the phase modules. The clock, trust anchor and network client are parameters.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from . import __version__
from .errors import InputError
from .evidence import Evidence, replay_inputs
from .model import Check, CheckStatus, InputFile, Report, Verdict, decide_verdict
from .net import NetClient, NetError
from .quote.collateral import Collateral
from .quote.pccs import PHALA_PCCS_URL, CollateralCache, get_collateral
from .quote.pck import PckExtensionError, parse_pck_extension
from .quote.policy import TcbPolicy
from .quote.verify import CollateralMemo, HardwareResult, TrustAnchor, verify_quote

PHASES = ("hardware", "os", "source", "domain")


@dataclass
class VerifyOptions:
    now: int
    anchor: TrustAnchor
    offline: bool = False
    pccs_url: str = PHALA_PCCS_URL
    policy: TcbPolicy = field(default_factory=TcbPolicy)
    phases: tuple[str, ...] = PHASES
    reference: bool = True


@dataclass
class CollateralSource:
    collateral: Collateral | None
    input: InputFile | None
    problem: str | None = None
    is_error: bool = False


def _quote_evidence(items: list[Evidence]) -> Evidence:
    quotes = [e for e in items if e.quote is not None]
    if not quotes:
        raise InputError("no quote among the evidence (give a raw quote or a GetQuote JSON)")
    if len(quotes) > 1:
        names = ", ".join(e.name for e in quotes)
        raise InputError(f"several quotes among the evidence ({names}); give one quote per verification")
    return quotes[0]


def expand(items: list[Evidence]) -> list[Evidence]:
    """Reports among the evidence stand for the inputs they recorded."""
    out: list[Evidence] = []
    for item in items:
        out.extend(replay_inputs(item.json, item.name) if item.kind == "report" else [item])
    return out


def _collateral_input(data: bytes, name: str) -> InputFile:
    return Evidence(name, "collateral", data).input_file(role="collateral")


def resolve_collateral(
    items: list[Evidence],
    quote: Evidence,
    options: VerifyOptions,
    client: NetClient | None,
    cache: CollateralCache | None,
) -> CollateralSource:
    given = [e for e in items if e.kind == "collateral"]
    if len(given) > 1:
        raise InputError("several collateral files among the evidence; give one")
    if given:
        col = Collateral.from_dict(given[0].json, given[0].name)
        return CollateralSource(col, given[0].input_file(role="collateral"))
    if options.offline or client is None:
        return CollateralSource(None, None, "offline and no collateral given (use --collateral FILE)")
    try:
        certs = x509.load_pem_x509_certificates((_pck_pem(quote) or b"").rstrip(b"\x00"))
        pck = parse_pck_extension(certs[0])
    except (ValueError, IndexError, PckExtensionError, x509.InvalidVersion) as exc:
        return CollateralSource(None, None, f"cannot tell which collateral to fetch: the quote's PCK "
                                f"certificate does not parse ({exc})", is_error=True)
    tee = "tdx" if quote.quote and quote.quote[4:8] == b"\x81\x00\x00\x00" else "sgx"
    try:
        data = get_collateral(client, options.pccs_url, tee=tee, fmspc=pck.fmspc.hex().upper(), ca=pck.ca_type,
                              now=options.now, cache=cache)
    except NetError as exc:
        return CollateralSource(None, None, f"collateral could not be fetched: {exc}", is_error=True)
    text = json.dumps(data, indent=2).encode()
    try:
        col = Collateral.from_dict(data, f"collateral from {options.pccs_url}")
    except InputError as exc:
        return CollateralSource(None, None, f"the PCCS answer is not usable collateral: {exc}", is_error=True)
    return CollateralSource(col, _collateral_input(text, f"collateral fetched from {options.pccs_url}"))


def _pck_pem(quote: Evidence) -> bytes | None:
    from .quote.structure import parse_quote

    assert quote.quote is not None
    return parse_quote(quote.quote).pck_chain_pem()


def _hardware_entity(result: HardwareResult) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if result.quote is not None:
        out["quote"] = result.quote.decoded()
        out["quote_layout"] = result.quote.span_map()
    if result.pck is not None:
        out["pck"] = result.pck.to_dict()
    out["tcb"] = {
        "status": result.status,
        "advisory_ids": result.advisory_ids,
        "explanation": result.explanation,
    }
    return out


def _mark_phase_off(checks: list[Check], selected: tuple[str, ...]) -> list[Check]:
    out = []
    for c in checks:
        if c.phase not in selected:
            c = c.model_copy(update={"status": CheckStatus.SKIP, "summary": f"skipped: phase {c.phase} not selected",
                                     "details": {}})
        out.append(c)
    return out


def verify_evidence(
    items: list[Evidence],
    options: VerifyOptions,
    *,
    client: NetClient | None = None,
    cache: CollateralCache | None = None,
    memo: CollateralMemo | None = None,
) -> Report:
    """Verify what the evidence allows. Raises InputError for evidence that cannot be used at all."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    items = expand(items)
    quote = _quote_evidence(items)
    inputs = [quote.input_file(role="quote")]
    source = resolve_collateral(items, quote, options, client, cache)
    if source.input is not None:
        inputs.append(source.input)
    timings["collateral"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    assert quote.quote is not None
    hw = verify_quote(
        quote.quote,
        collateral=source.collateral,
        anchor=options.anchor,
        now=options.now,
        policy=options.policy,
        entity="app",
        collateral_missing_reason=source.problem or "",
        collateral_is_error=source.is_error,
        memo=memo,
        reference=options.reference,
    )
    timings["hardware"] = time.perf_counter() - t1
    checks = _mark_phase_off(hw.checks, options.phases)
    required = {c.id for c in checks if c.phase in options.phases}
    verdict = decide_verdict(checks, required)
    if not required and verdict is Verdict.PASS:  # the chosen phases ran no check at all: nothing was verified
        verdict = Verdict.INCOMPLETE
    return Report(
        verdict=verdict,
        verified_at=options.now,
        verifier_version=__version__,
        policy={"tcb": options.policy.describe(), "phases": list(options.phases),
                "trust_anchor": {"sha256": options.anchor.sha256, "intel": options.anchor.is_intel,
                                 "subject": options.anchor.cert.subject.rfc4514_string()}},
        inputs=inputs,
        checks=checks,
        entities={"app": _hardware_entity(hw)},
        timings=timings,
    )


def load_anchor(path: Path | None) -> TrustAnchor:
    from .evidence import read_bounded
    from .resources import intel_root_ca_der

    if path is None:
        return TrustAnchor.from_der(intel_root_ca_der(), "Intel SGX Root CA")
    return TrustAnchor.from_der(read_bounded(path, 1 << 20), str(path))
