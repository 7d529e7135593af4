"""The DataObjects of a verification: the Trust Center's objects and ids, and the edges between them.

One :class:`DataObjectCollector` per verification. Each verified entity adds its objects (trust-center.md §2.2, ``P``
= app | kms | gateway): ``P-cpu``, ``P-quote``, ``P-event-logs-imr0..3``, ``P-os``, ``P-os-code``, ``P-main``,
``P-code`` and, for the gateway, ``gateway-domain``. Field names are the Trust Center's; where we know more (the
replayed and the quoted register of each event log, the TCB status and advisories, the calculated compose hash) an
extra field says so. An object exists only when the evidence had something for it, except that a verified entity
always has its ``P-cpu`` and ``P-quote``. Each object lists the ids of the checks that concern it (:data:`CHECKS_OF`);
its ``kind`` is the component (``cpu``, ``quote``, ``event-logs-imr3``, ``main``…).

A :class:`~dstack_verifier.model.Relationship` reads "``source`` vouches for ``target``" (the Trust Center's
``measuredBy`` on the target, §2.4); ``field`` names the field of the source that links them (empty: the whole
object). Unlike the Trust Center, an edge is only made between objects that exist.

:func:`collect` builds everything from a finished :class:`~dstack_verifier.model.Report` (its entities, its checks,
and the raw quote, app-compose and source claims re-read from its recorded inputs). Pure: no Qt, no network.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import ValidationError

from .errors import InputError
from .evidence import Evidence, replay_inputs
from .measure.download import GITHUB_BASE_URL, image_urls
from .model import Calculation, Check, CheckStatus, DataObject, Entity, Relationship, Report
from .onchain import OnchainInputError, chain_config
from .sources import ENTITIES, EntityMaterial, parse_image_version, parse_kms_version
from .sources import collect as collect_materials
from .sources.cloud import KmsInfo, parse_cloud_answer

MEASURED_BY = "measured-by"
ROOT_OF_TRUST = "root-of-trust"  # the KMS holds the keys the app and the gateway boot with (§2.2 kms-main)
MASKED = "[MASKED]"
_HARDWARE_ONLY = (
    "hardware.pck_chain",
    "hardware.collateral_signatures",
    "hardware.revocation",
    "hardware.tcb_status",
    "hardware.collateral_freshness",
    "hardware.reference_engine",
)

# Which of our checks concern each object (component → check ids; "phase.*" is every check of that prefix).
CHECKS_OF: Mapping[str, tuple[str, ...]] = {
    "cpu": _HARDWARE_ONLY,
    "quote": ("hardware.*",),
    "event-logs-imr0": ("eventlog.replay",),
    "event-logs-imr1": ("eventlog.replay",),
    "event-logs-imr2": ("eventlog.replay",),
    "event-logs-imr3": ("eventlog.replay", "eventlog.rtmr3_payloads"),
    "os": ("os.*",),
    "os-code": ("os.image_hash",),
    "main": ("binding.report_data", "source.mr_config_id", "source.onchain_registry", "source.kms_key_provider",
             "source.gateway_app_id", "source.other_instances"),
    "code": ("source.compose_hash", "source.mr_config_id", "source.onchain_registry"),
    "domain": ("domain.*",),
    "gpu": ("gpu.attestation",),
    "gpu-quote": ("gpu.*",),
}

_QUOTE_HEADER = ("version", "attestation_key_type", "tee_type", "qe_svn", "pce_svn", "qe_vendor_id", "user_data",
                 "body_kind", "body_type")
_QUOTE_TAIL = ("signed_length", "quote_length", "trailing_bytes", "qe_report", "qe_auth_data", "cert_data_type",
               "attestation_key")
_SECURITY_FEATURE = {"TDX": "Intel Trust Domain Extensions (TDX)", "SGX": "Intel Software Guard Extensions (SGX)"}
_MAIN_NAME = {"app": "App", "kms": "KMS", "gateway": "Gateway"}
_OS_REGISTERS = ("mrtd", "rtmr0", "rtmr1", "rtmr2")


def _compact(value: Any) -> str:
    """JSON the way the Trust Center writes its string fields (JavaScript's JSON.stringify)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _put(fields: dict[str, Any], name: str, value: Any) -> None:
    """Set a field unless the value is absent; a name already taken gets a numbered suffix (event names are chosen
    by the guest, so one must never overwrite another field, as duplicates do in the Trust Center)."""
    if value is None or value == "" or value == []:
        return
    key, n = name, 1
    while key in fields:
        n += 1
        key = f"{name}#{n}"
    fields[key] = value


def _hex0x(value: str | bytes | None) -> str | None:
    if value is None or value == "":
        return None
    text = value.hex() if isinstance(value, bytes) else value
    return text if text.startswith("0x") else "0x" + text


def _explorer_url(chain_id: int | None, address: str | None) -> str | None:
    if not chain_id or not address:
        return None
    try:
        chain = chain_config(chain_id)
    except OnchainInputError:
        return None
    return f"{chain.explorer}/address/{_hex0x(address)}" if chain.explorer else None


def _mapping(part: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A sub-dict of a report's entity; anything else (a report read from a file is untrusted) counts as absent."""
    value = part.get(key)
    return value if isinstance(value, Mapping) else {}


def _pem_chain(entity: Entity, der_b64: Any) -> str | None:
    if not isinstance(der_b64, list):
        return None
    pems = []
    for i, item in enumerate(der_b64):
        try:
            pems.append(x509.load_der_x509_certificate(base64.b64decode(item, validate=True)).public_bytes(
                Encoding.PEM).decode())
        except (TypeError, ValueError):  # binascii.Error is a ValueError
            raise InputError("not a base64 DER certificate", source="report",
                             field=f"entities.{entity}.certificates[{i}]") from None
    return "".join(pems) or None


def _registered(checks: Sequence[Check]) -> bool | None:
    """The Trust Center's ``is_registered``: known only when the on-chain check ran."""
    status = next((c.status for c in checks if c.id == "source.onchain_registry"), None)
    return {CheckStatus.PASS: True, CheckStatus.FAIL: False}.get(status) if status is not None else None


class DataObjectCollector:
    """The objects and edges of one verification. ``kms_info`` is the Phala Cloud answer's ``kms_info`` (the chain,
    contracts and endpoints of the KMS and gateway), when the evidence came from there."""

    def __init__(self, kms_info: KmsInfo | None = None) -> None:
        self._kms_info = kms_info
        self._objects: dict[str, DataObject] = {}
        self._edges: dict[tuple[str, str, str, str], Relationship] = {}

    # -- reading --------------------------------------------------------------------------------------------------

    def objects(self) -> list[DataObject]:
        return list(self._objects.values())

    def relationships(self) -> list[Relationship]:
        """The edges of every entity, then the KMS's to the gateway and the app (§2.2 cross-verifier links)."""
        return [*self._edges.values(), *self._kms_links()]

    # -- building -------------------------------------------------------------------------------------------------

    def add_entity(self, entity: Entity, part: Mapping[str, Any], checks: Sequence[Check],
                   material: EntityMaterial | None = None) -> None:
        """The objects of one verified entity: ``part`` is ``report.entities[entity]``, ``checks`` the report's checks
        (those of other entities are ignored), ``material`` what the sources said (raw quote, compose, claims)."""
        own = [c for c in checks if c.entity == entity]
        quote, tcb, pck = _mapping(part, "quote"), _mapping(part, "tcb"), _mapping(part, "pck")
        self._add(entity, "cpu", f"{entity.upper()} TEE Hardware", self._cpu_fields(quote, tcb, pck), own, force=True)
        self._add(entity, "quote", f"{entity.upper()} Attestation Report", self._quote_fields(quote, tcb), own,
                  force=True)
        self._edge(f"{entity}-quote", f"{entity}-cpu")
        self._add_event_logs(entity, part, own)
        self._add_os(entity, part, own, material)
        self._add(entity, "main", _MAIN_NAME[entity], self._main_fields(entity, part, own, material), own)
        self._edge(f"{entity}-main", f"{entity}-quote", "intel_attestation_report")
        self._add(entity, "code", f"{entity.upper()} Code", self._code_fields(part, own, material), own)
        self._edge(f"{entity}-event-logs-imr3", f"{entity}-code", "compose-hash", target_field="compose_hash")
        if entity == "gateway":
            self._add(entity, "domain", "Domain Verification", self._domain_fields(own), own)
            self._edge("gateway-main", "gateway-domain", "app_cert")
        self._add_gpu(entity, own)

    def _add_gpu(self, entity: Entity, checks: Sequence[Check]) -> None:
        """The GPUs and their attestation report (§2.2 P-gpu, P-gpu-quote), when GPU evidence was verified. Only what
        the evidence and NRAS said: no model, switch or memory is made up (the Trust Center hardcoded them)."""
        attested = next((c.details for c in checks if c.id == "gpu.attestation"), None)
        tied = next((c.details for c in checks if c.id == "gpu.td_binding"), {})
        if not attested or "nonce" not in attested:
            return
        evidence = [e for e in attested.get("evidence") or [] if isinstance(e, Mapping)]
        archs = sorted({str(e["arch"]) for e in evidence if e.get("arch")})
        report: dict[str, Any] = {}
        _put(report, "nonce", attested.get("nonce"))
        _put(report, "request_nonce", tied.get("request_nonce"))
        _put(report, "signing_address", tied.get("signing_address"))
        _put(report, "evidence_list", _compact(evidence) if evidence else None)
        _put(report, "arch", ", ".join(archs) or None)
        self._add(entity, "gpu-quote", "GPU Attestation Report", report, checks)
        gpu: dict[str, Any] = {}
        _put(gpu, "manufacturer", "NVIDIA Corporation")
        _put(gpu, "arch", ", ".join(archs) or None)
        _put(gpu, "gpus", len(evidence) or None)
        _put(gpu, "security_feature", "Confidential Computing mode")
        _put(gpu, "nras_result", _mapping(attested, "overall").get("x-nvidia-overall-att-result"))
        self._add(entity, "gpu", f"{entity.upper()} TEE GPU", gpu, checks)
        self._edge(f"{entity}-gpu-quote", f"{entity}-gpu")
        self._edge(f"{entity}-main", f"{entity}-gpu-quote", "nvidia_attestation_report")

    def _add(self, entity: Entity, component: str, name: str, fields: dict[str, Any], checks: Sequence[Check], *,
             force: bool = False) -> None:
        if not fields and not force:  # no empty shells: the evidence had nothing for this object
            return
        wanted = CHECKS_OF[component]
        check_ids = [c.id for c in checks if any(c.id == w or (w.endswith("*") and c.id.startswith(w[:-1]))
                                                 for w in wanted)]
        oid = f"{entity}-{component}"
        self._objects[oid] = DataObject(id=oid, name=name, entity=entity, kind=component, fields=fields,
                                        check_ids=list(dict.fromkeys(check_ids)),
                                        calculations=_calculations(component, fields))

    def _edge(self, source: str, target: str, field: str = "", kind: str = MEASURED_BY, target_field: str = "") -> None:
        if source in self._objects and target in self._objects:
            if field not in self._objects[source].fields:
                field = ""  # the source lacks the linking field here: the edge is between the objects as a whole
            if target_field not in self._objects[target].fields:
                target_field = ""
            self._edges.setdefault((source, target, kind, field),
                                   Relationship(source=source, target=target, kind=kind, field=field,
                                                target_field=target_field))

    @staticmethod
    def _cpu_fields(quote: Mapping[str, Any], tcb: Mapping[str, Any], pck: Mapping[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        _put(fields, "manufacturer", "Intel Corporation")
        _put(fields, "security_feature", _SECURITY_FEATURE.get(quote.get("tee_type", "")))
        _put(fields, "verification_status", tcb.get("status") or "not evaluated")
        _put(fields, "advisory_ids", list(tcb.get("advisory_ids") or []))
        for key in ("fmspc", "cpu_svn", "pce_svn", "pce_id", "sgx_type_name", "ca_type"):
            _put(fields, key, pck.get(key))
        return fields

    @staticmethod
    def _quote_fields(quote: Mapping[str, Any], tcb: Mapping[str, Any]) -> dict[str, Any]:
        fields = {k: v for k, v in quote.items() if k not in _QUOTE_HEADER and k not in _QUOTE_TAIL}
        for key in ("version", "tee_type", "body_kind", "qe_svn", "pce_svn"):
            _put(fields, key, quote.get(key))
        _put(fields, "tcb_status", tcb.get("status"))
        _put(fields, "advisory_ids", list(tcb.get("advisory_ids") or []))
        return fields

    def _add_event_logs(self, entity: Entity, part: Mapping[str, Any], checks: Sequence[Check]) -> None:
        events = _mapping(part, "event_log").get("events")
        events = [e for e in events if isinstance(e, Mapping)] if isinstance(events, list) else []
        replay = next((c.details for c in checks if c.id == "eventlog.replay"), {})
        for imr in range(4):
            mine = [e for e in events if e.get("imr") == imr]
            if not mine:
                continue
            register = _mapping(_mapping(replay, "registers"), f"rtmr{imr}")
            fields: dict[str, Any] = {}
            for i, event in enumerate(mine):
                # RTMR3 runtime events are named after themselves (as the Trust Center does); the others are numbered.
                name = event.get("event") if imr == 3 and isinstance(event.get("event"), str) else ""
                _put(fields, name or f"event_log_{i}", _compact(event))
            _put(fields, f"replayed_rtmr{imr}", register.get("replayed"))
            _put(fields, f"quoted_rtmr{imr}", register.get("quoted"))
            _put(fields, "replay_match", register.get("match"))
            component = f"event-logs-imr{imr}"
            self._add(entity, component, f"Event Logs for RTMR{imr}", fields, checks)
            self._edge(f"{entity}-quote", f"{entity}-{component}", f"rtmr{imr}", target_field=f"replayed_rtmr{imr}")

    def _os_name(self, entity: Entity, part: Mapping[str, Any], material: EntityMaterial | None) -> str | None:
        vm = _mapping(part, "vm_config")
        if isinstance(vm.get("image"), str):
            return vm["image"]
        if entity == "app":
            return material.version if material is not None else None
        # The KMS and gateway run the OS of their KMS release (§3.2): "dstack-X.Y.Z" from the KMS version.
        version = self._kms_info.version_number if self._kms_info is not None else None
        return f"dstack-{version.removeprefix('v')}" if version else None

    def _add_os(self, entity: Entity, part: Mapping[str, Any], checks: Sequence[Check],
                material: EntityMaterial | None) -> None:
        vm = _mapping(part, "vm_config")
        measurement = _mapping(part, "measurement")
        os_name = self._os_name(entity, part, material)
        fields: dict[str, Any] = {}
        _put(fields, "os", os_name)
        _put(fields, "artifacts", _release_url(os_name))
        _put(fields, "vm_config", _compact(vm) if vm else None)
        _put(fields, "os_image_hash", vm.get("os_image_hash") or _mapping(part, "app_info").get("os_image_hash"))
        for register in _OS_REGISTERS:  # what the OS phase recomputed, to read against the quote's registers
            _put(fields, f"expected_{register}", measurement.get(register))
        _put(fields, "measurement_path", measurement.get("path"))
        _put(fields, "acpi_source", measurement.get("acpi_source"))
        _put(fields, "mrtd_variant", measurement.get("mrtd_variant"))
        inputs = _mapping(measurement, "inputs")
        for key in ("memory_size", "cpu_count", "qemu_version"):  # the VM shape the registers were computed for
            _put(fields, key, inputs.get(key))
        image = next((c.details for c in checks if c.id == "os.image_hash"), {})
        _put(fields, "is_dev", image.get("is_dev"))
        files = [f.get("name") for f in image.get("files") or [] if isinstance(f, Mapping)]
        _put(fields, "image_files", ", ".join(str(n) for n in files if n) or None)
        self._add(entity, "os", f"{entity.upper()} OS", fields, checks)
        for register in _OS_REGISTERS:
            self._edge(f"{entity}-quote", f"{entity}-os", register, target_field=f"expected_{register}")
        self._edge(f"{entity}-event-logs-imr3", f"{entity}-os", "os-image-hash", target_field="os_image_hash")

        code: dict[str, Any] = {}
        if os_name is not None:
            parsed = parse_image_version(os_name, require_prefix=False)
            _put(code, "github_repo", _repository_of(fields.get("artifacts")))
            _put(code, "version", os_name)
            _put(code, "git_commit", parsed.git_commit or self._kms_commit(entity))
        self._add(entity, "os-code", f"{entity.upper()} OS Code", code, checks)
        self._edge(f"{entity}-os", f"{entity}-os-code", "artifacts" if "artifacts" in fields else "os")

    def _kms_commit(self, entity: Entity) -> str | None:
        """The KMS and gateway images are those of the KMS release, whose version names its commit (§1.2)."""
        if entity == "app" or self._kms_info is None or not self._kms_info.version:
            return None
        parsed = parse_kms_version(self._kms_info.version)
        return parsed[1] if parsed is not None else None

    def _main_fields(self, entity: Entity, part: Mapping[str, Any], checks: Sequence[Check],
                     material: EntityMaterial | None) -> dict[str, Any]:
        info, derived = _mapping(part, "app_info"), _mapping(part, "derived")
        key_provider = _mapping(info, "key_provider")
        kms = self._kms_info
        chain_id = kms.chain_id if kms is not None else None
        app_id = info.get("app_id") or (material.app_id if material is not None else None)
        fields: dict[str, Any] = {}
        if entity == "kms":
            _put(fields, "blockchain", _chain_name(chain_id))
            _put(fields, "registry_smart_contract", _explorer_url(chain_id, kms.contract_address if kms else None))
            _put(fields, "wallet_pubkey", _hex0x(material.k256_pubkey if material is not None else None))
            _put(fields, "cert_pubkey", _hex0x(material.ca_pubkey if material is not None else None))
            _put(fields, "gateway_app_id", _hex0x(kms.gateway_app_id if kms is not None else None))
            _put(fields, "endpoint", kms.url if kms is not None else None)
            _put(fields, "version", kms.version if kms is not None else None)
            _put(fields, "app_id", app_id)
        elif entity == "gateway":
            _put(fields, "app_id", _hex0x(app_id))
            _put(fields, "registry_smart_contract", _explorer_url(chain_id, app_id))
            endpoint = kms.gateway_app_url if kms is not None else None
            _put(fields, "endpoint", endpoint)
            _put(fields, "guarded_domain", _guarded_domain(endpoint))
        else:
            _put(fields, "app_id", app_id)
            _put(fields, "instance_id", info.get("instance_id") or (material.instance_id if material else None))
            _put(fields, "registry_smart_contract", _explorer_url(chain_id, app_id))
        _put(fields, "intel_attestation_report", _hex0x(material.quote if material is not None else None))
        tls = material.other_certificates_pem if material is not None and entity == "gateway" else None
        _put(fields, "app_cert", tls or _pem_chain(entity, part.get("certificates")))
        if entity != "kms":
            _put(fields, "device_id", derived.get("device_id"))
            _put(fields, "compose_hash", info.get("compose_hash"))  # the RTMR3 event; P-code has the calculated one
            _put(fields, "mr_aggregated", derived.get("mr_aggregated"))
            _put(fields, "os_image_hash", info.get("os_image_hash"))
            _put(fields, "is_registered", _registered(checks))
        _put(fields, "mr_system", derived.get("mr_system"))
        _put(fields, "key_provider", key_provider.get("name"))
        _put(fields, "key_provider_id", _hex0x(key_provider.get("id")))
        _put(fields, "app_name", material.app_name if material is not None else None)
        return fields

    @staticmethod
    def _code_fields(part: Mapping[str, Any], checks: Sequence[Check],
                     material: EntityMaterial | None) -> dict[str, Any]:
        text = material.app_compose if material is not None else None
        if text is None:
            return {}
        fields: dict[str, Any] = {"compose_file": text}
        _put(fields, "compose_hash", hashlib.sha256(text.encode("utf-8")).hexdigest())
        _put(fields, "name", _mapping(part, "app_compose").get("name"))
        _put(fields, "is_registered", _registered(checks))
        return fields

    @staticmethod
    def _domain_fields(checks: Sequence[Check]) -> dict[str, Any]:
        by_id = {c.id: c for c in checks if c.id.startswith("domain.")}
        if not by_id:
            return {}
        fields: dict[str, Any] = {}
        _put(fields, "domain", next((c.details.get("domain") for c in by_id.values() if c.details.get("domain")),
                                    None))
        key = by_id.get("domain.tee_controlled_key")
        if key is not None:
            if key.status not in (CheckStatus.SKIP, CheckStatus.ERROR):  # a verdict only from a check that ran
                _put(fields, "tee_controlled", key.status is CheckStatus.PASS)
            _put(fields, "acme_account_uri", key.details.get("account_uri"))
            _put(fields, "historical_keys", list(key.details.get("tee_keys") or []))
        ct = by_id.get("domain.ct_log")
        fetched = _mapping(ct.details, "fetched") if ct is not None else {}
        if ct is not None and isinstance(fetched.get("checked"), int):
            offenders = len(ct.details.get("offenders") or [])
            _put(fields, "certificates_checked", fetched["checked"])
            _put(fields, "tee_certificates", fetched["checked"] - offenders)
            _put(fields, "non_tee_certificates", offenders)
        served = by_id.get("domain.certificate_key")
        chain = served.details.get("chain") if served is not None else None
        if chain:
            _put(fields, "active_certificate", _compact(chain[0]))
        return fields

    def _kms_links(self) -> list[Relationship]:
        """KMS → gateway and KMS → app. The edge names the KMS field that links them when the data agrees: the
        gateway's app id is the KMS's ``gateway_app_id``; the app's key-provider event names the KMS CA key."""
        kms = self._objects.get("kms-main")
        if kms is None:
            return []
        links = []
        for target, own, theirs in (("gateway-main", "gateway_app_id", "app_id"),
                                    ("app-main", "cert_pubkey", "key_provider_id"),
                                    ("gateway-main", "cert_pubkey", "key_provider_id")):
            obj = self._objects.get(target)
            if obj is None:
                continue
            mine, other = kms.fields.get(own), obj.fields.get(theirs)
            linked = isinstance(mine, str) and isinstance(other, str) and mine.lower() == other.lower()
            edge = Relationship(source="kms-main", target=target, kind=ROOT_OF_TRUST, field=own if linked else "")
            if edge not in links:
                links.append(edge)
        # An object-level edge is redundant when a field-level one joins the same pair.
        return [e for e in links if e.field or not any(o.target == e.target and o.field for o in links)]


# What each object computes (component → (inputs, function, outputs)); "{n}" is the register of an event-log object.
# An entry is kept only when its outputs are fields of the object: what was not computed is not claimed.
_CALCULATIONS: Mapping[str, tuple[tuple[tuple[str, ...], str, tuple[str, ...]], ...]] = {
    "event-logs-imr{n}": ((("*",), "replay_rtmr", ("replayed_rtmr{n}",)),),
    "code": ((("compose_file",), "sha256", ("compose_hash",)),),
    "os": ((("vm_config", "image_files"), "measure_tdx",
            ("expected_mrtd", "expected_rtmr0", "expected_rtmr1", "expected_rtmr2")),),
    "main": ((("intel_attestation_report", "key_provider_id"), "dstack_app_info",
              ("mr_system", "mr_aggregated", "device_id")),),
}


def _calculations(component: str, fields: Mapping[str, Any]) -> list[Calculation]:
    register = component.removeprefix("event-logs-imr") if component.startswith("event-logs-imr") else None
    key = "event-logs-imr{n}" if register is not None else component
    out = []
    for inputs, function, outputs in _CALCULATIONS.get(key, ()):
        named_out = [o.format(n=register) for o in outputs if o.format(n=register) in fields]
        named_in = [i for i in inputs if i == "*" or i in fields]
        if named_out and named_in:
            out.append(Calculation(inputs=named_in, function=function, outputs=named_out))
    return out


def _chain_name(chain_id: int | None) -> str | None:
    if not chain_id:
        return None
    try:
        return chain_config(chain_id).name
    except OnchainInputError:
        return f"chain {chain_id}"


def _release_url(os_name: str | None) -> str | None:
    """Where the image of this release is published (the Trust Center's ``artifacts``), by version."""
    if os_name is None:
        return None
    try:
        return image_urls(os_name, None)[0]
    except ValueError:
        return None


def _repository_of(url: str | None) -> str | None:
    """The GitHub repository a release URL belongs to (meta-dstack, dstack from 0.6.0, private-ml-sdk for old
    NVIDIA images: the download rules decide, so the source shown is the one the image comes from)."""
    prefix = GITHUB_BASE_URL + "/"
    if url is None or not url.startswith(prefix):
        return None
    return prefix + "/".join(url[len(prefix):].split("/")[:2])


def _guarded_domain(endpoint: str | None) -> str | None:
    """``https://gateway.example.com`` → ``*.example.com`` (§2.2 gateway-main)."""
    if not endpoint:
        return None
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    labels = host.split(".")
    return "*." + ".".join(labels[1:]) if len(labels) > 2 else None


# -- from a finished report ------------------------------------------------------------------------------------------


def _material_of(items: Sequence[Evidence], entity: Entity) -> EntityMaterial:
    """One entity's material from its evidence files: the quote, the exact app-compose text, and the claims a
    GetQuote JSON written from a source carries under ``source`` (its provenance)."""
    quote = next((e for e in items if e.quote is not None), None)
    compose = next((e for e in items if e.kind == "app-compose"), None)
    doc: dict[str, Any] = {}
    if quote is not None and isinstance(quote.json, dict) and isinstance(quote.json.get("source"), dict):
        doc.update(quote.json["source"])
    doc.update({"entity": entity, "label": entity, "quote": quote.quote.hex() if quote and quote.quote else None,
                "app_compose": compose.data.decode("utf-8", "replace") if compose is not None else None})
    try:
        return EntityMaterial.model_validate_json(json.dumps(doc))
    except ValidationError:  # a provenance we cannot read: keep what the files themselves hold
        return EntityMaterial.model_validate_json(json.dumps(
            {k: doc[k] for k in ("entity", "label", "quote", "app_compose")}))


def recorded_sources(report: Report) -> tuple[dict[str, EntityMaterial], KmsInfo | None]:
    """Per entity, the material its recorded inputs hold, and the Cloud answer's ``kms_info`` when there is one.
    Raises InputError for recorded inputs that do not decode (a report written by us always decodes)."""
    from .verification import expand  # imported here: verification imports this module

    recorded = {"inputs": [i.model_dump() for i in report.inputs if i.content_b64 is not None]}
    items = expand(replay_inputs(recorded, "report"))
    cloud = next((e for e in items if e.kind == "cloud-attestations"), None)
    if cloud is not None:
        answer = parse_cloud_answer(cloud.data, cloud.name)
        # The answers the verification combined with the Cloud answer, and the instance it verified in full: the
        # objects show what was verified (the gateway's ACME quote, the app's /prpc/Info, the KMS's keys).
        instance = _mapping(report.entities, "app").get("cloud_instance")
        instance = instance if isinstance(instance, int) and 0 <= instance < len(answer.instances) else 0
        return dict(collect_materials(answer, instance=instance, **_side_answers(items))), answer.kms_info
    return {entity: _material_of(items, entity) for entity in report.entities}, None  # type: ignore[misc]


def _side_answers(items: Sequence[Evidence]) -> dict[str, Any]:
    """The KMS's GetMeta, the gateway's acme-info and the app's /prpc/Info among the recorded inputs: saved files,
    else answers in the recorded exchanges. One that does not decode is left out (the checks already said so)."""
    from .net import Exchange
    from .sources.agent import INFO_PATH, KMS_META_PATH, parse_info, parse_kms_meta
    from .sources.gateway import ACME_INFO_PATH, parse_acme_info

    parsers = {"kms_meta": (parse_kms_meta, "kms-meta", KMS_META_PATH),
               "acme_info": (parse_acme_info, "acme-info", ACME_INFO_PATH),
               "app_info": (parse_info, "agent-info", INFO_PATH)}
    exchanges = [x for e in items if e.kind == "recording" for x in e.json.get("exchanges", [])]
    out: dict[str, Any] = {}
    for key, (parse, kind, path) in parsers.items():
        sources = [(e.data, e.name) for e in items if e.kind == kind]
        for raw in exchanges:
            try:
                x = Exchange.model_validate(raw)
                if x.status == 200 and urllib.parse.urlsplit(x.url).path == path:
                    sources.append((x.content, x.url))
            except (ValidationError, ValueError):
                continue
        for data, name in sources:
            try:
                out[key] = parse(data, name)
                break
            except InputError:
                continue
    return out


def collect(report: Report) -> tuple[list[DataObject], list[Relationship]]:
    """The DataObjects and relationships of a finished report, entities in the order app, kms, gateway."""
    materials, kms_info = recorded_sources(report)
    collector = DataObjectCollector(kms_info)
    for entity in ENTITIES:
        if entity in report.entities:
            collector.add_entity(entity, report.entities[entity], report.checks, materials.get(entity))
    return collector.objects(), collector.relationships()


def mask_report(report: Report) -> Report:
    """A copy of the report fit for sharing: the compose files of its data objects masked (`mask_sensitive`), every
    `docker_compose_file` of the entities' summaries and the checks' details too, and the recorded evidence left
    out (every input keeps its name, kind and SHA-256, not its bytes: a Cloud answer, a /prpc/Info or a recorded
    exchange carries the compose as well). It can no longer be re-run or exported as a pack; `policy.masked` says
    so."""
    return report.model_copy(update={
        "data_objects": mask_sensitive(report.data_objects),
        "entities": _masked(report.entities),
        "checks": [c.model_copy(update={"details": _masked(c.details)}) for c in report.checks],
        "inputs": [i.model_copy(update={"content_b64": None}) for i in report.inputs],
        "policy": {**report.policy, "masked": True},
    })


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: MASKED if k == "docker_compose_file" and isinstance(v, str) and v else _masked(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def mask_sensitive(objects: Sequence[DataObject]) -> list[DataObject]:
    """Copies of the objects fit for sharing (trust-center.md §5): in every ``compose_file`` that parses as a JSON
    object, a non-empty ``docker_compose_file`` becomes ``[MASKED]`` and the compose is re-serialised compactly (so
    it no longer hashes to the compose hash); such objects get ``masked: true``. The originals are not changed."""
    out = []
    for obj in objects:
        text = obj.fields.get("compose_file")
        try:
            doc = json.loads(text) if isinstance(text, str) and text else None
        except json.JSONDecodeError:
            doc = None  # unparseable: left as it is, as the Trust Center does
        if isinstance(doc, dict) and doc.get("docker_compose_file"):
            doc["docker_compose_file"] = MASKED
            obj = obj.model_copy(update={"fields": {**obj.fields, "compose_file": _compact(doc), "masked": True}})
        out.append(obj)
    return out
