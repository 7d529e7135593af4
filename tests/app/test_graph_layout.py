"""Trust-graph layout: columns per entity, layering along the edges, determinism, no overlaps, bad edges."""

from __future__ import annotations

import itertools
import random

from dstack_inspector.gui.graph_layout import (
    COLUMN_PADDING,
    HEADER_HEIGHT,
    NODE_HEIGHT,
    NODE_WIDTH,
    GraphLayout,
    layout_graph,
)
from dstack_verifier.model import DataObject, Relationship

from tests.support.trust_graph import debug_data_graph, entity_objects, entity_relationships, three_entities


def snapshot(layout: GraphLayout) -> tuple:
    return (layout.positions, layout.order, layout.edges, layout.columns, layout.dropped, layout.problems)


def box(layout: GraphLayout, node: str) -> tuple[float, float, float, float]:
    x, y = layout.positions[node]
    return (x - NODE_WIDTH / 2, y - NODE_HEIGHT / 2, x + NODE_WIDTH / 2, y + NODE_HEIGHT / 2)


def test_one_column_per_entity_in_the_order_app_kms_gateway():
    objects, relationships = three_entities()
    layout = layout_graph(objects, relationships)
    assert [c.entity for c in layout.columns] == ["app", "kms", "gateway"]
    for left, right in itertools.pairwise(layout.columns):
        assert left.right < right.left
    for column in layout.columns:
        members = [o.id for o in objects if o.entity == column.entity]
        for node in members:
            x0, y0, x1, _ = box(layout, node)
            assert column.left + COLUMN_PADDING <= x0 and x1 <= column.right - COLUMN_PADDING
            assert y0 >= HEADER_HEIGHT  # the entity title sits above the first row
    # Tab walks the App column first, then the KMS, then the Gateway, each from its head down.
    assert layout.order[0] == "app-main" and layout.order[10] == "kms-main" and layout.order[20] == "gateway-main"
    assert sorted(layout.order) == sorted(o.id for o in objects)


def test_rows_follow_the_relationships_within_an_entity():
    layout = layout_graph(entity_objects("app"), entity_relationships("app"))
    rows = dict(layout.graph.nodes(data="row"))
    layers = dict(layout.graph.nodes(data="layer"))
    for rel in entity_relationships("app"):
        assert rows[rel.source] < rows[rel.target], rel
    assert layers["app-main"] == 0 and layers["app-quote"] == 1
    assert layers["app-cpu"] == layers["app-event-logs-imr0"] == layers["app-event-logs-imr3"] == 2
    # The OS rests on the quote and on RTMR3's os-image-hash event; its code on the OS.
    assert layers["app-os"] == layers["app-code"] == 3 and layers["app-os-code"] == 4
    # A wide layer wraps: ties in id order, two to a row, left to right.
    assert [n for n in layout.order if layers[n] == 2] == [
        "app-cpu", "app-event-logs-imr0", "app-event-logs-imr1", "app-event-logs-imr2", "app-event-logs-imr3"]
    assert layout.positions["app-cpu"][1] == layout.positions["app-event-logs-imr0"][1]
    assert layout.positions["app-cpu"][0] < layout.positions["app-event-logs-imr0"][0]


def test_positions_do_not_depend_on_the_input_order():
    objects, relationships = three_entities()
    reference = snapshot(layout_graph(objects, relationships))
    rng = random.Random(7)
    for _ in range(5):
        shuffled_objects, shuffled_relationships = objects[:], relationships[:]
        rng.shuffle(shuffled_objects)
        rng.shuffle(shuffled_relationships)
        assert snapshot(layout_graph(shuffled_objects, shuffled_relationships)) == reference


def test_no_two_nodes_overlap():
    objects, relationships = three_entities()
    layout = layout_graph(objects, relationships)
    for a, b in itertools.combinations(layout.positions, 2):
        ax0, ay0, ax1, ay1 = box(layout, a)
        bx0, by0, bx1, by1 = box(layout, b)
        assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, (a, b)


def test_every_relationship_becomes_an_edge_and_parallel_ones_share_it():
    objects, relationships = three_entities()
    layout = layout_graph(objects, relationships)
    drawn = {(e.source, e.target): e for e in layout.edges}
    assert {(r.source, r.target) for r in relationships} == set(drawn)
    assert [r.field for r in drawn["app-quote", "app-os"].relationships] == ["mrtd", "rtmr0"]
    assert drawn["kms-main", "app-main"].cross_entity and not drawn["app-quote", "app-os"].cross_entity
    assert layout.dropped == [] and layout.problems == []


def test_edges_that_skip_rows_run_down_a_lane_beside_the_nodes():
    layout = layout_graph(entity_objects("app"), entity_relationships("app"))
    column = layout.columns[0]
    rows = dict(layout.graph.nodes(data="row"))
    for edge in layout.edges:
        if rows[edge.target] - rows[edge.source] > 1:
            assert edge.lane is not None
            assert column.left < edge.lane < column.right
            # The lane is clear of every node box.
            assert all(not (box(layout, n)[0] <= edge.lane <= box(layout, n)[2]) for n in layout.positions)
        else:
            assert edge.lane is None


def test_empty_input():
    layout = layout_graph([], [])
    assert layout.positions == {} and layout.edges == [] and layout.columns == [] and layout.order == []
    assert layout.height == 0


def test_relationships_to_unknown_ids_are_dropped_and_reported():
    objects = entity_objects("gateway")
    relationships = [
        *entity_relationships("gateway"),
        # The Trust Center's broken id (trust-center.md §7): no object is called "kms".
        Relationship(source="kms", target="gateway-main", kind="measured_by", field="gateway_app_id"),
        Relationship(source="gateway-domain", target="nowhere", kind="measured_by"),
        Relationship(source="gateway-os", target="gateway-os", kind="measured_by"),
    ]
    layout = layout_graph(objects, relationships)
    assert {(r.source, r.target) for r in layout.dropped} == {
        ("kms", "gateway-main"), ("gateway-domain", "nowhere"), ("gateway-os", "gateway-os")}
    assert sorted(layout.problems) == sorted([
        "relationship gateway-domain → nowhere (measured_by) dropped: unknown source 'gateway-domain'; "
        "unknown target 'nowhere'",
        "relationship gateway-os → gateway-os (measured_by) dropped: an object cannot vouch for itself",
        "relationship kms → gateway-main (measured_by, gateway_app_id) dropped: unknown source 'kms'",
    ])
    assert len(layout.edges) == len({(r.source, r.target) for r in entity_relationships("gateway")})
    assert set(layout.positions) == {o.id for o in objects}


def test_duplicate_ids_keep_one_node_whatever_the_order():
    first = DataObject(id="app-quote", name="APP Attestation Report", entity="app")
    second = DataObject(id="app-quote", name="Another quote", entity="kms")
    for objects in ([first, second], [second, first]):
        layout = layout_graph(objects, [])
        assert list(layout.positions) == ["app-quote"]
        assert layout.graph.nodes["app-quote"]["entity"] == "app"
        assert layout.objects["app-quote"] is first  # the object drawn is the one kept
        assert layout.problems == ["duplicate object id 'app-quote': kept the app object"]


def test_a_cycle_shares_a_layer_instead_of_failing():
    objects = [DataObject(id=f"app-{n}", name=n, entity="app") for n in ("a", "b", "c")]
    relationships = [Relationship(source="app-a", target="app-b", kind="k"),
                     Relationship(source="app-b", target="app-a", kind="k"),
                     Relationship(source="app-b", target="app-c", kind="k")]
    layout = layout_graph(objects, relationships)
    layers = dict(layout.graph.nodes(data="layer"))
    assert layers == {"app-a": 0, "app-b": 0, "app-c": 1}
    assert len(layout.edges) == 3


def test_the_trust_center_debug_data():
    objects, relationships = debug_data_graph()
    layout = layout_graph(objects, relationships)
    assert len(layout.positions) == 29
    assert [c.entity for c in layout.columns] == ["app", "kms", "gateway"]
    assert [r.source for r in layout.dropped] == ["kms"]  # the broken gateway-main ← "kms" edge
    assert sum(len(e.relationships) for e in layout.edges) == len(relationships) - 1
    # Four registers of the quote measure the OS: one arrow carrying all four.
    quote_to_os = next(e for e in layout.edges if (e.source, e.target) == ("app-quote", "app-os"))
    assert [r.field for r in quote_to_os.relationships] == ["mrtd", "rtmr0", "rtmr1", "rtmr2"]
    rows = dict(layout.graph.nodes(data="row"))
    for entity in ("app", "kms", "gateway"):
        # Each entity's head is alone on its first row, its attestation report right under it.
        assert [n for n in layout.order if n.startswith(entity) and rows[n] == 0] == [f"{entity}-main"]
        assert rows[f"{entity}-quote"] == 1
        assert rows[f"{entity}-os-code"] > rows[f"{entity}-os"]
