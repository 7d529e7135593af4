"""The gateway's domain phase: the four `domain.*` checks from the gateway's acme-info, its served TLS chain, DNS
and the CT log, with every network access through the one (recording or replaying) client.

Where each input comes from:

* acme-info: fetched from the gateway URL of the Phala Cloud answer (``kms_info.gateway_app_url``), or a saved
  ``/.dstack/acme-info`` answer given as evidence;
* the domain: ``--domain``, else the legacy acme-info ``base_domain``, else the gateway URL's host without its first
  label (``gateway.<domain>`` is how dstack names it) — the details say which;
* the served chain: the legacy acme-info ``active_cert``, else a TLS connection to the gateway's host and port;
* CAA: the resolver the user names, else the system's first nameserver;
* CT: crt.sh (or the URL given), only when asked for (the Trust Center's ``ctLog`` flag is off by default: it is slow).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509

from .domain import (
    CHECK_CAA,
    CHECK_CERTIFICATE_KEY,
    CHECK_CT_LOG,
    CHECK_TEE_CONTROLLED_KEY,
    DEFAULT_CRTSH_URL,
    as_acme_info,
    check_certificate_key,
    check_ct_log,
    check_dns_caa,
    check_tee_controlled_key,
    default_trust_store,
)
from .errors import InputError
from .model import Anchor, Check, CheckStatus, Entity
from .net import Exchange, NetClient, NetError, OfflineError
from .sources.gateway import AcmeInfo

DOMAIN_CHECKS = (CHECK_TEE_CONTROLLED_KEY, CHECK_CERTIFICATE_KEY, CHECK_CAA, CHECK_CT_LOG)


@dataclass
class DomainOptions:
    domain: str | None = None
    resolver: tuple[str, int] | None = None  # None: the system's first nameserver
    trust_roots: list[x509.Certificate] | None = None  # None: the system's trust store
    ct_log: bool = False
    crtsh_url: str = DEFAULT_CRTSH_URL
    ct_max_entries: int = 200
    timeout: float = 10.0


@dataclass
class GatewayEndpoints:
    """What the gateway published: its acme-info (or why there is none) and its URL."""

    acme: AcmeInfo | None
    problem: str | None = None  # why acme-info is missing: an error when it was asked for and failed
    url: str | None = None


@dataclass
class DomainResult:
    checks: list[Check]
    absent: set[str]  # checks that could not apply for want of an input nobody gave (not an error)


def system_resolver() -> tuple[str, int] | None:
    import dns.resolver

    try:
        servers = dns.resolver.Resolver().nameservers
    except Exception:
        return None
    return (str(servers[0]), 53) if servers else None


def recorded_resolver(exchanges: list[Exchange]) -> tuple[str, int] | None:
    """The resolver a recorded run asked, so that a replay's details name the same one."""
    for x in exchanges:
        host, _, port = x.request_headers.get("server", "").rpartition(":")
        if x.method == "DNS" and host and port.isdecimal():
            return host, int(port)
    return None


def domain_name(options: DomainOptions, endpoints: GatewayEndpoints) -> tuple[str | None, str]:
    if options.domain:
        return options.domain.strip().rstrip(".").lower(), "given (--domain)"
    if endpoints.acme is not None and endpoints.acme.base_domain:
        return endpoints.acme.base_domain.strip().rstrip(".").lower(), "acme-info base_domain"
    host = urllib.parse.urlsplit(endpoints.url or "").hostname or ""
    labels = host.split(".")
    if len(labels) > 2 and not host.replace(".", "").isdecimal():
        return ".".join(labels[1:]), f"the gateway URL's host {host} without its first label"
    return None, ""


def _skip(check_id: str, entity: Entity, reason: str) -> Check:
    return Check(id=check_id, entity=entity, phase="domain", status=CheckStatus.SKIP, anchor=Anchor.NONE,
                 summary=f"skipped: {reason}", details={"reason": reason})


def _served_chain(endpoints: GatewayEndpoints, net: NetClient, timeout: float) -> tuple[list[x509.Certificate], str]:
    """The gateway's TLS chain and where it came from. Raises NetError / InputError."""
    assert endpoints.acme is not None
    if endpoints.acme.active_cert:
        return as_acme_info(endpoints.acme).active_chain(), "acme-info active_cert"
    parts = urllib.parse.urlsplit(endpoints.url or "")
    if not parts.hostname:
        raise InputError("no gateway URL to connect to and no active_cert in acme-info", source="gateway")
    port = parts.port or 443
    ders = net.tls_chain(parts.hostname, port, timeout)
    try:
        return [x509.load_der_x509_certificate(d) for d in ders], f"TLS handshake with {parts.hostname}:{port}"
    except ValueError as exc:
        raise InputError(f"the served certificate does not parse ({exc})", source=f"tls://{parts.hostname}:{port}"
                         ) from None


def domain_checks(
    endpoints: GatewayEndpoints | None,
    *,
    gateway_quote_ok: bool | None,
    verify_key_quote: Callable[[bytes], bool] | None,
    options: DomainOptions,
    net: NetClient,
    now: int,
    recording: list[Exchange] | None = None,
    entity: Entity = "gateway",
) -> DomainResult:
    if endpoints is None or endpoints.acme is None:
        why = (endpoints.problem if endpoints is not None else None)
        first = (Check(id=CHECK_TEE_CONTROLLED_KEY, entity=entity, phase="domain", status=CheckStatus.ERROR,
                       anchor=Anchor.NONE, summary=f"TEE-controlled key: the gateway's acme-info: {why}",
                       details={"reason": why}) if why
                 else _skip(CHECK_TEE_CONTROLLED_KEY, entity, "no acme-info of the gateway given"))
        rest = [_skip(c, entity, "needs the gateway's acme-info (its TEE-controlled keys)") for c in DOMAIN_CHECKS[1:]]
        return DomainResult([first, *rest], set() if why else set(DOMAIN_CHECKS))
    tee = check_tee_controlled_key(endpoints.acme, gateway_quote_ok, entity, verify_quote=verify_key_quote)
    tee_keys = [bytes.fromhex(k) for k in tee.details.get("tee_keys", [])]
    domain, how = domain_name(options, endpoints)
    checks = [tee]
    absent: set[str] = set()
    if domain is None:
        reason = "no domain: give --domain (the gateway URL does not tell it)"
        checks += [_skip(c, entity, reason) for c in DOMAIN_CHECKS[1:]]
        return DomainResult(checks, {*DOMAIN_CHECKS[1:]})
    when = datetime.fromtimestamp(now, UTC)
    try:
        chain, chain_from = _served_chain(endpoints, net, options.timeout)
        cert = check_certificate_key(chain, tee_keys, options.trust_roots if options.trust_roots is not None
                                     else default_trust_store(), domain, when, entity)
        roots = ("the system trust store" if options.trust_roots is None else
                 f"{len(options.trust_roots)} caller-supplied root(s): "
                 + ", ".join(c.subject.rfc4514_string() for c in options.trust_roots))
        cert = cert.model_copy(update={"details": {**cert.details, "served_chain_from": chain_from,
                                                   "trust_roots": roots}})
    except OfflineError as exc:
        cert = _skip(CHECK_CERTIFICATE_KEY, entity, f"the served chain is needed: {exc}")
        absent.add(CHECK_CERTIFICATE_KEY)
    except (NetError, InputError) as exc:
        cert = Check(id=CHECK_CERTIFICATE_KEY, entity=entity, phase="domain", status=CheckStatus.ERROR,
                     anchor=Anchor.NONE, summary=f"certificate key: the served chain could not be had: {exc}",
                     details={"reason": str(exc), "domain": domain})
    checks.append(cert)
    resolver = options.resolver or recorded_resolver(recording or []) or system_resolver()
    uri = endpoints.acme.account_uri
    if net.offline and not recording:
        caa = _skip(CHECK_CAA, entity, "offline (no DNS)")
        absent.add(CHECK_CAA)
    else:
        caa = check_dns_caa(domain, resolver, uri, options.timeout, entity, client=net)
    checks.append(caa)
    if not options.ct_log:
        checks.append(_skip(CHECK_CT_LOG, entity, "CT log scan not asked for (--ct-log; it is slow)"))
        absent.add(CHECK_CT_LOG)
    else:
        checks.append(check_ct_log(net, domain, tee_keys, options.crtsh_url, when, options.ct_max_entries,
                                   entity=entity))
    for i, c in enumerate(checks):
        checks[i] = c.model_copy(update={"details": {**c.details, "domain_source": how}}) if c is not tee else c
    return DomainResult(checks, absent)
