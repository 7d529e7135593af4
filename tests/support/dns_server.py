"""A real DNS server on 127.0.0.1 for tests: UDP and TCP on one port, answers built with dnspython's classes.

It is authoritative for every name in its zone dict and answers like a recursive resolver would relay:

* a name with records of the asked type → those records (CNAMEs inside the zone are followed);
* a name in the zone without records of that type, or an empty non-terminal (an ancestor of a zone name) →
  NOERROR with no answer;
* any other name → NXDOMAIN.

Knobs per name: ``servfail``, ``refused``, ``timeout`` (never answer), ``nxdomain`` (even when in the zone);
``truncate_udp`` sets TC on every UDP answer so the client has to retry over TCP. Every query is recorded.

Zone format::

    {"example.test": {"CAA": [(0, "issue", "letsencrypt.org; accounturi=https://...")]},
     "www.example.test": {"CNAME": "example.test"}}

Use it as a context manager; ``address`` is the ``(host, port)`` to give the client.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CAA
import dns.rdtypes.ANY.CNAME
import dns.rrset

Mode = Literal["servfail", "refused", "timeout", "nxdomain"]
UDP_LIMIT = 512  # without EDNS


@dataclass(frozen=True)
class SeenQuery:
    name: str  # lower case, no trailing dot
    rdtype: str
    transport: Literal["udp", "tcp"]


def _key(name: str) -> str:
    return name.strip().lower().rstrip(".")


def _caa(record: Sequence[Any]) -> dns.rdata.Rdata:
    flags, tag, value = record
    tag_b = tag.encode() if isinstance(tag, str) else bytes(tag)
    value_b = value.encode() if isinstance(value, str) else bytes(value)
    return dns.rdtypes.ANY.CAA.CAA(dns.rdataclass.IN, dns.rdatatype.CAA, int(flags), tag_b, value_b)


class DnsServer:
    """Serve `zone` on 127.0.0.1, UDP and TCP on the same (random) port, from background threads."""

    def __init__(
        self,
        zone: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        ttl: int = 300,
        truncate_udp: bool = False,
    ) -> None:
        self.ttl = ttl
        self.truncate_udp = truncate_udp
        self._zone: dict[str, dict[str, Any]] = {}
        self._modes: dict[str, Mode] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self.queries: list[SeenQuery] = []
        for name, records in (zone or {}).items():
            self.set_records(name, records)

    # -- control ---------------------------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        assert self._udp is not None, "server not started"
        host, port = self._udp.getsockname()[:2]
        return host, port

    def set_records(self, name: str, records: Mapping[str, Any]) -> None:
        with self._lock:
            self._zone[_key(name)] = dict(records)

    def remove(self, name: str) -> None:
        with self._lock:
            self._zone.pop(_key(name), None)

    def fail(self, name: str, mode: Mode) -> None:
        with self._lock:
            self._modes[_key(name)] = mode

    def clear_failures(self) -> None:
        with self._lock:
            self._modes.clear()

    def asked(self, rdtype: str = "CAA") -> list[str]:
        """The names queried for `rdtype`, in order."""
        with self._lock:
            return [q.name for q in self.queries if q.rdtype == rdtype]

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> Self:
        # Bind UDP on a free port, then TCP on the same number (retry if that TCP port happens to be taken).
        for _ in range(20):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            tcp.listen(16)
            break
        else:
            raise RuntimeError("no free port for UDP and TCP at once")
        udp.settimeout(0.05)
        tcp.settimeout(0.05)
        self._udp, self._tcp = udp, tcp
        for target, name in ((self._serve_udp, "dns-test-udp"), (self._serve_tcp, "dns-test-tcp")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in (self._udp, self._tcp):
            if sock is not None:
                sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving ---------------------------------------------------------------------------------------------

    def _serve_udp(self) -> None:
        assert self._udp is not None
        while not self._stopping.is_set():
            try:
                wire, peer = self._udp.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            answer = self._answer(wire, "udp")
            if answer is None:
                continue
            try:
                self._udp.sendto(answer, peer)
            except OSError:
                continue

    def _serve_tcp(self) -> None:
        assert self._tcp is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._tcp.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._tcp_connection, args=(conn,), name="dns-test-tcp-conn", daemon=True).start()

    def _tcp_connection(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        buffer = b""
        try:
            while not self._stopping.is_set():
                try:
                    chunk = conn.recv(65535)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                buffer += chunk
                while len(buffer) >= 2:
                    (length,) = struct.unpack("!H", buffer[:2])
                    if len(buffer) < 2 + length:
                        break
                    wire, buffer = buffer[2 : 2 + length], buffer[2 + length :]
                    answer = self._answer(wire, "tcp")
                    if answer is None:
                        continue  # "timeout": hold the connection open and say nothing
                    conn.sendall(struct.pack("!H", len(answer)) + answer)
        except OSError:
            return
        finally:
            conn.close()

    def _answer(self, wire: bytes, transport: Literal["udp", "tcp"]) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if not query.question:
            return None
        question = query.question[0]
        qname = _key(question.name.to_text())
        rdtype = dns.rdatatype.to_text(question.rdtype)
        with self._lock:
            self.queries.append(SeenQuery(qname, rdtype, transport))
            mode = self._modes.get(qname)
            zone = {k: dict(v) for k, v in self._zone.items()}
        if mode == "timeout":
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA | dns.flags.RA
        if mode == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
        elif mode == "refused":
            response.set_rcode(dns.rcode.REFUSED)
        elif mode == "nxdomain" or not self._exists(qname, zone):
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            for rrset in self._records(question.name, rdtype, zone):
                response.answer.append(rrset)
        return self._encode(query, response, transport)

    def _encode(self, query: dns.message.Message, response: dns.message.Message, transport: str) -> bytes:
        if transport == "tcp":
            return response.to_wire()
        limit = max(UDP_LIMIT, query.payload) if query.edns >= 0 else UDP_LIMIT
        wire = None if self.truncate_udp else response.to_wire()
        if wire is not None and len(wire) <= limit:
            return wire
        truncated = dns.message.make_response(query)
        truncated.flags |= dns.flags.AA | dns.flags.RA | dns.flags.TC
        truncated.set_rcode(response.rcode())
        return truncated.to_wire()

    @staticmethod
    def _exists(qname: str, zone: Mapping[str, Any]) -> bool:
        return qname in zone or any(name.endswith("." + qname) for name in zone)

    def _records(self, name: dns.name.Name, rdtype: str, zone: Mapping[str, Mapping[str, Any]]) -> Iterable[Any]:
        current = name
        for _ in range(8):  # follow CNAMEs inside the zone, a bounded number of times
            records = zone.get(_key(current.to_text()), {})
            if rdtype != "CNAME" and "CNAME" in records:
                target = dns.name.from_text(str(records["CNAME"]))
                cname = dns.rdtypes.ANY.CNAME.CNAME(dns.rdataclass.IN, dns.rdatatype.CNAME, target)
                yield dns.rrset.from_rdata(current, self.ttl, cname)
                current = target
                continue
            values = records.get(rdtype)
            if values:
                if rdtype == "CAA":
                    rdatas = [_caa(v) for v in values]
                else:
                    rdatas = [dns.rdata.from_text("IN", rdtype, str(v)) for v in values]
                yield dns.rrset.from_rdata_list(current, self.ttl, rdatas)
            return
