"""Crashes, duplicate deliveries, retries and poison entities, injected at named points."""

from __future__ import annotations

import collections
import time

from google.api_core import exceptions as core_exceptions

from mapper.dispatch.messages import SliceTask
from mapper.engine.jobs import start_job
from mapper.engine.spec import JobSpec
from mapper.errors import RetrySlice
from tests.support.mappers import Person


def start(runtime, namespace, mapper="TouchPeople", **options):
    spec = JobSpec(mapper=f"tests.support.mappers:{mapper}", namespace=namespace, **options)
    return start_job(runtime, spec)


def touch_counts(people):
    return collections.Counter(p.touched for p in people())


def test_crash_after_write_before_checkpoint_replays_only_that_batch(
    runtime, namespace, seed, people, faults
):
    seed(600)
    faults.crash_at("after_write", when=lambda info: info["batch"] == 2)
    status = start(runtime, namespace, batch_size=100).wait(timeout=60)
    assert status.status == "succeeded"
    assert status.counters == {"processed": 600, "put": 600, "deleted": 0}
    assert touch_counts(people) == {1: 500, 2: 100}


def test_crash_after_checkpoint_before_enqueue_loses_nothing(
    runtime, namespace, seed, people, faults
):
    runtime.settings = runtime.settings.replace(slice_seconds=0.01)
    seed(500)
    faults.crash_at("before_enqueue", times=2)
    status = start(runtime, namespace, batch_size=100).wait(timeout=60)
    assert status.status == "succeeded"
    assert status.counters["processed"] == 500
    assert touch_counts(people) == {1: 500}
    assert status.shards[0].slice >= 4


def test_same_slice_delivered_twice_concurrently_touches_each_entity_once(
    runtime, namespace, seed, people
):
    seed(800)
    job = start(runtime, namespace, batch_size=50, shards=2)
    for shard in range(len(job.status().shards)):
        runtime.dispatcher.deliver(SliceTask(job.id, shard, 0, 0))
        runtime.dispatcher.deliver(SliceTask(job.id, shard, 0, 0))
    job.wait(timeout=60)
    runtime.dispatcher.wait_idle(30)
    assert job.status().counters["processed"] == 800
    assert touch_counts(people) == {1: 800}


def test_a_batch_that_outlasts_its_lease_stops_before_writing_while_its_twin_runs(
    runtime, namespace, seed, people, faults
):
    """Finding 3: a copy whose batch ran past its lease must not write once a duplicate
    delivery took the shard over (before: it wrote its batch again over the twin's)."""
    seed(300)
    lease = runtime.settings.lease_seconds

    def slow_batch_and_a_twin(info):
        runtime.dispatcher.deliver(SliceTask(info["job_id"], info["shard"], info["slice"], 0))
        time.sleep(3 * lease)  # the twin claims the expired lease and runs the shard

    faults.call_at("after_map", slow_batch_and_a_twin, when=lambda i: i["batch"] == 0)
    status = start(runtime, namespace, batch_size=100).wait(timeout=60)
    runtime.dispatcher.wait_idle(30)
    assert status.status == "succeeded"
    assert faults.fired == {"after_map": 1}
    assert status.counters == {"processed": 300, "put": 300, "deleted": 0}
    assert touch_counts(people) == {1: 300}


def test_a_long_batch_renews_its_lease_so_no_twin_can_take_the_shard(
    runtime, namespace, seed, people, faults
):
    """A batch whose map runs longer than the lease keeps the shard: the lease is
    renewed before each side effect, and a duplicate delivery waits its turn."""
    seed(40)
    runtime.settings = runtime.settings.replace(lease_seconds=1.0, slice_seconds=60.0)

    def twin(info):
        runtime.dispatcher.deliver(SliceTask(info["job_id"], info["shard"], info["slice"], 0))

    faults.call_at("before_batch", twin, when=lambda i: i["batch"] == 0)
    # One batch of 40 entities at 1/8 of a lease each: five leases long.
    job = start(
        runtime, namespace, mapper="SlowTouchPeople", batch_size=40, params={"pause": 0.125}
    )
    status = job.wait(timeout=60)
    runtime.dispatcher.wait_idle(30)
    assert status.status == "succeeded"
    assert touch_counts(people) == {1: 40}
    assert faults.hits.get("lease_renewed", 0) >= 2  # 40 x lease/8 = 5 leases in one batch


def test_stale_slice_redelivery_writes_nothing(runtime, namespace, seed, people):
    seed(300)
    job = start(runtime, namespace, batch_size=100)
    before = job.wait(timeout=60)
    runtime.handle(SliceTask(job.id, 0, 0, 0))
    runtime.dispatcher.wait_idle(10)
    assert job.status().counters == before.counters
    assert touch_counts(people) == {1: 300}


def test_future_slice_is_told_to_retry(runtime, namespace, seed):
    seed(10)
    job = start(runtime, namespace)
    job.wait(timeout=60)
    try:
        runtime.handle(SliceTask(job.id, 0, 7, 0))
    except RetrySlice as signal:
        assert "ahead" in signal.reason
    else:
        raise AssertionError("a future slice must be retried")


def test_poison_entity_fails_the_job_with_its_key_after_bounded_attempts(
    runtime, namespace, seed, people, faults
):
    seed(300)
    status = start(runtime, namespace, "Poison", params={"poison": "p00150"}, batch_size=50)
    status = status.wait(timeout=60)
    assert status.status == "failed"
    assert "cannot map p00150" in status.error
    with runtime.context(namespace):
        poison = Person.query(Person.name == "p00150").get()
    assert status.failed_key == f"Key('Person', {poison.key.id()}, namespace={namespace!r})"
    shard = status.shards[0]
    assert shard.status == "failed"
    assert shard.attempts == runtime.settings.max_attempts
    # Batches of 50 in key order (ids are allocated, not in name order) up to the poison's.
    with runtime.context(namespace):
        keys = sorted(Person.query().fetch(keys_only=True), key=lambda k: k.id())
    done = keys.index(poison.key) // 50 * 50
    assert status.counters["processed"] == done
    assert touch_counts(people) == ({1: done, 0: 300 - done} if done else {0: 300})


def test_rpc_errors_injected_twice_then_success(runtime, namespace, seed, people, faults):
    seed(400)
    faults.raise_at("rpc:Commit", lambda: core_exceptions.ServiceUnavailable("injected"), times=2)
    faults.raise_at("rpc:RunQuery", lambda: core_exceptions.Aborted("injected"), times=2)
    status = start(runtime, namespace, batch_size=100).wait(timeout=60)
    assert status.status == "succeeded"
    assert status.counters["processed"] == 400
    assert touch_counts(people) == {1: 400}


def test_non_retryable_error_fails_fast(runtime, namespace, seed, faults):
    seed(100)
    faults.raise_at("after_map", lambda: core_exceptions.InvalidArgument("injected"), times=1)
    status = start(runtime, namespace, batch_size=100).wait(timeout=60)
    assert status.status == "failed"
    assert status.shards[0].attempts == 1
    assert "InvalidArgument" in status.error


def test_entity_too_large_fails_fast_naming_its_key(runtime, namespace, seed, people):
    keys = seed(20)
    status = start(runtime, namespace, "Bloat", params={"name": "p00007"}).wait(timeout=60)
    assert status.status == "failed"
    assert status.shards[0].attempts == 1
    assert "over Datastore's 1048572" in status.error
    assert status.failed_key == f"Key('Person', {keys[7].id()}, namespace={namespace!r})"
    assert touch_counts(people) == {0: 20}


def test_large_entities_are_split_under_the_commit_byte_bound(
    runtime, namespace, seed, people, faults
):
    seed(600, chunk=20, blob=b"x" * 100_000)
    status = start(runtime, namespace, batch_size=500).wait(timeout=180)
    assert status.status == "succeeded"
    assert status.counters["put"] == 600
    # 60 MB of puts, each commit under the store's byte bound.
    entity_commits = -(-60_000_000 // runtime.store.max_commit_bytes)
    assert faults.hits["rpc:Commit"] >= entity_commits + 2  # plus checkpoint commits
    assert touch_counts(people) == {1: 600}


def test_exactly_once_mode_touches_every_entity_once_despite_crashes(
    runtime, namespace, seed, people, faults
):
    seed(3000)
    faults.crash_at("after_map", times=3, when=lambda info: info["batch"] in (1, 5, 9))
    faults.crash_at("after_checkpoint", times=2, when=lambda info: info["batch"] in (3, 7))
    status = start(runtime, namespace, batch_size=100, shards=2, exactly_once=True)
    status = status.wait(timeout=300)
    assert status.status == "succeeded"
    assert status.counters["processed"] == 3000
    assert touch_counts(people) == {1: 3000}
