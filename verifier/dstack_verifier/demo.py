"""The demo evidence pack: one synthetic dstack app, complete, and the self-made root CA that anchors it.

The evidence is what an app entity presents: a GetQuote answer (TDX quote, event log, vm_config), its app-compose,
its RA-TLS certificate chain and DCAP collateral. The files live in ``resources/demo/`` and are written by
``packaging/make_demo.py`` (deterministic). Nothing in the pack is Intel's (nor a real KMS's): it verifies only
against its own root, and every place that shows it must say so — ``Demo.label`` is the wording to show ("demo
root — not Intel").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError
from .evidence import Evidence, detect, read_bounded
from .quote.verify import TrustAnchor
from .resources import resource_path

DEMO_SCHEMA = "dstack-inspector/demo/v1"
DEMO_LABEL = "demo root — not Intel"
# The evidence files, in the order they are given to the verifier, then the root CA that anchors them.
DEMO_EVIDENCE = ("getquote.json", "app-compose.json", "app-cert.pem", "collateral.json")
DEMO_ANCHOR = "demo_root_ca.der"
DEMO_FILES = (*DEMO_EVIDENCE, DEMO_ANCHOR)
_MAX_DEMO_FILE = 1 << 20


@dataclass
class Demo:
    items: list[Evidence]
    anchor: TrustAnchor
    now: int
    label: str = DEMO_LABEL
    description: str = ""


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
        raise InputError(f"not a demo manifest (schema {DEMO_SCHEMA} expected)", source=str(path))
    now = doc.get("now")
    if not isinstance(now, int) or isinstance(now, bool) or now <= 0:
        raise InputError("expected a positive unix time", source=str(path), field="now")
    if not isinstance(doc.get("files"), dict):
        raise InputError("expected the files and their sha256", source=str(path), field="files")
    if doc.get("evidence") != list(DEMO_EVIDENCE):
        raise InputError(f"expected the evidence files {', '.join(DEMO_EVIDENCE)} (regenerate the demo pack with "
                         "packaging/make_demo.py)", source=str(path), field="evidence")
    return doc


def load_demo(directory: Path | None = None) -> Demo:
    """The demo pack (from ``resources/demo/`` unless ``directory`` is given), each file checked against the
    sha256 the manifest records, so a half-regenerated pack is refused rather than shown."""
    doc = _manifest(directory)
    contents: dict[str, bytes] = {}
    for name in DEMO_FILES:
        path, data = _read(directory, name)
        expected = doc["files"].get(name)
        if hashlib.sha256(data).hexdigest() != expected:
            raise InputError("does not match the sha256 recorded in demo.json (regenerate the demo pack with "
                             "packaging/make_demo.py)", source=str(path))
        contents[name] = data
    anchor = TrustAnchor.from_der(contents[DEMO_ANCHOR], f"demo/{DEMO_ANCHOR}")
    if anchor.is_intel:  # the demo must never be mistaken for, or made to rest on, Intel's root
        raise InputError("the demo root CA is the Intel SGX Root CA; the demo pack must use its own root",
                         source=f"demo/{DEMO_ANCHOR}")
    items = [detect(contents[name], f"demo/{name}") for name in DEMO_EVIDENCE]
    description = doc.get("description") if isinstance(doc.get("description"), str) else ""
    return Demo(items=items, anchor=anchor, now=doc["now"], label=DEMO_LABEL, description=description)
