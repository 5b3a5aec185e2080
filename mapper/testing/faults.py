"""Fault injection at named points, for tests that prove crash and retry safety.

Points passed to the hook: ``before_batch``, ``after_map``, ``after_write``,
``after_checkpoint``, ``before_enqueue``, ``before_finish`` and ``rpc:NAME``
(before every Datastore RPC, e.g. ``rpc:Commit``).

A plan can also change what an RPC answers, as production may and the emulators
do not (an empty query page that says NOT_FINISHED, pages cut short): give the
store its response hook, ``runtime.store.response_hook = plan.on_response``,
and say what to change with :meth:`FaultPlan.alter`, e.g.
``plan.alter("RunQuery", empty_page)``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from google.cloud.datastore_v1.types import query as _query_types

_NOT_FINISHED = _query_types.QueryResultBatch.MoreResultsType.NOT_FINISHED


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
        self._changes: list[list[Any]] = []
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

    def alter(
        self,
        rpc: str,
        change: Callable[[Any, Any], Any],
        times: int = 1,
        when: Callable[[Any], bool] | None = None,
    ) -> FaultPlan:
        """Answer the next ``times`` calls of ``rpc`` (``"RunQuery"``, ...) whose request
        ``when`` accepts with ``change(request, response)`` instead of the response.

        Takes effect where the store's ``response_hook`` is this plan's :meth:`on_response`.
        """
        self._changes.append([rpc, change, times, when])
        return self

    def on_response(self, name: str, request: Any, response: Any) -> Any:
        """The store's response hook: the response, or what a matching :meth:`alter` makes of it."""
        with self._lock:
            for rule in self._changes:
                rpc, change, remaining, when = rule
                if rpc == name and remaining > 0 and (when is None or when(request)):
                    rule[2] -= 1
                    self.fired[f"alter:{name}"] = self.fired.get(f"alter:{name}", 0) + 1
                    return change(request, response)
        return response


def empty_page(request: Any, response: Any) -> Any:
    """A RunQuery change: no results, NOT_FINISHED, and a cursor where the request started.

    Production answers so when its time for a page runs out before a result
    matched; the caller must ask again from the cursor, not stop.
    """
    empty = type(response)()
    empty.batch.entity_result_type = response.batch.entity_result_type
    empty.batch.more_results = _NOT_FINISHED
    empty.batch.end_cursor = request.query.start_cursor
    return empty


def short_page(size: int) -> Callable[[Any, Any], Any]:
    """A RunQuery change: keep the first ``size`` results and say NOT_FINISHED after them
    (production cuts pages by bytes and time, not by the limit asked for)."""

    def change(request: Any, response: Any) -> Any:
        results = response.batch.entity_results
        if len(results) <= size:
            return response
        short = type(response)()
        short.CopyFrom(response)
        del short.batch.entity_results[size:]
        short.batch.end_cursor = results[size - 1].cursor
        short.batch.more_results = _NOT_FINISHED
        return short

    return change
