"""`binding.kms_keys`: the KMS's KMS.GetMeta keys bound by its bootstrap quote, saved beside a Cloud answer or asked
of the KMS; and what it means for `source.kms_key_provider`."""

from __future__ import annotations

import json
from typing import Any

from dstack_verifier.demo import load_demo
from dstack_verifier.evidence import Evidence, detect
from dstack_verifier.model import CheckStatus, Report
from dstack_verifier.verification import verify_evidence

DEMO = load_demo()


def with_meta(change: Any) -> list[Evidence]:
    """The demo deployment with its kms-meta.json changed by `change(doc)` (None: left out)."""
    items = [e for e in DEMO.items if e.kind != "kms-meta"]
    meta = next(e for e in DEMO.items if e.kind == "kms-meta")
    if change is None:
        return items
    doc = json.loads(meta.data)
    change(doc)
    return [*items, detect(json.dumps(doc).encode(), "kms-meta.json")]


def checks(report: Report) -> dict[tuple[str, str], Any]:
    return {(c.entity, c.id): c for c in report.checks}


def test_bound_keys_pass_and_anchor_the_key_provider() -> None:
    found = checks(verify_evidence(with_meta(lambda doc: None), DEMO.options()))
    assert found["kms", "binding.kms_keys"].status is CheckStatus.PASS
    assert found["app", "source.kms_key_provider"].status is CheckStatus.PASS
    assert found["gateway", "source.kms_key_provider"].status is CheckStatus.PASS


def test_without_getmeta_the_key_provider_only_warns() -> None:
    found = checks(verify_evidence(with_meta(None), DEMO.options()))
    assert ("kms", "binding.kms_keys") not in found
    assert found["app", "source.kms_key_provider"].status is CheckStatus.WARN


def test_another_k256_key_fails_and_the_key_provider_is_not_anchored() -> None:
    def swap(doc: dict) -> None:
        key = bytearray.fromhex(doc["bootstrap_info"]["k256_pubkey"])
        key[-1] ^= 1
        doc["bootstrap_info"]["k256_pubkey"] = doc["k256_pubkey"] = key.hex()

    found = checks(verify_evidence(with_meta(swap), DEMO.options()))
    kms_keys = found["kms", "binding.kms_keys"]
    assert kms_keys.status is CheckStatus.FAIL and kms_keys.summary.startswith("KMS keys: ")
    assert found["app", "source.kms_key_provider"].status is CheckStatus.WARN  # no bound CA key to compare with


def test_a_bootstrap_quote_that_binds_other_keys_fails() -> None:
    other = next(e for e in DEMO.app_items if e.kind == "getquote").quote  # the app's quote: another TD
    assert other is not None

    def replace_quote(doc: dict) -> None:
        doc["bootstrap_info"]["quote"] = other.hex()

    kms_keys = checks(verify_evidence(with_meta(replace_quote), DEMO.options()))["kms", "binding.kms_keys"]
    assert kms_keys.status is CheckStatus.FAIL  # the app quote binds its RA-TLS key, not the KMS keys


def test_no_bootstrap_quote_warns() -> None:
    def drop(doc: dict) -> None:
        del doc["bootstrap_info"]

    kms_keys = checks(verify_evidence(with_meta(drop), DEMO.options()))["kms", "binding.kms_keys"]
    assert kms_keys.status is CheckStatus.WARN and "bootstrap quote" in kms_keys.summary


def test_getmeta_is_asked_of_the_kms_and_replayed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from dstack_verifier.net import NetClient

    from tests.support.cloud_server import Dataset1, DstackServer

    dataset = Dataset1.load()
    with DstackServer(dataset) as server, NetClient(retries=0, timeout=5) as client:
        answer = dataset.cloud_answer()
        answer["kms_info"]["url"] = server.url
        answer["kms_info"]["chain_id"] = None
        answer["kms_info"]["gateway_app_url"] = None
        cloud = detect(json.dumps(answer).encode(), "attestations.json")
        # Every endpoint is the loopback server: collateral (none there), the app's agent, the KMS.
        options = replace(DEMO.options(), offline=False, domain=None, pccs_url=server.url, agent_url=server.url)
        report = verify_evidence([cloud], options, client=client)
    kms_keys = checks(report)["kms", "binding.kms_keys"]
    # dataset1's GetMeta stand-in carries the Trust Center's constant wallet key, which its quote does not bind.
    assert kms_keys.status is CheckStatus.FAIL and "KMS.GetMeta" in kms_keys.details["source"]
    again = verify_evidence([detect(report.to_json().encode(), "r.json")], DEMO.options())
    assert checks(again)["kms", "binding.kms_keys"].status is CheckStatus.FAIL


def test_the_keys_registered_on_chain_stand_in_for_getmeta() -> None:
    from dataclasses import replace

    from dstack_verifier.net import NetClient

    from tests.support.rpc_node import RpcNode

    meta = json.loads(next(e for e in DEMO.items if e.kind == "kms-meta").data)["bootstrap_info"]
    cloud = next(e for e in DEMO.items if e.kind == "cloud-attestations")
    answer = json.loads(cloud.data)
    kms_contract = "0x" + "4b" * 20
    answer["kms_info"].update({"chain_id": 8453, "contract_address": kms_contract, "url": None})  # no GetMeta
    items = [detect(json.dumps(answer).encode(), "attestations.json"),
             *(e for e in DEMO.items if e.kind not in ("cloud-attestations", "kms-meta"))]
    with RpcNode() as node, NetClient(retries=0, timeout=5) as client:
        node.add_kms(kms_contract, ca_pubkey=bytes.fromhex(meta["ca_pubkey"]),
                     k256_pubkey=bytes.fromhex(meta["k256_pubkey"]), quote=bytes.fromhex(meta["quote"]),
                     eventlog=bytes.fromhex(meta["eventlog"]))
        options = replace(DEMO.options(), offline=False, rpc_urls={"base": node.url}, pccs_url=node.url,
                          agent_url=node.url)
        report = verify_evidence(items, options, client=client)
    found = checks(report)
    kms_keys = found["kms", "binding.kms_keys"]
    assert kms_keys.status is CheckStatus.PASS, kms_keys.summary
    assert "kmsInfo()" in kms_keys.details["source"]
    assert found["app", "source.kms_key_provider"].status is CheckStatus.PASS
    # Offline, from the recorded JSON-RPC answers: the same.
    again = checks(verify_evidence([detect(report.to_json().encode(), "r.json")], DEMO.options()))
    assert again["kms", "binding.kms_keys"].status is CheckStatus.PASS
