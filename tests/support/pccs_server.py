"""A real PCCS-like HTTP server on loopback for tests.

It serves one collateral set (dcap-qvl's QuoteCollateralV3 JSON dict) at the paths a PCCS / Intel PCS uses,
with the real body shapes and percent-encoded PEM issuer-chain headers, counts requests per path, and can be
told to misbehave per path (HTTP errors, hangs, malformed bodies, missing headers, dropped connections).
It also serves arbitrary static routes, for client tests that need e.g. oversized or chunked bodies.

Use it as a context manager::

    with PccsServer(collateral) as server:
        client.get(server.url + "/tdx/certification/v4/tcb?fmspc=...")
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.loopback import LoopbackServer, send_body

Failure = Literal[
    "404", "500", "502", "503", "504", "hang", "malformed", "missing-header", "bad-hex", "missing-field", "drop"
]

PCK_CRL_PATH = "/sgx/certification/v4/pckcrl"
ROOT_CRL_PATH = "/sgx/certification/v4/rootcacrl"
# Stands in for Intel's CRL distribution point (https://certificates.trustedservices.intel.com/...).
ROOT_CRL_DP_PATH = "/IntelSGXRootCA.der"


def tcb_path(tee: str) -> str:
    return f"/{tee}/certification/v4/tcb"


def qe_identity_path(tee: str) -> str:
    return f"/{tee}/certification/v4/qe/identity"


@dataclass(frozen=True)
class Route:
    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    chunked: bool = False


@dataclass(frozen=True)
class SeenRequest:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names


@dataclass
class _Failure:
    mode: Failure
    remaining: int | None  # None: every time


def _encode_chain(pem: str) -> str:
    # Intel percent-encodes everything outside the unreserved set, "+" and "/" of base64 included.
    return urllib.parse.quote(pem, safe="")


class PccsServer(LoopbackServer):
    """Serve ``collateral`` like a PCCS on 127.0.0.1 (random port) in a background thread."""

    def __init__(
        self,
        collateral: Mapping[str, str],
        *,
        tcb_chain_header: str = "TCB-Info-Issuer-Chain",
        root_crl_as_hex: bool = True,
        spaced_json: bool = False,
        lowercase_headers: bool = False,
        hang_seconds: float = 5.0,
    ) -> None:
        self.collateral = dict(collateral)
        tcb_id = json.loads(self.collateral["tcb_info"])["id"]
        self.tee = "tdx" if tcb_id == "TDX" else "sgx"
        crl = x509.load_der_x509_crl(bytes.fromhex(self.collateral["pck_crl"]))
        issuer_cn = crl.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        self.pck_ca = "processor" if "Processor" in str(issuer_cn) else "platform"
        self.tcb_chain_header = tcb_chain_header
        self.root_crl_as_hex = root_crl_as_hex
        self.spaced_json = spaced_json
        self.lowercase_headers = lowercase_headers
        self.hang_seconds = hang_seconds
        self.counts: Counter[str] = Counter()
        self.requests: list[SeenRequest] = []
        self._failures: dict[str, _Failure] = {}
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        super().__init__()

    # -- control ---------------------------------------------------------------------------------------------

    @property
    def total_requests(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def fail(self, path: str, mode: Failure, times: int | None = None) -> None:
        """Misbehave on ``path`` (no query), ``times`` times or for ever."""
        with self._lock:
            self._failures[path] = _Failure(mode, times)

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def set_route(
        self,
        path: str,
        *,
        status: int = 200,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        chunked: bool = False,
    ) -> None:
        with self._lock:
            self._routes[path] = Route(status, body, dict(headers or {}), chunked)

    thread_name = "pccs-test-server"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)

    # -- request handling (called from handler threads) -------------------------------------------------------

    def _take_failure(self, path: str) -> Failure | None:
        with self._lock:
            failure = self._failures.get(path)
            if failure is None:
                return None
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    del self._failures[path]
            return failure.mode

    def _note(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> None:
        with self._lock:
            self.counts[path] += 1
            self.requests.append(SeenRequest(path, query, headers))

    def _json_body(self, key: str, raw: str, signature: str, failure: Failure | None) -> bytes:
        if failure == "malformed":
            return f'{{"{key}":{raw[: len(raw) // 2]}'.encode()
        if failure == "bad-hex":
            signature = "zz" + signature[2:]
        if failure == "missing-field":
            return f'{{"{key}":{raw}}}'.encode()
        if self.spaced_json:
            # Other key order and whitespace: the client must still cut out the exact raw value text.
            return f'{{\n  "signature" : "{signature}",\n  "{key}" :  {raw}\n}}\n'.encode()
        return f'{{"{key}":{raw},"signature":"{signature}"}}'.encode()

    def _answer(self, path: str, query: dict[str, list[str]], failure: Failure | None) -> Route:
        """The normal answer for a PCCS path, shaped by a body-level failure mode if any."""
        c = self.collateral
        chain_omitted = failure == "missing-header"
        one = {k: v[0] for k, v in query.items()}
        if path == PCK_CRL_PATH:
            if one.get("ca") != self.pck_ca:
                return Route(404, b"No PCK CRL for this CA")
            der = bytes.fromhex(c["pck_crl"])
            body = der if one.get("encoding") == "der" else _pem_crl(der)
            if failure == "malformed":
                body = b"\x30\x82\x01\x00 this is not a CRL"
            headers = {}
            if not chain_omitted:
                headers["SGX-PCK-CRL-Issuer-Chain"] = _encode_chain(c["pck_crl_issuer_chain"])
            return Route(200, body, headers)
        if path == tcb_path(self.tee):
            served = json.loads(c["tcb_info"])["fmspc"]
            if one.get("fmspc", "").upper() != served.upper():
                return Route(404, b"No TCB Info for this FMSPC")
            if one.get("update", "standard") not in ("standard", "early"):
                return Route(400, b"bad update parameter")
            body = self._json_body("tcbInfo", c["tcb_info"], c["tcb_info_signature"], failure)
            headers = {"Content-Type": "application/json"}
            if not chain_omitted:
                headers[self.tcb_chain_header] = _encode_chain(c["tcb_info_issuer_chain"])
            return Route(200, body, headers)
        if path == qe_identity_path(self.tee):
            if one.get("update", "standard") not in ("standard", "early"):
                return Route(400, b"bad update parameter")
            body = self._json_body("enclaveIdentity", c["qe_identity"], c["qe_identity_signature"], failure)
            headers = {"Content-Type": "application/json"}
            if not chain_omitted:
                headers["SGX-Enclave-Identity-Issuer-Chain"] = _encode_chain(c["qe_identity_issuer_chain"])
            return Route(200, body, headers)
        if path == ROOT_CRL_PATH:
            if failure in ("malformed", "bad-hex"):
                return Route(200, b"zz" + c["root_ca_crl"][2:].encode())
            if self.root_crl_as_hex:
                return Route(200, c["root_ca_crl"].encode())
            return Route(200, bytes.fromhex(c["root_ca_crl"]))
        if path == ROOT_CRL_DP_PATH:
            body = bytes.fromhex(c["root_ca_crl"])
            return Route(200, b"not a CRL at all" if failure == "malformed" else body)
        return Route(404, b"Not Found")


def _pem_crl(der: bytes) -> bytes:
    return x509.load_der_x509_crl(der).public_bytes(Encoding.PEM)


def _make_handler(server: PccsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes; with Nagle on, keep-alive requests stall ~40 ms each.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            split = urllib.parse.urlsplit(self.path)
            path = split.path
            query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
            server._note(path, query, {k.lower(): v for k, v in self.headers.items()})
            failure = server._take_failure(path)
            if failure == "drop":
                self.close_connection = True
                return
            if failure == "hang":
                # Longer than the client's timeout; returns early when the server stops.
                if server._stopping.wait(server.hang_seconds):
                    self.close_connection = True
                    return
                failure = None
            if failure in ("404", "500", "502", "503", "504"):
                self._send(Route(int(failure), f"simulated HTTP {failure}".encode()))
                return
            with server._lock:
                route = server._routes.get(path)
            self._send(route if route is not None else server._answer(path, query, failure))

        def _send(self, route: Route) -> None:
            try:
                self._write(route)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (timeout, size limit): expected in tests, not worth a traceback.
                self.close_connection = True

        def _write(self, route: Route) -> None:
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name.lower() if server.lowercase_headers else name, value)
            send_body(self, route.body, 4096 if route.chunked else None)

    return Handler
