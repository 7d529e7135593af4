"""`dstack-inspector report export|verify|key`: signed evidence packs on the command line.

Exit status: 0 the pack verifies (or the export/key command succeeded); 1 the pack fails verification, or its
signer is none of the `--trusted-signer` ones given; 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from dstack_verifier.model import Report
    from dstack_verifier.report import PackVerification

SIGNING_KEY_FILE = "signing-key.pem"


def add_report_parser(sub: argparse._SubParsersAction, parser_class: type[argparse.ArgumentParser]) -> None:
    from .cli import library_type

    r = sub.add_parser("report", help="export a verification as a signed evidence pack, or verify a pack")
    commands = r.add_subparsers(dest="report_command", parser_class=parser_class, required=True)
    e = commands.add_parser("export", help="write a task's or a report's evidence pack (zip)")
    e.add_argument("source", help="a task id of the history, or a report JSON written by `verify --output`")
    e.add_argument("--out", type=Path, required=True, help="the pack to write (.zip)")
    e.add_argument("--key", type=Path, help="Ed25519 signing key (PEM PKCS#8 or raw); default: the app's own key")
    e.add_argument("--root-ca", type=Path,
                   help="the root CA the report was verified with, when neither Intel's nor the demo's")
    e.add_argument("--no-pdf", action="store_true", help="leave the PDF rendering out")
    v = commands.add_parser("verify", help="check a pack's signature and digests, and re-run its checks offline")
    v.add_argument("pack", type=Path, help="the evidence pack (.zip)")
    v.add_argument("--trusted-key", type=Path,
                   help="the signer's public key (PEM or raw); without it only the pack's own key is checked")
    v.add_argument("--trusted-signer", action="append", type=library_type("dstack_inspector.settings", "signer_id"),
                   metavar="FINGERPRINT",
                   help="a signer you trust, by the fingerprint (key id) you compared with its owner; the pack's "
                        "own key counts as trusted when it is one of them; repeat for several")
    v.add_argument("--json", action="store_true", help="print the verification result as JSON")
    tc = commands.add_parser("trust-center", help="write a task's or a report's result in the Trust Center's shape "
                                                  "(its VerificationResponse JSON)")
    tc.add_argument("source", help="a task id of the history, or a report JSON written by `verify --output`")
    tc.add_argument("--out", type=Path, help="the JSON file to write (default: standard output)")
    ls = commands.add_parser("list", help="list the tasks of the history (newest first), with the ids `export` takes")
    ls.add_argument("search", nargs="?", default="", help="words to find in the title, app id or domain")
    ls.add_argument("--limit", type=int, default=50, help="at most this many tasks (default 50)")
    k = commands.add_parser("key", help="show the signing key's fingerprint, or export its public key")
    k.add_argument("--key", type=Path, help="the signing key (default: the app's own key, created on first use)")
    k.add_argument("--export-public", type=Path, metavar="FILE", help="write the public key (PEM) to FILE")


def default_key_path() -> Path:
    from .settings import data_dir

    return data_dir() / SIGNING_KEY_FILE


def _signing_key(path: Path | None) -> Ed25519PrivateKey:
    from dstack_verifier.report.keys import load_or_create_signing_key, load_signing_key

    return load_signing_key(path) if path is not None else load_or_create_signing_key(default_key_path())


def cmd_report(args: argparse.Namespace) -> int:
    if args.report_command == "export":
        return _export(args)
    if args.report_command == "verify":
        return _verify(args)
    if args.report_command == "list":
        return _list(args)
    if args.report_command == "trust-center":
        return _trust_center(args)
    return _key(args)


def _trust_center(args: argparse.Namespace) -> int:
    from dstack_verifier.report.trust_center import trust_center_json

    text = trust_center_json(load_source_report(args.source))
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from .store import TaskStore

    with TaskStore.open_default() as store:
        tasks = store.search(args.search, limit=max(args.limit, 0))
        total = store.count(args.search)
    for t in tasks:
        saved = datetime.fromtimestamp(t.created_at, UTC).strftime("%Y-%m-%d %H:%M")
        print(f"{t.id:>6}  {saved}  {t.verdict.upper():<10}  {t.title}" + (f"  (app {t.app_id})" if t.app_id else ""))
    print(f"{len(tasks)} of {total} task(s)" + (f" matching {args.search!r}" if args.search else ""))
    return 0


def load_source_report(source: str) -> Report:
    """A task of the history (an integer id) or a report file; a file of that name wins over a task id."""
    from dstack_verifier.errors import InputError
    from dstack_verifier.evidence import load_evidence
    from dstack_verifier.model import Report
    from dstack_verifier.validation import validate_model

    from .cli import UsageError

    path = Path(source)
    if source.isdecimal() and not path.exists():
        from .store import TaskStore

        store = TaskStore.open_default()
        try:
            return store.get(int(source)).report
        finally:
            store.close()
    try:
        evidence = load_evidence(path)
    except InputError as exc:  # read as whatever it looked like; the reason is kept, the expectation said first
        raise InputError(f"not a dstack-inspector report ({exc.message})", source=source, field=exc.field,
                         offset=exc.offset) from None
    if evidence.kind != "report":
        raise UsageError(f"{source} is not a dstack-inspector report (write one with `verify --output`)")
    return validate_model(Report, evidence.json, source, "a dstack-inspector report")


def _export(args: argparse.Namespace) -> int:
    from dstack_verifier.report import export_pack
    from dstack_verifier.verification import load_anchor

    report = load_source_report(args.source)
    key = _signing_key(args.key)
    pdf = None
    if not args.no_pdf:
        from .report_pdf import html_to_pdf

        pdf = html_to_pdf
    anchor = load_anchor(args.root_ca) if args.root_ca is not None else None
    summary = export_pack(report, args.out, key, anchor=anchor, pdf=pdf, source=args.source)
    print(f"wrote {summary.path}: {len(summary.files)} files, verdict {summary.verdict.upper()}")
    print(f"signed by key {summary.fingerprint}")
    print(f"statement sha256 {summary.statement_sha256}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from dstack_verifier.report import verify_pack
    from dstack_verifier.report.keys import load_public_key
    from dstack_verifier.verification import ImageOptions

    from .settings import cache_dir

    trusted = load_public_key(args.trusted_key) if args.trusted_key is not None else None
    result = verify_pack(args.pack, trusted, trusted_ids=frozenset(args.trusted_signer or ()),
                         images=ImageOptions(cache_dir=cache_dir()))
    if args.json:
        sys.stdout.write(result.model_dump_json(indent=2, by_alias=True, exclude={"report", "rerun"}) + "\n")
    else:
        _print_verification(result)
    if not result.ok:
        first = result.problems[0].line()
        more = f" (and {len(result.problems) - 1} more)" if len(result.problems) > 1 else ""
        print(f"dstack-inspector: pack verification failed: {first}{more}".replace("\n", " "), file=sys.stderr)
        return 1
    if args.trusted_signer and result.key_source != "trusted":
        # The signers were named to be checked: an intact pack from anyone else is not what was asked for.
        print(f"dstack-inspector: pack signed by {result.fingerprint}, none of the --trusted-signer fingerprints "
              "given", file=sys.stderr)
        return 1
    return 0


def _print_verification(result: PackVerification) -> None:
    print(f"pack: {'VERIFIED' if result.ok else 'FAILED'}   {result.path}")
    if result.key_note:
        print(f"key: {result.key_note}")
    if result.anchor_note:
        print(result.anchor_note)
    p = result.predicate
    if p is not None:
        again = f", re-run verdict {result.rerun.verdict.value.upper()}" if result.rerun is not None else ""
        print(f"verified at {p.time_verified} by {p.verifier.id} {p.verifier.version}: verdict "
              f"{p.verdict.upper()}{again}; {len(p.evidence)} evidence files")
    for problem in result.problems:
        print(f"  FAIL  {problem.kind:<10} {problem.line()}")


def _key(args: argparse.Namespace) -> int:
    from dstack_verifier.report.keys import fingerprint, key_id, public_pem

    public = _signing_key(args.key).public_key()
    print(f"key: {args.key or default_key_path()}")
    print(f"fingerprint: {fingerprint(public)}")
    print(f"keyid: {key_id(public)}")
    if args.export_public is not None:
        args.export_public.write_bytes(public_pem(public))
        print(f"public key written to {args.export_public}")
    return 0
