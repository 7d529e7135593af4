"""The human rendering of a pack: one self-contained HTML page (no scripts, no external resources, every value
escaped), derived from the signed predicate and never the other way around."""

from __future__ import annotations

from html import escape

from ..quote.policy import TcbPolicy
from .statement import VerificationPredicate

_ENTITY_TITLES = {"app": "App", "kms": "KMS", "gateway": "Gateway"}
_STATUS_COLOURS = {"pass": "#1a7f37", "warn": "#9a6700", "fail": "#cf222e", "error": "#cf222e", "skip": "#57606a"}
_STYLE = """
body { font-family: sans-serif; font-size: 10pt; color: #1f2328; }
h1 { font-size: 16pt; } h2 { font-size: 13pt; margin-top: 14pt; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #d0d7de; padding: 3px; text-align: left; vertical-align: top; }
th { background-color: #f6f8fa; }
.mono { font-family: monospace; font-size: 8pt; }
.note { color: #57606a; font-size: 9pt; }
"""


def _os_images(images: object) -> str:
    if not isinstance(images, list) or not images:
        return "any"
    return "<br>".join(f"<span class='mono'>{escape(str(image))}</span>" for image in images)


def render_html(predicate: VerificationPredicate, signer_fingerprint: str) -> str:
    p = predicate
    anchor = p.trust_anchor
    anchor_text = "Intel SGX Root CA" if anchor.intel else f"caller-supplied root (not Intel): {anchor.subject}"
    tcb = p.policy.get("tcb", {}) if isinstance(p.policy.get("tcb"), dict) else {}
    rows = [
        ("Verdict", _status(p.verdict)),
        ("Verified at", escape(p.time_verified) + f" (unix {p.verified_at})"),
        ("Verifier", escape(f"{p.verifier.id} {p.verifier.version}")),
        ("Trust anchor", escape(anchor_text) + f"<br><span class='mono'>sha256 {escape(anchor.sha256)}</span>"),
        ("TCB policy", escape(TcbPolicy.text(tcb))),
        ("Accepted OS images", _os_images(p.policy.get("os_images"))),
        ("Phases", escape(", ".join(map(str, p.policy.get("phases", []))))),
        ("Policy digest", f"<span class='mono'>sha256 {escape(p.policy_digest.get('sha256', ''))}</span>"),
        ("Signing key", f"<span class='mono'>{escape(signer_fingerprint)}</span>"),
    ]
    parts = [
        "<!DOCTYPE html>",
        "<html><head><meta charset='utf-8'>",
        f"<title>dstack-inspector report {escape(p.time_verified)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>dstack-inspector verification report</h1>",
        _table(["", ""], rows, header=False),
    ]
    for entity, result in p.submods.items():
        tier = f" <span class='note'>(appraisal: {escape(result.status)})</span>" if result.status else ""
        parts.append(f"<h2>{escape(_ENTITY_TITLES.get(entity, entity))}{tier}</h2>")
        parts.append(_table(["Status", "Check", "Phase", "Anchor", "Summary"], [
            (_status(c.status), f"<span class='mono'>{escape(c.id)}</span>", escape(c.phase),
             f"<span class='mono'>{escape(c.anchor)}</span>", escape(c.summary))
            for c in result.checks
        ]))
    parts.append("<h2>Evidence</h2>")
    parts.append(_table(["File in the pack", "Input", "Kind", "Bytes", "SHA-256"], [
        (f"<span class='mono'>{escape(e.file)}</span>", escape(e.name), escape(e.kind), str(e.size),
         f"<span class='mono'>{escape(e.sha256)}</span>")
        for e in p.evidence
    ]))
    parts.append("<p class='note'>Rendered from the signed statement (statement.dsse.json) of this evidence pack. "
                 "Check the signature and re-run the checks with <code>dstack-inspector report verify</code>.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _status(status: str) -> str:
    colour = _STATUS_COLOURS.get(status, "#1f2328")
    return f"<b style='color: {colour}'>{escape(status.upper())}</b>"


def _table(headers: list[str], rows: list[tuple[str, ...]], header: bool = True) -> str:
    head = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in headers) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"
