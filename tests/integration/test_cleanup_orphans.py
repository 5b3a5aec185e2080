"""Orphans: found by a batched, sharded, resumable scan; apply acts on exactly those found."""

from __future__ import annotations

import itertools
import threading

import pytest

from mapper.cleanup.orphans import OrphanSpec, plan_orphans
from mapper.cleanup.table import apply
from mapper.engine.status import job_status
from mapper.errors import CleanupError
from tests.support.cleanup_seed import entity, kb, only, put, snapshot, without


def seed_orders(client):
    """4 people, 6 orders and a note under each of two people; then two people go."""
    people = put(client, "Person", 4, name="p")
    orders = put(client, "Order", 6, person=lambda i: people[i % 4], total=1)
    notes = put(client, "Note", 1, parent=people[0], text="a")
    notes += put(client, "Note", 1, parent=people[2], text="c")
    client.delete_multi(people[:2])  # orders 0, 1, 4, 5 and the first note are orphans
    return people, orders, notes


def test_orphans_plans_by_property_and_by_parent_list_exactly_them_and_change_nothing(
    runtime, namespace, datastore_client
):
    people, orders, notes = seed_orders(datastore_client)
    before = snapshot(runtime, namespace)

    by_property = plan_orphans(runtime, OrphanSpec("Order", properties=["person"]), namespace)
    by_parent = plan_orphans(runtime, OrphanSpec("Note", parents=True), namespace)

    assert by_property.counts == {"Order": 4}
    assert sorted(by_property.samples["Order"]) == sorted(
        f"Key('Order', {orders[i].id}, namespace={namespace!r})" for i in (0, 1, 4, 5)
    )
    assert by_parent.counts == {"Note": 1}
    assert by_parent.samples["Note"] == [
        f"Key('Person', {people[0].id}, 'Note', {notes[0].id}, namespace={namespace!r})"
    ]
    assert snapshot(runtime, namespace) == before


def test_orphans_delete_removes_exactly_them_and_a_second_apply_is_a_no_op(
    runtime, namespace, datastore_client
):
    people, orders, notes = seed_orders(datastore_client)
    before = snapshot(runtime, namespace)
    by_property = plan_orphans(runtime, OrphanSpec("Order", properties=["person"]), namespace)
    by_parent = plan_orphans(runtime, OrphanSpec("Note", parents=True), namespace)

    assert apply(runtime, by_property) == {"orphans": 4, "removed": 4}
    assert apply(runtime, by_parent) == {"orphans": 1, "removed": 1}

    gone = {k for k, v in before.items() if k not in snapshot(runtime, namespace)}
    assert len(gone) == 5
    assert snapshot(runtime, namespace) == {k: v for k, v in before.items() if k not in gone}
    assert {entity(before, orders[i]).key.path[0].id for i in (2, 3)} == {
        entity(snapshot(runtime, namespace), orders[i]).key.path[0].id for i in (2, 3)
    }
    assert apply(runtime, by_property) == {} and apply(runtime, by_parent) == {}
    assert plan_orphans(runtime, OrphanSpec("Order", properties=["person"]), namespace).empty


def test_orphans_null_sets_only_the_dangling_references_to_null(
    runtime, namespace, datastore_client
):
    people = put(datastore_client, "Person", 3, name="p")
    orders = put(datastore_client, "Order", 2, person=lambda i: people[i], total=1,
                 watchers=[people[0], people[2]])  # fmt: skip
    datastore_client.delete(people[0])
    before = snapshot(runtime, namespace)
    plan = plan_orphans(
        runtime, OrphanSpec("Order", ["person", "watchers"], action="null"), namespace
    )
    assert plan.counts == {"Order": 2}

    assert apply(runtime, plan) == {"orphans": 2, "nulled": 2}

    after = snapshot(runtime, namespace)
    first = entity(after, orders[0])
    assert first.properties["person"].WhichOneof("value_type") == "null_value"
    watchers = first.properties["watchers"].array_value.values
    assert [w.WhichOneof("value_type") for w in watchers] == ["null_value", "key_value"]
    assert entity(after, orders[1]).properties["person"].key_value.path[0].id == people[1].id
    assert without(after[kb(orders[0])], "person", "watchers") == without(
        before[kb(orders[0])], "person", "watchers"
    )
    assert only(after, "Person") == only(before, "Person")
    assert apply(runtime, plan) == {}


def test_orphans_cascade_deletes_declared_dependents_past_a_query_page(
    runtime, namespace, datastore_client
):
    people = put(datastore_client, "Person", 2, name="p")
    orders = put(datastore_client, "Order", 2, person=lambda i: people[i], total=1)
    put(datastore_client, "Line", 310, order=orders[0])  # more than one emulator page (300)
    kept_lines = put(datastore_client, "Line", 2, order=orders[1])
    put(datastore_client, "Note", 2, parent=orders[0], text="under the orphan")
    kept_notes = put(datastore_client, "Note", 1, parent=orders[1], text="kept")
    datastore_client.delete(people[0])
    before = snapshot(runtime, namespace)
    cascade = [["Line", "order"], ["Note", "__parent__"]]
    spec = OrphanSpec("Order", ["person"], cascade=cascade, action="cascade")
    plan = plan_orphans(runtime, spec, namespace)

    assert apply(runtime, plan) == {"orphans": 1, "removed": 1, "dependents": 312}

    after = snapshot(runtime, namespace)
    assert set(only(after, "Line")) == {kb(k) for k in kept_lines}
    assert set(only(after, "Note")) == {kb(k) for k in kept_notes}
    assert set(only(after, "Order")) == {kb(orders[1])}
    assert after == {k: v for k, v in before.items() if k in after}
    assert apply(runtime, plan) == {}


def test_orphans_refuse_an_impossible_action_before_scanning(runtime, namespace):
    with pytest.raises(CleanupError, match="null cannot null a parent"):
        plan_orphans(runtime, OrphanSpec("Note", parents=True, action="null"), namespace)
    with pytest.raises(CleanupError, match="needs --cascade KIND.PROP"):
        plan_orphans(runtime, OrphanSpec("Order", ["person"], action="cascade"), namespace)
    assert snapshot(runtime, namespace, "_MapperJob") == {}  # no scan job was started


def test_orphans_apply_acts_only_on_what_the_plan_recorded(runtime, namespace, datastore_client):
    people = put(datastore_client, "Person", 3, name="p")
    orders = put(datastore_client, "Order", 3, person=lambda i: people[i], total=1)
    datastore_client.delete_multi(people[:2])
    plan = plan_orphans(runtime, OrphanSpec("Order", ["person"]), namespace)
    datastore_client.put(_restored(datastore_client, people[1]))  # fixed since the plan
    datastore_client.delete(people[2])  # orphaned since the plan: not in it

    assert apply(runtime, plan) == {"orphans": 1, "removed": 1, "no_longer_orphans": 1}
    assert set(only(snapshot(runtime, namespace), "Order")) == {kb(k) for k in orders[1:]}


def _restored(client, key):
    from google.cloud import datastore

    person = datastore.Entity(key)
    person["name"] = "back"
    return person


def test_orphan_scan_of_20k_batches_its_lookups_and_resumes_after_a_crash(
    runtime, namespace, datastore_client, faults
):
    people = put(datastore_client, "Person", 3000, name="p")
    # Five references an order: a page of 300-500 orders refers to 1,000-1,700
    # distinct people, more than one Lookup may carry.
    refs = [[(i * step + step // 2) % 3000 for step in (1, 7, 13, 17, 29)] for i in range(20_000)]
    put(datastore_client, "Order", 20_000, total=1, person=lambda i: people[refs[i][0]],
        watchers=lambda i: [people[j] for j in refs[i][1:]])  # fmt: skip
    datastore_client.delete_multi(people[:100])
    expected = sum(1 for r in refs if min(r) < 100)
    sizes: list[int] = []
    lock = threading.Lock()
    real_lookup = runtime.store.lookup

    def counting_lookup(keys, transaction=None):
        if keys and keys[0].path[-1].kind == "Person":
            with lock:
                sizes.append(len(keys))
        return real_lookup(keys, transaction)

    runtime.store.lookup = counting_lookup  # a spy: every call still reaches the emulator
    # The 4th and 8th batches mapped, whichever slice maps them: a slice's own batch
    # count depends on how many batches fit its time box, which load changes.
    mapped = itertools.count()
    faults.crash_at("after_map", times=2, when=lambda info: next(mapped) in (3, 7))

    plan = plan_orphans(runtime, OrphanSpec("Order", ["person", "watchers"]), namespace)

    assert plan.counts == {"Order": expected}
    assert faults.fired["after_map"] == 2
    scan = job_status(runtime, plan.target["scan_job"])
    batches = sum(s.batches for s in scan.shards)
    lookups = scan.counters["lookups"]
    assert all(size <= 1000 for size in sizes) and max(sizes) == 1000
    # One or two Lookups a batch, never one per entity; the crashed batches
    # looked up again on resume, but the counters count each batch once.
    assert batches <= lookups <= 2 * batches < 200
    assert lookups < len(sizes) <= lookups + 4


def test_orphans_of_many_namespaces_are_one_scan_and_one_apply(
    runtime, namespace, emulator_env, cli, tmp_path
):
    from google.cloud import datastore

    tenants = [f"{namespace}-{i}" for i in range(3)]
    kept = {}
    for tenant in tenants:
        client = datastore.Client(project=runtime.settings.project, namespace=tenant)
        seed_orders(client)  # 4 orphaned orders each
        kept[tenant] = snapshot(runtime, tenant)
    listed = tmp_path / "tenants.txt"
    listed.write_text("\n".join(tenants))
    args = ["cleanup", "orphans", "--kind", "Order", "--property", "person",
            "--namespaces-from", str(listed)]  # fmt: skip

    planned = cli(*args)
    assert planned.exit_code == 1 and "orphaned Order in 3 namespaces:" in planned.output
    assert "- Order: 12" in planned.output
    applied = cli(*args, "--apply", "--yes")
    assert "applied: orphans=12, removed=12" in applied.output
    for tenant in tenants:
        after = snapshot(runtime, tenant, "Order")
        assert len(after) == 2 and set(after) < set(kept[tenant])
    assert cli(*args).exit_code == 0
