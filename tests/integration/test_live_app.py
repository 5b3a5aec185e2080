"""Running next to a live app: a mapper deletes nothing that nobody asked to delete."""

from __future__ import annotations

import datetime

from google.cloud import datastore

from mapper.engine.jobs import start_job
from mapper.engine.loading import class_spec
from mapper.engine.records import JobStatus
from mapper.engine.spec import JobSpec
from tests.support import live_models
from tests.support.live_models import (
    Hooked,
    PutOddDeleteEven,
    PutOddDeleteEvenWithHooks,
    TouchLegacy,
    TouchLegacyDroppingUndeclared,
)

UNDECLARED = ("a", "note", "when", "nested", "tags")


def seed_legacy(client: datastore.Client, n: int) -> dict[int, dict[str, bytes]]:
    """n Legacy entities with five properties the model does not declare; returns each
    entity's undeclared values as serialised protobufs (values and index flags)."""
    entities = []
    for i in range(1, n + 1):
        e = datastore.Entity(client.key("Legacy", i), exclude_from_indexes=("note",))
        nested = datastore.Entity(exclude_from_indexes=("deep",))
        nested.update({"deep": "x" * 20, "k": client.key("Other", i)})
        e.update(
            {
                "name": f"l{i}",
                "a": i,
                "note": "unindexed " * 5,
                "when": datetime.datetime(2020, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.UTC),
                "nested": nested,
                "tags": ["t1", i, None],
            }
        )
        entities.append(e)
    for start in range(0, n, 500):
        client.put_multi(entities[start : start + 500])
    return undeclared_values(client, n)


def undeclared_values(client: datastore.Client, n: int) -> dict[int, dict[str, bytes]]:
    found = client.get_multi([client.key("Legacy", i) for i in range(1, n + 1)])
    result = {}
    for entity in found:
        pb = datastore.helpers.entity_to_protobuf(entity)._pb
        result[entity.key.id] = {
            name: pb.properties[name].SerializeToString(deterministic=True)
            for name in pb.properties
            if name in UNDECLARED
        }
    return result


def run(runtime, namespace, mapper, **options):
    spec = JobSpec(mapper=class_spec(mapper), namespace=namespace, **options)
    return start_job(runtime, spec).wait(timeout=180)


def test_a_model_mapper_keeps_every_undeclared_property_byte_for_byte(
    runtime, namespace, datastore_client
):
    before = seed_legacy(datastore_client, 1000)
    info = run(runtime, namespace, TouchLegacy, shards=2)
    assert info.status == JobStatus.SUCCEEDED and info.counters["put"] == 1000
    assert "undeclared_dropped" not in info.counters
    assert undeclared_values(datastore_client, 1000) == before
    touched = {e["touched"] for e in datastore_client.query(kind="Legacy").fetch()}
    assert touched == {1}


def test_a_mapper_that_asks_drops_undeclared_properties_and_counts_them(
    runtime, namespace, datastore_client
):
    seed_legacy(datastore_client, 60)
    info = run(runtime, namespace, TouchLegacyDroppingUndeclared, batch_size=25)
    assert info.status == JobStatus.SUCCEEDED
    assert info.counters["undeclared_dropped"] == 60 * len(UNDECLARED)
    assert all(set(e) == {"name", "touched"} for e in datastore_client.query(kind="Legacy").fetch())


def seed_hooked(runtime, namespace, n):
    # Stored with the raw client so the app's own hooks do not run while seeding.
    client = datastore.Client(namespace=namespace)
    entities = [datastore.Entity(client.key("Hooked", i)) for i in range(1, n + 1)]
    for i, entity in enumerate(entities, 1):
        entity["n"] = i
    client.put_multi(entities)


def test_by_default_only_the_pre_put_hook_runs(runtime, namespace):
    seed_hooked(runtime, namespace, 10)
    live_models.HOOKS.clear()
    info = run(runtime, namespace, PutOddDeleteEven)
    assert info.status == JobStatus.SUCCEEDED
    assert sorted(live_models.HOOKS) == sorted(("pre_put", i) for i in (1, 3, 5, 7, 9))


def test_run_hooks_runs_every_ndb_hook_post_hooks_after_the_write(runtime, namespace):
    seed_hooked(runtime, namespace, 10)
    live_models.HOOKS.clear()
    info = run(runtime, namespace, PutOddDeleteEvenWithHooks, batch_size=4)
    assert info.status == JobStatus.SUCCEEDED
    odd, even = (1, 3, 5, 7, 9), (2, 4, 6, 8, 10)
    expected = [(h, i) for i in odd for h in ("pre_put", "post_put")]
    expected += [(h, i) for i in even for h in ("pre_delete", "post_delete")]
    assert sorted(live_models.HOOKS) == sorted(expected)
    for hook, i in live_models.HOOKS:  # each post hook after its pre hook
        if hook.startswith("post"):
            pre = hook.replace("post", "pre")
            assert live_models.HOOKS.index((pre, i)) < live_models.HOOKS.index((hook, i))
    with runtime.context(namespace):
        assert sorted(h.n for h in Hooked.query()) == [101, 103, 105, 107, 109]
