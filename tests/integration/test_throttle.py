"""Throughput control: a job-wide rate limit, the ramp-up, back-off, counted at the RPC boundary.

Writes are counted where they leave the process: every ``Commit`` the Store sends
passes the fault plan's ``rpc:Commit`` point, which tallies the Person mutations in it
with the time. The measured numbers are written to ``bench/results/throttle-*.json``
(the ramp-up one draws docs/ramp-up.svg, see bench/ramp_svg.py).
"""

from __future__ import annotations

import bisect
import collections
import json
import os
import pathlib
import random
import threading
import time

from google.api_core import exceptions as core_exceptions
from google.cloud import ndb

from mapper.datastore import txn as txns
from mapper.engine.jobs import start_job, throttle_job
from mapper.engine.records import job_key, shard_key
from mapper.engine.samples import epoch
from mapper.engine.spec import JobSpec
from tests.support.mappers import Person

#: Where the rate tests keep their numbers for ``python -m bench.throttle_svg``: set
#: ``MAPPER_THROTTLE_RESULTS=bench/results`` to redraw docs/ramp-up.svg and backoff.svg
#: (a plain run leaves the checkout as it was).
RESULTS = os.environ.get("MAPPER_THROTTLE_RESULTS")


class CommitCounter:
    """Person mutations per Commit sent, with their (wall clock) times."""

    def __init__(self, fail=None, kind="Person"):
        self.kind = kind
        self.events: list[tuple[float, int]] = []
        self.threads: list[str] = []
        self.lock = threading.Lock()
        self.fail = fail  # fail(now) -> bool: refuse this commit with RESOURCE_EXHAUSTED

    def __call__(self, info):
        request = info["request"]
        n = sum(
            1
            for m in request.mutations
            if (m.upsert.key if m.HasField("upsert") else m.delete).path[-1].kind == self.kind
        )
        if not n:
            return
        now = time.time()
        if self.fail is not None and self.fail(now):
            raise core_exceptions.TooManyRequests("injected: RESOURCE_EXHAUSTED")
        with self.lock:
            self.events.append((now, n))
            self.threads.append(threading.current_thread().name)

    def max_in_window(self, seconds: float) -> int:
        times = [t for t, _ in self.events]
        counts = [n for _, n in self.events]
        best = 0
        for i, start in enumerate(times):
            j = bisect.bisect_left(times, start + seconds)
            best = max(best, sum(counts[i:j]))
        return best

    def per_window(self, origin: float, seconds: float, windows: int) -> list[float]:
        """Rates (ops/s) in consecutive windows of ``seconds`` from ``origin``."""
        totals = [0] * windows
        for t, n in self.events:
            k = int((t - origin) // seconds)
            if 0 <= k < windows:
                totals[k] += n
        return [total / seconds for total in totals]


def seed_people(runtime, namespace, n):
    """n people; returns their sorted ids (for even split points)."""
    with runtime.context(namespace):
        keys = []
        for i in range(0, n, 500):
            keys += ndb.put_multi([Person(name=f"p{j:05d}") for j in range(i, min(n, i + 500))])
    return sorted(k.id() for k in keys)


def split_spec(runtime, namespace, ids, shards, **options):
    """A TouchPeople job split into ``shards`` even ranges on both emulators."""
    step = len(ids) // shards
    params = {
        "project": runtime.settings.project,
        "namespace": namespace,
        "split": [ids[i * step] for i in range(1, shards)],
    }
    return JobSpec(
        mapper="tests.support.mappers:SplitAt",
        params=params,
        namespace=namespace,
        shards=shards,
        **options,
    )


def warm_up(runtime, namespace):
    """A small job first, in a namespace of its own: each test module starts a fresh
    emulator, whose first queries and transactions run 2-3x slower (cold JIT), and the
    rate tests measure the throttle, not the emulator's warm-up."""
    warm = f"{namespace}-warm"
    seed_people(runtime, warm, 300)
    spec = JobSpec(mapper="tests.support.mappers:TouchPeople", namespace=warm, shards=2)
    assert start_job(runtime, spec).wait(timeout=60).status == "succeeded"


def touched(runtime, namespace):
    with runtime.context(namespace):
        return collections.Counter(p.touched for p in Person.query().fetch())


def save(name, data):
    if RESULTS:
        folder = pathlib.Path(RESULTS)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"throttle-{name}.json").write_text(json.dumps(data, indent=1))


#: The rate tests run production-like slices: the test settings' 5-s box restarts every
#: shard's query stream 100 times as often as production's 540 s, and on the Firestore
#: emulator each restart costs a query in proportion to the kind (measured: the 200/s job
#: took 34.3 s there with 5-s slices). test_a_new_slice_... covers slice boundaries.
LONG_SLICES = 60.0


def test_max_rate_200_holds_every_5_second_window_and_finishes_in_30_seconds(
    runtime, namespace, faults
):
    runtime.settings = runtime.settings.replace(slice_seconds=LONG_SLICES)
    warm_up(runtime, namespace)
    ids = seed_people(runtime, namespace, 6000)
    counter = CommitCounter()
    faults.call_at("rpc:Commit", counter, times=None)
    began = time.time()
    job = start_job(runtime, split_spec(runtime, namespace, ids, 2, max_rate=200))
    status = job.wait(timeout=120)
    took = time.time() - began
    worst = counter.max_in_window(5.0)
    save(
        "max-rate-200",
        {"began": began, "seconds": took, "max_in_5s": worst, "events": counter.events},
    )
    assert status.status == "succeeded"
    assert status.counters["put"] == 6000
    assert touched(runtime, namespace) == {1: 6000}
    assert sum(n for _, n in counter.events) == 6000
    assert worst <= 200 * 1.1 * 5, worst
    assert 27.0 <= took <= 33.0, took
    assert status.max_rate == 200
    assert status.throttled_seconds > 0


def test_ramp_up_follows_the_rule_on_a_compressed_clock_across_4_shards(runtime, namespace, faults):
    runtime.settings = runtime.settings.replace(
        ramp_start_rate=100.0, ramp_growth=1.5, ramp_step_seconds=5.0, slice_seconds=LONG_SLICES
    )
    warm_up(runtime, namespace)
    ids = seed_people(runtime, namespace, 8000)
    counter = CommitCounter()
    faults.call_at("rpc:Commit", counter, times=None)
    job = start_job(runtime, split_spec(runtime, namespace, ids, 4, ramp_up=True))
    with runtime.context():
        record = txns.get(runtime.store, job_key(job.id, namespace))[0]
    origin = epoch(record.ramp_started)
    time.sleep(max(0.0, origin + 20.5 - time.time()))
    running = job.status()
    job.abort()
    runtime.dispatcher.wait_idle(30)
    measured = counter.per_window(origin, 5.0, 4)
    # The first window counts from the first write: the shards' first queries take
    # their time (the Datastore emulator's cold queries), which no rule can give back.
    first = counter.events[0][0]
    measured[0] *= 5.0 / (origin + 5.0 - first)
    rule = [100.0 * 1.5**k for k in range(4)]
    save(
        "ramp-up", {"origin": origin, "rule": rule, "measured": measured, "events": counter.events}
    )
    assert len(running.shards) == 4 and running.ramp_up
    for got, want in zip(measured, rule, strict=True):
        assert abs(got - want) <= 0.15 * want, (measured, rule)


def test_resource_exhausted_commits_slow_the_job_down_and_it_recovers_exactly(
    runtime, namespace, faults
):
    runtime.settings = runtime.settings.replace(backoff_window_seconds=2.0)
    ids = seed_people(runtime, namespace, 6000)
    # Every time is counted from the job's first write: its start (queries, shard
    # records; slower on a busy machine) is no part of the rate.
    origin: list[float] = []
    rng = random.Random(5)

    def fail(now):
        if not origin:
            origin.append(now)
        return 3.0 <= now - origin[0] < 8.0 and rng.random() < 0.5

    counter = CommitCounter(fail)
    faults.call_at("rpc:Commit", counter, times=None)
    backoffs: list[float] = []
    faults.call_at("backoff", lambda info: backoffs.append(time.time()), times=None)
    job = start_job(runtime, split_spec(runtime, namespace, ids, 2, max_rate=400))
    status = job.wait(timeout=120)
    rates = counter.per_window(origin[0], 1.0, int(time.time() - origin[0]))
    save("backoff", {"began": origin[0], "faults": [3.0, 8.0], "rates": rates})
    assert status.status == "succeeded"
    assert status.counters == {"processed": 6000, "put": 6000, "deleted": 0}
    assert touched(runtime, namespace) == {1: 6000}
    before, during, after = rates[0:3], rates[4:8], rates[10:13]
    assert min(before) >= 0.8 * 400, rates
    # Throttled batches are ~0.2 s of the rate (80 entities here), so one 1-s window can
    # hold a batch more or less than the next (measured: 240, 120, 280, 120): the rate
    # while the errors last is their mean.
    assert sum(during) / len(during) <= 0.6 * 400, rates
    assert min(after) >= 0.8 * 400, rates
    held = [t - origin[0] for t in backoffs]
    assert any(3.0 <= t < 8.5 for t in held), held
    assert not any(t >= 10.0 for t in held), held  # recovered: one window after the errors


def test_a_new_slice_writes_nothing_before_its_predecessors_budget_is_paid_for(
    runtime, namespace, faults
):
    """Slices of 1 s: each successor starts with the budget its predecessor spent
    (``paced_until``); a fresh pacer would send its first batch at once."""
    runtime.settings = runtime.settings.replace(slice_seconds=1.0)
    seed_people(runtime, namespace, 600)
    counter = CommitCounter()
    faults.call_at("rpc:Commit", counter, times=None)
    spec = JobSpec(mapper="tests.support.mappers:TouchPeople", namespace=namespace, max_rate=100)
    status = start_job(runtime, spec).wait(timeout=60)
    assert status.status == "succeeded"
    assert touched(runtime, namespace) == {1: 600}
    assert status.shards[0].slice >= 3
    times = [t for t, _ in counter.events]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.2 * 0.9, sorted(gaps)[:5]  # 20 entities a batch at 100/s


def test_a_running_job_takes_a_new_rate_at_its_next_batches(runtime, namespace, faults):
    ids = seed_people(runtime, namespace, 3000)
    counter = CommitCounter()
    faults.call_at("rpc:Commit", counter, times=None)
    began = time.time()
    job = start_job(runtime, split_spec(runtime, namespace, ids, 2, max_rate=100))
    time.sleep(4.0)
    info = throttle_job(runtime, job.id, 400)
    assert info.max_rate == 400
    status = job.wait(timeout=120)
    rates = counter.per_window(began, 2.0, int((time.time() - began) // 2))
    assert status.status == "succeeded"
    assert touched(runtime, namespace) == {1: 3000}
    assert max(rates[:2]) <= 110, rates
    assert max(rates[3:5]) >= 300, rates


def test_a_slice_waiting_long_for_budget_ends_and_its_successor_comes_later(
    runtime, namespace, faults
):
    runtime.settings = runtime.settings.replace(throttle_max_wait=0.5)
    seed_people(runtime, namespace, 5)
    began = time.time()
    job = start_job(
        runtime,
        JobSpec(mapper="tests.support.mappers:TouchPeople", namespace=namespace, max_rate=1),
    )
    status = job.wait(timeout=60)
    took = time.time() - began
    assert status.status == "succeeded"
    assert touched(runtime, namespace) == {1: 5}
    assert status.shards[0].slice >= 4  # a slice a batch: each ended to wait
    assert 3.5 <= took < 10, took
    with runtime.context():
        shard = txns.get(runtime.store, shard_key(job.id, 0, namespace))[0]
    assert shard.throttled_seconds >= 3.5


# -- the front ends: bad rates are refused before anything is written --------------------


def job_ids(runtime, namespace):
    from mapper.engine.records import _MapperJob

    with runtime.context():
        return [k.id() for k in _MapperJob.query(namespace=namespace).fetch(keys_only=True)]


def test_the_cli_refuses_a_bad_max_rate_before_any_write_and_throttles_a_running_job(
    cli, runtime, namespace
):
    seed_people(runtime, namespace, 20)
    for bad in ("0", "-3", "nan"):
        result = cli(
            "run", "tests.support.mappers:TouchPeople", "--namespace", namespace, "--max-rate", bad
        )
        assert result.exit_code == 2, result.output
        assert "max_rate must be" in result.output
    assert job_ids(runtime, namespace) == []
    done = cli(
        "run",
        "tests.support.mappers:TouchPeople",
        "--namespace",
        namespace,
        "--max-rate",
        "50",
        "--id",
        "slow",
    )
    assert done.exit_code == 0, done.output
    status = cli("status", "slow", "--json")
    assert json.loads(status.output)["max_rate"] == 50
    finished = cli("throttle", "slow", "--max-rate", "10")
    assert finished.exit_code == 2 and "can no longer change" in finished.output
    assert cli("throttle", "slow", "--max-rate", "-1").exit_code == 2
    assert cli("throttle", "slow").exit_code == 2  # nothing to change: a usage error


def test_the_http_api_takes_max_rate_at_start_and_on_a_running_job(runtime, namespace):
    from handlers import create_app

    seed_people(runtime, namespace, 400)
    app = create_app(runtime=runtime.__class__(runtime.settings.replace(auth="off")))
    client = app.test_client()
    try:
        bad = client.post(
            "/_mapper/jobs",
            json={
                "mapper": "tests.support.mappers:TouchPeople",
                "namespace": namespace,
                "max_rate": -1,
            },
        )
        assert bad.status_code == 400 and "max_rate" in bad.json["error"]
        assert job_ids(runtime, namespace) == []
        started = client.post(
            "/_mapper/jobs",
            json={
                "mapper": "tests.support.mappers:TouchPeople",
                "namespace": namespace,
                "max_rate": 50,
                "id": "web",
            },
        )
        assert started.status_code == 200, started.json
        refused = client.post("/_mapper/jobs/web/throttle", json={"max_rate": 0})
        assert refused.status_code == 400 and "max_rate" in refused.json["error"]
        page = client.get("/_mapper/console/web").get_data(as_text=True)
        assert "allowed rate" in page and "max rate 50.0/s" in page
        changed = client.post("/_mapper/jobs/web/throttle", json={"max_rate": 2000})
        assert changed.status_code == 200, changed.json
        assert changed.json["max_rate"] == 2000
        deadline = time.time() + 60
        while client.get("/_mapper/jobs/web").json["status"] != "succeeded":
            assert time.time() < deadline
            time.sleep(0.2)
        # 400 entities at 50/s would take 8 s; at 2000/s it is done far sooner
        assert touched(runtime, namespace) == {1: 400}
        assert client.post("/_mapper/jobs/nope/throttle", json={"max_rate": 5}).status_code == 404
    finally:
        app.extensions["mapper"].close()


def test_a_cleanup_apply_keeps_to_its_max_rate_and_refuses_a_bad_one_before_deleting(
    cli, namespace, datastore_client
):
    from tests.support.cleanup_seed import put

    put(datastore_client, "Order", 300, total=1, legacy_code="x")
    args = ["cleanup", "stale-properties", "--models", "tests.support.cleanup_models"]
    args += ["--namespace", namespace, "--apply", "--yes"]
    refused = cli(*args, "--max-rate", "0")
    assert refused.exit_code == 2 and "max_rate must be > 0" in refused.output
    assert all(e.get("legacy_code") for e in datastore_client.query(kind="Order").fetch())
    began = time.time()
    applied = cli(*args, "--max-rate", "100")
    took = time.time() - began
    assert applied.exit_code == 0, applied.output
    assert applied.stdout.splitlines()[-1] == "applied: Order=300"
    assert not any(e.get("legacy_code") for e in datastore_client.query(kind="Order").fetch())
    assert took >= 2.5, took  # 300 rewrites at 100/s (the first batch goes at once)
