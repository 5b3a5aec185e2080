"""The dispatcher interface every way of delivering tasks implements."""

from __future__ import annotations

import abc
import time
from collections.abc import Callable

from mapper.dispatch.messages import Task

#: Runs one task. Returns normally for "done" (HTTP 2xx); raises RetrySlice
#: for "deliver again later"; any other exception also means "again later".
TaskHandler = Callable[[Task], None]


class Dispatcher(abc.ABC):
    """Delivers tasks at least once, de-duplicating by task name where it can."""

    #: True when tasks run inside this process (the CLI must stay alive for them).
    in_process = False

    @abc.abstractmethod
    def enqueue(self, task: Task, delay: float = 0.0) -> bool:
        """Enqueue ``task`` under ``task.task_name()``.

        Returns:
            True if enqueued now, False if a task of that name already existed;
            both count as success.

        Raises:
            DispatchError: the task could not be enqueued.
        """

    def tasks_ended(self) -> int:
        """How many task runs have ended in this process (0 when tasks run elsewhere)."""
        return 0

    def wait_task_end(self, since: int, timeout: float) -> None:
        """Sleep ``timeout`` seconds; an in-process dispatcher wakes earlier, once a task
        run ends after :meth:`tasks_ended` answered ``since``."""
        time.sleep(timeout)

    def bind(self, handler: TaskHandler) -> None:  # noqa: B027 - optional hook
        """Give an in-process dispatcher the function that runs tasks."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release threads or clients."""
