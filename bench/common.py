"""What the benchmarks share: seeding, measuring a child's run, one child per variant.

Imports nothing of mapper at module level: the Beam child runs in a virtualenv of
its own and uses the measuring half of this module too.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

KIND = "Item"
EMULATORS = ("datastore", "firestore")


def seed_items(client: Any, namespace: str, n: int, **extra: Any) -> None:
    """n small ``Item`` entities (name, n, flag, touched and ``extra``), 500 a put."""
    from google.cloud import datastore

    for start in range(0, n, 500):
        batch = []
        for i in range(start, min(n, start + 500)):
            entity = datastore.Entity(client.key(KIND, namespace=namespace))
            entity.update({"name": f"item {i}", "n": i, "flag": i % 2 == 0, "touched": 0, **extra})
            batch.append(entity)
        client.put_multi(batch)


#: The page limit of the raw client's walks: the Firestore emulator answers an unlimited
#: query in one response, which google-cloud-datastore refuses over 4 MiB (about 21,000
#: items); 20,000 is the same limit mapper's stream asks for.
RAW_PAGE = 20_000


def fetch_all(client: Any, namespace: str, keys_only: bool = False) -> Iterator[Any]:
    """Every item, as a google-cloud-datastore user pages a query: limit and cursor."""
    cursor = None
    while True:
        query = client.query(kind=KIND, namespace=namespace)
        if keys_only:
            query.keys_only()
        page = query.fetch(limit=RAW_PAGE, start_cursor=cursor)
        count = 0
        for entity in page:
            count += 1
            yield entity
        cursor = page.next_page_token
        if count < RAW_PAGE or not cursor:
            return


# -- measuring, inside a child ----------------------------------------------------------


class RpcCounter:
    """Counts Datastore RPCs by method on every gRPC channel to the emulator.

    Installed before any client exists: it wraps ``grpc.insecure_channel`` (which
    ndb, google-cloud-datastore and so mapper's Store use against an emulator) in
    a client interceptor, so the raw client, ndb, mapper and Beam count alike.
    """

    def __init__(self) -> None:
        import grpc

        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        counter = self

        class Interceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
            def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
                service, _, method = details.method.rpartition("/")
                if service.endswith("datastore.v1.Datastore"):
                    counter.add(method)
                return continuation(details, request)

        original = grpc.insecure_channel

        def insecure_channel(*args: Any, **kwargs: Any) -> Any:
            return grpc.intercept_channel(original(*args, **kwargs), Interceptor())

        grpc.insecure_channel = insecure_channel
        try:  # google-cloud-datastore imported the name itself
            from google.cloud.datastore import _gapic

            _gapic.insecure_channel = insecure_channel  # type: ignore[attr-defined]
        except ImportError:
            pass

    def add(self, method: str) -> None:
        with self._lock:
            self.counts[method] = self.counts.get(method, 0) + 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


def measure(fn: Callable[[], Any], rpcs: RpcCounter) -> dict[str, Any]:
    """Run ``fn``: wall seconds, process CPU seconds (all threads), RPCs by method, peak RSS."""
    before_rpcs = rpcs.snapshot()
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    fn()
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    counts = {k: v - before_rpcs.get(k, 0) for k, v in rpcs.snapshot().items()}
    return {
        "seconds": seconds,
        "cpu": cpu,
        "rpcs": {k: v for k, v in counts.items() if v},
        "rss_mb": after.ru_maxrss / 1024,
    }


# -- running children, in the parent ----------------------------------------------------


def spawn(command: Sequence[str], env: dict[str, str], label: str) -> dict[str, Any]:
    """Run one child; its last stdout line is its JSON result."""
    done = subprocess.run(list(command), env=env, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"{label} failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def emulator_env(emulator: Any) -> dict[str, str]:
    """The environment of a child that talks to ``emulator``; mapper's own state namespace."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, **emulator.env, "PYTHONPATH": path}


def per_thousand(result: dict[str, Any]) -> dict[str, float]:
    """RPCs per 1,000 entities, by method."""
    n = result["n"]
    return {method: count * 1000 / n for method, count in sorted(result["rpcs"].items())}


def fmt_rpcs(rpcs: dict[str, float]) -> str:
    short = {"RunQuery": "Q", "Lookup": "L", "Commit": "C", "BeginTransaction": "B",
             "Rollback": "R", "AllocateIds": "A", "RunAggregationQuery": "Agg"}  # fmt: skip
    return " ".join(f"{short.get(m, m)}{v:.2f}" for m, v in rpcs.items() if v >= 0.005)
