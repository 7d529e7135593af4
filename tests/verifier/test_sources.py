"""Evidence sources against real HTTP servers on loopback (answers built from the Trust Center fixtures): fetch and
parse, every failure a one-line SourceError, record then replay, and the evidence the verifier accepts."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from dstack_verifier.errors import InputError
from dstack_verifier.eventlog import parse_event_log
from dstack_verifier.model import CheckStatus
from dstack_verifier.net import Exchange, NetClient, ReplayClient
from dstack_verifier.sources import (
    EntityMaterial,
    SourceError,
    collect,
    compare_versions,
    merge_materials,
    parse_image_version,
    parse_kms_version,
    supports_info_endpoint,
    supports_onchain_kms,
    to_evidence,
    version_tuple,
)
from dstack_verifier.sources.agent import (
    AgentInfo,
    app_rpc_url,
    fetch_info,
    fetch_kms_meta,
    info_path,
    parse_info,
    parse_kms_meta,
)
from dstack_verifier.sources.cloud import (
    CloudAttestations,
    attestations_url,
    fetch_attestations,
    parse_cloud_answer,
)
from dstack_verifier.sources.gateway import fetch_acme_info, fetch_app_info, parse_acme_info, parse_app_info
from dstack_verifier.verification import VerifyOptions, load_anchor, verify_evidence

from tests.support.cloud_server import (
    ACME_ACCOUNT_URI,
    ACME_INFO_PATH,
    APP_INFO_PATH,
    INFO_PATH,
    KMS_META_PATH,
    KMS_VERSION,
    LEGACY_KMS_VERSION,
    STAND_IN_APP_COMPOSE,
    WORKER_INFO_PATH,
    Dataset1,
    DstackServer,
    cloud_path,
)

NOW = 1_756_000_000  # 2025-08-24: inside every dataset1 certificate's validity


@pytest.fixture(scope="module")
def ds() -> Dataset1:
    return Dataset1.load()


@pytest.fixture
def server(ds: Dataset1) -> Iterator[DstackServer]:
    with DstackServer(ds, hang_seconds=5.0) as srv:
        yield srv


@pytest.fixture
def client() -> Iterator[NetClient]:
    with NetClient(timeout=2.0, retries=0) as c:
        yield c


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and text.strip() == text and text
    return text


# --------------------------------------------------------------------------------------------------------------------
# Phala Cloud attestations API


def test_cloud_answer_keeps_every_running_instance(server: DstackServer, client: NetClient, ds: Dataset1) -> None:
    att = fetch_attestations(client, "0x" + ds.app_id.upper(), server.cloud_base_url)
    assert att.app_id == ds.app_id
    assert att.contract_address == "0x" + ds.app_id
    assert [i.index for i in att.instances] == [0, 1]
    assert [d.index for d in att.dropped_instances] == [2]
    assert att.dropped_instances[0].reason.startswith("stopped: no quote, no event log, no image_version")
    first, second = att.instances
    # the old form (top-level eventlog) and the new one (tcb_info.event_log) come out alike
    assert first.event_log_field == "eventlog" and second.event_log_field == "tcb_info.event_log"
    assert first.event_log == second.event_log == ds.events("app")
    assert first.quote == second.quote == ds.quote("app")
    assert first.image_version.name == "dstack-0.5.3" and first.image_version.raw == " dstack-0.5.3 "
    assert first.image_version.version == "0.5.3" and first.image_version.problem is None
    # instance ids: the answer's field, else the event log's instance-id event
    assert first.instance_id == second.instance_id == ds.instance_id
    assert first.app_compose is None and second.app_compose == STAND_IN_APP_COMPOSE
    assert second.tcb_info is not None and second.tcb_info.mrtd == ds.app["td_report"]["mr_td"]
    kms = att.kms_info
    assert (kms.chain_id, kms.governance, kms.version, kms.version_number, kms.git_commit) == (
        8453, "onchain", KMS_VERSION, "v0.5.3", "ca4af023e974427e4153")
    assert kms.contract_address == ds.kms_contract and kms.gateway_app_id == ds.gateway_app_id.lower()[2:]
    assert att.legacy_reason is None and att.info_path == "/prpc/Info"
    assert att.instance_index(ds.instance_id) == 0 and att.instance_index("ff" * 20) is None


def test_cloud_guest_agent_infos(server: DstackServer, client: NetClient, ds: Dataset1) -> None:
    att = fetch_attestations(client, ds.app_id, server.cloud_base_url)
    kms, gateway = att.kms_guest_agent_info, att.gateway_guest_agent_info
    assert kms is not None and gateway is not None
    assert kms.form == gateway.form == "guest-agent-info"
    assert kms.source.endswith("kms_guest_agent_info")
    assert kms.app_id == ds.payload("kms", "app-id") and kms.instance_id is None
    assert kms.key_provider is not None and kms.key_provider.name == "local-sgx"
    assert kms.vm_config == ds.kms["vm_config"] and kms.os_image_hash == "abcdef1234567890" * 4
    assert kms.quote() == (ds.quote("kms"), f"{kms.source} app_certificates[0].quote")
    assert [c.is_ca for c in kms.app_certificates] == [False, True]
    assert gateway.tcb_info.app_compose == ds.gateway["app_compose"]
    assert gateway.compose_hash == ds.payload("gateway", "compose-hash")
    assert gateway.mr_aggregated is None and gateway.device_id is None  # "" means not given


def _without_sources(value: Any) -> Any:
    """A model dump without the ``source`` fields (a URL when fetched, a file name when parsed)."""
    if isinstance(value, dict):
        return {k: _without_sources(v) for k, v in value.items() if k != "source"}
    if isinstance(value, list | tuple):
        return [_without_sources(v) for v in value]
    return value


def test_cloud_answer_saved_to_a_file_parses_alike(server: DstackServer, client: NetClient, ds: Dataset1) -> None:
    fetched = fetch_attestations(client, ds.app_id, server.cloud_base_url)
    saved = parse_cloud_answer(server.body(cloud_path(ds.app_id)), "attestations.json")
    assert saved.source == "attestations.json"
    assert saved.kms_guest_agent_info is not None
    assert saved.kms_guest_agent_info.source == "attestations.json kms_guest_agent_info"
    assert _without_sources(saved.model_dump()) == _without_sources(fetched.model_dump())
    # the models survive a JSON round trip (bytes as hex)
    assert CloudAttestations.model_validate_json(fetched.model_dump_json()) == fetched


@pytest.mark.parametrize(
    ("mode", "kind", "status", "expected"),
    [
        ("404", "http", 404, "not found on Phala Cloud (HTTP 404"),
        ("500", "http", 500, "not found or currently down on Phala Cloud (HTTP 500"),
        ("502", "http", 502, "request failed: HTTP 502"),
        ("hang", "network", None, "timed out"),
        ("drop", "network", None, "connection dropped"),
        ("malformed", "input", None, "invalid JSON"),
        ("not-json", "input", None, "invalid JSON"),
        ("oversized", "network", None, "response body too large"),
        ("oversized-chunked", "network", None, "response body too large"),
    ],
)
def test_cloud_failures_are_one_line(server: DstackServer, ds: Dataset1, mode: str, kind: str, status: int | None,
                                     expected: str) -> None:
    server.fail(cloud_path(ds.app_id), mode)  # type: ignore[arg-type]
    with NetClient(timeout=0.3, retries=0, max_body=1024 * 1024) as client, pytest.raises(SourceError) as info:
        fetch_attestations(client, ds.app_id, server.cloud_base_url)
    text = one_line(info.value)
    assert expected in text and "Phala Cloud API" in text
    assert info.value.kind == kind and info.value.status == status
    assert isinstance(info.value, InputError)
    if mode == "malformed":
        assert info.value.offset is not None


def test_no_running_instance(server: DstackServer, client: NetClient, ds: Dataset1) -> None:
    answer = ds.cloud_answer()
    answer["instances"] = [answer["instances"][2]]
    server.set_json(cloud_path(ds.app_id), answer)
    with pytest.raises(SourceError) as info:
        fetch_attestations(client, ds.app_id, server.cloud_base_url)
    text = one_line(info.value)
    assert f"app {ds.app_id} has no running instances on Phala Cloud (1 listed, all stopped)" in text
    assert info.value.field == "instances" and info.value.kind == "input"
    answer["instances"] = []
    server.set_json(cloud_path(ds.app_id), answer)
    with pytest.raises(SourceError, match=r"has no running instances on Phala Cloud$"):
        fetch_attestations(client, ds.app_id, server.cloud_base_url)


def test_an_answer_about_another_app_is_refused(server: DstackServer, client: NetClient, ds: Dataset1) -> None:
    other = "ab" * 20
    server.set_json(cloud_path(other), ds.cloud_answer())
    with pytest.raises(SourceError) as info:
        fetch_attestations(client, other, server.cloud_base_url)
    assert f"the answer is about app {ds.app_id}, not {other}" in one_line(info.value)
    assert info.value.field == "app_id"


def test_bad_app_id_or_base_url_makes_no_request(server: DstackServer, client: NetClient) -> None:
    for bad in ("", "../admin", "d722c43a?x=1", "0xZZ"):
        with pytest.raises(SourceError, match="is not hex"):
            fetch_attestations(client, bad, server.cloud_base_url)
    for base in ("ftp://example.com/api", "not a url", "https://example.com/api?x=1"):
        with pytest.raises(SourceError, match="Phala Cloud API URL"):
            fetch_attestations(client, "ab" * 20, base)
    assert sum(server.counts.values()) == 0
    assert attestations_url("0xAB", "https://cloud-api.phala.com/api/v1/") == (
        "https://cloud-api.phala.com/api/v1/apps/ab/attestations")


def _mutated(ds: Dataset1, change: Callable[[dict[str, Any]], None]) -> bytes:
    answer = copy.deepcopy(ds.cloud_answer())
    change(answer)
    return json.dumps(answer).encode()


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (lambda a: a.update(app_id="not-hex"), "app_id", "not hex"),
        (lambda a: a.pop("kms_info"), "kms_info", "missing"),
        (lambda a: a["kms_info"].update(chain_id="base"), "kms_info.chain_id", "expected an integer"),
        (lambda a: a["kms_info"].update(contract_address="0x1234"), "kms_info.contract_address", "EVM address"),
        (lambda a: a.update(instances={"0": {}}), "instances", "expected an array"),
        (lambda a: a.update(qemu_version=9), "qemu_version", "expected a string, got number"),
        (lambda a: a.update(instances=[{}] * 300), "instances", "300 items, more than the 256 allowed"),
    ],
)
def test_malformed_answer_names_the_field(ds: Dataset1, change: Callable[[dict[str, Any]], None], field: str,
                                          message: str) -> None:
    with pytest.raises(SourceError) as info:
        parse_cloud_answer(_mutated(ds, change), "saved.json")
    text = one_line(info.value)
    assert info.value.field is not None and info.value.field.startswith(field), text
    assert message in text and text.startswith("saved.json, field ")


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (lambda a: a["kms_guest_agent_info"]["tcb_info"]["event_log"][3].update(digest="zz"),
         "kms_guest_agent_info.tcb_info.event_log[3].digest", "not hex"),
        (lambda a: a["gateway_guest_agent_info"].update(vm_config="{not json"),
         "gateway_guest_agent_info.vm_config", "invalid JSON"),
        (lambda a: a["gateway_guest_agent_info"]["app_certificates"][0].update(quote="00" * 64),
         "gateway_guest_agent_info.app_certificates[0].quote", "quote"),
        (lambda a: a.update(kms_guest_agent_info="yes"), "kms_guest_agent_info", "expected a JSON object"),
    ],
)
def test_a_malformed_guest_agent_info_is_left_out_with_its_reason(
    ds: Dataset1, change: Callable[[dict[str, Any]], None], field: str, message: str
) -> None:
    att = parse_cloud_answer(_mutated(ds, change), "saved.json")
    key = field.split(".")[0]
    assert getattr(att, key) is None and len(att.instances) == 2
    (problem,) = att.problems
    assert problem.startswith(f"field {field}") and message in problem and "\n" not in problem
    assert att.legacy_reason == f"{key} not available ({problem})"
    entity = "kms" if key.startswith("kms") else "gateway"
    assert entity not in to_evidence(att) and "app" in to_evidence(att)


def test_a_malformed_instance_is_dropped_with_its_reason(ds: Dataset1) -> None:
    def break_first(a: dict[str, Any]) -> None:
        a["instances"][0]["quote"] = "0x" + "zz" * 10

    att = parse_cloud_answer(_mutated(ds, break_first), "saved.json")
    assert [i.index for i in att.instances] == [1]
    reasons = {d.index: d.reason for d in att.dropped_instances}
    assert reasons[0].startswith("field instances[0].quote: not hex")

    def break_all(a: dict[str, Any]) -> None:
        break_first(a)
        a["instances"][1]["tcb_info"]["event_log"] = "[{]"

    with pytest.raises(SourceError) as info:
        parse_cloud_answer(_mutated(ds, break_all), "saved.json")
    text = one_line(info.value)
    assert "has no running instances on Phala Cloud; instances[0]: field instances[0].quote: not hex" in text


def test_saved_answers_are_bounded_and_must_be_json() -> None:
    from dstack_verifier.sources import MAX_ANSWER_BYTES

    with pytest.raises(SourceError, match=r"answer is \d+ bytes, more than the \d+ allowed"):
        parse_cloud_answer(b" " * (MAX_ANSWER_BYTES + 1), "huge.json")
    for data, message in ((b"", "empty answer"), (b"\xff{}", "not UTF-8"), (b"[]", "expected a JSON object"),
                          (b"[" * 500 + b"]" * 500, "nests too deeply")):
        with pytest.raises(SourceError, match=message):
            parse_cloud_answer(data, "bad.json")


def test_the_package_re_exports_the_fetchers() -> None:
    import dstack_verifier.sources as sources

    assert sources.fetch_attestations is fetch_attestations and sources.parse_acme_info is parse_acme_info
    with pytest.raises(AttributeError):
        _ = sources.no_such_name


def test_image_version_normalisation_and_chain_id_forms(ds: Dataset1) -> None:
    def change(a: dict[str, Any]) -> None:
        a["instances"][0]["image_version"] = "vnvidia-0.5.4.1"
        a["instances"][1]["image_version"] = "custom-build"
        a["kms_info"].update(chain_id="0", contract_address="", gateway_app_id="")
        a["contract_address"] = None

    att = parse_cloud_answer(_mutated(ds, change), "saved.json")
    first, second = att.instances
    assert first.image_version.name == "dstack-nvidia-0.5.4.1" and first.image_version.version == "0.5.4.1"
    assert first.image_version.nvidia and first.image_version.problem is None
    assert second.image_version.version is None and second.image_version.problem  # kept, noted
    assert any("custom-build" in n for n in att.app_material(1).notes)
    assert att.kms_info.chain_id == 0 and att.kms_info.governance == "hosted"
    assert att.kms_info.contract_address is None and att.kms_info.gateway_app_id is None
    assert att.contract_address is None


# --------------------------------------------------------------------------------------------------------------------
# Guest agent, KMS, gateway


def test_guest_agent_info(server: DstackServer, client: NetClient, ds: Dataset1) -> None:
    info = fetch_info(client, server.url + "/", kms_version=KMS_VERSION)
    assert server.counts[INFO_PATH] == 1 and server.counts[WORKER_INFO_PATH] == 0
    main = ds.app["main_fields"]
    assert info.form == "info" and not info.legacy
    assert (info.app_id, info.instance_id, info.device_id, info.compose_hash, info.os_image_hash) == (
        ds.app_id, ds.instance_id, main["device_id"], main["compose_hash"], main["os_image_hash"])
    assert info.key_provider is not None and info.key_provider.id == ds.kms_ca_pubkey
    assert info.vm_config == ds.app["vm_config"]
    assert info.tcb_info.event_log == ds.events("app") and info.tcb_info.app_compose == STAND_IN_APP_COMPOSE
    assert info.app_cert == ds.app_cert and info.app_cert_is_ra_tls
    assert info.ra_tls_quote == ds.quote("app")  # the quote inside the RA-TLS leaf
    saved = parse_info(server.body(INFO_PATH), "info.json")
    assert _without_sources(saved.model_dump()) == _without_sources(info.model_dump())


def test_legacy_worker_info_by_the_kms_version(server: DstackServer, client: NetClient, ds: Dataset1) -> None:
    assert info_path(LEGACY_KMS_VERSION) == WORKER_INFO_PATH and info_path(None) == INFO_PATH
    info = fetch_info(client, server.url, kms_version=LEGACY_KMS_VERSION)
    assert server.counts[WORKER_INFO_PATH] == 1 and server.counts[INFO_PATH] == 0
    assert info.form == "worker-info" and info.legacy
    # what Worker.Info does not say stays unknown (no "0x" placeholders)
    assert info.compose_hash is None and info.key_provider is None and info.vm_config is None
    assert info.tcb_info.rootfs_hash == ds.app["main_fields"]["os_image_hash"]
    assert info.public_sysinfo is False
    assert parse_info(server.body(WORKER_INFO_PATH), "worker.json").form == "worker-info"  # detected from fields


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("404", "request failed: HTTP 404"), ("malformed", "invalid JSON"), ("hang", "timed out")],
)
def test_guest_agent_failures(server: DstackServer, mode: str, expected: str) -> None:
    server.fail(INFO_PATH, mode)  # type: ignore[arg-type]
    with NetClient(timeout=0.3, retries=0) as client, pytest.raises(SourceError) as info:
        fetch_info(client, server.url)
    assert expected in one_line(info.value) and "guest agent" in str(info.value)


def test_guest_agent_stringified_field_errors_name_the_field(server: DstackServer, client: NetClient,
                                                            ds: Dataset1) -> None:
    answer = ds.info_answer()
    answer["tcb_info"] = answer["tcb_info"][:200]
    server.set_json(INFO_PATH, answer)
    with pytest.raises(SourceError) as info:
        fetch_info(client, server.url)
    assert info.value.field == "tcb_info" and "invalid JSON" in one_line(info.value)
    answer = ds.info_answer()
    answer["app_cert"] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    server.set_json(INFO_PATH, answer)
    with pytest.raises(SourceError) as info:
        fetch_info(client, server.url)
    assert info.value.field == "app_cert"
    one_line(info.value)


def test_kms_meta(server: DstackServer, client: NetClient, ds: Dataset1) -> None:
    meta = fetch_kms_meta(client, server.url)
    assert server.counts[KMS_META_PATH] == 1
    assert meta.quote == ds.quote("kms") and meta.event_log == ds.events("kms")
    assert meta.bootstrap_ca_pubkey is not None and meta.bootstrap_ca_pubkey.hex() == ds.kms_ca_pubkey
    assert meta.ca_pubkey == meta.bootstrap_ca_pubkey
    assert meta.k256_pubkey is not None and meta.k256_pubkey.hex() == ds.kms_k256_pubkey
    assert (meta.chain_id, meta.kms_contract_address, meta.is_dev) == (8453, ds.kms_contract, False)
    material = meta.material()
    assert material.ca_pubkey == meta.ca_pubkey and material.k256_pubkey == meta.k256_pubkey
    assert material.app_id == ds.payload("kms", "app-id")
    saved = parse_kms_meta(server.body(KMS_META_PATH), "meta.json")
    assert saved.model_dump(exclude={"source"}) == meta.model_dump(exclude={"source"})


def test_kms_meta_without_bootstrap_keys_uses_the_ca_certificate(ds: Dataset1) -> None:
    answer = ds.kms_meta_answer()
    del answer["bootstrap_info"]
    meta = parse_kms_meta(json.dumps(answer).encode(), "meta.json")
    assert meta.quote is None and meta.ca_pubkey is not None and meta.ca_pubkey.hex() == ds.kms_ca_pubkey


def test_gateway_acme_info(server: DstackServer, client: NetClient, ds: Dataset1) -> None:
    acme = fetch_acme_info(client, ds.gateway_url.replace(ds.gateway_url, server.url))
    assert server.counts[ACME_INFO_PATH] == 1
    assert acme.account_uri == ACME_ACCOUNT_URI
    assert acme.account_quote == ds.quote("gateway") and acme.account_event_log == ds.events("gateway")
    assert len(acme.quoted_hist_keys) == 1 and acme.quoted_hist_keys[0].quote == ds.quote("gateway")
    assert acme.hist_keys == (acme.quoted_hist_keys[0].public_key,) and not acme.hist_keys_derived
    assert acme.active_cert == ds.gateway_tls_chain and acme.base_domain == "dstack-base-prod7.phala.network"
    saved = parse_acme_info(server.body(ACME_INFO_PATH), "acme.json")
    assert saved.model_dump(exclude={"source"}) == acme.model_dump(exclude={"source"})
    # the current shape: no hist_keys / active_cert / base_domain; hist_keys come from quoted_hist_keys
    current = parse_acme_info(json.dumps(ds.acme_info_answer(legacy_fields=False)).encode(), "acme.json")
    assert current.hist_keys_derived and current.hist_keys == acme.hist_keys and current.active_cert is None


def test_gateway_acme_info_errors(ds: Dataset1) -> None:
    answer = ds.acme_info_answer()
    answer["account_quote"] = json.dumps({"quote": ds.quote_hex("gateway"), "event_log": "[{"})
    with pytest.raises(SourceError) as info:
        parse_acme_info(json.dumps(answer).encode(), "acme.json")
    assert info.value.field == "account_quote.event_log" and "invalid JSON" in one_line(info.value)
    answer = ds.acme_info_answer()
    del answer["account_uri"]
    with pytest.raises(SourceError, match="field account_uri: missing"):
        parse_acme_info(json.dumps(answer).encode(), "acme.json")


def test_gateway_app_info(server: DstackServer, client: NetClient, ds: Dataset1) -> None:
    info = fetch_app_info(client, server.url)
    assert server.counts[APP_INFO_PATH] == 1
    assert info.form == "gateway-app-info" and info.app_id == ds.gateway_app_id.lower()[2:]
    assert info.tcb_info.app_compose == ds.gateway["app_compose"]
    # its certificate is the gateway's Let's Encrypt chain, not RA-TLS: no quote comes from it
    assert not info.app_cert_is_ra_tls and info.quote() is None
    material = info.material("gateway")
    assert material.certificates_pem is None and material.other_certificates_pem == ds.gateway_tls_chain
    saved = parse_app_info(server.body(APP_INFO_PATH), "app-info.json")
    assert saved.model_dump(exclude={"source"}) == info.model_dump(exclude={"source"})


def test_app_rpc_url() -> None:
    assert app_rpc_url("0xD722", "dstack-base-prod7.phala.network.") == (
        "https://d722-8090.dstack-base-prod7.phala.network")
    for app, domain in (("xyz", "example.com"), ("ab", "evil.com/path"), ("ab", "")):
        with pytest.raises(SourceError):
            app_rpc_url(app, domain)


# --------------------------------------------------------------------------------------------------------------------
# Recording and replay


def _fetch_everything(client: NetClient, server_url: str, ds: Dataset1) -> tuple[Any, ...]:
    att = fetch_attestations(client, ds.app_id, server_url + "/api/v1")
    return (
        att,
        fetch_info(client, server_url, kms_version=att.kms_info.version),
        fetch_info(client, server_url, kms_version=LEGACY_KMS_VERSION),
        fetch_kms_meta(client, server_url),
        fetch_acme_info(client, server_url),
        fetch_app_info(client, server_url),
    )


def test_record_then_replay_gives_identical_models(server: DstackServer, ds: Dataset1) -> None:
    recorder: list[Exchange] = []
    with NetClient(timeout=2.0, retries=0, recorder=recorder) as client:
        live = _fetch_everything(client, server.url, ds)
    assert len(recorder) == 6
    stored = [Exchange.model_validate_json(x.model_dump_json()) for x in recorder]  # as kept in the evidence
    server.stop()  # nothing below may reach the network
    replayed = _fetch_everything(ReplayClient(stored), server.url, ds)
    assert replayed == live
    with pytest.raises(SourceError) as info:
        fetch_attestations(ReplayClient(stored), "ab" * 20, server.cloud_base_url)
    assert info.value.kind == "offline" and "not in the recorded evidence" in one_line(info.value)
    with pytest.raises(SourceError) as info:
        fetch_kms_meta(NetClient(offline=True), "https://kms.example")
    assert info.value.kind == "offline" and "offline mode" in one_line(info.value)


# --------------------------------------------------------------------------------------------------------------------
# Combining sources and making evidence


def _all_sources(server: DstackServer, ds: Dataset1) -> dict[str, Any]:
    with NetClient(timeout=2.0, retries=0) as client:
        att, info, _legacy, meta, acme, app_info = _fetch_everything(client, server.url, ds)
    return {"cloud": att, "app_info": info, "kms_meta": meta, "acme_info": acme, "gateway_info": app_info}


def test_collect_combines_the_sources_per_entity(server: DstackServer, ds: Dataset1) -> None:
    s = _all_sources(server, ds)
    found = collect(s["cloud"], app_info=s["app_info"], kms_meta=s["kms_meta"], acme_info=s["acme_info"],
                    gateway_info=s["gateway_info"])
    app, kms, gateway = found["app"], found["kms"], found["gateway"]
    # app: quote and log from the Cloud instance; vm_config, certificate, compose, key provider from /prpc/Info
    assert app.quote_source is not None and app.quote_source.endswith("instances[0].quote")
    assert app.event_log_source is not None and app.event_log_source.endswith("instances[0].eventlog")
    assert app.vm_config == ds.app["vm_config"] and app.certificates_pem == ds.app_cert
    assert app.app_compose == STAND_IN_APP_COMPOSE and app.version == "dstack-0.5.3"
    assert app.key_provider is not None and app.key_provider.name == "kms" and len(app.sources) == 2
    assert app.notes == ()
    # KMS: the Cloud API's guest-agent info first, keys from KMS.GetMeta
    assert kms.quote_source is not None and "kms_guest_agent_info app_certificates[0].quote" in kms.quote_source
    assert kms.ca_pubkey is not None and kms.ca_pubkey.hex() == ds.kms_ca_pubkey
    assert kms.k256_pubkey is not None and kms.version == KMS_VERSION
    assert kms.app_compose == ds.kms["app_compose"] and kms.vm_config == ds.kms["vm_config"]
    # gateway: the ACME account quote first (as the Trust Center does), app info from the Cloud API
    assert gateway.quote_source is not None and gateway.quote_source.endswith("acme-info account_quote.quote")
    assert gateway.acme_account_uri == ACME_ACCOUNT_URI and len(gateway.acme_hist_keys) == 1
    assert gateway.app_compose == ds.gateway["app_compose"] and gateway.app_id == ds.gateway_app_id.lower()[2:]
    assert gateway.certificates_pem is None and gateway.other_certificates_pem == ds.gateway_tls_chain


def test_info_of_another_instance_is_not_combined(ds: Dataset1) -> None:
    att = parse_cloud_answer(json.dumps(ds.cloud_answer()).encode(), "saved.json")
    answer = ds.info_answer()
    answer["instance_id"] = "ee" * 20
    info = parse_info(json.dumps(answer).encode(), "info.json")
    app = collect(att, app_info=info)["app"]
    assert app.vm_config is None and app.certificates_pem is None and app.sources == ("saved.json",)
    assert app.notes == (f"not combined: info.json names instance id {'ee' * 20}, not {ds.instance_id}",)


def test_merge_takes_the_quote_and_its_log_together() -> None:
    a = EntityMaterial(entity="app", label="a", sources=("A",), event_log=[], event_log_source="A log")
    b = EntityMaterial(entity="app", label="b", sources=("B",), quote=b"q", quote_source="B quote",
                       event_log=[{"x": 1}], event_log_source="B log", app_compose="{}")
    merged = merge_materials([a, b])
    assert merged is not None
    assert (merged.quote, merged.event_log, merged.event_log_source) == (b"q", [{"x": 1}], "B log")
    assert merged.label == "a" and merged.sources == ("A", "B") and merged.app_compose == "{}"
    c = EntityMaterial(entity="app", label="c", sources=("C",), quote=b"q", quote_source="C quote")
    merged = merge_materials([c, b])
    assert merged is not None and merged.event_log_source == "B log"
    assert merged.notes == ("the event log comes from B log, not from the quote's source",)
    assert merge_materials([None, None]) is None


def _checks(items: list[Any]) -> dict[str, Any]:
    report = verify_evidence(items, VerifyOptions(now=NOW, anchor=load_anchor(None), offline=True))
    return {c.id: c for c in report.checks}


def test_to_evidence_is_accepted_by_the_verifier(server: DstackServer, ds: Dataset1) -> None:
    s = _all_sources(server, ds)
    evidence = to_evidence(**s)
    assert set(evidence) == {"app", "kms", "gateway"}
    assert [e.kind for e in evidence["app"]] == ["getquote", "app-compose", "certificate"]
    assert [e.kind for e in evidence["kms"]] == ["getquote", "app-compose"]
    assert [e.kind for e in evidence["gateway"]] == ["getquote", "app-compose"]
    getquote = evidence["gateway"][0]
    assert getquote.quote == ds.quote("gateway") and getquote.json["source"]["acme_account_uri"] == ACME_ACCOUNT_URI
    assert getquote.events == parse_event_log(ds.events("gateway"), "x")
    assert evidence["gateway"][1].data == ds.gateway["app_compose"].encode()  # the exact bytes
    assert evidence["app"][0].vm_config == ds.app["vm_config"]
    for entity, items in evidence.items():
        checks = _checks(items)
        for check_id in ("eventlog.replay", "eventlog.rtmr3_payloads", "hardware.quote_structure",
                         "hardware.quote_signature", "source.mr_config_id"):
            assert checks[check_id].status is CheckStatus.PASS, (entity, check_id, checks[check_id].summary)
    app = _checks(evidence["app"])
    assert app["binding.report_data"].status is CheckStatus.PASS  # the RA-TLS leaf from /prpc/Info
    assert app["source.compose_hash"].status is CheckStatus.FAIL  # the stand-in compose does not match: detected
    assert _checks(evidence["gateway"])["source.compose_hash"].status is CheckStatus.PASS


def test_to_evidence_per_instance_and_from_a_saved_answer_alone(ds: Dataset1) -> None:
    att = parse_cloud_answer(json.dumps(ds.cloud_answer()).encode(), "saved.json")
    for index in range(len(att.instances)):
        items = to_evidence(att, instance=index)
        assert set(items) == {"app", "kms", "gateway"}
        assert items["app"][0].name == f"app/instance-{index}/getquote.json"
        checks = _checks(items["app"])
        assert checks["eventlog.replay"].status is CheckStatus.PASS
        assert checks["eventlog.rtmr3_payloads"].status is CheckStatus.PASS
    assert [e.kind for e in to_evidence(att, instance=1)["app"]] == ["getquote", "app-compose"]
    with pytest.raises(IndexError):
        to_evidence(att, instance=2)


def test_app_info_alone_gives_the_quote_of_its_ra_tls_certificate(ds: Dataset1) -> None:
    info = parse_info(json.dumps(ds.info_answer()).encode(), "info.json")
    items = to_evidence(app_info=info)
    assert set(items) == {"app"}
    assert items["app"][0].json["source"]["quote_source"] == "info.json app_cert (RA-TLS leaf)"
    checks = _checks(items["app"])
    assert checks["eventlog.replay"].status is CheckStatus.PASS
    assert checks["binding.report_data"].status is CheckStatus.PASS


def test_an_agent_info_answer_is_an_agent_info(ds: Dataset1) -> None:
    info = parse_info(json.dumps(ds.info_answer()).encode(), "info.json")
    assert isinstance(info, AgentInfo)
    assert AgentInfo.model_validate_json(info.model_dump_json()) == info


# --------------------------------------------------------------------------------------------------------------------
# Versions (spec §4.1)


def test_version_rules() -> None:
    assert parse_kms_version("v0.5.3 (git:CA4AF023e974427e4153)") == ("v0.5.3", "ca4af023e974427e4153")
    assert parse_kms_version("0.5.8") == ("v0.5.8", None)
    assert parse_kms_version("v0.6.0-rc0 (git:abc123)") is None
    assert version_tuple("v0.6.0-rc0 (git:abc123)") == (0, 6, 0) and version_tuple("none") is None
    assert compare_versions((0, 5), (0, 5, 0)) == 0 and compare_versions((0, 5, 4, 1), (0, 5, 4)) == 1
    assert supports_info_endpoint("v0.5.0 (git:x)") and not supports_info_endpoint("v0.4.9")
    assert not supports_info_endpoint("garbage") and not supports_info_endpoint(None)
    assert supports_onchain_kms("v0.5.3 (git:ca4af023e974427e4153)") and not supports_onchain_kms("v0.5.2")
    assert supports_onchain_kms("v0.6.0-rc0 (git:abc123)")
    cases = {
        "dstack-0.5.3": ("dstack-0.5.3", "0.5.3", False, False),
        "dstack-dev-0.5.3": ("dstack-dev-0.5.3", "0.5.3", False, True),
        "dstack-nvidia-dev-0.5.4.1": ("dstack-nvidia-dev-0.5.4.1", "0.5.4.1", True, True),
        " vnvidia-0.5.5 ": ("dstack-nvidia-0.5.5", "0.5.5", True, False),
    }
    for label, (name, version, nvidia, dev) in cases.items():
        parsed = parse_image_version(label)
        assert (parsed.name, parsed.version, parsed.nvidia, parsed.dev, parsed.problem) == (
            name, version, nvidia, dev, None), label
    assert parse_image_version("0.5.3").problem == "does not start with dstack-"
    assert parse_image_version("0.5.3", require_prefix=False).problem is None
    assert parse_image_version("dstack-0.5.3 (git:abcdef1)").git_commit == "abcdef1"
    assert parse_image_version("dstack-latest").version is None
