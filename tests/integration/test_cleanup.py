"""Stale cleanup: a plan lists exactly what is stale and changes nothing; apply removes it."""

from __future__ import annotations

import pytest
from google.cloud import datastore

from mapper.cleanup import apply, plan_missing, plan_stale_kinds, plan_stale_properties
from mapper.errors import ConfigurationError, DumpFormatError
from mapper.export import ExportSpec, start_export
from mapper.orphans import OrphanSpec, apply_orphans, plan_orphans
from mapper.query import shard_query

MODELS = ["tests.cleanup_models"]


def snapshot(runtime, namespace, *kinds):
    """Every entity of ``kinds``, raw and serialized, by key: content and counts at once."""
    state = {}
    for kind in kinds:
        batch = runtime.store.run_query(shard_query(kind, [], None, None, None, 1000), namespace)
        for r in batch.entity_results:
            state[r.entity.key.SerializeToString()] = r.entity.SerializeToString()
    return state


def put(client: datastore.Client, kind: str, n: int, parent=None, **props) -> list:
    entities = []
    for i in range(n):
        entity = datastore.Entity(client.key(kind, parent=parent) if parent else client.key(kind))
        entity.update({k: (v(i) if callable(v) else v) for k, v in props.items()})
        entities.append(entity)
    client.put_multi(entities)
    return [e.key for e in entities]


KINDS = ("Person", "Order", "Note", "Line", "Bag", "OldThing", "Legacy")


def test_stale_kinds_plan_lists_them_and_apply_removes_only_them(
    runtime, namespace, datastore_client, needs_metadata
):
    put(datastore_client, "Person", 5, name="p")
    put(datastore_client, "OldThing", 7, x=1)
    put(datastore_client, "Legacy", 3, y="z")
    runtime.store.write([], [])  # nothing: the framework's own kinds live here too
    before = snapshot(runtime, namespace, *KINDS)

    plan = plan_stale_kinds(runtime, MODELS, namespace)
    assert plan.counts == {"Legacy": 3, "OldThing": 7}
    assert (
        len(plan.samples["OldThing"]) == 5 and "Nothing else will be deleted" in plan.render()[-1]
    )
    assert snapshot(runtime, namespace, *KINDS) == before  # a plan changes nothing

    assert apply(runtime, plan) == {"Legacy": 3, "OldThing": 7}
    after = snapshot(runtime, namespace, *KINDS)
    kept = snapshot(runtime, namespace, "Person")
    assert after == kept and len(kept) == 5
    assert {k: v for k, v in before.items() if k in kept} == kept  # untouched, byte for byte
    # _MapperJob and _MapperShard (from apply's own jobs) are never stale.
    assert plan_stale_kinds(runtime, MODELS, namespace).empty


def test_stale_properties_are_stripped_and_everything_else_kept(
    runtime, namespace, datastore_client
):
    put(datastore_client, "Order", 4, total=lambda i: i, legacy_code="X", old_flag=True)
    put(datastore_client, "Order", 3, total=5)
    put(datastore_client, "Bag", 2, anything="goes")
    put(datastore_client, "Person", 2, name="p", nickname="n")
    before = snapshot(runtime, namespace, "Order", "Bag", "Person")

    plan = plan_stale_properties(runtime, MODELS, namespace)
    assert plan.counts == {"Order.legacy_code": 4, "Order.old_flag": 4, "Person.nickname": 2}
    assert snapshot(runtime, namespace, "Order", "Bag", "Person") == before

    assert apply(runtime, plan) == {"Order": 4, "Person": 2}
    after = {
        r.entity.key.path[-1].id: r.entity
        for r in runtime.store.run_query(
            shard_query("Order", [], None, None, None, 100), namespace
        ).entity_results
    }
    assert all(set(e.properties) == {"total"} for e in after.values())
    assert sorted(e.properties["total"].integer_value for e in after.values()) == [
        0,
        1,
        2,
        3,
        5,
        5,
        5,
    ]
    assert snapshot(runtime, namespace, "Bag") == {
        k: v for k, v in before.items() if b"Bag" in k
    }  # Expando: untouched
    assert plan_stale_properties(runtime, MODELS, namespace).empty


def test_orphans_by_property_and_by_parent_plan_then_delete(runtime, namespace, datastore_client):
    people = put(datastore_client, "Person", 4, name="p")
    put(datastore_client, "Order", 6, person=lambda i: people[i % 4], total=1)
    notes = put(datastore_client, "Note", 1, parent=people[0], text="a")
    notes += put(datastore_client, "Note", 1, parent=people[1], text="b")
    datastore_client.delete_multi(people[:2])  # orders 0,1,4,5 and both notes are orphans
    before = snapshot(runtime, namespace, "Order", "Note")

    by_property = plan_orphans(runtime, OrphanSpec("Order", properties=["person"]), namespace)
    assert by_property.counts == {"Order": 4}
    by_parent = plan_orphans(runtime, OrphanSpec("Note", parents=True), namespace)
    assert by_parent.counts == {"Note": 2}
    assert snapshot(runtime, namespace, "Order", "Note") == before

    assert apply_orphans(runtime, by_property, "delete")["orphans"] == 4
    assert apply_orphans(runtime, by_parent, "delete")["orphans"] == 2
    orders = runtime.store.run_query(shard_query("Order", [], None, None, None, 100), namespace)
    assert sorted(
        r.entity.properties["person"].key_value.path[0].id for r in orders.entity_results
    ) == sorted(k.id for k in people[2:])
    assert snapshot(runtime, namespace, "Note") == {}
    again = plan_orphans(runtime, OrphanSpec("Order", properties=["person"]), namespace)
    assert again.empty and apply(runtime, again) == {}


def test_orphans_null_and_cascade(runtime, namespace, datastore_client):
    people = put(datastore_client, "Person", 2, name="p")
    orders = put(datastore_client, "Order", 2, person=lambda i: people[i], total=1)
    put(datastore_client, "Line", 3, order=orders[0])
    put(datastore_client, "Line", 2, order=orders[1])
    datastore_client.delete(people[0])
    plan = plan_orphans(
        runtime, OrphanSpec("Order", ["person"], cascade=[["Line", "order"]]), namespace
    )
    with pytest.raises(ConfigurationError, match="null cannot null a parent"):
        apply_orphans(
            runtime, plan_orphans(runtime, OrphanSpec("Note", parents=True), namespace), "null"
        )
    counters = apply_orphans(runtime, plan, "cascade")
    assert counters["orphans"] == 1 and counters["dependents"] == 3
    assert len(snapshot(runtime, namespace, "Line")) == 2
    assert len(snapshot(runtime, namespace, "Order")) == 1

    datastore_client.delete(people[1])
    nulled = plan_orphans(runtime, OrphanSpec("Order", ["person"]), namespace)
    apply_orphans(runtime, nulled, "null")
    (order,) = runtime.store.run_query(
        shard_query("Order", [], None, None, None, 10), namespace
    ).entity_results
    assert order.entity.properties["person"].WhichOneof("value_type") == "null_value"
    assert order.entity.properties["total"].integer_value == 1


def test_apply_touches_only_what_the_plan_recorded(runtime, namespace, datastore_client):
    people = put(datastore_client, "Person", 2, name="p")
    put(datastore_client, "Order", 2, person=lambda i: people[i], total=1)
    datastore_client.delete(people[0])
    plan = plan_orphans(runtime, OrphanSpec("Order", ["person"]), namespace)
    datastore_client.delete(people[1])  # a new orphan after the plan: not in it
    assert apply_orphans(runtime, plan, "delete")["orphans"] == 1
    assert len(snapshot(runtime, namespace, "Order")) == 1


def test_orphan_scan_of_20k_batches_lookups_and_resumes_after_a_crash(
    runtime, namespace, datastore_client, faults
):
    people = put(datastore_client, "Person", 100, name="p")
    for start in range(0, 20_000, 500):
        put(
            datastore_client, "Order", 500, person=lambda i, s=start: people[(s + i) % 100], total=1
        )
    datastore_client.delete_multi(people[:10])  # 2,000 orphans
    faults.crash_at("after_map", times=2, when=lambda info: info["batch"] == 3)
    plan = plan_orphans(runtime, OrphanSpec("Order", ["person"]), namespace, shards=4)
    assert plan.counts == {"Order": 2_000}
    assert faults.fired["after_map"] == 2
    from mapper.jobs import job_status

    scan = job_status(runtime, plan.target["scan_job"])
    # One Lookup per batch of 500 orders (100 distinct people), never one per entity.
    assert 40 <= scan["counters"]["lookups"] <= sum(s["batches"] for s in scan["shards"])
    assert faults.hits["rpc:Lookup"] < 1_000  # leases and checkpoints included


def test_missing_rows_after_a_sync_are_planned_and_deleted(
    runtime, namespace, datastore_client, tmp_path
):
    put(datastore_client, "Person", 30, name="synced", active=True)
    out = str(tmp_path / "sync")
    spec = ExportSpec(out=out, kinds=["Person"], namespaces=[namespace])
    assert start_export(runtime, spec).wait()["status"] == "succeeded"
    put(datastore_client, "Person", 4, name="gone from the source", active=True)
    put(datastore_client, "Person", 3, name="out of scope", active=False)
    from mapper.base import Mapper

    class Scope(Mapper):
        FILTERS = [("active", True)]

    plan = plan_missing(runtime, out, "Person", namespace, Scope().filter_pbs())
    assert plan.counts == {"Person": 4}
    apply(runtime, plan)
    names = sorted(
        r.entity.properties["name"].string_value
        for r in runtime.store.run_query(
            shard_query("Person", [], None, None, None, 100), namespace
        ).entity_results
    )
    assert names == ["out of scope"] * 3 + ["synced"] * 30
    assert plan_missing(runtime, out, "Person", namespace, Scope().filter_pbs()).empty
    (tmp_path / "sync" / "manifest.json").unlink()
    with pytest.raises(DumpFormatError, match="incomplete dump"):
        plan_missing(runtime, out, "Person", namespace)
