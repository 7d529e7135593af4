"""A saved Phala Cloud attestations answer: three entities verified from one file, and re-run from the report."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from dstack_inspector.cli import main

from tests.support.cloud_server import Dataset1


def run_json(capsys, *argv: object) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    code = main([str(a) for a in argv] + ["--json"])
    return code, json.loads(capsys.readouterr().out)


def test_saved_cloud_answer_verifies_three_entities(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DSTACK_INSPECTOR_CACHE_DIR", str(tmp_path / "cache"))
    answer = tmp_path / "attestations.json"
    answer.write_text(json.dumps(Dataset1.load().cloud_answer()))
    code, report = run_json(capsys, "verify", answer, "--offline", "--output", tmp_path / "r.json")
    assert set(report["entities"]) == {"app", "kms", "gateway"}
    by_entity: dict[str, dict[str, dict]] = {}
    for c in report["checks"]:
        by_entity.setdefault(c["entity"], {})[c["id"]] = c
    for entity in ("app", "kms", "gateway"):
        checks = by_entity[entity]
        # Every entity's event log is replayed, the KMS's and gateway's too (the Trust Center skips those).
        assert checks["eventlog.replay"]["status"] == "pass", (entity, checks["eventlog.replay"])
        assert checks["eventlog.rtmr3_payloads"]["status"] == "pass"
        assert checks["hardware.quote_signature"]["status"] == "pass"
    # dataset1's KMS compose is a placeholder (its README says so): one entity fails, the others still verify.
    assert by_entity["kms"]["source.compose_hash"]["status"] == "fail"
    assert by_entity["gateway"]["source.compose_hash"]["status"] == "pass"
    assert code == 1 and report["verdict"] == "fail"
    assert [i["role"] for i in report["inputs"]] == ["cloud-attestations"]

    # The report re-runs offline from the answer it recorded, with the same checks.
    code_again, again = run_json(capsys, "verify", tmp_path / "r.json", "--offline")
    assert code_again == code
    assert [(c["entity"], c["id"], c["status"]) for c in again["checks"]] == \
        [(c["entity"], c["id"], c["status"]) for c in report["checks"]]


def test_a_cloud_answer_is_verified_on_its_own(capsys, tmp_path: Path) -> None:
    answer = tmp_path / "attestations.json"
    answer.write_text(json.dumps(Dataset1.load().cloud_answer()))
    quote = tmp_path / "q.hex"
    quote.write_text(Dataset1.load().quote_hex("app"))
    assert main(["verify", str(answer), str(quote), "--offline"]) == 2
    assert "verified on its own" in capsys.readouterr().err


def test_app_id_online_then_offline_replay(capsys, tmp_path: Path, monkeypatch) -> None:
    from tests.support.cloud_server import ACME_ACCOUNT_URI, BASE_DOMAIN, DstackServer, cloud_path
    from tests.support.dns_server import DnsServer
    from tests.support.rpc_node import RpcNode

    monkeypatch.setenv("DSTACK_INSPECTOR_CACHE_DIR", str(tmp_path / "cache"))
    dataset = Dataset1.load()
    pinned = f"letsencrypt.org; accounturi={ACME_ACCOUNT_URI}"
    with DstackServer(dataset) as server, DnsServer({BASE_DOMAIN: {"CAA": [(0, "issue", pinned)]}}) as dns, \
            RpcNode() as node:  # the Base node of the KMS contract the answer names
        answer = dataset.cloud_answer()
        answer["kms_info"]["gateway_app_url"] = server.url  # the gateway's endpoints are this server's
        answer["kms_info"]["url"] = server.url  # KMS.GetMeta is asked of this server too
        server.set_json(cloud_path(dataset.app_id), answer)
        # The PCCS is the same loopback server, which has no collateral: the collateral checks are errors.
        code, report = run_json(capsys, "verify", "--app-id", dataset.app_id, "--cloud-url", server.cloud_base_url,
                                "--pccs-url", server.url, "--no-cache", "--output", tmp_path / "r.json",
                                "--domain", BASE_DOMAIN, "--dns-server", "{}:{}".format(*dns.address),
                                "--agent-url", server.url, "--rpc-url", node.url)
    assert set(report["entities"]) == {"app", "kms", "gateway"}
    assert report["inputs"][0]["role"] == "cloud-attestations"
    assert report["inputs"][0]["name"].startswith(server.cloud_base_url)
    online = {(c["entity"], c["id"]): c for c in report["checks"]}
    assert online[("app", "eventlog.replay")]["status"] == "pass"
    assert online[("app", "hardware.collateral_signatures")]["status"] == "error"
    # The gateway's acme-info came from its URL and its account quote is the gateway's quote; the account URI is
    # the test server's stand-in, so the quote does not bind it: the binding and the TEE-controlled key fail.
    assert online[("gateway", "binding.report_data")]["status"] == "fail"
    assert "acme-account" in online[("gateway", "binding.report_data")]["summary"]
    assert online[("gateway", "domain.tee_controlled_key")]["status"] == "fail"
    assert online[("gateway", "domain.dns_caa")]["status"] == "pass"
    assert online[("gateway", "source.gateway_app_id")]["status"] == "pass"
    assert online[("app", "source.kms_key_provider")]["status"] == "warn"
    # The app's /prpc/Info came from its guest agent: its vm_config and RA-TLS chain complete the Cloud answer.
    assert online[("app", "binding.report_data")]["status"] == "pass"
    assert "vm_config" in report["entities"]["app"]
    # The answer names its KMS contract on Base: the registry was read (this node has no such contract).
    assert report["policy"]["onchain"]["kms_contract"] == dataset.kms_contract
    assert report["policy"]["endpoints"] == {"agent_url": server.url}  # a re-run asks the same guest agent
    assert online[("app", "source.onchain_registry")]["status"] in ("fail", "error")
    # Offline, from the recorded answers, with the servers gone: the same checks, collateral aside.
    code_again, again = run_json(capsys, "verify", tmp_path / "r.json", "--offline")
    offline = {(c["entity"], c["id"]): c["status"] for c in again["checks"]}
    collateral = {"hardware.collateral_signatures", "hardware.revocation", "hardware.tcb_status",
                  "hardware.collateral_freshness", "hardware.reference_engine"}
    assert {k: v for k, v in offline.items() if k[1] not in collateral} == \
        {k: c["status"] for k, c in online.items() if k[1] not in collateral}
    assert code in (1, 3) and code_again == code


def test_gateway_down_is_one_failed_check(capsys, tmp_path: Path, monkeypatch) -> None:
    from tests.support.cloud_server import ACME_INFO_PATH, DstackServer, cloud_path

    monkeypatch.setenv("DSTACK_INSPECTOR_CACHE_DIR", str(tmp_path / "cache"))
    dataset = Dataset1.load()
    with DstackServer(dataset) as server:
        answer = dataset.cloud_answer()
        answer["kms_info"]["gateway_app_url"] = server.url
        answer["kms_info"]["url"] = server.url  # KMS.GetMeta is asked of this server too
        answer["kms_info"]["chain_id"] = None  # hosted governance: no node to ask
        server.set_json(cloud_path(dataset.app_id), answer)
        server.fail(ACME_INFO_PATH, "500")
        code, report = run_json(capsys, "verify", "--app-id", dataset.app_id, "--cloud-url", server.cloud_base_url,
                                "--pccs-url", server.url, "--no-cache")
    checks = {(c["entity"], c["id"]): c for c in report["checks"]}
    tee = checks[("gateway", "domain.tee_controlled_key")]
    assert tee["status"] == "error" and "500" in tee["summary"]
    # The gateway is still verified from the Cloud answer's guest-agent info, and so are the others.
    assert checks[("gateway", "eventlog.replay")]["status"] == "pass"
    assert checks[("app", "eventlog.replay")]["status"] == "pass"
    assert code in (1, 3)


def test_app_id_unknown_and_server_down(capsys, tmp_path: Path) -> None:
    from tests.support.cloud_server import DstackServer

    with DstackServer(Dataset1.load()) as server:
        assert main(["verify", "--app-id", "00" * 20, "--cloud-url", server.cloud_base_url]) == 2
        assert "not found" in capsys.readouterr().err
        base = server.cloud_base_url
    assert main(["verify", "--app-id", "00" * 20, "--cloud-url", base]) == 3  # nothing listens any more
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "network error" in err


def test_a_trust_center_page_address_gives_the_app_id(capsys, tmp_path: Path) -> None:
    """Reviewers often start from a Trust Center page: its address stands for the app id it shows."""
    from tests.support.cloud_server import DstackServer, cloud_path

    dataset = Dataset1.load()
    page = f"https://trust.phala.com/app/{dataset.app_id.upper()}/0f7a3c1e?selected=app-cpu"
    with DstackServer(dataset) as server:
        answer = dataset.cloud_answer()
        answer["kms_info"].update(gateway_app_url=server.url, url=server.url, chain_id=None)  # nothing else asked
        server.set_json(cloud_path(dataset.app_id), answer)  # the only Cloud answer the server has
        code, report = run_json(capsys, "verify", "--app-id", page, "--cloud-url", server.cloud_base_url,
                                "--pccs-url", server.url, "--no-cache", "--agent-url", server.url)
    assert report["entities"]["app"]["app_info"]["app_id"] == dataset.app_id, code
    for bad in ("https://trust.phala.com/builders/acme", "app d722"):
        assert main(["verify", "--app-id", bad, "--cloud-url", "http://127.0.0.1:9"]) == 2
        assert "or a Trust Center page's address" in capsys.readouterr().err


def test_legacy_answer_is_not_passed_as_the_trust_center_stubs_would(capsys, tmp_path: Path) -> None:
    from tests.support.cloud_server import LEGACY_KMS_VERSION

    answer = Dataset1.load().cloud_answer()
    answer["kms_info"]["version"] = LEGACY_KMS_VERSION
    del answer["kms_guest_agent_info"], answer["gateway_guest_agent_info"]
    path = tmp_path / "legacy.json"
    path.write_text(json.dumps(answer))
    code, report = run_json(capsys, "verify", path, "--offline")
    stubs = {c["entity"]: c for c in report["checks"] if c["id"] == "hardware.entity_evidence"}
    assert set(stubs) == {"kms", "gateway"}
    for entity, check in stubs.items():
        assert check["status"] == "skip" and "legacy stub" in check["summary"] and entity in check["summary"]
        assert check["details"]["legacy_stub"] is True
    assert set(report["entities"]) == {"app"}
    assert report["verdict"] in ("incomplete", "fail") and code in (1, 3)


def test_mask_hides_the_compose_files_of_the_data_objects(capsys, tmp_path: Path) -> None:
    answer = tmp_path / "attestations.json"
    answer.write_text(json.dumps(Dataset1.load().cloud_answer()))
    _, plain = run_json(capsys, "verify", answer, "--offline")
    _, masked = run_json(capsys, "verify", answer, "--offline", "--mask")
    gateway = next(o for o in masked["data_objects"] if o["id"] == "gateway-code")
    assert gateway["fields"]["masked"] is True
    assert '"docker_compose_file":"[MASKED]"' in gateway["fields"]["compose_file"]
    original = next(o for o in plain["data_objects"] if o["id"] == "gateway-code")
    assert "[MASKED]" not in original["fields"]["compose_file"]
    assert [c["status"] for c in masked["checks"]] == [c["status"] for c in plain["checks"]]
    # Nowhere in the masked report, in clear or in base64 (the recorded evidence), is a compose file left.
    composes = [doc["docker_compose_file"] for o in plain["data_objects"] if o["fields"].get("compose_file")
                for doc in [json.loads(o["fields"]["compose_file"])] if doc.get("docker_compose_file")]
    lines = [max(compose.splitlines(), key=len) for compose in composes]  # a distinctive line of each
    assert lines and not any(line in json.dumps(masked) for line in lines)
    # The unmasked report's recorded evidence holds them (a JSON string inside the Cloud answer, in base64).
    recorded = " ".join(base64.b64decode(i["content_b64"]).decode("utf-8", "replace") for i in plain["inputs"])
    assert all(json.dumps(line)[1:-1] in recorded for line in lines)
    assert all(i["content_b64"] is None and len(i["sha256"]) == 64 for i in masked["inputs"])
    assert masked["policy"]["masked"] is True and "masked" not in plain["policy"]
    # Such a report is a summary to share: re-running it says what is missing.
    masked_file = tmp_path / "masked.json"
    masked_file.write_text(json.dumps(masked))
    assert main(["verify", str(masked_file), "--offline"]) == 2
    assert "was not recorded in the report" in capsys.readouterr().err


def test_a_gateway_whose_tls_does_not_verify_is_one_error_check(capsys, tmp_path: Path, monkeypatch) -> None:
    """The gateway's endpoints are fetched over verified TLS: a certificate no trusted root issued is a clear error on
    the gateway's domain phase, and the rest is still verified."""
    import ssl

    from cryptography.hazmat.primitives import serialization

    from tests.support.cloud_server import DstackServer, cloud_path
    from tests.support.web_pki import Pki

    monkeypatch.setenv("DSTACK_INSPECTOR_CACHE_DIR", str(tmp_path / "cache"))
    pki = Pki()
    leaf = pki.leaf(pki.tee_key, ["localhost", "127.0.0.1"])
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, pki.inter))
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(pki.tee_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    dataset = Dataset1.load()
    gateway = DstackServer(dataset)
    gateway.ssl_context = context
    with DstackServer(dataset) as server, gateway:
        answer = dataset.cloud_answer()
        answer["kms_info"]["gateway_app_url"] = gateway.url
        answer["kms_info"]["url"] = server.url  # KMS.GetMeta is asked of this server too
        answer["kms_info"]["chain_id"] = None  # hosted governance: no node to ask
        server.set_json(cloud_path(dataset.app_id), answer)
        code, report = run_json(capsys, "verify", "--app-id", dataset.app_id, "--cloud-url", server.cloud_base_url,
                                "--pccs-url", server.url, "--no-cache")
    checks = {(c["entity"], c["id"]): c for c in report["checks"]}
    tee = checks[("gateway", "domain.tee_controlled_key")]
    assert tee["status"] == "error" and "certificate" in tee["summary"].lower(), tee["summary"]
    assert checks[("app", "eventlog.replay")]["status"] == "pass"
    assert checks[("gateway", "eventlog.replay")]["status"] == "pass"
    assert code in (1, 3)
