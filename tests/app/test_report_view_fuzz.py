"""The report view renders any report that validates, whatever its free-form parts hold (entities, check details):
a report can come from someone else (a pack whose re-run failed used to be shown as it was). Mutations are seeded,
so a failure reproduces."""

from __future__ import annotations

import json
import random
from typing import Any

from dstack_inspector.gui.report_view import ReportView
from dstack_verifier.demo import load_demo
from dstack_verifier.model import Report
from dstack_verifier.verification import verify_evidence
from pydantic import ValidationError

from tests.verifier.test_fuzz_sources import paths as paths_in

WILD: list[Any] = [None, 0, -1, 5, 1.5, "", "x", [], {}, True, [1, "a", None], {"a": {"b": []}}, "INTEL-SA-00615",
                   "ff" * 48]


def test_mutated_reports_render_without_an_exception(qtbot) -> None:
    demo = load_demo()
    base = json.loads(verify_evidence(demo.items, demo.options()).to_json())
    paths = [p for p in paths_in(base) if len(p) > 1 and p[0] in ("entities", "checks", "policy", "data_objects")]
    rng = random.Random(20261125)
    view = ReportView()
    qtbot.addWidget(view)
    view.show()
    rendered = 0
    for _ in range(80):
        doc = json.loads(json.dumps(base))
        for _ in range(rng.randint(1, 4)):
            path = rng.choice(paths)
            parent = doc
            try:
                for key in path[:-1]:
                    parent = parent[key]
                parent[path[-1]] = rng.choice(WILD)
            except (KeyError, IndexError, TypeError):
                pass
        try:
            report = Report.model_validate(doc)
        except ValidationError:
            continue
        with qtbot.capture_exceptions() as raised:
            view.show_report(report)
            for i in range(view.tabs.count()):
                view.tabs.setCurrentIndex(i)
            for entity in ("app", "kms", "gateway"):
                view.set_entity(entity)
            for check in report.checks[:30]:
                view.open_check(check.id)
        assert not raised, raised[0][1]
        rendered += 1
    assert rendered > 40
