"""An NRAS-like HTTP server on loopback for tests.

``POST /v3/attest/gpu`` takes ``{nonce, evidence_list, arch}`` and answers a detached EAT signed with a test ES384
key: ``[["JWT", overall], {"GPU-0": token, ...}]``, the overall token listing each GPU token's SHA-256 in
``submods``, as NVIDIA's service does. ``GET /.well-known/jwks.json`` serves the key with an x5c chain (signing leaf,
intermediate) under a test root CA that, like NVIDIA's, is not in the set.

Knobs (set before the request): ``status`` (answer that HTTP status instead), ``slow_seconds``, ``overall_result``,
``gpu_claims`` (merged into every GPU token), ``echo_nonce`` (put this nonce in the tokens), ``issued_at`` (the
tokens' iat/nbf; exp is an hour later), ``tamper`` ("bad-signature", "wrong-key", "unknown-kid", "bad-digest",
"alg-none", "drop-gpu", "not-json"), ``jwks_status``. Requests are counted per path.

    with NrasServer(now=NOW) as nras:
        check_gpu_attestation(evidence, client=client, now=NOW, nras_url=nras.attest_url, jwks_url=nras.jwks_url)
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tests.support.loopback import LoopbackServer
from tests.support.web_pki import build_cert

Tamper = Literal["bad-signature", "wrong-key", "unknown-kid", "bad-digest", "alg-none", "drop-gpu", "not-json"]
ATTEST_PATH = "/v3/attest/gpu"
JWKS_PATH = "/.well-known/jwks.json"
KID = "nv-eat-kid-test-0001"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_jwt(claims: dict[str, Any], key: ec.EllipticCurvePrivateKey, header: dict[str, Any]) -> str:
    """A compact JWS with the JOSE ES384 signature form (r || s, 48 bytes each)."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA384())))
    return f"{signing_input}.{b64url(r.to_bytes(48, 'big') + s.to_bytes(48, 'big'))}"


def new_p384() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


class NrasPki:
    """Root → intermediate → signing leaf, P-384, valid around `now`."""

    def __init__(self, now: datetime) -> None:
        self.root_key, self.inter_key, self.signing_key = new_p384(), new_p384(), new_p384()
        self.root = build_cert("Test NVIDIA Attestation Service CA", self.root_key, None, self.root_key, ca=True,
                               not_before=now - timedelta(days=900), not_after=now + timedelta(days=900))
        self.inter = build_cert("Test NRAS GPU Intermediate", self.inter_key, self.root, self.root_key, ca=True,
                                not_before=now - timedelta(days=300), not_after=now + timedelta(days=300))
        self.leaf = build_cert("Test NRAS GPU GH100", self.signing_key, self.inter, self.inter_key, ca=False,
                               not_before=now - timedelta(days=1), not_after=now + timedelta(days=1))

    def jwk(self) -> dict[str, Any]:
        numbers = self.signing_key.public_key().public_numbers()
        der = [c.public_bytes(serialization.Encoding.DER) for c in (self.leaf, self.inter)]
        return {"kty": "EC", "crv": "P-384", "kid": KID, "x": b64url(numbers.x.to_bytes(48, "big")),
                "y": b64url(numbers.y.to_bytes(48, "big")), "x5c": [base64.b64encode(d).decode() for d in der]}


class NrasServer(LoopbackServer):
    thread_name = "nras-test-server"

    def __init__(self, *, now: datetime) -> None:
        self.pki = NrasPki(now)
        self.other_key = new_p384()
        self.issued_at = int(now.timestamp()) - 60
        self.status: int | None = None
        self.jwks_status: int | None = None
        self.slow_seconds = 0.0
        self.overall_result: Any = True
        self.gpu_claims: dict[str, Any] = {}
        self.echo_nonce: str | None = None
        self.tamper: Tamper | None = None
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        super().__init__()

    @property
    def attest_url(self) -> str:
        return self.url + ATTEST_PATH

    @property
    def jwks_url(self) -> str:
        return self.url + JWKS_PATH

    # -- answers ---------------------------------------------------------------------------------------------

    def _sign(self, claims: dict[str, Any]) -> str:
        key = self.other_key if self.tamper == "wrong-key" else self.pki.signing_key
        kid = "nv-eat-kid-unpublished" if self.tamper == "unknown-kid" else KID
        return sign_jwt(claims, key, {"kid": kid, "alg": "ES384"})

    def attest(self, request: dict[str, Any]) -> bytes:
        nonce = self.echo_nonce or request["nonce"]
        times = {"iss": self.url, "iat": self.issued_at, "nbf": self.issued_at, "exp": self.issued_at + 3600,
                 "eat_nonce": nonce}
        gpus = {}
        for index, item in enumerate(request["evidence_list"]):
            claims = {**times, "hwmodel": "GH100", "ueid": str(10**20 + index), "oemid": "5703", "secboot": True,
                      "dbgstat": "disabled", "measres": "success", "x-nvidia-gpu-driver-version": "550.127.05",
                      "x-nvidia-gpu-vbios-version": "96.00.9F.00.04", "x-nvidia-gpu-arch-check": True,
                      "x-nvidia-gpu-attestation-report-nonce-match": True,
                      "x-nvidia-gpu-attestation-report-signature-verified": True,
                      "x-nvidia-attestation-warning": None, "evidence_sha256":
                      hashlib.sha256(base64.b64decode(item["evidence"])).hexdigest(), **self.gpu_claims}
            gpus[f"GPU-{index}"] = self._sign(claims)
        submods = {name: ["DIGEST", ["SHA-256", hashlib.sha256(token.encode()).hexdigest()]]
                   for name, token in gpus.items()}
        if self.tamper == "bad-digest":
            submods["GPU-0"][1][1] = "00" * 32
        if self.tamper == "drop-gpu":
            gpus.pop(f"GPU-{len(gpus) - 1}")
            submods.pop(f"GPU-{len(submods) - 1}")
        overall = {**times, "sub": "NVIDIA-PLATFORM-ATTESTATION", "x-nvidia-ver": "2.0",
                   "x-nvidia-overall-att-result": self.overall_result, "submods": submods}
        token = self._sign(overall)
        if self.tamper == "bad-signature":
            head, payload, sig = token.split(".")
            raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
            raw[10] ^= 1
            token = f"{head}.{payload}.{b64url(bytes(raw))}"
        if self.tamper == "alg-none":
            token = f"{b64url(json.dumps({'alg': 'none', 'kid': KID}).encode())}.{token.split('.')[1]}."
        if self.tamper == "not-json":
            return b"<html>gateway error</html>"
        return json.dumps([["JWT", token], gpus]).encode()

    def jwks(self) -> bytes:
        return json.dumps({"keys": [self.pki.jwk()]}).encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)


def _make_handler(server: NrasServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _wait(self) -> None:
            deadline = time.monotonic() + server.slow_seconds
            while time.monotonic() < deadline and not server._stopping.is_set():
                time.sleep(0.02)

        def do_POST(self) -> None:
            with server._lock:
                server.counts[self.path] += 1
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self._wait()
            if self.path != ATTEST_PATH:
                return self._answer(404, b'{"error":"not found"}')
            if server.status is not None:
                return self._answer(server.status, b'{"errorCode":500,"message":"internal error"}')
            self._answer(200, server.attest(json.loads(body)))

        def do_GET(self) -> None:
            with server._lock:
                server.counts[self.path] += 1
            if self.path != JWKS_PATH:
                return self._answer(404, b'{"error":"not found"}')
            if server.jwks_status is not None:
                return self._answer(server.jwks_status, b"{}")
            self._answer(200, server.jwks())

    return Handler
