"""Jobs end to end on the emulator: sharding, filters, deletes, control, finish."""

from __future__ import annotations

import collections

import pytest

from mapper.engine.jobs import Job, start_job
from mapper.engine.spec import JobSpec
from mapper.engine.status import job_status
from mapper.errors import InvalidJobError, JobStateError, NotFoundError
from tests.support import mappers


def run(runtime, namespace, mapper, timeout=120, **options):
    spec = JobSpec(mapper=f"tests.support.mappers:{mapper}", namespace=namespace, **options)
    job = start_job(runtime, spec)
    return job, job.wait(timeout=timeout)


def touched(people):
    return collections.Counter(p.touched for p in people())


def test_touch_mapper_visits_every_entity_once_across_shards(runtime, namespace, seed, people):
    seed(2000)
    job, status = run(runtime, namespace, "TouchPeople", shards=4, batch_size=150)
    assert status.status == "succeeded"
    assert status.counters == {"processed": 2000, "put": 2000, "deleted": 0}
    assert touched(people) == {1: 2000}
    assert sum(s.counters["processed"] for s in status.shards) == 2000


def test_scatter_split_gives_disjoint_shards_on_the_datastore_emulator(
    runtime, namespace, seed, needs_scatter
):
    seed(3000)
    job, status = run(runtime, namespace, "TouchPeople", shards=4, batch_size=200)
    assert len(status.shards) == 4
    assert status.split.startswith("__scatter__")
    assert all(s.counters["processed"] > 0 for s in status.shards)


def test_the_shards_of_a_job_claim_their_leases_without_aborting_each_other(
    runtime, namespace, seed, needs_scatter
):
    """Eight shards start at once; each claim reads the running job outside its
    transaction. Before, every claim read the job record inside it, and on the
    Datastore emulator the claims aborted one another in turn (up to seconds a shard)."""
    seed(2000)
    before = runtime.store.rpc_counts()
    job, status = run(runtime, namespace, "TouchPeople", shards=8, batch_size=500)
    assert status.status == "succeeded" and len(status.shards) == 8
    rollbacks = runtime.store.rpc_counts().get("Rollback", 0) - before.get("Rollback", 0)
    assert rollbacks == 0


def test_job_record_says_how_it_split(runtime, namespace, seed, emulator):
    seed(300)
    job, status = run(runtime, namespace, "TouchPeople", shards=4)
    assert status.counters["processed"] == 300
    if emulator.supports_scatter:
        assert status.split.startswith("__scatter__")
    else:
        assert len(status.shards) == 1
        assert "single range" in status.split


def test_filters_select_only_matching_entities(runtime, namespace, seed, people):
    seed(100, active=True)
    seed(50, start=100, active=False)
    job, status = run(runtime, namespace, "TouchActive", shards=2)
    assert status.counters["processed"] == 100
    by_active = collections.Counter((p.active, p.touched) for p in people())
    assert by_active == {(True, 1): 100, (False, 0): 50}


def test_deletes_are_written_in_batches(runtime, namespace, seed, people):
    seed(700, active=False)
    seed(30, start=700, active=True)
    job, status = run(runtime, namespace, "DeleteInactive", batch_size=500)
    assert status.counters == {"processed": 700, "put": 0, "deleted": 700}
    assert len(people()) == 30


def test_raw_kind_mapper_sees_entities_and_custom_counters_add_up(runtime, namespace, seed):
    seed(120)
    job, status = run(runtime, namespace, "CountRaw", shards=3, batch_size=50)
    assert status.counters["raw_seen"] == 120
    assert status.counters["processed"] == 120


def test_empty_kind_succeeds_with_zero_counters(runtime, namespace):
    job, status = run(runtime, namespace, "TouchPeople", shards=4)
    assert status.status == "succeeded"
    assert status.counters["processed"] == 0


def test_finish_runs_once_after_all_shards(runtime, namespace, seed):
    seed(400)
    job, status = run(runtime, namespace, "RecordsFinish", shards=4, batch_size=50)
    runtime.dispatcher.wait_idle(10)
    assert mappers.FINISHED.count(job.id) == 1
    # finish() ran after the last shard: the job is final, with every shard's counts.
    assert status.status == "succeeded" and status.finished is not None
    assert status.shards_done == len(status.shards)
    assert status.counters == {"processed": 400, "put": 400, "deleted": 0}


def test_duplicate_finalize_delivery_runs_finish_once(runtime, namespace, seed):
    from mapper.dispatch.messages import FinalizeTask

    seed(50)
    job, status = run(runtime, namespace, "RecordsFinish")
    runtime.dispatcher.deliver(FinalizeTask(job.id))
    runtime.dispatcher.deliver(FinalizeTask(job.id))
    runtime.dispatcher.wait_idle(10)
    assert mappers.FINISHED.count(job.id) == 1


def test_same_client_id_starts_one_job(runtime, namespace, seed, people):
    seed(200)
    spec = JobSpec(mapper="tests.support.mappers:TouchPeople", namespace=namespace, id="fixed-id-1")
    first = start_job(runtime, spec)
    second = start_job(runtime, spec)
    assert first.id == second.id == "fixed-id-1"
    first.wait(timeout=60)
    runtime.dispatcher.wait_idle(10)
    assert touched(people) == {1: 200}


def test_bad_mapper_spec_is_refused_before_any_write(runtime, namespace):
    with pytest.raises(InvalidJobError, match="no attribute 'Nope'"):
        start_job(runtime, JobSpec(mapper="tests.support.mappers:Nope", namespace=namespace))
    with pytest.raises(InvalidJobError, match="not a subclass"):
        start_job(runtime, JobSpec(mapper="tests.support.mappers:Person", namespace=namespace))
    with pytest.raises(
        InvalidJobError, match=r"batch_size must be 1\.\.500 for a mapper that writes"
    ):
        start_job(runtime, JobSpec(mapper="tests.support.mappers:TouchPeople", namespace=namespace,
                                   batch_size=501))  # fmt: skip
    export = {"export": "e", "kind": "Person", "out": "/nowhere"}  # a mapper that writes nothing
    with pytest.raises(InvalidJobError, match="exactly-once"):
        start_job(runtime, JobSpec(mapper="mapper.transfer.export:ExportMapper",
                                   params=export, namespace=namespace, batch_size=501,
                                   exactly_once=True))  # fmt: skip
    from mapper.engine.status import list_job_ids

    assert list_job_ids(runtime) == []


def test_pause_stops_at_a_batch_boundary_and_resume_finishes(runtime, namespace, seed, people):
    seed(1500)
    job = start_job(
        runtime,
        JobSpec(
            mapper="tests.support.mappers:TouchPeople", namespace=namespace, batch_size=20, shards=2
        ),
    )
    job.pause()
    runtime.dispatcher.wait_idle(30)
    paused = job.status()
    assert paused.status == "paused"
    assert paused.counters["processed"] < 1500
    assert all(s.status in ("paused", "done") for s in paused.shards)
    job.resume()
    status = job.wait(timeout=120)
    assert status.status == "succeeded"
    assert status.counters["processed"] == 1500
    assert touched(people) == {1: 1500}


def test_abort_stops_the_job_and_cannot_be_resumed(runtime, namespace, seed):
    seed(1500)
    job = start_job(
        runtime,
        JobSpec(mapper="tests.support.mappers:TouchPeople", namespace=namespace, batch_size=20),
    )
    job.abort()
    runtime.dispatcher.wait_idle(30)
    status = job.status()
    assert status.status == "aborted"
    assert status.counters["processed"] < 1500
    with pytest.raises(JobStateError):
        job.resume()


def test_status_of_unknown_job_is_not_found(runtime):
    from mapper.errors import NotFoundError

    with pytest.raises(NotFoundError):
        job_status(runtime, "no-such-job")
    with pytest.raises(NotFoundError):
        Job(runtime, "no-such-job").abort()


def test_an_inequality_filter_is_refused_at_start_and_nothing_is_written(runtime, namespace, seed):
    seed(10)
    spec = JobSpec(mapper="tests.support.mappers:TouchTouched", namespace=namespace, id="ineq")
    with pytest.raises(InvalidJobError, match=r"equality filters only.*touched"):
        start_job(runtime, spec)
    with pytest.raises(NotFoundError):
        job_status(runtime, "ineq")
