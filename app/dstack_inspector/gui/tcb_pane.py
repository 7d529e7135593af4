"""The TCB explanation of one entity: the status and its advisories, the TCB level the platform matched, and the
component comparison table (each SGX / TDX component and the PCE SVN of the platform against the matched level).

Everything comes from the `hardware.tcb_status` check (or the entity's `tcb.explanation`). The component names
(category and type) are Intel's labels from the TCB Info the verification used, read again from the recorded
collateral; without it the rows are named by position only.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from typing import Any

from dstack_verifier.errors import InputError
from dstack_verifier.model import Report
from dstack_verifier.quote.collateral import Collateral, CollateralFormatError, PlatformTcbLevel
from dstack_verifier.quote.tcb import canonical_levels
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .vocabulary import STATUS_COLORS, status_icon

OK, SHORT, NOT_COMPARED = "ok", "short", "not compared"
_LOOK = {OK: "pass", SHORT: "fail", NOT_COMPARED: "skip"}
_ADVISORY = re.compile(r"INTEL-SA-\d{5}")
INTEL_ADVISORY_URL = "https://www.intel.com/content/www/us/en/security-center/advisory/"
# TCB statuses as the default policy grades them (README, "Default TCB policy").
_STATUS_LOOK = {"UpToDate": "pass", "SWHardeningNeeded": "warn", "ConfigurationNeeded": "warn",
                "ConfigurationAndSWHardeningNeeded": "warn", "TDRelaunchAdvised": "warn",
                "TDRelaunchAdvisedConfigurationNeeded": "warn"}


@dataclass
class ComponentRow:
    group: str  # "SGX", "PCE", "TDX"
    index: int | None  # 1-based SGX position / 0-based TDX index as Intel numbers them; None for the PCE SVN
    name: str  # Intel's category / type, "" when unknown
    quote: int | None  # the platform's value (PCK certificate for SGX and PCE, the quote's TEE_TCB_SVN for TDX)
    level: int | None  # what the matched level requires
    result: str
    better: int | None = None  # what the best level above the matched one requires (None: no such level known)
    better_result: str = NOT_COMPARED

    @property
    def label(self) -> str:
        if self.group == "PCE":
            return "PCE SVN"
        return f"{self.group} component {self.index:02d}"


def tcb_explanation(report: Report, entity: str) -> dict[str, Any]:
    """The explanation: the check's details when it ran, else the entity's recorded one; {} when neither."""
    check = next((c for c in report.checks if c.entity == entity and c.id == "hardware.tcb_status"), None)
    if check is not None and check.details.get("matched_level"):
        return check.details
    explanation = ((report.entities.get(entity) or {}).get("tcb") or {}).get("explanation")
    return explanation if isinstance(explanation, dict) else {}


def recorded_tcb_levels(report: Report, entity: str) -> list[PlatformTcbLevel]:
    """The levels of the TCB Info the verification used (recorded collateral of the entity's FMSPC), best first as
    the explanation indexes them; [] when the report did not record it."""
    data = report.entities.get(entity)
    pck = data.get("pck") if isinstance(data, dict) else None
    fmspc = str(pck.get("fmspc", "") if isinstance(pck, dict) else "").lower()
    for item in report.inputs:
        if item.role != "collateral" or not item.content_b64:
            continue
        try:
            info = Collateral.from_json(base64.b64decode(item.content_b64), item.name).parsed_tcb_info()
        except (InputError, CollateralFormatError, ValueError):
            continue
        if info.fmspc.lower() == fmspc:
            return canonical_levels(info)
    return []


def better_level_index(explanation: dict[str, Any]) -> int | None:
    """The level the platform falls short of: the best UpToDate one above the match, else the best above it (the
    same choice as the check's "shortfall")."""
    above = [a for a in explanation.get("levels_above") or [] if isinstance(a, dict)]
    better = [a for a in above if a.get("status") == "UpToDate"] or above
    index = better[0].get("index") if better else None
    return index if isinstance(index, int) else None


def _component_name(components: list[Any] | None, i: int) -> str:
    if not components or i >= len(components) or not isinstance(components[i], dict):
        return ""
    comp = components[i]
    parts = [str(comp[k]) for k in ("category", "type") if comp.get(k)]
    return " · ".join(parts)


def _int_list(value: Any) -> list[int]:
    return [v for v in value if isinstance(v, int)] if isinstance(value, list) else []


def _at(values: list[int], i: int) -> int | None:
    return values[i] if i < len(values) else None


def _compare(have: int | None, need: int | None) -> str:
    return NOT_COMPARED if have is None or need is None else (OK if have >= need else SHORT)


def component_rows(explanation: dict[str, Any], levels: list[PlatformTcbLevel] | None = None) -> list[ComponentRow]:
    """Platform against the matched level (and the better level, when the TCB Info is known), component by
    component: 16 SGX, the PCE SVN, and 16 TDX for a TDX quote."""
    levels = levels or []
    matched = explanation.get("matched_level") or {}
    platform = explanation.get("platform") or {}
    m_index, b_index = matched.get("index"), better_level_index(explanation)
    named = levels[m_index] if isinstance(m_index, int) and 0 <= m_index < len(levels) else None
    better = levels[b_index] if b_index is not None and 0 <= b_index < len(levels) else None
    rows: list[ComponentRow] = []

    def add(group: str, index: int | None, name: str, have: int | None, need: int | None, best: int | None,
            compared: bool = True) -> None:
        rows.append(ComponentRow(group, index, name, have, need, _compare(have, need) if compared else NOT_COMPARED,
                                 best, _compare(have, best) if compared else NOT_COMPARED))

    cpu, sgx_level = _int_list(platform.get("cpu_svn")), _int_list(matched.get("sgx_components"))
    sgx_better = [c["svn"] for c in better.tcb.sgxtcbcomponents] if better is not None else []
    sgx_names = named.tcb.sgxtcbcomponents if named is not None else None
    for i in range(max(len(cpu), len(sgx_level))):
        add("SGX", i + 1, _component_name(sgx_names, i), _at(cpu, i), _at(sgx_level, i), _at(sgx_better, i))
    pce_have, pce_need = platform.get("pce_svn"), matched.get("pce_svn")
    if pce_have is not None or pce_need is not None:
        add("PCE", None, "", pce_have, pce_need, better.tcb.pcesvn if better is not None else None)
    tee, tdx_level = _int_list(platform.get("tee_tcb_svn")), _int_list(matched.get("tdx_components"))
    tdx_better = [c["svn"] for c in better.tcb.tdxtcbcomponents or []] if better is not None else []
    tdx_from = platform.get("tdx_compared_from") or 0
    tdx_names = named.tcb.tdxtcbcomponents if named is not None else None
    for i in range(max(len(tee), len(tdx_level))):
        # Intel's offset rule: with a TDX module major version, bytes 0–1 are judged by the module identity.
        add("TDX", i, _component_name(tdx_names, i), _at(tee, i), _at(tdx_level, i), _at(tdx_better, i),
            compared=i >= tdx_from)
    return rows


def _text(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


class TcbPane(QWidget):
    """Status, matched level, advisories and the why; the comparison table below (differences first on demand)."""

    COLUMNS = ("Component", "Name / category", "Platform", "Matched level", "Result", "Better level", "Versus better")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.status = QLabel()
        self.status.setObjectName("tcbStatus")
        font = self.status.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.2)
        self.status.setFont(font)
        self.fields: dict[str, QLabel] = {}
        form = QFormLayout()
        form.setHorizontalSpacing(12)
        form.setVerticalSpacing(3)
        for key in ("matched level", "platform status", "advisories", "TDX module", "QE", "current TCB",
                    "evaluation data", "why not better", "notes"):
            label = QLabel()
            label.setWordWrap(True)
            label.setTextFormat(Qt.TextFormat.PlainText)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.fields[key] = label
            form.addRow(f"{key[0].upper()}{key[1:]}:", label)
        self.short_only = QCheckBox("Only components that fall short (of the matched or the better level)")
        self.short_only.toggled.connect(self._filter_rows)
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 6)
        self.placeholder = QLabel()
        self.placeholder.setWordWrap(True)
        self.placeholder.setStyleSheet("color: #6c757d;")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.status)
        layout.addWidget(self.placeholder)
        layout.addLayout(form)
        layout.addWidget(self.short_only)
        layout.addWidget(self.table, 1)
        self.rows: list[ComponentRow] = []
        self.set_report(None, "app")

    def set_report(self, report: Report | None, entity: str) -> None:
        explanation = tcb_explanation(report, entity) if report is not None else {}
        levels = recorded_tcb_levels(report, entity) if report is not None and explanation else []
        self.set_explanation(explanation, levels, reason=self._reason(report, entity))

    @staticmethod
    def _reason(report: Report | None, entity: str) -> str:
        if report is None:
            return "No report."
        check = next((c for c in report.checks if c.entity == entity and c.id == "hardware.tcb_status"), None)
        if check is None:
            return f"The report has no TCB evaluation for the {entity}."
        return f"No TCB evaluation: {check.summary}"

    def set_explanation(self, explanation: dict[str, Any], levels: list[PlatformTcbLevel] | None = None,
                        reason: str = "") -> None:
        has = bool(explanation.get("matched_level"))
        self.placeholder.setText("" if has else reason)
        self.placeholder.setVisible(not has)
        for label in self.fields.values():
            label.setText("—")
        status = str(explanation.get("status") or "—")
        color = STATUS_COLORS.get(_STATUS_LOOK.get(status, "fail"), "#607d8b") if has else "#607d8b"
        self.status.setText(f"TCB status: {status}" if has else "TCB status: not evaluated")
        self.status.setStyleSheet(f"#tcbStatus {{ color: {color}; }}")
        self.rows = component_rows(explanation, levels) if has else []
        b_index = better_level_index(explanation)
        known = b_index is not None and any(r.better is not None for r in self.rows)
        self.table.setColumnHidden(5, not known)
        self.table.setColumnHidden(6, not known)
        if known:
            status = next((a.get("status") for a in explanation.get("levels_above") or []
                           if isinstance(a, dict) and a.get("index") == b_index), "")
            self.table.setHorizontalHeaderItem(5, QTableWidgetItem(f"Better level #{b_index} ({status})"))
        if has:
            self._fill_fields(explanation)
        self._fill_table()

    def _fill_fields(self, e: dict[str, Any]) -> None:
        m = e.get("matched_level") if isinstance(e.get("matched_level"), dict) else {}
        adv = m.get("advisory_ids")
        self.fields["matched level"].setText(
            f"#{m.get('index')} of the TCB Info (best first), {m.get('status')}, TCB date {m.get('tcb_date')}"
            + (f", level advisories {_text(adv)}" if adv else ""))
        self.fields["platform status"].setText(_text(e.get("platform_status")))
        policy = e.get("policy") if isinstance(e.get("policy"), dict) else {}  # a hand-edited report: no policy
        blocked = policy.get("blocked_advisories")
        ids = e.get("advisory_ids")
        self._show_advisories(ids if isinstance(ids, list) else [], blocked if isinstance(blocked, list) else [])
        module = e.get("tdx_module")
        if isinstance(module, dict):
            mrseam = module.get("mrseam")
            pins = policy.get("allowed_mrseams")
            pinned = "" if not isinstance(pins, list) or mrseam is None else \
                (", one the policy accepts" if mrseam in pins else ", NOT one the policy accepts")
            self.fields["TDX module"].setText(
                f"{module.get('identity')}: ISVSVN {module.get('isvsvn')} (level needs {module.get('level_isvsvn')})"
                f", {module.get('status')}" + (f"; MRSEAM {mrseam}{pinned}" if mrseam else ""))
        qe = e.get("qe")
        if isinstance(qe, dict):
            self.fields["QE"].setText(f"ISVSVN {qe.get('isv_svn')}, {qe.get('status')}, TCB date {qe.get('tcb_date')}")
        current = e.get("current_tcb")
        if isinstance(current, dict):
            self.fields["current TCB"].setText(f"{current.get('status')} (TCB date {current.get('tcb_date')})")
        above = [a for a in e.get("levels_above") or [] if isinstance(a, dict)]
        why = e.get("shortfall") or "; ".join(
            f"level #{a.get('index')} {a.get('status')}: {_text(a.get('short'))}" for a in above[:3])
        self.fields["why not better"].setText(why or "nothing: no better level exists")
        self.fields["notes"].setText(_text(e.get("notes")))
        number = e.get("tcb_evaluation_data_number")
        least = policy.get("min_tcb_evaluation_data_number")
        below = isinstance(number, int) and isinstance(least, int) and number < least
        self.fields["evaluation data"].setText(
            "" if number is None else f"TCB evaluation data number {number}"
            + ("" if least is None else f"; the policy requires at least {least}")
            + (": judged with older data, the TCB status check fails" if below else ""))

    def _show_advisories(self, ids: list[Any], blocked: list[Any]) -> None:
        """Intel's advisory ids, each a link to its page at Intel's security center (opened only on a click); those
        the policy blocks are marked."""
        label = self.fields["advisories"]
        if not ids:
            label.setTextFormat(Qt.TextFormat.PlainText)
            label.setText("none")
            return
        parts = []
        for value in ids:
            text = html.escape(str(value))
            if isinstance(value, str) and _ADVISORY.fullmatch(value):
                url = f"{INTEL_ADVISORY_URL}{value.lower()}.html"
                parts.append(f'<a href="{url}">{text}</a>')
            else:
                parts.append(text)
            if isinstance(value, str) and value.upper() in blocked:
                parts[-1] += " <b>(blocked by the policy: the TCB status check fails)</b>"
        label.setTextFormat(Qt.TextFormat.RichText)
        label.setOpenExternalLinks(True)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        label.setText(", ".join(parts))

    def _fill_table(self) -> None:
        self.table.setRowCount(len(self.rows))
        for r, row in enumerate(self.rows):
            cells = [row.label, row.name or "—", _text(row.quote), _text(row.level), row.result, _text(row.better),
                     row.better_result]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c in (2, 3, 5):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if c in (4, 6):
                    look = _LOOK[row.result if c == 4 else row.better_result]
                    item.setIcon(status_icon(look))
                    item.setForeground(QBrush(QColor(STATUS_COLORS[look])))
                    if row.result == NOT_COMPARED and row.group == "TDX":
                        item.setToolTip("judged through the TDX module identity (Intel's offset rule)")
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        self._filter_rows()

    def _filter_rows(self) -> None:
        only = self.short_only.isChecked()
        for r, row in enumerate(self.rows):
            self.table.setRowHidden(r, only and SHORT not in (row.result, row.better_result))
