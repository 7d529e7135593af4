"""The vocabulary the panes share: status colours and icons, entity and phase titles, counts, fonts, times."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import UTC, datetime

from dstack_verifier.errors import InputError
from dstack_verifier.evidence import detect
from dstack_verifier.model import Check, CheckStatus, Report
from PySide6.QtCore import (
    QPointF,
    QRectF,
    Qt,
)
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontDatabase,
    QIcon,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
)

# --------------------------------------------------------------------------------------------------------------
# Vocabulary shared by the panes

STATUS_COLORS: dict[str, str] = {
    CheckStatus.PASS: "#2e7d32",
    CheckStatus.FAIL: "#c62828",
    CheckStatus.WARN: "#b26a00",
    CheckStatus.SKIP: "#607d8b",
    CheckStatus.ERROR: "#6a1b9a",
}
# Worst first when a group shows one status for its checks.
STATUS_RANK: dict[str, int] = {
    CheckStatus.FAIL: 4, CheckStatus.ERROR: 3, CheckStatus.WARN: 2, CheckStatus.SKIP: 1, CheckStatus.PASS: 0,
}
FINDING_STATUSES = (CheckStatus.FAIL, CheckStatus.WARN, CheckStatus.ERROR)
ENTITY_TITLES = {"app": "App", "kms": "KMS", "gateway": "Gateway"}
PHASE_TITLES = {"hardware": "Hardware", "os": "OS", "source": "Source code", "domain": "Domain"}

# (background, accent/border, text) of the verdict banner per state.
BANNER_COLORS: dict[str, tuple[str, str, str]] = {
    "pass": ("#e8f5e9", "#2e7d32", "#1b4d20"),
    "fail": ("#fdecea", "#c62828", "#7f1d1d"),
    "incomplete": ("#fff4e0", "#d98200", "#6b4100"),
    "error": ("#fdecea", "#c62828", "#7f1d1d"),
    "running": ("#e8eef8", "#3d6fb6", "#1f3f6e"),
    "idle": ("#f1f3f5", "#9aa5b1", "#3b4550"),
}

ANCHOR_EXPLANATIONS = {
    "intel-root": "rests on the Intel SGX Root CA (pinned SHA-256)",
    "caller-supplied": "rests on a root CA supplied by the caller — not Intel's",
    "quote": "rests on the content of the quote alone",
    "event-log-only": "rests on the event log only, not on a recomputed measurement",
    "none": "rests on nothing verifiable (informational)",
    "nvidia-nras": "rests on NVIDIA's Remote Attestation Service and the token keys it publishes",
    "ita-root": "rests on Intel Trust Authority's token signing chain",
}

# Which quote field a check is about (the details pane offers a link to it).



def fixed_font() -> QFont:
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    font.setStyleHint(QFont.StyleHint.Monospace)
    return font


def format_time(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def anchor_explanation(anchor: str) -> str:
    if anchor.startswith("onchain@"):
        return f"rests on on-chain state at {anchor.removeprefix('onchain@')}"
    if anchor.startswith("image:"):
        return f"rests on the OS image with hash {anchor.removeprefix('image:')}"
    return ANCHOR_EXPLANATIONS.get(anchor, "")


def worst_status(statuses: Iterable[str]) -> str:
    return max(statuses, key=lambda s: STATUS_RANK.get(s, 0), default=CheckStatus.PASS)


def count_statuses(checks: Iterable[Check]) -> dict[str, int]:
    counts = {s.value: 0 for s in CheckStatus}
    for c in checks:
        counts[c.status.value] += 1
    return counts


def describe_counts(counts: dict[str, int]) -> str:
    parts = [f"{n} {status}" for status, n in counts.items() if n]
    return ", ".join(parts) if parts else "no checks"


_ICONS: dict[str, QIcon] = {}


def status_icon(status: str) -> QIcon:
    """A coloured disc with a glyph (✓ ✕ ! –), drawn once per status; colour is never the only cue."""
    if status in _ICONS:
        return _ICONS[status]
    size, ratio = 16, 2.0
    pixmap = QPixmap(int(size * ratio), int(size * ratio))
    pixmap.setDevicePixelRatio(ratio)
    pixmap.fill(Qt.GlobalColor.transparent)
    p = QPainter(pixmap)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor(STATUS_COLORS.get(status, "#607d8b")))
    p.drawEllipse(QRectF(1, 1, size - 2, size - 2))
    pen = QPen(QColor("white"), 2.0)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    p.setPen(pen)
    if status == CheckStatus.PASS:
        path = QPainterPath(QPointF(4.5, 8.5))
        path.lineTo(7, 11)
        path.lineTo(11.5, 5.5)
        p.drawPath(path)
    elif status == CheckStatus.FAIL:
        p.drawLine(QPointF(5.5, 5.5), QPointF(10.5, 10.5))
        p.drawLine(QPointF(10.5, 5.5), QPointF(5.5, 10.5))
    elif status in (CheckStatus.WARN, CheckStatus.ERROR):
        p.drawLine(QPointF(8, 4.5), QPointF(8, 9))
        p.drawPoint(QPointF(8, 11.5))
    else:
        p.drawLine(QPointF(5, 8), QPointF(11, 8))
    p.end()
    _ICONS[status] = QIcon(pixmap)
    return _ICONS[status]



def quote_bytes_of(report: Report) -> bytes | None:
    """The raw quote a report verified, decoded again from its recorded input."""
    for item in report.inputs:
        if item.role in ("quote", "getquote", "attestation") and item.content_b64:
            try:
                return detect(base64.b64decode(item.content_b64), item.name).quote
            except (InputError, ValueError):
                return None
    return None
