"""Exactly-once mode: batch numbers, time boxes, FILTERS re-checked, commits that fit."""

from __future__ import annotations

import collections

import pytest
from google.cloud import ndb

from mapper.engine.jobs import start_job
from mapper.engine.spec import JobSpec
from tests.support import mappers


def run(runtime, namespace, mapper="TouchPeople", timeout=120, **options):
    spec = JobSpec(mapper=f"tests.support.mappers:{mapper}", namespace=namespace, **options)
    return start_job(runtime, spec).wait(timeout=timeout)


def touched(people):
    return collections.Counter(p.touched for p in people())


@pytest.mark.parametrize("exactly_once", [False, True], ids=["default", "exactly-once"])
def test_end_batch_gets_a_new_number_for_every_batch(
    runtime, namespace, seed, people, exactly_once
):
    """Failed before in exactly-once mode: every batch of a slice was number 0."""
    seed(300)
    status = run(runtime, namespace, "LogBatches", batch_size=50, exactly_once=exactly_once)
    assert status.status == "succeeded"
    numbers = [n for job, _, n in mappers.BATCH_NUMBERS if job == status.id]
    assert len(numbers) == len(set(numbers))  # no side output named twice
    assert set(range(6)) <= set(numbers)
    assert touched(people) == {1: 300}


def test_exactly_once_slices_do_not_end_early(runtime, namespace, seed, people, faults):
    """Failed before: with no batch counted, a slice took its first batch's time as the
    time of every batch and ended after a third of its box."""
    seed(240)
    runtime.settings = runtime.settings.replace(slice_seconds=3.0)
    faults.stall_at("before_batch", 0.15, times=None)
    status = run(runtime, namespace, batch_size=20, exactly_once=True)
    assert status.status == "succeeded"
    assert [shard.slice for shard in status.shards] == [0]
    assert touched(people) == {1: 240}


def test_exactly_once_does_not_map_an_entity_that_stopped_matching_its_filters(
    runtime, namespace, seed, people, faults
):
    """Failed before: the keys came from the query, and the transaction mapped what it read."""
    second = sorted(seed(100), key=lambda key: key.id())[50:60]  # in the second batch

    def deactivate(info):
        with runtime.context(namespace):
            found = ndb.get_multi(second)
            for person in found:
                person.active = False
            ndb.put_multi(found)

    # The second batch's keys were read with the first page; they change before its transaction.
    faults.call_at("before_batch", deactivate, when=lambda info: faults.hits["before_batch"] == 2)
    status = run(runtime, namespace, "TouchActive", batch_size=50, exactly_once=True)
    assert status.status == "succeeded"
    assert faults.fired["before_batch"] == 1
    assert status.counters == {"processed": 90, "put": 90, "deleted": 0}
    assert {p.key: p.touched for p in people() if not p.active} == {key: 0 for key in second}
    assert touched(people) == {1: 90, 0: 10}


@pytest.mark.parametrize("exactly_once", [False, True], ids=["default", "exactly-once"])
def test_a_write_refused_for_an_overlong_indexed_string_fails_naming_its_key(
    runtime, namespace, seed, people, exactly_once
):
    """Failed before: the job failed with failed_key None (Datastore names only the property)."""
    keys = seed(20)
    options = {"params": {"name": "p00007"}, "exactly_once": exactly_once}
    status = run(runtime, namespace, "LongName", timeout=60, **options)
    assert status.status == "failed"
    assert "longer than 1500 bytes" in status.error
    assert status.shards[0].attempts == 1
    assert status.failed_key == f"Key('Person', {keys[7].id()}, namespace={namespace!r})"
    assert touched(people) == {0: 20}


def test_an_exactly_once_commit_never_holds_more_than_500_mutations(
    runtime, namespace, seed, people, faults
):
    """Failed before on the Firestore emulator, which takes 501 (production refuses them).
    Held on the Datastore emulator: its 25 entity groups refuse the batch's lookup first."""
    seed(600)
    sizes = []
    faults.call_at(
        "rpc:Commit", lambda info: sizes.append(len(info["request"].mutations)), times=None
    )
    status = run(runtime, namespace, batch_size=500, exactly_once=True)
    assert status.status == "succeeded"
    assert status.counters["processed"] == 600
    assert max(sizes) <= 500
    assert touched(people) == {1: 600}
