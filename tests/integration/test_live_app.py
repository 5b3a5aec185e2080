"""Running next to a live app: a mapper deletes nothing that nobody asked to delete."""

from __future__ import annotations

import collections
import datetime
import random
import threading

import pytest
from google.cloud import datastore, ndb

from mapper.engine.jobs import start_job
from mapper.engine.loading import class_spec
from mapper.engine.records import JobStatus
from mapper.engine.runtime import Runtime
from mapper.engine.spec import JobSpec
from tests.support import live_models
from tests.support.live_models import (
    Counter,
    Hooked,
    PutOddDeleteEven,
    PutOddDeleteEvenWithHooks,
    TouchCounter,
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


def seed_counters(client: datastore.Client, n: int) -> None:
    entities = [datastore.Entity(client.key("Counter", i)) for i in range(1, n + 1)]
    for entity in entities:
        entity.update({"app": 0, "touched": 0})
    for start in range(0, n, 500):
        client.put_multi(entities[start : start + 500])


def app_increment(runtime: Runtime, namespace: str, ident: int) -> None:
    """The app's own write: a transactional read-modify-write through ndb."""

    @ndb.transactional(retries=20)
    def bump() -> None:
        counter = Counter.get_by_id(ident)
        counter.app += 1
        counter.put()

    with runtime.client.context(namespace=namespace, cache_policy=False, global_cache_policy=False):
        bump()


def test_an_app_write_between_a_batch_read_and_its_write_is_kept(
    runtime, namespace, datastore_client, faults, needs_conflict_detection
):
    seed_counters(datastore_client, 300)
    # The app writes entity 50 after the job read it (batch 0 holds ids 1..100)
    # and before the job writes it back.
    wrote = []

    def app_writes_during_batch_0(point, info):
        faults(point, info)
        if point == "after_map" and not wrote:
            # The app is another process: its write runs on a thread of its own.
            app = threading.Thread(target=app_increment, args=(runtime, namespace, 50))
            app.start()
            app.join()
            wrote.append(50)

    runtime.faults = app_writes_during_batch_0
    info = run(runtime, namespace, TouchCounter, batch_size=100)
    assert info.status == JobStatus.SUCCEEDED and wrote == [50]
    assert info.counters["conflicts"] == 1
    assert info.counters["processed"] == info.counters["put"] == 300
    found = {e.key.id: e for e in datastore_client.query(kind="Counter").fetch()}
    assert found[50]["app"] == 1 and found[50]["touched"] == 1
    assert {e["touched"] for e in found.values()} == {1}


@pytest.mark.parametrize("exactly_once", [False, True], ids=["default", "exactly-once"])
def test_app_writes_throughout_a_10k_job_are_never_lost(
    runtime, namespace, datastore_client, needs_conflict_detection, exactly_once
):
    seed_counters(datastore_client, 10_000)
    stop = threading.Event()
    done: collections.Counter[int] = collections.Counter()
    rng = random.Random(11)

    def app() -> None:
        while not stop.is_set():
            ident = rng.randint(1, 10_000)
            app_increment(runtime, namespace, ident)
            done[ident] += 1

    writer = threading.Thread(target=app)
    writer.start()
    try:
        info = run(runtime, namespace, TouchCounter, shards=2, batch_size=500,
                   exactly_once=exactly_once)  # fmt: skip
    finally:
        stop.set()
        writer.join()
    assert info.status == JobStatus.SUCCEEDED
    assert sum(done.values()) > 20  # the app did write while the job ran
    found = {e.key.id: e for e in datastore_client.query(kind="Counter").fetch()}
    assert {i: e["app"] for i, e in found.items() if e["app"]} == dict(done)  # none lost
    assert {e["touched"] for e in found.values()} == {1}  # every job write too
