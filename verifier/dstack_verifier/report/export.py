"""Export a verified report as an evidence pack: the evidence files exactly as verified, report.json, the signed
verification statement, the human renderings and the statement that binds them, and the signer's public key."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel

from ..demo import DEMO_ANCHOR
from ..errors import InputError
from ..model import Report
from ..quote.verify import TrustAnchor
from ..resources import INTEL_ROOT_CA_SHA256, resource_path
from ..verification import load_anchor
from .dsse import sign_envelope
from .html import render_html
from .keys import fingerprint, key_id, public_pem
from .pack import (
    EVIDENCE_DIR,
    HTML_FILE,
    PDF_FILE,
    PUBLIC_KEY_FILE,
    RENDERINGS_FILE,
    REPORT_FILE,
    STATEMENT_FILE,
    write_pack,
)
from .statement import (
    RENDERING_PREDICATE,
    VERIFICATION_PREDICATE,
    AnchorInfo,
    PackedInput,
    RenderingPredicate,
    VerificationPredicate,
    identity_subjects,
    make_statement,
    subject,
    verification_predicate,
)

ANCHOR_FILE = EVIDENCE_DIR + "trust-anchor.der"
# Turns the HTML rendering into PDF bytes. Qt does it, so the app layer supplies it (the library has no Qt).
PdfRenderer = Callable[[str, VerificationPredicate], bytes]
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


class PackSummary(BaseModel):
    path: str
    files: list[str]
    key_id: str
    fingerprint: str
    statement_sha256: str  # of the signed statement payload: equal for two exports of one report
    verdict: str


def export_pack(report: Report, out: Path, key: Ed25519PrivateKey, *, anchor: TrustAnchor | None = None,
                pdf: PdfRenderer | None = None, source: str = REPORT_FILE) -> PackSummary:
    """Write the pack of `report` to `out`. `anchor` is the trust anchor the report was verified with, needed when
    it is neither Intel's nor the demo's. InputError (naming the report as `source`) when an input was not recorded
    or the anchor is unknown."""
    members: dict[str, bytes] = {}
    evidence: list[PackedInput] = []
    for i, item in enumerate(report.inputs):
        field = f"inputs[{i}]"
        if item.content_b64 is None:
            raise InputError(f"input {item.name!r} was not recorded in the report (its bytes were not kept), so it "
                             "cannot be packed", source=source, field=field)
        try:
            data = base64.b64decode(item.content_b64, validate=True)
        except (binascii.Error, ValueError):
            raise InputError(f"recorded input {item.name!r} is not valid base64", source=source,
                             field=f"{field}.content_b64") from None
        if hashlib.sha256(data).hexdigest() != item.sha256:
            raise InputError(f"recorded input {item.name!r} does not match its sha256", source=source, field=field)
        file = f"{EVIDENCE_DIR}{i + 1:02d}-{_file_name(item.name)}"
        members[file] = data
        evidence.append(PackedInput(file=file, name=item.name, kind=item.kind, role=item.role, sha256=item.sha256,
                                    size=len(data)))
    anchor_info = _pack_anchor(report, anchor, members, source)
    members[REPORT_FILE] = report.to_json().encode() + b"\n"
    predicate = verification_predicate(report, evidence, anchor_info)
    subjects = [subject(n, d) for n, d in members.items()] + identity_subjects(report)
    payload = make_statement(subjects, VERIFICATION_PREDICATE, predicate).payload()
    members[STATEMENT_FILE] = sign_envelope(payload, key).to_json()

    public = key.public_key()
    html = render_html(predicate, fingerprint(public))
    renderings = {HTML_FILE: html.encode()}
    if pdf is not None:
        renderings[PDF_FILE] = pdf(html, predicate)
    members.update(renderings)
    statement_sha256 = hashlib.sha256(payload).hexdigest()
    bound = make_statement([subject(n, d) for n, d in renderings.items()], RENDERING_PREDICATE,
                           RenderingPredicate(statement={"sha256": statement_sha256}))
    members[RENDERINGS_FILE] = sign_envelope(bound.payload(), key).to_json()
    members[PUBLIC_KEY_FILE] = public_pem(public)
    write_pack(members, out)
    return PackSummary(path=str(out), files=sorted(members), key_id=key_id(public), fingerprint=fingerprint(public),
                       statement_sha256=statement_sha256, verdict=report.verdict.value)


def _file_name(input_name: str) -> str:
    """A safe file name from an input's name (a path, a URL, or `report:inner` of a re-run)."""
    base = re.split(r"[/\\:]", input_name.rstrip("/\\"))[-1]
    return _UNSAFE_CHARS.sub("_", base)[-60:].strip("._") or "input"


def recorded_anchor(report: Report, given: TrustAnchor | None = None, source: str = REPORT_FILE) -> TrustAnchor:
    """The trust anchor a report was verified with: Intel's, the demo's, or `given` when its digest matches.
    InputError when the report names another root (its bytes are not in the report)."""
    recorded = report.policy.get("trust_anchor")
    sha = recorded.get("sha256") if isinstance(recorded, dict) else None
    if not isinstance(sha, str):
        raise InputError("the report names no trust anchor", source=source, field="policy.trust_anchor.sha256")
    if sha == INTEL_ROOT_CA_SHA256:
        return load_anchor(None)
    candidates = [given] if given is not None else []
    candidates.append(TrustAnchor.from_der(resource_path("demo", DEMO_ANCHOR).read_bytes(), f"demo/{DEMO_ANCHOR}"))
    found = next((a for a in candidates if a.sha256 == sha), None)
    if found is None:
        raise InputError(f"the report was verified with the root CA sha256 {sha}, which is neither Intel's nor the "
                         "demo's: give that root (--root-ca FILE)", source=source,
                         field="policy.trust_anchor.sha256")
    return found


def _pack_anchor(report: Report, given: TrustAnchor | None, members: dict[str, bytes], source: str) -> AnchorInfo:
    """The report's trust anchor; a root other than Intel's travels in the pack so the re-run can use it."""
    anchor = recorded_anchor(report, given, source)
    subject_name = str(report.policy["trust_anchor"].get("subject", ""))
    if anchor.is_intel:
        return AnchorInfo(sha256=anchor.sha256, subject=subject_name, intel=True, file=None)
    members[ANCHOR_FILE] = anchor.der
    return AnchorInfo(sha256=anchor.sha256, subject=subject_name, intel=False, file=ANCHOR_FILE)
