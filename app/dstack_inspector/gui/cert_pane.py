"""Certificate chains (PCK, RA-TLS, TLS) the way XCA / KeyStore Explorer show them: the chains as a tree on the
left; on the right the selected certificate's subject, issuer, serial, validity (marked against the verification
instant), key, SHA-256 fingerprint and every extension decoded — Intel's SGX extension (FMSPC, PCE-SVN, CPU-SVN and
TCB components, PPID) and dstack's RA-TLS extensions included — and a PEM export.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from dstack_verifier.errors import InputError
from dstack_verifier.model import Report
from dstack_verifier.quote.names import key_label
from dstack_verifier.quote.pck import SGX_EXTENSION_OID, PckExtensionError, parse_pck_extension
from dstack_verifier.quote.structure import parse_quote
from dstack_verifier.ratls import DSTACK_OID_ARC, decode_ratls, load_certificates
from dstack_verifier.sources import to_evidence
from dstack_verifier.sources.cloud import parse_cloud_answer
from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .vocabulary import STATUS_COLORS, format_time, quote_bytes_of, status_icon
from .widgets import KeyValueTree

CHAIN_KINDS = ("PCK", "RA-TLS", "TLS")
CHAIN_TITLES = {
    "PCK": "PCK chain (from the quote)",
    "RA-TLS": "RA-TLS chain (app certificate → KMS CA)",
    "TLS": "TLS chain (served by the gateway's domain)",
}
DER_ROLE = Qt.ItemDataRole.UserRole + 1
CHAIN_ROLE = Qt.ItemDataRole.UserRole + 2

# Save dialog: (parent, title, suggested file name) → the chosen path, "" when cancelled. Tests inject their own.
SaveDialog = Callable[[QWidget, str, str], str]


def _file_dialog(parent: QWidget, title: str, suggested: str) -> str:
    path, _ = QFileDialog.getSaveFileName(parent, title, suggested, "PEM certificates (*.pem *.crt);;All files (*)")
    return path


# ------------------------------------------------------------------------------------------ chains of a report


def entity_quote(report: Report, entity: str) -> bytes | None:
    """The raw quote `entity` presented, decoded again from the report's recorded inputs; None when not recorded.

    A saved Phala Cloud answer holds one quote per entity; other reports verify one entity. The quote found must
    carry the report_data the report decoded for that entity, so a quote is never shown under the wrong entity."""
    data = report.entities.get(entity)
    decoded = data.get("quote") if isinstance(data, dict) else None
    if not isinstance(decoded, dict):
        return None
    raw: bytes | None = None
    cloud = next((i for i in report.inputs if i.role == "cloud-attestations" and i.content_b64), None)
    try:
        if cloud is not None:
            per_entity = to_evidence(parse_cloud_answer(base64.b64decode(cloud.content_b64 or ""), cloud.name))
            raw = next((e.quote for e in per_entity.get(entity, []) if e.quote), None)
        else:
            raw = quote_bytes_of(report)
        if raw is None or parse_quote(raw).decoded().get("reportdata") != decoded.get("reportdata"):
            return None
    except (InputError, ValueError):
        return None
    return raw


def _pck_chain(report: Report, entity: str) -> list[bytes]:
    raw = entity_quote(report, entity)
    if raw is None:
        return []
    try:
        pem = parse_quote(raw).pck_chain_pem()
        certs = load_certificates(pem, "quote cert_data") if pem else []
    except (InputError, ValueError):
        return []
    return [c.public_bytes(Encoding.DER) for c in certs]


def _tls_chain(report: Report, entity: str) -> list[bytes]:
    """The served chain, when the domain check recorded it (each entry's PEM)."""
    check = next((c for c in report.checks if c.entity == entity and c.id == "domain.certificate_key"), None)
    entries = check.details.get("chain") if check is not None else None
    pems = [e["pem"] for e in entries or [] if isinstance(e, dict) and isinstance(e.get("pem"), str)]
    try:
        return [c.public_bytes(Encoding.DER) for pem in pems for c in load_certificates(pem, "served chain")]
    except InputError:
        return []


def report_chains(report: Report, entity: str) -> dict[str, list[bytes]]:
    """The certificate chains of `entity` in a report, leaf first, each certificate as DER."""
    ratls: list[bytes] = []
    for text in (report.entities.get(entity) or {}).get("certificates") or []:
        try:
            ratls.append(base64.b64decode(text, validate=True))
        except (ValueError, TypeError):
            continue
    return {"PCK": _pck_chain(report, entity), "RA-TLS": ratls, "TLS": _tls_chain(report, entity)}


# ------------------------------------------------------------------------------------------ one certificate


def _name(cert: x509.Certificate, which: str) -> str:
    """The subject or issuer as text. cryptography decodes a name when it is first asked for, so a malformed one (a
    hostile certificate) raises only then: it is shown as not parsing instead."""
    try:
        return getattr(cert, which).rfc4514_string()
    except ValueError as exc:
        return f"(does not parse: {str(exc).splitlines()[0][:100]})"


def _load(der: bytes) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        return None


def _valid_at(cert: x509.Certificate, at: int) -> bool:
    instant = datetime.fromtimestamp(at, UTC)
    return cert.not_valid_before_utc <= instant <= cert.not_valid_after_utc


def _hexid(data: bytes) -> str:
    return data.hex(":")


def _general_names(names: Any) -> list[str]:
    return [f"{type(name).__name__.removesuffix('Name')}: {name.value}" for name in names]


def _extension_value(ext: x509.Extension[Any]) -> Any:
    """A readable form of one extension: decoded where we know it, else its OID and raw bytes."""
    value = ext.value
    if ext.oid.dotted_string.startswith(DSTACK_OID_ARC + "."):
        return f"dstack RA-TLS extension ({len(value.value)} bytes; decoded under 'dstack RA-TLS')"
    if isinstance(value, x509.BasicConstraints):
        return f"CA: {value.ca}" + (f", path length ≤ {value.path_length}" if value.path_length is not None else "")
    if isinstance(value, x509.KeyUsage):
        flags = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                 "key_agreement", "key_cert_sign", "crl_sign")
        used = [f for f in flags if getattr(value, f)]
        if value.key_agreement:
            used += [f for f in ("encipher_only", "decipher_only") if getattr(value, f)]
        return ", ".join(used) or "(none)"
    if isinstance(value, x509.ExtendedKeyUsage):
        return ", ".join(getattr(o, "_name", o.dotted_string) for o in value)
    if isinstance(value, x509.SubjectAlternativeName):
        return _general_names(value)
    if isinstance(value, x509.SubjectKeyIdentifier):
        return _hexid(value.digest)
    if isinstance(value, x509.AuthorityKeyIdentifier):
        return _hexid(value.key_identifier) if value.key_identifier else "(issuer and serial form)"
    if isinstance(value, x509.CRLDistributionPoints):
        return [str(n.value) for point in value for n in point.full_name or []]
    if isinstance(value, x509.UnrecognizedExtension):
        return f"{len(value.value)} bytes: {value.value[:64].hex()}{'…' if len(value.value) > 64 else ''}"
    return str(value)


# Labels for the decoded SGX extension (Intel's PCK Certificate and CRL Profile names).
_SGX_LABELS = {
    "ppid": "PPID", "cpu_svn": "CPU-SVN", "pce_svn": "PCE-SVN", "pce_id": "PCE-ID", "fmspc": "FMSPC",
    "sgx_type_name": "SGX type", "tcb_components": "TCB components (SGX, 1–16)",
    "platform_instance_id": "platform instance id", "dynamic_platform": "dynamic platform",
    "cached_keys": "cached keys", "smt_enabled": "SMT enabled", "ca_type": "issued by the PCK CA for",
}


def _sgx_section(cert: x509.Certificate) -> dict[str, Any]:
    """Intel's SGX extension (OID 1.2.840.113741.1.13.1), decoded by the verifier's own parser."""
    try:
        info = parse_pck_extension(cert).to_dict()
    except (PckExtensionError, ValueError) as exc:
        return {"error": f"the SGX extension does not decode: {exc}"}
    return {label: info[key] for key, label in _SGX_LABELS.items() if key in info}


def certificate_details(der: bytes, at: int | None) -> list[tuple[str, Any]]:
    """Sections for the detail tree; a certificate that does not parse gives one section that says why."""
    cert = _load(der)
    if cert is None:
        return [("Certificate", {"error": "the DER does not parse as an X.509 certificate",
                                 "SHA-256 fingerprint": hashlib.sha256(der).hexdigest()})]
    validity: dict[str, Any] = {"not before": cert.not_valid_before_utc.isoformat(),
                                "not after": cert.not_valid_after_utc.isoformat()}
    if at is not None:
        ok = _valid_at(cert, at)
        validity["at the verification instant"] = f"{'✓ valid' if ok else '✕ NOT valid'} at {format_time(at)}"
    algorithm = cert.signature_algorithm_oid
    general = {
        "subject": _name(cert, "subject"),
        "issuer": _name(cert, "issuer"),
        "serial": f"{cert.serial_number:x}",
        "key": key_label(cert),
        "signature algorithm": getattr(algorithm, "_name", algorithm.dotted_string),
        "SHA-256 fingerprint": hashlib.sha256(der).hexdigest(),
    }
    sections: list[tuple[str, Any]] = [("Certificate", general), ("Validity", validity)]
    extensions: dict[str, Any] = {}
    try:
        for ext in cert.extensions:
            label = getattr(ext.oid, "_name", "Unknown OID")
            dotted = ext.oid.dotted_string
            if ext.oid == SGX_EXTENSION_OID:
                label = f"Intel SGX extension ({dotted})"
            elif dotted.startswith(DSTACK_OID_ARC + "."):
                label = f"dstack extension ({dotted})"
            elif label == "Unknown OID":
                label = dotted
            key = f"{label}{' (critical)' if ext.critical else ''}"
            extensions[key] = _sgx_section(cert) if ext.oid == SGX_EXTENSION_OID else _extension_value(ext)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        extensions["error"] = f"extensions do not parse: {str(exc).splitlines()[0]}"
    sections.append(("Extensions", extensions or "(none)"))
    try:
        ratls = decode_ratls(cert)
    except InputError as exc:
        sections.append(("dstack RA-TLS", {"error": exc.describe()}))
    else:
        if ratls is not None:
            sections.append(("dstack RA-TLS", ratls.to_dict()))
    return sections


def _label(der: bytes) -> str:
    cert = _load(der)
    if cert is None:
        return "<certificate that does not parse>"
    try:
        cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    except ValueError:
        return "<certificate whose subject does not parse>"
    return str(cns[0].value) if cns else (_name(cert, "subject") or "(empty subject)")


def _role_of(position: int, der: bytes) -> str:
    cert = _load(der)
    if cert is None:
        return "?"
    try:
        if cert.issuer == cert.subject:
            return "root"
    except ValueError:
        return "?"
    return "leaf" if position == 0 else "intermediate"


def to_pem(ders: list[bytes]) -> str:
    """PEM blocks of the certificates; raises ValueError for one that does not parse."""
    return "".join(x509.load_der_x509_certificate(d).public_bytes(Encoding.PEM).decode("ascii") for d in ders)


class CertificatePane(QWidget):
    """Chains on the left, the selected certificate (or chain) on the right, PEM export below."""

    def __init__(self, parent: QWidget | None = None, *, save_dialog: SaveDialog = _file_dialog) -> None:
        super().__init__(parent)
        self._save_dialog = save_dialog
        self.at: int | None = None
        self.chains: dict[str, list[bytes]] = {}
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Certificate", "Role"])
        self.tree.setColumnCount(2)
        self.tree.setUniformRowHeights(True)
        self.details = KeyValueTree()
        self.export_button = QPushButton("Export PEM…")
        self.export_button.setToolTip("Save the selected certificate, or the selected chain, as PEM")
        self.export_button.clicked.connect(self.export_pem)
        self.message = QLabel()
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setWordWrap(True)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.tree, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.export_button)
        buttons.addStretch(1)
        left_layout.addLayout(buttons)
        left_layout.addWidget(self.message)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.details)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)
        self.tree.currentItemChanged.connect(self._on_current)
        self.set_chains({})

    def set_report(self, report: Report | None, entity: str) -> None:
        """The chains of `entity`, validity marked at the report's verification instant."""
        self.set_chains(report_chains(report, entity) if report is not None else {},
                        at=report.verified_at if report is not None else None)

    def set_chains(self, chains: dict[str, list[bytes]], at: int | None = None) -> None:
        self.chains = {k: list(v) for k, v in chains.items()}
        self.at = at
        self.tree.clear()
        self.message.clear()
        first: QTreeWidgetItem | None = None
        for kind in [*CHAIN_KINDS, *(k for k in chains if k not in CHAIN_KINDS)]:
            ders = self.chains.get(kind) or []
            top = QTreeWidgetItem([CHAIN_TITLES.get(kind, kind), f"{len(ders)} certificates" if ders else "none"])
            top.setData(0, CHAIN_ROLE, kind)
            font = top.font(0)
            font.setBold(True)
            top.setFont(0, font)
            if not ders:
                top.setForeground(0, QBrush(QColor("#6c757d")))
                top.setToolTip(0, "not in this report")
            self.tree.addTopLevelItem(top)
            for position, der in enumerate(ders):
                item = QTreeWidgetItem([_label(der), _role_of(position, der)])
                item.setData(0, DER_ROLE, der)
                item.setData(0, CHAIN_ROLE, kind)
                cert = _load(der)
                valid = _valid_at(cert, at) if cert is not None and at is not None else None
                if cert is None:
                    item.setIcon(0, status_icon("fail"))
                    item.setToolTip(0, "the certificate does not parse")
                elif valid is not None:
                    item.setIcon(0, status_icon("pass" if valid else "fail"))
                    item.setToolTip(0, f"{'valid' if valid else 'NOT valid'} at the verification instant")
                    if not valid:
                        item.setForeground(0, QBrush(QColor(STATUS_COLORS["fail"])))
                top.addChild(item)
                first = first or item
        self.tree.expandAll()
        self.tree.resizeColumnToContents(0)
        self.tree.setCurrentItem(first)
        if first is None:
            self.details.set_data([("(no certificates)", "this report has no certificate chain for the entity")])
        self.export_button.setEnabled(first is not None)

    def current_ders(self) -> tuple[str, list[bytes]]:
        """The selected certificate, or every certificate of the selected chain; with a name for the file."""
        item = self.tree.currentItem()
        if item is None:
            return "", []
        der = item.data(0, DER_ROLE)
        kind = item.data(0, CHAIN_ROLE) or ""
        if der is not None:
            return _label(der), [der]
        return f"{kind} chain", self.chains.get(kind, [])

    @Slot(QTreeWidgetItem, QTreeWidgetItem)
    def _on_current(self, current: QTreeWidgetItem | None, _previous: QTreeWidgetItem | None) -> None:
        if current is None:
            return
        der = current.data(0, DER_ROLE)
        if der is not None:
            self.details.set_data(certificate_details(der, self.at), expand_depth=1)
            self.export_button.setEnabled(True)
            return
        kind = current.data(0, CHAIN_ROLE)
        ders = self.chains.get(kind, [])
        self.details.set_data([(f"[{i}] {_role_of(i, d)}", _label(d)) for i, d in enumerate(ders)]
                              or [("(empty)", "no certificate of this kind in the report")], expand_depth=0)
        self.export_button.setEnabled(bool(ders))

    def export_pem(self) -> Path | None:
        name, ders = self.current_ders()
        if not ders:
            return None
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip("_") or "certificate"
        target = self._save_dialog(self, "Export as PEM", f"{safe}.pem")
        if not target:
            return None
        path = Path(target)
        try:
            path.write_text(to_pem(ders), encoding="ascii")
        except (OSError, ValueError) as exc:
            self.message.setText(f"Could not write {path}: {getattr(exc, 'strerror', None) or exc}")
            return None
        self.message.setText(f"Saved {len(ders)} certificate{'s' if len(ders) != 1 else ''} to {path}")
        return path
