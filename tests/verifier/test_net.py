"""NetClient / ReplayClient against a real HTTP server on loopback (no internet, no mocks of our code)."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from dstack_verifier.net import (
    USER_AGENT,
    Exchange,
    NetClient,
    NetError,
    NotRecordedError,
    OfflineError,
    ReplayClient,
)

from tests.support.fixtures import fixture_path
from tests.support.pccs_server import PccsServer


@pytest.fixture(scope="module")
def collateral() -> dict[str, str]:
    return json.loads(fixture_path("dcap-qvl", "tdx_quote_collateral.json").read_text())


@pytest.fixture
def server(collateral: dict[str, str]) -> Iterator[PccsServer]:
    with PccsServer(collateral, hang_seconds=5.0) as srv:
        yield srv


class Sleeps(list[float]):
    """An injectable sleep that records the delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(**kwargs: object) -> NetClient:
    kwargs.setdefault("timeout", 2.0)
    kwargs.setdefault("retries", 0)
    return NetClient(**kwargs)  # type: ignore[arg-type]


def test_get_records_the_exchange(server: PccsServer) -> None:
    server.set_route("/thing", body=b"hello", headers={"X-Custom-Header": "Yes"})
    with make_client(clock=lambda: 1751624191.5) as client:
        response = client.get(
            server.url + "/thing",
            params={"a": "1", "b": "x y"},
            headers={"Accept": "text/plain", "Authorization": "Bearer secret", "Ocp-Apim-Subscription-Key": "k"},
        )
        assert response.status == 200 and response.ok
        assert response.content == b"hello"
        assert response.header("X-CUSTOM-HEADER") == "Yes"
        assert len(client.recorder) == 1
        exchange = client.recorder[0]
    assert exchange.method == "GET"
    assert exchange.url == server.url + "/thing?a=1&b=x+y"
    assert exchange.status == 200
    assert exchange.headers["x-custom-header"] == "Yes"
    assert all(name == name.lower() for name in exchange.headers)
    assert base64.b64decode(exchange.body) == b"hello" == exchange.content
    assert exchange.fetched_at == 1751624191.5
    # what we sent that matters is recorded; secrets never are
    assert exchange.request_headers["user-agent"] == USER_AGENT
    assert exchange.request_headers["accept"] == "text/plain"
    assert "authorization" not in exchange.request_headers
    assert "ocp-apim-subscription-key" not in exchange.request_headers
    # the server saw our User-Agent and the query
    seen = server.requests[-1]
    assert seen.headers["user-agent"].startswith("dstack-inspector/")
    assert seen.query == {"a": ["1"], "b": ["x y"]}
    # the exchange survives a JSON round trip (it is stored in the evidence)
    assert Exchange.model_validate_json(exchange.model_dump_json()) == exchange


def test_non_2xx_is_returned_by_get_and_raised_by_get_ok(server: PccsServer) -> None:
    server.set_route("/missing", status=404, body=b"No such\nthing here")
    with make_client() as client:
        response = client.get(server.url + "/missing")
        assert response.status == 404 and not response.ok
        with pytest.raises(NetError) as info:
            client.get_ok(server.url + "/missing")
    message = str(info.value)
    assert "\n" not in message
    assert server.url + "/missing" in message
    assert "HTTP 404" in message and "No such thing here" in message
    assert len(client.recorder) == 2  # non-2xx answers are evidence too


def test_redirects_are_not_followed(server: PccsServer) -> None:
    server.set_route("/old", status=302, headers={"Location": "/new"})
    server.set_route("/new", body=b"moved")
    with make_client() as client:
        assert client.get(server.url + "/old").status == 302
    assert server.counts["/new"] == 0


def test_offline_refuses_every_request(server: PccsServer) -> None:
    client = NetClient(offline=True)
    for call in (client.get, client.get_ok):
        with pytest.raises(OfflineError) as info:
            call(server.url + "/anything", params={"q": "1"})
        assert info.value.offline
        assert "offline" in str(info.value) and server.url + "/anything?q=1" in str(info.value)
    assert server.total_requests == 0
    assert client.recorder == []


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_size_limit(server: PccsServer, chunked: bool) -> None:
    server.set_route("/big", body=b"x" * 50_000, chunked=chunked)
    server.set_route("/exact", body=b"y" * 10_000, chunked=chunked)
    with make_client(max_body=10_000) as client:
        with pytest.raises(NetError) as info:
            client.get(server.url + "/big")
        assert "too large" in str(info.value) and "10000" in str(info.value)
        assert client.get(server.url + "/exact").content == b"y" * 10_000
        assert len(client.recorder) == 1  # the refused answer is not recorded


def test_retries_on_503_then_success(server: PccsServer) -> None:
    server.set_route("/flaky", body=b"finally")
    server.fail("/flaky", "503", times=2)
    sleeps = Sleeps()
    with make_client(retries=2, sleep=sleeps, backoff=0.25) as client:
        response = client.get(server.url + "/flaky")
    assert response.status == 200 and response.content == b"finally"
    assert server.counts["/flaky"] == 3
    assert sleeps == [0.25, 0.5]  # bounded exponential backoff
    assert [e.status for e in client.recorder] == [200]  # only the answer the caller got


def test_retries_exhausted_returns_last_answer(server: PccsServer) -> None:
    server.fail("/down", "504")
    sleeps = Sleeps()
    with make_client(retries=1, sleep=sleeps) as client:
        assert client.get(server.url + "/down").status == 504
        with pytest.raises(NetError, match="HTTP 504"):
            client.get_ok(server.url + "/down")
    assert server.counts["/down"] == 4
    assert len(sleeps) == 2


@pytest.mark.parametrize("status", ["404", "500"])
def test_no_retry_on_other_statuses(server: PccsServer, status: str) -> None:
    server.fail("/err", status)  # type: ignore[arg-type]
    sleeps = Sleeps()
    with make_client(retries=3, sleep=sleeps) as client:
        assert client.get(server.url + "/err").status == int(status)
    assert server.counts["/err"] == 1 and sleeps == []


def test_retry_after_is_honoured_but_bounded(server: PccsServer) -> None:
    server.set_route("/busy", status=503, headers={"Retry-After": "3600"})
    sleeps = Sleeps()
    with make_client(retries=1, sleep=sleeps) as client:
        assert client.get(server.url + "/busy").status == 503
    assert sleeps == [8.0]


def test_retry_on_dropped_connection(server: PccsServer) -> None:
    server.set_route("/drop", body=b"ok")
    server.fail("/drop", "drop", times=1)
    sleeps = Sleeps()
    with make_client(retries=1, sleep=sleeps) as client:
        assert client.get(server.url + "/drop").content == b"ok"
    assert server.counts["/drop"] == 2 and len(sleeps) == 1


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_is_retried_then_reported() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/pckcrl"
    sleeps = Sleeps()
    with make_client(retries=2, sleep=sleeps) as client, pytest.raises(NetError) as info:
        client.get(url)
    assert len(sleeps) == 2
    message = str(info.value)
    assert url in message and "connection failed" in message and "\n" not in message
    assert not info.value.offline


def test_read_timeout_is_reported_and_not_retried(server: PccsServer) -> None:
    server.set_route("/slow", body=b"late")
    server.fail("/slow", "hang")
    sleeps = Sleeps()
    started = time.monotonic()
    with make_client(retries=3, sleep=sleeps, timeout=0.3) as client, pytest.raises(NetError) as info:
        client.get(server.url + "/slow")
    assert time.monotonic() - started < 3
    assert "timed out" in str(info.value) and server.url + "/slow" in str(info.value)
    assert server.counts["/slow"] == 1 and sleeps == []


def test_whole_body_deadline(server: PccsServer) -> None:
    server.set_route("/drip", body=b"z" * 20_000, chunked=True)
    ticks = iter(range(0, 10_000, 100))  # every look at the clock is 100 s later
    with make_client(deadline=150.0, monotonic=lambda: float(next(ticks))) as client:
        with pytest.raises(NetError, match="timed out"):
            client.get(server.url + "/drip")


def test_injected_httpx_client_is_used_and_not_closed(server: PccsServer) -> None:
    server.set_route("/x", body=b"1")
    http = httpx.Client(timeout=1.0)
    with NetClient(http, retries=0) as client:
        assert client.get(server.url + "/x").content == b"1"
    assert not http.is_closed
    http.close()


def test_replay_answers_from_the_recording(collateral: dict[str, str]) -> None:
    with PccsServer(collateral) as live:
        live.set_route("/a", body=b"first", headers={"SGX-Thing": "v"})
        live.set_route("/b", status=404, body=b"nope")
        with make_client() as client:
            client.get(live.url + "/a", params={"fmspc": "B0C06F000000", "update": "standard"})
            client.get(live.url + "/b")
        recording = [Exchange.model_validate_json(e.model_dump_json()) for e in client.recorder]
        base = live.url
    # the live server is gone: only the recording can answer now
    replayed: list[Exchange] = []
    replay = ReplayClient(recording, recorder=replayed)
    answer = replay.get(base + "/a", params={"fmspc": "B0C06F000000", "update": "standard"})
    assert answer.status == 200 and answer.content == b"first" and answer.header("sgx-thing") == "v"
    assert replay.get(base + "/a?fmspc=B0C06F000000&update=standard").content == b"first"
    assert replay.get(base + "/b").status == 404
    with pytest.raises(NetError, match="HTTP 404"):
        replay.get_ok(base + "/b")
    assert len(replayed) == 4

    missing = base + "/a?fmspc=00A067110000&update=standard"
    with pytest.raises(NotRecordedError) as info:
        replay.get(base + "/a", params={"fmspc": "00A067110000", "update": "standard"})
    assert isinstance(info.value, OfflineError) and info.value.offline
    assert str(info.value) == f"not in the recorded evidence: {missing}"


def test_replay_serves_repeated_answers_in_order() -> None:
    def exchange(body: bytes) -> Exchange:
        return Exchange(url="https://pccs.example/x", status=200, body=base64.b64encode(body).decode(), fetched_at=1.0)

    replay = ReplayClient([exchange(b"one"), exchange(b"two")])
    assert [replay.get("https://pccs.example/x").content for _ in range(3)] == [b"one", b"two", b"two"]


def test_replay_rejects_corrupt_recorded_body() -> None:
    bad = Exchange(url="https://pccs.example/x", status=200, body="%%%not base64", fetched_at=1.0)
    with pytest.raises(NetError, match="recorded answer is corrupt"):
        ReplayClient([bad]).get("https://pccs.example/x")


def test_constructor_rejects_negative_limits() -> None:
    with pytest.raises(ValueError):
        NetClient(offline=True, retries=-1)
