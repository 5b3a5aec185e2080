"""The fault layer itself, against the emulator: each fault does what production does."""

from __future__ import annotations

import time

import pytest
from google.api_core import exceptions as core_exceptions

from mapper.datastore import txn as txns
from mapper.datastore.keys import key_bytes
from mapper.datastore.query import MoreResults, kind_query, pages, results
from mapper.datastore.rpc import Entity
from mapper.engine.runtime import Runtime
from mapper.testing.faults import AMBIGUOUS, FaultPlan, SimulatedCrash
from tests.support.fixtures_alltypes import key


def entity(runtime, namespace, name, **props):
    pb = Entity()
    pb.key.CopyFrom(key(runtime.settings.project, namespace, "Thing", name))
    for prop, number in props.items():
        pb.properties[prop].integer_value = number
    return pb


def stored(runtime, namespace, *names):
    keys = [key(runtime.settings.project, namespace, "Thing", n) for n in names]
    found = runtime.store.lookup(keys)
    pairs = zip(names, keys, strict=True)
    return {n: found[key_bytes(k)] for n, k in pairs if key_bytes(k) in found}


@pytest.mark.parametrize("error_class", AMBIGUOUS, ids=lambda e: e.__name__)
def test_ambiguous_commit_applies_then_raises(runtime, namespace, faults, error_class):
    faults.ambiguous_commits(times=1, errors=[error_class])
    transaction = runtime.store.begin_transaction()
    with pytest.raises(error_class, match="applied"):
        runtime.store.commit([entity(runtime, namespace, "a", n=1)], transaction=transaction)
    assert stored(runtime, namespace, "a")["a"].properties["n"].integer_value == 1
    assert faults.injected == {"ambiguous_commit": 1}


def test_ambiguous_commit_replays_a_transaction_body_that_already_applied(
    runtime, namespace, faults
):
    """What finding 1 is about: run_in_transaction re-runs ``fn`` after a commit that applied."""
    runtime.store.commit([entity(runtime, namespace, "counter", n=0)])
    faults.ambiguous_commits(times=1, transactional=True)
    counter = key(runtime.settings.project, namespace, "Thing", "counter")
    runs = []

    def add_one(t):
        current = t.lookup_raw([counter])[key_bytes(counter)]
        current.properties["n"].integer_value += 1
        t.upserts.append(current)
        runs.append(1)

    txns.run_in_transaction(runtime.store, add_one)
    assert len(runs) == 2  # the body ran again after its first commit applied
    assert stored(runtime, namespace, "counter")["counter"].properties["n"].integer_value == 2


def test_ambiguous_commits_can_be_limited_to_non_transactional_ones(runtime, namespace, faults):
    faults.ambiguous_commits(times=1, transactional=False)
    transaction = runtime.store.begin_transaction()
    runtime.store.commit([entity(runtime, namespace, "t")], transaction=transaction)
    assert faults.injected == {}
    # The store retries a non-transactional upsert: it applies twice, harmlessly.
    runtime.store.commit([entity(runtime, namespace, "n")])
    assert faults.injected == {"ambiguous_commit": 1}
    assert set(stored(runtime, namespace, "t", "n")) == {"t", "n"}


def test_empty_page_says_not_finished_and_repeats_the_cursor(runtime, namespace, faults):
    runtime.store.write([entity(runtime, namespace, f"e{i:02d}") for i in range(30)], [])
    query = kind_query("Thing")
    query.limit.value = 10
    first = runtime.store.run_query(query, namespace)
    assert len(first.entity_results) == 10
    query.start_cursor = first.end_cursor
    faults.empty_pages(times=1)
    empty = runtime.store.run_query(query, namespace)
    assert len(empty.entity_results) == 0
    assert empty.more_results == MoreResults.NOT_FINISHED
    assert empty.end_cursor == first.end_cursor
    after = runtime.store.run_query(query, namespace)
    assert [r.entity.key.path[0].name for r in after.entity_results] == [
        f"e{i:02d}" for i in range(10, 20)
    ]


def test_the_pager_goes_on_past_empty_pages(runtime, namespace, faults):
    runtime.store.write([entity(runtime, namespace, f"e{i:03d}") for i in range(120)], [])
    faults.empty_pages(rate=0.9, times=6)
    query = kind_query("Thing")
    query.limit.value = 40
    names = [e.key.path[0].name for e in results(runtime.store, query, namespace)]
    assert names == [f"e{i:03d}" for i in range(40)]
    assert faults.injected["empty_page"] == 6
    faults.empty_pages(times=2)
    walked = list(pages(runtime.store, kind_query("Thing", keys_only=True), namespace))
    assert [len(p.entity_results) for p in walked] == [0, 0, 120]


def test_aborted_commit_applies_nothing_and_the_transaction_is_retried(runtime, namespace, faults):
    faults.aborted_commits(times=1)
    transaction = runtime.store.begin_transaction()
    with pytest.raises(core_exceptions.Aborted):
        runtime.store.commit([entity(runtime, namespace, "x")], transaction=transaction)
    runtime.store.rollback(transaction)
    assert stored(runtime, namespace, "x") == {}

    faults.aborted_commits(rate=0.5, times=3)
    for i in range(12):
        txns.run_in_transaction(
            runtime.store, lambda t, i=i: t.upserts.append(entity(runtime, namespace, f"y{i}"))
        )
    assert len(stored(runtime, namespace, *[f"y{i}" for i in range(12)])) == 12
    assert faults.injected["aborted_commit"] == 1 + 3


def test_a_lock_held_longer_than_the_retries_is_waited_out_within_patience(
    runtime, namespace, faults
):
    """A process killed inside a transaction leaves its locks until the transaction
    expires (60 s on the Firestore emulator, measured: every other transaction on those
    entities aborts meanwhile). Re-running the command must wait, not fail."""
    faults.aborted_commits(times=12)  # more aborts than the 3 retries below
    txns.run_in_transaction(
        runtime.store, lambda t: t.upserts.append(entity(runtime, namespace, "z")), retries=3
    )
    assert "z" in stored(runtime, namespace, "z")
    assert faults.injected["aborted_commit"] == 12

    faults.aborted_commits(times=12)
    with pytest.raises(core_exceptions.Aborted):
        txns.run_in_transaction(
            runtime.store,
            lambda t: t.upserts.append(entity(runtime, namespace, "w")),
            retries=3,
            patience=0.0,
        )
    assert stored(runtime, namespace, "w") == {}


def test_an_unavailable_burst_fails_consecutive_rpcs_then_clears(runtime, namespace, faults):
    runtime.store.commit([entity(runtime, namespace, "b")])
    faults.unavailable_bursts(rate=1.0, length=3, times=1)
    runtime.store.retries = 0
    b = key(runtime.settings.project, namespace, "Thing", "b")
    for _ in range(3):
        with pytest.raises(core_exceptions.ServiceUnavailable):
            runtime.store.lookup([b])
    assert key_bytes(b) in runtime.store.lookup([b])
    assert faults.injected == {"unavailable": 3}


def test_the_store_rides_out_a_burst_shorter_than_its_retries(runtime, namespace, faults):
    runtime.store.commit([entity(runtime, namespace, "r")])
    faults.unavailable_bursts(rate=1.0, length=runtime.store.retries, times=1, rpcs=["Lookup"])
    assert stored(runtime, namespace, "r")
    assert faults.injected == {"unavailable": runtime.store.retries}


def test_latency_is_added_to_every_rpc(runtime, namespace, faults):
    faults.latency(0.05)
    k = key(runtime.settings.project, namespace, "Thing", "z")
    started = time.monotonic()
    for _ in range(6):
        runtime.store.lookup([k])
    assert time.monotonic() - started >= 6 * 0.05


def test_stall_at_a_point_waits_there(faults):
    faults.stall_at("after_map", 0.3, when=lambda info: info["batch"] == 1)
    started = time.monotonic()
    faults("after_map", {"batch": 0})
    assert time.monotonic() - started < 0.2
    faults("after_map", {"batch": 1})
    assert time.monotonic() - started >= 0.3
    assert faults.fired == {"after_map": 1}


def test_a_crash_can_follow_a_commit_that_applied(runtime, namespace, faults):
    faults.ambiguous_commits(times=1, errors=[SimulatedCrash])
    with pytest.raises(SimulatedCrash):
        runtime.store.commit([entity(runtime, namespace, "c")])
    assert stored(runtime, namespace, "c")


def test_the_same_seed_gives_the_same_faults(settings, namespace, emulator_env):
    def run(seed):
        plan = FaultPlan(seed=seed).unavailable_bursts(rate=0.2, length=2)
        rt = Runtime(settings, faults=plan)
        rt.store.retries = 0
        outcomes = []
        try:
            k = key(settings.project, namespace, "Thing", "s")
            for _ in range(40):
                try:
                    rt.store.lookup([k])
                    outcomes.append("ok")
                except core_exceptions.ServiceUnavailable:
                    outcomes.append("unavailable")
        finally:
            rt.close()
        return outcomes

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_a_spec_string_builds_a_plan():
    plan = FaultPlan.from_spec("seed=3, latency=0.01, ambiguous=0.1, empty=0.2, aborted=0.3")
    assert [r.kind for r in plan._rpc_rules] == ["ambiguous_commit", "empty_page", "aborted_commit"]
    with pytest.raises(ValueError, match="NAME=NUMBER"):
        FaultPlan.from_spec("explode=1")
