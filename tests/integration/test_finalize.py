"""Finalize: the job moves to its final state once, whatever the shard count, pauses or failures."""

from __future__ import annotations

from mapper.engine.jobs import pause_job, start_job
from mapper.engine.spec import JobSpec


def spec(namespace, mapper="TouchPeople", **options):
    return JobSpec(mapper=f"tests.mappers:{mapper}", namespace=namespace, **options)


def test_a_job_of_32_shards_finalizes(runtime, namespace, seed):
    """More shards than the Datastore emulator's 25 entity groups a transaction (finding 6)."""
    ids = sorted(k.id() for k in seed(64))
    params = {"project": runtime.settings.project, "namespace": namespace, "split": ids[2::2]}
    job = start_job(runtime, spec(namespace, "SplitAt", params=params, shards=32))
    status = job.wait(timeout=90)
    assert len(status.shards) == 32
    assert status.status == "succeeded"
    assert status.counters["processed"] == 64


def test_a_pause_landing_just_before_finalize_does_not_hang_the_job(
    runtime, namespace, seed, faults
):
    """Finding 4: finalize sees PAUSED and does nothing; resume must finalize the job."""
    seed(100)
    faults.call_at("before_finalize", lambda info: pause_job(runtime, info["job_id"]))
    job = start_job(runtime, spec(namespace, batch_size=50))
    assert runtime.dispatcher.wait_idle(60)
    assert faults.fired == {"before_finalize": 1}
    status = job.status()
    assert status.status == "paused" and status.shards_done == 1
    job.resume()
    status = job.wait(timeout=30)
    assert status.status == "succeeded"
    assert status.counters["processed"] == 100
