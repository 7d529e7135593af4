"""The lifecycle every loopback test server shares: bind 127.0.0.1 on a free port, serve in a thread, stop."""

from __future__ import annotations

import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hangs up (timeout, size limit, retry) is normal in these tests; anything else is a bug in
        # the test server and is still reported.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class LoopbackServer:
    """Subclasses provide `_handler_class()`; `url` is known once started."""

    thread_name = "loopback-test-server"
    # Set (before start) to serve HTTPS: e.g. a context holding a chain the test made.
    ssl_context: ssl.SSLContext | None = None

    def __init__(self) -> None:
        self._stopping = threading.Event()  # lets handlers that "hang" on purpose return at stop
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"{'https' if self.ssl_context else 'http'}://{host}:{port}"

    def start(self) -> Self:
        self._httpd = QuietServer(("127.0.0.1", 0), self._handler_class())
        if self.ssl_context is not None:
            self._httpd.socket = self.ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=self.thread_name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def respond(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str = "application/json") -> None:
    """Answer with a complete body; a client that already hung up (timeouts and size limits do) is not an error."""
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        send_body(handler, body)
    except (BrokenPipeError, ConnectionResetError):
        handler.close_connection = True


def send_body(handler: BaseHTTPRequestHandler, body: bytes, chunk: int | None = None) -> None:
    """End the headers already sent and write `body`: with its length, or in chunks of `chunk` bytes (no length
    announced, as a streaming server does)."""
    if chunk is None:
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        return
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    for i in range(0, len(body), chunk):
        piece = body[i : i + chunk]
        handler.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    handler.wfile.write(b"0\r\n\r\n")
