"""NetClient.post / post_json and their replay, against a real HTTP server on loopback."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from dstack_verifier.net import (
    USER_AGENT,
    Exchange,
    NetClient,
    NetError,
    NotRecordedError,
    OfflineError,
    ReplayClient,
    encode_json_body,
)

from tests.support.loopback import LoopbackServer


class EchoServer(LoopbackServer):
    """Answers every POST with ``{"echo": <the body as text>, "n": <request count>}`` unless told otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.statuses: list[int] = []  # statuses for the next answers (then 200)
        self.big: int | None = None  # answer with this many bytes instead

    @property
    def url(self) -> str:
        return f"{super().url}/rpc"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.bodies.append(body)
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
                status = server.statuses.pop(0) if server.statuses else 200
                if server.big is not None:
                    answer = b"x" * server.big
                else:
                    answer = json.dumps({"echo": body.decode(), "n": len(server.bodies)}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        return Handler


@pytest.fixture
def server() -> Iterator[EchoServer]:
    with EchoServer() as srv:
        yield srv


def make_client(**kwargs: object) -> NetClient:
    kwargs.setdefault("timeout", 2.0)
    kwargs.setdefault("retries", 0)
    return NetClient(**kwargs)  # type: ignore[arg-type]


def test_post_json_sends_canonical_json_and_records_the_request_body(server: EchoServer) -> None:
    payload = {"method": "eth_chainId", "jsonrpc": "2.0", "params": [], "id": 1}
    with make_client(clock=lambda: 1751624191.5) as client:
        response = client.post_json(server.url, payload, headers={"Authorization": "Bearer secret"})
    sent = b'{"id":1,"jsonrpc":"2.0","method":"eth_chainId","params":[]}'
    assert server.bodies == [sent] == [encode_json_body(payload)]
    assert server.headers[0]["content-type"] == "application/json"
    assert server.headers[0]["user-agent"] == USER_AGENT
    assert response.ok and json.loads(response.content)["echo"] == sent.decode()
    (exchange,) = client.recorder
    assert exchange.method == "POST" and exchange.url == server.url
    assert exchange.request_body is not None and base64.b64decode(exchange.request_body) == sent
    assert exchange.request_content == sent and exchange.content == response.content
    assert exchange.request_headers["content-type"] == "application/json"
    assert "authorization" not in exchange.request_headers
    assert exchange.fetched_at == 1751624191.5
    assert Exchange.model_validate_json(exchange.model_dump_json()) == exchange


def test_encode_json_body_does_not_depend_on_key_order() -> None:
    assert encode_json_body({"b": [1, {"y": 2, "x": 1}], "a": "é"}) == b'{"a":"\\u00e9","b":[1,{"x":1,"y":2}]}'
    with pytest.raises(ValueError):
        encode_json_body({"nan": float("nan")})


def test_post_raw_bytes_and_non_2xx(server: EchoServer) -> None:
    server.statuses = [404]
    with make_client() as client:
        response = client.post(server.url, b"\x00\x01raw", headers={"Content-Type": "application/octet-stream"})
    assert response.status == 404 and not response.ok
    assert server.bodies == [b"\x00\x01raw"]
    assert client.recorder[0].request_content == b"\x00\x01raw"


def test_offline_refuses_post(server: EchoServer) -> None:
    client = NetClient(offline=True)
    with pytest.raises(OfflineError) as info:
        client.post_json(server.url, {"a": 1})
    assert info.value.offline and server.url in str(info.value)
    assert server.bodies == [] and client.recorder == []


def test_post_answer_size_limit(server: EchoServer) -> None:
    server.big = 50_000
    with make_client(max_body=10_000) as client, pytest.raises(NetError, match="too large"):
        client.post_json(server.url, {"a": 1})
    assert client.recorder == []


def test_post_retries_on_503_with_the_same_body(server: EchoServer) -> None:
    server.statuses = [503, 503]
    sleeps: list[float] = []
    with make_client(retries=2, sleep=sleeps.append, backoff=0.25) as client:
        response = client.post_json(server.url, {"q": 1})
    assert response.status == 200
    assert server.bodies == [b'{"q":1}'] * 3
    assert sleeps == [0.25, 0.5]
    assert len(client.recorder) == 1


def test_post_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    with make_client() as client, pytest.raises(NetError) as info:
        client.post_json(url, {"a": 1})
    assert "connection failed" in str(info.value) and not info.value.offline


def test_replay_answers_posts_by_url_and_body(server: EchoServer) -> None:
    with make_client() as client:
        client.post_json(server.url, {"q": "one"})
        client.post_json(server.url, {"q": "two"})
        client.post_json(server.url, {"q": "one"})  # asked again: the second answer (n=3) is recorded too
    recording = [Exchange.model_validate_json(e.model_dump_json()) for e in client.recorder]
    replayed: list[Exchange] = []
    replay = ReplayClient(recording, recorder=replayed)
    answers = [json.loads(replay.post_json(server.url, {"q": "one"}).content)["n"] for _ in range(3)]
    assert answers == [1, 3, 3]  # recorded order, then the last one repeated
    assert json.loads(replay.post_json(server.url, {"q": "two"}).content)["n"] == 2
    assert len(replayed) == 4
    with pytest.raises(NotRecordedError) as info:
        replay.post_json(server.url, {"q": "three"})
    assert info.value.offline
    assert str(info.value) == f"not in the recorded evidence: POST {server.url} with this request body (13 bytes)"
    with pytest.raises(NotRecordedError):  # a GET is not answered from a POST recording
        replay.get(server.url)


def test_replay_of_a_get_recording_does_not_answer_posts() -> None:
    get = Exchange(url="https://node.example/", status=200, body=base64.b64encode(b"{}").decode(), fetched_at=1.0)
    replay = ReplayClient([get])
    assert replay.get("https://node.example/").content == b"{}"
    with pytest.raises(NotRecordedError):
        replay.post("https://node.example/", b"")


def test_exchange_without_request_body_still_loads() -> None:
    old = '{"method":"GET","url":"https://x.example/a","status":200,"body":"","fetched_at":1.0}'
    exchange = Exchange.model_validate_json(old)
    assert exchange.request_body is None and exchange.request_content == b""


def test_replay_rejects_corrupt_recorded_post_answer() -> None:
    body = encode_json_body({"a": 1})
    bad = Exchange(
        method="POST",
        url="https://node.example/",
        request_body=base64.b64encode(body).decode(),
        status=200,
        body="%%%",
        fetched_at=1.0,
    )
    with pytest.raises(NetError, match="recorded answer is corrupt"):
        ReplayClient([bad]).post("https://node.example/", body)
