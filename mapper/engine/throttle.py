"""Throttle: a job's rate budget (max rate, the 500/50/5 ramp-up), paced per shard, and
client-side back-off when Datastore pushes back.

A job's allowed rate (entities written + deleted per second; entities read for a
mapper that does not write) is the lower of its ``max_rate`` and, with ramp-up on,
``start * growth ** floor(running seconds / step)``. Each running shard gets an equal
share, re-divided as shards finish. A shard paces its batches (a batch may start once
the one before it has been "paid for" at the shard's rate: no credit is saved up, so
a late batch never makes a burst) and cuts its batches small enough (about
``BATCH_SECONDS`` of its rate) that any 5-second window holds close to 5 seconds' worth.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import math
import random
import time
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as core_exceptions

#: A throttled batch holds about this many seconds of its shard's rate.
BATCH_SECONDS = 0.2
#: Errors that say "slow down" (contention counts: it is load on the same entities).
PUSHBACK = (
    core_exceptions.TooManyRequests,
    core_exceptions.ServiceUnavailable,
    core_exceptions.DeadlineExceeded,
    core_exceptions.Aborted,
)
#: The client-side throttling rule's K: reject locally once requests exceed K x accepts.
OVERLOAD = 1.25
#: Measured rate: what the shard did over the last this many seconds.
RATE_WINDOW = 10.0


@dataclasses.dataclass(frozen=True)
class RampUp:
    """The 500/50/5 rule: ``start`` ops/s, times ``growth`` every ``step_seconds``."""

    start: float = 500.0
    growth: float = 1.5
    step_seconds: float = 300.0

    def rate_at(self, elapsed: float) -> float:
        """The ramp's rate ``elapsed`` seconds into the job's running time."""
        steps = math.floor(max(0.0, elapsed) / self.step_seconds)
        return float(self.start * self.growth ** min(steps, 200))


def allowed_rate(max_rate: float | None, ramp: RampUp | None, elapsed: float) -> float | None:
    """The job's rate now: the lower of ``max_rate`` and the ramp; None for no limit."""
    rates = [r for r in (max_rate, ramp.rate_at(elapsed) if ramp else None) if r is not None]
    return min(rates) if rates else None


class Pacer:
    """Spaces a shard's batches at a rate: each batch is paid for before the next starts."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.next_free: float | None = None

    def reserve(self, cost: float, rate: float) -> float:
        """Reserve ``cost`` ops at ``rate``; returns how long to wait before using them."""
        now = self.clock()
        start = max(now, self.next_free if self.next_free is not None else now)
        self.next_free = start + cost / rate
        return start - now

    def sent(self, cost: float, rate: float) -> None:
        """The batch's write leaves now: the next may not leave before it is paid for,
        however late this one was (a late write followed by one on time is no burst)."""
        due = self.clock() + cost / rate
        self.next_free = due if self.next_free is None else max(self.next_free, due)

    def wait_until(self, seconds: float) -> None:
        """Nothing goes out for ``seconds`` from now (a predecessor's debt)."""
        self.next_free = self.clock() + max(0.0, seconds)

    def debt(self) -> float:
        """Seconds until the budget spent so far is paid for (a successor waits them)."""
        return 0.0 if self.next_free is None else max(0.0, self.next_free - self.clock())

    def settle(self, difference: float, rate: float) -> None:
        """The batch cost ``difference`` more (or less) than reserved."""
        if self.next_free is not None:
            self.next_free = max(self.clock(), self.next_free + difference / rate)

    def cancel(self, cost: float, rate: float) -> None:
        """A reservation not used (the slice ends instead)."""
        self.settle(-cost, rate)


class Backoff:
    """Client-side throttling (Google SRE book, "Handling Overload"): over the last
    ``window`` seconds, reject a request locally with probability
    ``max(0, (requests - K * accepts) / (requests + 1))``.

    Only requests that reached Datastore count: a local rejection is not added (the
    book's variant adds them, which holds a lone client back long after the store
    recovered), so the shard is back at full rate one window after the errors stop.
    """

    def __init__(
        self,
        window: float,
        overload: float = OVERLOAD,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ):
        self.window = window
        self.overload = overload
        self.clock = clock
        self.rng = rng or random.Random()
        self._events: collections.deque[tuple[float, bool]] = collections.deque()

    def observe(self, error: BaseException | None) -> None:
        """One attempt of a write: None when it was accepted."""
        if error is None or isinstance(error, PUSHBACK):
            self._events.append((self.clock(), error is None))

    def reject_probability(self) -> float:
        horizon = self.clock() - self.window
        while self._events and self._events[0][0] < horizon:
            self._events.popleft()
        requests = len(self._events)
        accepts = sum(1 for _, ok in self._events if ok)
        return max(0.0, (requests - self.overload * accepts) / (requests + 1))

    def reject(self) -> bool:
        """True: hold this request back (with the rule's probability)."""
        p = self.reject_probability()
        return p > 0 and self.rng.random() < p


@dataclasses.dataclass
class ShardThrottle:
    """One slice's view of its job's budget: the shard's share, its pacing and back-off.

    ``count_active`` returns how many of the job's shards are still running; it is
    asked again every ``refresh`` seconds so the budget is re-divided as shards finish.
    """

    rule: RampUp
    ramp_up: bool
    max_rate: float | None
    ramp_started: float | None  # epoch seconds the ramp's clock started
    backoff: Backoff
    count_active: Callable[[], int]
    refresh: float = 2.0
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    pacer: Pacer = dataclasses.field(init=False)
    throttled_seconds: float = 0.0
    _active: int = 1
    _counted_at: float | None = None
    _done: collections.deque[tuple[float, int]] = dataclasses.field(
        default_factory=collections.deque
    )

    def __post_init__(self) -> None:
        self.pacer = Pacer(self.clock)

    def update(self, job: Any) -> None:
        """Take the job record's current budget (a throttle command may have changed it)."""
        self.max_rate = job.max_rate
        self.ramp_up = bool(job.ramp_up)
        self.ramp_started = _epoch(job.ramp_started)

    def job_rate(self) -> float | None:
        elapsed = self.wall() - self.ramp_started if self.ramp_started is not None else 0.0
        return allowed_rate(self.max_rate, self.rule if self.ramp_up else None, elapsed)

    def shard_rate(self) -> float | None:
        """This shard's share of the job's rate, or None when the job has no limit."""
        rate = self.job_rate()
        if rate is None:
            return None
        now = self.clock()
        if self._counted_at is None or now - self._counted_at >= self.refresh:
            self._active = max(1, self.count_active())
            self._counted_at = now
        return rate / self._active

    def batch_size(self, most: int) -> int:
        """How many entities the next batch takes: about BATCH_SECONDS of the shard's rate."""
        rate = self.shard_rate()
        if rate is None:
            return most
        return max(1, min(most, int(rate * BATCH_SECONDS)))

    def reserve(self, cost: int) -> tuple[float, float | None]:
        """Reserve ``cost`` ops; returns (seconds to wait, the rate reserved at)."""
        rate = self.shard_rate()
        if rate is None:
            return 0.0, None
        return self.pacer.reserve(cost, rate), rate

    def spent(self, reserved: int, cost: int, rate: float | None) -> None:
        """The batch is written: ``cost`` ops, against ``reserved`` at ``rate``."""
        if rate is not None and cost != reserved:
            self.pacer.settle(cost - reserved, rate)
        now = self.clock()
        self._done.append((now, cost))
        while self._done and self._done[0][0] < now - RATE_WINDOW:
            self._done.popleft()

    def measured_rate(self, since: float) -> float:
        """Ops per second over the last RATE_WINDOW seconds (or since ``since``)."""
        now = self.clock()
        span = min(RATE_WINDOW, now - since)
        if span <= 0:
            return 0.0
        return sum(c for t, c in self._done if t >= now - span) / span

    def waited(self, seconds: float) -> None:
        self.throttled_seconds += seconds


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    return float(value.replace(tzinfo=datetime.UTC).timestamp())
