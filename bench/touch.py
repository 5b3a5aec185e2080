"""Benchmark a touch job: our Mapper against a raw floor and the classic Mapper ported to ndb.

    .venv/bin/python -m bench.touch [--sizes 10000,50000] [--shards 4] [--batch-size 500]

For each size N, in a fresh child process against one Datastore emulator:
  raw floor      google-cloud-datastore: read every entity, write every entity back (500 a call)
  naive ndb      the 2009 deferred Mapper ported to ndb: iterate Model.query() in key order,
                 touch, ndb.put_multi every 100 (one thread)
  ours (model)   mapper.Mapper with KIND = the ndb model, sharded, local dispatcher
  ours (raw)     mapper.Mapper with KIND = the kind name (raw entities, no model)
Prints entities/s, the ratios the issue sets (ours/raw >= 0.5, ours/naive >= 2) and the
peak RSS of the child after our jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from collections.abc import Callable
from typing import Any

from google.cloud import ndb

from bench.common import KIND, print_rates, run_sizes, seed_items, timed
from mapper import Mapper


class Item(ndb.Model):
    name = ndb.StringProperty()
    n = ndb.IntegerProperty()
    flag = ndb.BooleanProperty()
    touched = ndb.IntegerProperty(default=0)


class TouchModel(Mapper):
    KIND = Item

    def map(self, entity: Item) -> tuple[list[Item], list[Any]]:
        entity.touched = (entity.touched or 0) + 1
        return [entity], []


class TouchRaw(Mapper):
    KIND = KIND

    def map(self, entity: Any) -> tuple[list[Any], list[Any]]:
        entity["touched"] = (entity.get("touched") or 0) + 1
        return [entity], []


def child(n: int, shards: int, batch_size: int) -> dict[str, Any]:
    from google.cloud import datastore

    from mapper.jobs import start_job
    from mapper.messages import JobSpec
    from mapper.runtime import Runtime
    from mapper.settings import Settings

    project, host = os.environ["GOOGLE_CLOUD_PROJECT"], os.environ["DATASTORE_EMULATOR_HOST"]
    client = datastore.Client(project=project)
    namespace = f"touch{n}"
    seed_items(client, namespace, n)
    rt = Runtime(Settings(project=project, emulator_host=host, state_namespace=f"state{n}"))
    ndb_client = ndb.Client(project=project)

    def raw_floor() -> None:
        count, pending = 0, []
        for entity in client.query(kind=KIND, namespace=namespace).fetch():
            entity["touched"] += 1
            pending.append(entity)
            if len(pending) == 500:
                client.put_multi(pending)
                count, pending = count + len(pending), []
        client.put_multi(pending)
        assert count + len(pending) == n

    def naive() -> None:
        with ndb_client.context(namespace=namespace, cache_policy=False, global_cache_policy=False):
            pending: list[Item] = []
            for entity in Item.query().order(Item.key):
                entity.touched = (entity.touched or 0) + 1
                pending.append(entity)
                if len(pending) == 100:
                    ndb.put_multi(pending)
                    pending = []
            ndb.put_multi(pending)

    def ours(mapper: str) -> Callable[[], None]:
        def run() -> None:
            spec = JobSpec(mapper=f"bench.touch:{mapper}", shards=shards, batch_size=batch_size,
                           namespace=namespace)  # fmt: skip
            status = start_job(rt, spec).wait()
            assert status["counters"]["processed"] == n, status

        return run

    seconds = {
        "ours (model)": timed(ours("TouchModel")),
        "ours (raw)": timed(ours("TouchRaw")),
    }
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ours only, so far
    seconds["raw floor"] = timed(raw_floor)
    seconds["naive ndb"] = timed(naive)
    rt.close()
    return {"n": n, "rates": {k: n / v for k, v in seconds.items()}, "rss_mb": rss_mb}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.shards, args.batch_size)))
        return 0

    sizes = [int(size) for size in args.sizes.split(",")]
    results = run_sizes(
        "bench.touch", sizes, ["--shards", str(args.shards), "--batch-size", str(args.batch_size)]
    )
    report(results)
    return 0


def report(results: list[dict[str, Any]]) -> None:
    print_rates(
        results,
        [
            ("model / raw floor", "ours (model)", "raw floor", 0.5),
            ("model / naive ndb", "ours (model)", "naive ndb", 2.0),
            ("raw / raw floor", "ours (raw)", "raw floor", 0.5),
            ("raw / naive ndb", "ours (raw)", "naive ndb", 2.0),
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
