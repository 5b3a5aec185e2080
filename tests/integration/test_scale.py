"""50,000 entities over 4 shards with duplicate deliveries and crashes: counters stay exact."""

from __future__ import annotations

import collections
import itertools
import threading
from typing import Any

from mapper.dispatch.messages import SliceTask
from mapper.engine.jobs import start_job
from mapper.engine.runtime import Runtime
from mapper.engine.spec import JobSpec
from mapper.testing.faults import FaultPlan
from tests.support.mappers import Person, seed_people_raw

ENTITIES = 50_000
BATCH = 250


class Chaos:
    """A fault hook: a FaultPlan's crashes plus duplicate deliveries of live and old slices."""

    def __init__(self, plan: FaultPlan):
        self.plan = plan
        self.runtime: Runtime | None = None
        self.duplicates = 0
        self._calls = itertools.count()
        self._lock = threading.Lock()

    def __call__(self, point: str, info: dict[str, Any]) -> None:
        if point in ("after_checkpoint", "before_enqueue") and self.runtime is not None:
            with self._lock:
                n = next(self._calls)
            # Every 5th checkpoint: the running slice is delivered again while it
            # holds its lease; every 4th end of slice: the finished slice once more.
            if (point == "after_checkpoint" and n % 5 == 0) or (
                point == "before_enqueue" and n % 4 == 0
            ):
                self.duplicates += 1
                task = SliceTask(info["job_id"], info["shard"], info["slice"], 0)
                self.runtime.dispatcher.deliver(task)  # type: ignore[attr-defined]
        self.plan(point, info)


def test_touch_50k_entities_on_4_shards_under_duplicates_and_crashes_counts_exactly(
    settings, namespace, datastore_client, needs_scatter
):
    seed_people_raw(datastore_client, ENTITIES)
    plan = FaultPlan()
    # Every slice has a batch 0, so these fire however the time boxes fall.
    plan.crash_at("after_write", times=4, when=lambda info: info["batch"] == 0)
    plan.crash_at("before_enqueue", times=3)
    plan.crash_at("before_batch", times=2, when=lambda info: info["batch"] == 0)
    chaos = Chaos(plan)
    rt = Runtime(settings.replace(slice_seconds=3.0), faults=chaos)
    chaos.runtime = rt
    try:
        spec = JobSpec(
            mapper="tests.support.mappers:TouchPeople",
            namespace=namespace,
            shards=4,
            batch_size=BATCH,
        )
        status = start_job(rt, spec).wait(timeout=400)
        rt.dispatcher.wait_idle(60)  # type: ignore[attr-defined]
        with rt.context(namespace):
            touched = collections.Counter(
                p.touched for p in Person.query().iter(projection=[Person.touched])
            )
    finally:
        rt.close()

    assert status.status == "succeeded"
    # A duplicate that took a slice over after its lease ran out can overlap its twin's
    # last batch: the conditional writes catch it and count ``conflicts``; the rest is exact.
    exact = {k: v for k, v in status.counters.items() if k != "conflicts"}
    assert exact == {"processed": ENTITIES, "put": ENTITIES, "deleted": 0}
    assert len(status.shards) == 4
    assert sum(s.counters["processed"] for s in status.shards) == ENTITIES
    assert chaos.duplicates >= 4
    assert plan.fired == {"after_write": 4, "before_enqueue": 3, "before_batch": 2}
    assert sum(touched.values()) == ENTITIES
    assert min(touched) >= 1  # every entity touched
    # At least once, and at most the batch in flight replayed per failure: each crash,
    # and each duplicate that took a slice over after its lease ran out under load.
    replays = sum((times - 1) * count for times, count in touched.items())
    events = sum(plan.fired.values()) + chaos.duplicates
    # The crashes after a write did replay their batch (a replay is again its slice's
    # batch 0, so one batch can take several of the crashes: touched 3 or more times).
    assert replays > 0
    assert replays <= events * BATCH
