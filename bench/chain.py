"""Benchmark: the full offline verification of a three-entity evidence set (App, KMS, Gateway: hardware, event
logs, source, OS via TDX lite, the gateway's TEE-controlled key and certificate key, the checks between entities,
the DataObjects), against dcap-qvl verifying the same three quotes alone in the same process.

The evidence is the built-in demo: a Phala Cloud answer with three entities, the gateway's acme-info and one
collateral, signed by the demo root. Target (issue 5): median under 150 ms on this machine.
Run: .venv/bin/python bench/chain.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import dcap_qvl
from dstack_verifier.demo import load_demo
from dstack_verifier.verification import VerifyOptions, verify_evidence

TARGET_MS = 150.0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    demo = load_demo()
    options = VerifyOptions(now=demo.now, anchor=demo.anchor, offline=True, domain=demo.domain)
    report = verify_evidence(demo.items, options)  # warm-up, and the figures below describe this report
    entities = sorted(report.entities)
    quotes = _quotes(demo.items)
    collateral = next(e for e in demo.items if e.kind == "collateral").data.decode()

    chain: list[float] = []
    phases: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        t = time.perf_counter()
        r = verify_evidence(demo.items, options)
        chain.append(time.perf_counter() - t)
        sums: dict[str, float] = {}
        for key, value in r.timings.items():  # "app.hardware" …: summed over the entities
            sums[key.split(".", 1)[-1]] = sums.get(key.split(".", 1)[-1], 0.0) + value
        for name, value in sums.items():
            phases.setdefault(name, []).append(value)

    qvl_col = dcap_qvl.QuoteCollateralV3.from_json(collateral)
    root = demo.anchor.der
    qvl: list[float] = []
    for _ in range(args.rounds):
        t = time.perf_counter()
        for raw in quotes:
            dcap_qvl.verify_with_root_ca(raw, qvl_col, root, demo.now)
        qvl.append(time.perf_counter() - t)

    median = statistics.median(chain) * 1e3
    base = statistics.median(qvl) * 1e3
    print(f"three-entity offline verification ({', '.join(entities)}; {len(report.checks)} checks, "
          f"{len(report.data_objects)} data objects, verdict {report.verdict.value}), {args.rounds} rounds")
    print(f"  full chain            median {median:8.2f} ms   (target < {TARGET_MS:.0f} ms: "
          f"{'met' if median < TARGET_MS else 'NOT met'})")
    print(f"  dcap-qvl, 3 quotes    median {base:8.2f} ms   (DCAP alone, no event logs, OS, source or domain)")
    print(f"  ratio chain / dcap-qvl {median / base:6.1f}x")
    print("  per step, summed over the entities:")
    for name, samples in phases.items():
        print(f"    {name:<11} {statistics.median(samples) * 1e3:8.2f} ms")
    return 0


def _quotes(items) -> list[bytes]:  # type: ignore[no-untyped-def]
    """The entities' raw quotes, as the verification takes them from the Cloud answer and the acme-info."""
    from dstack_verifier.sources import to_evidence
    from dstack_verifier.sources.cloud import parse_cloud_answer
    from dstack_verifier.sources.gateway import parse_acme_info

    cloud = next(e for e in items if e.kind == "cloud-attestations")
    acme = next((e for e in items if e.kind == "acme-info"), None)
    per_entity = to_evidence(parse_cloud_answer(cloud.data, cloud.name),
                             acme_info=parse_acme_info(acme.data, acme.name) if acme is not None else None)
    return [e.quote for entity_items in per_entity.values() for e in entity_items if e.quote is not None]


if __name__ == "__main__":
    raise SystemExit(main())
