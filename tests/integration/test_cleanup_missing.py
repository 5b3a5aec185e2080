"""Missing rows after a sync: deleted exactly when in scope and absent from a complete dump."""

from __future__ import annotations

import pytest
from google.cloud import datastore

from mapper.cleanup.missing import plan_missing
from mapper.cleanup.table import apply
from mapper.errors import CleanupError, DumpFormatError
from mapper.transfer.export import ExportSpec, start_export
from tests.support.cleanup_seed import kb, put, snapshot


def export(runtime, tmp_path, namespace, **options):
    out = str(tmp_path / "sync")
    spec = ExportSpec(out=out, kinds=["Person"], namespaces=[namespace], **options)
    assert start_export(runtime, spec).wait().status == "succeeded"
    return out


def seed_sync(runtime, client, tmp_path, namespace):
    """30 synced people in the dump; then 4 in scope and 3 out of scope that it lacks."""
    put(client, "Person", 30, name="synced", active=True)
    put(client, "Order", 2, total=1)
    out = export(runtime, tmp_path, namespace)
    gone = put(client, "Person", 4, name="gone from the source", active=True)
    put(client, "Person", 3, name="out of scope", active=False)
    return out, gone


def test_missing_plan_lists_exactly_the_rows_in_scope_the_dump_lacks(
    runtime, namespace, datastore_client, tmp_path
):
    out, gone = seed_sync(runtime, datastore_client, tmp_path, namespace)
    before = snapshot(runtime, namespace)

    plan = plan_missing(runtime, out, "Person", namespace, [("active", True)])

    assert plan.counts == {"Person": 4}
    assert sorted(plan.samples["Person"]) == sorted(
        f"Key('Person', {k.id}, namespace={namespace!r})" for k in gone
    )
    assert snapshot(runtime, namespace) == before
    unscoped = plan_missing(runtime, out, "Person", namespace)
    assert unscoped.counts == {"Person": 7}


def test_missing_apply_deletes_exactly_them_and_a_second_apply_is_a_no_op(
    runtime, namespace, datastore_client, tmp_path
):
    out, gone = seed_sync(runtime, datastore_client, tmp_path, namespace)
    before = snapshot(runtime, namespace)
    plan = plan_missing(runtime, out, "Person", namespace, [("active", True)])

    assert apply(runtime, plan) == {"Person": 4}

    after = snapshot(runtime, namespace)
    assert after == {k: v for k, v in before.items() if k in after}
    assert len(before) - len(after) == 4
    assert not any(kb(k) in after for k in gone)
    assert apply(runtime, plan) == {"Person": 0}
    assert snapshot(runtime, namespace) == after
    assert plan_missing(runtime, out, "Person", namespace, [("active", True)]).empty


def test_missing_refuses_an_incomplete_or_mismatched_dump_before_deleting(
    runtime, namespace, datastore_client, tmp_path
):
    out, _ = seed_sync(runtime, datastore_client, tmp_path, namespace)
    before = snapshot(runtime, namespace)
    with pytest.raises(CleanupError, match="holds no kind 'Order'"):
        plan_missing(runtime, out, "Order", namespace)
    with pytest.raises(CleanupError, match=f"not '{namespace}x'"):
        plan_missing(runtime, out, "Person", namespace + "x")
    (tmp_path / "sync" / "manifest.json").unlink()
    with pytest.raises(DumpFormatError, match="incomplete dump"):
        plan_missing(runtime, out, "Person", namespace)
    assert snapshot(runtime, namespace) == before


def test_missing_refuses_a_scope_wider_than_a_filtered_export(
    runtime, namespace, datastore_client, tmp_path
):
    put(datastore_client, "Person", 3, name="a", active=True)
    put(datastore_client, "Person", 2, name="b", active=False)
    out = export(runtime, tmp_path, namespace, filters=[("active", True)])
    with pytest.raises(CleanupError, match=r"exported with the filter \['active', True\]"):
        plan_missing(runtime, out, "Person", namespace)
    assert plan_missing(runtime, out, "Person", namespace, [("active", True)]).empty


def test_missing_compares_a_dump_of_another_namespace_key_for_key(
    runtime, namespace, datastore_client, tmp_path
):
    put(datastore_client, "Person", 5, name="source")
    out = export(runtime, tmp_path, namespace)
    target = datastore.Client(project=datastore_client.project, namespace=namespace + "t")
    copies = []
    for person in datastore_client.query(kind="Person").fetch():
        copy = datastore.Entity(target.key("Person", person.key.id))
        copy.update(person)
        copies.append(copy)
    target.put_multi(copies)
    extra = put(target, "Person", 2, name="not in the dump")

    plan = plan_missing(runtime, out, "Person", namespace + "t", dump_namespace=namespace)

    assert plan.counts == {"Person": 2}
    assert apply(runtime, plan) == {"Person": 2}
    assert sorted(p.key.id for p in target.query(kind="Person").fetch()) == sorted(
        c.key.id for c in copies
    )
    assert extra[0].id not in {c.key.id for c in copies}


def test_missing_in_many_namespaces_each_against_its_own_tenant_in_the_dump(
    runtime, tmp_path, namespace, cli
):
    tenants = [f"{namespace}-{i}" for i in range(3)]
    clients = {t: datastore.Client(project=runtime.settings.project, namespace=t) for t in tenants}
    for client in clients.values():
        put(client, "Person", 5, name="synced", active=True)
    out = str(tmp_path / "sync")
    spec = ExportSpec(out=out, kinds=["Person"], namespaces=tenants)
    assert start_export(runtime, spec).wait().status == "succeeded"
    gone = {t: put(clients[t], "Person", i, name="gone") for i, t in enumerate(tenants)}
    listed = tmp_path / "tenants.txt"
    listed.write_text("\n".join(tenants))
    args = ["cleanup", "missing", out, "--kind", "Person", "--namespaces-from", str(listed)]

    planned = cli(*args)
    assert planned.exit_code == 1 and "missing Person rows in 3 namespaces:" in planned.output
    plan = plan_missing(runtime, out, "Person", namespaces=tenants)
    assert plan.counts == {"Person": 3} and plan.namespaces == tenants
    assert sorted(plan.target["keys"]) == sorted(kb(k).hex() for t in tenants for k in gone[t])
    assert apply(runtime, plan) == {"Person": 3}
    assert all(len(snapshot(runtime, t, "Person")) == 5 for t in tenants)
    with pytest.raises(CleanupError, match="--dump-namespace moves one namespace"):
        plan_missing(runtime, out, "Person", namespaces=tenants, dump_namespace="x")
    # A namespace the dump does not hold is refused, before anything is deleted.
    with pytest.raises(CleanupError, match="is of namespaces"):
        plan_missing(runtime, out, "Person", namespaces=[*tenants, namespace + "-x"])
    shown = cli(*args)
    assert shown.exit_code == 0 and "nothing is stale in 3 namespaces" in shown.output
