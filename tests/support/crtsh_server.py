"""A crt.sh-like HTTP server on loopback for tests.

``GET /?q=<identity>&output=json`` answers the JSON listing crt.sh gives (one row per log entry: a precertificate
and its final certificate are two rows with the same issuer and serial); ``q`` may hold ``%`` wildcards, as in
SQL LIKE (``%.example.test``). ``GET /?d=<id>`` answers the certificate as PEM (or DER, per certificate).

Knobs: ``slow_seconds`` (every answer waits first), ``listing_failure`` ("500", "502", "malformed", "not-a-list",
"bad-rows", "huge", "drop"), and per-id ``cert_failure`` ("404", "malformed", "huge", "der", "other-cert").
Every request is counted.

    with CrtShServer() as crtsh:
        crtsh.add(cert, precert=True)
        check_ct_log(client, "example.test", keys, crtsh.url, now, ...)
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.loopback import LoopbackServer, respond

ListingFailure = Literal["500", "502", "malformed", "not-a-list", "bad-rows", "huge", "drop"]
CertFailure = Literal["404", "malformed", "huge", "der", "other-cert"]


@dataclass
class LogRow:
    id: int
    cert: x509.Certificate
    issuer_ca_id: int
    names: list[str]
    precert: bool = False

    def listing(self) -> dict[str, Any]:
        cert = self.cert
        cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return {
            "issuer_ca_id": self.issuer_ca_id,
            "issuer_name": cert.issuer.rfc4514_string(),
            "common_name": str(cn[0].value) if cn else "",
            "name_value": "\n".join(self.names),
            "id": self.id,
            "entry_timestamp": _ts(cert.not_valid_before_utc),
            "not_before": _ts(cert.not_valid_before_utc),
            "not_after": _ts(cert.not_valid_after_utc),
            "serial_number": f"{cert.serial_number:x}",
            "result_count": 2 if self.precert else 1,
        }


def _ts(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S")


def _like(pattern: str) -> re.Pattern[str]:
    parts = [re.escape(p) for p in pattern.lower().split("%")]
    return re.compile(".*".join(parts))


class CrtShServer(LoopbackServer):
    thread_name = "crtsh-test-server"

    def __init__(self, *, slow_seconds: float = 0.0) -> None:
        self.slow_seconds = slow_seconds
        self.rows: list[LogRow] = []
        self.listing_failure: ListingFailure | None = None
        self.cert_failure: dict[int, CertFailure] = {}
        self.counts: Counter[str] = Counter()
        self.fetched_ids: list[int] = []
        self._next_id = 1000
        self._lock = threading.Lock()
        super().__init__()

    # -- content ---------------------------------------------------------------------------------------------

    def add(
        self,
        cert: x509.Certificate,
        *,
        precert: bool = False,
        issuer_ca_id: int = 7,
        names: list[str] | None = None,
    ) -> list[int]:
        """Log `cert` (and a precertificate row first when `precert`); returns the crt.sh ids, precert first."""
        if names is None:
            try:
                san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
            except x509.ExtensionNotFound:
                names = []
        ids = []
        with self._lock:
            for is_pre in ([True] if precert else []) + [False]:
                self._next_id += 1
                self.rows.append(LogRow(self._next_id, cert, issuer_ca_id, list(names), precert=is_pre))
                ids.append(self._next_id)
        return ids

    # -- serving ---------------------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)

    def _listing(self, query: str) -> bytes:
        pattern = _like(query)
        with self._lock:
            rows = [r.listing() for r in self.rows if any(pattern.fullmatch(n.lower()) for n in r.names)]
        failure = self.listing_failure
        if failure == "malformed":
            return json.dumps(rows).encode()[: max(1, len(json.dumps(rows)) // 2)] + b"<html>"
        if failure == "not-a-list":
            return json.dumps({"error": "something", "rows": rows}).encode()
        if failure == "bad-rows":
            rows = [*rows, {"id": "not-a-number"}, {"id": 5, "not_before": "yesterday"}, 42]
        if failure == "huge":
            filler = {"id": 1, "name_value": "x" * 1000, "not_before": "2020-01-01T00:00:00"}
            rows = rows + [filler] * 5000
        return json.dumps(rows).encode()

    def _certificate(self, cert_id: int) -> tuple[int, bytes]:
        with self._lock:
            row = next((r for r in self.rows if r.id == cert_id), None)
            failure = self.cert_failure.get(cert_id)
            self.fetched_ids.append(cert_id)
            other = next((r for r in self.rows if r.cert is not (row.cert if row else None)), None)
        if row is None or failure == "404":
            return 404, b"Certificate not found"
        if failure == "malformed":
            return 200, b"-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n"
        if failure == "huge":
            return 200, b"-----BEGIN CERTIFICATE-----\n" + b"A" * (600 << 10) + b"\n-----END CERTIFICATE-----\n"
        if failure == "other-cert" and other is not None:
            return 200, other.cert.public_bytes(Encoding.PEM)
        if failure == "der":
            return 200, row.cert.public_bytes(Encoding.DER)
        return 200, row.cert.public_bytes(Encoding.PEM)


def _make_handler(server: CrtShServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            split = urllib.parse.urlsplit(self.path)
            query = {k: v[0] for k, v in urllib.parse.parse_qs(split.query, keep_blank_values=True).items()}
            kind = "listing" if "q" in query else "certificate" if "d" in query else "other"
            with server._lock:
                server.counts[kind] += 1
            if server.slow_seconds and server._stopping.wait(server.slow_seconds):
                self.close_connection = True
                return
            if kind == "listing":
                failure = server.listing_failure
                if failure == "drop":
                    self.close_connection = True
                    return
                if failure in ("500", "502"):
                    self._send(int(failure), b"<html>Bad Gateway</html>", "text/html")
                    return
                self._send(200, server._listing(query["q"]), "application/json")
            elif kind == "certificate":
                try:
                    cert_id = int(query["d"])
                except ValueError:
                    self._send(400, b"bad id", "text/plain")
                    return
                status, body = server._certificate(cert_id)
                self._send(status, body, "application/pkix-cert")
            else:
                self._send(404, b"Not Found", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            respond(self, status, body, content_type)

    return Handler
