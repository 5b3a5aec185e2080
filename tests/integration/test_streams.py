"""A shard reads its range as one query stream and cuts batches from it on the client.

The emulators page differently from production (the Datastore emulator at 300
entities, the Firestore emulator everything at once); the fault plan's response
hook makes production's pages here: cut short, or empty and NOT_FINISHED.
"""

from __future__ import annotations

import collections
import gc
import weakref
from typing import Any

import pytest

from mapper.datastore.query import EntityStream, kind_query, pages, results
from mapper.engine.jobs import start_job
from mapper.engine.spec import JobSpec
from mapper.testing.faults import empty_page, short_page
from tests.support.mappers import TouchPeople


class TouchCountingBatches(TouchPeople):
    """Touches every person and counts its batches by size (``batches_of_N``)."""

    def start_batch(self, entities: list[Any]) -> None:
        self.count(f"batches_of_{len(entities)}")


def person_queries(request: Any) -> bool:
    return request.query.kind[0].name == "Person"


def nth_person_queries(*calls: int) -> Any:
    """A ``when`` that holds for the given calls (1-based) of Person queries."""
    seen = [0]

    def when(request: Any) -> bool:
        if not person_queries(request):
            return False
        seen[0] += 1
        return seen[0] in calls

    return when


def run(runtime, namespace, **options):
    spec = JobSpec(mapper=f"{__name__}:TouchCountingBatches", namespace=namespace, **options)
    return start_job(runtime, spec).wait(timeout=120)


def touch_counts(people):
    return collections.Counter(p.touched for p in people())


def batch_sizes(counters):
    return {k: v for k, v in counters.items() if k.startswith("batches_of_")}


@pytest.fixture
def pages_seen(runtime, faults):
    """The number of results in every Person query page the store receives."""
    seen: list[int] = []

    def record(request: Any, response: Any) -> Any:
        seen.append(len(response.batch.entity_results))
        return response

    faults.alter("RunQuery", record, times=10**6, when=person_queries)
    return seen


@pytest.mark.parametrize("exactly_once", [False, True])
def test_batches_are_cut_across_short_server_pages(
    runtime, namespace, seed, people, faults, exactly_once
):
    seed(400)
    faults.alter("RunQuery", short_page(70), times=10**6, when=person_queries)
    status = run(runtime, namespace, batch_size=23, exactly_once=exactly_once)
    assert status.status == "succeeded"
    assert status.counters["processed"] == 400
    # 17 batches of 23 and one of 9, whatever the pages were (70 each, then 50).
    assert batch_sizes(status.counters) == {"batches_of_23": 17, "batches_of_9": 1}
    assert status.shards[0].batches == 18
    assert touch_counts(people) == {1: 400}


def test_queries_follow_server_pages_not_batches(runtime, namespace, seed, people, pages_seen):
    seed(700)
    status = run(runtime, namespace, batch_size=40)
    assert status.status == "succeeded"
    assert batch_sizes(status.counters) == {"batches_of_40": 17, "batches_of_20": 1}
    # The Datastore emulator's pages hold 300, the Firestore emulator's all 700:
    # 1-3 queries, where one query per batch would be 18.
    assert sum(pages_seen) == 700
    assert len(pages_seen) <= 3
    assert touch_counts(people) == {1: 700}


@pytest.mark.parametrize("exactly_once", [False, True])
def test_an_empty_page_that_says_not_finished_does_not_end_a_shard(
    runtime, namespace, seed, people, faults, exactly_once
):
    seed(500)
    empties: list[bytes] = []

    def empty(request: Any, response: Any) -> Any:
        empties.append(request.query.start_cursor)
        return empty_page(request, response)

    # The 2nd and 3rd queries answer empty pages, the others at most 200 results.
    faults.alter("RunQuery", empty, times=2, when=nth_person_queries(2, 3))
    faults.alter("RunQuery", short_page(200), times=10**6, when=person_queries)
    status = run(runtime, namespace, batch_size=20, exactly_once=exactly_once)
    assert len(empties) == 2
    assert status.status == "succeeded"
    assert status.counters["processed"] == 500
    assert touch_counts(people) == {1: 500}


def test_a_new_slice_resumes_after_the_checkpoint_inside_a_page(
    runtime, namespace, seed, people, pages_seen
):
    runtime.settings = runtime.settings.replace(slice_seconds=0.01)
    seed(350)
    status = run(runtime, namespace, batch_size=60)
    assert status.status == "succeeded"
    assert status.shards[0].slice >= 5  # about one batch a slice
    assert batch_sizes(status.counters) == {"batches_of_60": 5, "batches_of_50": 1}
    assert touch_counts(people) == {1: 350}


# -- the pager itself ------------------------------------------------------------------


def test_pager_continues_after_full_pages_and_ends_on_a_short_one(runtime, namespace, seed):
    seed(25)
    walk = list(pages(runtime.store, kind_query("Person"), namespace, page_size=10))
    assert [len(p.entity_results) for p in walk] == [10, 10, 5]


def test_pager_with_a_page_size_dividing_the_kind_ends_after_the_last_full_page(
    runtime, namespace, seed
):
    seed(20)
    walk = list(pages(runtime.store, kind_query("Person"), namespace, page_size=10, prefetch=True))
    # The Firestore emulator says NO_MORE_RESULTS on the second page; the Datastore
    # emulator (and production) MORE_RESULTS_AFTER_LIMIT, so one empty page ends it.
    assert [len(p.entity_results) for p in walk] in ([10, 10], [10, 10, 0])


def test_pager_keeps_a_query_limit_as_the_limit_of_the_walk(runtime, namespace, seed, faults):
    seed(30)
    faults.alter("RunQuery", short_page(4), times=10**6)
    query = kind_query("Person", keys_only=True)
    query.limit.value = 9
    assert len(list(results(runtime.store, query, namespace, page_size=100))) == 9


def test_pager_goes_on_after_empty_pages_that_say_not_finished(runtime, namespace, seed, faults):
    keys = seed(30)
    faults.alter("RunQuery", empty_page, times=3)
    found = list(results(runtime.store, kind_query("Person", keys_only=True), namespace))
    assert faults.fired["alter:RunQuery"] == 3
    assert sorted(e.key.path[-1].id for e in found) == sorted(k.id() for k in keys)


def test_a_walk_lets_go_of_a_page_once_it_is_handed_over(runtime, namespace, seed, monkeypatch):
    """A walk held on to its first request, and so to its first page (up to 20,000
    entities), until it ended: an export at 100,000 peaked 20 MB higher for it."""
    seed(30)
    requests: list[weakref.ref] = []
    send = runtime.store.run_query_async

    class Request:
        def __init__(self, query: Any, ns: str):
            self.answer = send(query, ns)

        def __call__(self) -> Any:
            return self.answer()

        def cancel(self) -> None:
            getattr(self.answer, "cancel", lambda: None)()

    def run_query_async(query: Any, ns: str) -> Request:
        request = Request(query, ns)
        requests.append(weakref.ref(request))
        return request

    monkeypatch.setattr(runtime.store, "run_query_async", run_query_async)
    walk = pages(runtime.store, kind_query("Person"), namespace, page_size=10, prefetch=True)
    page = next(walk)
    assert len(page.entity_results) == 10 and len(requests) == 2  # the next one is on its way
    del page
    gc.collect()
    assert requests[0]() is None and requests[1]() is not None
    walk.close()


def test_stream_takes_batches_across_pages_and_puts_back(runtime, namespace, seed):
    seed(25)
    walk = pages(runtime.store, kind_query("Person"), namespace, page_size=10, prefetch=True)
    stream = EntityStream(walk)
    first = stream.take(7)
    second = stream.take(7)  # 3 from the first page, 4 from the second
    stream.put_back(second[3:])
    assert len(stream.take(8)) == 8
    assert not stream.exhausted()
    assert len(stream.take(100)) == 25 - 7 - 3 - 8
    assert stream.exhausted()
    assert stream.take(5) == []
    assert len({e.key.SerializeToString() for e in first + second}) == 14


def test_exactly_once_at_the_default_batch_size_fits_its_transactions(
    runtime, namespace, seed, people
):
    # 500 entities and the shard record exceed a transaction's 500 writes (and the
    # Datastore emulator's 25 entity groups): the batch shrinks until it fits.
    seed(1100)
    spec = JobSpec(
        mapper="tests.support.mappers:TouchPeople", namespace=namespace, exactly_once=True
    )
    status = start_job(runtime, spec).wait(timeout=300)
    assert status.status == "succeeded"
    assert status.counters["processed"] == 1100
    assert touch_counts(people) == {1: 1100}
