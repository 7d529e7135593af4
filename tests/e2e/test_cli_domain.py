"""The gateway's domain phase end to end: `verify` of a gateway's acme-info with real DNS, HTTPS and crt.sh servers
on loopback, then the offline re-run of the report from what it recorded.

The gateway is synthetic: its account quote binds the ACME account, a key quote binds its TLS key (zt-cert), both
from one synthetic platform whose collateral and root the test passes; the TLS chain comes from a test web PKI.
"""

from __future__ import annotations

import json
import ssl
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from dstack_inspector.cli import main
from dstack_verifier.domain import zt_cert_report_data
from dstack_verifier.net import NetClient, ReplayClient
from dstack_verifier.ratls import acme_report_data
from dstack_verifier.synth import make_evidence

from tests.support.crtsh_server import CrtShServer
from tests.support.dns_server import DnsServer
from tests.support.loopback import LoopbackServer
from tests.support.web_pki import DOMAIN, NOW, Pki

URI = "https://acme-v02.api.letsencrypt.org/acme/acct/2204483175"
AT = int(NOW.timestamp())
PINNED = f"letsencrypt.org; accounturi={URI}"


def pem(*certs: Any) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


class Gateway:
    """A synthetic gateway: quotes, collateral, TLS chain and the acme-info that publishes them."""

    def __init__(self) -> None:
        self.pki = Pki()
        self.leaf = self.pki.leaf(self.pki.tee_key)
        account = make_evidence(seed="gateway", now=AT, report={"report_data": acme_report_data(URI)})
        key = make_evidence(seed="gateway", now=AT, report={"report_data": zt_cert_report_data(self.pki.tee_spki)})
        self.account, self.key, self.collateral = account.quote, key.quote, account.collateral
        self.root_ca = account.root_ca_der

    def acme_info(self, *, active_cert: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "account_uri": URI,
            "account_quote": json.dumps({"quote": self.account.hex()}),
            "quoted_hist_keys": [{"public_key": self.pki.tee_spki.hex(),
                                  "quote": json.dumps({"quote": self.key.hex()})}],
        }
        if active_cert:
            doc["active_cert"] = pem(self.leaf, self.pki.inter)
        return doc


@pytest.fixture
def gateway() -> Gateway:
    return Gateway()


def write_inputs(tmp_path: Path, gw: Gateway, *, active_cert: bool = True) -> dict[str, Path]:
    paths = {name: tmp_path / name for name in ("acme-info.json", "collateral.json", "root.der", "roots.pem")}
    paths["acme-info.json"].write_text(json.dumps(gw.acme_info(active_cert=active_cert)))
    paths["collateral.json"].write_text(json.dumps(gw.collateral))
    paths["root.der"].write_bytes(gw.root_ca)
    paths["roots.pem"].write_text(pem(gw.pki.root))
    return paths


def run_json(capsys, *argv: object) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    code = main([str(a) for a in argv] + ["--json"])
    captured = capsys.readouterr()
    assert captured.out, captured.err
    return code, json.loads(captured.out)


def domain_checks(report: dict) -> dict[str, dict]:
    return {c["id"]: c for c in report["checks"] if c["phase"] == "domain" or c["id"] == "binding.report_data"}


def test_gateway_domain_phase_passes_and_replays_offline(capsys, tmp_path: Path, gateway: Gateway) -> None:
    p = write_inputs(tmp_path, gateway)
    zone = {DOMAIN: {"CAA": [(0, "issue", PINNED), (0, "issuewild", PINNED)]}}
    with DnsServer(zone) as dns, CrtShServer() as crtsh:
        crtsh.add(gateway.leaf, precert=True)
        host, port = dns.address
        code, report = run_json(
            capsys, "verify", p["acme-info.json"], "--collateral", p["collateral.json"], "--root-ca", p["root.der"],
            "--at", AT, "--domain", DOMAIN, "--dns-server", f"{host}:{port}", "--tls-roots", p["roots.pem"],
            "--ct-log", "--crtsh-url", crtsh.url, "--output", tmp_path / "r.json")
    checks = domain_checks(report)
    assert {k: v["status"] for k, v in checks.items()} == {
        "binding.report_data": "pass", "domain.tee_controlled_key": "pass", "domain.certificate_key": "pass",
        "domain.dns_caa": "pass", "domain.ct_log": "pass"}, {k: v["summary"] for k, v in checks.items()}
    assert set(report["entities"]) == {"gateway"}
    assert code == 0 and report["verdict"] == "pass"
    assert report["policy"]["domain"]["domain"] == DOMAIN
    recording = [i for i in report["inputs"] if i["role"] == "recording"]
    assert len(recording) == 1  # the DNS answers and the crt.sh pages, for the re-run

    # Offline, the servers gone: the same checks from the recorded answers (the report recorded the TLS roots).
    again_code, again = run_json(capsys, "verify", tmp_path / "r.json", "--offline", "--root-ca", p["root.der"],
                                 "--at", AT)
    assert [(c["id"], c["status"]) for c in again["checks"]] == [(c["id"], c["status"]) for c in report["checks"]]
    assert again_code == code

    # A report is input like any other: recorded domain options that are not what a run writes are refused.
    doc = json.loads((tmp_path / "r.json").read_text())
    doc["policy"]["domain"]["crtsh_url"] = "file:///etc/passwd"
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    assert main(["verify", str(tmp_path / "bad.json"), "--offline", "--root-ca", str(p["root.der"])]) == 2
    err = capsys.readouterr().err
    assert "malformed domain options" in err and "policy.domain" in err and "Traceback" not in err


def test_caa_without_the_account_fails_the_gateway(capsys, tmp_path: Path, gateway: Gateway) -> None:
    p = write_inputs(tmp_path, gateway)
    with DnsServer({DOMAIN: {"CAA": [(0, "issue", "letsencrypt.org")]}}) as dns:
        host, port = dns.address
        code, report = run_json(
            capsys, "verify", p["acme-info.json"], "--collateral", p["collateral.json"], "--root-ca", p["root.der"],
            "--at", AT, "--domain", DOMAIN, "--dns-server", f"{host}:{port}", "--tls-roots", p["roots.pem"])
    checks = domain_checks(report)
    assert checks["domain.dns_caa"]["status"] == "fail"
    assert checks["domain.ct_log"]["status"] == "skip" and "--ct-log" in checks["domain.ct_log"]["summary"]
    assert code == 1 and report["verdict"] == "fail"


def test_a_foreign_tls_key_fails_certificate_key(capsys, tmp_path: Path, gateway: Gateway) -> None:
    p = write_inputs(tmp_path, gateway)
    doc = json.loads(p["acme-info.json"].read_text())
    doc["active_cert"] = pem(gateway.pki.leaf(gateway.pki.foreign_key), gateway.pki.inter)
    p["acme-info.json"].write_text(json.dumps(doc))
    code, report = run_json(
        capsys, "verify", p["acme-info.json"], "--collateral", p["collateral.json"], "--root-ca", p["root.der"],
        "--at", AT, "--domain", DOMAIN, "--tls-roots", p["roots.pem"], "--offline")
    checks = domain_checks(report)
    assert checks["domain.certificate_key"]["status"] == "fail"
    assert checks["domain.dns_caa"]["status"] == "skip"  # offline: no DNS
    assert code == 1


class _TlsServer(LoopbackServer):
    """An HTTPS server presenting the gateway's chain; answers every GET with 404."""

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_error(404)

        return Handler


def tls_server(tmp_path: Path, gateway: Gateway) -> _TlsServer:
    """An HTTPS server on loopback presenting the gateway's TLS chain (leaf and issuing CA)."""
    key_pem = gateway.pki.tee_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption())
    (tmp_path / "chain.pem").write_text(pem(gateway.leaf, gateway.pki.inter))
    (tmp_path / "key.pem").write_bytes(key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    server = _TlsServer()
    server.ssl_context = context
    return server


def test_served_chain_is_read_from_the_tls_handshake_and_replayed(tmp_path: Path, gateway: Gateway) -> None:
    server = tls_server(tmp_path, gateway)
    with server, NetClient() as client:
        host, port = server.url.removeprefix("https://").split(":")
        chain = client.tls_chain(host, int(port), 5.0)
    ders = [c.public_bytes(serialization.Encoding.DER) for c in (gateway.leaf, gateway.pki.inter)]
    assert chain == ders
    assert client.recorder[-1].method == "TLS"
    assert ReplayClient(client.recorder).tls_chain(host, int(port), 5.0) == ders


def test_gateway_without_active_cert_reads_the_chain_from_its_url(tmp_path: Path, gateway: Gateway) -> None:
    """The Cloud flow's shape: acme-info from the gateway URL, the chain from a TLS handshake with it."""
    from dstack_verifier.domain_phase import DomainOptions, GatewayEndpoints
    from dstack_verifier.domain_phase import domain_checks as run_domain
    from dstack_verifier.sources.gateway import parse_acme_info

    server = tls_server(tmp_path, gateway)
    acme = parse_acme_info(json.dumps(gateway.acme_info(active_cert=False)).encode(), "acme-info")
    options = DomainOptions(domain=DOMAIN, trust_roots=[gateway.pki.root])
    with server, NetClient() as client:
        result = run_domain(GatewayEndpoints(acme=acme, url=server.url), gateway_quote_ok=True,
                            verify_key_quote=lambda raw: True, options=options, net=client, now=AT)
    by_id = {c.id: c for c in result.checks}
    assert by_id["domain.certificate_key"].status.value == "pass", by_id["domain.certificate_key"].summary
    assert by_id["domain.certificate_key"].details["served_chain_from"].startswith("TLS handshake with 127.0.0.1")
