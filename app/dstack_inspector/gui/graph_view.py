"""The trust graph: a report's DataObjects as nodes coloured by their checks, its relationships as arrows.

Positions come from ``graph_layout`` (deterministic); this module only draws and handles input. Text, fills and
selection take their colours from the view's palette at paint time, so a light or dark theme (or a switch between
them) needs nothing here; the status hues are lightened on a dark base so they keep their contrast.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from dstack_verifier.model import Check, DataObject, Relationship
from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetricsF,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPainterPathStroker,
    QPalette,
    QPen,
    QPolygonF,
    QResizeEvent,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsScene,
    QGraphicsSceneHoverEvent,
    QGraphicsSceneMouseEvent,
    QGraphicsView,
    QStyle,
    QStyleOptionGraphicsItem,
    QWidget,
)

from .graph_layout import (
    COLUMN_PADDING,
    HEADER_HEIGHT,
    NODE_HEIGHT,
    NODE_WIDTH,
    V_GAP,
    Column,
    GraphEdge,
    GraphLayout,
    layout_graph,
)
from .vocabulary import ENTITY_TITLES, STATUS_COLORS, count_statuses, describe_counts, status_icon, worst_status

ZOOM_STEP = 1.2
MIN_SCALE, MAX_SCALE = 0.1, 4.0
FIT_MAX_SCALE = 1.0  # a small graph is shown at its natural size, not blown up
SCENE_MARGIN = 24.0
ARROW_SIZE = 9.0
DIMMED = 0.3  # opacity of what a selection does not concern
DOT = 16.0
NEUTRAL = "none"  # the "status" of an object no check concerns

ARROW_KEYS = {
    Qt.Key.Key_Left: (-1.0, 0.0),
    Qt.Key.Key_Right: (1.0, 0.0),
    Qt.Key.Key_Up: (0.0, -1.0),
    Qt.Key.Key_Down: (0.0, 1.0),
}


def _palette(option: QStyleOptionGraphicsItem, widget: QWidget | None) -> QPalette:
    # The option carries the application palette; the viewport's follows the view's own (a theme set on it).
    return widget.palette() if widget is not None else option.palette


def _is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Base).lightnessF() < 0.5


def status_color(status: str, palette: QPalette) -> QColor:
    """The accent of a status; the neutral one is the palette's own mid tone."""
    if status not in STATUS_COLORS:
        return palette.color(QPalette.ColorRole.Mid if not _is_dark(palette) else QPalette.ColorRole.Light)
    color = QColor(STATUS_COLORS[status])
    return color.lighter(165) if _is_dark(palette) else color


def _mix(a: QColor, b: QColor, share_of_b: float) -> QColor:
    return QColor.fromRgbF(*(x * (1 - share_of_b) + y * share_of_b for x, y in
                             zip(a.getRgbF()[:3], b.getRgbF()[:3], strict=True)))


def _arrow_head(tip: QPointF, direction: QPointF) -> QPolygonF:
    base = tip - direction * ARROW_SIZE
    normal = QPointF(-direction.y(), direction.x()) * (ARROW_SIZE / 2)
    return QPolygonF([tip, base + normal, base - normal])


def _rounded_polyline(points: Sequence[QPointF], radius: float) -> QPainterPath:
    path = QPainterPath(points[0])
    for previous, corner, following in zip(points, points[1:], points[2:], strict=False):
        into, out_of = corner - previous, following - corner
        length_in, length_out = math.hypot(into.x(), into.y()), math.hypot(out_of.x(), out_of.y())
        r = min(radius, length_in / 2, length_out / 2)
        path.lineTo(corner - into * (r / length_in))
        path.quadTo(corner, corner + out_of * (r / length_out))
    path.lineTo(points[-1])
    return path


def edge_geometry(edge: GraphEdge, a: QPointF, b: QPointF) -> tuple[QPainterPath, QPolygonF]:
    """The line and arrow head from centre ``a`` to centre ``b``.

    Down one row: a curve from bottom to top. Skipping rows: down the edge's lane at the column side, so it never
    crosses the nodes in between, into the target's side. Across a row or between columns: side to side.
    """
    half_w, half_h = NODE_WIDTH / 2, NODE_HEIGHT / 2
    if edge.lane is not None:
        side = -1.0 if edge.lane < b.x() else 1.0
        tip, direction = QPointF(b.x() + side * half_w, b.y()), QPointF(-side, 0)
        turn = a.y() + half_h + V_GAP / 2
        corners = [QPointF(a.x(), a.y() + half_h), QPointF(a.x(), turn), QPointF(edge.lane, turn),
                   QPointF(edge.lane, b.y()), tip - direction * ARROW_SIZE]
        return _rounded_polyline(corners, 10.0), _arrow_head(tip, direction)
    if b.y() - a.y() >= NODE_HEIGHT:
        start, tip, direction = QPointF(a.x(), a.y() + half_h), QPointF(b.x(), b.y() - half_h), QPointF(0, 1)
    elif a.y() - b.y() >= NODE_HEIGHT:
        start, tip, direction = QPointF(a.x(), a.y() - half_h), QPointF(b.x(), b.y() + half_h), QPointF(0, -1)
    else:
        sign = 1.0 if b.x() >= a.x() else -1.0
        start, tip = QPointF(a.x() + sign * half_w, a.y()), QPointF(b.x() - sign * half_w, b.y())
        direction = QPointF(sign, 0)
    span = tip - start
    reach = max(abs(span.x() * direction.x()) + abs(span.y() * direction.y()), 20.0) / 2
    base = tip - direction * ARROW_SIZE
    path = QPainterPath(start)
    path.cubicTo(start + direction * reach, base - direction * reach, base)
    return path, _arrow_head(tip, direction)


class NodeItem(QGraphicsItem):
    """One DataObject: a rounded box with its name, its checks' worst status (disc and border) and their counts."""

    def __init__(self, obj: DataObject, checks: Sequence[Check]) -> None:
        super().__init__()
        self.object_id = obj.id
        self.name = obj.name or obj.id
        self.entity = obj.entity
        # The column header already names the entity: "KMS TEE Hardware" shows as "TEE Hardware".
        prefix = ENTITY_TITLES.get(obj.entity, obj.entity).lower() + " "
        self.label = self.name[len(prefix):] if self.name.lower().startswith(prefix) else self.name
        self.counts = count_statuses(checks)
        self.status = worst_status(c.status for c in checks) if checks else NEUTRAL
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable)
        self.setAcceptHoverEvents(True)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setZValue(2)
        status_text = "no checks" if self.status == NEUTRAL else self.status
        self.setToolTip(f"{self.name}\nid: {obj.id}\nentity: {ENTITY_TITLES.get(obj.entity, obj.entity)}\n"
                        f"worst status: {status_text}\nchecks: {describe_counts(self.counts)}")

    def boundingRect(self) -> QRectF:
        # Room for the selection halo around the box.
        return QRectF(-NODE_WIDTH / 2 - 4, -NODE_HEIGHT / 2 - 4, NODE_WIDTH + 8, NODE_HEIGHT + 8)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        palette = _palette(option, widget)
        accent = status_color(self.status, palette)
        box = QRectF(-NODE_WIDTH / 2, -NODE_HEIGHT / 2, NODE_WIDTH, NODE_HEIGHT)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        fill = palette.color(QPalette.ColorRole.Base)
        if option.state & QStyle.StateFlag.State_MouseOver:
            fill = _mix(fill, accent, 0.12)
        if self.isSelected():
            painter.setPen(QPen(palette.color(QPalette.ColorRole.Highlight), 3))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(box.adjusted(-2.5, -2.5, 2.5, 2.5), 10, 10)
        painter.setPen(QPen(accent, 1.6))
        painter.setBrush(fill)
        painter.drawRoundedRect(box, 8, 8)

        dot = QRectF(box.left() + 10, box.top() + 9, DOT, DOT)
        if self.status == NEUTRAL:
            painter.setPen(QPen(accent, 1.6))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawEllipse(dot.adjusted(1, 1, -1, -1))
        else:
            # The icon's 2x rendering, scaled smoothly: crisp up to twice the natural zoom.
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawPixmap(dot, status_icon(self.status).pixmap(QSize(int(2 * DOT), int(2 * DOT))),
                               QRectF(0, 0, 2 * DOT, 2 * DOT))

        text_left = dot.right() + 8
        text_width = box.right() - 10 - text_left
        title_font = QFont(painter.font())
        title_font.setBold(True)
        painter.setFont(title_font)
        painter.setPen(palette.color(QPalette.ColorRole.Text))
        title = QFontMetricsF(title_font).elidedText(self.label, Qt.TextElideMode.ElideRight, text_width)
        painter.drawText(QRectF(text_left, box.top() + 6, text_width, 20),
                         Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, title)
        small = QFont(painter.font())
        small.setBold(False)
        small.setPointSizeF(small.pointSizeF() * 0.85)
        painter.setFont(small)
        painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
        counts = QFontMetricsF(small).elidedText(describe_counts(self.counts), Qt.TextElideMode.ElideRight,
                                                 box.right() - 10 - (box.left() + 10))
        painter.drawText(QRectF(box.left() + 10, box.bottom() - 22, box.width() - 20, 18),
                         Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, counts)


class EdgeItem(QGraphicsItem):
    """An arrow from the object that vouches to the one it vouches for; highlighted with either end selected."""

    def __init__(self, edge: GraphEdge, source: NodeItem, target: NodeItem) -> None:
        super().__init__()
        self.edge = edge
        self.source_node, self.target_node = source, target
        self.hovered = False
        self.setAcceptHoverEvents(True)
        self.setZValue(1)
        self.path, self.head = edge_geometry(edge, source.pos(), target.pos())
        stroker = QPainterPathStroker()
        stroker.setWidth(10)  # a thin line is hard to hover
        self._shape = stroker.createStroke(self.path)
        self._shape.addPolygon(self.head)
        lines = [f"{r.kind}: {r.field}" if r.field else r.kind for r in edge.relationships]
        self.setToolTip(f"{edge.source} → {edge.target}\n" + "\n".join(lines))

    def boundingRect(self) -> QRectF:
        return self._shape.boundingRect().adjusted(-2, -2, 2, 2)

    def shape(self) -> QPainterPath:
        return self._shape

    def hoverEnterEvent(self, event: QGraphicsSceneHoverEvent) -> None:
        self.hovered = True
        self.update()

    def hoverLeaveEvent(self, event: QGraphicsSceneHoverEvent) -> None:
        self.hovered = False
        self.update()

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        palette = _palette(option, widget)
        lit = self.hovered or self.source_node.isSelected() or self.target_node.isSelected()
        color = QColor(palette.color(QPalette.ColorRole.Highlight if lit else QPalette.ColorRole.Text))
        if not lit:
            color.setAlphaF(0.45)
        pen = QPen(color, 2.2 if lit else 1.4)
        if self.edge.cross_entity:
            pen.setStyle(Qt.PenStyle.DashLine)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(self.path)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(color)
        painter.drawPolygon(self.head)


class ColumnItem(QGraphicsItem):
    """The band behind one entity's objects, with the entity's name on top."""

    def __init__(self, column: Column, height: float) -> None:
        super().__init__()
        self.title = ENTITY_TITLES.get(column.entity, column.entity)
        self.rect = QRectF(column.left, 0, column.right - column.left, height + COLUMN_PADDING)
        self.setZValue(0)

    def boundingRect(self) -> QRectF:
        return self.rect

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        palette = _palette(option, widget)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        band = _mix(palette.color(QPalette.ColorRole.Base), palette.color(QPalette.ColorRole.Text), 0.04)
        painter.setPen(QPen(_mix(band, palette.color(QPalette.ColorRole.Text), 0.12), 1))
        painter.setBrush(band)
        painter.drawRoundedRect(self.rect, 12, 12)
        font = QFont(painter.font())
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.25)
        painter.setFont(font)
        painter.setPen(palette.color(QPalette.ColorRole.Text))
        painter.drawText(QRectF(self.rect.left(), 0, self.rect.width(), HEADER_HEIGHT - 6),
                         Qt.AlignmentFlag.AlignCenter, self.title)


class _Scene(QGraphicsScene):
    def mousePressEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        # A press beside the nodes is left to the view: a drag pans (ScrollHandDrag) and keeps the selection, so
        # panning never closes the details the reviewer is reading; a plain click there clears it (Qt's rule).
        if not isinstance(self.itemAt(event.scenePos(), QTransform()), NodeItem):
            event.ignore()
            return
        event.setModifiers(Qt.KeyboardModifier.NoModifier)  # one node at a time: Ctrl+click never adds
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        event.setModifiers(Qt.KeyboardModifier.NoModifier)  # nor toggles (Qt toggles on a Ctrl release)
        super().mouseReleaseEvent(event)


class TrustGraphView(QGraphicsView):
    """The DataObjects of a report with their relationships.

    Mouse: click selects, double-click activates, drag pans, Ctrl+wheel zooms. Keys: Tab / Shift+Tab walk the
    nodes in reading order, arrows move to the nearest node that way (or scroll when nothing is selected),
    Enter activates, + / - zoom, F fits, Esc clears the selection, Ctrl+Tab leaves the graph.
    """

    node_selected = Signal(str)  # the selected object's id; "" when the selection is cleared
    activated = Signal(str)  # Enter or double-click on a node: open its details

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._scene = _Scene(self)
        self.setScene(self._scene)
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAccessibleName("Trust graph")
        self.nodes: dict[str, NodeItem] = {}
        self.edges: list[EdgeItem] = []
        self.layout_result: GraphLayout = layout_graph([], [])
        self._current = ""
        self._auto_fit = True  # refit on resize until the reviewer zooms
        self._scene.selectionChanged.connect(self._selection_changed)

    # -- content -------------------------------------------------------------------------------------------------

    def set_graph(self, objects: Iterable[DataObject], relationships: Iterable[Relationship],
                  checks: Iterable[Check]) -> None:
        """Replace the graph; an object's checks are those of its entity whose id it lists in ``check_ids``."""
        by_key: dict[tuple[str, str], list[Check]] = {}
        for check in checks:
            by_key.setdefault((check.entity, check.id), []).append(check)
        self._scene.blockSignals(True)
        self._scene.clear()
        self._scene.blockSignals(False)
        self.nodes, self.edges = {}, []
        self.layout_result = layout_graph(objects, relationships)
        for column in self.layout_result.columns:
            self._scene.addItem(ColumnItem(column, self.layout_result.height))
        for object_id, obj in self.layout_result.objects.items():
            checks_of = [c for cid in dict.fromkeys(obj.check_ids) for c in by_key.get((obj.entity, cid), [])]
            node = NodeItem(obj, checks_of)
            node.setPos(*self.layout_result.positions[object_id])
            self._scene.addItem(node)
            self.nodes[object_id] = node
        for edge in self.layout_result.edges:
            item = EdgeItem(edge, self.nodes[edge.source], self.nodes[edge.target])
            self._scene.addItem(item)
            self.edges.append(item)
        bounds = self._scene.itemsBoundingRect()
        self._scene.setSceneRect(bounds.adjusted(-SCENE_MARGIN, -SCENE_MARGIN, SCENE_MARGIN, SCENE_MARGIN))
        had_selection = bool(self._current)
        self._current = ""
        if had_selection:
            self.node_selected.emit("")
        self._auto_fit = True
        self.fit()

    @property
    def problems(self) -> list[str]:
        """What could not be drawn (relationships to unknown ids, duplicate ids), one line each."""
        return self.layout_result.problems

    # -- selection -----------------------------------------------------------------------------------------------

    def selected_node(self) -> str:
        return self._current

    def select_node(self, object_id: str) -> bool:
        """Select a node (and bring it into view); False when no node has this id."""
        node = self.nodes.get(object_id)
        if node is None:
            return False
        self._scene.blockSignals(True)
        self._scene.clearSelection()
        self._scene.blockSignals(False)
        node.setSelected(True)
        self.ensureVisible(node, 40, 40)
        return True

    def clear_selection(self) -> None:
        self._scene.clearSelection()

    def _selection_changed(self) -> None:
        selected = [item for item in self._scene.selectedItems() if isinstance(item, NodeItem)]
        current = selected[0].object_id if selected else ""
        self._dim_unrelated(current)
        self._scene.update()  # edges at the selected node change colour
        if current != self._current:
            self._current = current
            self.node_selected.emit(current)

    def related(self, object_id: str) -> set[str]:
        """The object and those joined to it by an edge (either way)."""
        return {object_id} | {e.edge.target if e.edge.source == object_id else e.edge.source for e in self.edges
                              if object_id in (e.edge.source, e.edge.target)}

    def _dim_unrelated(self, current: str) -> None:
        """With a node selected, what is not joined to it fades, so its neighbourhood stands out (the Trust Center's
        graph dims the rest to 30 %); nothing selected, everything is drawn in full."""
        keep = self.related(current) if current else set(self.nodes)
        for object_id, node in self.nodes.items():
            node.setOpacity(1.0 if object_id in keep else DIMMED)
        for edge in self.edges:
            touches = not current or current in (edge.edge.source, edge.edge.target)
            edge.setOpacity(1.0 if touches else DIMMED)

    def _step(self, delta: int) -> None:
        order = self.layout_result.order
        if self._current in order:
            self.select_node(order[(order.index(self._current) + delta) % len(order)])
        else:
            self.select_node(order[0] if delta > 0 else order[-1])

    def nearest_node(self, object_id: str, direction: tuple[float, float]) -> str | None:
        """The next node that way: first among those facing this one (overlapping it across the move), the nearest;
        else the nearest with sideways distance counting double. Ties go to reading order."""
        origin = self.layout_result.positions[object_id]
        facing_within = NODE_HEIGHT if direction[1] == 0 else NODE_WIDTH
        best: tuple[int, float, float, int, str] | None = None
        for rank, other in enumerate(self.layout_result.order):
            x, y = self.layout_result.positions[other]
            dx, dy = x - origin[0], y - origin[1]
            along = dx * direction[0] + dy * direction[1]
            sideways = abs(dx * direction[1] - dy * direction[0])
            if along <= 1.0:
                continue
            key = (0, along, sideways, rank, other) if sideways < facing_within else (
                1, along + 2 * sideways, 0.0, rank, other)
            best = min(best, key) if best else key
        return best[-1] if best else None

    # -- zoom ----------------------------------------------------------------------------------------------------

    def zoom_factor(self) -> float:
        return self.transform().m11()

    def zoom_by(self, factor: float) -> None:
        target = min(max(self.zoom_factor() * factor, MIN_SCALE), MAX_SCALE)
        self._auto_fit = False
        self.scale(target / self.zoom_factor(), target / self.zoom_factor())

    def zoom_in(self) -> None:
        self.zoom_by(ZOOM_STEP)

    def zoom_out(self) -> None:
        self.zoom_by(1 / ZOOM_STEP)

    def fit(self) -> None:
        """Show the whole graph, never larger than its natural size."""
        self.resetTransform()
        rect = self._scene.sceneRect()
        if rect.isEmpty():
            return
        self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        if self.zoom_factor() > FIT_MAX_SCALE:
            self.setTransform(QTransform.fromScale(FIT_MAX_SCALE, FIT_MAX_SCALE))
        self.centerOn(rect.center())
        self._auto_fit = True

    # -- input ---------------------------------------------------------------------------------------------------

    def event(self, event: QEvent) -> bool:
        # Tab walks the nodes; Qt would otherwise take it for focus changes before keyPressEvent sees it.
        if event.type() == QEvent.Type.KeyPress and self.nodes:
            key_event: QKeyEvent = event  # type: ignore[assignment]
            if (key_event.key() in (Qt.Key.Key_Tab, Qt.Key.Key_Backtab)
                    and not key_event.modifiers() & Qt.KeyboardModifier.ControlModifier):
                backwards = (key_event.key() == Qt.Key.Key_Backtab
                             or bool(key_event.modifiers() & Qt.KeyboardModifier.ShiftModifier))
                self._step(-1 if backwards else 1)
                return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key, text = event.key(), event.text()
        if key in (Qt.Key.Key_Tab, Qt.Key.Key_Backtab):  # Ctrl+Tab: leave the graph
            self.focusNextPrevChild(key == Qt.Key.Key_Tab and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        elif text in ("+", "="):
            self.zoom_in()
        elif text == "-":
            self.zoom_out()
        elif key == Qt.Key.Key_F:
            self.fit()
        elif key == Qt.Key.Key_Escape and self._current:
            self.clear_selection()
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self._current:
            self.activated.emit(self._current)
        elif key in ARROW_KEYS and self._current:
            target = self.nearest_node(self._current, ARROW_KEYS[key])
            if target:
                self.select_node(target)
        else:
            super().keyPressEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            steps = event.angleDelta().y() / 120
            if steps:
                self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
                self.zoom_by(ZOOM_STEP ** steps)
                self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
            event.accept()
            return
        super().wheelEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        item = self.itemAt(event.position().toPoint())
        if isinstance(item, NodeItem):
            self.select_node(item.object_id)
            self.activated.emit(item.object_id)
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._auto_fit:
            self.fit()

    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        painter.fillRect(rect, QBrush(self.palette().color(QPalette.ColorRole.Base)))
        if not self.nodes:
            painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(self.mapToScene(self.viewport().rect()).boundingRect(), Qt.AlignmentFlag.AlignCenter,
                             "No data objects to show")
