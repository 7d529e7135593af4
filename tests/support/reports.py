"""Real reports of the demo evidence with each verdict, verified once per test session."""

from __future__ import annotations

from functools import cache

from dstack_verifier.demo import load_demo
from dstack_verifier.evidence import Evidence
from dstack_verifier.model import Report
from dstack_verifier.verification import verify_evidence

TWENTY_YEARS = 20 * 365 * 86400


@cache
def demo_reports() -> dict[str, Report]:
    """The demo app's own evidence (one entity: compact reports) as it is (pass), without its collateral
    (incomplete), and twenty years later, when its certificates have expired (fail). Keyed by verdict; checked, so a
    change of the demo cannot mislabel them."""
    demo = load_demo()

    def run(items: list[Evidence], now: int) -> Report:
        return verify_evidence(items, demo.options(now=now))

    found = {
        "pass": run(demo.app_items, demo.now),
        "incomplete": run([e for e in demo.app_items if e.kind != "collateral"], demo.now),
        "fail": run(demo.app_items, demo.now + TWENTY_YEARS),
    }
    assert {name: r.verdict.value for name, r in found.items()} == {name: name for name in found}
    return found
