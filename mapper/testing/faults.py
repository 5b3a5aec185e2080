"""The fault layer: what production does and the emulators do not, injected on purpose.

One ``FaultPlan`` holds two kinds of faults; hand it to a Runtime as ``faults=``.

At named points of the engine (the plan is called with the point and its details):
``before_batch``, ``after_map``, ``after_write``, ``after_checkpoint``,
``before_enqueue``, ``before_finalize``, ``before_finish``, ``start:before_shards``,
``after_allocate``, ``after_map_write`` and ``rpc:NAME`` (before every Datastore
RPC, e.g. ``rpc:Commit``): crash, raise, stall or call a function there.

At the RPC boundary (``FaultPlan.rpc`` wraps every RPC of the Runtime's Store):
a commit that applies and then answers DEADLINE_EXCEEDED, UNAVAILABLE or INTERNAL;
a query page that is empty but says NOT_FINISHED; ABORTED on transactional
commits; bursts of UNAVAILABLE; latency on every RPC. Random choices come from
seeded streams, one per fault: the same seed and the same sequence of the RPCs
a fault applies to give the same faults. See docs/faults.md.
"""

from __future__ import annotations

import collections
import dataclasses
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from google.api_core import exceptions as core_exceptions
from google.cloud.datastore_v1.types import query as _query_types

from mapper.datastore.rpc import CommitRequest, RunQueryResponse, Send

MoreResults = _query_types.QueryResultBatch.MoreResultsType
ResultType = _query_types.EntityResult.ResultType

#: What an ambiguous commit answers after it applied (one is picked at random).
AMBIGUOUS: tuple[type[core_exceptions.GoogleAPICallError], ...] = (
    core_exceptions.DeadlineExceeded,
    core_exceptions.ServiceUnavailable,
    core_exceptions.InternalServerError,
)

ErrorFactory = Callable[[str], BaseException]
Info = dict[str, Any]


class SimulatedCrash(BaseException):
    """Raised by a fault hook to stand for a process dying at a named point.

    A BaseException on purpose: the slice's own error handling must not see it,
    exactly as it would not see the process being killed. The local dispatcher
    redelivers the task, as a queue would after a crash.
    """

    process_died = True


@dataclasses.dataclass
class _PointRule:
    point: str
    action: Callable[[Info], None]
    remaining: int | None
    when: Callable[[Info], bool] | None


@dataclasses.dataclass
class _RpcRule:
    kind: str
    rate: float
    remaining: int | None
    when: Callable[[Any], bool] | None
    rpcs: frozenset[str] | None = None
    errors: Sequence[ErrorFactory] = ()
    length: int = 1
    #: Each rule draws from a stream of its own, so that one rule's draws (say, bursts
    #: over every RPC, status polls included) do not shift another's.
    random: random.Random = dataclasses.field(default_factory=random.Random)

    def applies(self, name: str, request: Any) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.rpcs is not None and name not in self.rpcs:
            return False
        return self.when is None or bool(self.when(request))


class FaultPlan:
    """Faults at named points and at the RPC boundary, with seeded randomness.

    Every method that adds a fault returns the plan, so they chain::

        plan = FaultPlan(seed=7).ambiguous_commits(rate=0.05).empty_pages(rate=0.1)
        runtime = Runtime(settings, faults=plan)
    """

    def __init__(self, seed: int | None = 0) -> None:
        self.seed = seed
        self.random = self._stream("latency")
        self._rules: list[_PointRule] = []
        self._rpc_rules: list[_RpcRule] = []
        self._latency: tuple[float, float, frozenset[str] | None] | None = None
        self._burst: _RpcRule | None = None  # the rest of a burst: RPCs left to fail, and how
        self._changes: list[list[Any]] = []  # alter(): [rpc, change, times left, when]
        self._lock = threading.Lock()
        #: How many times each point was reached (``rpc:NAME`` included).
        self.hits: dict[str, int] = {}
        #: How many times each point rule actually fired.
        self.fired: dict[str, int] = {}
        #: How many RPC faults were injected, by kind: ``ambiguous_commit``,
        #: ``empty_page``, ``aborted_commit``, ``unavailable``.
        self.injected: collections.Counter[str] = collections.Counter()

    # -- faults at named points -------------------------------------------------------

    def crash_at(
        self, point: str, times: int = 1, when: Callable[[Info], bool] | None = None
    ) -> FaultPlan:
        """Simulate the process dying at ``point`` (the next ``times`` matches)."""
        return self.raise_at(point, lambda: SimulatedCrash(point), times, when)

    def raise_at(
        self,
        point: str,
        error: Callable[[], BaseException],
        times: int = 1,
        when: Callable[[Info], bool] | None = None,
    ) -> FaultPlan:
        """Raise ``error()`` at ``point`` the next ``times`` times ``when`` holds."""

        def action(info: Info) -> None:
            raise error()

        return self._add(point, action, times, when)

    def stall_at(
        self,
        point: str,
        seconds: float,
        times: int = 1,
        when: Callable[[Info], bool] | None = None,
    ) -> FaultPlan:
        """Wait ``seconds`` at ``point`` (a batch that outlasts its lease, a slow RPC)."""
        return self._add(point, lambda info: time.sleep(seconds), times, when)

    def call_at(
        self,
        point: str,
        fn: Callable[[Info], None],
        times: int = 1,
        when: Callable[[Info], bool] | None = None,
    ) -> FaultPlan:
        """Call ``fn(info)`` at ``point``: make something happen at exactly that moment
        (a pause landing just before finalize, a second start of the same job)."""
        return self._add(point, fn, times, when)

    def _add(
        self,
        point: str,
        action: Callable[[Info], None],
        times: int | None,
        when: Callable[[Info], bool] | None,
    ) -> FaultPlan:
        self._rules.append(_PointRule(point, action, times, when))
        return self

    def __call__(self, point: str, info: Info) -> None:
        actions = []
        with self._lock:
            self.hits[point] = self.hits.get(point, 0) + 1
            for rule in self._rules:
                if rule.point != point or rule.remaining == 0:
                    continue
                if rule.when is not None and not rule.when(info):
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                self.fired[point] = self.fired.get(point, 0) + 1
                actions.append(rule.action)
        for action in actions:  # outside the lock: a stall must not stop other threads
            action(info)

    # -- faults at the RPC boundary --------------------------------------------------

    def ambiguous_commits(
        self,
        rate: float = 1.0,
        times: int | None = None,
        errors: Sequence[ErrorFactory] = AMBIGUOUS,
        transactional: bool | None = None,
        when: Callable[[Any], bool] | None = None,
    ) -> FaultPlan:
        """Commits that APPLY and then raise one of ``errors`` (the answer was lost).

        ``transactional`` limits them to transactional (True) or other (False)
        commits; ``when(request)`` picks commits by their CommitRequest.
        """

        def pick(request: Any) -> bool:
            if transactional is not None and is_transactional(request) != transactional:
                return False
            return when is None or bool(when(request))

        return self._add_rpc(_RpcRule("ambiguous_commit", rate, times, pick, _COMMIT, errors))

    def empty_pages(
        self, rate: float = 1.0, times: int | None = None, when: Callable[[Any], bool] | None = None
    ) -> FaultPlan:
        """RunQuery answered by an empty page marked NOT_FINISHED.

        Its end cursor is the request's start cursor, so the next request asks the
        same thing again and goes on where the real page would have.
        """
        if rate >= 1.0 and times is None:
            raise ValueError("empty pages at rate 1 without a bound: no query would ever end")
        return self._add_rpc(_RpcRule("empty_page", rate, times, when, _RUN_QUERY))

    def aborted_commits(
        self, rate: float = 1.0, times: int | None = None, when: Callable[[Any], bool] | None = None
    ) -> FaultPlan:
        """Transactional commits refused with ABORTED (contention); nothing applies."""

        def pick(request: Any) -> bool:
            return is_transactional(request) and (when is None or bool(when(request)))

        errors = (core_exceptions.Aborted,)
        return self._add_rpc(_RpcRule("aborted_commit", rate, times, pick, _COMMIT, errors))

    def unavailable_bursts(
        self,
        rate: float,
        length: int = 3,
        times: int | None = None,
        rpcs: Sequence[str] | None = None,
        error: ErrorFactory = core_exceptions.ServiceUnavailable,
    ) -> FaultPlan:
        """With probability ``rate`` an RPC starts a burst: it and the next ``length - 1``
        RPCs (of ``rpcs``, default all) fail with ``error`` before reaching the server.

        ``times`` bounds the number of bursts; pass ``error=core_exceptions.TooManyRequests``
        for RESOURCE_EXHAUSTED.
        """
        names = None if rpcs is None else frozenset(rpcs)
        rule = _RpcRule("unavailable", rate, times, None, names, (error,), max(1, length))
        return self._add_rpc(rule)

    def latency(
        self, seconds: float, jitter: float = 0.0, rpcs: Sequence[str] | None = None
    ) -> FaultPlan:
        """Every RPC (of ``rpcs``) waits ``seconds`` (+ up to ``jitter``) before it goes out."""
        self._latency = (seconds, jitter, None if rpcs is None else frozenset(rpcs))
        return self

    def _add_rpc(self, rule: _RpcRule) -> FaultPlan:
        if not 0.0 <= rule.rate <= 1.0:
            raise ValueError(f"a rate is a probability in [0, 1], got {rule.rate!r}")
        rule.random = self._stream(f"{rule.kind}/{len(self._rpc_rules)}")
        self._rpc_rules.append(rule)
        return self

    def _stream(self, name: str) -> random.Random:
        return random.Random(None if self.seed is None else f"{self.seed}/{name}")

    def alter(
        self,
        rpc: str,
        change: Callable[[Any, Any], Any],
        times: int = 1,
        when: Callable[[Any], bool] | None = None,
    ) -> FaultPlan:
        """Answer the next ``times`` calls of ``rpc`` (``"RunQuery"``, ...) whose request
        ``when`` accepts with ``change(request, response)`` instead of the real response:
        for shapes of answer the rate-based faults do not draw (``short_page(n)``, ...).
        """
        self._changes.append([rpc, change, times, when])
        return self

    def rpc(self, name: str, request: Any, send: Send) -> Any:
        """Wrap one RPC (a Runtime's Store calls this for every RPC it makes)."""
        self(f"rpc:{name}", {"request": request})
        delay, fault = self._decide(name, request)
        if delay:
            time.sleep(delay)
        if fault is None:
            return self._altered(name, request, send(request))
        kind, error = fault
        if error is None:  # the one fault that answers instead of failing
            return empty_page(request)
        if kind == "ambiguous_commit":
            send(request)
            raise error(f"injected: the commit applied, then its answer was lost ({name})")
        raise error(f"injected {kind} ({name})")

    def _altered(self, name: str, request: Any, response: Any) -> Any:
        with self._lock:
            for rule in self._changes:
                rpc, change, remaining, when = rule
                if rpc == name and remaining > 0 and (when is None or when(request)):
                    rule[2] -= 1
                    self.fired[f"alter:{name}"] = self.fired.get(f"alter:{name}", 0) + 1
                    break
            else:
                return response
        return change(request, response)

    def _decide(
        self, name: str, request: Any
    ) -> tuple[float, tuple[str, ErrorFactory | None] | None]:
        """Latency and the fault for one RPC, drawn under the lock from the seeded stream."""
        with self._lock:
            delay = 0.0
            if self._latency is not None:
                seconds, jitter, rpcs = self._latency
                if rpcs is None or name in rpcs:
                    delay = seconds + (self.random.random() * jitter if jitter else 0.0)
            burst = self._burst
            if burst is not None and (burst.rpcs is None or name in burst.rpcs):
                self._burst = dataclasses.replace(burst, length=burst.length - 1)
                if burst.length <= 1:
                    self._burst = None
                self.injected[burst.kind] += 1
                return delay, (burst.kind, burst.errors[0])
            for rule in self._rpc_rules:
                if not rule.applies(name, request) or rule.random.random() >= rule.rate:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                error = rule.random.choice(rule.errors) if rule.errors else None
                if rule.length > 1 and error is not None:  # the rest of a burst
                    self._burst = dataclasses.replace(rule, length=rule.length - 1, errors=[error])
                self.injected[rule.kind] += 1
                return delay, (rule.kind, error)
            return delay, None

    # -- from a string (a subprocess, a benchmark) -----------------------------------

    @classmethod
    def from_spec(cls, spec: str) -> FaultPlan:
        """A plan from ``"seed=7,latency=0.02,ambiguous=0.05,empty=0.1,aborted=0.05,
        unavailable=0.01"`` (rates per RPC; latency in seconds; all optional)."""
        values: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, raw = item.partition("=")
            if not sep or name not in _SPEC_NAMES:
                raise ValueError(f"fault spec items are NAME=NUMBER with NAME in {_SPEC_NAMES}")
            values[name] = float(raw)
        plan = cls(seed=int(values.get("seed", 0)))
        if values.get("latency"):
            plan.latency(values["latency"], values.get("jitter", 0.0))
        if values.get("ambiguous"):
            plan.ambiguous_commits(rate=values["ambiguous"])
        if values.get("empty"):
            plan.empty_pages(rate=values["empty"])
        if values.get("aborted"):
            plan.aborted_commits(rate=values["aborted"])
        if values.get("unavailable"):
            plan.unavailable_bursts(rate=values["unavailable"])
        return plan


_COMMIT = frozenset({"Commit"})
_RUN_QUERY = frozenset({"RunQuery"})
_SPEC_NAMES = ("seed", "latency", "jitter", "ambiguous", "empty", "aborted", "unavailable")


def is_transactional(request: Any) -> bool:
    """True for a CommitRequest that commits a transaction."""
    return bool(request.mode == CommitRequest.TRANSACTIONAL)


def empty_page(request: Any, response: Any = None) -> Any:
    """The answer to a RunQueryRequest: no entities, NOT_FINISHED, the same cursor.

    (``response``, the real answer, is ignored: the signature :meth:`FaultPlan.alter` takes.)
    """
    response = RunQueryResponse()
    query = request.query
    response.query.CopyFrom(query)
    batch = response.batch
    batch.more_results = MoreResults.NOT_FINISHED
    batch.end_cursor = query.start_cursor
    projected = [p.property.name for p in query.projection]
    if projected == ["__key__"]:
        batch.entity_result_type = ResultType.KEY_ONLY
    elif projected:
        batch.entity_result_type = ResultType.PROJECTION
    else:
        batch.entity_result_type = ResultType.FULL
    return response


def short_page(size: int) -> Callable[[Any, Any], Any]:
    """A RunQuery change for :meth:`FaultPlan.alter`: keep the first ``size`` results and
    say NOT_FINISHED after them (production cuts pages by bytes and time, not by the
    limit asked for)."""

    def change(request: Any, response: Any) -> Any:
        results = response.batch.entity_results
        if len(results) <= size:
            return response
        short = type(response)()
        short.CopyFrom(response)
        del short.batch.entity_results[size:]
        short.batch.more_results = MoreResults.NOT_FINISHED
        short.batch.end_cursor = results[size - 1].cursor
        return short

    return change
