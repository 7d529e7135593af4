"""The demo evidence pack: one synthetic dstack deployment — App, KMS and Gateway — and the self-made roots that
anchor it.

``Demo.items`` is what the three entities present: a Phala Cloud attestations answer (the app instance's quote,
event log and app-compose; the KMS's and the gateway's guest-agent info), the gateway's ``/.dstack/acme-info`` and
DCAP collateral. ``Demo.app_items`` is the app alone as its own guest agent serves it (GetQuote answer with the
vm_config, app-compose, RA-TLS chain) with the same collateral. ``Demo.domain`` names the gateway's base domain and
the demo web root that issued its TLS certificate, for the domain checks.

The files live in ``resources/demo/`` and are written by ``packaging/make_demo.py`` (deterministic). Nothing in the
pack is Intel's (nor a real KMS's, nor a public CA's): it verifies only against its own roots, and every place that
shows it must say so — ``Demo.label`` is the wording to show ("demo root — not Intel").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .evidence import Evidence, detect, read_bounded
from .quote.verify import TrustAnchor
from .ratls import load_certificates
from .resources import resource_path
from .verification import VerifyOptions

if TYPE_CHECKING:  # the domain phase (dnspython…) loads when the demo is loaded, not when this module is imported
    from .domain_phase import DomainOptions

DEMO_SCHEMA = "dstack-inspector/demo/v2"
DEMO_LABEL = "demo root — not Intel"
# The three entities' evidence, in the order it is given to the verifier; then the app's own evidence.
DEMO_EVIDENCE = ("cloud-attestations.json", "acme-info.json", "app-info.json", "kms-meta.json", "collateral.json")
DEMO_APP_EVIDENCE = ("getquote.json", "app-compose.json", "app-cert.pem", "collateral.json")
DEMO_ANCHOR = "demo_root_ca.der"
DEMO_WEB_ROOT = "demo_web_root.pem"  # the TLS trust store of the domain checks (passed as --tls-roots)
DEMO_FILES = tuple(dict.fromkeys((*DEMO_EVIDENCE, *DEMO_APP_EVIDENCE, DEMO_ANCHOR, DEMO_WEB_ROOT)))
_MAX_DEMO_FILE = 1 << 20
_REGENERATE = "regenerate the demo pack with packaging/make_demo.py"


@dataclass
class Demo:
    items: list[Evidence]
    anchor: TrustAnchor
    now: int
    label: str = DEMO_LABEL
    description: str = ""
    domain: DomainOptions | None = None
    app_items: list[Evidence] = field(default_factory=list)

    def options(self, **changes: Any) -> VerifyOptions:
        """How the demo is verified: offline, at its instant, against its root CA and (for the gateway's domain)
        its web root; ``changes`` replace any of those (e.g. ``now=`` for a later instant)."""
        return replace(VerifyOptions(now=self.now, anchor=self.anchor, offline=True, domain=self.domain), **changes)


def _read(directory: Path | None, name: str) -> tuple[Path, bytes]:
    path = (directory / name) if directory is not None else resource_path("demo", name)
    return path, read_bounded(path, _MAX_DEMO_FILE)


def _manifest(directory: Path | None) -> dict[str, Any]:
    path, data = _read(directory, "demo.json")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError("the demo manifest is not valid JSON", source=str(path)) from None
    if not isinstance(doc, dict) or doc.get("schema") != DEMO_SCHEMA:
        raise InputError(f"not a demo manifest (schema {DEMO_SCHEMA} expected; {_REGENERATE})", source=str(path))
    now = doc.get("now")
    if not isinstance(now, int) or isinstance(now, bool) or now <= 0:
        raise InputError("expected a positive unix time", source=str(path), field="now")
    if not isinstance(doc.get("files"), dict):
        raise InputError("expected the files and their sha256", source=str(path), field="files")
    for key, names in (("evidence", DEMO_EVIDENCE), ("app_evidence", DEMO_APP_EVIDENCE)):
        if doc.get(key) != list(names):
            raise InputError(f"expected the evidence files {', '.join(names)} ({_REGENERATE})", source=str(path),
                             field=key)
    domain = doc.get("base_domain")
    if not isinstance(domain, str) or not domain:
        raise InputError("expected the gateway's base domain", source=str(path), field="base_domain")
    return doc


def load_demo(directory: Path | None = None) -> Demo:
    """The demo pack (from ``resources/demo/`` unless ``directory`` is given), each file checked against the
    sha256 the manifest records, so a half-regenerated pack is refused rather than shown."""
    from .domain_phase import DomainOptions

    doc = _manifest(directory)
    contents: dict[str, bytes] = {}
    for name in DEMO_FILES:
        path, data = _read(directory, name)
        if hashlib.sha256(data).hexdigest() != doc["files"].get(name):
            raise InputError(f"does not match the sha256 recorded in demo.json ({_REGENERATE})", source=str(path))
        contents[name] = data
    anchor = TrustAnchor.from_der(contents[DEMO_ANCHOR], f"demo/{DEMO_ANCHOR}")
    if anchor.is_intel:  # the demo must never be mistaken for, or made to rest on, Intel's root
        raise InputError("the demo root CA is the Intel SGX Root CA; the demo pack must use its own root",
                         source=f"demo/{DEMO_ANCHOR}")
    web_roots = load_certificates(contents[DEMO_WEB_ROOT], f"demo/{DEMO_WEB_ROOT}")
    if len(web_roots) != 1:
        raise InputError(f"expected one root certificate, found {len(web_roots)}", source=f"demo/{DEMO_WEB_ROOT}")
    evidence = {name: detect(contents[name], f"demo/{name}") for name in dict.fromkeys(
        (*DEMO_EVIDENCE, *DEMO_APP_EVIDENCE))}
    description = doc.get("description") if isinstance(doc.get("description"), str) else ""
    return Demo(
        items=[evidence[name] for name in DEMO_EVIDENCE],
        anchor=anchor,
        now=doc["now"],
        label=DEMO_LABEL,
        description=description,
        domain=DomainOptions(domain=doc["base_domain"], trust_roots=web_roots),
        app_items=[evidence[name] for name in DEMO_APP_EVIDENCE],
    )
