"""LocalDispatcher: runs tasks on a thread pool inside this process."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from mapper.dispatch.base import Dispatcher, TaskHandler
from mapper.dispatch.messages import Task
from mapper.errors import DispatchError, RetrySlice

logger = logging.getLogger(__name__)

#: Backoff for a task whose run raised an unexpected error, as a queue would.
ERROR_BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0)


class LocalDispatcher(Dispatcher):
    """The embedded default: at-least-once delivery on a thread pool.

    Names are de-duplicated like Cloud Tasks does, for the life of the
    dispatcher. ``deliver`` bypasses that, so tests can deliver a task twice.
    """

    in_process = True

    def __init__(self, workers: int = 8, crash_redelivery_delay: float = 0.2):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mapper")
        self._handler: TaskHandler | None = None
        self._names: set[str] = set()
        self._lock = threading.Lock()
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        #: Task runs ended so far, and a condition notified at each end.
        self._ended = 0
        self._task_end = threading.Condition(self._lock)
        self._closed = False
        self._timers: set[threading.Timer] = set()
        self.crash_redelivery_delay = crash_redelivery_delay

    def bind(self, handler: TaskHandler) -> None:
        self._handler = handler

    def enqueue(self, task: Task, delay: float = 0.0) -> bool:
        name = task.task_name()
        with self._lock:
            if name in self._names:
                return False
            self._names.add(name)
        self.deliver(task, delay)
        return True

    def deliver(self, task: Task, delay: float = 0.0, attempt: int = 0) -> None:
        """Run ``task`` (after ``delay`` seconds) regardless of its name."""
        with self._lock:
            if self._closed:
                raise DispatchError("the local dispatcher is closed")
            self._pending += 1
        if delay > 0:
            timer = threading.Timer(delay, self._submit, (task, attempt))
            timer.daemon = True
            with self._lock:
                self._timers.add(timer)
            timer.start()
        else:
            self._submit(task, attempt)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no task is queued or running; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def tasks_ended(self) -> int:
        with self._lock:
            return self._ended

    def wait_task_end(self, since: int, timeout: float) -> None:
        with self._task_end:
            self._task_end.wait_for(lambda: self._ended != since, timeout)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for timer in self._timers:
                timer.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self, task: Task, attempt: int) -> None:
        with self._lock:
            self._timers = {t for t in self._timers if t.is_alive()}
            if self._closed:
                self._done()
                return
        self._pool.submit(self._run, task, attempt)

    def _run(self, task: Task, attempt: int) -> None:
        if self._handler is None:
            raise DispatchError("LocalDispatcher.bind() was never called")
        redeliver: float | None = None
        try:
            self._handler(task)
        except RetrySlice as signal:
            redeliver = signal.delay
        except Exception:
            logger.exception("task %s failed; it will be delivered again", task.task_name())
            redeliver = ERROR_BACKOFF[min(attempt, len(ERROR_BACKOFF) - 1)]
        except BaseException as death:
            # The test kit's SimulatedCrash stands for the process dying: the
            # queue notices and delivers again. Any other BaseException is real.
            if not getattr(death, "process_died", False):
                with self._lock:
                    self._done()
                raise
            redeliver = self.crash_redelivery_delay
        try:
            if redeliver is not None and not self._closed:
                self.deliver(task, redeliver, attempt + 1)
        finally:
            with self._lock:
                self._done()

    def _done(self) -> None:
        self._ended += 1
        self._task_end.notify_all()
        self._pending -= 1
        if self._pending == 0:
            self._idle.notify_all()
