"""dstack prpc endpoints: the guest agent's app info, and the KMS's metadata.

* ``GET {agent}/prpc/Info`` (KMS ≥ 0.5.0; spec §1.4): ``app_id, instance_id, app_cert`` (PEM chain), ``tcb_info``
  (JSON text: registers, ``event_log``, ``app_compose``), ``app_name, device_id, mr_aggregated, os_image_hash,
  key_provider_info`` (JSON text), ``compose_hash, vm_config`` (JSON text). Bytes fields are hex.
* ``GET {agent}/prpc/Worker.Info`` (KMS < 0.5.0): ``app_id, instance_id, app_cert, tcb_info`` (JSON text with
  ``rootfs_hash``), ``app_name, public_logs, public_sysinfo``. Values it does not carry stay None here (the Trust
  Center fills in placeholders such as ``"0x"``; a placeholder would look like data).
* The Cloud API's ``kms_guest_agent_info`` / ``gateway_guest_agent_info`` and the gateway's ``/.dstack/app-info``
  have the same fields (objects or JSON text), plus ``app_certificates`` metadata whose non-CA entry carries the
  entity's RA-TLS quote: all four are read by :func:`agent_info_from_json` into one :class:`AgentInfo`.
* ``GET {kms}/prpc/KMS.GetMeta`` (not used by the Trust Center, spec §1.5): the KMS CA certificate, its keys and
  the bootstrap quote and event log that bind them — the KMS's own attestation, fetched live.

The guest agent is reached through the gateway: ``https://{app_id}-8090.{domain}`` (:func:`app_rpc_url`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ..errors import InputError
from ..eventlog import MR_BYTES
from ..evidence import MAX_QUOTE_BYTES
from ..jsontext import load_json
from ..net import NetClient
from ..ratls import decode_ratls, spki_der
from . import (
    MAX_ANSWER_BYTES,
    MAX_ID_BYTES,
    MAX_LIST_ITEMS,
    MAX_SHORT_CHARS,
    MAX_TEXT_CHARS,
    EntityMaterial,
    Fields,
    KeyProvider,
    SourceError,
    decode_answer,
    event_log_value,
    fetch_json,
    from_input_error,
    hex_value,
    pem_chain,
    quote_value,
    runtime_event_payload,
    supports_info_endpoint,
)

__all__ = [
    "AgentInfo",
    "CertificateInfo",
    "KmsMeta",
    "TcbInfo",
    "agent_info_from_json",
    "app_rpc_url",
    "fetch_info",
    "fetch_kms_meta",
    "info_path",
    "parse_info",
    "parse_kms_meta",
]

INFO_PATH = "/prpc/Info"
LEGACY_INFO_PATH = "/prpc/Worker.Info"
KMS_META_PATH = "/prpc/KMS.GetMeta"
AGENT_PORT = 8090
MAX_CERTIFICATES = 16
MAX_KMS_EVENT_LOG_BYTES = 16 << 20

AgentForm = Literal["info", "worker-info", "guest-agent-info", "gateway-app-info"]
_BYTES_HEX = ConfigDict(frozen=True, ser_json_bytes="hex", val_json_bytes="hex")


class TcbInfo(BaseModel):
    """The ``tcb_info`` of an app info: registers (hex) as claimed, the event log, the exact app-compose text."""

    model_config = ConfigDict(frozen=True)

    mrtd: str | None = None
    rtmr0: str | None = None
    rtmr1: str | None = None
    rtmr2: str | None = None
    rtmr3: str | None = None
    rootfs_hash: str | None = None  # legacy (dstack < 0.5) and the Cloud API's guest-agent info
    mr_aggregated: str | None = None
    os_image_hash: str | None = None
    compose_hash: str | None = None
    device_id: str | None = None
    event_log: list[dict[str, Any]] | None = None
    app_compose: str | None = None


class CertificateInfo(BaseModel):
    """One entry of the Cloud API's ``app_certificates``: metadata only (no PEM), with the RA-TLS quote."""

    model_config = _BYTES_HEX

    subject_cn: str | None = None
    issuer_cn: str | None = None
    serial_number: str | None = None
    not_before: str | None = None
    not_after: str | None = None
    fingerprint: str | None = None
    signature_algorithm: str | None = None
    sans: tuple[str, ...] = ()
    is_ca: bool = False
    position_in_chain: int | None = None
    quote: bytes | None = None
    app_id: str | None = None
    cert_usage: str | None = None


class AgentInfo(BaseModel):
    """An app info answer (any of the four forms, see the module doc), typed and validated."""

    model_config = _BYTES_HEX

    source: str  # the URL or file it came from, and for embedded forms the field
    form: AgentForm
    app_id: str  # lowercase hex, no 0x
    instance_id: str | None = None
    app_name: str | None = None
    device_id: str | None = None
    mr_aggregated: str | None = None
    os_image_hash: str | None = None
    mr_key_provider: str | None = None
    key_provider: KeyProvider | None = None
    compose_hash: str | None = None
    vm_config: dict[str, Any] | None = None
    tcb_info: TcbInfo
    app_cert: str | None = None  # PEM chain, leaf first
    app_cert_is_ra_tls: bool = False  # the leaf carries dstack's RA-TLS extensions
    ra_tls_quote: bytes | None = None  # the quote embedded in the RA-TLS leaf
    app_certificates: tuple[CertificateInfo, ...] = ()
    public_logs: bool | None = None
    public_sysinfo: bool | None = None
    cloud_vendor: str | None = None
    cloud_product: str | None = None

    @property
    def legacy(self) -> bool:
        return self.form == "worker-info"

    def quote(self) -> tuple[bytes, str] | None:
        """The entity's own quote and where it is: the non-CA ``app_certificates`` entry carrying one (Cloud API),
        else the quote inside the RA-TLS leaf of ``app_cert``."""
        for index, cert in enumerate(self.app_certificates):
            if not cert.is_ca and cert.quote is not None:
                return cert.quote, f"{self.source} app_certificates[{index}].quote"
        if self.ra_tls_quote is not None:
            return self.ra_tls_quote, f"{self.source} app_cert (RA-TLS leaf)"
        return None

    def material(self, entity: Literal["app", "kms", "gateway"], label: str | None = None) -> EntityMaterial:
        quote = self.quote()
        tcb = self.tcb_info
        pem = self.app_cert
        return EntityMaterial(
            entity=entity,
            label=label or entity,
            sources=(self.source,),
            quote=quote[0] if quote else None,
            quote_source=quote[1] if quote else None,
            event_log=tcb.event_log,
            event_log_source=f"{self.source} tcb_info.event_log" if tcb.event_log is not None else None,
            vm_config=self.vm_config,
            app_compose=tcb.app_compose,
            certificates_pem=pem if pem and self.app_cert_is_ra_tls else None,
            other_certificates_pem=pem if pem and not self.app_cert_is_ra_tls else None,
            app_id=self.app_id,
            instance_id=self.instance_id,
            app_name=self.app_name,
            device_id=self.device_id or tcb.device_id,
            compose_hash=self.compose_hash or tcb.compose_hash,
            os_image_hash=self.os_image_hash or tcb.os_image_hash,
            mr_aggregated=self.mr_aggregated or tcb.mr_aggregated,
            key_provider=self.key_provider,
        )


def app_rpc_url(app_id: str, domain: str) -> str:
    """The guest agent of an app, through its gateway: ``https://{app_id}-8090.{domain}``."""
    app = app_id.strip().lower().removeprefix("0x")
    if not app or len(app) > 2 * MAX_ID_BYTES or any(c not in "0123456789abcdef" for c in app):
        raise SourceError(f"app id {app_id[:80]!r} is not hex")
    host = domain.strip().strip(".").lower()
    if not host or any(c.isspace() or c in "/?#@:" for c in host):
        raise SourceError(f"domain {domain[:80]!r} is not a host name")
    return f"https://{app}-{AGENT_PORT}.{host}"


def info_path(kms_version: str | None = None) -> str:
    """``/prpc/Info``, or ``/prpc/Worker.Info`` when the KMS version is known and older than 0.5.0 (spec §1.4: the
    choice is keyed on the KMS version, not the app's image)."""
    if kms_version is None or supports_info_endpoint(kms_version):
        return INFO_PATH
    return LEGACY_INFO_PATH


def fetch_info(client: NetClient, agent_url: str, *, kms_version: str | None = None) -> AgentInfo:
    """GET the guest agent's app info (the endpoint chosen by :func:`info_path`)."""
    path = info_path(kms_version)
    doc, source = fetch_json(client, agent_url, path, "guest agent")
    form: AgentForm = "info" if path == INFO_PATH else "worker-info"
    return agent_info_from_json(doc, source, form=form)


def parse_info(data: bytes, source: str, *, legacy: bool | None = None) -> AgentInfo:
    """A saved ``/prpc/Info`` (or ``Worker.Info``) answer. ``legacy`` None: decided from the fields present."""
    doc = decode_answer(data, source)
    if legacy is None:
        return agent_info_from_json(doc, source)
    return agent_info_from_json(doc, source, form="worker-info" if legacy else "info")


def _looks_legacy(f: Fields) -> bool:
    """``Worker.Info``: no compose hash / vm_config at the top, and a ``rootfs_hash`` in the TCB info."""
    if f.has("compose_hash") or f.has("vm_config") or f.has("key_provider_info"):
        return False
    tcb = f.raw("tcb_info")
    if isinstance(tcb, str):
        return '"rootfs_hash"' in tcb
    return isinstance(tcb, dict) and "rootfs_hash" in tcb


def agent_info_from_json(doc: Any, source: str, path: str = "", form: AgentForm | None = None) -> AgentInfo:
    """Read an app info object (see the module doc for the forms). Present-but-malformed fields are a SourceError
    naming the field; absent and null ones are None."""
    f = Fields(doc, source, path)
    if form is None:
        form = "worker-info" if _looks_legacy(f) else "info"
    tcb = _tcb_info(f.object("tcb_info", required=True, json_string=True))
    vm = f.object("vm_config", json_string=True)
    key_provider = None
    kp = f.object("key_provider_info", json_string=True)
    if kp is not None:
        name, ident = kp.text("name"), kp.text("id", limit=4 * MAX_ID_BYTES)
        if name is not None or ident is not None:
            key_provider = KeyProvider(name=name or "", id=(ident or "").lower().removeprefix("0x"))
    pem = f.text("app_cert", limit=MAX_TEXT_CHARS)
    is_ra_tls, ra_quote = False, None
    if pem and pem.strip():
        chain = pem_chain(pem, source, f.name("app_cert"))
        try:
            ratls = decode_ratls(chain[0])
        except InputError as exc:
            raise SourceError(exc.message, source=source, field=f"{f.name('app_cert')}[0].{exc.field}") from None
        if ratls is not None:
            is_ra_tls = True
            if ratls.quote is not None:
                ra_quote = quote_value(ratls.quote, source, f"{f.name('app_cert')}[0].quote")
    else:
        pem = None
    os_image_hash = f.hexid("os_image_hash")
    if os_image_hash is None and vm is not None and vm.has("os_image_hash"):
        os_image_hash = vm.hexid("os_image_hash")
    certs = f.array("app_certificates", limit=MAX_CERTIFICATES) or []
    return AgentInfo(
        source=f"{source} {path}".strip() if path else source,
        form=form,
        app_id=f.hexid("app_id", required=True) or "",
        instance_id=f.hexid("instance_id"),
        app_name=f.text("app_name"),
        device_id=f.hexid("device_id"),
        mr_aggregated=f.hexid("mr_aggregated"),
        os_image_hash=os_image_hash,
        mr_key_provider=f.hexid("mr_key_provider"),
        key_provider=key_provider,
        compose_hash=f.hexid("compose_hash"),
        vm_config=vm.obj if vm is not None else None,
        tcb_info=tcb,
        app_cert=pem,
        app_cert_is_ra_tls=is_ra_tls,
        ra_tls_quote=ra_quote,
        app_certificates=tuple(_certificate(Fields(c, source, f"{f.name('app_certificates')}[{i}]"))
                               for i, c in enumerate(certs)),
        public_logs=f.boolean("public_logs"),
        public_sysinfo=f.boolean("public_sysinfo"),
        cloud_vendor=f.text("cloud_vendor"),
        cloud_product=f.text("cloud_product"),
    )


def _tcb_info(t: Fields | None) -> TcbInfo:
    assert t is not None  # required above
    return TcbInfo(
        mrtd=t.hexid("mrtd", limit=MR_BYTES),
        rtmr0=t.hexid("rtmr0", limit=MR_BYTES),
        rtmr1=t.hexid("rtmr1", limit=MR_BYTES),
        rtmr2=t.hexid("rtmr2", limit=MR_BYTES),
        rtmr3=t.hexid("rtmr3", limit=MR_BYTES),
        rootfs_hash=t.hexid("rootfs_hash"),
        mr_aggregated=t.hexid("mr_aggregated"),
        os_image_hash=t.hexid("os_image_hash"),
        compose_hash=t.hexid("compose_hash"),
        device_id=t.hexid("device_id"),
        event_log=t.event_log("event_log"),
        app_compose=t.text("app_compose", limit=MAX_TEXT_CHARS),
    )


def _certificate(c: Fields) -> CertificateInfo:
    subject = c.object("subject")
    issuer = c.object("issuer")
    sans = c.array("sans", limit=MAX_LIST_ITEMS) or []
    for index, san in enumerate(sans):
        if not isinstance(san, str) or len(san) > MAX_SHORT_CHARS:
            raise SourceError("expected a string", source=c.source, field=f"{c.name('sans')}[{index}]")
    quote = c.hexbytes("quote", limit=MAX_QUOTE_BYTES)
    return CertificateInfo(
        subject_cn=subject.text("common_name") if subject is not None else None,
        issuer_cn=issuer.text("common_name") if issuer is not None else None,
        serial_number=c.text("serial_number"),
        not_before=c.text("not_before"),
        not_after=c.text("not_after"),
        fingerprint=c.text("fingerprint"),
        signature_algorithm=c.text("signature_algorithm"),
        sans=tuple(sans),
        is_ca=bool(c.boolean("is_ca")),
        position_in_chain=c.integer("position_in_chain", hi=MAX_CERTIFICATES),
        quote=quote_value(quote, c.source, c.name("quote")) if quote is not None else None,
        app_id=c.hexid("app_id"),
        cert_usage=c.text("cert_usage"),
    )


# --------------------------------------------------------------------------------------------------------------------
# KMS.GetMeta


class KmsMeta(BaseModel):
    """``KMS.GetMeta``: the KMS CA certificate and keys, and the bootstrap attestation that binds them."""

    model_config = _BYTES_HEX

    source: str
    ca_cert: str | None = None  # PEM of the KMS CA certificate (the root of every app certificate)
    allow_any_upgrade: bool | None = None
    k256_pubkey: bytes | None = None
    is_dev: bool | None = None
    gateway_app_id: str | None = None
    kms_contract_address: str | None = None
    chain_id: int | None = None
    app_auth_implementation: str | None = None
    bootstrap_ca_pubkey: bytes | None = None  # SPKI DER
    bootstrap_k256_pubkey: bytes | None = None
    quote: bytes | None = None  # the bootstrap quote: report_data = keccak of the two keys (spec §1.5)
    event_log: list[dict[str, Any]] | None = None

    @property
    def ca_pubkey(self) -> bytes | None:
        """The CA public key (SPKI DER): the bootstrap one, else the one of ``ca_cert``."""
        if self.bootstrap_ca_pubkey is not None:
            return self.bootstrap_ca_pubkey
        if self.ca_cert:
            return spki_der(pem_chain(self.ca_cert, self.source, "ca_cert")[0])
        return None

    def material(self) -> EntityMaterial:
        notes = []
        if (self.k256_pubkey is not None and self.bootstrap_k256_pubkey is not None
                and self.k256_pubkey != self.bootstrap_k256_pubkey):
            notes.append("KMS.GetMeta: k256_pubkey differs from bootstrap_info.k256_pubkey (the quote binds the "
                         "bootstrap one)")
        return EntityMaterial(
            entity="kms",
            label="kms",
            sources=(self.source,),
            quote=self.quote,
            quote_source=f"{self.source} bootstrap_info.quote" if self.quote is not None else None,
            event_log=self.event_log,
            event_log_source=f"{self.source} bootstrap_info.eventlog" if self.event_log is not None else None,
            other_certificates_pem=self.ca_cert,
            app_id=runtime_event_payload(self.event_log, "app-id"),
            instance_id=runtime_event_payload(self.event_log, "instance-id"),
            ca_pubkey=self.ca_pubkey,
            k256_pubkey=self.bootstrap_k256_pubkey or self.k256_pubkey,
            notes=tuple(notes),
        )


def fetch_kms_meta(client: NetClient, kms_url: str) -> KmsMeta:
    return kms_meta_from_json(*fetch_json(client, kms_url, KMS_META_PATH, "KMS"))


def parse_kms_meta(data: bytes, source: str) -> KmsMeta:
    return kms_meta_from_json(decode_answer(data, source), source)


def kms_meta_from_json(doc: Any, source: str) -> KmsMeta:
    f = Fields(doc, source)
    ca_cert = f.text("ca_cert", limit=MAX_TEXT_CHARS)
    if ca_cert and ca_cert.strip():
        pem_chain(ca_cert, source, "ca_cert")
    else:
        ca_cert = None
    boot = f.object("bootstrap_info")
    quote = event_log = None
    boot_ca = boot_k256 = None
    if boot is not None:
        boot_ca = boot.hexbytes("ca_pubkey", limit=1024)
        boot_k256 = boot.hexbytes("k256_pubkey", limit=MAX_ID_BYTES + 1)
        raw_quote = boot.hexbytes("quote", limit=MAX_QUOTE_BYTES)
        quote = quote_value(raw_quote, source, boot.name("quote")) if raw_quote is not None else None
        event_log = _bytes_event_log(boot, "eventlog")
    return KmsMeta(
        source=source,
        ca_cert=ca_cert,
        allow_any_upgrade=f.boolean("allow_any_upgrade"),
        k256_pubkey=f.hexbytes("k256_pubkey", limit=MAX_ID_BYTES + 1),
        is_dev=f.boolean("is_dev"),
        gateway_app_id=f.hexid("gateway_app_id"),
        kms_contract_address=f.address("kms_contract_address"),
        chain_id=f.integer("chain_id"),
        app_auth_implementation=f.text("app_auth_implementation"),
        bootstrap_ca_pubkey=boot_ca,
        bootstrap_k256_pubkey=boot_k256,
        quote=quote,
        event_log=event_log,
    )


def _bytes_event_log(f: Fields, key: str) -> list[dict[str, Any]] | None:
    """An event log sent as prpc ``bytes`` (hex of its UTF-8 JSON text); JSON text or an array are accepted too."""
    value = f.raw(key)
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.lstrip()[:1] not in ("[", ""):
        raw = hex_value(value, f.source, f.name(key), MAX_KMS_EVENT_LOG_BYTES)
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SourceError("event log bytes are not UTF-8 JSON", source=f.source, field=f.name(key),
                              offset=exc.start) from None
        if len(value) > MAX_ANSWER_BYTES:
            raise f.error(key, "event log too large")
        if not value.strip():
            return None
        try:
            value = load_json(value, f.source, f.name(key))
        except InputError as exc:
            raise from_input_error(exc, f.source) from None
    return event_log_value(value, f.source, f.name(key))
