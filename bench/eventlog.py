"""Benchmark: event-log replay and RTMR3 recomputation, against raw hashlib over the same bytes.

For each log (a synthetic 100-event log: 20 firmware + 80 runtime events; and the real fixtures when
../shared/fixtures is present) it prints the median time per log of
  * `replay(events)`: RTMR0-3, runtime digests recomputed from (type, name, payload);
  * the two checks, `eventlog.replay` + `eventlog.rtmr3_payloads` (what a verification runs, details included);
  * the baseline: the same SHA-384 calls over the same bytes with hashlib, no models, no checks;
and the ratio of `replay` to that baseline. Target: under 2 ms per log for replay + recomputation.
Run: .venv/bin/python bench/eventlog.py [--rounds N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

from dstack_verifier.eventlog import (
    RUNTIME_EVENT_TYPE,
    Event,
    check_replay,
    check_rtmr3_payloads,
    parse_event_log,
    replay,
    runtime_preimage,
)
from dstack_verifier.quote.structure import Quote, parse_quote
from dstack_verifier.synth import make_evidence
from timing import median_ms

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
TARGET_MS = 2.0


def synthetic_log() -> list[Event]:
    """20 firmware events (RTMR0-2) and 80 runtime events with realistic payload sizes: a boot in the order dstack
    writes it (anything else warns), then the app's own events after system-ready."""
    events = [Event(imr=i % 3, event_type=0x80000001, digest=hashlib.sha384(b"fw%d" % i).digest()) for i in range(20)]
    boot = [("system-preparing", 0), ("app-id", 20), ("compose-hash", 32), ("instance-id", 20), ("boot-mr-done", 0),
            ("os-image-hash", 32), ("key-provider", 204), ("storage-fs", 3), ("system-ready", 0)]
    runtime = boot + [("app-event", 64)] * (80 - len(boot))
    for i, (name, size) in enumerate(runtime):
        events.append(Event(imr=3, event_type=RUNTIME_EVENT_TYPE, name=name, payload=bytes([i]) * size))
    return events


def quote_for(events: list[Event]) -> Quote:
    registers = replay(events)
    ev = make_evidence(seed="bench-eventlog", report={f"rt_mr{i}": registers[i] for i in range(4)})
    return parse_quote(ev.quote)


def fixture_logs() -> list[tuple[str, list[Event], Quote]]:
    out = []
    lite = FIXTURES / "dstack" / "tdx-lite-getquote.json"
    if lite.is_file():
        doc = json.loads(lite.read_text())
        out.append(("tdx-lite-getquote", parse_event_log(doc["event_log"], "lite"),
                    parse_quote(bytes.fromhex(doc["quote"]))))
    for name in ("app", "gateway", "kms"):
        path = FIXTURES / "trust-center" / f"dataset1-{name}.json"
        if path.is_file():
            doc = json.loads(path.read_text())
            out.append((f"dataset1-{name}", parse_event_log(doc["eventlog"], name, field="eventlog"),
                        parse_quote(bytes.fromhex(doc["quote_hex"].removeprefix("0x")))))
    return out


def baseline(events: list[Event]) -> Callable[[], object]:
    """The same hashes as `replay`, with the inputs prepared beforehand: what hashing alone costs."""
    work = [(e.imr, runtime_preimage(e) if e.is_runtime else None, (e.digest or b"").ljust(48, b"\x00"))
            for e in events]
    sha384 = hashlib.sha384

    def run() -> object:
        mrs = [bytes(48)] * 4
        for imr, preimage, digest in work:
            if preimage is not None:
                digest = sha384(preimage).digest()
            mrs[imr] = sha384(mrs[imr] + digest).digest()
        return mrs

    return run


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=500)
    args = ap.parse_args()
    warm = min(args.rounds, 20)  # untimed calls before each measurement
    synthetic = synthetic_log()
    cases = [("synthetic 100 events", synthetic, quote_for(synthetic)), *fixture_logs()]
    print(f"{args.rounds} rounds per figure, median time per log; baseline = raw hashlib SHA-384, same bytes")
    print(f"  {'log':<22}{'events':>7}{'replay':>11}{'both checks':>13}{'baseline':>11}{'replay/baseline':>17}")
    worst = 0.0
    for name, events, quote in cases:
        assert check_replay(events, quote, "app").status == "pass"
        assert check_rtmr3_payloads(events, quote, "app").status == "pass"
        ours = median_ms(lambda events=events: replay(events), args.rounds, warm)
        checks = median_ms(lambda events=events, quote=quote: (check_replay(events, quote, "app"),
                                                               check_rtmr3_payloads(events, quote, "app")),
                           args.rounds, warm)
        base = median_ms(baseline(events), args.rounds, warm)
        worst = max(worst, ours, checks)
        print(f"  {name:<22}{len(events):>7}{ours:>9.3f}ms{checks:>11.3f}ms{base:>9.3f}ms{ours / base:>16.2f}x")
    verdict = "within" if worst < TARGET_MS else "OVER"
    print(f"slowest: {worst:.3f} ms per log, {verdict} the {TARGET_MS} ms target")
    return 0 if worst < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
