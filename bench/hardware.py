"""Benchmark: our DCAP steps against dcap-qvl on the same quote, collateral, trust anchor and instant.

Prints per-quote times and ratios:
  * dcap-qvl `verify_with_root_ca` (Rust),
  * our own steps with no reuse (every quote re-verifies the collateral),
  * our own steps when many quotes share one collateral (verified collateral reused via CollateralMemo),
  * the floor under a cold run of ours: the nine ECDSA-P256 verifications it needs, alone, through OpenSSL.
Uses the real sample quote when ../shared/fixtures is present, otherwise synthetic evidence.
Run: .venv/bin/python bench/hardware.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import dcap_qvl
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from dstack_verifier.quote.chain import clear_caches
from dstack_verifier.quote.collateral import Collateral
from dstack_verifier.quote.structure import parse_quote
from dstack_verifier.quote.verify import CollateralMemo, TrustAnchor, verify_quote
from dstack_verifier.resources import intel_root_ca_der
from dstack_verifier.synth import make_evidence

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "dcap-qvl"


def load_case() -> tuple[str, bytes, dict, bytes, int]:
    quote = FIXTURES / "tdx_quote"
    if quote.is_file():
        collateral = json.loads((FIXTURES / "tdx_quote_collateral.json").read_text())
        return "real tdx_quote (v4, TD10)", quote.read_bytes(), collateral, intel_root_ca_der(), 1751624191
    ev = make_evidence(seed="bench", now=1_750_000_000)
    return "synthetic TDX v4 quote", ev.quote, ev.collateral, ev.root_ca_der, ev.now


def timed(fn, rounds: int) -> list[float]:  # type: ignore[no-untyped-def]
    return interleaved([fn], rounds)[0]


def interleaved(fns: list, rounds: int) -> list[list[float]]:  # type: ignore[type-arg]
    """Samples of each function, taken in turns: a change of machine load over the run (other processes on a
    shared machine) then weighs on every figure alike instead of skewing the ratios."""
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, samples in zip(fns, out, strict=True):
            t = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t)
    return out


# A cold quote needs nine signatures checked: PCK leaf, PCK CA and TCB signing certificates, root and PCK CRLs, TCB
# Info, QE Identity, QE report and the quote itself.
ECDSA_PER_QUOTE = 9


def ecdsa_floor() -> None:
    """Nine ECDSA-P256 verifications of a certificate-sized message with one key (OpenSSL through cryptography)."""
    key = ec.generate_private_key(ec.SECP256R1())
    message = bytes(600)
    signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    public, algorithm = key.public_key(), ec.ECDSA(hashes.SHA256())
    for _ in range(ECDSA_PER_QUOTE):
        public.verify(signature, message, algorithm)


def ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1e3:7.3f} ms (mean {statistics.fmean(samples) * 1e3:.3f})"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    name, raw, col_dict, root_der, now = load_case()
    collateral = Collateral.from_dict(col_dict)
    anchor = TrustAnchor.from_der(root_der)
    qvl_col = dcap_qvl.QuoteCollateralV3.from_json(json.dumps(col_dict))

    def reference() -> None:
        dcap_qvl.verify_with_root_ca(raw, qvl_col, root_der, now)

    def ours_cold() -> None:
        clear_caches()  # nothing carried over: every certificate, CRL and signature checked afresh
        r = verify_quote(raw, collateral=collateral, anchor=anchor, now=now, reference=False, memo=CollateralMemo())
        assert r.dcap_valid

    memo = CollateralMemo()
    verify_quote(raw, collateral=collateral, anchor=anchor, now=now, reference=False, memo=memo)

    def ours_shared() -> None:
        r = verify_quote(raw, collateral=collateral, anchor=anchor, now=now, reference=False, memo=memo)
        assert r.dcap_valid

    for fn in (reference, ours_cold, ours_shared, ecdsa_floor):  # warm-up
        timed(fn, 5)
    ref, cold, shared, floor = interleaved([reference, ours_cold, ours_shared, ecdsa_floor], args.rounds)
    parse_ours = timed(lambda: parse_quote(raw), args.rounds)
    parse_ref = timed(lambda: dcap_qvl.parse_quote(raw), args.rounds)
    r_ref, r_cold, r_shared, r_floor = (statistics.median(x) for x in (ref, cold, shared, floor))
    print(f"case: {name}, {len(raw)} bytes, {args.rounds} rounds, dcap-qvl {dcap_qvl.__version__}")
    print(f"  dcap-qvl verify_with_root_ca        {ms(ref)}")
    print(f"  ours, collateral verified per quote {ms(cold)}   ratio {r_cold / r_ref:.2f}x dcap-qvl")
    print(f"  ours, collateral shared (memo)      {ms(shared)}   ratio {r_shared / r_ref:.2f}x dcap-qvl")
    print(f"  {ECDSA_PER_QUOTE} ECDSA-P256 verifies alone          {ms(floor)}   ratio {r_floor / r_ref:.2f}x dcap-qvl")
    # What is left to our Python once the signatures are paid: the figure a faster cold run would have to shrink.
    print(f"  cold run less the signatures         {(r_cold - r_floor) * 1e3:7.3f} ms            ratio "
          f"{(r_cold - r_floor) / r_ref:.2f}x dcap-qvl")
    print(f"  parse: ours {ms(parse_ours)}, dcap-qvl {ms(parse_ref)}")
    print(f"  quotes/s sharing one collateral: ours {1 / r_shared:,.0f}, dcap-qvl {1 / r_ref:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
