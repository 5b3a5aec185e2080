"""Fault injection at named points, for tests that prove crash and retry safety.

Points passed to the hook: ``before_batch``, ``after_map``, ``after_write``,
``after_checkpoint``, ``before_enqueue``, ``before_finish`` and ``rpc:NAME``
(before every Datastore RPC, e.g. ``rpc:Commit``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class SimulatedCrash(BaseException):
    """Raised by a fault hook to stand for a process dying at a named point.

    A BaseException on purpose: the slice's own error handling must not see it,
    exactly as it would not see the process being killed. The local dispatcher
    redelivers the task, as a queue would after a crash.
    """

    process_died = True


class FaultPlan:
    """A FaultHook that raises at chosen points a chosen number of times."""

    def __init__(self) -> None:
        self._rules: list[list[Any]] = []
        self._lock = threading.Lock()
        self.hits: dict[str, int] = {}
        #: How many times each point actually raised.
        self.fired: dict[str, int] = {}

    def crash_at(
        self, point: str, times: int = 1, when: Callable[[dict[str, Any]], bool] | None = None
    ) -> FaultPlan:
        """Simulate the process dying at ``point`` (the next ``times`` matches)."""
        return self.raise_at(point, lambda: SimulatedCrash(point), times, when)

    def raise_at(
        self,
        point: str,
        error: Callable[[], BaseException],
        times: int = 1,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> FaultPlan:
        """Raise ``error()`` at ``point`` the next ``times`` times ``when`` holds."""
        self._rules.append([point, error, times, when])
        return self

    def __call__(self, point: str, info: dict[str, Any]) -> None:
        with self._lock:
            self.hits[point] = self.hits.get(point, 0) + 1
            for rule in self._rules:
                name, error, remaining, when = rule
                if name == point and remaining > 0 and (when is None or when(info)):
                    rule[2] -= 1
                    self.fired[point] = self.fired.get(point, 0) + 1
                    raise error()
