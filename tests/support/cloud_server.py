"""Real HTTP servers on loopback for the evidence sources: the Phala Cloud attestations API, the guest agent, the
gateway and the KMS — one port, their real paths, answers shaped like the real ones.

The answers are built at test time from the Trust Center fixtures (``dataset1-{app,kms,gateway}.json``: real quotes,
event logs, vm_configs, the gateway's app-compose, the app's RA-TLS certificate chain, the gateway's Let's Encrypt
chain). What the fixtures do not hold is filled in with plain stand-ins and named as such below: the second app
instance reuses the one app quote the dataset has (in the Cloud API's newer ``tcb_info`` form, with the stand-in
``STAND_IN_APP_COMPOSE``, since the dataset has no app-compose for the app); the ACME account URI and the
certificate metadata of the guest-agent info are invented; the gateway quote also stands in for its RA-TLS quote.

Each path can be told to misbehave (``fail``): an error status, a hang past the client's timeout, malformed JSON,
an oversized body (announced, or streamed without a length), a dropped connection. ``set_json`` replaces an answer
(e.g. an app with no running instance).

Use it as a context manager::

    with DstackServer(Dataset1.load()) as server:
        fetch_attestations(client, server.dataset.app_id, server.cloud_base_url)
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal

from tests.support.fixtures import fixture_path
from tests.support.loopback import LoopbackServer, send_body

Failure = Literal["404", "500", "502", "hang", "malformed", "not-json", "oversized", "oversized-chunked", "drop"]

KMS_VERSION = "v0.5.3 (git:ca4af023e974427e4153)"
LEGACY_KMS_VERSION = "v0.3.6 (git:7c8ed9e8b4c1f3a2d5e6)"
KMS_URL = "https://kms.dstack-base-prod7.phala.network"
BASE_DOMAIN = "dstack-base-prod7.phala.network"
CHAIN_ID = 8453  # Base
ACME_ACCOUNT_URI = "https://acme-v02.api.letsencrypt.org/acme/acct/2109912345"  # stand-in
STAND_IN_APP_COMPOSE = json.dumps(
    {
        "manifest_version": 2,
        "name": "demo-app",
        "runner": "docker-compose",
        "docker_compose_file": "services:\n  demo:\n    image: nginx:stable\n",
        "kms_enabled": True,
        "gateway_enabled": True,
        "public_logs": True,
        "public_sysinfo": True,
        "no_instance_id": False,
    },
    indent=2,
)


def cloud_path(app_id: str) -> str:
    return f"/api/v1/apps/{app_id}/attestations"


INFO_PATH = "/prpc/Info"
WORKER_INFO_PATH = "/prpc/Worker.Info"
ACME_INFO_PATH = "/.dstack/acme-info"
APP_INFO_PATH = "/.dstack/app-info"
KMS_META_PATH = "/prpc/KMS.GetMeta"


def _pem_blocks(pem: str) -> list[str]:
    end = "-----END CERTIFICATE-----"
    return [block.strip() + "\n" + end + "\n" for block in pem.split(end) if block.strip()]


@dataclass(frozen=True)
class Dataset1:
    """The three per-entity fixtures of dataset1, with the values the answers are built from."""

    app: dict[str, Any]
    kms: dict[str, Any]
    gateway: dict[str, Any]

    @classmethod
    def load(cls) -> Dataset1:
        def read(entity: str) -> dict[str, Any]:
            return json.loads(fixture_path("trust-center", f"dataset1-{entity}.json").read_text())

        return cls(read("app"), read("kms"), read("gateway"))

    def entity(self, name: str) -> dict[str, Any]:
        return {"app": self.app, "kms": self.kms, "gateway": self.gateway}[name]

    def quote_hex(self, name: str) -> str:
        return self.entity(name)["quote_hex"].removeprefix("0x")

    def quote(self, name: str) -> bytes:
        return bytes.fromhex(self.quote_hex(name))

    def events(self, name: str) -> list[dict[str, Any]]:
        return self.entity(name)["eventlog"]

    def payload(self, name: str, event: str) -> str:
        return next(e["event_payload"] for e in self.events(name) if e["imr"] == 3 and e["event"] == event)

    def key_provider(self, name: str) -> dict[str, str]:
        return json.loads(bytes.fromhex(self.payload(name, "key-provider")))

    @property
    def app_id(self) -> str:
        return self.app["main_fields"]["app_id"]

    @property
    def instance_id(self) -> str:
        return self.app["main_fields"]["instance_id"]

    @property
    def kms_contract(self) -> str:
        return self.kms["main_fields"]["registry_smart_contract"].rsplit("/", 1)[1]

    @property
    def gateway_app_id(self) -> str:
        return self.kms["main_fields"]["gateway_app_id"]

    @property
    def gateway_url(self) -> str:
        return self.gateway["main_fields"]["endpoint"]

    @property
    def kms_ca_pubkey(self) -> str:
        return self.kms["main_fields"]["cert_pubkey"].removeprefix("0x")

    @property
    def kms_k256_pubkey(self) -> str:
        return self.kms["main_fields"]["wallet_pubkey"].removeprefix("0x")

    @property
    def app_cert(self) -> str:
        return self.app["main_fields"]["app_cert"]

    @property
    def gateway_tls_chain(self) -> str:
        return self.gateway["main_fields"]["app_cert"]

    def registers(self, name: str) -> dict[str, str]:
        td = self.entity(name)["td_report"]
        return {"mrtd": td["mr_td"], **{f"rtmr{i}": td[f"rt_mr{i}"] for i in range(4)}}

    # -- answers ---------------------------------------------------------------------------------------------

    def cloud_answer(self) -> dict[str, Any]:
        """``GET /api/v1/apps/{app_id}/attestations``: old-form instance, new-form instance, stopped instance."""
        return {
            "app_id": self.app_id,
            "contract_address": "0x" + self.app_id,
            "kms_info": {
                "contract_address": self.kms_contract,
                "chain_id": CHAIN_ID,
                "version": KMS_VERSION,
                "url": KMS_URL,
                "gateway_app_id": self.gateway_app_id,
                "gateway_app_url": self.gateway_url,
                "kms_type": "base",
            },
            "instances": [
                {
                    "vm_uuid": "0f7a3c1e-5b2d-4e8f-9a61-2c4d6e8f0a1b",
                    "name": "demo-app-0",
                    "instance_id": self.instance_id,
                    "status": "running",
                    "image_version": " dstack-0.5.3 ",
                    "quote": self.quote_hex("app"),
                    "eventlog": self.events("app"),
                },
                {
                    "vm_uuid": "6b1d9e2f-3a4c-4d5e-8f70-1a2b3c4d5e6f",
                    "name": "demo-app-1",
                    "status": "running",
                    "image_version": "dstack-0.5.3",
                    "quote": self.quote_hex("app"),
                    "tcb_info": {
                        **self.registers("app"),
                        "rootfs_hash": None,
                        "event_log": self.events("app"),
                        "app_compose": STAND_IN_APP_COMPOSE,
                    },
                },
                {
                    "vm_uuid": "9c8b7a6d-5e4f-4321-8abc-def012345678",
                    "name": "demo-app-2",
                    "status": "stopped",
                    "quote": None,
                    "eventlog": None,
                    "tcb_info": None,
                    "image_version": None,
                },
            ],
            "qemu_version": None,
            "kms_guest_agent_info": self.guest_agent_info("kms"),
            "gateway_guest_agent_info": self.guest_agent_info("gateway"),
        }

    def guest_agent_info(self, name: str) -> dict[str, Any]:
        """``kms_guest_agent_info`` / ``gateway_guest_agent_info`` of the Cloud API (objects, JSON-text fields)."""
        d = self.entity(name)
        app_name = json.loads(d["app_compose"])["name"]
        app_id = self.payload(name, "app-id")
        return {
            "app_id": app_id,
            "instance_id": self.payload(name, "instance-id"),
            "app_name": app_name,
            "device_id": "",
            "public_logs": True,
            "public_sysinfo": True,
            "mr_aggregated": "",
            "os_image_hash": d["vm_config"]["os_image_hash"],
            "mr_key_provider": None,
            "key_provider_info": json.dumps(self.key_provider(name)),
            "compose_hash": self.payload(name, "compose-hash"),
            "vm_config": json.dumps(d["vm_config"]),
            "tcb_info": {
                **self.registers(name),
                "rootfs_hash": None,
                "event_log": self.events(name),
                "app_compose": d["app_compose"],
            },
            "app_certificates": [
                {
                    "subject": {"common_name": app_name, "organization": None, "country": None, "state": None,
                                "locality": None},
                    "issuer": {"common_name": "Dstack App CA", "organization": "Dstack", "country": None},
                    "serial_number": "4e2bd1c3a8f0",
                    "not_before": "2025-08-14T18:24:49Z",
                    "not_after": "2035-08-12T18:24:49Z",
                    "version": "V3",
                    "fingerprint": "sha256:stand-in",
                    "signature_algorithm": "ecdsa-with-SHA256",
                    "sans": None,
                    "is_ca": False,
                    "position_in_chain": 0,
                    "quote": self.quote_hex(name),
                    "app_id": app_id,
                    "cert_usage": "ra-tls",
                },
                {
                    "subject": {"common_name": "Dstack App CA", "organization": "Dstack", "country": None,
                                "state": None, "locality": None},
                    "issuer": {"common_name": "Dstack KMS CA", "organization": "Dstack", "country": None},
                    "serial_number": "01",
                    "not_before": "1975-01-01T00:00:00Z",
                    "not_after": "2035-09-01T15:53:16Z",
                    "version": "V3",
                    "fingerprint": "sha256:stand-in-ca",
                    "signature_algorithm": "ecdsa-with-SHA256",
                    "sans": [],
                    "is_ca": True,
                    "position_in_chain": 1,
                    "quote": None,
                    "app_id": None,
                    "cert_usage": None,
                },
            ],
        }

    def info_answer(self) -> dict[str, Any]:
        """The app's guest agent ``/prpc/Info`` (dstack ≥ 0.5): stringified ``tcb_info``, key provider, vm_config."""
        main = self.app["main_fields"]
        tcb = {
            **self.registers("app"),
            "mr_aggregated": main["mr_aggregated"],
            "os_image_hash": main["os_image_hash"],
            "compose_hash": main["compose_hash"],
            "device_id": main["device_id"],
            "event_log": self.events("app"),
            "app_compose": STAND_IN_APP_COMPOSE,
        }
        return {
            "app_id": self.app_id,
            "instance_id": self.instance_id,
            "app_cert": self.app_cert,
            "tcb_info": json.dumps(tcb),
            "app_name": "demo-app",
            "device_id": main["device_id"],
            "mr_aggregated": main["mr_aggregated"],
            "os_image_hash": main["os_image_hash"],
            "key_provider_info": json.dumps(self.key_provider("app")),
            "compose_hash": main["compose_hash"],
            "vm_config": json.dumps(self.app["vm_config"]),
        }

    def worker_info_answer(self) -> dict[str, Any]:
        """``/prpc/Worker.Info`` (dstack < 0.5): fewer fields, ``rootfs_hash`` in the TCB info."""
        tcb = {
            "rootfs_hash": self.app["main_fields"]["os_image_hash"],
            **self.registers("app"),
            "event_log": self.events("app"),
            "app_compose": STAND_IN_APP_COMPOSE,
        }
        return {
            "app_id": self.app_id,
            "instance_id": self.instance_id,
            "app_cert": self.app_cert,
            "tcb_info": json.dumps(tcb),
            "app_name": "demo-app",
            "public_logs": True,
            "public_sysinfo": False,
        }

    def acme_info_answer(self, *, legacy_fields: bool = True) -> dict[str, Any]:
        """``/.dstack/acme-info``; ``legacy_fields`` adds ``hist_keys``, ``active_cert`` and ``base_domain``."""
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        leaf = x509.load_pem_x509_certificate(_pem_blocks(self.gateway_tls_chain)[0].encode())
        spki = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo).hex()
        quote = json.dumps({"quote": self.quote_hex("gateway"), "event_log": json.dumps(self.events("gateway"))})
        answer: dict[str, Any] = {
            "account_uri": ACME_ACCOUNT_URI,
            "quoted_hist_keys": [{"public_key": spki, "quote": quote}],
            "account_quote": quote,
        }
        if legacy_fields:
            answer.update({"hist_keys": [spki], "active_cert": self.gateway_tls_chain, "base_domain": BASE_DOMAIN})
        return answer

    def gateway_app_info_answer(self) -> dict[str, Any]:
        """``/.dstack/app-info``: the ``/prpc/Info`` shape with the gateway's values (its TLS chain as app_cert)."""
        d = self.gateway
        tcb = {
            **self.registers("gateway"),
            "mr_aggregated": "",
            "os_image_hash": d["vm_config"]["os_image_hash"],
            "compose_hash": self.payload("gateway", "compose-hash"),
            "device_id": "",
            "event_log": self.events("gateway"),
            "app_compose": d["app_compose"],
        }
        return {
            "app_id": self.payload("gateway", "app-id"),
            "instance_id": "",
            "app_cert": self.gateway_tls_chain,
            "tcb_info": json.dumps(tcb),
            "app_name": "base-gateway",
            "device_id": "",
            "mr_aggregated": "",
            "os_image_hash": d["vm_config"]["os_image_hash"],
            "key_provider_info": json.dumps(self.key_provider("gateway")),
            "compose_hash": self.payload("gateway", "compose-hash"),
            "vm_config": json.dumps(d["vm_config"]),
        }

    def kms_meta_answer(self) -> dict[str, Any]:
        """``/prpc/KMS.GetMeta``: the KMS CA certificate (the root of the app's chain), keys, bootstrap attestation."""
        return {
            "ca_cert": _pem_blocks(self.app_cert)[-1],
            "allow_any_upgrade": False,
            "k256_pubkey": self.kms_k256_pubkey,
            "bootstrap_info": {
                "ca_pubkey": self.kms_ca_pubkey,
                "k256_pubkey": self.kms_k256_pubkey,
                "quote": self.quote_hex("kms"),
                "eventlog": json.dumps(self.events("kms")).encode().hex(),
            },
            "is_dev": False,
            "gateway_app_id": self.gateway_app_id,
            "kms_contract_address": self.kms_contract,
            "chain_id": CHAIN_ID,
        }

    def routes(self) -> dict[str, dict[str, Any]]:
        return {
            cloud_path(self.app_id): self.cloud_answer(),
            INFO_PATH: self.info_answer(),
            WORKER_INFO_PATH: self.worker_info_answer(),
            ACME_INFO_PATH: self.acme_info_answer(),
            APP_INFO_PATH: self.gateway_app_info_answer(),
            KMS_META_PATH: self.kms_meta_answer(),
        }


@dataclass
class _Route:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False


@dataclass
class _Failure:
    mode: Failure
    remaining: int | None


class DstackServer(LoopbackServer):
    """The dataset's answers at their real paths on 127.0.0.1 (random port), served from a background thread."""

    thread_name = "dstack-sources-test-server"

    def __init__(self, dataset: Dataset1, *, hang_seconds: float = 5.0, oversize_bytes: int = 2 * 1024 * 1024):
        self.dataset = dataset
        self.hang_seconds = hang_seconds
        self.oversize_bytes = oversize_bytes
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._routes: dict[str, _Route] = {}
        self._failures: dict[str, _Failure] = {}
        for path, answer in dataset.routes().items():
            self.set_json(path, answer)
        super().__init__()

    @property
    def cloud_base_url(self) -> str:
        return self.url + "/api/v1"

    def body(self, path: str) -> bytes:
        """The bytes served at ``path`` (what a user would save to a file)."""
        with self._lock:
            return self._routes[path].body

    def set_json(self, path: str, answer: Any, status: int = 200) -> None:
        self.set_body(path, json.dumps(answer).encode(), status=status,
                      headers={"Content-Type": "application/json"})

    def set_body(self, path: str, body: bytes, *, status: int = 200, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self._routes[path] = _Route(status, body, dict(headers or {}))

    def fail(self, path: str, mode: Failure, times: int | None = None) -> None:
        with self._lock:
            self._failures[path] = _Failure(mode, times)

    def _take(self, path: str) -> tuple[_Route | None, Failure | None]:
        with self._lock:
            self.counts[path] += 1
            failure = self._failures.get(path)
            if failure is not None and failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    del self._failures[path]
            return self._routes.get(path), failure.mode if failure else None

    def _answer(self, route: _Route | None, failure: Failure | None) -> _Route:
        json_type = {"Content-Type": "application/json"}
        if failure == "404" or route is None:
            return _Route(404, b'{"detail":"Not Found"}', json_type)
        if failure in ("500", "502"):
            return _Route(int(failure), b'{"detail":"Internal Server Error"}', json_type)
        if failure == "malformed":
            return _Route(200, route.body[: len(route.body) // 2], json_type)
        if failure == "not-json":
            return _Route(200, b"<html><body>Bad Gateway</body></html>", {"Content-Type": "text/html"})
        if failure in ("oversized", "oversized-chunked"):
            body = b'{"padding":"' + b"x" * self.oversize_bytes + b'"}'
            return _Route(200, body, json_type, chunked=failure == "oversized-chunked")
        return route

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = urllib.parse.urlsplit(self.path).path
                route, failure = server._take(path)
                if failure == "drop":
                    self.close_connection = True
                    return
                if failure == "hang":
                    server._stopping.wait(server.hang_seconds)
                    self.close_connection = True
                    return
                try:
                    self._write(server._answer(route, failure))
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _write(self, route: _Route) -> None:
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                send_body(self, route.body, 64 * 1024 if route.chunked else None)

        return Handler
