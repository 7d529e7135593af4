"""Where the real test data lives, and what to do when it is absent.

The real fixtures are kept outside the project (``../shared/fixtures`` relative to the project root) and never
copied into it. A developer checkout without them skips the tests that need them; on CI (``CI=true``) a
missing fixture is a failure, so a broken checkout cannot pass by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"


def fixture_path(*parts: str) -> Path:
    """The path of a shared fixture; skips the calling test when absent (fails instead when CI == "true")."""
    path = SHARED_FIXTURES.joinpath(*parts)
    if not path.exists():
        message = f"shared fixture not found: {path}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path
