"""Stale kinds and stale properties: the plan lists exactly them; apply removes exactly them."""

from __future__ import annotations

import datetime
import json

from mapper.cleanup.plan import Plan
from mapper.cleanup.stale import plan_stale_kinds, plan_stale_properties
from mapper.cleanup.table import apply
from tests.support.cleanup_seed import entity, only, put, snapshot, without

MODELS = ["tests.support.cleanup_models"]


def test_stale_kinds_plan_lists_exactly_them_and_changes_nothing(
    runtime, namespace, datastore_client, needs_metadata
):
    put(datastore_client, "Person", 5, name="p")
    put(datastore_client, "Order", 2, total=1)
    stale = put(datastore_client, "OldThing", 7, x=1)
    put(datastore_client, "Legacy", 3, y="z")
    before = snapshot(runtime, namespace)

    plan = plan_stale_kinds(runtime, MODELS, namespace)

    assert plan.counts == {"Legacy": 3, "OldThing": 7}
    assert plan.target == {"kinds": ["Legacy", "OldThing"]}
    assert len(plan.samples["OldThing"]) == 5 and len(plan.samples["Legacy"]) == 3
    assert plan.samples["OldThing"][0] == f"Key('OldThing', {min(k.id for k in stale)}, " + (
        f"namespace={namespace!r})"
    )
    assert plan.render()[-1] == "Nothing else will be deleted or changed."
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    assert snapshot(runtime, namespace) == before


def test_stale_kinds_apply_removes_only_them_and_a_second_apply_is_a_no_op(
    runtime, namespace, datastore_client, needs_metadata
):
    put(datastore_client, "Person", 5, name="p")
    put(datastore_client, "Bag", 2, anything="goes")
    put(datastore_client, "OldThing", 7, x=1)
    put(datastore_client, "Legacy", 3, y="z")
    before = snapshot(runtime, namespace)
    plan = plan_stale_kinds(runtime, MODELS, namespace)

    assert apply(runtime, plan) == {"Legacy": 3, "OldThing": 7}
    assert snapshot(runtime, namespace) == only(before, "Person", "Bag")
    assert apply(runtime, plan) == {"Legacy": 0, "OldThing": 0}
    assert snapshot(runtime, namespace) == only(before, "Person", "Bag")
    # apply's own _MapperJob and _MapperShard records are never stale.
    assert plan_stale_kinds(runtime, MODELS, namespace).empty


def test_stale_kinds_of_another_namespace_are_not_in_the_plan(
    runtime, namespace, datastore_client, needs_metadata
):
    from google.cloud import datastore

    other = datastore.Client(project=datastore_client.project, namespace=namespace + "x")
    put(other, "OldThing", 2, x=1)
    put(datastore_client, "Person", 1, name="p")
    assert plan_stale_kinds(runtime, MODELS, namespace).empty
    assert plan_stale_kinds(runtime, MODELS, namespace + "x").counts == {"OldThing": 2}


def seed_stale_properties(client):
    """Orders and people with stale properties (one of them unindexed), and current ones."""
    when = datetime.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC)
    stale = put(
        client, "Order", 4, unindexed=("old_note",),
        total=lambda i: i, person=client.key("Person", 99), legacy_code="X", old_note="long",
    )  # fmt: skip
    clean = put(client, "Order", 3, total=5)
    nick = put(client, "Person", 2, unindexed=("blob",), name="p", blob=b"\x00\xff",
               nickname="n", seen=when)  # fmt: skip
    put(client, "Bag", 2, anything="goes")
    return stale, clean, nick


def test_stale_properties_plan_lists_exactly_them_even_unindexed_ones(
    runtime, namespace, datastore_client
):
    stale, _, nick = seed_stale_properties(datastore_client)
    before = snapshot(runtime, namespace)

    plan = plan_stale_properties(runtime, MODELS, namespace)

    assert plan.counts == {
        "Order.legacy_code": 4,
        "Order.old_note": 4,
        "Person.nickname": 2,
        "Person.seen": 2,
    }
    assert plan.target == {
        "properties": {"Order": ["legacy_code", "old_note"], "Person": ["nickname", "seen"]}
    }
    assert len(plan.samples["Order.old_note"]) == 4
    assert snapshot(runtime, namespace) == before


def test_stale_properties_apply_strips_only_them_and_keeps_all_else_byte_for_byte(
    runtime, namespace, datastore_client
):
    stale, clean, nick = seed_stale_properties(datastore_client)
    before = snapshot(runtime, namespace)
    plan = plan_stale_properties(runtime, MODELS, namespace)

    assert apply(runtime, plan) == {"Order": 4, "Person": 2}

    after = snapshot(runtime, namespace)
    expected = dict(before)
    for key_bytes_, data in before.items():
        expected[key_bytes_] = without(data, "legacy_code", "old_note", "nickname", "seen")
    assert after == expected
    assert entity(after, nick[0]).properties["blob"].exclude_from_indexes
    assert set(entity(after, stale[0]).properties) == {"total", "person"}
    assert only(after, "Bag") == only(before, "Bag")  # Expando: every property is current
    assert apply(runtime, plan) == {"Order": 0, "Person": 0}
    assert snapshot(runtime, namespace) == after
    assert plan_stale_properties(runtime, MODELS, namespace).empty


def test_stale_properties_in_many_namespaces_are_one_plan_and_one_job_a_kind(
    runtime, namespace, emulator_env, cli, tmp_path
):
    from google.cloud import datastore

    tenants = [f"{namespace}-{i}" for i in range(4)]
    for i, tenant in enumerate(tenants):
        client = datastore.Client(project=runtime.settings.project, namespace=tenant)
        put(client, "Person", 3, name="p", **({"nickname": "n"} if i % 2 else {}))
        put(client, "Order", 2, total=1, legacy_code=f"c{i}")
    before = {t: snapshot(runtime, t) for t in tenants}
    listed = tmp_path / "tenants.txt"
    listed.write_text("\n".join(tenants))

    shown = cli("cleanup", "stale-properties", "--models", MODELS[0],
                "--namespaces-from", str(listed), "--json")  # fmt: skip
    plan = json.loads(shown.stdout)
    assert shown.exit_code == 1 and plan["namespaces"] == tenants
    assert plan["counts"] == {"Order.legacy_code": 8, "Person.nickname": 6}
    assert plan["target"]["namespaces"] == {"Order": tenants, "Person": tenants[1::2]}

    applied = cli("cleanup", "stale-properties", "--models", MODELS[0],
                  "--namespaces-from", str(listed), "--apply", "--yes")  # fmt: skip
    assert "in 4 namespaces:" in applied.output
    assert "applied: Order=8, Person=6" in applied.output
    for tenant in tenants:
        after = snapshot(runtime, tenant)
        stripped = {k: without(v, "legacy_code", "nickname") for k, v in before[tenant].items()}
        assert after == stripped
    again = cli("cleanup", "stale-properties", "--models", MODELS[0],
                "--namespaces-from", str(listed))  # fmt: skip
    assert again.exit_code == 0 and "nothing is stale in 4 namespaces" in again.output


def test_stale_kinds_in_every_namespace_with_a_prefix(
    runtime, namespace, emulator_env, cli, needs_metadata
):
    from google.cloud import datastore

    tenants = [f"{namespace}-{i}" for i in range(3)]
    for i, tenant in enumerate(tenants):
        client = datastore.Client(project=runtime.settings.project, namespace=tenant)
        put(client, "Person", 2, name="p")
        put(client, "OldThing", i + 1, x=1)
    applied = cli("cleanup", "stale-kinds", "--models", MODELS[0],
                  "--namespace-prefix", f"{namespace}-", "--apply", "--yes")  # fmt: skip
    assert "stale kinds in 3 namespaces:" in applied.output
    assert "applied: OldThing=6" in applied.output
    assert all(snapshot(runtime, t, "OldThing") == {} for t in tenants)
    assert all(len(snapshot(runtime, t, "Person")) == 2 for t in tenants)
