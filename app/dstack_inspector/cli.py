"""The command line: `dstack-inspector [gui|verify] ...`, with the exit codes of the CLI contract.

0 verdict pass; 1 fail; 2 bad input or usage; 3 incomplete, or an internal or network error.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

EXIT_PASS, EXIT_FAIL, EXIT_INPUT, EXIT_INCOMPLETE = 0, 1, 2, 3


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 by itself; keep our one-line format
        raise UsageError(message)


def parse_instant(text: str) -> int:
    """ISO-8601 (a zone-less time is UTC) or unix seconds."""
    value = text.strip()
    if value.lstrip("-").isdecimal():  # isdigit() also accepts e.g. "²", which int() refuses
        seconds = int(value)
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"--at: {text!r} is neither ISO-8601 nor unix seconds") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = int(moment.timestamp())
    if seconds < 0 or seconds > 253402300799:
        raise UsageError(f"--at: {text!r} is out of range")
    return seconds


def _positive_days(text: str) -> int:
    """A number of days (7, 0.5) as seconds."""
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not 0 < days <= 36500:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of days above 0 (at most 36500)")
    return max(1, round(days * 86400))


def _non_negative(text: str) -> int:
    if not text.strip().isdecimal() or len(text.strip()) > 9:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(text)


def library_type(module: str, name: str) -> Callable[[str], str]:
    """An argparse type made of a parser of the library (ValueError → a usage error naming the option), imported
    only when the option is given, so that start-up stays light."""

    def convert(text: str) -> str:
        parse = getattr(importlib.import_module(module), name)
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


_mrseam = library_type("dstack_verifier.quote.policy", "mrseam_hex")
_advisory = library_type("dstack_verifier.quote.policy", "advisory_id")
_os_image = library_type("dstack_verifier.measure.image_check", "os_image_hex")
_contract = library_type("dstack_verifier.onchain", "contract_address")


def build_parser() -> argparse.ArgumentParser:
    from dstack_verifier import __version__

    from .report_cli import add_report_parser

    parser = _Parser(prog="dstack-inspector", description="Attestation inspector for dstack apps on Intel TDX.")
    parser.add_argument("--version", action="version", version=f"dstack-inspector {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    gui = sub.add_parser("gui", help="open the GUI (the default)")
    gui.add_argument("evidence", nargs="*", type=Path, help="evidence files to open")
    gui.add_argument("--screenshot", type=Path, help="render the window to this PNG and exit")
    gui.add_argument("--select", metavar="OBJECT",
                     help="open on this object of the graph (its id, e.g. kms-main, or words of its name)")
    v = sub.add_parser("verify", help="verify evidence and print the checks or the JSON report")
    v.add_argument("evidence", nargs="*", type=Path,
                   help="quote (binary, hex or base64), GetQuote/attestation JSON, event log, app-compose, "
                        "certificates, collateral, a saved Phala Cloud answer, a guest agent's /prpc/Info, a "
                        "gateway's acme-info, a KMS's GetMeta, NVIDIA GPU evidence, a Trust Center result, an "
                        "evidence pack, or a report")
    v.add_argument("--app-id", help="fetch the app's attestations from the Phala Cloud API (App, KMS and Gateway); "
                                    "a Trust Center page's address (…/app/<app id>) stands for its app id")
    v.add_argument("--cloud-url", help="Phala Cloud API base URL (default: the public API)")
    v.add_argument("--offline", action="store_true", help="never touch the network")
    v.add_argument("--collateral", type=Path, help="DCAP collateral JSON (dcap-qvl QuoteCollateralV3 shape)")
    v.add_argument("--at", help="verification instant, ISO-8601 or unix seconds (default: now)")
    v.add_argument("--root-ca", type=Path, help="trust anchor instead of the Intel SGX Root CA (tests, demos)")
    v.add_argument("--phases", help="comma-separated phases to run: hardware,os,source,domain")
    v.add_argument("--pccs-url", help="PCCS or Intel PCS base URL (default: Phala's PCCS)")
    v.add_argument("--no-cache", action="store_true", help="do not use the on-disk collateral cache")
    v.add_argument("--max-collateral-age", type=_positive_days, metavar="DAYS",
                   help="warn when the TCB Info or QE Identity was issued longer ago (a PCCS serving stale "
                        "collateral); default: no limit")
    v.add_argument("--min-tcb-eval", type=_non_negative, metavar="N",
                   help="fail the TCB status when it is judged with TCB evaluation data older than number N "
                        "(Intel's TCB recoveries raise it); default: any")
    v.add_argument("--mrseam", action="append", type=_mrseam, metavar="HEX",
                   help="a TDX module build (MRSEAM) to accept; repeat for several. Given, the TCB status fails for "
                        "any other module; default: any module Intel signs at an accepted TCB level")
    v.add_argument("--block-advisory", action="append", type=_advisory, metavar="INTEL-SA-NNNNN",
                   help="an Intel advisory to refuse: the TCB status fails when the platform's level lists it, "
                        "whatever the status (Intel lists advisories even with UpToDate); repeat for several")
    v.add_argument("--image-dir", type=Path, help="a dstack OS image folder for the OS phase")
    v.add_argument("--fetch-image", action="store_true",
                   help="download the OS image named by the VM config when it is not cached (hundreds of MB)")
    v.add_argument("--image-base-url", metavar="URL",
                   help="where OS images are downloaded from (default: the official release location)")
    v.add_argument("--acpi-tool", type=Path, help="the dstack-acpi-tables executable (default: found on PATH)")
    v.add_argument("--os-image", action="append", type=_os_image, metavar="HEX",
                   help="an OS image (os_image_hash) to accept, e.g. a release you reviewed; repeat for several. "
                        "Given, os.image_hash fails for any other image; default: any image")
    v.add_argument("--kms-contract", type=_contract, metavar="ADDRESS",
                   help="the DstackKms contract governing the app (enables the on-chain check)")
    v.add_argument("--app-contract", type=_contract, metavar="ADDRESS",
                   help="the app's DstackApp contract (default: the app id of the event log)")
    v.add_argument("--chain", default="base",
                   help="chain of the contracts: base (default), ethereum, base-sepolia or sepolia (or a chain id)")
    v.add_argument("--rpc-url", help="JSON-RPC endpoint of that chain (default: a public endpoint)")
    v.add_argument("--agent-url", metavar="URL",
                   help="the app's guest agent (default: https://<app-id>-8090.<gateway domain>)")
    v.add_argument("--domain", help="the gateway's base domain for the domain checks (default: from the gateway URL)")
    v.add_argument("--dns-server", metavar="HOST:PORT", help="DNS resolver for the CAA check (default: the system's)")
    v.add_argument("--tls-roots", type=Path, metavar="PEM",
                   help="trust roots for the gateway's TLS chain (default: the system trust store)")
    v.add_argument("--ct-log", action="store_true", help="scan the certificate transparency log (slow; off by default)")
    v.add_argument("--crtsh-url", metavar="URL", help="crt.sh base URL for --ct-log (default: https://crt.sh/)")
    v.add_argument("--nras-url", metavar="URL",
                   help="NVIDIA's attestation service for GPU evidence (default: https://nras.attestation.nvidia.com)")
    v.add_argument("--ita-api-key", metavar="KEY",
                   help="also appraise the quotes with Intel Trust Authority (default: $ITA_API_KEY; off when unset)")
    v.add_argument("--ita-url", metavar="URL", help="Intel Trust Authority API base URL (default: Intel's)")
    v.add_argument("--save", action="store_true",
                   help="also save the result in the task history the GUI shows (`report list` lists it)")
    v.add_argument("--mask", action="store_true",
                   help="for sharing: mask docker_compose_file in the report and leave the evidence's bytes out "
                        "(their digests stay; such a report cannot be re-run)")
    v.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    v.add_argument("--output", type=Path, help="write the JSON report to this file")
    m = sub.add_parser("measure", help="print the expected MRTD, RTMR0-2 and every event digest of an OS image")
    m.add_argument("--image-dir", type=Path, help="the dstack OS image folder")
    m.add_argument("--vm-config", type=Path, required=True,
                   help="the VM config JSON (or a GetQuote JSON carrying one; TDX-lite needs no image)")
    m.add_argument("--event-log", type=Path, help="an event log (or GetQuote JSON) for the ACPI digests")
    m.add_argument("--acpi-tool", type=Path, help="the dstack-acpi-tables executable (default: found on PATH)")
    m.add_argument("--json", action="store_true", help="print JSON")
    add_report_parser(sub, _Parser)
    return parser


def cmd_measure(args: argparse.Namespace) -> int:
    import json

    from dstack_verifier.evidence import load_evidence, read_bounded
    from dstack_verifier.jsontext import load_json
    from dstack_verifier.measure.full import measure_image
    from dstack_verifier.measure.image import ImageFolder
    from dstack_verifier.measure.lite import measure_lite

    doc = load_json(read_bounded(args.vm_config).decode("utf-8", "replace"), str(args.vm_config))
    vm_config, events = doc, None
    if isinstance(doc, dict) and ("quote" in doc or "attestation" in doc):  # evidence that carries a VM config
        carried = load_evidence(args.vm_config)
        vm_config, events = carried.vm_config, carried.events
    if not isinstance(vm_config, dict):
        raise UsageError(f"--vm-config: {args.vm_config} holds no VM config object")
    if args.event_log is not None:
        events = load_evidence(args.event_log).events
    if args.image_dir is not None:
        measurement = measure_image(ImageFolder.open(args.image_dir), vm_config, events, acpi_tool=args.acpi_tool)
    elif "tdx_measurement" in vm_config:
        measurement = measure_lite(vm_config, events or [])
    else:
        raise UsageError("--image-dir is needed: the VM config has no TDX-lite measurement document")
    if args.json:
        sys.stdout.write(json.dumps(measurement.to_json(), indent=2) + "\n")
        return EXIT_PASS
    print(f"path: {measurement.path}   MRTD order: {measurement.mrtd_variant}   ACPI: {measurement.acpi_source}")
    for register in ("mrtd", "rtmr0", "rtmr1", "rtmr2"):
        print(f"{register.upper():6} {measurement.value(register).hex()}")
    for e in measurement.events:
        print(f"  {e.rtmr.upper()}[{e.index:2}] {e.digest.hex()}  {e.what} ({e.source})")
    return EXIT_PASS


def _phases(text: str | None) -> tuple[str, ...]:
    from dstack_verifier.verification import PHASES

    if not text:
        return PHASES
    chosen = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in chosen if p not in PHASES]
    if unknown or not chosen:
        raise UsageError(f"--phases: unknown phase {', '.join(unknown) or '(none)'}; choose from {', '.join(PHASES)}")
    return chosen


def _onchain_options(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from dstack_verifier.onchain import OnchainInputError, chain_config
    from dstack_verifier.verification import OnchainOptions

    if not args.kms_contract:
        if args.app_contract:
            raise UsageError("--app-contract needs --kms-contract (the KMS that governs the app)")
        return None
    try:
        chain = chain_config(args.chain, args.rpc_url).key  # "8453" or "Base" name the chain "base" reads and anchors
    except OnchainInputError as exc:
        raise UsageError(f"--chain: {exc}") from None
    return OnchainOptions(kms_contract=args.kms_contract, chain=chain, rpc_url=args.rpc_url,
                          app_contract=args.app_contract)


def _ita_options(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """ITA appraisal options when an API key is given (option, or ITA_API_KEY / the Trust Center's variable)."""
    key = args.ita_api_key or os.environ.get("ITA_API_KEY") or os.environ.get("INTEL_TRUST_AUTHORITY_API_KEY")
    if not key:
        return None
    from dstack_verifier.ita import DEFAULT_BASE_URL, ItaOptions

    base = args.ita_url or DEFAULT_BASE_URL
    if not base.startswith(("https://", "http://")):
        raise UsageError(f"--ita-url: {base!r} is not an http(s) URL")
    if not args.ita_url:
        return ItaOptions(api_key=key)
    return ItaOptions(api_key=key, base_url=base, jwks_url=base.rstrip("/") + "/certs")  # a stand-in serves both


def _domain_options(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """None when no domain option is given, so that a re-run of a report keeps the options it recorded."""
    from dstack_verifier.domain import DEFAULT_CRTSH_URL
    from dstack_verifier.domain_phase import DomainOptions
    from dstack_verifier.evidence import read_bounded
    from dstack_verifier.ratls import load_certificates

    if not (args.domain or args.dns_server or args.tls_roots or args.ct_log or args.crtsh_url):
        return None
    resolver = None
    if args.dns_server:
        host, _, port = args.dns_server.rpartition(":")
        if not host or not port.isdecimal() or not 0 < int(port) < 65536:
            raise UsageError(f"--dns-server: {args.dns_server!r} is not HOST:PORT")
        resolver = (host.strip("[]"), int(port))
    roots = None
    if args.tls_roots:
        roots = load_certificates(read_bounded(args.tls_roots, 8 << 20), str(args.tls_roots))
    crtsh = args.crtsh_url or DEFAULT_CRTSH_URL
    if not crtsh.startswith(("https://", "http://")):
        raise UsageError(f"--crtsh-url: {crtsh!r} is not an http(s) URL")
    return DomainOptions(domain=args.domain, resolver=resolver, trust_roots=roots, ct_log=args.ct_log,
                         crtsh_url=crtsh)


def _image_base_url(text: str | None) -> str | None:
    if text is None:
        return None
    url = text.strip()
    if not url.lower().startswith(("http://", "https://")) or not url.split("://", 1)[1].strip("/"):
        raise UsageError(f"--image-base-url: {text!r} is not an http:// or https:// URL")
    return url


def _print_human(report, out) -> None:  # type: ignore[no-untyped-def]
    from dstack_verifier.model import CheckStatus

    marks = {CheckStatus.PASS: "PASS", CheckStatus.FAIL: "FAIL", CheckStatus.WARN: "WARN",
             CheckStatus.SKIP: "SKIP", CheckStatus.ERROR: "ERR "}
    when = datetime.fromtimestamp(report.verified_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    anchor = report.policy.get("trust_anchor", {})
    root = "Intel SGX Root CA" if anchor.get("intel") else f"caller-supplied root {anchor.get('subject', '?')}"
    print(f"verdict: {report.verdict.value.upper()}   at {when}   trust anchor: {root}", file=out)
    from dstack_verifier.sources.trust_center import claims_line

    claimed = claims_line(report.entities)
    if claimed:  # a Trust Center result re-verified: what it said, beside what we found
        print(f"  (re-verified: {claimed})", file=out)
    for c in report.checks:
        print(f"  {marks[c.status]}  {c.entity:<7} {c.id:<34} {c.summary}", file=out)
    several = len(report.entities) > 1
    for entity, data in report.entities.items():  # each entity's platform has its own TCB
        tcb = data.get("tcb", {}) if isinstance(data, dict) else {}
        if tcb.get("status"):
            adv = ", ".join(tcb.get("advisory_ids") or []) or "none"
            label = f" ({entity})" if several else ""
            print(f"TCB status{label}: {tcb['status']}   advisories: {adv}", file=out)


def cmd_verify(args: argparse.Namespace) -> int:
    from dstack_verifier.evidence import load_evidence
    from dstack_verifier.model import Verdict
    from dstack_verifier.net import NetClient
    from dstack_verifier.quote.pccs import PHALA_PCCS_URL, CollateralCache
    from dstack_verifier.quote.policy import TcbPolicy
    from dstack_verifier.verification import ImageOptions, VerifyOptions, load_anchor, verify_evidence

    from .settings import cache_dir, collateral_cache_dir

    now = parse_instant(args.at) if args.at else int(time.time())
    options = VerifyOptions(
        now=now,
        policy=TcbPolicy(max_collateral_age_seconds=args.max_collateral_age,
                         min_tcb_evaluation_data_number=args.min_tcb_eval, allowed_mrseams=args.mrseam,
                         blocked_advisories=args.block_advisory),
        anchor=load_anchor(args.root_ca),
        offline=args.offline,
        pccs_url=args.pccs_url or os.environ.get("PCCS_URL") or PHALA_PCCS_URL,
        phases=_phases(args.phases),
        explicit_phases=bool(args.phases),
        onchain=_onchain_options(args),
        domain=_domain_options(args),
        agent_url=args.agent_url,
        rpc_urls={args.chain: args.rpc_url} if args.rpc_url else {},
        nras_url=args.nras_url,
        ita=_ita_options(args),
        images=ImageOptions(image_dir=args.image_dir, cache_dir=cache_dir(), fetch=args.fetch_image,
                            acpi_tool=args.acpi_tool, image_base_url=_image_base_url(args.image_base_url),
                            allowed=tuple(dict.fromkeys(args.os_image or ()))),
    )
    items = [load_evidence(p) for p in args.evidence]
    if not items and not args.app_id:
        raise UsageError("give evidence files, or --app-id to fetch them")
    if args.collateral is not None:
        col = load_evidence(args.collateral)
        if col.kind not in ("collateral", "report"):
            raise UsageError(f"--collateral: {args.collateral} is not DCAP collateral JSON")
        items.append(col)
    cache = None if args.no_cache else CollateralCache(collateral_cache_dir())
    client = None if args.offline else NetClient()
    try:
        if args.app_id:
            if client is None:
                raise UsageError("--app-id needs the network: it cannot be combined with --offline")
            items.append(_fetch_cloud_answer(client, args.app_id, args.cloud_url))
        report = verify_evidence(items, options, client=client, cache=cache)
    finally:
        if client is not None:
            client.close()
    if args.mask:
        from dstack_verifier.collector import mask_report

        report = mask_report(report)
    text = report.to_json()
    if args.output:
        args.output.write_text(text + "\n")
    _note_other_anchor(items, options.anchor)
    if args.save:
        _save(report, args)
    code = {Verdict.PASS: EXIT_PASS, Verdict.FAIL: EXIT_FAIL}.get(report.verdict, EXIT_INCOMPLETE)
    try:
        if args.json:
            sys.stdout.write(text + "\n")
        else:
            _print_human(report, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the verdict is decided, and its status is still the answer
        _stdout_gone()
    return code


def _save(report, args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
    from .store import StoreError, TaskStore, report_keys, task_title

    title = task_title(report, f"app {args.app_id}" if args.app_id else ", ".join(p.name for p in args.evidence))
    try:
        with TaskStore.open_default() as store:
            task_id = store.add(report, title=title, source="online" if args.app_id else "files",
                                **report_keys(report))
    except StoreError as exc:  # the verdict stands: only the saving failed
        print(_one_line(f"dstack-inspector: not saved in the history: {exc.describe()}"), file=sys.stderr)
        return
    print(f"saved as task {task_id} of the history", file=sys.stderr)


def _note_other_anchor(items: list, anchor) -> None:  # type: ignore[no-untyped-def]
    """A report re-run under another root than the one it recorded fails its chains: say which root it recorded
    (never use it unasked: a report is someone else's input, and its root could be anyone's)."""
    for ev in items:
        policy = ev.json.get("policy") if ev.kind == "report" and isinstance(ev.json, dict) else None
        recorded = policy.get("trust_anchor") if isinstance(policy, dict) else None
        digest = recorded.get("sha256") if isinstance(recorded, dict) else None
        if isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest) and digest != anchor.sha256:
            subject = "".join(c if c.isprintable() else "?" for c in str(recorded.get("subject", "?"))[:120])
            print(f"note: {ev.name} was verified under the root CA {subject!r} (sha256 {digest[:16]}…), not the one "
                  "used now; give --root-ca FILE with that root to re-run it as it was", file=sys.stderr)


def _stdout_gone() -> None:
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _fetch_cloud_answer(client, app_id: str, cloud_url: str | None):  # type: ignore[no-untyped-def]
    from dstack_verifier.sources import SourceError
    from dstack_verifier.sources.cloud import fetch_cloud_evidence

    try:
        return fetch_cloud_evidence(client, app_id, cloud_url)
    except SourceError as exc:
        if exc.kind in ("network", "offline") or (exc.kind == "http" and exc.status != 404):
            raise NetworkProblem(exc.describe()) from None
        raise


class NetworkProblem(Exception):
    """A source could not be reached: exit 3, not bad input."""


def cmd_gui(args: argparse.Namespace) -> int:
    from .gui.app import run_gui

    return run_gui(evidence=list(getattr(args, "evidence", []) or []), screenshot=getattr(args, "screenshot", None),
                   select=getattr(args, "select", None))


def _one_line(text: str) -> str:
    """Hostile input (a JSON key, a file name) may hold line breaks; the error stays one line."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def main(argv: list[str] | None = None) -> int:
    from dstack_verifier.errors import InputError

    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
        if args.command == "verify":
            return cmd_verify(args)
        if args.command == "measure":
            return cmd_measure(args)
        if args.command == "report":
            from .report_cli import cmd_report

            return cmd_report(args)
        return cmd_gui(args)
    except UsageError as exc:
        print(_one_line(f"dstack-inspector: usage error: {exc}"), file=sys.stderr)
        return EXIT_INPUT
    except InputError as exc:
        print(_one_line(f"dstack-inspector: bad input: {exc.describe()}"), file=sys.stderr)
        return EXIT_INPUT
    except NetworkProblem as exc:
        print(_one_line(f"dstack-inspector: network error: {exc}"), file=sys.stderr)
        return EXIT_INCOMPLETE
    except KeyboardInterrupt:
        print("dstack-inspector: interrupted", file=sys.stderr)
        return EXIT_INCOMPLETE
    except BrokenPipeError:  # the reader went away (`| head`): nothing more to say, and no one to say it to
        _stdout_gone()
        return EXIT_INCOMPLETE
    except Exception as exc:  # the contract: one line, never a traceback (set DSTACK_INSPECTOR_DEBUG for one)
        if os.environ.get("DSTACK_INSPECTOR_DEBUG"):
            raise
        print(f"dstack-inspector: internal error: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return EXIT_INCOMPLETE


if __name__ == "__main__":
    sys.exit(main())
