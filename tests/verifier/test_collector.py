"""DataObjects and relationships from finished reports: the demo (one entity) and a saved Phala Cloud answer (three),
compared with the Trust Center's own output for the same deployment (debug-data-1, an older layout, §2.5)."""

from __future__ import annotations

import json
from datetime import UTC
from functools import cache
from typing import Any

import pytest
from dstack_verifier.collector import CHECKS_OF, MASKED, DataObjectCollector, collect, mask_sensitive
from dstack_verifier.demo import load_demo
from dstack_verifier.domain import check_certificate_key
from dstack_verifier.errors import InputError
from dstack_verifier.evidence import detect
from dstack_verifier.model import DataObject, Relationship, Report
from dstack_verifier.ratls import load_certificates, spki_der
from dstack_verifier.sources import EntityMaterial
from dstack_verifier.sources.cloud import KmsInfo
from dstack_verifier.verification import VerifyOptions, load_anchor, verify_evidence

from tests.support.cloud_server import Dataset1
from tests.support.fixtures import fixture_path

APP_IDS = {"app-cpu", "app-quote", "app-event-logs-imr0", "app-event-logs-imr1", "app-event-logs-imr2",
           "app-event-logs-imr3", "app-os", "app-os-code", "app-main", "app-code"}
QUOTE_FIELDS = ("tee_tcb_svn", "mrseam", "mrsignerseam", "seamattributes", "tdattributes", "xfam", "mrtd", "mrconfig",
                "mrowner", "mrownerconfig", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "reportdata")


@cache
def demo_report() -> Report:
    demo = load_demo()
    return verify_evidence(demo.app_items, VerifyOptions(now=demo.now, anchor=demo.anchor, offline=True))


@cache
def cloud_report() -> Report:
    answer = detect(json.dumps(Dataset1.load().cloud_answer()).encode(), "attestations.json")
    # Offline, no collateral, no image cache: what the saved answer alone establishes.
    return verify_evidence([answer], VerifyOptions(now=load_demo().now, anchor=load_anchor(None), offline=True))


@cache
def trust_center_objects() -> dict[str, dict[str, Any]]:
    path = fixture_path("trust-center", "debug-data-1.dataObjects.json")
    return {o["id"]: o for o in json.loads(path.read_text())}


def by_id(objects: list[DataObject]) -> dict[str, DataObject]:
    return {o.id: o for o in objects}


def assert_consistent(report: Report, objects: list[DataObject], relationships: list[Relationship]) -> None:
    """Ids unique; check ids name checks of the object's own entity; edges join existing objects through a field the
    source really has; no empty object."""
    ids = [o.id for o in objects]
    assert len(ids) == len(set(ids))
    present = {(c.entity, c.id) for c in report.checks}
    for obj in objects:
        assert obj.id.startswith(f"{obj.entity}-")
        assert obj.check_ids, obj.id
        assert all((obj.entity, c) in present for c in obj.check_ids), obj.id
        assert obj.fields, obj.id
    objs = by_id(objects)
    for edge in relationships:
        assert edge.source in objs and edge.target in objs, edge
        assert edge.source != edge.target
        assert not edge.field or edge.field in objs[edge.source].fields, edge
    assert len({(e.source, e.target, e.kind, e.field) for e in relationships}) == len(relationships)


# ---------------------------------------------------------------------------------------------------- the demo


def test_demo_objects_ids_fields_and_checks() -> None:
    report = demo_report()
    objects, relationships = collect(report)
    assert_consistent(report, objects, relationships)
    objs = by_id(objects)
    assert set(objs) == APP_IDS
    app = report.entities["app"]

    assert [objs["app-quote"].fields[k] for k in QUOTE_FIELDS] == [app["quote"][k] for k in QUOTE_FIELDS]
    assert objs["app-quote"].fields["tcb_status"] == "UpToDate"
    assert objs["app-cpu"].fields["verification_status"] == app["tcb"]["status"]
    assert objs["app-cpu"].fields["fmspc"] == app["pck"]["fmspc"]
    # Every hardware check concerns the quote; the TCB checks concern the CPU too.
    hardware = [c.id for c in report.checks if c.id.startswith("hardware.")]
    assert objs["app-quote"].check_ids == hardware
    assert "hardware.tcb_status" in objs["app-cpu"].check_ids
    assert "hardware.quote_signature" not in objs["app-cpu"].check_ids
    assert objs["app-event-logs-imr3"].check_ids == ["eventlog.replay", "eventlog.rtmr3_payloads"]
    assert objs["app-os"].check_ids == ["os.image_hash", "os.mrtd", "os.rtmr0", "os.rtmr1", "os.rtmr2"]
    assert objs["app-code"].check_ids == ["source.compose_hash", "source.mr_config_id", "source.onchain_registry"]

    # The event logs: one field per event, the compact JSON of that event, and the replayed and quoted registers.
    events = app["event_log"]["events"]
    for imr in range(4):
        fields = objs[f"app-event-logs-imr{imr}"].fields
        mine = [e for e in events if e["imr"] == imr]
        logged = [json.loads(v) for k, v in fields.items() if k.startswith("event_log_") or (imr == 3 and
                  k not in (f"replayed_rtmr{imr}", f"quoted_rtmr{imr}", "replay_match"))]
        assert logged == mine
        assert fields[f"replayed_rtmr{imr}"] == fields[f"quoted_rtmr{imr}"] == app["quote"][f"rtmr{imr}"]
        assert fields["replay_match"] is True
    assert json.loads(objs["app-event-logs-imr3"].fields["compose-hash"])["event_payload"] == \
        app["app_info"]["compose_hash"]

    # The raw evidence: the quote exactly as given, the compose text whose SHA-256 is the compose hash.
    demo = load_demo()
    quote = next(e.quote for e in demo.app_items if e.quote is not None)
    assert quote is not None
    assert objs["app-main"].fields["intel_attestation_report"] == "0x" + quote.hex()
    compose = next(e for e in demo.app_items if e.kind == "app-compose")
    assert objs["app-code"].fields["compose_file"] == compose.data.decode()
    assert objs["app-code"].fields["compose_hash"] == app["app_info"]["compose_hash"]
    assert objs["app-main"].fields["mr_aggregated"] == app["derived"]["mr_aggregated"]
    assert objs["app-main"].fields["app_cert"].count("BEGIN CERTIFICATE") == len(app["certificates"])
    assert objs["app-os"].fields["os"] == app["vm_config"]["image"]
    # dstack-0.6.0 and later are released from Dstack-TEE/dstack: the source shown is where the image comes from.
    assert objs["app-os-code"].fields["github_repo"] == "https://github.com/Dstack-TEE/dstack"
    assert objs["app-os"].fields["artifacts"].startswith("https://github.com/Dstack-TEE/dstack/releases/")
    assert objs["app-os"].fields["expected_mrtd"] == app["measurement"]["mrtd"]
    assert json.loads(objs["app-os"].fields["vm_config"]) == app["vm_config"]


def test_demo_relationships_follow_the_trust_center_edge_list() -> None:
    _, relationships = collect(demo_report())
    edges = {(e.source, e.target, e.field) for e in relationships}
    assert {e.kind for e in relationships} == {"measured-by"}
    expected = {
        ("app-quote", "app-cpu", ""),
        ("app-main", "app-quote", "intel_attestation_report"),
        *{("app-quote", f"app-event-logs-imr{n}", f"rtmr{n}") for n in range(4)},
        *{("app-quote", "app-os", r) for r in ("mrtd", "rtmr0", "rtmr1", "rtmr2")},
        ("app-event-logs-imr3", "app-os", "os-image-hash"),
        ("app-os", "app-os-code", "artifacts"),
        ("app-event-logs-imr3", "app-code", "compose-hash"),
    }
    assert edges == expected


def test_a_bare_quote_makes_no_empty_objects() -> None:
    demo = load_demo()
    quote = next(e for e in demo.app_items if e.quote is not None)
    assert quote.quote is not None
    bare = detect(quote.quote.hex().encode(), "quote.hex")
    report = verify_evidence([bare], VerifyOptions(now=demo.now, anchor=demo.anchor, offline=True))
    objects, relationships = collect(report)
    assert_consistent(report, objects, relationships)
    objs = by_id(objects)
    # Nothing but the quote: no event logs, OS, compose; the main object holds the quote itself.
    assert set(objs) == {"app-cpu", "app-quote", "app-main"}
    assert set(objs["app-main"].fields) == {"intel_attestation_report"}
    assert objs["app-cpu"].fields["verification_status"] == "not evaluated"  # no collateral
    assert {(e.source, e.target) for e in relationships} == {("app-quote", "app-cpu"), ("app-main", "app-quote")}


# ------------------------------------------------------------------------------------------- three entities


def test_cloud_answer_ids_match_the_trust_center() -> None:
    report = cloud_report()
    objects, relationships = collect(report)
    assert_consistent(report, objects, relationships)
    tc = trust_center_objects()
    ours = by_id(objects)
    # The same deployment: the same 29 objects (no app-code: the answer has no compose for the app, as in §2.5).
    assert set(ours) == set(tc)
    assert [o.entity for o in objects] == ["app"] * 9 + ["kms"] * 10 + ["gateway"] * 10
    for oid, theirs in tc.items():
        assert ours[oid].entity == theirs["kind"]
        assert ours[oid].name.lower() == theirs["name"].lower(), oid
        if oid.endswith("-quote") or "-event-logs-" in oid:
            # Same values, same field names, same JSON text of every event.
            assert {k: ours[oid].fields[k] for k in theirs["fields"]} == theirs["fields"], oid
    for oid in ("app-main", "gateway-main"):
        for key in ("app_id", "instance_id", "compose_hash", "mr_aggregated", "os_image_hash"):
            if key in tc[oid]["fields"]:
                assert ours[oid].fields[key].lower() == tc[oid]["fields"][key].lower(), (oid, key)
        assert ours[oid].fields["intel_attestation_report"] == tc[oid]["fields"]["intel_attestation_report"]
    assert ours["kms-main"].fields["gateway_app_id"].lower() == tc["kms-main"]["fields"]["gateway_app_id"].lower()
    assert ours["kms-main"].fields["registry_smart_contract"] == tc["kms-main"]["fields"]["registry_smart_contract"]
    assert ours["kms-main"].fields["blockchain"] == tc["kms-main"]["fields"]["blockchain"]
    assert ours["gateway-main"].fields["endpoint"] == tc["gateway-main"]["fields"]["endpoint"]
    assert ours["gateway-main"].fields["guarded_domain"] == "*.dstack-base-prod7.phala.network"
    assert ours["gateway-code"].fields["compose_file"] == tc["gateway-code"]["fields"]["compose_file"]
    assert ours["kms-os-code"].fields["git_commit"] == tc["kms-os-code"]["fields"]["git_commit"]
    # The Trust Center's osSource repository (§4.3) for a 0.5.3 image; debug-data-1 predates it (§2.5).
    assert ours["app-os-code"].fields["github_repo"] == "https://github.com/Dstack-TEE/meta-dstack"
    for oid in ("app-os", "kms-os", "gateway-os"):
        assert ours[oid].fields["os"] == tc[oid]["fields"]["os"]


def test_cloud_answer_checks_and_cross_entity_links() -> None:
    report = cloud_report()
    objects, relationships = collect(report)
    objs = by_id(objects)
    # The KMS's placeholder compose fails its check: the failing check is named on kms-code, not on gateway-code.
    failed = {(c.entity, c.id) for c in report.checks if c.status == "fail"}
    assert ("kms", "source.compose_hash") in failed
    assert "source.compose_hash" in objs["kms-code"].check_ids
    assert objs["kms-code"].fields["compose_hash"] != json.loads(
        objs["kms-event-logs-imr3"].fields["compose-hash"])["event_payload"]
    assert objs["gateway-code"].fields["compose_hash"] == json.loads(
        objs["gateway-event-logs-imr3"].fields["compose-hash"])["event_payload"]
    cross = {(e.source, e.target, e.field) for e in relationships if e.kind == "root-of-trust"}
    # The gateway's app id is the one the KMS names: a field-level edge. The KMS CA key is not in this answer,
    # so the KMS → app edge is object-level.
    assert cross == {("kms-main", "gateway-main", "gateway_app_id"), ("kms-main", "app-main", "")}
    # Per entity, the same intra-entity edges.
    for entity in ("app", "kms", "gateway"):
        mine = {(e.source.split("-", 1)[1], e.target.split("-", 1)[1], e.field) for e in relationships
                if e.kind == "measured-by" and e.source.startswith(entity + "-")}
        assert ("main", "quote", "intel_attestation_report") in mine
        # The KMS's RTMR3 log has no os-image-hash event (7 events, §2.5): its OS object is linked as a whole.
        os_link = "" if entity == "kms" else "os-image-hash"
        assert ("event-logs-imr3", "os", os_link) in mine
        assert (("event-logs-imr3", "code", "compose-hash") in mine) == (f"{entity}-code" in objs)


def test_gateway_domain_from_a_domain_check() -> None:
    report = cloud_report()
    dataset = json.loads(fixture_path("trust-center", "dataset1-gateway.json").read_text())
    chain = load_certificates(dataset["main_fields"]["app_cert"], "dataset1-gateway app_cert")
    mid = chain[0].not_valid_before_utc + (chain[0].not_valid_after_utc - chain[0].not_valid_before_utc) / 2
    check = check_certificate_key(chain, [spki_der(chain[0])], [chain[-1]], "dstack-base-prod7.phala.network",
                                  mid.astimezone(UTC))
    # Offline, the report's domain checks were skipped (no acme-info): put a real certificate-key check in.
    checks = [c for c in report.checks if (c.entity, c.id) != ("gateway", check.id)]
    with_domain = report.model_copy(update={"checks": [*checks, check]})
    objects, relationships = collect(with_domain)
    assert_consistent(with_domain, objects, relationships)
    domain = by_id(objects)["gateway-domain"]
    assert domain.name == "Domain Verification"
    assert domain.check_ids == [c.id for c in with_domain.checks if c.entity == "gateway" and c.phase == "domain"]
    assert "tee_controlled" not in domain.fields  # its check was skipped: no verdict is made up
    assert domain.fields["domain"] == "dstack-base-prod7.phala.network"
    assert json.loads(domain.fields["active_certificate"])["subject"] == chain[0].subject.rfc4514_string()
    # gateway-main has no TLS chain in this answer: the edge joins the objects as a whole.
    assert Relationship(source="gateway-main", target="gateway-domain", kind="measured-by", field="") in relationships
    # With only skipped domain checks there is no gateway-domain object at all.
    assert "gateway-domain" not in by_id(collect(report)[0])


# ---------------------------------------------------------------------------------------------------- masking


def test_masking_hides_the_docker_compose_file_only() -> None:
    objects, _ = collect(demo_report())
    before = [o.model_copy(deep=True) for o in objects]
    masked = mask_sensitive(objects)
    assert [o.model_dump() for o in objects] == [o.model_dump() for o in before]  # originals untouched
    code = by_id(masked)["app-code"]
    doc = json.loads(code.fields["compose_file"])
    original = json.loads(by_id(objects)["app-code"].fields["compose_file"])
    assert doc["docker_compose_file"] == MASKED
    assert {k: v for k, v in doc.items() if k != "docker_compose_file"} == \
        {k: v for k, v in original.items() if k != "docker_compose_file"}
    assert code.fields["compose_file"] == json.dumps(doc, separators=(",", ":"))  # compact, as JSON.stringify
    assert code.fields["masked"] is True
    assert "services:" not in json.dumps([o.model_dump() for o in masked])
    # Every other object is exactly as it was.
    assert [o for o in masked if o.id != "app-code"] == [o for o in objects if o.id != "app-code"]


def test_masking_leaves_unparseable_and_compose_without_docker_file_alone() -> None:
    objects = [
        DataObject(id="app-code", name="APP Code", entity="app", fields={"compose_file": "{not json"}),
        DataObject(id="kms-code", name="KMS Code", entity="kms",
                   fields={"compose_file": '{"manifest_version": 1, "name": "kms"}'}),
        DataObject(id="gateway-code", name="GATEWAY Code", entity="gateway",
                   fields={"compose_file": '{"docker_compose_file": ""}'}),
    ]
    assert mask_sensitive(objects) == objects


# ------------------------------------------------------------------------------------------ determinism, input


def test_collection_is_deterministic_and_survives_a_json_round_trip() -> None:
    report = cloud_report()
    first = collect(report)
    again = collect(Report.model_validate_json(report.to_json()))
    assert [o.model_dump() for o in first[0]] == [o.model_dump() for o in again[0]]
    assert first[1] == again[1]


def test_a_report_given_as_evidence_yields_the_same_objects() -> None:
    demo = load_demo()
    report = demo_report()
    rerun = verify_evidence([detect(report.to_json().encode(), "report.json")],
                            VerifyOptions(now=demo.now, anchor=demo.anchor, offline=True))
    assert collect(rerun) == collect(report)


def test_duplicate_event_names_never_overwrite_and_checks_follow_the_table() -> None:
    events = [{"imr": 3, "event_type": 134217729, "digest": "", "event": name, "event_payload": payload}
              for name, payload in (("app-id", "aa"), ("app-id", "bb"), ("replay_match", "cc"), ("", "dd"))]
    collector = DataObjectCollector()
    collector.add_entity("kms", {"event_log": {"events": events}}, [])
    obj = by_id(collector.objects())["kms-event-logs-imr3"]
    assert [json.loads(v)["event_payload"] for v in obj.fields.values()] == ["aa", "bb", "cc", "dd"]
    assert list(obj.fields) == ["app-id", "app-id#2", "replay_match", "event_log_3"]
    assert set(by_id(collector.objects())) == {"kms-cpu", "kms-quote", "kms-event-logs-imr3"}
    assert all(patterns for patterns in CHECKS_OF.values())


def test_kms_links_are_field_level_when_the_keys_agree() -> None:
    ca = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d03010703420004") + bytes(range(64))
    quote = load_demo().app_items[0].quote
    kms = EntityMaterial(entity="kms", label="kms", quote=quote, ca_pubkey=ca)
    gateway = EntityMaterial(entity="gateway", label="gateway", quote=quote)
    collector = DataObjectCollector(KmsInfo(gateway_app_id="55" * 20))
    collector.add_entity("kms", {}, [], kms)
    for entity, app_id, material in (("app", "aa" * 20, None), ("gateway", "55" * 20, gateway)):
        info = {"app_id": app_id, "key_provider": {"name": "kms", "id": ca.hex()}}
        collector.add_entity(entity, {"app_info": info}, [], material)
    links = {(e.target, e.field) for e in collector.relationships() if e.kind == "root-of-trust"}
    assert links == {("app-main", "cert_pubkey"), ("gateway-main", "cert_pubkey"), ("gateway-main", "gateway_app_id")}
    # A KMS with another CA key: the app is still governed by a KMS, but no field links them.
    other = DataObjectCollector()
    other.add_entity("kms", {}, [], kms.model_copy(update={"ca_pubkey": bytes(91)}))
    other.add_entity("app", {"app_info": {"app_id": "aa" * 20, "key_provider": {"name": "kms", "id": ca.hex()}}}, [])
    assert [(e.target, e.field) for e in other.relationships() if e.kind == "root-of-trust"] == [("app-main", "")]


@pytest.mark.parametrize("value", ["not base64!", "AAAA"])
def test_a_malformed_certificate_in_a_report_is_a_one_line_error(value: str) -> None:
    collector = DataObjectCollector()
    with pytest.raises(InputError) as err:
        collector.add_entity("app", {"certificates": [value]}, [])
    assert "entities.app.certificates[0]" in str(err.value) and "\n" not in str(err.value)


def test_the_three_entity_demo_has_every_entity_and_the_kms_links() -> None:
    demo = load_demo()
    report = verify_evidence(demo.items, demo.options())
    ids = {o.id for o in report.data_objects}
    for entity in ("app", "kms", "gateway"):
        assert {f"{entity}-cpu", f"{entity}-quote", f"{entity}-main", f"{entity}-os", f"{entity}-code"} <= ids
        assert {f"{entity}-event-logs-imr{i}" for i in range(4)} <= ids
    assert "gateway-domain" in ids
    kinds = {(r.source, r.target, r.kind) for r in report.relationships}
    assert ("kms-main", "app-main", "root-of-trust") in kinds or any(
        s.startswith("kms-") and t.startswith("app-") for s, t, _ in kinds)
    assert any(s.startswith("kms-") and t.startswith("gateway-") for s, t, _ in kinds)
    by_id = {o.id: o for o in report.data_objects}
    checked = {(c.entity, c.id) for c in report.checks}
    assert all((o.entity, i) in checked for o in by_id.values() for i in o.check_ids)


def test_the_side_answers_fill_the_objects_and_the_verified_instance_is_shown() -> None:
    """The KMS's GetMeta keys and the gateway's TLS chain (acme-info), given beside the Cloud answer, fill kms-main
    and gateway-main, so the KMS → App edge names cert_pubkey; with two instances and the app's /prpc/Info about the
    second, app-main shows the second (the one verified in full)."""
    demo = load_demo()
    meta = json.loads(next(e for e in demo.items if e.kind == "kms-meta").data)["bootstrap_info"]
    report = verify_evidence(demo.items, demo.options())
    kms = next(o for o in report.data_objects if o.id == "kms-main")
    assert kms.fields["cert_pubkey"] == "0x" + meta["ca_pubkey"] and kms.fields["wallet_pubkey"] == "0x" + meta[
        "k256_pubkey"]
    assert next(o for o in report.data_objects if o.id == "gateway-main").fields["app_cert"].startswith("-----BEGIN")
    assert Relationship(source="kms-main", target="app-main", kind="root-of-trust", field="cert_pubkey") in \
        report.relationships

    cloud = next(e for e in demo.items if e.kind == "cloud-attestations")
    answer = json.loads(cloud.data)
    first = answer["instances"][0]
    answer["instances"].insert(0, {**json.loads(json.dumps(first)), "instance_id": "ef" * 20, "name": "other"})
    items = [detect(json.dumps(answer).encode(), cloud.name), *(e for e in demo.items if e is not cloud)]
    two = verify_evidence(items, demo.options())
    assert two.entities["app"]["cloud_instance"] == 1  # the /prpc/Info answered for the instance now second
    assert next(o for o in two.data_objects if o.id == "app-main").fields["instance_id"] == first["instance_id"]


def test_objects_say_what_they_compute_and_only_that() -> None:
    objects = {o.id: o for o in demo_report().data_objects}
    code = objects["app-code"].calculations
    assert [(c.inputs, c.function, c.outputs) for c in code] == [(["compose_file"], "sha256", ["compose_hash"])]
    replay = objects["app-event-logs-imr3"].calculations[0]
    assert (replay.inputs, replay.function, replay.outputs) == (["*"], "replay_rtmr", ["replayed_rtmr3"])
    assert objects["app-quote"].calculations == []  # decoded, not computed
    # An object whose computed fields are absent claims no calculation for them.
    from dstack_verifier.collector import _calculations

    assert _calculations("code", {"github_repo": "x"}) == []
    assert _calculations("event-logs-imr2", {"event_log_0": "{}"}) == []


def test_edges_name_the_field_they_vouch_for_when_there_is_one() -> None:
    rels = demo_report().relationships
    assert Relationship(source="app-quote", target="app-os", kind="measured-by", field="rtmr1",
                        target_field="expected_rtmr1") in rels
    assert Relationship(source="app-event-logs-imr3", target="app-code", kind="measured-by", field="compose-hash",
                        target_field="compose_hash") in rels
    assert Relationship(source="app-quote", target="app-cpu", kind="measured-by") in rels  # the object as a whole
