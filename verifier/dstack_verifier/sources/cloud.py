"""The Phala Cloud attestations API: the root input of an online verification (spec §1.3).

``GET {base}/apps/{app_id}/attestations`` (no authentication) answers::

    app_id, contract_address ("" | address | null),
    kms_info {contract_address, chain_id (int | decimal string | null), version "vX.Y.Z (git:…)", url,
              gateway_app_id, gateway_app_url, kms_type?},
    instances [ {quote (hex, no 0x) | null, eventlog [event] | null (old form),
                 tcb_info {mrtd, rootfs_hash, rtmr0..3, event_log, app_compose} | null (new form),
                 image_version "dstack-[nvidia-][dev-]X.Y.Z[.W]" | null,
                 and, in newer answers, vm_uuid, name, instance_id, status, ppid, device_id, app_certificates,
                 compose_file, error} ],
    qemu_version?, kms_guest_agent_info? , gateway_guest_agent_info?   (guest-agent info objects, see .agent)

Normalisation as the Trust Center does it, with its gaps closed: every instance is kept (not only the first); an
instance without a quote, an event log or an image version is a stopped one and is listed in
``dropped_instances`` with the reason, as is a running one whose quote or log is malformed; the image label is
trimmed and the API's ``vnvidia-`` typo fixed; a ``chain_id`` of 0 means "hosted" like null does; the answer must be
about the app that was asked for. A malformed KMS or gateway guest-agent info is left out with its reason in
``problems`` (the app's own attestation is still usable); anything else malformed is a SourceError.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ..evidence import MAX_QUOTE_BYTES, Evidence, detect
from ..net import NetClient
from . import (
    MAX_ID_BYTES,
    MAX_TEXT_CHARS,
    EntityMaterial,
    Fields,
    ImageVersion,
    SourceError,
    base_url,
    decode_answer,
    get_answer,
    json_answer,
    parse_image_version,
    parse_kms_version,
    quote_value,
    runtime_event_payload,
    status_error,
    supports_info_endpoint,
    supports_onchain_kms,
)
from .agent import LEGACY_INFO_PATH, AgentInfo, CertificateInfo, TcbInfo, _certificate, _tcb_info, agent_info_from_json

__all__ = [
    "DEFAULT_BASE_URL",
    "CloudAttestations",
    "CloudInstance",
    "DroppedInstance",
    "KmsInfo",
    "attestations_url",
    "fetch_attestations",
    "parse_cloud_answer",
]

DEFAULT_BASE_URL = "https://cloud-api.phala.com/api/v1"
MAX_INSTANCES = 256
WHAT = "Phala Cloud API"

_BYTES_HEX = ConfigDict(frozen=True, ser_json_bytes="hex", val_json_bytes="hex")


class KmsInfo(BaseModel):
    """``kms_info``: which KMS governs the app, and where its gateway is."""

    model_config = ConfigDict(frozen=True)

    contract_address: str | None = None  # DstackKms contract ("" in the answer → None)
    chain_id: int | None = None
    version: str | None = None  # as sent, e.g. "v0.5.3 (git:ca4af023e974427e4153)"
    version_number: str | None = None  # "v0.5.3" when the version has the usual form
    git_commit: str | None = None
    url: str | None = None
    gateway_app_id: str | None = None  # lowercase hex, no 0x
    gateway_app_url: str | None = None
    kms_type: str | None = None

    @property
    def governance(self) -> Literal["onchain", "hosted"]:
        """On-chain when a chain id is given; null and 0 (the stats feed's "none") both mean hosted by Phala."""
        return "hosted" if not self.chain_id else "onchain"

    @property
    def supports_onchain_kms(self) -> bool:
        return supports_onchain_kms(self.version)

    @property
    def supports_info_endpoint(self) -> bool:
        return supports_info_endpoint(self.version)


class CloudInstance(BaseModel):
    """One running instance of the app, as the answer describes it."""

    model_config = _BYTES_HEX

    index: int  # position in the answer's instances list
    quote: bytes
    event_log: list[dict[str, Any]]
    event_log_field: Literal["eventlog", "tcb_info.event_log"]
    image_version: ImageVersion
    tcb_info: TcbInfo | None = None
    app_compose: str | None = None  # tcb_info.app_compose, else compose_file: the exact text
    instance_id: str | None = None  # the answer's field, else the event log's instance-id event (a claim)
    vm_uuid: str | None = None
    name: str | None = None
    status: str | None = None
    device_id: str | None = None
    ppid: str | None = None
    error: str | None = None
    app_certificates: tuple[CertificateInfo, ...] = ()
    notes: tuple[str, ...] = ()


STOPPED = "stopped"  # how the reason of an instance that is not running starts


class DroppedInstance(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int
    reason: str

    @property
    def stopped(self) -> bool:
        """Not running (no quote, log or image version); else a running one whose evidence does not parse."""
        return self.reason.startswith(STOPPED)


class CloudAttestations(BaseModel):
    """The attestations answer, normalised. ``source`` is the URL (or file) it came from."""

    model_config = _BYTES_HEX

    source: str
    app_id: str  # lowercase hex, no 0x
    contract_address: str | None = None
    kms_info: KmsInfo
    instances: tuple[CloudInstance, ...]
    dropped_instances: tuple[DroppedInstance, ...] = ()
    qemu_version: str | None = None
    kms_guest_agent_info: AgentInfo | None = None
    gateway_guest_agent_info: AgentInfo | None = None
    problems: tuple[str, ...] = ()  # parts of the answer left out as malformed (field and reason, one line each)

    @property
    def legacy_reason(self) -> str | None:
        """Why the Trust Center would use its legacy stub verifiers for the KMS and gateway (spec §4.2), or None."""
        if not self.kms_info.supports_onchain_kms:
            return f"legacy KMS version {self.kms_info.version!r} (< 0.5.3)"
        for key in ("kms_guest_agent_info", "gateway_guest_agent_info"):
            if getattr(self, key) is None:
                why = next((p for p in self.problems if p.startswith(f"field {key}")), None)
                return f"{key} not available" + (f" ({why})" if why else "")
        return None

    @property
    def info_path(self) -> str:
        """The guest agent endpoint for this app: keyed on the KMS version (spec §1.4)."""
        return "/prpc/Info" if self.kms_info.supports_info_endpoint else LEGACY_INFO_PATH

    def instance_index(self, instance_id: str | None) -> int | None:
        """The position in ``instances`` of the instance with this id (e.g. the one ``/prpc/Info`` answered for)."""
        wanted = (instance_id or "").lower().removeprefix("0x")
        if not wanted:
            return None
        return next((i for i, inst in enumerate(self.instances) if inst.instance_id == wanted), None)

    def app_material(self, instance: int = 0) -> EntityMaterial:
        if not 0 <= instance < len(self.instances):
            raise IndexError(f"instance {instance} out of range: the answer has {len(self.instances)} running")
        inst = self.instances[instance]
        where = f"{self.source} instances[{inst.index}]"
        notes = list(inst.notes)
        if inst.image_version.problem:
            notes.append(f"image_version {inst.image_version.raw!r}: {inst.image_version.problem}")
        claimed = runtime_event_payload(inst.event_log, "app-id")
        if claimed and claimed != self.app_id:
            notes.append(f"the event log's app-id event names app {claimed}, not {self.app_id}")
        return EntityMaterial(
            entity="app",
            label=f"app/instance-{instance}",
            sources=(self.source,),
            quote=inst.quote,
            quote_source=f"{where}.quote",
            event_log=inst.event_log,
            event_log_source=f"{where}.{inst.event_log_field}",
            app_compose=inst.app_compose,
            app_id=self.app_id,
            instance_id=inst.instance_id,
            device_id=inst.device_id,
            version=inst.image_version.name,
            notes=tuple(notes),
        )

    def kms_material(self) -> EntityMaterial | None:
        info = self.kms_guest_agent_info
        if info is None:
            return None
        return info.material("kms").model_copy(update={"version": self.kms_info.version})

    def gateway_material(self) -> EntityMaterial | None:
        info = self.gateway_guest_agent_info
        if info is None:
            return None
        image = (info.vm_config or {}).get("image")
        return info.material("gateway").model_copy(update={"version": image if isinstance(image, str) else None})


_TRUST_CENTER_PAGE = re.compile(r"https?://[^/?#\s]+/app/(?:0x)?([0-9a-fA-F]{1,128})(?:/[^?#\s]*)?(?:[?#]\S*)?")


def attestations_url(app_id: str, base: str = DEFAULT_BASE_URL) -> str:
    return f"{base_url(base, WHAT)}/apps/{normalise_app_id(app_id)}/attestations"


def normalise_app_id(app_id: str) -> str:
    """Hex without 0x, lowercase; anything else is refused before a request is made (it goes into a URL path).

    A Trust Center page's address (`https://trust.phala.com/app/<app id>[/<task id>]`) gives its app id: reviewers
    often start from one."""
    text = app_id.strip() if isinstance(app_id, str) else ""
    page = _TRUST_CENTER_PAGE.fullmatch(text)
    text = (page.group(1) if page else text).lower().removeprefix("0x")
    if not text or len(text) > 2 * MAX_ID_BYTES or any(c not in "0123456789abcdef" for c in text):
        shown = app_id[:80] if isinstance(app_id, str) else type(app_id).__name__
        raise SourceError(f"app id {shown!r} is not hex (expected e.g. 20 bytes in hex, 0x optional, or a Trust "
                          "Center page's address, …/app/<app id>)")
    return text


def fetch_attestations(client: NetClient, app_id: str, base_url: str = DEFAULT_BASE_URL) -> CloudAttestations:
    """Fetch and normalise the attestations of ``app_id``. Raises SourceError (one line) for an unknown app (404),
    an error status (500: "not found or currently down"), no running instance, a malformed answer, or no answer."""
    wanted = normalise_app_id(app_id)
    url = attestations_url(wanted, base_url)
    response = get_answer(client, url, WHAT)
    if response.status == 404:
        raise status_error(response, WHAT, f"app {wanted} not found on Phala Cloud")
    if response.status == 500:
        raise status_error(response, WHAT, f"app {wanted} not found or currently down on Phala Cloud")
    doc = json_answer(response, WHAT)
    answer = cloud_answer_from_json(doc, f"{WHAT} {response.url}")
    if answer.app_id != wanted:
        raise SourceError(f"the answer is about app {answer.app_id}, not {wanted}", source=answer.source,
                          field="app_id")
    return answer


def fetch_cloud_evidence(client: NetClient, app_id: str, base_url: str | None = None) -> Evidence:
    """The app's attestations as evidence: the exact answer bytes, so a report records them and an offline re-run
    verifies the same three entities. Raises SourceError like :func:`fetch_attestations`."""
    fetch_attestations(client, app_id, base_url or DEFAULT_BASE_URL)  # validates: unknown app, no instance…
    answer = client.recorder[-1]
    return detect(answer.content, answer.url)


def parse_cloud_answer(data: bytes, source: str) -> CloudAttestations:
    """A saved attestations answer (the bytes of the file)."""
    return cloud_answer_from_json(decode_answer(data, source), source)


def cloud_answer_from_json(doc: Any, source: str) -> CloudAttestations:
    f = Fields(doc, source)
    app_id = f.hexid("app_id", required=True) or ""
    kms = f.object("kms_info", required=True)
    assert kms is not None
    version = kms.text("version")
    parsed = parse_kms_version(version) if version else None
    kms_info = KmsInfo(
        contract_address=kms.address("contract_address"),
        chain_id=kms.integer("chain_id"),
        version=version,
        version_number=parsed[0] if parsed else None,
        git_commit=parsed[1] if parsed else None,
        url=kms.text("url"),
        gateway_app_id=kms.hexid("gateway_app_id"),
        gateway_app_url=kms.text("gateway_app_url"),
        kms_type=kms.text("kms_type"),
    )
    items = f.array("instances", required=True, limit=MAX_INSTANCES) or []
    instances: list[CloudInstance] = []
    dropped: list[DroppedInstance] = []
    for index, item in enumerate(items):
        try:
            found = _instance(item, index, source)
        except SourceError as exc:
            dropped.append(DroppedInstance(index=index, reason=str(exc).removeprefix(f"{source}, ")))
            continue
        if isinstance(found, str):
            dropped.append(DroppedInstance(index=index, reason=found))
        else:
            instances.append(found)
    if not instances:
        detail = ""
        malformed = [d for d in dropped if not d.stopped]
        if malformed:
            detail = f"; instances[{malformed[0].index}]: {malformed[0].reason}"
        elif dropped:
            detail = f" ({len(dropped)} listed, all stopped)"
        raise SourceError(f"app {app_id} has no running instances on Phala Cloud{detail}", source=source,
                          field="instances")
    problems: list[str] = []
    return CloudAttestations(
        source=source,
        app_id=app_id,
        contract_address=f.address("contract_address"),
        kms_info=kms_info,
        instances=tuple(instances),
        dropped_instances=tuple(dropped),
        qemu_version=f.text("qemu_version"),
        kms_guest_agent_info=_guest_agent_info(f, "kms_guest_agent_info", problems),
        gateway_guest_agent_info=_guest_agent_info(f, "gateway_guest_agent_info", problems),
        problems=tuple(problems),
    )


def _guest_agent_info(f: Fields, key: str, problems: list[str]) -> AgentInfo | None:
    """The KMS's or gateway's guest-agent info. A malformed one does not sink the app's own attestation: it is left
    out (None, as when the API omits it) and the reason is kept in ``problems``."""
    try:
        agent = f.object(key)
        return agent_info_from_json(agent.obj, f.source, key, "guest-agent-info") if agent is not None else None
    except SourceError as exc:
        problems.append(str(exc).removeprefix(f"{f.source}, "))
        return None


def _instance(item: Any, index: int, source: str) -> CloudInstance | str:
    """A running instance, or the reason (a string starting with "stopped") why it is not one."""
    i = Fields(item, source, f"instances[{index}]")
    tcb = i.object("tcb_info")
    missing = [name for name, present in (
        ("quote", i.has("quote")),
        ("event log", i.raw("eventlog") is not None or (tcb is not None and tcb.raw("event_log") is not None)),
        ("image_version", i.has("image_version")),
    ) if not present]
    if missing:
        status = i.raw("status")
        shown = f", status {status[:40]!r}" if isinstance(status, str) and status else ""
        return f"{STOPPED}: no {', no '.join(missing)}{shown}"
    raw_quote = i.hexbytes("quote", limit=MAX_QUOTE_BYTES, required=True)
    assert raw_quote is not None
    quote = quote_value(raw_quote, source, i.name("quote"))
    tcb_info = _tcb_info(tcb) if tcb is not None else None
    if i.raw("eventlog") is not None:
        event_log, field = i.event_log("eventlog", required=True), "eventlog"
    else:
        assert tcb_info is not None
        event_log, field = tcb_info.event_log, "tcb_info.event_log"
    assert event_log is not None
    label = i.text("image_version", required=True) or ""
    compose = tcb_info.app_compose if tcb_info is not None and tcb_info.app_compose else None
    if compose is None:
        compose = i.text("compose_file", limit=MAX_TEXT_CHARS) or None
    notes = []
    claimed = runtime_event_payload(event_log, "instance-id")
    instance_id = i.hexid("instance_id")
    if instance_id and claimed and instance_id != claimed:
        notes.append(f"instance_id {instance_id} differs from the event log's instance-id event {claimed}")
    certs = i.array("app_certificates", limit=16) or []
    device_id, ppid = _side_hexid(i, "device_id", notes), _side_hexid(i, "ppid", notes)
    return CloudInstance(
        index=index,
        quote=quote,
        event_log=event_log,
        event_log_field=field,  # type: ignore[arg-type]  # one of the two literals above
        image_version=parse_image_version(label),
        tcb_info=tcb_info,
        app_compose=compose,
        instance_id=instance_id or claimed,
        vm_uuid=i.text("vm_uuid"),
        name=i.text("name"),
        status=i.text("status"),
        device_id=device_id,
        ppid=ppid,
        error=i.text("error"),
        app_certificates=tuple(_certificate(Fields(c, source, f"{i.name('app_certificates')}[{n}]"))
                               for n, c in enumerate(certs)),
        notes=tuple(notes),
    )


def _side_hexid(i: Fields, key: str, notes: list[str]) -> str | None:
    """A descriptive id the verification does not rest on: a malformed one is noted, not fatal to the instance."""
    try:
        return i.hexid(key)
    except SourceError as exc:
        notes.append(f"{key} ignored: {exc.message}")
        return None
