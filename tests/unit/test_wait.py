"""Waiting for a job: status reads that slow down as a long job runs, and wake at a task's end."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from mapper.dispatch.local import LocalDispatcher
from mapper.dispatch.messages import SliceTask
from mapper.engine.records import JobStatus
from mapper.engine.status import wait_until_final


def reads_until_final(reads: int) -> tuple[list[float], object]:
    times: list[float] = []

    def fetch() -> SimpleNamespace:
        times.append(time.monotonic())
        final = len(times) >= reads
        return SimpleNamespace(status=JobStatus.SUCCEEDED if final else JobStatus.RUNNING)

    return times, fetch


def test_status_reads_grow_apart_up_to_max_poll():
    times, fetch = reads_until_final(14)
    wait_until_final(fetch, "job x", poll=0.01, max_poll=0.04)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps[0] < gaps[-1]  # starts near the first poll
    assert all(g >= 0.035 for g in gaps[-4:])  # then grows to max_poll...
    assert max(gaps) < 0.1  # ...and no further (unbounded, the last would be 0.18)


def test_without_max_poll_the_reads_keep_their_pace():
    times, fetch = reads_until_final(10)
    wait_until_final(fetch, "job x", poll=0.01)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) < 0.05  # growing, the last would be 0.075


def test_an_in_process_dispatcher_wakes_the_wait_when_a_task_ends():
    """The status is read again as soon as a task ends, not a whole poll later."""
    release = threading.Event()
    done = threading.Event()

    def handler(task):  # the job's last task: its end makes the status final
        release.wait(10)
        done.set()

    dispatcher = LocalDispatcher(workers=1)
    dispatcher.bind(handler)
    reads: list[float] = []

    def fetch() -> SimpleNamespace:
        reads.append(time.monotonic())
        return SimpleNamespace(status=JobStatus.SUCCEEDED if done.is_set() else JobStatus.RUNNING)

    try:
        dispatcher.enqueue(SliceTask("j", 0, 0))
        threading.Timer(0.3, release.set).start()
        started = time.monotonic()
        wait_until_final(fetch, "job x", poll=30, tasks=dispatcher)
        assert time.monotonic() - started < 10  # a 30 s poll was cut short by the task's end
        assert len(reads) == 2
    finally:
        release.set()
        dispatcher.close()
