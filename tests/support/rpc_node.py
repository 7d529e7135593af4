"""A real Ethereum JSON-RPC node on loopback for tests, serving DstackApp / DstackKms state from memory.

It speaks JSON-RPC 2.0 over HTTP POST (``eth_chainId``, ``eth_blockNumber``, ``eth_call``, ``eth_getCode``),
decodes ``eth_call`` data with the project's real ABIs (``resources/abi``: 4-byte selector, then the arguments
with ``eth_abi``) and answers with real ABI-encoded results computed from the in-memory contract state, following
the logic of the Solidity contracts (``isAppAllowed`` of the KMS delegates to the app's, and so on).

The head block advances by one every time ``eth_blockNumber`` is asked, and state values carry the block they
were added at, so a reader that does not pin one block would see it. Every request is logged (``requests``).

Failure knobs: ``fail`` (HTTP 500/503, malformed JSON, a dropped connection; for some or all methods),
``revert`` (a function reverts, with an Error(string) reason or without one, as a function that does not exist
does), ``answer`` (a function returns raw bytes of our choosing, e.g. empty or undecodable), a configurable
``chain_id`` (wrong chain), and ``stop`` (node down).

Use it as a context manager::

    with RpcNode(chain_id=8453) as node:
        node.add_app("0xd722…", compose_hashes=["4a32…"])
        reader = OnchainReader(net, chain_config("base", rpc_url=node.url))
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal

from dstack_verifier.resources import resource_path
from eth_abi import decode, encode
from eth_utils import function_abi_to_4byte_selector, to_checksum_address

from tests.support.loopback import LoopbackServer, respond

Failure = Literal["500", "503", "malformed", "not-json", "drop", "no-result", "bad-hex"]

# A few bytes of EVM code: anything non-empty tells a reader "a contract lives here".
FAKE_CODE = "0x6080604052348015600e575f80fd5b50"
_MAX_REQUEST = 1024 * 1024


def _key(address: str) -> str:
    body = address[2:] if address[:2].lower() == "0x" else address
    return body.lower()


def _b32(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        assert len(value) == 32
        return value
    body = value[2:] if value[:2].lower() == "0x" else value
    data = bytes.fromhex(body)
    assert len(data) == 32, value
    return data


def _abi_type(param: dict[str, Any]) -> str:
    kind = param["type"]
    if kind.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in param["components"]) + ")" + kind[len("tuple") :]
    return kind


@dataclass(frozen=True)
class _Function:
    name: str
    inputs: list[str]
    outputs: list[str]


def _load_functions(name: str) -> dict[bytes, _Function]:
    abi = json.loads(resource_path("abi", f"{name}.json").read_text())
    table = {}
    for item in abi:
        if item.get("type") != "function":
            continue
        selector = function_abi_to_4byte_selector(item)
        table[selector] = _Function(
            item["name"], [_abi_type(p) for p in item["inputs"]], [_abi_type(p) for p in item["outputs"]]
        )
    return table


APP_FUNCTIONS = _load_functions("DstackApp")
KMS_FUNCTIONS = _load_functions("DstackKms")


class Revert(Exception):
    """Raised by a contract function: ``reason`` None is a revert without data (as for a missing function)."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "execution reverted")
        self.reason = reason


@dataclass
class AppState:
    """A DstackApp. Set values map to the block they were added at (visible from that block on)."""

    compose_hashes: dict[bytes, int] = field(default_factory=dict)
    allow_any_device: bool = True
    device_ids: dict[bytes, int] = field(default_factory=dict)
    owner: str = "0x" + "11" * 20
    missing: set[str] = field(default_factory=set)  # functions this contract version does not have

    def add_compose_hash(self, value: str | bytes, at_block: int = 0) -> None:
        self.compose_hashes[_b32(value)] = at_block

    def add_device(self, value: str | bytes, at_block: int = 0) -> None:
        self.device_ids[_b32(value)] = at_block


@dataclass
class KmsState:
    """A DstackKms."""

    k256_pubkey: bytes = b""
    ca_pubkey: bytes = b""
    quote: bytes = b""
    eventlog: bytes = b""
    gateway_app_id: str = ""
    registered_apps: set[str] = field(default_factory=set)  # lower-case hex without 0x
    os_images: dict[bytes, int] = field(default_factory=dict)
    aggregated_mrs: dict[bytes, int] = field(default_factory=dict)
    device_ids: dict[bytes, int] = field(default_factory=dict)
    app_implementation: str = "0x" + "22" * 20
    owner: str = "0x" + "33" * 20
    missing: set[str] = field(default_factory=set)

    def register_app(self, address: str) -> None:
        self.registered_apps.add(_key(address))


@dataclass(frozen=True)
class SeenRpc:
    method: str
    params: Any


def _allowed(values: dict[bytes, int], value: bytes, block: int) -> bool:
    added = values.get(value)
    return added is not None and added <= block


class RpcNode(LoopbackServer):
    """Serve JSON-RPC on 127.0.0.1 (random port) in a background thread."""

    def __init__(self, *, chain_id: int = 8453, head: int = 30_000_000) -> None:
        self.chain_id = chain_id
        self.head = head
        self.apps: dict[str, AppState] = {}
        self.kmss: dict[str, KmsState] = {}
        self.requests: list[SeenRpc] = []
        self.http_requests = 0
        self._failures: list[tuple[Failure, set[str] | None, list[int | None]]] = []
        self._reverts: dict[str, str | None] = {}
        self._revert_data: dict[str, str] = {}
        self._answers: dict[str, str] = {}
        self._lock = threading.RLock()
        super().__init__()

    # -- state -----------------------------------------------------------------------------------------------

    def add_app(
        self,
        address: str,
        *,
        compose_hashes: Sequence[str] = (),
        allow_any_device: bool = True,
        device_ids: Sequence[str] = (),
        missing: set[str] | None = None,
    ) -> AppState:
        app = AppState(allow_any_device=allow_any_device, missing=set(missing or ()))
        for value in compose_hashes:
            app.add_compose_hash(value)
        for value in device_ids:
            app.add_device(value)
        with self._lock:
            self.apps[_key(address)] = app
        return app

    def add_kms(self, address: str, **values: Any) -> KmsState:
        kms = KmsState(**values)
        with self._lock:
            self.kmss[_key(address)] = kms
        return kms

    # -- knobs -----------------------------------------------------------------------------------------------

    def fail(self, mode: Failure, *, methods: set[str] | None = None, times: int | None = None) -> None:
        """Misbehave for ``methods`` (None: every request), ``times`` times or for ever."""
        with self._lock:
            self._failures.append((mode, methods, [times]))

    def clear(self) -> None:
        with self._lock:
            self._failures.clear()
            self._reverts.clear()
            self._revert_data.clear()
            self._answers.clear()

    def revert(self, function: str, reason: str | None = None, *, data: str | None = None) -> None:
        """Calls of ``function`` revert: with Error(reason), or without data when ``reason`` is None, or with
        the raw revert ``data`` (hex) given."""
        with self._lock:
            self._reverts[function] = reason
            if data is not None:
                self._revert_data[function] = data

    def answer(self, function: str, raw_hex: str) -> None:
        """Calls of ``function`` return ``raw_hex`` as their result, whatever the ABI says."""
        with self._lock:
            self._answers[function] = raw_hex

    def calls(self, method: str = "eth_call") -> list[SeenRpc]:
        with self._lock:
            return [r for r in self.requests if r.method == method]

    # -- lifecycle -------------------------------------------------------------------------------------------

    thread_name = "rpc-test-node"

    @property
    def url(self) -> str:
        return super().url + "/"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)


    # -- JSON-RPC --------------------------------------------------------------------------------------------

    def _take_failure(self, method: str) -> Failure | None:
        with self._lock:
            for mode, methods, remaining in self._failures:
                if methods is not None and method not in methods:
                    continue
                if remaining[0] is not None:
                    if remaining[0] <= 0:
                        continue
                    remaining[0] -= 1
                return mode
        return None

    def handle(self, request: Any) -> dict[str, Any]:
        """Answer one JSON-RPC request object (a dict)."""
        rid = request.get("id")
        method = request.get("method")
        params = request.get("params") or []
        with self._lock:
            self.requests.append(SeenRpc(str(method), params))
            try:
                result = self._dispatch(str(method), params)
            except Revert as exc:
                return {"jsonrpc": "2.0", "id": rid, "error": _revert_error(exc.reason)}
            except _RpcError as exc:
                return {"jsonrpc": "2.0", "id": rid, "error": exc.as_error()}
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    def _dispatch(self, method: str, params: list[Any]) -> str:
        if method == "eth_chainId":
            return hex(self.chain_id)
        if method == "eth_blockNumber":
            head = self.head
            self.head += 1  # a new block every time someone asks
            return hex(head)
        if method == "eth_getCode":
            address, block = params
            self._block(block)
            known = _key(address) in self.apps or _key(address) in self.kmss
            return FAKE_CODE if known else "0x"
        if method == "eth_call":
            tx, block = params
            number = self._block(block)
            data = bytes.fromhex(tx["data"][2:])
            return "0x" + self._call(_key(tx["to"]), data, number).hex()
        raise _RpcError(-32601, f"the method {method} does not exist/is not available")

    def _block(self, tag: str) -> int:
        if tag == "latest":
            return self.head
        number = int(tag, 16)
        if number > self.head:
            raise _RpcError(-32000, "header not found")
        return number

    def _call(self, to: str, data: bytes, block: int) -> bytes:
        if to in self.apps:
            table, kind = APP_FUNCTIONS, "app"
        elif to in self.kmss:
            table, kind = KMS_FUNCTIONS, "kms"
        else:
            return b""  # no code: an eth_call "succeeds" with no data
        function = table.get(data[:4])
        state: AppState | KmsState = self.apps[to] if kind == "app" else self.kmss[to]
        if function is None or function.name in state.missing:
            raise Revert(None)
        if function.name in self._revert_data:
            raise _RpcError(3, "execution reverted", self._revert_data[function.name])
        if function.name in self._reverts:
            raise Revert(self._reverts[function.name])
        if function.name in self._answers:
            return bytes.fromhex(self._answers[function.name][2:])
        args = decode(function.inputs, data[4:])
        if kind == "app":
            values = self._app_function(self.apps[to], function.name, args, block)
        else:
            values = self._kms_function(self.kmss[to], function.name, args, block)
        return encode(function.outputs, values)

    def _app_function(self, app: AppState, name: str, args: tuple[Any, ...], block: int) -> tuple[Any, ...]:
        if name == "allowedComposeHashes":
            return (_allowed(app.compose_hashes, args[0], block),)
        if name == "allowAnyDevice":
            return (app.allow_any_device,)
        if name == "allowedDeviceIds":
            return (_allowed(app.device_ids, args[0], block),)
        if name == "owner":
            return (to_checksum_address(app.owner),)
        if name == "isAppAllowed":
            return self._app_allowed(app, args[0], block)
        raise AssertionError(name)

    @staticmethod
    def _app_allowed(app: AppState, boot: tuple[Any, ...], block: int) -> tuple[bool, str]:
        if "isAppAllowed" in app.missing:
            raise Revert(None)
        if not _allowed(app.compose_hashes, boot[1], block):
            return (False, "Compose hash not allowed")
        if not app.allow_any_device and not _allowed(app.device_ids, boot[3], block):
            return (False, "Device not allowed")
        return (True, "")

    def _kms_function(self, kms: KmsState, name: str, args: tuple[Any, ...], block: int) -> tuple[Any, ...]:
        if name == "kmsInfo":
            return (kms.k256_pubkey, kms.ca_pubkey, kms.quote, kms.eventlog)
        if name == "gatewayAppId":
            return (kms.gateway_app_id,)
        if name == "registeredApps":
            return (_key(args[0]) in kms.registered_apps,)
        if name == "allowedOsImages":
            return (_allowed(kms.os_images, args[0], block),)
        if name == "kmsAllowedAggregatedMrs":
            return (_allowed(kms.aggregated_mrs, args[0], block),)
        if name == "kmsAllowedDeviceIds":
            return (_allowed(kms.device_ids, args[0], block),)
        if name == "appImplementation":
            return (to_checksum_address(kms.app_implementation),)
        if name == "owner":
            return (to_checksum_address(kms.owner),)
        if name == "isAppAllowed":
            boot = args[0]
            if _key(boot[0]) not in kms.registered_apps:
                return (False, "App not registered")
            if not _allowed(kms.os_images, boot[6], block):
                return (False, "OS image is not allowed")
            app = self.apps.get(_key(boot[0]))
            if app is None:
                return (False, "App not deployed or invalid address")
            return self._app_allowed(app, boot, block)
        if name == "isKmsAllowed":
            boot = args[0]
            if boot[7] != "UpToDate":
                return (False, "TCB status is not up to date")
            if not _allowed(kms.os_images, boot[6], block):
                return (False, "OS image is not allowed")
            if not _allowed(kms.aggregated_mrs, boot[4], block):
                return (False, "Aggregated MR not allowed")
            if not _allowed(kms.device_ids, boot[3], block):
                return (False, "KMS is not allowed to boot on this device")
            return (True, "")
        raise AssertionError(name)


class _RpcError(Exception):
    def __init__(self, code: int, message: str, data: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def as_error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def _revert_error(reason: str | None) -> dict[str, Any]:
    if reason is None:  # geth: a revert without data
        return {"code": -32000, "message": "execution reverted"}
    data = "0x08c379a0" + encode(["string"], [reason]).hex()
    return {"code": 3, "message": f"execution reverted: {reason}", "data": data}


def _make_handler(node: RpcNode) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            with node._lock:
                node.http_requests += 1
            size = int(self.headers.get("Content-Length") or 0)
            if size > _MAX_REQUEST:
                self._send(413, b"request too large")
                return
            try:
                request = json.loads(self.rfile.read(size))
            except ValueError:
                self._send(400, json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32700}}).encode())
                return
            method = str(request.get("method")) if isinstance(request, dict) else ""
            failure = node._take_failure(method)
            if failure == "drop":
                self.close_connection = True
                return
            if failure in ("500", "503"):
                self._send(int(failure), b"simulated upstream failure")
                return
            answer = node.handle(request)
            if failure == "not-json":
                self._send(200, b"<html>Bad Gateway</html>")
                return
            body = json.dumps(answer).encode()
            if failure == "malformed":
                body = body[: len(body) // 2]
            elif failure == "no-result":
                body = json.dumps({"jsonrpc": "2.0", "id": answer["id"]}).encode()
            elif failure == "bad-hex":
                body = json.dumps({"jsonrpc": "2.0", "id": answer["id"], "result": "0xnot-hex"}).encode()
            self._send(200, body)

        def _send(self, status: int, body: bytes) -> None:
            respond(self, status, body, "application/json")

    return Handler
