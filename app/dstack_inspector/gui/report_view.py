"""One report on screen: the trust graph above the drill-down tabs (object, checks, quote, event log, certificates,
TCB, report, inputs), with an entity selector for the per-entity panes. Selecting a node opens its object; opening a
check of another entity switches the per-entity panes to it."""

from __future__ import annotations

from typing import Any

from dstack_verifier.model import Check, Report
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSplitter, QTabWidget, QVBoxLayout, QWidget

from .cert_pane import CertificatePane, entity_quote
from .checks_pane import ChecksPane, DetailsPane
from .eventlog_pane import EventLogPane
from .graph_view import TrustGraphView
from .network_pane import NetworkPane
from .object_pane import ObjectPane
from .quote_pane import CHECK_FIELDS, InputsTable, QuotePane
from .tcb_pane import TcbPane
from .vocabulary import ENTITY_TITLES, FINDING_STATUSES, STATUS_RANK
from .widgets import KeyValueTree


class ReportView(QWidget):
    entityChanged = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.report: Report | None = None
        self.entity = "app"
        self.graph = TrustGraphView()
        self.object_pane = ObjectPane()
        self.checks_pane = ChecksPane()
        self.details_pane = DetailsPane()
        self.quote_pane = QuotePane()
        self.eventlog_pane = EventLogPane()
        self.cert_pane = CertificatePane()
        self.tcb_pane = TcbPane()
        self.report_tree = KeyValueTree()
        self.inputs_table = InputsTable()
        self.network_pane = NetworkPane()

        checks = QSplitter(Qt.Orientation.Horizontal)
        checks.addWidget(self.checks_pane)
        checks.addWidget(self.details_pane)
        checks.setChildrenCollapsible(False)
        self.checks_splitter = checks
        self.tabs = QTabWidget()
        self.tabs.addTab(self.object_pane, "Object")
        self.tabs.addTab(checks, "Checks")
        self.tabs.addTab(self.quote_pane, "Quote")
        self.tabs.addTab(self.eventlog_pane, "Event log")
        self.tabs.addTab(self.cert_pane, "Certificates")
        self.tabs.addTab(self.tcb_pane, "TCB")
        self.tabs.addTab(self.report_tree, "Report")
        self.tabs.addTab(self.inputs_table, "Inputs")
        self.tabs.addTab(self.network_pane, "Network")
        self.entity_combo = QComboBox()
        self.entity_combo.setToolTip("The entity the Quote, Event log, Certificates and TCB tabs show")
        self.entity_combo.currentIndexChanged.connect(self._on_entity_combo)
        corner = QWidget()
        row = QHBoxLayout(corner)
        row.setContentsMargins(0, 0, 4, 0)
        row.addWidget(QLabel("Entity:"))
        row.addWidget(self.entity_combo)
        self.tabs.setCornerWidget(corner, Qt.Corner.TopRightCorner)

        self.splitter = QSplitter(Qt.Orientation.Vertical)  # the graph's three columns want the full width
        self.splitter.addWidget(self.graph)
        self.splitter.addWidget(self.tabs)
        self.splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)

        self.graph.node_selected.connect(self.select_object)
        self.object_pane.checkActivated.connect(self.open_check)
        self.object_pane.objectActivated.connect(self.select_object)
        self.checks_pane.checkSelected.connect(self._show_check)
        self.checks_pane.groupSelected.connect(self.details_pane.show_group)
        self.details_pane.fieldLinkActivated.connect(self.reveal_field)

    # ---- what is shown ------------------------------------------------------------------------------------------
    def show_report(self, report: Report | None) -> None:
        self.report = report
        self.details_pane.clear()
        self.object_pane.clear()
        if report is None:
            self.checks_pane.clear()
            self.graph.set_graph([], [], [])
            self.entity_combo.blockSignals(True)
            self.entity_combo.clear()
            self.entity_combo.blockSignals(False)
            self._show_entity(None)
            self.report_tree.clear()
            self.inputs_table.set_inputs(None)
            self.network_pane.set_report(None)
            return
        self.checks_pane.set_checks(report.checks)
        self.graph.set_graph(report.data_objects, report.relationships, report.checks)
        entities = [e for e in ("app", "kms", "gateway") if e in report.entities]
        self.entity_combo.blockSignals(True)
        self.entity_combo.clear()
        for e in entities:
            self.entity_combo.addItem(ENTITY_TITLES.get(e, e), e)
        self.entity_combo.blockSignals(False)
        # The entity panes are filled once, for the entity of the object opened first; the check selected first is a
        # finding of that entity, so selecting it does not switch the panes again.
        target = self.default_object()
        obj = next((o for o in report.data_objects if o.id == target), None)
        entity = obj.entity if obj is not None else (entities[0] if entities else "app")
        self.set_entity(entity)
        sections: list[tuple[str, Any]] = [
            ("Verdict", report.verdict.value),
            ("Trust anchor", report.policy.get("trust_anchor", {})),
            ("Policy", {k: v for k, v in report.policy.items() if k != "trust_anchor"}),
            ("Timings (s)", {k: round(v, 4) for k, v in report.timings.items()}),
        ]
        sections += [(f"{ENTITY_TITLES.get(e, e)} PCK certificate", report.entities[e].get("pck") or {})
                     for e in entities]
        # An attestation blob's own facts: its format (V0/V1), stack, and a dstack-pod's report_data payload.
        sections += [(f"{ENTITY_TITLES.get(e, e)} attestation", report.entities[e]["attestation"])
                     for e in entities if isinstance(report.entities[e].get("attestation"), dict)]
        self.report_tree.set_data(sections, expand_depth=0)
        self.inputs_table.set_inputs(report)
        self.network_pane.set_report(report)
        mine = [c for c in report.checks if c.entity == entity] or report.checks
        first = next((c for c in mine if c.status in FINDING_STATUSES), None) or (mine[0] if mine else None)
        if first is not None:
            self.checks_pane.select_check(first.id, first.entity)
        self.select_object(target)

    def default_object(self) -> str:
        """The object to open first: the worst one (its checks' worst status), the app's quote when all pass."""
        report = self.report
        if report is None or not report.data_objects:
            return ""
        status = {(c.entity, c.id): c.status for c in report.checks}

        def rank(obj: Any) -> int:
            return max((STATUS_RANK.get(status.get((obj.entity, i), ""), 0) for i in obj.check_ids), default=0)

        worst = max(report.data_objects, key=rank)
        if rank(worst) >= STATUS_RANK["warn"]:
            return worst.id
        ids = [o.id for o in report.data_objects]
        return "app-quote" if "app-quote" in ids else ids[0]

    def set_entity(self, entity: str) -> None:
        index = self.entity_combo.findData(entity)
        if index >= 0 and index != self.entity_combo.currentIndex():
            self.entity_combo.setCurrentIndex(index)  # re-enters through _on_entity_combo
            return
        self._show_entity(entity if index >= 0 else None)

    def _on_entity_combo(self, index: int) -> None:
        entity = self.entity_combo.itemData(index)
        self._show_entity(entity if isinstance(entity, str) else None)

    def _show_entity(self, entity: str | None) -> None:
        report = self.report
        self.entity = entity or "app"
        if report is None or entity is None:
            self.quote_pane.clear()
            self.eventlog_pane.set_report(None, self.entity)
            self.cert_pane.set_report(None, self.entity)
            self.tcb_pane.set_report(None, self.entity)
            return
        part = report.entities.get(entity, {})
        raw = entity_quote(report, entity)
        if raw is not None and part.get("quote_layout"):
            self.quote_pane.set_quote(raw, part["quote_layout"], part.get("quote") or {})
        else:
            self.quote_pane.clear()
        self.eventlog_pane.set_report(report, entity)
        self.cert_pane.set_report(report, entity)
        self.tcb_pane.set_report(report, entity)
        self.entityChanged.emit(entity)

    # ---- navigation ---------------------------------------------------------------------------------------------
    def select_object(self, object_id: str) -> None:
        report = self.report
        obj = next((o for o in report.data_objects if o.id == object_id), None) if report else None
        if obj is None or report is None:
            self.object_pane.clear()
            return
        if self.graph.selected_node() != object_id:
            self.graph.select_node(object_id)
        self.object_pane.show_object(obj, report.checks, report.relationships,
                                     {o.id: o.name for o in report.data_objects})
        if obj.entity != self.entity:
            self.set_entity(obj.entity)

    def open_check(self, check_id: str) -> None:
        obj = self.object_pane.object
        entity = obj.entity if obj is not None else self.entity
        self.tabs.setCurrentWidget(self.checks_splitter)
        self.checks_pane.select_check(check_id, entity)

    def _show_check(self, check: Check) -> None:
        if check.entity != self.entity:
            self.set_entity(check.entity)
        name = CHECK_FIELDS.get(check.id)
        span = self.quote_pane.span_of(name) if name else None
        self.details_pane.show_check(check, span, event_links(check))

    def reveal_field(self, name: str) -> None:
        """A link of a check's evidence: a quote field, or the log events it concerns (`event_links`)."""
        kind, _, rest = name.partition(":")
        if kind in ("event", "register", "register-event"):
            numbers = [int(n) for n in rest.split(":")]
            self.tabs.setCurrentWidget(self.eventlog_pane)
            if kind == "register":
                self.eventlog_pane.show_register(numbers[0])
                return
            index = numbers[0] if kind == "event" else self.eventlog_pane.log_index(numbers[0], numbers[1])
            if index is not None:
                self.eventlog_pane.show_event(index)
            return
        self.tabs.setCurrentWidget(self.quote_pane)
        self.quote_pane.select_field(name)


def event_links(check: Check) -> list[tuple[str, str]]:
    """(href, text) of the log events a check concerns: the RTMR3 events whose digest or preimage disagrees, the
    registers that do not replay, the RTMR0-2 events that differ from the measurement (counted within their
    register), else the register the check is about."""
    d = check.details

    def listed(key: str) -> list[Any]:  # a report may come from anyone: what is not a list lists nothing
        value = d.get(key)
        return value if isinstance(value, list) else []

    if check.id == "eventlog.rtmr3_payloads":
        bad = [r for r in listed("events") if isinstance(r, dict) and isinstance(r.get("index"), int)
               and (r.get("digest_field_matches") is False or r.get("preimage_matches") is False)]
        return [(f"event:{r['index']}", f"event {r['index']} ({r.get('name') or 'unnamed'})") for r in bad[:3]] or \
            [("register:3", "the RTMR3 events")]
    if check.id == "eventlog.replay":
        return [(f"register:{m[-1]}", f"the RTMR{m[-1]} events") for m in listed("mismatches")
                if isinstance(m, str) and m in ("rtmr0", "rtmr1", "rtmr2", "rtmr3")]
    if check.id in ("os.rtmr0", "os.rtmr1", "os.rtmr2"):
        register = int(check.id[-1])
        differing = [r for r in listed("events") if isinstance(r, dict) and r.get("match") is False
                     and isinstance(r.get("index"), int)]
        return [(f"register-event:{register}:{r['index']}", f"RTMR{register} event {r['index']} ({r.get('what')})")
                for r in differing[:3]] or [(f"register:{register}", f"the RTMR{register} events")]
    return []
