"""Where each DataObject of a report sits in the trust graph (no widgets: the view draws what this computes).

One column band per entity, left to right App, KMS, Gateway: the KMS vouches for both others, so with it in the
middle every cross-entity edge joins two neighbouring columns and none runs through a third; the App, the subject
of the review, comes first where reading starts. Inside a column the objects are layered along the relationship
edges (a source above what it vouches for), a layer wider than ``MAX_PER_ROW`` wraps onto further rows, and ties
are broken by id. Everything is sorted before use, so positions never depend on the order of the input.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import networkx as nx
from dstack_verifier.model import DataObject, Relationship

ENTITY_ORDER = ("app", "kms", "gateway")
NODE_WIDTH = 200.0
NODE_HEIGHT = 50.0
H_GAP = 24.0  # between two nodes of a row
V_GAP = 46.0  # between rows: room for the arrows
COLUMN_GAP = 88.0
COLUMN_PADDING = 30.0  # between a column band's edge and its nodes: room for a lane
LANE_INSET = 14.0  # a lane runs this far inside its column band
HEADER_HEIGHT = 44.0  # the entity title above a column's first row
MAX_PER_ROW = 2  # wider layers wrap, so three full entities keep a landscape aspect a pane can show


@dataclass(frozen=True)
class GraphEdge:
    """One arrow: every relationship from ``source`` to ``target`` (e.g. the quote measures the OS four times)."""

    source: str
    target: str
    relationships: tuple[Relationship, ...]
    cross_entity: bool  # joins two columns (e.g. the KMS vouching for the App)
    # An edge that skips rows runs down a lane along the column's side (this x) instead of across the nodes.
    lane: float | None = None


@dataclass(frozen=True)
class Column:
    entity: str
    left: float
    right: float

    @property
    def center(self) -> float:
        return (self.left + self.right) / 2


@dataclass(frozen=True)
class GraphLayout:
    graph: nx.DiGraph  # nodes carry entity, layer and row; edges carry their relationships
    objects: dict[str, DataObject]  # the object drawn for each id (one per id, see duplicates in problems)
    positions: dict[str, tuple[float, float]]  # node centres, scene units
    edges: list[GraphEdge]  # drawable ones, sorted by (source, target)
    columns: list[Column]
    order: list[str]  # reading order (column, row, left to right): what Tab walks through
    dropped: list[Relationship]  # relationships that could not be drawn
    problems: list[str]  # one line per dropped relationship or duplicate object

    @property
    def height(self) -> float:
        rows = [row for _, row in self.graph.nodes(data="row")]
        return HEADER_HEIGHT + (max(rows) + 1) * (NODE_HEIGHT + V_GAP) - V_GAP if rows else 0.0


def _relationship_key(rel: Relationship) -> tuple[str, str, str, str]:
    return (rel.source, rel.target, rel.kind, rel.field)


def _describe(rel: Relationship) -> str:
    detail = f"{rel.kind}, {rel.field}" if rel.field else rel.kind
    return f"{rel.source} → {rel.target} ({detail})"


def _unique_objects(objects: Iterable[DataObject], problems: list[str]) -> list[DataObject]:
    # Sorting on more than the id keeps the choice among duplicates independent of the input order too.
    kept: dict[str, DataObject] = {}
    for obj in sorted(objects, key=lambda o: (o.id, o.entity, o.name)):
        if obj.id in kept:
            problems.append(f"duplicate object id {obj.id!r}: kept the {kept[obj.id].entity} object")
            continue
        kept[obj.id] = obj
    return list(kept.values())


def _add_edges(graph: nx.DiGraph, relationships: Iterable[Relationship], dropped: list[Relationship],
               problems: list[str]) -> None:
    for rel in sorted(set(map(_relationship_key, relationships))):
        relationship = Relationship(source=rel[0], target=rel[1], kind=rel[2], field=rel[3])
        missing = [f"unknown {end} {name!r}" for end, name in (("source", rel[0]), ("target", rel[1]))
                   if name not in graph]
        if rel[0] == rel[1]:
            missing.append("an object cannot vouch for itself")
        if missing:
            dropped.append(relationship)
            problems.append(f"relationship {_describe(relationship)} dropped: {'; '.join(missing)}")
            continue
        if graph.has_edge(rel[0], rel[1]):
            graph.edges[rel[0], rel[1]]["relationships"].append(relationship)
        else:
            graph.add_edge(rel[0], rel[1], relationships=[relationship])


def _layers(graph: nx.DiGraph, members: list[str]) -> dict[str, int]:
    """Longest-path layering over one entity's own edges; a cycle (bad data) shares one layer."""
    own = graph.subgraph(members)
    dag = nx.condensation(own)
    component_layer: dict[int, int] = {}
    for component in nx.topological_sort(dag):
        component_layer[component] = max((component_layer[p] + 1 for p in dag.predecessors(component)), default=0)
    mapping = dag.graph["mapping"]
    return {node: component_layer[mapping[node]] for node in members}


def _entity_rank(entity: str) -> tuple[int, str]:
    return (ENTITY_ORDER.index(entity) if entity in ENTITY_ORDER else len(ENTITY_ORDER), entity)


def _edge(graph: nx.DiGraph, positions: dict[str, tuple[float, float]], columns: dict[str, Column],
          source: str, target: str) -> GraphEdge:
    relationships = tuple(graph.edges[source, target]["relationships"])
    entity = graph.nodes[source]["entity"]
    if entity != graph.nodes[target]["entity"]:
        return GraphEdge(source, target, relationships, cross_entity=True)
    lane = None
    if graph.nodes[target]["row"] - graph.nodes[source]["row"] > 1:
        column = columns[entity]
        on_right = positions[target][0] > column.center
        lane = column.right - LANE_INSET if on_right else column.left + LANE_INSET
    return GraphEdge(source, target, relationships, cross_entity=False, lane=lane)


def layout_graph(objects: Iterable[DataObject], relationships: Iterable[Relationship]) -> GraphLayout:
    """The graph, every node's position and the edges to draw; relationships to unknown ids are dropped."""
    problems: list[str] = []
    dropped: list[Relationship] = []
    graph: nx.DiGraph = nx.DiGraph()
    kept = {obj.id: obj for obj in _unique_objects(objects, problems)}
    for obj in kept.values():
        graph.add_node(obj.id, entity=obj.entity)
    _add_edges(graph, relationships, dropped, problems)

    by_entity: dict[str, list[str]] = {}
    for node, entity in graph.nodes(data="entity"):
        by_entity.setdefault(entity, []).append(node)

    positions: dict[str, tuple[float, float]] = {}
    columns: list[Column] = []
    order: list[str] = []
    left = 0.0
    for entity in sorted(by_entity, key=_entity_rank):
        members = sorted(by_entity[entity])
        layers = _layers(graph, members)
        rows: list[list[str]] = []
        for layer in sorted(set(layers.values())):
            in_layer = [node for node in members if layers[node] == layer]
            rows.extend(in_layer[i:i + MAX_PER_ROW] for i in range(0, len(in_layer), MAX_PER_ROW))
        widest = max(len(row) for row in rows)
        width = widest * (NODE_WIDTH + H_GAP) - H_GAP + 2 * COLUMN_PADDING
        column = Column(entity, left, left + width)
        for index, row in enumerate(rows):
            y = HEADER_HEIGHT + index * (NODE_HEIGHT + V_GAP) + NODE_HEIGHT / 2
            row_width = len(row) * (NODE_WIDTH + H_GAP) - H_GAP
            for slot, node in enumerate(row):
                x = column.center - row_width / 2 + slot * (NODE_WIDTH + H_GAP) + NODE_WIDTH / 2
                positions[node] = (x, y)
                graph.nodes[node].update(layer=layers[node], row=index)
                order.append(node)
        columns.append(column)
        left = column.right + COLUMN_GAP

    edges = [_edge(graph, positions, {c.entity: c for c in columns}, source, target)
             for source, target in sorted(graph.edges)]
    return GraphLayout(graph, kept, positions, edges, columns, order, dropped, problems)
