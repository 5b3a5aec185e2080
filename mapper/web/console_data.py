"""What the console shows of one job: its status plus rates, ETA and progress samples.

The JSON API (``GET /_mapper/jobs/<id>``) answers with exactly this, and the job page
is rendered from it, so the page never knows more than an API client.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from mapper.engine.progress import remaining_entities
from mapper.engine.runtime import Runtime
from mapper.web.jobs_api import any_status

logger = logging.getLogger(__name__)

#: "Rate now" is measured over the last this many seconds.
RATE_WINDOW = 30.0
#: The most points of a job's merged samples (the chart needs no more).
MAX_POINTS = 120
#: Seconds a shard count is reused: many viewers polling every 2 s cost one COUNT per shard.
COUNT_TTL = 5.0

#: What each job status lets an operator do from the page.
ACTIONS = {
    "starting": ("abort",),
    "running": ("pause", "abort"),
    "paused": ("resume", "abort"),
}


class CountCache:
    """Remaining-entity counts per job, reused for COUNT_TTL seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, dict[int, int] | str, dict[int, int]]] = {}

    def remaining(
        self, rt: Runtime, job_id: str, processed: dict[int, int]
    ) -> dict[int, int] | str:
        """Per unfinished shard, the entities left; or why that is unknown (a str).

        A reused count is brought up to date with what each shard processed since.
        """
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(job_id)
        if hit is None or now - hit[0] >= COUNT_TTL:
            try:
                counted: dict[int, int] | str = remaining_entities(rt, job_id)
            except Exception as error:  # no count query on this store, or it failed: say so
                logger.info("count for job %s failed: %s", job_id, error)
                counted = f"unknown: this store answers no count query ({type(error).__name__})"
            hit = (now, counted, dict(processed))
            with self._lock:
                self._cache[job_id] = hit
        _, found, then = hit
        if isinstance(found, str):
            return found
        return {i: max(0, n - (processed.get(i, 0) - then.get(i, 0))) for i, n in found.items()}


def job_view(rt: Runtime, job_id: str, counts: CountCache | None = None) -> dict[str, Any]:
    """A job's (or an export's or an import's) status with what the console adds."""
    data = any_status(rt, job_id)
    now = time.time()
    shards = data["shards"]
    origin = _epoch(data.get("created")) or _first_time(shards)
    end = (
        _epoch(data.get("finished"))
        if data["status"] in ("succeeded", "failed", "aborted")
        else None
    )
    samples = merged_samples([s.get("samples") or [] for s in shards], origin)
    processed = data["counters"].get("processed", 0)
    data["samples"] = samples
    data["rate_now"] = rate_now(samples, end or now) if end is None else None
    data["rate_average"] = _average(processed, origin, end or now)
    data["actions"] = list(ACTIONS.get(data["status"], ())) if "kind" not in data else []
    data["max_attempts"] = rt.settings.max_attempts
    _add_remaining(rt, data, counts)
    _link_parts(data)
    return data


def _link_parts(data: dict[str, Any]) -> None:
    """Name the job behind each stage of an import and each kind of an export."""
    if data.get("kind") == "import":
        for index, stage in enumerate(data["stages"]):
            stage["job"] = f"{data['id']}-{index}"
    elif data.get("kind") == "export":
        for kind, job in zip(data["kinds"], data["jobs"], strict=True):
            kind["job"] = job


def _add_remaining(rt: Runtime, data: dict[str, Any], counts: CountCache | None) -> None:
    """``remaining``, ``total``, ``eta_seconds`` and each shard's ``fraction``."""
    data.update(remaining=None, total=None, eta_seconds=None, count_note=None)
    for shard in data["shards"]:
        done = shard["status"] == "done"
        shard["remaining"] = 0 if done else None
        shard["fraction"] = 1.0 if done else None
    if "kind" in data:
        data["count_note"] = f"an {data['kind']} is several jobs: see each one for its ETA"
        return
    if data["status"] in ("succeeded", "failed", "aborted", "finalizing"):
        return
    processed = {s["index"]: s["counters"].get("processed", 0) for s in data["shards"]}
    left = (counts or CountCache()).remaining(rt, data["id"], processed)
    if isinstance(left, str):
        data["count_note"] = left
        return
    for shard in data["shards"]:
        if shard["index"] in left:
            shard["remaining"] = left[shard["index"]]
            got = shard["counters"].get("processed", 0)
            shard["fraction"] = (
                got / (got + shard["remaining"]) if got + shard["remaining"] else 1.0
            )
    remaining = sum(left.values())
    data["remaining"] = remaining
    data["total"] = data["counters"].get("processed", 0) + remaining
    rate = data["rate_now"] or data["rate_average"]
    if data["status"] == "running" and rate:
        data["eta_seconds"] = round(remaining / rate, 1)


def merged_samples(
    per_shard: Iterable[Sequence[Sequence[float]]], origin: float | None
) -> list[Any]:
    """One series for the job: at each sample time, the sum of every shard's latest value.

    Starts at ``[origin, 0]`` (the job's creation) and keeps at most MAX_POINTS points
    (evenly thinned, first and last kept).
    """
    series = [sorted((float(t), int(v)) for t, v in shard) for shard in per_shard]
    times = sorted({t for shard in series for t, _ in shard})
    latest = [0] * len(series)
    cursor = [0] * len(series)
    points: list[Any] = [[origin, 0]] if origin is not None else []
    for at in times:
        for i, shard in enumerate(series):
            while cursor[i] < len(shard) and shard[cursor[i]][0] <= at:
                latest[i] = shard[cursor[i]][1]
                cursor[i] += 1
        points.append([round(at, 3), sum(latest)])
    if len(points) > MAX_POINTS:
        step = (len(points) - 1) / (MAX_POINTS - 1)
        points = [points[round(i * step)] for i in range(MAX_POINTS)]
    return points


def rate_now(samples: Sequence[Sequence[float]], now: float) -> float | None:
    """Entities a second over the last RATE_WINDOW seconds up to ``now`` (None: no samples)."""
    if not samples:
        return None
    start = max(samples[0][0], now - RATE_WINDOW)
    if now <= start:
        return None
    return round((samples[-1][1] - value_at(samples, start)) / (now - start), 2)


def value_at(samples: Sequence[Sequence[float]], at: float) -> float:
    """The series at time ``at``, linear between samples."""
    before = [s for s in samples if s[0] <= at]
    after = [s for s in samples if s[0] > at]
    if not before:
        return 0.0
    if not after:
        return float(before[-1][1])
    (t0, v0), (t1, v1) = before[-1], after[0]
    return v0 + (v1 - v0) * (at - t0) / (t1 - t0)


def _average(processed: int, origin: float | None, end: float) -> float | None:
    if origin is None or end <= origin:
        return None
    return round(processed / (end - origin), 2)


def _epoch(iso: str | None) -> float | None:
    return None if not iso else datetime.datetime.fromisoformat(iso).timestamp()


def _first_time(shards: list[dict[str, Any]]) -> float | None:
    times = [s["samples"][0][0] for s in shards if s.get("samples")]
    return min(times) if times else None


def duration_text(seconds: float | None) -> str:
    """``1h 02m``, ``3m 20s``, ``12s``: an ETA or an age as an operator reads it."""
    if seconds is None:
        return ""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"
