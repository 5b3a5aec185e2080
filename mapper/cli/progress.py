"""Progress display for long jobs on a terminal (or periodic lines in a log)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

#: The longest the CLI waits between two status reads of a running job: it starts at
#: a quarter second and grows, so a long job is not slowed by its own progress bar
#: (each read is Datastore lookups, which the emulators serve on the job's cores).
MAX_POLL = 1.0


class Progress:
    """Renders a job's, export's or import's status as a bar (tty) or a line every few seconds.

    Pass it as ``wait(progress=Progress(total))``: it reads ``status``,
    ``counters``, ``shards`` and ``shards_done`` of each status it is given.
    """

    def __init__(self, total: int | None, stream: TextIO | None = None, every: float = 2.0):
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every
        self.started = time.monotonic()
        self._last_print = 0.0

    def __call__(self, status: Any) -> None:
        now = time.monotonic()
        final = status.status.is_final
        if not self.tty and not final and now - self._last_print < self.every:
            return
        self._last_print = now
        line = self.render(status, now - self.started)
        if self.tty:
            self.stream.write("\r\033[K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def render(self, status: Any, elapsed: float) -> str:
        done = status.counters.get("processed", 0)
        total = self.total or getattr(status, "planned", None)
        rate = done / elapsed if elapsed > 0 else 0.0
        shards = f"shards {status.shards_done}/{len(status.shards)} done"
        if total:
            frac = min(1.0, done / total)
            bar = "#" * int(frac * 30) + "-" * (30 - int(frac * 30))
            count = f"[{bar}] {done}/{total} ({frac:.0%})"
        else:
            count = f"{done} processed"
        if getattr(status, "namespaces_total", None) is not None:
            shards += f", namespaces {status.namespaces_done}/{status.namespaces_total}"
        return f"{count}  {rate:,.0f}/s  {shards}  {status.status.value}{_throttling(status)}"


def _throttling(status: Any) -> str:
    """The rate budget, for a job that has one: allowed, measured, seconds throttled."""
    allowed = getattr(status, "allowed_rate", None)
    if allowed is None:
        return ""
    rate = getattr(status, "rate", 0.0) or 0.0
    throttled = getattr(status, "throttled_seconds", 0.0) or 0.0
    return f"  allowed {allowed:,.0f}/s, measured {rate:,.0f}/s, throttled {throttled:,.0f}s"
