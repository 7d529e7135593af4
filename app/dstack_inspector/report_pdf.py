"""The PDF rendering of an evidence pack: Qt lays out the pack's HTML and writes it with QPdfWriter.

Qt stamps the wall clock and a random id into a PDF; both are pinned here (the id derived from the HTML, the dates
set to the verification instant) so two exports of one report give the same bytes.
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from dstack_verifier import __version__
from dstack_verifier.report.statement import VerificationPredicate
from PySide6.QtCore import QBuffer, QByteArray, QHashSeed, QIODevice, QUuid
from PySide6.QtGui import QGuiApplication, QPageSize, QPdfWriter, QTextDocument

# Any fixed namespace will do: the document id only has to be a function of the content.
_ID_NAMESPACE = QUuid("{3b0e6c1a-5f7d-4c1e-9a4e-6d2f0b8e7c11}")
_PDF_DATE = re.compile(rb"/(CreationDate|ModDate) \(D:(\d{14})(Z|[+-]\d\d'\d\d')\)")
_app: QGuiApplication | None = None  # created here when the CLI renders without a GUI; kept alive for later calls


def _ensure_gui_application() -> None:
    """Text layout needs fonts, hence a QGuiApplication; without a GUI, one on the offscreen platform."""
    global _app
    if QGuiApplication.instance() is None:
        _app = QGuiApplication([sys.argv[0] if sys.argv else "dstack-inspector", "-platform", "offscreen"])


def html_to_pdf(html: str, predicate: VerificationPredicate) -> bytes:
    _ensure_gui_application()
    # The writer keeps its fonts in a QHash, whose order (and so the PDF's object order) follows the process's
    # random hash seed: with a fixed seed while the writer's hashes are made, the bytes depend on the content alone.
    QHashSeed.setDeterministicGlobalSeed()
    try:
        data = _print(html, predicate)
    finally:
        QHashSeed.resetRandomGlobalSeed()
    return _pin_dates(data, predicate.verified_at)


def _print(html: str, predicate: VerificationPredicate) -> bytes:
    title = f"dstack-inspector report {predicate.time_verified}"
    document = QTextDocument()
    document.setHtml(html)
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    writer = QPdfWriter(buffer)
    writer.setPageSize(QPageSize(QPageSize.PageSizeId.A4))
    writer.setTitle(title)
    writer.setCreator(f"dstack-inspector {__version__}")
    writer.setDocumentId(QUuid.createUuidV5(_ID_NAMESPACE, QByteArray(html.encode())))
    writer.setDocumentXmpMetadata(QByteArray(_xmp(title, predicate.time_verified).encode()))
    document.print_(writer)
    del writer  # the PDF is complete once its writer is gone
    buffer.close()
    return bytes(data)


def _xmp(title: str, instant: str) -> str:
    return (
        "<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?>"
        "<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
        "<rdf:Description rdf:about='' xmlns:dc='http://purl.org/dc/elements/1.1/' "
        "xmlns:xmp='http://ns.adobe.com/xap/1.0/'>"
        f"<dc:title><rdf:Alt><rdf:li xml:lang='x-default'>{escape(title)}</rdf:li></rdf:Alt></dc:title>"
        f"<xmp:CreatorTool>dstack-inspector {escape(__version__)}</xmp:CreatorTool>"
        f"<xmp:CreateDate>{escape(instant)}</xmp:CreateDate><xmp:ModifyDate>{escape(instant)}</xmp:ModifyDate>"
        "</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end='w'?>"
    )


def _pin_dates(pdf: bytes, instant: int) -> bytes:
    """The info dictionary's dates, rewritten to the instant in place: same length, so the xref stays valid."""
    stamp = datetime.fromtimestamp(instant, UTC).strftime("%Y%m%d%H%M%S").encode()

    def pinned(match: re.Match[bytes]) -> bytes:
        zone = b"Z" if match.group(3) == b"Z" else b"+00'00'"
        return b"/%b (D:%b%b)" % (match.group(1), stamp, zone)

    return _PDF_DATE.sub(pinned, pdf)
