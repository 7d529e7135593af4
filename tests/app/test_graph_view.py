"""The trust graph widget, offscreen: nodes and their status colours, selection by mouse and keyboard, zoom, fit,
tooltips, palettes, a screenshot and the paint budget."""

from __future__ import annotations

import time

import pytest
from dstack_inspector.gui.graph_layout import NODE_HEIGHT, NODE_WIDTH
from dstack_inspector.gui.graph_view import NEUTRAL, ColumnItem, TrustGraphView, status_color
from dstack_inspector.gui.vocabulary import STATUS_COLORS
from dstack_verifier.model import Check, DataObject, Relationship
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QImage, QPalette, QWheelEvent
from PySide6.QtWidgets import QApplication

from tests.support.trust_graph import checks_for, three_entities

# App: a failing RTMR3 payload; KMS: a warning TCB and an errored compose hash; Gateway: a skipped OS check.
CHECKS = [
    *checks_for("app", {"eventlog.rtmr3_payloads": "fail"}),
    *checks_for("kms", {"hardware.tcb_status": "warn", "source.compose_hash": "error"}),
    *checks_for("gateway", {"os.rtmr0": "skip"}),
]


def dark_palette() -> QPalette:
    palette = QPalette(QColor("#2d2d2d"))
    for role, color in ((QPalette.ColorRole.Base, "#1e1e1e"), (QPalette.ColorRole.Text, "#e8e8e8"),
                        (QPalette.ColorRole.PlaceholderText, "#a0a0a0"), (QPalette.ColorRole.Highlight, "#4a90d9")):
        palette.setColor(role, QColor(color))
    return palette


@pytest.fixture
def view(qtbot):
    widget = TrustGraphView()
    qtbot.addWidget(widget)
    widget.resize(1100, 720)
    widget.show()
    qtbot.waitExposed(widget)
    objects, relationships = three_entities()
    widget.set_graph(objects, relationships, CHECKS)
    return widget


def click_node(qtbot, view: TrustGraphView, node_id: str) -> None:
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.mapFromScene(view.nodes[node_id].pos()))


def press(qtbot, view: TrustGraphView, key: Qt.Key, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    qtbot.keyClick(view, key, modifier)


def send_wheel(view: TrustGraphView, delta: int, modifiers: Qt.KeyboardModifier) -> None:
    at = QPointF(view.viewport().rect().center())
    event = QWheelEvent(at, QPointF(view.viewport().mapToGlobal(at.toPoint())), QPoint(), QPoint(0, delta),
                        Qt.MouseButton.NoButton, modifiers, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view.viewport(), event)


def pixel_at(image: QImage, view: TrustGraphView, scene_point: QPointF) -> QColor:
    return image.pixelColor(view.mapFromScene(scene_point))


def test_nodes_edges_and_column_headers(view):
    assert len(view.nodes) == 30
    assert len(view.edges) == 3 * 10 + 2  # §2.4 edges per entity (quote → os merged), KMS → App and → Gateway
    titles = [item.title for item in view.scene().items() if isinstance(item, ColumnItem)]
    assert sorted(titles) == ["App", "Gateway", "KMS"]
    assert view.problems == []
    # Names lose the entity prefix the column header already shows; the tooltip keeps the full name.
    assert view.nodes["kms-cpu"].label == "TEE Hardware" and view.nodes["kms-main"].label == "KMS"


def test_nodes_take_the_worst_status_of_their_checks(view):
    statuses = {node_id: node.status for node_id, node in view.nodes.items()}
    assert statuses["app-event-logs-imr3"] == "fail"  # fail beats the passing replay
    assert statuses["app-event-logs-imr0"] == "pass"
    assert statuses["kms-quote"] == "warn" and statuses["kms-cpu"] == "warn"
    assert statuses["kms-code"] == "error"
    assert statuses["gateway-os"] == "skip"
    # Checks count only for their own entity: the App's failure leaves the KMS's RTMR3 log green.
    assert statuses["kms-event-logs-imr3"] == "pass"
    assert statuses["app-main"] == statuses["app-os-code"] == NEUTRAL
    assert view.nodes["app-event-logs-imr3"].counts["fail"] == 1 and view.nodes["app-event-logs-imr3"].counts[
        "pass"] == 1


def test_ranking_is_fail_error_warn_skip_pass(qtbot):
    widget = TrustGraphView()
    qtbot.addWidget(widget)
    statuses = ["pass", "skip", "warn", "error", "fail"]
    for worst_index, worst in enumerate(statuses):
        checks = [Check(id=f"c{i}", entity="app", phase="hardware", status=s, summary="s")
                  for i, s in enumerate(statuses[:worst_index + 1])]
        widget.set_graph([DataObject(id="app-x", name="X", entity="app", check_ids=[c.id for c in checks])], [],
                         checks)
        assert widget.nodes["app-x"].status == worst


def test_status_colours_are_painted_and_follow_the_palette(view):
    view.resetTransform()  # natural size: the disc's pixels are the icon's own
    for node_id, status in (("app-event-logs-imr3", "fail"), ("kms-code", "error"), ("app-quote", "pass")):
        view.ensureVisible(view.nodes[node_id], 0, 0)
        image = view.grab().toImage()
        x, y = view.nodes[node_id].pos().x(), view.nodes[node_id].pos().y()
        # The lower part of the status disc, clear of its glyph.
        disc = pixel_at(image, view, QPointF(x - NODE_WIDTH / 2 + 18.5, y - NODE_HEIGHT / 2 + 22.5))
        expected = QColor(STATUS_COLORS[status])
        assert max(abs(disc.red() - expected.red()), abs(disc.green() - expected.green()),
                   abs(disc.blue() - expected.blue())) <= 24, (node_id, disc.name(), expected.name())
    light = view.palette()
    assert status_color("fail", light) == QColor(STATUS_COLORS["fail"])
    # On a dark base the hues are lightened, and the neutral tone comes from the palette.
    dark = dark_palette()
    assert status_color("fail", dark).lightness() > QColor(STATUS_COLORS["fail"]).lightness()
    assert status_color(NEUTRAL, dark) == dark.color(QPalette.ColorRole.Light)
    view.setPalette(dark)
    image = view.grab().toImage()
    node = view.nodes["app-quote"]
    inside = pixel_at(image, view, node.pos() + QPointF(NODE_WIDTH / 2 - 12, 0))
    assert inside.lightness() < 60  # the node body follows the dark Base, not a hard-coded white


def test_clicking_a_node_selects_it_and_the_background_keeps_it(qtbot, view):
    with qtbot.waitSignal(view.node_selected, timeout=2000) as blocker:
        click_node(qtbot, view, "kms-quote")
    assert blocker.args == ["kms-quote"]
    assert view.selected_node() == "kms-quote" and view.nodes["kms-quote"].isSelected()
    # Ctrl+click moves the selection too: one node at a time, so "the selected node" is never ambiguous.
    for node_id in ("kms-cpu", "kms-quote"):
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier,
                         view.mapFromScene(view.nodes[node_id].pos()))
        assert [n.object_id for n in view.scene().selectedItems()] == [node_id]
    assert view.selected_node() == "kms-quote"
    # A drag between the columns pans and keeps the selection.
    view.zoom_by(2)
    view.centerOn(view.nodes["kms-quote"])
    bar = view.horizontalScrollBar()
    before = bar.value()
    gap = (view.layout_result.columns[0].right + view.layout_result.columns[1].left) / 2
    start = view.mapFromScene(QPointF(gap, view.nodes["kms-quote"].pos().y()))
    qtbot.mousePress(view.viewport(), Qt.MouseButton.LeftButton, pos=start)
    for step in range(1, 11):
        qtbot.mouseMove(view.viewport(), start + QPoint(8 * step, 0))
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=start + QPoint(80, 0))
    assert bar.value() < before
    assert view.selected_node() == "kms-quote"
    # A plain click there clears it.
    with qtbot.waitSignal(view.node_selected, timeout=2000) as blocker:
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=start)
    assert blocker.args == [""]
    with qtbot.waitSignal(view.activated, timeout=2000) as blocker:
        qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton,
                          pos=view.mapFromScene(view.nodes["app-os"].pos()))
    assert blocker.args == ["app-os"] and view.selected_node() == "app-os"


def test_keyboard_navigation(qtbot, view):
    view.setFocus()
    seen: list[str] = []
    view.node_selected.connect(seen.append)
    order = view.layout_result.order
    press(qtbot, view, Qt.Key.Key_Tab)
    press(qtbot, view, Qt.Key.Key_Tab)
    assert view.selected_node() == order[1]
    press(qtbot, view, Qt.Key.Key_Backtab)
    press(qtbot, view, Qt.Key.Key_Backtab)
    assert view.selected_node() == order[-1]  # Shift+Tab wraps round
    assert seen == [order[0], order[1], order[0], order[-1]]
    assert view.hasFocus()

    view.select_node("app-main")
    press(qtbot, view, Qt.Key.Key_Down)
    assert view.selected_node() == "app-quote"
    press(qtbot, view, Qt.Key.Key_Down)
    assert view.selected_node() == "app-cpu"  # the next row down, the left one first (reading order)
    press(qtbot, view, Qt.Key.Key_Right)
    assert view.selected_node() == "app-event-logs-imr0"  # its neighbour, not the next column
    press(qtbot, view, Qt.Key.Key_Down)
    assert view.selected_node() == "app-event-logs-imr2"
    press(qtbot, view, Qt.Key.Key_Up)
    press(qtbot, view, Qt.Key.Key_Up)
    press(qtbot, view, Qt.Key.Key_Up)
    assert view.selected_node() == "app-main"
    press(qtbot, view, Qt.Key.Key_Up)  # nothing above: stays
    assert view.selected_node() == "app-main"
    press(qtbot, view, Qt.Key.Key_Right)
    assert view.selected_node() == "kms-main"
    press(qtbot, view, Qt.Key.Key_Right)
    assert view.selected_node() == "gateway-main"
    press(qtbot, view, Qt.Key.Key_Left)
    assert view.selected_node() == "kms-main"

    with qtbot.waitSignal(view.activated, timeout=2000) as blocker:
        press(qtbot, view, Qt.Key.Key_Return)
    assert blocker.args == ["kms-main"]
    with qtbot.waitSignal(view.node_selected, timeout=2000) as blocker:
        press(qtbot, view, Qt.Key.Key_Escape)
    assert blocker.args == [""] and view.selected_node() == ""


def test_arrow_keys_scroll_when_nothing_is_selected(qtbot, view):
    view.setFocus()
    view.zoom_by(3)
    bar = view.horizontalScrollBar()
    bar.setValue(bar.minimum())
    press(qtbot, view, Qt.Key.Key_Right)
    assert bar.value() > bar.minimum()
    assert view.selected_node() == ""


def test_select_node_by_id(qtbot, view):
    with qtbot.waitSignal(view.node_selected, timeout=2000) as blocker:
        assert view.select_node("gateway-os-code")
    assert blocker.args == ["gateway-os-code"]
    assert not view.select_node("no-such-object")
    assert view.selected_node() == "gateway-os-code"
    # Selecting it again does not announce it again.
    with qtbot.assertNotEmitted(view.node_selected):
        view.select_node("gateway-os-code")


def test_zoom_with_keys_and_ctrl_wheel_then_fit(qtbot, view):
    view.setFocus()
    fitted = view.zoom_factor()
    press(qtbot, view, Qt.Key.Key_Plus)
    assert view.zoom_factor() == pytest.approx(fitted * 1.2)
    press(qtbot, view, Qt.Key.Key_Minus)
    press(qtbot, view, Qt.Key.Key_Minus)
    assert view.zoom_factor() == pytest.approx(fitted / 1.2)
    send_wheel(view, 240, Qt.KeyboardModifier.ControlModifier)
    assert view.zoom_factor() == pytest.approx(fitted * 1.2)
    send_wheel(view, -120, Qt.KeyboardModifier.NoModifier)  # a plain wheel scrolls, never zooms
    assert view.zoom_factor() == pytest.approx(fitted * 1.2)
    for _ in range(40):
        view.zoom_in()
    assert view.zoom_factor() == pytest.approx(4.0)  # bounded
    press(qtbot, view, Qt.Key.Key_F)
    assert view.zoom_factor() == pytest.approx(fitted)
    visible = view.mapToScene(view.viewport().rect()).boundingRect()
    assert visible.adjusted(-1, -1, 1, 1).contains(view.sceneRect())


def test_fit_never_enlarges_a_small_graph(qtbot):
    widget = TrustGraphView()
    qtbot.addWidget(widget)
    widget.resize(900, 600)
    widget.show()
    widget.set_graph([DataObject(id="app-main", name="App", entity="app")], [], [])
    assert widget.zoom_factor() == pytest.approx(1.0)


def test_tooltips(view):
    tip = view.nodes["kms-quote"].toolTip()
    assert tip.splitlines() == [
        "KMS Attestation Report", "id: kms-quote", "entity: KMS", "worst status: warn", "checks: 2 pass, 1 warn"]
    assert "worst status: no checks" in view.nodes["app-main"].toolTip()
    edge = next(e for e in view.edges if (e.edge.source, e.edge.target) == ("app-quote", "app-os"))
    assert edge.toolTip() == "app-quote → app-os\nmeasured_by: mrtd\nmeasured_by: rtmr0"


def test_replacing_and_emptying_the_graph(qtbot, view):
    view.select_node("app-quote")
    with qtbot.waitSignal(view.node_selected, timeout=2000) as blocker:
        view.set_graph([], [Relationship(source="app-a", target="app-b", kind="k")], [])
    assert blocker.args == [""]
    assert view.nodes == {} and view.edges == []
    assert view.problems == ["relationship app-a → app-b (k) dropped: unknown source 'app-a'; unknown target 'app-b'"]
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Tab)  # nothing to walk: no error
    assert view.selected_node() == ""
    assert not view.grab().isNull()


def test_screenshot(view, tmp_path):
    view.select_node("app-event-logs-imr3")
    light = tmp_path / "trust-graph-light.png"
    assert view.grab().save(str(light))
    view.setPalette(dark_palette())
    dark = tmp_path / "trust-graph-dark.png"
    assert view.grab().save(str(dark))
    for path in (light, dark):
        image = QImage(str(path))
        assert image.width() >= 1000 and image.height() >= 700


def test_sixty_nodes_lay_out_and_paint_well_under_100_ms(qtbot):
    widget = TrustGraphView()
    qtbot.addWidget(widget)
    widget.resize(1200, 800)
    widget.show()
    qtbot.waitExposed(widget)
    objects, relationships = three_entities()
    # Two instances' worth of objects: 60 nodes, 70 edges.
    objects += [o.model_copy(update={"id": f"{o.id}-2"}) for o in objects]
    relationships += [r.model_copy(update={"source": f"{r.source}-2", "target": f"{r.target}-2"})
                      for r in relationships]
    widget.set_graph(objects, relationships, CHECKS)
    widget.grab()  # warm the fonts and icons once
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        widget.set_graph(objects, relationships, CHECKS)
        widget.grab()
        best = min(best, time.perf_counter() - started)
    assert len(widget.nodes) == 60
    assert best < 0.1, f"{best * 1000:.0f} ms"


def test_a_selection_dims_what_it_does_not_concern(qtbot, view):
    from dstack_inspector.gui.graph_view import DIMMED

    assert all(n.opacity() == 1.0 for n in view.nodes.values())
    assert view.select_node("app-os")
    near = view.related("app-os")
    assert {"app-os", "app-quote", "app-os-code"} <= near and "kms-main" not in near
    assert all(view.nodes[i].opacity() == (1.0 if i in near else DIMMED) for i in view.nodes)
    assert all(e.opacity() == (1.0 if "app-os" in (e.edge.source, e.edge.target) else DIMMED) for e in view.edges)
    view.clear_selection()
    assert all(n.opacity() == 1.0 for n in view.nodes.values()) and all(e.opacity() == 1.0 for e in view.edges)
