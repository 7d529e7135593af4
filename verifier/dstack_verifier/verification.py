"""One verification: evidence in, Report out.

The evidence files of one entity (a quote or GetQuote/attestation JSON, an event log, an app-compose, RA-TLS
certificates, collateral, a network recording) are combined here; the sources of collateral (file, recorded, PCCS)
are resolved; then the phase modules produce the checks. The clock, trust anchor and network client are parameters.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import ValidationError

from . import __version__
from .errors import InputError
from .eventlog import AppInfo, Event, check_replay, check_rtmr3_payloads, derived_values, extract_app_info
from .evidence import RECORDING_SCHEMA, Evidence, replay_inputs
from .jsontext import load_json
from .model import Anchor, Check, CheckStatus, Entity, InputFile, Report, Verdict, decide_verdict
from .net import RECORDED_NOTE_HEADER, Exchange, NetClient, NetError, ReplayClient
from .quote.collateral import Collateral
from .quote.pccs import PHALA_PCCS_URL, CollateralCache, get_collateral
from .quote.pck import PckExtensionError, parse_pck_extension
from .quote.policy import TcbPolicy
from .quote.structure import Quote, parse_quote
from .quote.verify import CollateralMemo, HardwareResult, TrustAnchor, verify_quote
from .ratls import check_ratls_binding
from .source import check_compose_hash, check_mr_config_id, parse_compose

if TYPE_CHECKING:  # the measurement and domain modules are imported when their phase runs
    from .domain_phase import DomainOptions, GatewayEndpoints
    from .ita import ItaOptions
    from .measure.image import ImageFolder
    from .measure.model import Measurement
    from .onchain import OnchainReader
    from .sources.agent import AgentInfo, KmsMeta
    from .sources.cloud import CloudAttestations, DroppedInstance

PHASES = ("hardware", "os", "source", "domain")
NEEDS_OWN_EVIDENCE = {"eventlog.replay", "eventlog.rtmr3_payloads", "binding.report_data"}


@dataclass
class OnchainOptions:
    """Where the app is governed: the DstackKms contract and the chain's JSON-RPC endpoint."""

    kms_contract: str
    chain: str = "base"
    rpc_url: str | None = None
    app_contract: str | None = None  # default: the app id of the verified RTMR3 events


@dataclass
class VerifyOptions:
    now: int
    anchor: TrustAnchor
    offline: bool = False
    pccs_url: str = PHALA_PCCS_URL
    policy: TcbPolicy = field(default_factory=TcbPolicy)
    phases: tuple[str, ...] = PHASES
    # Phases named by the user: their checks must run. By default only what the evidence allows is required.
    explicit_phases: bool = False
    reference: bool = True
    onchain: OnchainOptions | None = None
    images: ImageOptions | None = None
    domain: DomainOptions | None = None
    agent_url: str | None = None  # the app's guest agent (default: https://<app_id>-8090.<gateway domain>)
    ita: ItaOptions | None = None  # an Intel Trust Authority appraisal besides our own (off without an API key)
    nras_url: str | None = None  # NVIDIA's attestation service for GPU evidence (default: NVIDIA's)
    rpc_urls: dict[str, str] = field(default_factory=dict)  # JSON-RPC endpoint per chain key, for governance a
    # Cloud answer names (default: the chain's public endpoint)


class Cancelled(Exception):
    """The caller asked to stop: raised between phases, never in the middle of one."""


@dataclass
class Progress:
    """Where a long verification tells its caller how far it got, and learns whether to stop."""

    report: Callable[[str], None] | None = None
    cancelled: Callable[[], bool] | None = None

    def step(self, text: str) -> None:
        if self.cancelled is not None and self.cancelled():
            raise Cancelled(text)
        if self.report is not None:
            self.report(text)


@dataclass
class ImageOptions:
    """Where OS images come from: a folder the user gives, the image cache, or (when allowed) a download."""

    image_dir: Path | None = None
    cache_dir: Path | None = None  # images and measurements are cached under it
    cache_cap_bytes: int = 8 * 1024**3
    fetch: bool = False  # download a missing image (hundreds of MB): only when the user asks
    acpi_tool: Path | None = None
    image_base_url: str | None = None  # where mr_<os_image_hash>.tar.gz is downloaded from (None: the official one)
    allowed: tuple[str, ...] = ()  # the OS images (os_image_hash, lowercase hex) the user accepts; empty: any


@dataclass
class CollateralSource:
    collateral: Collateral | None
    input: InputFile | None
    problem: str | None = None
    is_error: bool = False


@dataclass
class EntityEvidence:
    """Everything given for one entity, combined from several files."""

    entity: Entity
    quote: Evidence
    events: list[Event] | None
    events_source: str | None
    events_stripped: bool  # an attestation's stripped log: RTMR3 replays from it, RTMR0-2 do not
    compose: Evidence | None
    certificates: list[x509.Certificate]
    vm_config: dict[str, Any] | None
    recording: list[Exchange]


def _one(items: list[Evidence], kind: str, what: str) -> Evidence | None:
    found = [e for e in items if e.kind == kind]
    if len(found) > 1:
        raise InputError(f"several {what} among the evidence ({', '.join(e.name for e in found)}); give one")
    return found[0] if found else None


def assemble(items: list[Evidence], entity: Entity = "app") -> EntityEvidence:
    quotes = [e for e in items if e.quote is not None]
    if not quotes:
        raise InputError("no quote among the evidence (give a raw quote, a GetQuote or an attestation JSON)")
    if len(quotes) > 1:
        names = ", ".join(e.name for e in quotes)
        raise InputError(f"several quotes among the evidence ({names}); give one quote per verification")
    quote = quotes[0]
    log = _one(items, "event-log", "event logs")
    if log is not None and quote.events is not None:
        raise InputError(f"two event logs: {quote.name} carries one and {log.name} is another; give one")
    events, events_source = (log.events, log.name) if log is not None else (quote.events, quote.name)
    if events is None:
        events_source = None
    certificates = [c for e in items if e.kind == "certificate" for c in e.certificates]
    return EntityEvidence(
        entity=entity,
        quote=quote,
        events=events,
        events_source=events_source,
        events_stripped=log is None and quote.log_stripped,
        compose=_one(items, "app-compose", "app-compose files"),
        certificates=certificates,
        vm_config=quote.vm_config,
        recording=_recorded_exchanges(items),
    )


def expand(items: list[Evidence]) -> list[Evidence]:
    """Reports among the evidence stand for the inputs they recorded."""
    out: list[Evidence] = []
    for item in items:
        out.extend(replay_inputs(item.json, item.name) if item.kind == "report" else [item])
    return out


def _collateral_input(data: bytes, name: str) -> InputFile:
    return Evidence(name, "collateral", data).input_file(role="collateral")


def resolve_collateral(
    items: list[Evidence],
    quote: Evidence,
    options: VerifyOptions,
    client: NetClient | None,
    cache: CollateralCache | None,
) -> CollateralSource:
    given = _one(items, "collateral", "collateral files")
    if given is not None:
        col = Collateral.from_dict(given.json, given.name)
        return CollateralSource(col, given.input_file(role="collateral"))
    if options.offline or client is None:
        return CollateralSource(None, None, "offline and no collateral given (use --collateral FILE)")
    assert quote.quote is not None
    try:
        pem = parse_quote(quote.quote).pck_chain_pem() or b""
        pck = parse_pck_extension(x509.load_pem_x509_certificates(pem.rstrip(b"\x00"))[0])
    except (ValueError, IndexError, PckExtensionError, x509.InvalidVersion, InputError) as exc:
        return CollateralSource(None, None, f"cannot tell which collateral to fetch: the quote's PCK "
                                f"certificate does not parse ({exc})", is_error=True)
    tee = "tdx" if quote.quote[4:8] == b"\x81\x00\x00\x00" else "sgx"
    try:
        data = get_collateral(client, options.pccs_url, tee=tee, fmspc=pck.fmspc.hex().upper(), ca=pck.ca_type,
                              now=options.now, cache=cache)
    except NetError as exc:
        return CollateralSource(None, None, f"collateral could not be fetched: {exc}", is_error=True)
    text = json.dumps(data, indent=2).encode()
    try:
        col = Collateral.from_dict(data, f"collateral from {options.pccs_url}")
    except InputError as exc:
        return CollateralSource(None, None, f"the PCCS answer is not usable collateral: {exc}", is_error=True)
    return CollateralSource(col, _collateral_input(text, f"collateral fetched from {options.pccs_url}"))


def _skip(check_id: str, entity: Entity, phase: str, reason: str) -> Check:
    return Check(id=check_id, entity=entity, phase=phase, status=CheckStatus.SKIP,  # type: ignore[arg-type]
                 anchor=Anchor.NONE, summary=f"skipped: {reason}", details={"reason": reason})


@dataclass
class _SourceState:
    app_info: AppInfo | None = None
    derived: dict[str, Any] = field(default_factory=dict)
    measurement: dict[str, Any] | None = None  # the expected registers and events, for the report
    # Checks whose input was not given: not required unless the user named their phase.
    absent: set[str] = field(default_factory=set)
    verified_os_image_hash: bytes | None = None  # from an os.image_hash that held


def _eventlog_checks(ev: EntityEvidence, quote: Quote, state: _SourceState) -> list[Check]:
    if ev.events is None:
        state.absent.update({"eventlog.replay", "eventlog.rtmr3_payloads"})
        reason = "no event log given (a GetQuote or attestation JSON, or an event log file, carries one)"
        return [_skip("eventlog.replay", ev.entity, "hardware", reason),
                _skip("eventlog.rtmr3_payloads", ev.entity, "hardware", reason)]
    if ev.events_stripped:
        replay = check_replay(ev.events, quote, ev.entity, registers=(3,), narrowed_because=(
            "an attestation's log is stripped of most RTMR0-2 events, so the os checks recompute those registers"))
    else:
        replay = check_replay(ev.events, quote, ev.entity)
    payloads = check_rtmr3_payloads(ev.events, quote, ev.entity)
    if payloads.status in (CheckStatus.PASS, CheckStatus.WARN):
        # App info comes from the RTMR3 events only once they are bound to the quote. A warning (an unusual boot
        # sequence) still binds every payload, and the first value is the one used: the app's identity stands, and
        # the checks that rest on it must run (else a warning would switch them off).
        state.app_info = extract_app_info(ev.events)
    return [replay, payloads]


def _source_checks(ev: EntityEvidence, quote: Quote, hw: HardwareResult, state: _SourceState) -> list[Check]:
    """The compose hash and mr_config_id (the on-chain check comes after the OS checks: it asks about their image)."""
    info = state.app_info
    if info is not None and quote.is_tdx:
        state.derived = derived_values(quote, info, hw.pck.ppid if hw.pck else None)
    if ev.compose is None:
        state.absent.add("source.compose_hash")
        compose_reason = "no app-compose given"
    else:
        compose_reason = ""
    compose = check_compose_hash(ev.compose.data if ev.compose else None, info, ev.entity, compose_reason)
    if compose.status is CheckStatus.SKIP and info is None:
        state.absent.add("source.compose_hash")
    if info is None:
        state.absent.add("source.mr_config_id")
    return [compose, check_mr_config_id(quote, info, ev.entity)]


def _onchain(ev: EntityEvidence, info: AppInfo | None, state: _SourceState, options: VerifyOptions,
             client: NetClient | None, reader: OnchainReader | None = None) -> Check:
    """`source.onchain_registry`; `reader` is shared by the entities of one deployment (one pinned block)."""
    from .onchain import OnchainReader, check_onchain_registry

    cfg = options.onchain
    if cfg is None:
        state.absent.add("source.onchain_registry")
        return _skip("source.onchain_registry", ev.entity, "source",
                     "no on-chain governance given (use --kms-contract, with --chain and --rpc-url)")
    if "source" not in options.phases:  # not asked for: the chain is not read (no request leaves the machine)
        return _skip("source.onchain_registry", ev.entity, "source", "phase source not selected")
    reason = _unread_chain(cfg.chain)
    if reason is not None:
        return Check(id="source.onchain_registry", entity=ev.entity, phase="source", status=CheckStatus.ERROR,
                     anchor=Anchor.NONE, summary=f"on-chain governance by DstackKms {cfg.kms_contract} is named, "
                     f"but not checked: {reason}", details={"kms_contract": cfg.kms_contract, "chain": cfg.chain})
    if reader is None:
        reader = OnchainReader(_net(ev.recording, client), cfg.chain, rpc_url=cfg.rpc_url)
    app_contract = cfg.app_contract or (("0x" + info.app_id.hex()) if info and info.app_id else None)
    # The KMS asks about the OS image the verifier checked (dstack's boot_info takes the verified vm_config's), and
    # only a KMS boot has no os-image-hash event; else the hardware-measured event, bound by the RTMR3 replay.
    os_image = state.verified_os_image_hash or (info.os_image_hash if info and info.os_image_hash else None)
    return check_onchain_registry(
        reader,
        ev.entity,
        app_contract=app_contract,
        kms_contract=cfg.kms_contract,
        compose_hash=("0x" + info.compose_hash.hex()) if info and info.compose_hash else None,
        os_image_hash=("0x" + os_image.hex()) if os_image else None,
        device_id=("0x" + state.derived["device_id"]) if state.derived.get("device_id") else None,
        mr_aggregated=("0x" + state.derived["mr_aggregated"]) if state.derived.get("mr_aggregated") else None,
        instance_id=("0x" + info.instance_id.hex()) if info and info.instance_id else None,
    )


OS_CHECKS = ("os.image_hash", "os.mrtd", "os.rtmr0", "os.rtmr1", "os.rtmr2")


def _os_checks(ev: EntityEvidence, quote: Quote, state: _SourceState, options: VerifyOptions,
               client: NetClient | None) -> list[Check]:
    """OS integrity: the image (or the TDX-lite measurement document) recomputes MRTD and RTMR0-2."""
    from .measure.checks import check_registers
    from .measure.image_check import check_image_hash, check_image_hash_lite
    from .measure.lite import measure_lite

    vm = ev.vm_config
    images = options.images or ImageOptions()
    if vm is None or (images.image_dir is None and not vm.get("os_image_hash") and "tdx_measurement" not in vm):
        state.absent.update(OS_CHECKS)
        reason = ("no VM config given (a GetQuote or attestation JSON carries it): the OS image is unknown"
                  if not vm else "the VM config names no OS image (no os_image_hash, no TDX-lite material)")
        skipped = [_skip(check_id, ev.entity, "os", reason) for check_id in OS_CHECKS]
        # An accepted-images list still holds the image the hardware measured (the RTMR3 event) to it.
        return [_noted_image(state, skipped[0], vm, images), *skipped[1:]]
    measured = state.app_info.os_image_hash if state.app_info else None
    logged = None if ev.events_stripped else ev.events  # a stripped log has no RTMR0-2 events to compare one by one
    # The boot's variant picks the path, as in dstack's verifier: the lite material rides along on legacy boots too,
    # and a legacy boot verified the lite way would accept its host-made ACPI tables unchecked.
    variant = vm.get("tdx_attestation_variant") or "legacy"
    if variant not in ("legacy", "lite"):
        return _failed_os(ev.entity, f"vm_config.tdx_attestation_variant {str(variant)[:40]!r} is neither legacy "
                                     "nor lite, so the OS image cannot be checked")
    if variant == "lite":
        image_check = _noted_image(state, check_image_hash_lite(vm, measured, ev.entity), vm, images)
        try:
            measurement = measure_lite(vm, ev.events or [])
        except InputError as exc:
            return [image_check, *_failed_measurement(ev.entity, f"the TDX-lite measurement failed: {exc.describe()}")]
        state.measurement = measurement.to_json()
        return [image_check, *check_registers(measurement, quote, logged, ev.entity, "")]
    folder, reason = _image_folder(vm, options, client)
    image_check = _noted_image(state, check_image_hash(folder, vm, measured, ev.entity, reason), vm, images)
    if folder is None:
        return [image_check, *check_registers(None, quote, logged, ev.entity, reason)]
    # The caches are keyed by os_image_hash = sha256(sha256sum.txt): only a folder whose files match its manifest
    # may read or fill them, or a changed file would be measured as the image it claims to be (and poison the entry).
    files_ok = all(f.get("ok") for f in image_check.details.get("files", []))
    try:
        measurement = _measure_cached(folder, vm, ev.events, options, use_cache=files_ok)
    except InputError as exc:
        return [image_check, *_failed_measurement(ev.entity, f"the image could not be measured: {exc.describe()}")]
    state.measurement = measurement.to_json()
    return [image_check, *check_registers(measurement, quote, logged, ev.entity, "")]


def _noted_image(state: _SourceState, check: Check, vm: dict[str, Any] | None, images: ImageOptions) -> Check:
    """The user's accepted images applied; the OS image hash of an os.image_hash that held kept, for the on-chain
    check to ask about."""
    from .measure.image_check import apply_allowed_images

    measured = state.app_info.os_image_hash if state.app_info else None
    check = apply_allowed_images(check, vm, measured, images.allowed)
    if check.status in (CheckStatus.PASS, CheckStatus.WARN) and check.details.get("os_image_hash"):
        state.verified_os_image_hash = bytes.fromhex(check.details["os_image_hash"])
    return check


def _failed_os(entity: Entity, reason: str) -> list[Check]:
    return [Check(id=OS_CHECKS[0], entity=entity, phase="os", status=CheckStatus.FAIL, anchor=Anchor.NONE,
                  summary=reason, details={"reason": reason}), *_failed_measurement(entity, reason)]


def _failed_measurement(entity: Entity, reason: str) -> list[Check]:
    return [Check(id=check_id, entity=entity, phase="os", status=CheckStatus.FAIL, anchor=Anchor.NONE,
                  summary=reason, details={"reason": reason}) for check_id in OS_CHECKS[1:]]


def _image_folder(vm: dict[str, Any], options: VerifyOptions, client: NetClient | None):  # type: ignore[no-untyped-def]
    """The image folder to measure, or None with the reason."""
    from .measure.cache import ImageCache, ImageError
    from .measure.download import DOWNLOAD_BASE_URL, fetch_image
    from .measure.image import ImageFolder

    images = options.images or ImageOptions()
    if images.image_dir is not None:
        return ImageFolder.open(images.image_dir), ""
    wanted = vm.get("os_image_hash")
    if not isinstance(wanted, str) or not wanted:
        return None, "the VM config names no os_image_hash, and no --image-dir was given"
    if images.cache_dir is None:
        return None, "no image folder given (--image-dir) and no image cache configured"
    cache = ImageCache(images.cache_dir / "os-images", images.cache_cap_bytes)
    try:
        cached = cache.get(wanted)
    except (ImageError, ValueError):
        cached = None
    if cached is not None:
        return ImageFolder.open(cached), ""
    if options.offline or client is None:
        return None, f"offline: image {wanted[:16]}… is not cached and no --image-dir was given"
    if not images.fetch:
        return None, f"image {wanted[:16]}… is not cached; give --image-dir, or --fetch-image to download it"
    version = vm.get("image")
    try:
        path = fetch_image(client, os_image_hash=wanted, os_version=version if isinstance(version, str) else None,
                           cache=cache, base_url=images.image_base_url or DOWNLOAD_BASE_URL)
    except (ImageError, NetError, InputError, ValueError) as exc:  # ValueError: an odd hash or image name
        return None, f"image {wanted[:16]}… could not be fetched: {exc}"
    return ImageFolder.open(path), ""


def _measure_cached(folder: ImageFolder, vm: dict[str, Any], events: list[Event] | None, options: VerifyOptions, *,
                    use_cache: bool = True) -> Measurement:
    """The image's measurement: a cached one when the ACPI digests came from dstack-acpi-tables, else one built from
    the cached file hashes (which do not depend on the event log) and this event log's ACPI digests."""
    from .measure.cache import MeasurementCache
    from .measure.full import hash_image, measure_image
    from .measure.hash_cache import ImageHashCache

    images = options.images or ImageOptions()
    root = images.cache_dir if use_cache else None
    cache = MeasurementCache(root / "measurements") if root is not None else None
    hash_cache = ImageHashCache(root / "image-hashes") if root is not None else None
    image_hash = folder.os_image_hash.hex()
    hit = cache.get(image_hash, vm) if cache is not None else None
    if hit is not None:
        return hit
    hashes = hash_cache.get(image_hash, vm) if hash_cache is not None else None
    if hashes is None:
        hashes = hash_image(folder, vm)
        if hash_cache is not None:
            with contextlib.suppress(OSError):  # an unwritable cache only costs the next run the hashing
                hash_cache.put(hashes, vm)
    measurement = measure_image(folder, vm, events, acpi_tool=images.acpi_tool, hashes=hashes)
    if cache is not None:
        cache.put(image_hash, vm, measurement)
    return measurement


def _binding_check(ev: EntityEvidence, quote: Quote, state: _SourceState, now: int,
                   gateway: GatewayEndpoints | None = None) -> Check:
    """What report_data binds: the gateway's ACME account (when its account quote is the verified one), else an
    RA-TLS certificate's key. (The KMS's keys are bound by its bootstrap quote: `binding.kms_keys`.)"""
    from .ratls import check_acme_binding

    acme = gateway.acme if gateway is not None else None
    if acme is not None and acme.account_quote == ev.quote.quote:
        return check_acme_binding(quote, acme.account_uri, ev.entity)
    if not ev.certificates:
        state.absent.add("binding.report_data")
        return _skip("binding.report_data", ev.entity, "hardware",
                     "no key material given (an RA-TLS certificate binds the app's key to report_data)")
    info = state.app_info
    kms_ca = None
    if info is not None and info.key_provider is not None and info.key_provider.name == "kms" and info.key_provider.id:
        try:
            kms_ca = bytes.fromhex(info.key_provider.id)
        except ValueError:
            kms_ca = None
    return check_ratls_binding(ev.certificates, quote, kms_ca, ev.entity, datetime.fromtimestamp(now, UTC))


def _hardware_entity(result: HardwareResult) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if result.quote is not None:
        out["quote"] = result.quote.decoded()
        out["quote_layout"] = result.quote.span_map()
    if result.pck is not None:
        out["pck"] = result.pck.to_dict()
    out["tcb"] = {
        "status": result.status,
        "advisory_ids": result.advisory_ids,
        "explanation": result.explanation,
    }
    return out


def _mark_phase_off(checks: list[Check], selected: tuple[str, ...]) -> list[Check]:
    out = []
    for c in checks:
        if c.phase not in selected and not c.id.startswith("eventlog."):  # event logs underlie every phase
            c = c.model_copy(update={"status": CheckStatus.SKIP, "summary": f"skipped: phase {c.phase} not selected",
                                     "details": {}})
        out.append(c)
    return out


def _recorded(items: list[Evidence], key: str) -> Iterator[tuple[str, Any]]:
    """(file name, value) of `key` in the policy of each report among the evidence that records it: what a re-run
    takes over from the run that made the report."""
    for item in items:
        policy = item.json.get("policy") if item.kind == "report" else None
        value = policy.get(key) if isinstance(policy, dict) else None
        if value is not None:
            yield item.name, value


def _recorded_os_images(items: list[Evidence]) -> tuple[str, ...]:
    """The OS images a report among the evidence accepted (`policy.os_images`); malformed is an InputError."""
    from .measure.image_check import os_image_hex

    for name, recorded in _recorded(items, "os_images"):
        try:
            if not isinstance(recorded, list) or not all(isinstance(v, str) for v in recorded):
                raise ValueError
            return tuple(os_image_hex(v) for v in recorded)
        except ValueError:
            raise InputError("malformed accepted OS images: expected a list of 64-digit hex strings", source=name,
                             field="policy.os_images") from None
    return ()


def _is_http_url(value: object) -> bool:
    """A report is untrusted input: the URLs it recorded steer a re-run's requests, so only http(s) ones are taken."""
    return isinstance(value, str) and urllib.parse.urlsplit(value).scheme in ("http", "https")


def _recorded_onchain(items: list[Evidence]) -> OnchainOptions | None:
    """The on-chain options a report among the evidence was made with, so that its re-run reads the same contracts
    (from its recorded JSON-RPC exchanges). A report is untrusted input: anything malformed is an InputError."""
    from .onchain import OnchainInputError, chain_config

    for name, recorded in _recorded(items, "onchain"):
        optional = ("rpc_url", "app_contract")
        try:
            if not isinstance(recorded, dict) or not all(
                isinstance(v, str) or (v is None and k in optional) for k, v in recorded.items()
            ):
                raise TypeError
            found = OnchainOptions(**recorded)  # TypeError for a missing or unknown key
            try:
                chain_config(found.chain, found.rpc_url)
            except OnchainInputError:
                # A chain an answer named and we do not read is re-run to the same error check: any short printable
                # name is taken (nothing is ever read from it), as `_governance` kept it.
                if found.rpc_url is not None or not (0 < len(found.chain) <= MAX_CHAIN_NAME
                                                     and found.chain.isprintable()):
                    raise
            if found.rpc_url is not None and not _is_http_url(found.rpc_url):
                raise InputError("the JSON-RPC endpoint is not an http(s) URL", source=name,
                                 field="policy.onchain.rpc_url")
        except TypeError:
            raise InputError("malformed on-chain options: expected the strings kms_contract, chain, rpc_url and "
                             "app_contract", source=name, field="policy.onchain") from None
        except OnchainInputError as exc:
            raise InputError(str(exc), source=name, field="policy.onchain.chain") from None
        return found
    return None


def _domain_policy(domain: DomainOptions) -> dict[str, Any]:
    """The domain options, recorded so a re-run uses the same: custom TLS roots travel as PEM (public certificates),
    and a re-run says they came from the report."""
    roots = domain.trust_roots
    return {"domain": domain.domain, "ct_log": domain.ct_log, "crtsh_url": domain.crtsh_url,
            "trust_roots": "system" if roots is None else [
                {"sha256": hashlib.sha256(c.public_bytes(Encoding.DER)).hexdigest(),
                 "pem": c.public_bytes(Encoding.PEM).decode()} for c in roots]}


ENDPOINT_OPTIONS = ("agent_url", "nras_url")  # endpoints given to a run, recorded so that its re-run asks them again


def _endpoints_policy(options: VerifyOptions) -> dict[str, Any]:
    given = {k: getattr(options, k) for k in ENDPOINT_OPTIONS if getattr(options, k)}
    return {"endpoints": given} if given else {}


def _recorded_tcb_policy(items: list[Evidence]) -> TcbPolicy | None:
    """The TCB policy a report among the evidence was decided with."""
    for name, recorded in _recorded(items, "tcb"):
        if not isinstance(recorded, dict):
            raise InputError("malformed TCB policy: not an object", source=name, field="policy.tcb")
        try:
            return TcbPolicy.from_description(recorded)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"]))
            raise InputError(f"malformed TCB policy: {where}: {first['msg'].removeprefix('Value error, ')}",
                             source=name, field="policy.tcb") from None
    return None


def _recorded_endpoints(items: list[Evidence]) -> dict[str, str]:
    """The endpoints a report among the evidence was made with (its recorded answers are keyed by their URLs)."""
    for name, recorded in _recorded(items, "endpoints"):
        if not isinstance(recorded, dict) or not all(k in ENDPOINT_OPTIONS and _is_http_url(v)
                                                     for k, v in recorded.items()):
            raise InputError(f"malformed endpoints: expected http(s) URLs for {', '.join(ENDPOINT_OPTIONS)}",
                             source=name, field="policy.endpoints")
        return recorded
    return {}


def _recorded_domain(items: list[Evidence]) -> DomainOptions | None:
    """The domain options a report among the evidence recorded."""
    from .domain_phase import DomainOptions
    from .ratls import load_certificates

    for name, recorded in _recorded(items, "domain"):
        if not isinstance(recorded, dict):
            continue
        domain, ct_log, crtsh = recorded.get("domain"), recorded.get("ct_log"), recorded.get("crtsh_url")
        roots = recorded.get("trust_roots", "system")
        if not (domain is None or isinstance(domain, str)) or not isinstance(ct_log, bool) or \
                not _is_http_url(crtsh) or \
                not (roots == "system" or isinstance(roots, list)):
            raise InputError("malformed domain options", source=name, field="policy.domain")
        certs = None
        if isinstance(roots, list):
            pems = [r.get("pem") if isinstance(r, dict) else None for r in roots]
            if not all(isinstance(pem, str) for pem in pems):
                raise InputError("expected PEM certificates", source=name, field="policy.domain.trust_roots")
            certs = [c for pem in pems for c in load_certificates(pem.encode(), f"{name} policy.domain")]
        return DomainOptions(domain=domain, ct_log=ct_log, crtsh_url=crtsh, trust_roots=certs)
    return None


def _recording_input(exchanges: list[Exchange]) -> InputFile:
    body = json.dumps({"schema": RECORDING_SCHEMA, "exchanges": [x.model_dump(mode="json") for x in exchanges]},
                      indent=1).encode()
    return Evidence("network-recording.json", "recording", body).input_file(role="recording")


SHARED_KINDS = ("collateral", "recording")  # evidence that applies to every entity of a multi-entity answer
BESIDE_CLOUD = ("acme-info", "agent-info", "gpu-evidence", "kms-meta")  # the entities' own answers


def _replayable(exchange: Exchange, options: VerifyOptions) -> bool:
    """Recorded into the evidence: every answer a re-run needs, not streamed downloads (no body) nor collateral
    fetches (the collateral is an input of its own)."""
    collateral = exchange.url.startswith(options.pccs_url) and "/certification/v" in exchange.url
    return RECORDED_NOTE_HEADER not in exchange.headers and not collateral


def _recorded_exchanges(items: list[Evidence]) -> list[Exchange]:
    return [Exchange.model_validate(x) for e in items if e.kind == "recording" for x in e.json["exchanges"]]


def _net(recording: list[Exchange], client: NetClient | None) -> NetClient:
    """Where a check's requests go: the recording of the run being replayed, else the live client, else nowhere."""
    return ReplayClient(recording) if recording else (client or NetClient(offline=True))


def verify_evidence(
    items: list[Evidence],
    options: VerifyOptions,
    *,
    client: NetClient | None = None,
    cache: CollateralCache | None = None,
    memo: CollateralMemo | None = None,
    entity: Entity = "app",
    progress: Progress | None = None,
) -> Report:
    """Verify what the evidence allows. Raises InputError for evidence that cannot be used at all, Cancelled when
    `progress` says to stop.

    A saved Phala Cloud answer holds three entities: each is verified on its own (one entity's failure never stops
    the others), the reports are merged, and the checks between entities are added. A gateway's acme-info among
    the evidence makes it a gateway verification (its account quote is the gateway's quote)."""
    from .collector import collect
    from .domain import DEFAULT_CRTSH_URL

    progress = progress or Progress()
    if options.onchain is None:  # re-running a report: the contracts it read, unless new ones are given
        options = replace(options, onchain=_recorded_onchain(items))
    recorded_policy = _recorded_tcb_policy(items)
    if recorded_policy is not None and options.policy == TcbPolicy():  # re-running a report: decided as it was,
        options = replace(options, policy=recorded_policy)  # unless a policy other than the default is given
    recorded_images = _recorded_os_images(items)
    if recorded_images and not (options.images and options.images.allowed):  # re-running a report: the images it
        options = replace(options, images=replace(options.images or ImageOptions(), allowed=recorded_images))  # took
    endpoints = _recorded_endpoints(items)  # re-running a report: the endpoints it asked, unless new ones are given
    options = replace(options, **{k: getattr(options, k) or v for k, v in endpoints.items()})
    recorded_domain = _recorded_domain(items)
    if recorded_domain is not None:  # re-running a report: the domain options it was made with, unless given anew
        given = options.domain
        options = replace(options, domain=recorded_domain if given is None else replace(
            given, domain=given.domain or recorded_domain.domain, ct_log=given.ct_log or recorded_domain.ct_log,
            crtsh_url=given.crtsh_url if given.crtsh_url != DEFAULT_CRTSH_URL else recorded_domain.crtsh_url,
            trust_roots=given.trust_roots if given.trust_roots is not None else recorded_domain.trust_roots))
    expanded = expand(items)
    clouds = [e for e in expanded if e.kind == "cloud-attestations"]
    results = [e for e in expanded if e.kind == "trust-center-result"]
    if clouds and results:
        raise InputError(f"{results[0].name}: a Trust Center result and a Phala Cloud answer are verified apart")
    if clouds:
        report = _verify_cloud_answer(clouds, expanded, options, client=client, cache=cache, memo=memo,
                                      progress=progress)
    elif results:
        report = _verify_trust_center(results, expanded, options, client=client, cache=cache, memo=memo,
                                      progress=progress)
    else:
        gateway = _gateway_from_files(expanded)
        if gateway is not None:
            expanded, endpoints = gateway
            report = _verify_entity(expanded, options, client=client, cache=cache, memo=memo, entity="gateway",
                                    gateway=endpoints, progress=progress)
        else:
            report = _verify_entity(items, options, client=client, cache=cache, memo=memo, entity=entity,
                                    progress=progress)
    objects, relationships = collect(report)
    return report.model_copy(update={"data_objects": objects, "relationships": relationships})


def _gateway_from_files(items: list[Evidence]) -> tuple[list[Evidence], GatewayEndpoints] | None:
    """A saved acme-info: the gateway's endpoints, and its account quote as the gateway's quote unless one is given."""
    from .domain_phase import GatewayEndpoints
    from .sources import material_evidence
    from .sources.gateway import parse_acme_info

    found = [e for e in items if e.kind == "acme-info"]
    if not found:
        return None
    if len(found) > 1:
        raise InputError(f"several acme-info answers among the evidence ({', '.join(e.name for e in found)})")
    acme = parse_acme_info(found[0].data, found[0].name)
    if not any(e.quote is not None for e in items):
        items = items + material_evidence(acme.material())
    return items, GatewayEndpoints(acme=acme)


def _gateway_of(items: list[Evidence], url: str | None, run: _Run, options: VerifyOptions, progress: Progress,
                named_by: str, field: str) -> GatewayEndpoints:
    """The gateway's endpoints for a deployment's answer: its acme-info saved beside the answer, used instead of
    fetching it; else fetched from the URL the answer names."""
    saved = _gateway_from_files([e for e in items if e.kind == "acme-info"])
    if saved is not None:
        return replace(saved[1], url=url)
    progress.step("gateway: fetching acme-info")
    return _fetch_gateway(url, run.asking, options, named_by, field)


def _fetch_gateway(url: str | None, net: NetClient | ReplayClient | None, options: VerifyOptions,
                   named_by: str, field: str) -> GatewayEndpoints:
    """The gateway's acme-info from the URL the answer names (or from the recording of the run that did)."""
    from .domain_phase import GatewayEndpoints
    from .sources import SourceError
    from .sources.gateway import fetch_acme_info

    if "domain" not in options.phases:
        return GatewayEndpoints(acme=None, url=url)
    if not url:
        return GatewayEndpoints(acme=None, problem=f"{named_by} names no gateway URL ({field})")
    if net is None:
        return GatewayEndpoints(acme=None, url=url)
    try:
        return GatewayEndpoints(acme=fetch_acme_info(net, url), url=url)
    except SourceError as exc:
        if exc.kind == "offline" and not isinstance(net, ReplayClient):
            return GatewayEndpoints(acme=None, url=url)  # offline: the domain phase is skipped, not in error
        return GatewayEndpoints(acme=None, problem=exc.describe(), url=url)


def _kms_meta(answer: CloudAttestations, saved: list[Evidence], net: NetClient | None,
              progress: Progress) -> KmsMeta | None:
    """The KMS's own KMS.GetMeta answer (its CA and k256 keys and the bootstrap quote binding them): saved beside the
    Cloud answer, else asked of the KMS at `kms_info.url`. The Trust Center never asks the KMS (spec §1.5)."""
    from .sources import SourceError
    from .sources.agent import fetch_kms_meta

    given = _saved_kms_meta(saved)
    if given is not None:
        return given
    if net is None or not answer.kms_info.url:
        return None
    progress.step("kms: asking KMS.GetMeta")
    try:
        return fetch_kms_meta(net, answer.kms_info.url)
    except SourceError:  # then the KMS's keys are not known, which source.kms_key_provider says
        return None


def _saved_kms_meta(saved: list[Evidence]) -> KmsMeta | None:
    """A KMS.GetMeta answer saved beside a deployment's answer."""
    from .sources.agent import parse_kms_meta

    if len(saved) > 1:
        raise InputError(f"several KMS.GetMeta answers among the evidence ({', '.join(e.name for e in saved)})")
    return parse_kms_meta(saved[0].data, saved[0].name) if saved else None


def _kms_meta_onchain(reader: OnchainReader, kms_contract: str) -> KmsMeta | None:
    """The KMS's keys and bootstrap quote as registered in its DstackKms (`kmsInfo()`), in KMS.GetMeta's shape;
    None when the chain cannot be read or registers none (the key-provider check then says the keys are unknown)."""
    from .onchain import OnchainError
    from .sources.agent import KmsMeta

    try:
        info = reader.kms_info(kms_contract)
    except OnchainError:
        return None
    if not info.quote or not info.ca_pubkey or not info.k256_pubkey:
        return None
    source = f"DstackKms.kmsInfo() of {kms_contract} on {reader.chain.label()}"
    try:
        events = load_json(info.eventlog.decode("utf-8"), source) if info.eventlog else None
    except (InputError, UnicodeDecodeError):
        events = None
    return KmsMeta(source=source, bootstrap_ca_pubkey=info.ca_pubkey, bootstrap_k256_pubkey=info.k256_pubkey,
                   quote=info.quote, event_log=events if isinstance(events, list) else None)


def _kms_keys_check(ev: EntityEvidence, hw: HardwareResult, meta: KmsMeta, source: CollateralSource,
                    options: VerifyOptions, memo: CollateralMemo | None) -> Check:
    """`binding.kms_keys`: the KMS's CA and k256 keys (KMS.GetMeta) are bound by its bootstrap quote — Keccak-256 in
    report_data — which passes DCAP and comes from the TD identity (MRTD, RTMR0-2) of the verified KMS quote."""
    from .ratls import check_kms_binding

    ca, k256 = meta.ca_pubkey, meta.bootstrap_k256_pubkey or meta.k256_pubkey
    if meta.quote is None or not ca or not k256:
        missing = "bootstrap quote" if meta.quote is None else "CA or k256 public key"
        return Check(id="binding.kms_keys", entity=ev.entity, phase="hardware", status=CheckStatus.WARN,
                     anchor=Anchor.NONE, summary=f"KMS keys: {meta.source} gives no {missing}, so nothing binds the "
                     "KMS's keys to a quote", details={"source": meta.source})
    try:
        bootstrap = parse_quote(meta.quote)
    except InputError as exc:  # a chain's or a KMS's answer is untrusted input like any other
        return Check(id="binding.kms_keys", entity=ev.entity, phase="hardware", status=CheckStatus.FAIL,
                     anchor=Anchor.NONE, summary=f"KMS keys: the bootstrap quote of {meta.source} does not parse "
                     f"({exc.describe()})", details={"source": meta.source})
    binding = check_kms_binding(bootstrap, ca, k256, ev.entity)
    result = verify_quote(meta.quote, collateral=source.collateral, anchor=options.anchor, now=options.now,
                          policy=options.policy, entity=ev.entity, memo=memo, reference=False)
    dcap = _hardware_ok(result.checks)
    verified = hw.quote
    assert verified is not None
    fields = ("mrtd", "rtmr0", "rtmr1", "rtmr2")
    differ = [f for f in fields if bootstrap.body.fields.get(f) != verified.body.fields.get(f)]
    details = {**binding.details, "source": meta.source, "bootstrap_quote_dcap": dcap,
               "bootstrap_quote_problems": [c.summary for c in result.checks if c.status is CheckStatus.FAIL],
               "same_td_identity_as_verified_quote": not differ, "differing_registers": differ}
    if binding.status is not CheckStatus.PASS or dcap is False:
        why = binding.summary if binding.status is not CheckStatus.PASS else \
            "the bootstrap quote does not pass DCAP (see the details)"
        return binding.model_copy(update={"id": "binding.kms_keys", "status": CheckStatus.FAIL,
                                          "summary": f"KMS keys: {why}", "details": details})
    if differ or dcap is None:
        why = (f"the bootstrap quote's {', '.join(differ)} differ from the verified KMS quote's (another OS or "
               "firmware since bootstrap)") if differ else "the bootstrap quote's DCAP status is unknown (collateral)"
        return binding.model_copy(update={"id": "binding.kms_keys", "status": CheckStatus.WARN,
                                          "summary": f"KMS keys bound by the bootstrap quote, but {why}",
                                          "details": details})
    return binding.model_copy(update={"id": "binding.kms_keys", "anchor": Anchor.QUOTE,
                                      "summary": "KMS keys: " + binding.summary + "; the bootstrap quote passes DCAP "
                                                 "and comes from the verified KMS's TD identity",
                                      "details": details})


def _unread_chain(chain: str) -> str | None:
    """Why the chain of some governance is not read (None: it is)."""
    from .onchain import OnchainInputError, chain_config

    try:
        chain_config(chain)
    except OnchainInputError as exc:
        return str(exc)
    return None


MAX_CHAIN_NAME = 80  # a chain named by an answer that we do not read is kept, as named, up to this length


def _governance(contract: str | None, chain: str | int | None, options: VerifyOptions) -> OnchainOptions | None:
    """The on-chain governance an answer names (the KMS contract and its chain), so that the registry check runs as
    the Trust Center's does; None for a KMS hosted by Phala (no chain). A chain we do not read is kept as named:
    the registry check is then an error saying so (governance claimed but not checked is not a pass)."""
    from .onchain import OnchainInputError, chain_config

    if not contract or not chain:
        return None
    try:
        config = chain_config(chain)
    except OnchainInputError:
        name = "".join(c if c.isprintable() else " " for c in str(chain))[:MAX_CHAIN_NAME].strip() or "?"
        return OnchainOptions(kms_contract=contract, chain=name)
    return OnchainOptions(kms_contract=contract, chain=config.key, rpc_url=options.rpc_urls.get(config.key))


def _app_agent_info(answer: CloudAttestations, saved: list[Evidence], gateway: GatewayEndpoints,
                    net: NetClient | None, recorded: list[Exchange], options: VerifyOptions,
                    progress: Progress) -> AgentInfo | None:
    """The app's guest-agent info — its vm_config and RA-TLS chain, which the Cloud answer lacks: a saved
    /prpc/Info, else fetched through the gateway (``https://<app_id>-8090.<domain>``) when online."""
    from .domain_phase import DomainOptions, domain_name
    from .sources import SourceError
    from .sources.agent import app_rpc_url, fetch_info, parse_info

    if len(saved) > 1:
        raise InputError(f"several /prpc/Info answers among the evidence ({', '.join(e.name for e in saved)})")
    if saved:
        info = parse_info(saved[0].data, saved[0].name)
        if info.app_id != answer.app_id:
            raise InputError(f"the /prpc/Info answer is about app {info.app_id}, not {answer.app_id}",
                             source=saved[0].name, field="app_id")
        return info
    domain, _how = domain_name(options.domain or DomainOptions(), gateway)
    if net is None or (domain is None and options.agent_url is None and not recorded):
        return None
    progress.step("app: fetching its guest agent's /prpc/Info")
    try:
        url = options.agent_url or app_rpc_url(answer.app_id, domain or "")
        return fetch_info(net, url, kms_version=answer.kms_info.version)
    except SourceError:  # the app's OS phase then says the VM config is missing; the rest is verified
        return None


def _verify_cloud_answer(clouds: list[Evidence], items: list[Evidence], options: VerifyOptions, *,
                         client: NetClient | None, cache: CollateralCache | None,
                         memo: CollateralMemo | None, progress: Progress) -> Report:
    from .sources import to_evidence
    from .sources.cloud import parse_cloud_answer

    cloud = _alone(clouds, items, "Phala Cloud answer", "the gateway's acme-info and the app's /prpc/Info")
    answer = parse_cloud_answer(cloud.data, cloud.name)
    if options.onchain is None:
        options = replace(options, onchain=_governance(answer.kms_info.contract_address, answer.kms_info.chain_id,
                                                       options))
    run = _Run.of(items, client)
    gateway = _gateway_of(items, answer.kms_info.gateway_app_url, run, options, progress,
                          "the Cloud answer", "kms_info.gateway_app_url")
    agent = _app_agent_info(answer, [e for e in items if e.kind == "agent-info"], gateway,
                            run.asking, run.recorded, options, progress)
    instance = (answer.instance_index(agent.instance_id) if agent is not None else None) or 0
    per_entity = to_evidence(answer, instance=instance, acme_info=gateway.acme, app_info=agent)
    kms_meta = _kms_meta(answer, [e for e in items if e.kind == "kms-meta"], run.asking, progress)
    legacy = answer.legacy_reason
    stub = (f"; the Trust Center would use its legacy stub here ({legacy}) and report the {{entity}} valid without "
            "verifying anything" if legacy else "")

    def other_instances(by_entity: dict[str, Report], shared: list[Evidence]) -> list[Check]:
        main = by_entity.get("app")
        others = [i for i in range(len(answer.instances)) if i != instance]
        unreadable = [d for d in answer.dropped_instances if not d.stopped]
        if main is None or not (others or unreadable):
            return []
        return [_other_instances(answer, others, unreadable, main, shared, options, run.asking, cache, memo,
                                 progress)]

    report = _verify_deployment(
        per_entity, items, options, run, client=client, cache=cache, memo=memo, progress=progress, gateway=gateway,
        kms_meta=kms_meta, gateway_app_id=answer.kms_info.gateway_app_id,
        answer_input=cloud.input_file(role="cloud-attestations"),
        missing=lambda entity: _missing_entity(entity, f"the Cloud answer holds no quote of the {entity}"
                                               f"{stub.format(entity=entity)}", bool(legacy), legacy),
        extra=other_instances)
    if "app" not in report.entities:
        return report
    # Which of the answer's instances the app's checks are about (the data objects show that one).
    app = {**report.entities["app"], "cloud_instance": instance}
    return report.model_copy(update={"entities": {**report.entities, "app": app}})


def _other_instances(answer: CloudAttestations, others: list[int], unreadable: list[DroppedInstance], main: Report,
                     shared: list[Evidence], options: VerifyOptions, client: NetClient | None,
                     cache: CollateralCache | None, memo: CollateralMemo | None, progress: Progress) -> Check:
    """`source.other_instances`: each other running instance's quote and RTMR3 log verified (the same DCAP steps
    and policy, no OS image, no chain), then held to the instance verified in full (instances.py decides)."""
    from .instances import InstanceOutcome, check_other_instances
    from .sources import to_evidence

    only = replace(options, phases=("hardware", "source"), explicit_phases=True, onchain=None, domain=None,
                   ita=None)
    outcomes = []
    for index in others:
        progress.step(f"app: instance {index}")
        found = answer.instances[index]
        try:
            report = _verify_entity(to_evidence(answer, instance=index)["app"] + shared, only, client=client,
                                    cache=cache, memo=memo, entity="app")
        except InputError as exc:
            outcomes.append(InstanceOutcome(found.index, found.instance_id, None, exc.describe()))
            continue
        outcomes.append(InstanceOutcome(found.index, found.instance_id, report))
    # A running instance whose quote or log does not even parse was set aside by the parser: it is not verified.
    outcomes += [InstanceOutcome(d.index, None, None, d.reason) for d in unreadable]
    return check_other_instances(main, sorted(outcomes, key=lambda o: o.index))


def _verify_trust_center(results: list[Evidence], items: list[Evidence], options: VerifyOptions, *,
                         client: NetClient | None, cache: CollateralCache | None,
                         memo: CollateralMemo | None, progress: Progress) -> Report:
    """A Trust Center result, verified again from the evidence it holds, for every entity it has a quote of; what
    the Trust Center concluded is set beside each entity (`trust_center_claims`), never used."""
    from .sources import material_evidence
    from .sources.trust_center import parse_trust_center_result

    found = _alone(results, items, "Trust Center result", "the gateway's acme-info")
    result = parse_trust_center_result(found.data, found.name)
    if options.onchain is None:
        options = replace(options, onchain=_governance(result.kms_contract, result.chain, options))
    run = _Run.of(items, client)
    gateway = _gateway_of(items, result.gateway_url, run, options, progress,
                          "the Trust Center result", "gateway-main.endpoint")
    per_entity = {entity: material_evidence(material) for entity, material in result.materials.items()}
    kms_meta = _saved_kms_meta([e for e in items if e.kind == "kms-meta"])
    report = _verify_deployment(
        per_entity, items, options, run, client=client, cache=cache, memo=memo, progress=progress, gateway=gateway,
        kms_meta=kms_meta, gateway_app_id=result.gateway_app_id,
        answer_input=found.input_file(role="trust-center-result"),
        missing=lambda entity: _missing_entity(entity, f"the Trust Center result holds no quote of the {entity}"),
        expected=("app", "kms", "gateway"))  # a result may lack even the app's
    claims = result.claims.model_dump(mode="json")
    entities = {entity: {**data, "trust_center_claims": {
        "tcb_status": claims["tcb_status"].get(entity), "success": claims["success"],
        "completed_at": claims["completed_at"], "errors": claims["errors"], "failures": claims["failures"],
        "notes": [n for n in result.notes if n.startswith(f"{entity}:")
                  or not n.startswith(("app:", "kms:", "gateway:"))]}}
        for entity, data in report.entities.items()}
    return report.model_copy(update={"entities": entities})


def _alone(found: list[Evidence], items: list[Evidence], what: str, beside: str) -> Evidence:
    """The one answer naming the whole deployment; besides it only what every entity shares and the entities' own
    answers may be given."""
    if len(found) > 1:
        raise InputError(f"several {what}s among the evidence ({', '.join(c.name for c in found)})")
    others = [e for e in items if e.kind not in (*SHARED_KINDS, *BESIDE_CLOUD) and e is not found[0]]
    if others:
        raise InputError(f"{others[0].name}: a {what} is verified on its own (with collateral, {beside} at most)")
    return found[0]


@dataclass
class _Run:
    """The network side of a deployment verification: a recording among the evidence is answered from (a re-run),
    else the client asks; `start` marks where this run's own exchanges begin in the client's recorder."""

    recorded: list[Exchange]
    asking: NetClient | ReplayClient | None
    start: int

    @classmethod
    def of(cls, items: list[Evidence], client: NetClient | None) -> _Run:
        recorded = _recorded_exchanges([e for e in items if e.kind in SHARED_KINDS])
        return cls(recorded, ReplayClient(recorded) if recorded else client,
                   len(client.recorder) if client is not None else 0)


def _verify_deployment(per_entity: dict[str, list[Evidence]], items: list[Evidence], options: VerifyOptions,
                       run: _Run, *, client: NetClient | None, cache: CollateralCache | None,
                       memo: CollateralMemo | None, progress: Progress, gateway: GatewayEndpoints,
                       kms_meta: KmsMeta | None, gateway_app_id: str | None, answer_input: InputFile,
                       missing: Callable[[Entity], Check], expected: tuple[Entity, ...] = ("kms", "gateway"),
                       extra: Callable[[dict[str, Report], list[Evidence]], list[Check]] | None = None,
                       ) -> Report:
    """App, KMS and gateway each verified from their evidence (one collateral memo, one pinned block for the
    chain), the reports merged and the checks between the entities added."""
    from .crossentity import cross_entity_checks

    shared = [e for e in items if e.kind in SHARED_KINDS]
    memo = memo or CollateralMemo()
    gpu = [e for e in items if e.kind == "gpu-evidence"]  # the app's GPUs
    reader = None
    if options.onchain is not None and _unread_chain(options.onchain.chain) is None:
        # One reader: every entity's governance read at the same pinned block (a chain not read: see _onchain).
        from .onchain import OnchainReader

        reader = OnchainReader(run.asking or NetClient(offline=True), options.onchain.chain,
                               rpc_url=options.onchain.rpc_url)
        if kms_meta is None and "source" in options.phases:
            kms_meta = _kms_meta_onchain(reader, options.onchain.kms_contract)
    reports = [
        (entity, _verify_entity(entity_items + shared + (gpu if entity == "app" else []), options, client=client,
                                cache=cache, memo=memo,
                                entity=entity, gateway=gateway if entity == "gateway" else None,  # type: ignore[arg-type]
                                progress=progress, onchain_reader=reader,
                                kms_meta=kms_meta if entity == "kms" else None))
        for entity, entity_items in per_entity.items() if entity_items
    ]
    by_entity = {entity: report for entity, report in reports}
    # Before the exchanges are gathered: what `extra` fetches (another instance's collateral) is recorded too.
    more = _mark_phase_off(extra(by_entity, shared), options.phases) if extra is not None else []
    derived = {e.name for entity_items in per_entity.values() for e in entity_items}
    inputs = [answer_input]
    inputs += [e.input_file(role=e.kind) for e in items if e.kind in BESIDE_CLOUD]
    for _, report in reports:
        inputs += [i for i in report.inputs if i.name not in derived and i.role != "recording"
                   and i.sha256 not in {x.sha256 for x in inputs}]
    exchanges = run.recorded or ([x for x in client.recorder[run.start:] if _replayable(x, options)]
                                 if client is not None else [])
    if exchanges:
        inputs.append(_recording_input(exchanges))
    checks = [c for _, report in reports for c in report.checks] + more
    cross = _mark_phase_off(cross_entity_checks(by_entity, gateway_app_id), options.phases)
    checks += cross
    verdicts = {report.verdict for _, report in reports}
    absent = [missing(e) for e in expected if e not in by_entity]
    checks += absent
    if absent:
        verdicts.add(Verdict.INCOMPLETE)
    if any(c.status is CheckStatus.FAIL for c in cross + more):
        verdicts.add(Verdict.FAIL)
    if any(c.status is CheckStatus.ERROR for c in more):
        verdicts.add(Verdict.INCOMPLETE)
    verdict = Verdict.FAIL if Verdict.FAIL in verdicts else (
        Verdict.INCOMPLETE if Verdict.INCOMPLETE in verdicts else Verdict.PASS)
    first = reports[0][1]
    return first.model_copy(update={
        "verdict": verdict,
        "inputs": inputs,
        "checks": checks,
        "entities": {entity: report.entities.get(entity, {}) for entity, report in reports},
        "timings": {f"{entity}.{k}": v for entity, report in reports for k, v in report.timings.items()},
    })


def _missing_entity(entity: Entity, reason: str, legacy_stub: bool = False, legacy_reason: str | None = None) -> Check:
    """An entity the answer gives no quote for. The Trust Center's legacy stubs report it valid unverified (spec
    §4.2); here it is a skip that leaves the verification incomplete, and says so."""
    return Check(id="hardware.entity_evidence", entity=entity, phase="hardware", status=CheckStatus.SKIP,
                 anchor=Anchor.NONE, summary=f"not verified: {reason}",
                 details={"reason": reason, "legacy_stub": legacy_stub, "legacy_reason": legacy_reason})


def _ita_check(hw: HardwareResult, options: VerifyOptions, client: NetClient | None, entity: Entity) -> Check:
    from .ita import check_ita

    assert hw.quote is not None
    return check_ita(hw.quote, hw.status, client=client if not options.offline else None, now=options.now,
                     options=options.ita, entity=entity)


def _gpu_check(ev: EntityEvidence, items: list[Evidence], options: VerifyOptions, client: NetClient | None,
               state: _SourceState) -> Check | None:
    """`gpu.attestation` for an app with GPUs (its VM config says so) or with GPU evidence given; None otherwise."""
    from .gpu import DEFAULT_JWKS_URL, DEFAULT_NRAS_URL, check_gpu_attestation

    given = [e for e in items if e.kind == "gpu-evidence"]
    if len(given) > 1:
        raise InputError(f"several GPU evidence files among the evidence ({', '.join(e.name for e in given)})")
    gpus = (ev.vm_config or {}).get("num_gpus")
    if not given and not (isinstance(gpus, int) and gpus > 0):
        return None
    nras = options.nras_url or DEFAULT_NRAS_URL
    origin = urllib.parse.urlsplit(nras)
    jwks = DEFAULT_JWKS_URL if options.nras_url is None else \
        f"{origin.scheme}://{origin.netloc}/.well-known/jwks.json"  # NRAS publishes its keys at its origin
    if not given:
        state.absent.add("gpu.attestation")
    return check_gpu_attestation(given[0].extra["gpu"] if given else None, client=_net(ev.recording, client),
                                 now=datetime.fromtimestamp(options.now, UTC), nras_url=nras, jwks_url=jwks,
                                 entity=ev.entity,
                                 reason_absent=f"the VM config names {gpus} GPU(s) but no GPU evidence was given")


def _gpu_binding(items: list[Evidence], app_quote: Quote, source: CollateralSource, options: VerifyOptions,
                 memo: CollateralMemo | None, entity: Entity) -> Check | None:
    """`gpu.td_binding` when GPU evidence is given: its attestation report's TDX quote verified with the app quote's
    collateral, steps and policy (the same machine's), then held to the app quote (gpu_binding decides)."""
    from .gpu_binding import check_gpu_binding

    given = [e for e in items if e.kind == "gpu-evidence"]
    if not given:
        return None
    bundle = given[0].extra.get("gpu_bundle")
    bundle_quote, dcap = None, []
    if bundle is not None:
        result = verify_quote(bundle.intel_quote, collateral=source.collateral, anchor=options.anchor, now=options.now,
                              policy=options.policy, entity=entity, collateral_missing_reason=source.problem or "",
                              collateral_is_error=source.is_error, memo=memo, reference=False)
        bundle_quote, dcap = result.quote, result.checks
    return check_gpu_binding(given[0].extra["gpu"].nonce, bundle, app_quote, bundle_quote, dcap, entity)


def _hardware_ok(checks: list[Check]) -> bool | None:
    """Did the quote pass DCAP: False on a failure or error, None when a step could not run, else True."""
    hardware = [c for c in checks if c.id.startswith("hardware.") and c.id != "hardware.reference_engine"]
    if any(c.status in (CheckStatus.FAIL, CheckStatus.ERROR) for c in hardware):
        return False
    return None if any(c.status is CheckStatus.SKIP for c in hardware) else True


def _domain_checks(ev: EntityEvidence, gateway: GatewayEndpoints | None, hw: HardwareResult,
                   source: CollateralSource, options: VerifyOptions, client: NetClient | None,
                   memo: CollateralMemo | None, state: _SourceState) -> list[Check]:
    from .domain_phase import DomainOptions, domain_checks

    hw_ok = _hardware_ok(hw.checks)
    collateral = source.collateral

    def dcap_ok(raw: bytes) -> bool:
        # A key quote is checked with the gateway's collateral: the keys were made by the same gateway TD.
        result = verify_quote(raw, collateral=collateral, anchor=options.anchor, now=options.now,
                              policy=options.policy, entity=ev.entity, memo=memo, reference=False)
        return _hardware_ok(result.checks) is True

    account = gateway.acme.account_quote if gateway is not None and gateway.acme is not None else None
    account_ok = hw_ok if account is None or account == ev.quote.quote else (
        dcap_ok(account) if collateral is not None else None)
    result = domain_checks(gateway, gateway_quote_ok=account_ok, verify_key_quote=dcap_ok if collateral else None,
                           options=options.domain or DomainOptions(), net=_net(ev.recording, client), now=options.now,
                           recording=ev.recording, entity=ev.entity)
    state.absent |= result.absent
    return result.checks


def _verify_entity(
    items: list[Evidence],
    options: VerifyOptions,
    *,
    client: NetClient | None = None,
    cache: CollateralCache | None = None,
    memo: CollateralMemo | None = None,
    entity: Entity = "app",
    gateway: GatewayEndpoints | None = None,
    progress: Progress | None = None,
    onchain_reader: OnchainReader | None = None,
    kms_meta: KmsMeta | None = None,
) -> Report:
    progress = progress or Progress()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    items = expand(items)
    ev = assemble(items, entity)
    inputs = [e.input_file(role=e.kind) for e in items if e.kind not in ("collateral", "recording")]
    progress.step(f"{entity}: collateral")
    source = resolve_collateral(items, ev.quote, options, client, cache)
    if source.input is not None:
        inputs.append(source.input)
    timings["collateral"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    assert ev.quote.quote is not None
    progress.step(f"{entity}: hardware")
    hw = verify_quote(
        ev.quote.quote,
        collateral=source.collateral,
        anchor=options.anchor,
        now=options.now,
        policy=options.policy,
        entity=ev.entity,
        collateral_missing_reason=source.problem or "",
        collateral_is_error=source.is_error,
        memo=memo,
        reference=options.reference,
    )
    timings["hardware"] = time.perf_counter() - t1
    checks = list(hw.checks)
    state = _SourceState()
    entity_out = _hardware_entity(hw)
    if hw.quote is not None:
        if options.ita is not None:  # optional, off by default: no key, no check
            checks.append(_ita_check(hw, options, client, ev.entity))
        t2 = time.perf_counter()
        progress.step(f"{entity}: event log")
        checks += _eventlog_checks(ev, hw.quote, state)
        checks.append(_binding_check(ev, hw.quote, state, options.now, gateway))
        if kms_meta is not None:
            checks.append(_kms_keys_check(ev, hw, kms_meta, source, options, memo))
        timings["eventlog"] = time.perf_counter() - t2
        t3 = time.perf_counter()
        recorder_before = len(client.recorder) if client is not None else 0
        progress.step(f"{entity}: source")
        source_checks = _source_checks(ev, hw.quote, hw, state)
        timings["source"] = time.perf_counter() - t3
        t4 = time.perf_counter()
        progress.step(f"{entity}: os")
        if "os" in options.phases:  # measuring an image is costly: not done for a phase nobody asked for
            os_checks = _os_checks(ev, hw.quote, state, options, client)
        else:
            os_checks = [_skip(check_id, ev.entity, "os", "phase os not selected") for check_id in OS_CHECKS]
        timings["os"] = time.perf_counter() - t4
        t3 = time.perf_counter()
        progress.step(f"{entity}: on-chain")
        source_checks.append(_onchain(ev, state.app_info, state, options, client, onchain_reader))
        timings["source"] += time.perf_counter() - t3
        checks += source_checks + os_checks
        gpu = _gpu_check(ev, items, options, client, state)
        if gpu is not None:
            checks.append(gpu)
        binding = _gpu_binding(items, hw.quote, source, options, memo, ev.entity)
        if binding is not None:
            checks.append(binding)
        if entity == "gateway":
            t5 = time.perf_counter()
            progress.step(f"{entity}: domain")
            if "domain" in options.phases:  # DNS, TLS and crt.sh are not asked for a phase nobody wants
                checks += _domain_checks(ev, gateway, hw, source, options, client, memo, state)
            else:
                from .domain_phase import DOMAIN_CHECKS

                checks += [_skip(check_id, ev.entity, "domain", "phase domain not selected")
                           for check_id in DOMAIN_CHECKS]
            timings["domain"] = time.perf_counter() - t5
        fresh = list(client.recorder[recorder_before:]) if client is not None else []
        recorded = ev.recording or [x for x in fresh if _replayable(x, options)]
        if recorded:
            inputs.append(_recording_input(recorded))
        entity_out.update(_source_entity(ev, state))
    checks = _mark_phase_off(checks, options.phases)
    required = {c.id for c in checks if c.phase in options.phases or c.id.startswith("eventlog.")}
    # Without an event log or key material, the checks on them cannot apply whatever the phases; other absent
    # inputs (a compose, on-chain governance) leave a phase the user named unverified, hence incomplete.
    required -= state.absent & NEEDS_OWN_EVIDENCE if options.explicit_phases else state.absent
    verdict = decide_verdict(checks, required)
    if verdict is Verdict.PASS and not any(c.phase in options.phases and c.status is not CheckStatus.SKIP
                                           for c in checks):
        verdict = Verdict.INCOMPLETE  # nothing of the chosen phases ran: nothing was verified
    return Report(
        verdict=verdict,
        verified_at=options.now,
        verifier_version=__version__,
        policy={"tcb": options.policy.describe(), "phases": list(options.phases),
                "trust_anchor": {"sha256": options.anchor.sha256, "intel": options.anchor.is_intel,
                                 "subject": options.anchor.cert.subject.rfc4514_string()},
                **({"onchain": asdict(options.onchain)} if options.onchain is not None else {}),
                **({"domain": _domain_policy(options.domain)} if options.domain is not None else {}),
                **({"os_images": list(options.images.allowed)} if options.images and options.images.allowed else {}),
                **_endpoints_policy(options)},
        inputs=inputs,
        checks=checks,
        entities={ev.entity: entity_out},
        timings=timings,
    )


def _source_entity(ev: EntityEvidence, state: _SourceState) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ev.events is not None:
        out["event_log"] = {"source": ev.events_source, "events": [e.to_json() for e in ev.events]}
    if state.app_info is not None:
        out["app_info"] = state.app_info.summary()
    if state.derived:
        out["derived"] = state.derived
    if state.measurement is not None:
        out["measurement"] = state.measurement
    if ev.compose is not None:
        try:
            out["app_compose"] = parse_compose(ev.compose.data, ev.compose.name).summary()
        except InputError as exc:
            out["app_compose"] = {"error": exc.describe()}
    if ev.vm_config is not None:
        out["vm_config"] = ev.vm_config
    if "attestation" in ev.quote.extra:
        out["attestation"] = ev.quote.extra["attestation"]
    if ev.certificates:
        out["certificates"] = [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in ev.certificates]
    return out


def load_anchor(path: Path | None) -> TrustAnchor:
    from .evidence import read_bounded
    from .resources import intel_root_ca_der

    if path is None:
        return TrustAnchor.from_der(intel_root_ca_der(), "Intel SGX Root CA")
    return TrustAnchor.from_der(read_bounded(path, 1 << 20), str(path))
