"""The local dispatcher: at-least-once delivery on a thread pool, as a queue would."""

from __future__ import annotations

import threading
import time

from mapper.dispatch.local import LocalDispatcher
from mapper.dispatch.messages import SliceTask
from mapper.errors import RetrySlice


class Flaky:
    """A task handler that fails its first ``failures`` runs with ``error``."""

    def __init__(self, failures: int, error: BaseException):
        self.failures, self.error, self.runs = failures, error, 0

    def __call__(self, task: SliceTask) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            raise self.error


def run_one(handler: Flaky) -> bool:
    dispatcher = LocalDispatcher(workers=1)
    dispatcher.bind(handler)
    try:
        dispatcher.enqueue(SliceTask("j", 0, 0))
        return dispatcher.wait_idle(10)
    finally:
        dispatcher.close()


def test_a_task_that_raises_an_unexpected_error_is_delivered_again() -> None:
    handler = Flaky(2, ValueError("boom"))
    assert run_one(handler)
    assert handler.runs == 3


def test_a_task_that_asks_for_a_retry_is_delivered_again() -> None:
    handler = Flaky(1, RetrySlice("later", delay=0.01))
    assert run_one(handler)
    assert handler.runs == 2


def test_a_task_name_is_enqueued_once() -> None:
    handler = Flaky(0, ValueError())
    dispatcher = LocalDispatcher(workers=1)
    dispatcher.bind(handler)
    try:
        assert dispatcher.enqueue(SliceTask("j", 0, 0))
        assert not dispatcher.enqueue(SliceTask("j", 0, 0))
        assert dispatcher.wait_idle(10)
    finally:
        dispatcher.close()
    assert handler.runs == 1


def test_a_wait_for_a_task_end_wakes_when_a_task_ends_and_times_out_when_none_does() -> None:
    release = threading.Event()
    dispatcher = LocalDispatcher(workers=1)
    dispatcher.bind(lambda task: release.wait(10))
    try:
        since = dispatcher.tasks_ended()
        dispatcher.enqueue(SliceTask("j", 0, 0))
        started = time.monotonic()
        dispatcher.wait_task_end(since, 0.2)  # the task runs on: the wait times out
        assert time.monotonic() - started >= 0.2
        assert dispatcher.tasks_ended() == since
        threading.Timer(0.1, release.set).start()
        started = time.monotonic()
        dispatcher.wait_task_end(since, 30)
        assert time.monotonic() - started < 10  # woken by the end, not the 30 s timeout
        assert dispatcher.tasks_ended() == since + 1
        started = time.monotonic()
        dispatcher.wait_task_end(since, 30)  # one ended already since ``since``: no wait
        assert time.monotonic() - started < 10
    finally:
        release.set()
        dispatcher.close()
