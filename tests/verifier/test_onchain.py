"""source.onchain_registry and OnchainReader against a real JSON-RPC node on loopback (tests/support/rpc_node.py).

The node serves the values the trust center read from Base for debug-data-1 (KMS contract, gateway app id, app id,
compose hashes, OS image hash, device id, KMS CA key and quote).
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dstack_verifier.model import CheckStatus
from dstack_verifier.net import Exchange, NetClient, ReplayClient
from dstack_verifier.onchain import (
    CHECK_ID,
    BootInfo,
    OnchainError,
    OnchainInputError,
    OnchainReader,
    chain_config,
    check_onchain_registry,
    load_abi,
)
from eth_abi import encode

from tests.support.fixtures import fixture_path
from tests.support.rpc_node import RpcNode

HEAD = 30_123_456


@dataclass(frozen=True)
class Deployment:
    """What debug-data-1 says about the on-chain side of its app, gateway and KMS."""

    kms: str
    gateway_app: str
    gateway_compose_hash: str
    app: str
    app_compose_hash: str
    instance_id: str
    os_image_hash: str
    device_id: str
    mr_aggregated: str
    ca_pubkey: bytes
    k256_pubkey: bytes
    kms_quote: bytes
    kms_eventlog: bytes


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    objects = {
        o["id"]: o["fields"]
        for o in json.loads(fixture_path("trust-center", "debug-data-1.dataObjects.json").read_text())
    }
    kms_main, app_main = objects["kms-main"], objects["app-main"]
    gateway_event = json.loads(objects["gateway-event-logs-imr3"]["compose-hash"])
    kms_dataset = json.loads(fixture_path("trust-center", "dataset1-kms.json").read_text())
    return Deployment(
        kms=kms_main["registry_smart_contract"].rsplit("/", 1)[-1],
        gateway_app=kms_main["gateway_app_id"],
        gateway_compose_hash=gateway_event["event_payload"],
        app=app_main["app_id"],
        app_compose_hash=app_main["compose_hash"],
        instance_id=app_main["instance_id"],
        os_image_hash=app_main["os_image_hash"],
        device_id=app_main["device_id"],
        mr_aggregated=app_main["mr_aggregated"],
        ca_pubkey=bytes.fromhex(kms_main["cert_pubkey"][2:]),
        # the fixture's wallet_pubkey is a stand-in constant (see the fixtures README), good enough as k256 bytes
        k256_pubkey=bytes.fromhex(kms_main["wallet_pubkey"][2:]),
        kms_quote=bytes.fromhex(kms_dataset["quote_hex"].removeprefix("0x")),
        kms_eventlog=json.dumps(kms_dataset["eventlog"]).encode(),
    )


@pytest.fixture
def node(deployment: Deployment) -> Iterator[RpcNode]:
    with RpcNode(chain_id=8453, head=HEAD) as rpc:
        rpc.add_app(deployment.app, compose_hashes=[deployment.app_compose_hash])
        rpc.add_app(deployment.gateway_app, compose_hashes=[deployment.gateway_compose_hash])
        kms = rpc.add_kms(
            deployment.kms,
            k256_pubkey=deployment.k256_pubkey,
            ca_pubkey=deployment.ca_pubkey,
            quote=deployment.kms_quote,
            eventlog=deployment.kms_eventlog,
            gateway_app_id=deployment.gateway_app,
        )
        kms.register_app(deployment.app)
        kms.register_app(deployment.gateway_app)
        kms.os_images[bytes.fromhex(deployment.os_image_hash)] = 0
        yield rpc


@pytest.fixture
def net() -> Iterator[NetClient]:
    with NetClient(retries=0, timeout=2.0) as client:
        yield client


def reader_for(node: RpcNode, net: NetClient, **kwargs: Any) -> OnchainReader:
    return OnchainReader(net, chain_config("base", rpc_url=node.url), **kwargs)


def app_check(reader: OnchainReader | None, d: Deployment, **overrides: Any) -> Any:
    args: dict[str, Any] = {
        "app_contract": d.app,
        "kms_contract": d.kms,
        "compose_hash": d.app_compose_hash,
        "os_image_hash": d.os_image_hash,
        "device_id": d.device_id,
        "instance_id": d.instance_id,
        "mr_aggregated": d.mr_aggregated,
        "tcb_status": "UpToDate",
    }
    args.update(overrides)
    return check_onchain_registry(reader, "app", **args)


def assert_one_line(text: str) -> None:
    assert "\n" not in text and "Traceback" not in text and len(text) < 600


# -- pass / fail ------------------------------------------------------------------------------------------------


def test_allowed_app_passes_with_the_block_anchor(node: RpcNode, net: NetClient, deployment: Deployment) -> None:
    check = app_check(reader_for(node, net), deployment)
    assert check.status is CheckStatus.PASS, check.summary
    assert check.id == CHECK_ID == "source.onchain_registry"
    assert check.phase == "source" and check.entity == "app"
    assert check.anchor == f"onchain@base:{HEAD}"
    assert f"block {HEAD}" in check.summary and "compose hash 0x4a328ba9" in check.summary
    details = check.details
    assert details["chain"] == "base" and details["chain_id"] == 8453 and details["block"] == HEAD
    assert details["contracts"] == {
        "DstackApp": "0xD722c43A6F4F42D53dC7BC97BA04A1cB17CE3a34",
        "DstackKms": "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C",
    }
    calls = {c["function"]: c for c in details["calls"]}
    assert calls["allowedComposeHashes"]["args"] == ["0x" + deployment.app_compose_hash]
    assert calls["allowedComposeHashes"]["result"] is True
    assert calls["registeredApps"]["result"] is True and calls["allowedOsImages"]["result"] is True
    assert calls["isAppAllowed"]["contract"] == "DstackKms" and calls["isAppAllowed"]["result"] == [True, ""]
    assert calls["isAppAllowed"]["args"][0]["composeHash"] == "0x" + deployment.app_compose_hash
    assert all(c["block"] == HEAD for c in details["calls"])
    assert json.loads(check.model_dump_json())["details"] == details  # details are plain JSON


def test_unknown_compose_hash_fails_naming_it(node: RpcNode, net: NetClient, deployment: Deployment) -> None:
    unknown = "ab" * 32
    check = app_check(reader_for(node, net), deployment, compose_hash=unknown)
    assert check.status is CheckStatus.FAIL
    assert check.summary.startswith(
        f"compose hash 0x{unknown} is not in allowedComposeHashes of DstackApp "
        f"0xD722c43A6F4F42D53dC7BC97BA04A1cB17CE3a34 at block {HEAD}"
    )
    assert check.anchor == f"onchain@base:{HEAD}"
    # the KMS's isAppAllowed agrees, with the contract's own reason
    assert any("Compose hash not allowed" in f for f in check.details["failures"])


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda n, d: n.kmss[d.kms.lower()[2:]].registered_apps.clear(), "is not in registeredApps of DstackKms"),
        (lambda n, d: n.kmss[d.kms.lower()[2:]].os_images.clear(), "is not in allowedOsImages of DstackKms"),
        (lambda n, d: setattr(n.apps[d.app], "allow_any_device", False), "is not in allowedDeviceIds of DstackApp"),
    ],
    ids=["not-registered", "os-image", "device"],
)
def test_other_gates_fail(node: RpcNode, net: NetClient, deployment: Deployment, setup: Any, expected: str) -> None:
    setup(node, deployment)
    check = app_check(reader_for(node, net), deployment)
    assert check.status is CheckStatus.FAIL
    assert expected in check.summary, check.summary
    assert_one_line(check.summary)


def test_allowed_device_passes(node: RpcNode, net: NetClient, deployment: Deployment) -> None:
    app = node.apps[deployment.app]
    app.allow_any_device = False
    app.add_device(deployment.device_id)
    check = app_check(reader_for(node, net), deployment)
    assert check.status is CheckStatus.PASS, check.summary
    assert "device id 0xe5a0c70b" in check.summary


def test_gateway_is_checked_against_the_kms_gateway_app_id(
    node: RpcNode, net: NetClient, deployment: Deployment
) -> None:
    reader = reader_for(node, net)
    gateway = check_onchain_registry(
        reader,
        "gateway",
        app_contract=deployment.gateway_app,
        kms_contract=deployment.kms,
        compose_hash=deployment.gateway_compose_hash,
        os_image_hash=deployment.os_image_hash,
    )
    assert gateway.status is CheckStatus.PASS, gateway.summary
    assert gateway.entity == "gateway" and "gatewayAppId() of the KMS" in gateway.summary
    calls = {c["function"]: c for c in gateway.details["calls"]}
    assert calls["gatewayAppId"]["result"] == "0x55760b065A3f1EAbdb1a4d7AbB94950f31B91A84"
    # the device id is unknown but any device may run the gateway: the KMS's whole gate is asked too
    assert calls["isAppAllowed"]["contract"] == "DstackKms" and calls["isAppAllowed"]["result"] == [True, ""]
    # a gateway the KMS does not name fails
    other = "0x" + "77" * 20
    node.add_app(other, compose_hashes=[deployment.gateway_compose_hash])
    node.kmss[deployment.kms.lower()[2:]].register_app(other)
    wrong = check_onchain_registry(
        reader, "gateway", app_contract=other, kms_contract=deployment.kms, compose_hash=deployment.gateway_compose_hash
    )
    assert wrong.status is CheckStatus.FAIL
    assert "is not the gatewayAppId() '0x55760b065A3f1EAbdb1a4d7AbB94950f31B91A84'" in wrong.summary


def test_kms_registry(node: RpcNode, net: NetClient, deployment: Deployment) -> None:
    kms = node.kmss[deployment.kms.lower()[2:]]
    mr, device = "cd" * 32, "ef" * 32
    kms.aggregated_mrs[bytes.fromhex(mr)] = 0
    reader = reader_for(node, net)
    args = {"kms_contract": deployment.kms, "os_image_hash": deployment.os_image_hash, "mr_aggregated": mr}
    check = check_onchain_registry(reader, "kms", device_id=device, tcb_status="UpToDate", **args)
    assert check.status is CheckStatus.FAIL
    assert check.summary.startswith(f"device id 0x{device} is not in kmsAllowedDeviceIds of DstackKms {deployment.kms}")
    assert "KMS is not allowed to boot on this device" in " ".join(check.details["failures"])
    info = check.details["kms_info"]
    assert info["ca_pubkey"] == "0x" + deployment.ca_pubkey.hex()
    assert info["quote"] == {
        "size": len(deployment.kms_quote),
        "sha256": hashlib.sha256(deployment.kms_quote).hexdigest(),
    }
    kms.device_ids[bytes.fromhex(device)] = 0
    fresh = reader_for(node, net)
    check = check_onchain_registry(fresh, "kms", device_id=device, tcb_status="UpToDate", **args)
    assert check.status is CheckStatus.PASS, check.summary
    assert "isKmsAllowed" in check.summary
    stale = check_onchain_registry(reader_for(node, net), "kms", device_id=device, tcb_status="OutOfDate", **args)
    assert stale.status is CheckStatus.FAIL and "TCB status is not up to date" in stale.summary


def test_reader_kms_info_returns_the_registered_values(node: RpcNode, net: NetClient, deployment: Deployment) -> None:
    reader = reader_for(node, net)
    info = reader.kms_info(deployment.kms)
    assert info.ca_pubkey == deployment.ca_pubkey and info.k256_pubkey == deployment.k256_pubkey
    assert info.quote == deployment.kms_quote and json.loads(info.eventlog) == json.loads(deployment.kms_eventlog)
    assert reader.gateway_app_id(deployment.kms) == deployment.gateway_app
    assert reader.app_registered(deployment.kms, deployment.app) is True
    assert reader.os_image_allowed(deployment.kms, deployment.os_image_hash) is True
    assert reader.app_implementation(deployment.kms) == "0x" + "22" * 20
    assert reader.owner(deployment.app).lower() == "0x" + "11" * 20
    boot = BootInfo(
        app_id=deployment.app, compose_hash=deployment.app_compose_hash, os_image_hash=deployment.os_image_hash
    )
    assert reader.is_app_allowed(deployment.kms, boot, kind="DstackKms") == (True, "")
    assert reader.has_code(deployment.app) and not reader.has_code("0x" + "99" * 20)


# -- skip -------------------------------------------------------------------------------------------------------


def test_not_governed_and_no_reader_skip(net: NetClient, deployment: Deployment) -> None:
    check = app_check(None, deployment, app_contract=None)
    assert check.status is CheckStatus.SKIP and "not governed on-chain" in check.summary
    kms = check_onchain_registry(None, "kms", kms_contract=None)
    assert kms.status is CheckStatus.SKIP and "no DstackKms contract address" in kms.summary
    assert app_check(None, deployment).status is CheckStatus.SKIP


def test_offline_without_a_recording_skips(deployment: Deployment) -> None:
    check = app_check(OnchainReader(NetClient(offline=True)), deployment)
    assert check.status is CheckStatus.SKIP
    assert check.summary.startswith("offline: on-chain registry not read") and check.anchor == "none"


def test_no_contract_at_the_address_fails(node: RpcNode, net: NetClient, deployment: Deployment) -> None:
    nowhere = "0x" + "99" * 20
    check = app_check(reader_for(node, net), deployment, app_contract=nowhere, kms_contract=None)
    assert check.status is CheckStatus.FAIL
    assert check.summary == f"no contract code at DstackApp 0x{'99' * 20} on Base at block {HEAD}"


# -- errors -----------------------------------------------------------------------------------------------------


def test_reverted_call_is_an_error_naming_the_reason(node: RpcNode, net: NetClient, deployment: Deployment) -> None:
    node.revert("allowedComposeHashes", "Pausable: paused")
    check = app_check(reader_for(node, net), deployment)
    assert check.status is CheckStatus.ERROR
    assert "allowedComposeHashes() of DstackApp 0xD722c43A6F4F42D53dC7BC97BA04A1cB17CE3a34" in check.summary
    assert "reverted: Pausable: paused" in check.summary
    assert check.details["calls"][-1]["error"].endswith("reverted: Pausable: paused")
    assert_one_line(check.summary)


def test_contract_without_is_app_allowed_is_noted(node: RpcNode, net: NetClient, deployment: Deployment) -> None:
    node.apps[deployment.app].missing.add("isAppAllowed")
    node.apps[deployment.app].missing.add("allowAnyDevice")
    check = app_check(reader_for(node, net), deployment, kms_contract=None)
    assert check.status is CheckStatus.PASS, check.summary
    notes = " ".join(check.details["notes"])
    assert "allowAnyDevice() of DstackApp is absent" in notes
    assert "has no isAppAllowed" in notes


def test_node_down_is_an_error(deployment: Deployment, net: NetClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reader = OnchainReader(net, "base", rpc_url=f"http://127.0.0.1:{port}/")
    check = app_check(reader, deployment)
    assert check.status is CheckStatus.ERROR
    assert "RPC node unreachable (eth_chainId)" in check.summary and "connection failed" in check.summary
    assert check.anchor == "none"
    assert_one_line(check.summary)


def test_wrong_chain_id_is_an_error(net: NetClient, deployment: Deployment) -> None:
    with RpcNode(chain_id=1) as ethereum:
        check = app_check(reader_for(ethereum, net), deployment)
        assert [r.method for r in ethereum.requests] == ["eth_chainId"]  # nothing read from the wrong chain
    assert check.status is CheckStatus.ERROR
    assert check.summary == (f"wrong chain: RPC node {ethereum.url} reports chain id 1, expected Base (chain id 8453)")


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("500", "answered HTTP 500"),
        ("503", "answered HTTP 503"),
        ("malformed", "malformed JSON-RPC answer (JSONDecodeError)"),
        ("not-json", "malformed JSON-RPC answer (JSONDecodeError)"),
        ("no-result", "needs exactly one of result and error"),
        ("bad-hex", "not a hex string"),
        ("drop", "RPC node unreachable (eth_call)"),
    ],
)
def test_malformed_or_failed_answers_are_errors(
    node: RpcNode, net: NetClient, deployment: Deployment, mode: Any, expected: str
) -> None:
    node.fail(mode, methods={"eth_call"})
    check = app_check(reader_for(node, net), deployment)
    assert check.status is CheckStatus.ERROR
    assert expected in check.summary, check.summary
    assert check.anchor == f"onchain@base:{HEAD}"  # the block was pinned before the failing call
    assert_one_line(check.summary)


@pytest.mark.parametrize(
    "raw",
    [
        "0x1234",  # too short for a bool
        "0x" + "00" * 31 + "02",  # not a valid bool
        "0x" + "ff" * 32,
    ],
)
def test_undecodable_results_are_errors(node: RpcNode, net: NetClient, deployment: Deployment, raw: str) -> None:
    node.answer("allowedComposeHashes", raw)
    check = app_check(reader_for(node, net), deployment)
    assert check.status is CheckStatus.ERROR
    assert "allowedComposeHashes() of DstackApp" in check.summary and "malformed answer" in check.summary
    assert_one_line(check.summary)


def test_empty_result_is_an_error(node: RpcNode, net: NetClient, deployment: Deployment) -> None:
    node.answer("allowedComposeHashes", "0x")
    check = app_check(reader_for(node, net), deployment)
    assert check.status is CheckStatus.ERROR and "empty answer" in check.summary


def test_hostile_kms_info_is_an_error(node: RpcNode, net: NetClient, deployment: Deployment) -> None:
    # offsets pointing far outside the data
    node.answer("kmsInfo", "0x" + encode(["uint256"] * 4, [2**255] * 4).hex())
    check = check_onchain_registry(
        reader_for(node, net), "kms", kms_contract=deployment.kms, os_image_hash=deployment.os_image_hash
    )
    assert check.status is CheckStatus.ERROR and "kmsInfo() of DstackKms" in check.summary
    assert_one_line(check.summary)


def test_oversized_answer_is_refused(node: RpcNode, deployment: Deployment) -> None:
    node.kmss[deployment.kms.lower()[2:]].quote = b"q" * 200_000
    with NetClient(retries=0, timeout=2.0, max_body=100_000) as small:
        with pytest.raises(OnchainError, match="too large"):
            reader_for(node, small).kms_info(deployment.kms)


def test_offchain_lookup_revert_is_not_followed(node: RpcNode, net: NetClient, deployment: Deployment) -> None:
    # EIP-3668 OffchainLookup(address,string[],bytes,bytes4,bytes) pointing back at the node: must not be fetched
    args = encode(
        ["address", "string[]", "bytes", "bytes4", "bytes"],
        [deployment.app, [node.url + "{sender}/{data}.json"], b"", b"\x00" * 4, b""],
    )
    node.revert("allowedComposeHashes", data="0x556f1830" + args.hex())
    check = app_check(reader_for(node, net), deployment)
    assert check.status is CheckStatus.ERROR and "reverted" in check.summary
    assert node.http_requests == len(node.requests)  # every HTTP request the node saw was a JSON-RPC one


def test_malformed_inputs_are_errors_naming_the_field(node: RpcNode, net: NetClient, deployment: Deployment) -> None:
    check = app_check(reader_for(node, net), deployment, compose_hash="0x1234")
    assert check.status is CheckStatus.ERROR and "malformed compose hash: '0x1234'" in check.summary
    check = app_check(reader_for(node, net), deployment, app_contract="not-an-address")
    assert check.status is CheckStatus.ERROR and "malformed DstackApp contract address" in check.summary
    assert node.requests == []


# -- block pinning, recording and replay ------------------------------------------------------------------------


def test_every_read_is_at_the_one_pinned_block(node: RpcNode, net: NetClient, deployment: Deployment) -> None:
    reader = reader_for(node, net)
    app = app_check(reader, deployment)
    gateway = check_onchain_registry(
        reader,
        "gateway",
        app_contract=deployment.gateway_app,
        kms_contract=deployment.kms,
        compose_hash=deployment.gateway_compose_hash,
    )
    kms = check_onchain_registry(reader, "kms", kms_contract=deployment.kms, os_image_hash=deployment.os_image_hash)
    assert [c.status for c in (app, gateway, kms)] == [CheckStatus.PASS] * 3
    assert {c.anchor for c in (app, gateway, kms)} == {f"onchain@base:{HEAD}"}
    methods = [r.method for r in node.requests]
    assert set(methods) == {"eth_chainId", "eth_blockNumber", "eth_getCode", "eth_call"}
    assert methods.count("eth_chainId") == 1 and methods.count("eth_blockNumber") == 1
    assert node.head == HEAD + 1  # the chain moved on; the reads did not
    reads = node.calls("eth_call") + node.calls("eth_getCode")
    assert len(reads) >= 10
    assert {r.params[1] for r in reads} == {hex(HEAD)}
    # a value read twice is fetched once (the cached read is still listed in the check's details)
    assert sum(1 for r in node.calls("eth_getCode") if r.params[0] == "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C") == 1
    assert any(c.get("cached") for c in kms.details["calls"])


def test_state_is_read_at_the_pinned_block(node: RpcNode, net: NetClient, deployment: Deployment) -> None:
    later = "12" * 32
    node.apps[deployment.app].add_compose_hash(later, at_block=HEAD + 1)
    reader = reader_for(node, net)
    assert reader.pin() == HEAD
    node.head = HEAD + 5  # the hash is on-chain now, but not at our block
    assert reader.compose_hash_allowed(deployment.app, later) is False
    at_later_block = reader_for(node, net, block=HEAD + 2)
    assert at_later_block.compose_hash_allowed(deployment.app, later) is True
    assert at_later_block.block == HEAD + 2
    assert [r.method for r in node.requests].count("eth_blockNumber") == 1  # an explicit block is not asked for


def test_rpc_error_on_a_call_is_an_error(node: RpcNode, net: NetClient, deployment: Deployment) -> None:
    future = reader_for(node, net, block=HEAD + 1000)  # a block the node does not have yet
    check = app_check(future, deployment)
    assert check.status is CheckStatus.ERROR
    assert "(eth_getCode) returned error -32000: header not found" in check.summary
    assert check.anchor == f"onchain@base:{HEAD + 1000}"
    assert_one_line(check.summary)
    with pytest.raises(OnchainError, match="the RPC node returned an error: header not found"):
        future.compose_hash_allowed(deployment.app, deployment.app_compose_hash)


def test_recording_then_offline_replay_gives_the_same_check(deployment: Deployment) -> None:
    recording: list[Exchange] = []
    with RpcNode(head=HEAD) as live, NetClient(retries=0, timeout=2.0, recorder=recording) as net:
        live.add_app(deployment.app, compose_hashes=[deployment.app_compose_hash])
        kms = live.add_kms(deployment.kms, ca_pubkey=deployment.ca_pubkey, gateway_app_id=deployment.gateway_app)
        kms.register_app(deployment.app)
        kms.os_images[bytes.fromhex(deployment.os_image_hash)] = 0
        chain = chain_config("base", rpc_url=live.url)
        reader = OnchainReader(net, chain)  # one verification: one reader, one block, two checks
        original = app_check(reader, deployment)
        unknown = app_check(reader, deployment, compose_hash="ab" * 32)
    assert original.status is CheckStatus.PASS and unknown.status is CheckStatus.FAIL
    assert all(e.method == "POST" and e.request_body for e in recording)
    stored = [Exchange.model_validate_json(e.model_dump_json()) for e in recording]

    # the node is gone: only the recording answers, and the re-run gets the same checks
    replay = OnchainReader(ReplayClient(stored), chain)
    assert app_check(replay, deployment) == original
    assert app_check(replay, deployment, compose_hash="ab" * 32) == unknown
    # a question the recording does not hold: skip, naming why
    other = app_check(OnchainReader(ReplayClient(stored), chain), deployment, compose_hash="cd" * 32)
    assert other.status is CheckStatus.SKIP and "not in the recorded evidence: POST" in other.summary


# -- configuration, ABIs, import cost ---------------------------------------------------------------------------


def test_chain_config() -> None:
    assert chain_config("base").chain_id == 8453 and chain_config("Base").rpc_url == "https://mainnet.base.org"
    assert chain_config(8453).key == "base" and chain_config("1").key == "ethereum"
    assert chain_config("ethereum", rpc_url="http://127.0.0.1:1/").rpc_url == "http://127.0.0.1:1/"
    assert chain_config("ethereum").rpc_url.startswith("https://")
    with pytest.raises(OnchainInputError, match="unsupported chain 'polygon'"):
        chain_config("polygon")
    with pytest.raises(OnchainInputError, match="unsupported chain '137'"):
        OnchainReader(NetClient(offline=True), 137)


def test_abis_have_the_selectors_the_contracts_use() -> None:
    from eth_utils import function_abi_to_4byte_selector

    def selectors(name: str) -> dict[str, str]:
        return {f["name"]: "0x" + function_abi_to_4byte_selector(f).hex() for f in load_abi(name)}

    app, kms = selectors("DstackApp"), selectors("DstackKms")
    assert app["allowedComposeHashes"] == "0x2f6622e5" and app["isAppAllowed"] == "0x1e079198"
    assert app["allowAnyDevice"] == "0x3440a16a" and app["allowedDeviceIds"] == "0xbf8b211b"
    assert kms["kmsInfo"] == "0x09177063" and kms["gatewayAppId"] == "0x95f51931"
    assert kms["allowedOsImages"] == "0x9a4e1d18" and kms["registeredApps"] == "0xa6c4cce9"
    assert kms["kmsAllowedAggregatedMrs"] == "0xf6fe4f40" and kms["kmsAllowedDeviceIds"] == "0x13eb9770"


def test_importing_onchain_does_not_import_web3() -> None:
    code = (
        "import sys, dstack_verifier.onchain\n"
        "heavy = sorted(m for m in ('web3', 'eth_abi', 'eth_utils') if m in sys.modules)\n"
        "print(','.join(heavy) or 'none')\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root, timeout=60)
    assert out.stdout.strip() == "none"


def test_using_web3_keeps_the_recursion_limit() -> None:
    # py_ecc (imported by web3) raises the process-wide recursion limit to 100000, which turns deeply nested
    # hostile input elsewhere into a C stack overflow instead of a RecursionError.
    code = (
        "import sys\n"
        "from dstack_verifier.net import NetClient\n"
        "from dstack_verifier.onchain import RpcTransport, net_provider\n"
        "before = sys.getrecursionlimit()\n"
        "net_provider(RpcTransport(NetClient(offline=True), 'http://127.0.0.1:1/'))\n"
        "print('web3' in sys.modules, 'py_ecc' in sys.modules, sys.getrecursionlimit() == before)\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root, timeout=60)
    assert out.stdout.split() == ["True", "True", "True"]
