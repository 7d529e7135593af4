"""Every test: no request leaves the machine. Name lookups of anything but loopback are refused (as they would be on
CI, which has no internet) and the test that asked fails, naming the host — so a code path that reaches for a public
endpoint is found here, not by a reviewer's firewall."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

LOOPBACK = ("localhost", "::1", "0.0.0.0", "")


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    asked: list[str] = []
    real = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        name = host.decode() if isinstance(host, bytes) else str(host or "")
        if name not in LOOPBACK and not name.startswith("127."):
            asked.append(name)
            raise socket.gaierror(socket.EAI_NONAME, f"tests may not reach {name}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    yield
    assert not asked, f"the test tried to reach the internet: {sorted(set(asked))}"
