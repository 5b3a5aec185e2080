"""Finalize: the job moves to its final state once, whatever the shard count, pauses or failures."""

from __future__ import annotations

import threading
import time

from mapper.dispatch.messages import FinalizeTask
from mapper.engine.jobs import pause_job, start_job
from mapper.engine.spec import JobSpec
from mapper.engine.status import job_status


def spec(namespace, mapper="TouchPeople", **options):
    return JobSpec(mapper=f"tests.support.mappers:{mapper}", namespace=namespace, **options)


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


def test_a_finish_that_keeps_failing_fails_the_job_after_bounded_attempts(
    runtime, namespace, seed, faults
):
    """Finding 7: finish() is retried MAPPER_MAX_ATTEMPTS times, then the job is FAILED."""
    seed(10)
    status = start_job(runtime, spec(namespace, "FailingFinish")).wait(timeout=60)
    assert status.status == "failed"
    assert "finish cannot reach the outside world" in status.error
    assert status.failed_shard is None
    assert faults.hits["before_finish"] == runtime.settings.max_attempts
    assert status.counters["processed"] == 10


def test_a_finish_outlasting_its_lease_is_not_run_again_while_it_lives(
    runtime, namespace, seed, faults
):
    """Finding 7: the finalize lease is renewed while finish() runs; a second copy waits."""
    seed(10)
    lease = runtime.settings.lease_seconds

    def slow_finish(info):
        time.sleep(1.5 * lease)
        runtime.dispatcher.deliver(FinalizeTask(info["job_id"]))  # a duplicate delivery
        time.sleep(1.5 * lease)

    faults.call_at("before_finish", slow_finish)
    status = start_job(runtime, spec(namespace)).wait(timeout=60)
    assert runtime.dispatcher.wait_idle(30)
    assert status.status == "succeeded"
    assert faults.hits["before_finish"] == 1


def test_a_copy_of_finalize_that_lost_its_lease_does_not_record_its_failure(
    runtime, namespace, seed, faults
):
    """The token fences finish()'s outcome: a stale copy's failure does not fail the job."""
    runtime.settings = runtime.settings.replace(max_attempts=2)
    seed(10)
    frozen: set[str] = set()
    copies: list[str] = []
    b_runs = threading.Event()

    def finish_point(info):
        copies.append(info["token"])
        if len(copies) == 2:  # copy B took over: it runs while copy A fails
            b_runs.set()
            time.sleep(1.0)
            return
        # Copy A freezes (its lease renewals stop) until its lease runs out, a
        # duplicate delivery (copy B) takes over, and then A wakes up and fails.
        frozen.add(info["token"])
        time.sleep(runtime.settings.lease_seconds + 0.5)
        runtime.dispatcher.deliver(FinalizeTask(info["job_id"]))
        assert b_runs.wait(10)
        raise RuntimeError("the stale copy fails after all")

    faults.call_at("before_finish", finish_point, times=2)
    faults.raise_at(
        "finalize_renewal",
        lambda: RuntimeError("frozen"),
        times=1000,
        when=lambda info: info["token"] in frozen,
    )
    status = start_job(runtime, spec(namespace)).wait(timeout=60)
    assert runtime.dispatcher.wait_idle(30)
    assert len(set(copies)) == 2
    assert status.status == "succeeded"
    assert job_status(runtime, status.id).status == "succeeded"
