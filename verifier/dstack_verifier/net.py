"""The one HTTP client of the verifier.

Every network access of the library goes through :class:`NetClient` so that

* timeouts, retries and body-size limits are the same everywhere (network answers are untrusted input),
* an offline run can refuse every request up front,
* every answer is recorded as an :class:`Exchange`, which lets a later run be replayed offline from the
  recorded evidence with :class:`ReplayClient`.

GET serves the HTTP APIs; POST serves JSON-RPC (Ethereum nodes); ``download`` streams large files (OS images) to
disk, resuming an interrupted transfer and checking a SHA-256 as it goes; ``dns_query`` asks a DNS resolver (CAA
records) and ``tls_chain`` reads the certificate chain a TLS server presents (the gateway's). Those two are recorded
as exchanges of method ``DNS`` / ``TLS`` so that the domain checks replay offline like the HTTP ones.

A POST's request body is recorded with its answer, and a replay answers a POST only when both the URL and the
request body match the recording.

No globals: the httpx client, the clock and the sleep function are constructor parameters.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field

__all__ = [
    "DEFAULT_MAX_BODY",
    "RECORDED_NOTE_HEADER",
    "RECORDED_SHA256_HEADER",
    "RECORDED_SIZE_HEADER",
    "USER_AGENT",
    "DownloadCancelled",
    "DownloadResult",
    "Exchange",
    "HashMismatchError",
    "NetClient",
    "NetError",
    "NetResponse",
    "NotRecordedError",
    "OfflineError",
    "ReplayClient",
    "encode_json_body",
]

DEFAULT_MAX_BODY = 32 * 1024 * 1024
# Connect fast-fails on a dead host; read is generous because PCS/PCCS answers can be slow under load.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# Only these are worth retrying: the server (or a proxy in front of it) says "try again later".
RETRY_STATUSES = frozenset({502, 503, 504})
# Request headers that may carry secrets; they never go into the recorded evidence.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "ocp-apim-subscription-key", "x-api-key"})
_MAX_BACKOFF = 8.0
_EXCERPT_CHARS = 160
# Downloads: redirect hops, and the headers that stand in for a body that is never recorded.
_MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_ERROR_EXCERPT_BYTES = 1024
RECORDED_SHA256_HEADER = "x-inspector-body-sha256"
RECORDED_SIZE_HEADER = "x-inspector-body-size"
RECORDED_NOTE_HEADER = "x-inspector-note"
_STREAMED_NOTE = "streamed download: body not recorded, see the sha256 and size"
MAX_TLS_CHAIN = 16
MAX_DNS_ANSWER = 65535
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _version() -> str:
    try:
        return importlib.metadata.version("dstack-inspector")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree without install metadata
        return "0"


USER_AGENT = f"dstack-inspector/{_version()}"


def _one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace so that error messages stay on one line, and bound their length."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class NetError(Exception):
    """A network request failed. ``str(err)`` is one line naming the URL and the problem."""

    def __init__(self, url: str, problem: str, *, offline: bool = False) -> None:
        self.url = url
        self.problem = _one_line(problem)
        # Callers turn offline refusals into a "skip" rather than an "error", so keep the fact queryable.
        self.offline = offline
        super().__init__(self._message())

    def _message(self) -> str:
        return f"{self.url}: {self.problem}"


class OfflineError(NetError):
    """The request was refused because the client is offline (or the answer is not in a recording)."""

    def __init__(self, url: str, problem: str = "offline mode: network access refused") -> None:
        super().__init__(url, problem, offline=True)


class DownloadCancelled(NetError):
    """The caller's cancel callback asked to stop. The partial file is kept, so a later download resumes it."""

    def __init__(self, url: str) -> None:
        super().__init__(url, "download cancelled")


class HashMismatchError(NetError):
    """A download completed but its SHA-256 is not the expected one; the downloaded bytes were deleted."""

    def __init__(self, url: str, *, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(url, f"sha256 mismatch: the download has {actual}, expected {expected}")


class NotRecordedError(OfflineError):
    """A replay was asked for a URL (and, for a POST, a request body) that the recorded evidence does not hold."""

    def __init__(self, url: str, *, method: str = "GET", body_size: int | None = None) -> None:
        self.method = method
        self.body_size = body_size
        super().__init__(url, "not in the recorded evidence")

    def _message(self) -> str:
        if self.method == "GET":
            return f"not in the recorded evidence: {self.url}"
        size = f" with this request body ({self.body_size} bytes)" if self.body_size is not None else ""
        return f"not in the recorded evidence: {self.method} {self.url}{size}"


class Exchange(BaseModel):
    """One recorded request/response, as stored in the evidence."""

    method: str = "GET"
    url: str = Field(description="full URL including the query string")
    request_headers: dict[str, str] = Field(
        default_factory=dict, description="headers we chose to send (lower-case names), secrets omitted"
    )
    request_body: str | None = Field(default=None, description="request body, base64 (POST only)")
    status: int
    headers: dict[str, str] = Field(default_factory=dict, description="response headers, lower-case names")
    body: str = Field(default="", description="response body, base64")
    fetched_at: float = Field(description="unix seconds when the answer arrived")

    @property
    def content(self) -> bytes:
        return base64.b64decode(self.body, validate=True)

    @property
    def request_content(self) -> bytes:
        return base64.b64decode(self.request_body or "", validate=True)


@dataclass(frozen=True)
class NetResponse:
    """What callers get back: a completed answer with the whole (size-bounded) body in memory."""

    url: str
    status: int
    headers: Mapping[str, str]  # lower-case names
    content: bytes
    reason: str = ""
    exchange: Exchange | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def header(self, name: str) -> str | None:
        """Case-insensitive header lookup."""
        return self.headers.get(name.lower())

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def excerpt(self) -> str:
        return _one_line(self.text, _EXCERPT_CHARS)

    def status_problem(self) -> str:
        """One line for error messages: the status and a short excerpt of the body."""
        status = f"HTTP {self.status}" + (f" {self.reason}" if self.reason else "")
        excerpt = self.excerpt()
        return f"{status}: {excerpt}" if excerpt else status

    @classmethod
    def from_exchange(cls, exchange: Exchange) -> NetResponse:
        return cls(
            url=exchange.url,
            status=exchange.status,
            headers=dict(exchange.headers),
            content=exchange.content,
            exchange=exchange,
        )


@dataclass(frozen=True)
class DownloadResult:
    """A completed, hash-checked download, renamed into place at ``path``."""

    url: str  # where the bytes finally came from (after redirects)
    path: Path
    size: int
    sha256: str  # lowercase hex
    resumed_from: int  # bytes of an earlier partial download that were kept (0: downloaded from the start)
    exchange: Exchange | None = field(default=None, compare=False, repr=False)


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _hash_file(path: Path, hasher: Any) -> None:
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            hasher.update(chunk)


def _parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``bytes START-END/TOTAL`` (TOTAL may be ``*``) → (start, end, total); None when malformed."""
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if match is None:
        return None
    start, end = int(match[1]), int(match[2])
    total = None if match[3] == "*" else int(match[3])
    if end < start or (total is not None and end >= total):
        return None
    return start, end, total


def _declared_length(headers: httpx.Headers) -> int | None:
    size = (headers.get("content-length") or "").strip()
    return int(size) if size.isascii() and size.isdecimal() else None


@dataclass
class _Received:
    """What one download attempt produced (the caller finalises: hash check, rename, record)."""

    url: str
    status: int
    headers: dict[str, str]
    size: int
    resumed_from: int
    hasher: Any


class _Restart(Exception):
    """Internal: the server did not honour our Range request in a usable way; start again from byte 0."""


def _full_url(url: str, params: Mapping[str, Any] | None) -> str:
    # httpx builds the query string the same way for a live request and for a replay lookup, so the recorded
    # URL and the looked-up URL compare equal. Merge rather than replace: a query already in ``url`` is kept
    # (httpx.URL(url, params=...) would drop it).
    base = httpx.URL(url)
    return str(base.copy_merge_params(dict(params)) if params else base)


def _recordable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower() not in SECRET_HEADERS}


def _with_user_agent(headers: Mapping[str, str] | None) -> dict[str, str]:
    sent = dict(headers or {})
    if not any(name.lower() == "user-agent" for name in sent):
        sent["User-Agent"] = USER_AGENT
    return sent


def encode_json_body(payload: Any) -> bytes:
    """The exact bytes ``post_json`` sends: compact, keys sorted, so equal payloads give equal bodies (and a
    replay finds the recorded answer by comparing bytes)."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=True, allow_nan=False).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class NetClient:
    """Injectable HTTP client: timeouts, bounded retries, body-size limit, offline mode, recording.

    ``get`` returns any completed answer (also non-2xx) and lets the caller decide; ``get_ok`` raises
    :class:`NetError` for non-2xx. Every answer returned to a caller is appended to ``recorder``.

    ``post`` / ``post_json`` behave like ``get`` (same limits, offline refusal, recording, and retries, so only
    POST requests that are safe to repeat, such as JSON-RPC reads, should go through them).
    """

    def __init__(
        self,
        http: httpx.Client | None = None,
        *,
        offline: bool = False,
        max_body: int = DEFAULT_MAX_BODY,
        retries: int = 2,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        recorder: list[Exchange] | None = None,
        timeout: httpx.Timeout | float | None = None,
        deadline: float | None = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_body < 0 or retries < 0 or backoff < 0:
            raise ValueError("max_body, retries and backoff must not be negative")
        self._owns_http = http is None and not offline
        if http is None and not offline:
            http = httpx.Client(
                timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT},
            )
        self._http = http
        self.offline = offline
        self.max_body = max_body
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self._clock = clock
        # httpx timeouts are per socket operation; a server dripping one byte at a time never trips them,
        # so a whole attempt also has a wall-clock budget.
        self.deadline = deadline
        self._monotonic = monotonic
        self.recorder: list[Exchange] = recorder if recorder is not None else []

    # -- lifecycle -------------------------------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_http and self._http is not None:
            self._http.close()

    def __enter__(self) -> NetClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests --------------------------------------------------------------------------------------------

    def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> NetResponse:
        """GET ``url``; returns the answer whatever its status. Raises NetError when no answer arrived."""
        full = _full_url(url, params)
        sent = _with_user_agent(headers)
        return self._record("GET", sent, None, self._fetch(full, sent))

    def get_ok(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> NetResponse:
        """Like ``get`` but a non-2xx answer raises NetError with the status and a short body excerpt."""
        response = self.get(url, params=params, headers=headers)
        if not response.ok:
            raise NetError(response.url, response.status_problem())
        return response

    def post(self, url: str, content: bytes, headers: Mapping[str, str] | None = None) -> NetResponse:
        """POST ``content`` to ``url``; returns the answer whatever its status. Raises NetError when no answer
        arrived. The request body is recorded (base64) with the answer."""
        full = _full_url(url, None)
        sent = _with_user_agent(headers)
        return self._record("POST", sent, content, self._fetch(full, sent, method="POST", content=content))

    def post_json(
        self, url: str, payload: dict[str, Any] | list[Any], headers: Mapping[str, str] | None = None
    ) -> NetResponse:
        """POST ``payload`` as JSON (see :func:`encode_json_body` for the exact bytes)."""
        sent = {"Content-Type": "application/json", "Accept": "application/json"}
        sent.update(headers or {})
        return self.post(url, encode_json_body(payload), headers=sent)

    def download(
        self,
        url: str,
        dest: Path,
        *,
        max_bytes: int,
        expected_sha256: str | None = None,
        progress: Callable[[int, int | None], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
    ) -> DownloadResult:
        """Stream ``url`` to ``dest`` without holding the body in memory.

        The bytes go to ``dest.part`` first. When ``dest.part`` already exists (an earlier attempt was interrupted),
        it is hashed and the rest is asked for with ``Range: bytes=N-``; a server that answers with anything but a
        matching ``206`` + ``Content-Range`` makes the download start again from byte 0. More than ``max_bytes``
        (announced or received) fails and deletes the partial file. ``dest`` appears (atomically renamed) only when
        the SHA-256 equals ``expected_sha256`` (when given); a mismatch deletes the bytes and raises
        :class:`HashMismatchError`. ``progress(done, total)`` is called as bytes arrive (total None when unknown);
        ``cancel()`` returning True stops with :class:`DownloadCancelled` and keeps the partial file for a resume.
        Connection drops and 502/503/504 are retried (``retries`` times), resuming where they stopped. Redirects are
        followed (at most 5, never from https to http). ``deadline`` bounds the whole call in seconds (None: only
        the per-read timeouts apply).

        The recorder gets the exchange's metadata with an empty body; the SHA-256 and size of the body are in the
        ``x-inspector-body-sha256`` / ``x-inspector-body-size`` headers of the recorded answer.
        """
        full = _full_url(url, None)
        if self.offline or self._http is None:
            raise OfflineError(full)
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        expected = None
        if expected_sha256 is not None:
            expected = expected_sha256.strip().lower()
            if not _SHA256_HEX.fullmatch(expected):
                raise ValueError(f"expected_sha256 is not 64 hex digits: {expected_sha256!r}")
        dest = Path(dest)
        part = _part_path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        sent = _with_user_agent(headers)
        # The exact bytes the server stores: no transparent decompression (it would also break byte ranges).
        sent["Accept-Encoding"] = "identity"
        started = self._monotonic()
        attempt = 0
        while True:
            if cancel is not None and cancel():
                raise DownloadCancelled(full)
            try:
                received = self._download_once(full, sent, part, max_bytes, progress, cancel, started, deadline)
            except _Restart:
                part.unlink(missing_ok=True)
                continue  # the next attempt sends no Range, so this cannot loop
            except _Retryable as exc:
                if attempt >= self.retries:
                    raise NetError(full, exc.problem) from exc.__cause__
                self._sleep(self._delay(attempt, None))
                attempt += 1
                continue
            break
        digest = received.hasher.hexdigest()
        exchange = self._record_download(full, sent, received, digest)
        if expected is not None and digest != expected:
            part.unlink(missing_ok=True)
            raise HashMismatchError(full, expected=expected, actual=digest)
        os.replace(part, dest)
        return DownloadResult(
            url=received.url,
            path=dest,
            size=received.size,
            sha256=digest,
            resumed_from=received.resumed_from,
            exchange=exchange,
        )

    def dns_query(self, qname: str, rdtype: str, server: tuple[str, int], timeout: float) -> bytes:
        """Ask the resolver at ``server`` for ``qname``/``rdtype`` (UDP, TCP when truncated); the answer's wire
        form. Raises NetError when no answer arrived. Recorded as ``DNS dns:<qname>?type=<rdtype>``."""
        import dns.exception
        import dns.message
        import dns.query

        url = _dns_url(qname, rdtype)
        if self.offline:
            raise OfflineError(url)
        host, port = server
        query = dns.message.make_query(qname, rdtype, use_edns=0, payload=1232)
        try:
            answer, _tcp = dns.query.udp_with_fallback(query, host, timeout=timeout, port=int(port))
        except dns.exception.Timeout:
            raise NetError(url, f"the resolver {host}:{port} timed out (no answer in {timeout:.1f} s)") from None
        except (OSError, ValueError, dns.exception.DNSException) as exc:
            raise NetError(url, f"the resolver {host}:{port} failed ({_one_line(str(exc) or type(exc).__name__)})"
                           ) from None
        wire = answer.to_wire()
        self._record_other("DNS", url, {"server": f"{host}:{port}"}, wire)
        return wire

    def tls_chain(self, host: str, port: int, timeout: float) -> list[bytes]:
        """The certificates (DER, leaf first) a TLS server at host:port presents, unverified: judging them is the
        caller's business. Recorded as ``TLS tls://host:port`` with the chain as PEM."""
        import socket
        import ssl

        url = f"tls://{host}:{port}"
        if self.offline:
            raise OfflineError(url)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        server_name = None if re.fullmatch(r"[0-9.]+|\[?[0-9a-fA-F:]+\]?", host) else host
        try:
            with socket.create_connection((host, int(port)), timeout=timeout) as raw, \
                    context.wrap_socket(raw, server_hostname=server_name) as tls:
                chain = _peer_chain(tls)
        except (OSError, ValueError) as exc:
            raise NetError(url, f"TLS connection failed ({_one_line(str(exc) or type(exc).__name__)})") from None
        if not chain:
            raise NetError(url, "the server presented no certificate")
        self._record_other("TLS", url, {}, _pem_chain(chain[:MAX_TLS_CHAIN]))
        return chain[:MAX_TLS_CHAIN]

    # -- internals -------------------------------------------------------------------------------------------

    def _record_other(self, method: str, url: str, sent: Mapping[str, str], body: bytes) -> None:
        self.recorder.append(Exchange(method=method, url=url, request_headers=dict(sent), status=200,
                                      body=_b64(body), fetched_at=self._clock()))

    def _record(
        self, method: str, sent: Mapping[str, str], content: bytes | None, response: NetResponse
    ) -> NetResponse:
        exchange = Exchange(
            method=method,
            url=response.url,
            request_headers=_recordable_headers(sent),
            request_body=None if content is None else _b64(content),
            status=response.status,
            headers=dict(response.headers),
            body=_b64(response.content),
            fetched_at=self._clock(),
        )
        self.recorder.append(exchange)
        return NetResponse(
            url=response.url,
            status=response.status,
            headers=response.headers,
            content=response.content,
            reason=response.reason,
            exchange=exchange,
        )

    def _fetch(
        self, url: str, headers: Mapping[str, str], *, method: str = "GET", content: bytes | None = None
    ) -> NetResponse:
        if self.offline or self._http is None:
            raise OfflineError(url)
        attempt = 0
        while True:
            try:
                response = self._once(url, headers, method, content)
            except _Retryable as exc:
                if attempt >= self.retries:
                    raise NetError(url, exc.problem) from exc.__cause__
                self._sleep(self._delay(attempt, None))
                attempt += 1
                continue
            if response.status in RETRY_STATUSES and attempt < self.retries:
                self._sleep(self._delay(attempt, response.header("retry-after")))
                attempt += 1
                continue
            return response

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        delay = self.backoff * (2**attempt)
        # Honour a numeric Retry-After, but stay bounded: a hostile server must not park us for hours.
        if retry_after is not None and retry_after.strip().isdecimal() and retry_after.strip().isascii():
            delay = max(delay, float(retry_after.strip()))
        return min(delay, _MAX_BACKOFF)

    def _once(self, url: str, headers: Mapping[str, str], method: str, content: bytes | None) -> NetResponse:
        assert self._http is not None
        try:
            with self._http.stream(method, url, headers=dict(headers), content=content) as resp:
                declared = resp.headers.get("content-length")
                # Refuse before reading when the server announces a body above the limit.
                size = (declared or "").strip()
                if size.isascii() and size.isdecimal() and int(size) > self.max_body:
                    raise NetError(url, f"response body too large ({declared} bytes > limit {self.max_body})")
                chunks: list[bytes] = []
                total = 0
                started = self._monotonic()
                # Count decoded bytes, so a small compressed body cannot inflate past the limit either.
                for chunk in resp.iter_bytes():
                    total += len(chunk)
                    if total > self.max_body:
                        raise NetError(url, f"response body too large (more than {self.max_body} bytes)")
                    chunks.append(chunk)
                    if self.deadline is not None and self._monotonic() - started > self.deadline:
                        raise NetError(url, f"timed out (body not complete after {self.deadline:g} s)")
                return NetResponse(
                    url=str(resp.request.url),
                    status=resp.status_code,
                    headers={k.lower(): v for k, v in resp.headers.items()},
                    content=b"".join(chunks),
                    reason=resp.reason_phrase,
                )
        except NetError:
            raise
        except httpx.ConnectTimeout as exc:
            raise _Retryable("connection timed out") from exc
        except httpx.ConnectError as exc:
            raise _Retryable(f"connection failed ({str(exc) or type(exc).__name__})") from exc
        except httpx.RemoteProtocolError as exc:
            # Typically "server disconnected without sending a response": transient, worth one more try.
            raise _Retryable(f"connection dropped ({str(exc) or type(exc).__name__})") from exc
        except httpx.TimeoutException as exc:
            raise NetError(url, f"timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise NetError(url, f"request failed ({type(exc).__name__}: {exc})") from exc

    def _record_download(self, url: str, sent: Mapping[str, str], received: _Received, digest: str) -> Exchange:
        answer = dict(received.headers)
        answer[RECORDED_SHA256_HEADER] = digest
        answer[RECORDED_SIZE_HEADER] = str(received.size)
        answer[RECORDED_NOTE_HEADER] = _STREAMED_NOTE
        exchange = Exchange(
            method="GET",
            url=url,
            request_headers=_recordable_headers(sent),
            status=received.status,
            headers=answer,
            body="",
            fetched_at=self._clock(),
        )
        self.recorder.append(exchange)
        return exchange

    def _download_once(
        self,
        url: str,
        sent: Mapping[str, str],
        part: Path,
        max_bytes: int,
        progress: Callable[[int, int | None], None] | None,
        cancel: Callable[[], bool] | None,
        started: float,
        deadline: float | None,
    ) -> _Received:
        assert self._http is not None
        offset = part.stat().st_size if part.is_file() else 0
        if offset > max_bytes:
            part.unlink()
            offset = 0
        hasher = hashlib.sha256()
        request_headers = dict(sent)
        if offset:
            _hash_file(part, hasher)
            request_headers["Range"] = f"bytes={offset}-"
        current = httpx.URL(url)
        try:
            for _hop in range(_MAX_REDIRECTS + 1):
                with self._http.stream("GET", current, headers=request_headers, follow_redirects=False) as resp:
                    location = resp.headers.get("location")
                    if resp.status_code in _REDIRECT_STATUSES and location:
                        target = resp.url.join(location)
                        if target.scheme not in ("http", "https") or (
                            resp.url.scheme == "https" and target.scheme != "https"
                        ):
                            raise NetError(url, f"refusing a redirect from {resp.url} to {target}")
                        if target.host != current.host:  # never carry credentials to another host
                            request_headers = {
                                k: v for k, v in request_headers.items() if k.lower() not in SECRET_HEADERS
                            }
                        current = target
                        continue
                    return self._receive(
                        url, resp, part, offset, hasher, max_bytes, progress, cancel, started, deadline
                    )
            raise NetError(url, f"too many redirects (more than {_MAX_REDIRECTS})")
        except (NetError, _Restart, _Retryable):
            raise
        except httpx.ConnectTimeout as exc:
            raise _Retryable("connection timed out") from exc
        except httpx.ConnectError as exc:
            raise _Retryable(f"connection failed ({str(exc) or type(exc).__name__})") from exc
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            # Mid-body drops land here too; the partial file stays and the retry resumes it.
            raise _Retryable(f"connection dropped ({str(exc) or type(exc).__name__})") from exc
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise NetError(url, f"request failed ({type(exc).__name__}: {exc})") from exc

    def _receive(
        self,
        url: str,
        resp: httpx.Response,
        part: Path,
        offset: int,
        hasher: Any,
        max_bytes: int,
        progress: Callable[[int, int | None], None] | None,
        cancel: Callable[[], bool] | None,
        started: float,
        deadline: float | None,
    ) -> _Received:
        status = resp.status_code
        if status in RETRY_STATUSES:
            raise _Retryable(f"HTTP {status} {resp.reason_phrase}".strip())
        length = _declared_length(resp.headers)
        if status == 206 and offset:
            answered = _parse_content_range(resp.headers.get("content-range"))
            if answered is None or answered[0] != offset or (length is not None and length != answered[1] - offset + 1):
                raise _Restart  # not the range we asked for: do not splice unknown bytes onto the file
            total = answered[2] if answered[2] is not None else answered[1] + 1
            append = True
        elif status == 416 and offset:
            raise _Restart  # the partial file is not a prefix the server recognises
        elif status == 200:
            # Also the answer of a server that ignores Range: the whole body again, from byte 0.
            total, append = length, False
        else:
            excerpt = b""
            for chunk in resp.iter_raw(_ERROR_EXCERPT_BYTES):
                excerpt = chunk[:_ERROR_EXCERPT_BYTES]
                break
            problem = f"HTTP {status}" + (f" {resp.reason_phrase}" if resp.reason_phrase else "")
            text = _one_line(excerpt.decode("utf-8", errors="replace"), _EXCERPT_CHARS)
            if status == 206:
                problem += " (a partial answer to a request without Range)"
            raise NetError(url, f"{problem}: {text}" if text else problem)
        if total is not None and total > max_bytes:
            part.unlink(missing_ok=True)
            raise NetError(url, f"download too large ({total} bytes > limit {max_bytes})")
        if not append:
            hasher = hashlib.sha256()
        done = offset if append else 0
        resumed_from = done
        too_large = False
        with part.open("ab" if append else "wb") as fh:
            if progress is not None:
                progress(done, total)
            # No chunk_size: httpx would hold back a partial chunk and lose it when the connection drops.
            for chunk in resp.iter_raw():
                if cancel is not None and cancel():
                    raise DownloadCancelled(url)
                done += len(chunk)
                if done > max_bytes:
                    too_large = True
                    break
                fh.write(chunk)
                hasher.update(chunk)
                if progress is not None:
                    progress(done, total)
                if deadline is not None and self._monotonic() - started > deadline:
                    raise NetError(url, f"timed out (download not complete after {deadline:g} s)")
            fh.flush()
            os.fsync(fh.fileno())
        if too_large:
            part.unlink(missing_ok=True)
            raise NetError(url, f"download too large (more than {max_bytes} bytes)")
        if total is not None and done != total:
            raise _Retryable(f"connection closed after {done} of {total} bytes")
        return _Received(
            url=str(resp.url),
            status=status,
            headers={k.lower(): v for k, v in resp.headers.items()},
            size=done,
            resumed_from=resumed_from,
            hasher=hasher,
        )


def _dns_url(qname: str, rdtype: str) -> str:
    return f"dns:{qname.strip().rstrip('.').lower()}?type={rdtype.upper()}"


def _peer_chain(tls: Any) -> list[bytes]:
    """The presented chain: Python 3.13 has get_unverified_chain publicly; 3.11's SSL object has it too (only the
    leaf is public there). Without it, the leaf alone."""
    import ssl

    getter = getattr(tls, "get_unverified_chain", None) or getattr(getattr(tls, "_sslobj", None),
                                                                   "get_unverified_chain", None)
    if getter is not None:
        found = getter() or []
        return [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER) for c in found]  # type: ignore[attr-defined]
    leaf = tls.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def _pem_chain(chain: list[bytes]) -> bytes:
    import ssl

    return "".join(ssl.DER_cert_to_PEM_cert(der) for der in chain).encode()


def pem_to_der_chain(pem: bytes) -> list[bytes]:
    import ssl

    blocks = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.S)
    return [ssl.PEM_cert_to_DER_cert(b.decode("ascii")) for b in blocks]


class _Retryable(Exception):
    """Internal marker: a connection-level failure that may be retried."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


_ReplayKey = tuple[str, str, str]  # method, full URL, request body (base64, "" for none)


class ReplayClient(NetClient):
    """Answers GETs and POSTs from recorded exchanges only; anything else is refused with OfflineError.

    A GET is matched by URL; a POST by URL and the exact request body. When the recording holds several
    answers for one request they are served in the recorded order, and the last one is repeated after that, so
    a re-run sees what the original run saw.
    """

    def __init__(self, exchanges: Iterable[Exchange], *, recorder: list[Exchange] | None = None) -> None:
        super().__init__(offline=True, retries=0, recorder=recorder)
        self._answers: dict[_ReplayKey, list[Exchange]] = {}
        for exchange in exchanges:
            if RECORDED_NOTE_HEADER in exchange.headers:
                continue  # a streamed download's metadata: there is no body to answer with
            key = (exchange.method.upper(), _full_url(exchange.url, None), exchange.request_body or "")
            self._answers.setdefault(key, []).append(exchange)
        self._served: dict[_ReplayKey, int] = {}

    def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> NetResponse:
        full = _full_url(url, params)
        return self._replay(("GET", full, ""), NotRecordedError(full))

    def post(self, url: str, content: bytes, headers: Mapping[str, str] | None = None) -> NetResponse:
        full = _full_url(url, None)
        missing = NotRecordedError(full, method="POST", body_size=len(content))
        return self._replay(("POST", full, _b64(content)), missing)

    def dns_query(self, qname: str, rdtype: str, server: tuple[str, int], timeout: float) -> bytes:
        url = _dns_url(qname, rdtype)
        return self._replay(("DNS", url, ""), NotRecordedError(url, method="DNS")).content

    def tls_chain(self, host: str, port: int, timeout: float) -> list[bytes]:
        url = f"tls://{host}:{port}"
        pem = self._replay(("TLS", url, ""), NotRecordedError(url, method="TLS")).content
        try:
            return pem_to_der_chain(pem)
        except (ValueError, UnicodeDecodeError) as exc:
            raise NetError(url, f"recorded chain is corrupt ({exc})") from None

    def download(self, url: str, dest: Path, **kwargs: Any) -> DownloadResult:
        """Downloads are never replayed: their bodies (OS images) are not part of the recorded evidence."""
        raise OfflineError(_full_url(url, None), "replay: downloads are not part of the recorded evidence")

    def _replay(self, key: _ReplayKey, missing: NotRecordedError) -> NetResponse:
        full = key[1]
        answers = self._answers.get(key)
        if not answers:
            raise missing
        index = min(self._served.get(key, 0), len(answers) - 1)
        self._served[key] = index + 1
        exchange = answers[index]
        try:
            response = NetResponse.from_exchange(exchange)
        except ValueError as exc:  # a recording is untrusted input too (bad base64)
            raise NetError(full, f"recorded answer is corrupt ({exc})") from exc
        self.recorder.append(exchange)
        return response
