"""An Intel Trust Authority-like server on loopback for tests.

``POST /appraisal/v2/attest`` (header ``x-api-key`` must equal ``api_key``, else 401) takes ``{"tdx": {"quote":
<base64>}}`` and answers ``{"token": <JWT>}``: a PS384 token whose v2 claims (under ``tdx``) are read from the quote
with this server's own byte offsets (not the verifier's parser), signed by a test RSA key. ``GET /certs`` serves the
JWKS of that key with its x5c chain (leaf → "Test ITA Signing CA" → self-signed "Test ITA Root CA"), and
``GET /crl/{root,signing}.crl`` the CRLs the chain's distribution points name.

Knobs: ``claim_overrides`` (claims replaced or, with value None, removed), ``tcb_status``, ``bad_signature``,
``issued_at``/``lifetime`` (token times), ``attest_status`` (answer this HTTP status instead), ``attest_body``
(answer 200 with these bytes instead), ``slow_seconds``, ``revoke_leaf``, ``token_kid``. Requests are recorded
in ``requests`` as (method, path, headers).

    with ItaServer(now=evidence.now) as ita:
        check_ita(quote, "UpToDate", client=client, now=evidence.now, options=ita.options())
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import struct
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from dstack_verifier.ita import ItaOptions

from tests.support.loopback import LoopbackServer, respond

API_KEY = "test-ita-api-key-5f1e"
KID = "test-ita-signing-key-1"
DAY = 86400
_HEADER_LEN = 48
# TD 1.0 body: (claim, offset in the body, size) — laid out here independently of the verifier's parser.
_TD_CLAIMS = (("tdx_mrseam", 16, 48), ("tdx_mrsignerseam", 64, 48), ("tdx_mrtd", 136, 48),
              ("tdx_mrconfigid", 184, 48), ("tdx_mrowner", 232, 48), ("tdx_mrownerconfig", 280, 48),
              ("tdx_rtmr0", 328, 48), ("tdx_rtmr1", 376, 48), ("tdx_rtmr2", 424, 48), ("tdx_rtmr3", 472, 48),
              ("tdx_report_data", 520, 64))


@functools.cache
def _key(label: str) -> rsa.RSAPrivateKey:
    """One RSA key per role for the whole test session (generating them is the slow part)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048 if label != "leaf" else 3072)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _cert(subject: str, key: rsa.RSAPrivateKey, issuer: str, issuer_key: rsa.RSAPrivateKey, now: int, *,
          ca: bool, crl_url: str | None, serial: int) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(datetime.fromtimestamp(now - 30 * DAY, UTC))
        .not_valid_after(datetime.fromtimestamp(now + 365 * DAY, UTC))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if crl_url is not None:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    return builder.sign(issuer_key, hashes.SHA384())


class ItaServer(LoopbackServer):
    thread_name = "ita-test-server"

    def __init__(self, *, now: int, api_key: str = API_KEY) -> None:
        self.now = now
        self.api_key = api_key
        self.tcb_status = "UpToDate"
        self.claim_overrides: dict[str, Any] = {}
        self.bad_signature = False
        self.issued_at: int | None = None
        self.lifetime = 300
        self.attest_status: int | None = None
        self.attest_body: bytes | None = None
        self.slow_seconds = 0.0
        self.revoke_leaf = False
        self.token_kid = KID
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self.chain: list[x509.Certificate] = []
        super().__init__()

    def start(self) -> Self:
        super().start()
        root_key, ca_key = _key("root"), _key("ca")
        root = _cert("Test ITA Root CA", root_key, "Test ITA Root CA", root_key, self.now, ca=True, crl_url=None,
                     serial=1)
        ca = _cert("Test ITA Signing CA", ca_key, "Test ITA Root CA", root_key, self.now, ca=True,
                   crl_url=f"{self.url}/crl/root.crl", serial=2)
        leaf = _cert("Test ITA Token Signing", _key("leaf"), "Test ITA Signing CA", ca_key, self.now, ca=False,
                     crl_url=f"{self.url}/crl/signing.crl", serial=3)
        self.chain = [leaf, ca, root]
        return self

    def options(self, **changes: Any) -> ItaOptions:
        return ItaOptions(**{"api_key": self.api_key, "base_url": self.url, "jwks_url": f"{self.url}/certs",
                             **changes})

    @property
    def root_sha256(self) -> str:
        return hashlib.sha256(self.chain[-1].public_bytes(Encoding.DER)).hexdigest()

    # -- content ---------------------------------------------------------------------------------------------

    def jwks(self) -> bytes:
        numbers = _key("leaf").public_key().public_numbers()
        key = {"kty": "RSA", "alg": "PS384", "use": "sig", "kid": KID,
               "n": _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
               "e": _b64url(numbers.e.to_bytes(3, "big")),
               "x5c": [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in self.chain]}
        return json.dumps({"keys": [key]}).encode()

    def crl(self, which: str) -> bytes:
        issuer_key, issuer_name, revoked = (_key("root"), "Test ITA Root CA", None) if which == "root" else (
            _key("ca"), "Test ITA Signing CA", 3 if self.revoke_leaf else None)
        at = datetime.fromtimestamp(self.now, UTC)
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
                   .last_update(at - timedelta(days=1)).next_update(at + timedelta(days=30)))
        if revoked is not None:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(revoked).revocation_date(at - timedelta(hours=1))
                .build())
        return builder.sign(issuer_key, hashes.SHA384()).public_bytes(Encoding.DER)

    def token(self, quote: bytes) -> str:
        (version,) = struct.unpack_from("<H", quote, 0)
        body = _HEADER_LEN + (6 if version == 5 else 0)  # v5: body type (2) and size (4) precede the body
        tdx: dict[str, Any] = {"attester_type": "TDX", "attester_tcb_status": self.tcb_status,
                               "attester_advisory_ids": [], "tdx_is_debuggable": False}
        for claim, offset, size in _TD_CLAIMS:
            tdx[claim] = quote[body + offset : body + offset + size].hex()
        for claim, value in self.claim_overrides.items():
            if value is None:
                tdx.pop(claim, None)
            else:
                tdx[claim] = value
        iat = self.now - 5 if self.issued_at is None else self.issued_at
        claims = {"tdx": tdx, "ver": "2.0.0", "iss": "Intel Trust Authority", "jti": "test-token",
                  "iat": iat, "nbf": iat, "exp": iat + self.lifetime}
        header = {"alg": "PS384", "typ": "JWT", "kid": self.token_kid, "jku": f"{self.url}/certs"}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = _key("leaf").sign(signing_input.encode(), padding.PSS(mgf=padding.MGF1(hashes.SHA384()),
                                                                          salt_length=48), hashes.SHA384())
        if self.bad_signature:
            signature = bytes([signature[0] ^ 1]) + signature[1:]
        return f"{signing_input}.{_b64url(signature)}"

    # -- serving ---------------------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)


def _make_handler(server: ItaServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _record(self, method: str) -> None:
            with server._lock:
                server.requests.append((method, self.path, {k.lower(): v for k, v in self.headers.items()}))

        def do_GET(self) -> None:
            self._record("GET")
            if self.path == "/certs":
                self._send(200, server.jwks())
            elif self.path in ("/crl/root.crl", "/crl/signing.crl"):
                self._send(200, server.crl(self.path.split("/")[-1].split(".")[0]), "application/pkix-crl")
            else:
                self._send(404, b'{"error":"not found"}')

        def do_POST(self) -> None:
            self._record("POST")
            body = self.rfile.read(min(int(self.headers.get("Content-Length") or 0), 1 << 20))
            if server.slow_seconds and server._stopping.wait(server.slow_seconds):
                self.close_connection = True
                return
            if self.path != "/appraisal/v2/attest":
                self._send(404, b'{"error":"not found"}')
            elif self.headers.get("x-api-key") != server.api_key:
                self._send(401, b'{"error":"Unauthorized","message":"invalid api key"}')
            elif server.attest_status is not None:
                self._send(server.attest_status, b'{"error":"internal server error"}')
            elif server.attest_body is not None:
                self._send(200, server.attest_body)
            else:
                try:
                    quote = base64.b64decode(json.loads(body)["tdx"]["quote"], validate=True)
                except (ValueError, KeyError, TypeError):
                    self._send(400, b'{"error":"bad request"}')
                    return
                self._send(200, json.dumps({"token": server.token(quote)}).encode())

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            respond(self, status, body, content_type)

    return Handler
