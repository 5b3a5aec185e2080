"""Starting a job: idempotent per job id, however starts interleave or repeat."""

from __future__ import annotations

import collections

from mapper.engine.jobs import start_job
from mapper.engine.spec import JobSpec


def spec(namespace, job_id, **options):
    return JobSpec(
        mapper="tests.support.mappers:TouchPeople", namespace=namespace, id=job_id, **options
    )


def touched(people):
    return collections.Counter(p.touched for p in people())


def test_a_start_that_read_the_job_before_another_start_ran_it_rewrites_nothing(
    runtime, namespace, seed, people, faults
):
    """Finding 5: the first start's stale copy used to overwrite the job and its shards."""
    seed(300)
    second = []

    def another_start_runs_the_whole_job(info):
        job = start_job(runtime, spec(namespace, "twice", batch_size=50))
        second.append(job.wait(timeout=60))

    faults.call_at("start:before_shards", another_start_runs_the_whole_job)
    job = start_job(runtime, spec(namespace, "twice", batch_size=50))
    assert second[0].status == "succeeded"
    status = job.wait(timeout=20)
    assert status.status == "succeeded"
    assert status.counters == {"processed": 300, "put": 300, "deleted": 0}
    assert status.shards[0].batches == second[0].shards[0].batches
    assert touched(people) == {1: 300}


def test_a_second_start_of_a_running_job_does_not_reset_it(
    runtime, namespace, seed, people, faults
):
    seed(600)
    faults.call_at(
        "after_checkpoint",
        lambda info: start_job(runtime, spec(namespace, "again", batch_size=50)),
        when=lambda info: info["batch"] == 2,
    )
    status = start_job(runtime, spec(namespace, "again", batch_size=50)).wait(timeout=60)
    assert runtime.dispatcher.wait_idle(30)
    assert faults.fired == {"after_checkpoint": 1}
    assert status.status == "succeeded"
    assert status.counters == {"processed": 600, "put": 600, "deleted": 0}
    assert touched(people) == {1: 600}
