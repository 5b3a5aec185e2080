"""Benchmark a touch job: our Mapper against a raw floor and the classic Mapper ported to ndb.

    .venv/bin/python -m bench.touch [--sizes 10000,50000] [--rounds 2] [--shards 4]
                                    [--batch-size 500] [--profile DIR] [--faults SPEC]

One Datastore emulator, reset before each size N and seeded with N small entities. Every
variant runs in its own fresh child process (so peak RSS is per variant and size), in turn,
for ``--rounds`` rounds (the order reversed every other round), after one untimed warm-up
pass of each variant (the emulator's JIT makes whatever runs first slow):
  raw floor      google-cloud-datastore: read every entity (one query), write each back,
                 put_multi 500 a call
  naive ndb      the 2009 deferred Mapper ported to ndb: iterate Model.query() in key order,
                 touch, ndb.put_multi every 100 (one thread)
  ours (model)   mapper.Mapper with KIND = the ndb model, sharded, local dispatcher
  ours (raw)     mapper.Mapper with KIND = the kind name (raw entities, no model)
Prints entities/s (median over the rounds), the ratios the issue sets (ours/raw floor >= 0.5,
ours/naive >= 2) with their spread over the rounds, and each variant's peak RSS.
``--faults`` runs our variants under a fault plan (``FaultPlan.from_spec``, e.g.
``latency=0.03`` for production's round trips, ``aborted=0.05,unavailable=0.01``): the
fault layer sits in mapper's Store, so the baselines run without it.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

from google.cloud import ndb

from bench.common import KIND, seed_items, timed
from mapper import Mapper

VARIANTS = ("raw floor", "naive ndb", "ours (model)", "ours (raw)")
RATIOS = (
    ("model / raw floor", "ours (model)", "raw floor", 0.5),
    ("model / naive ndb", "ours (model)", "naive ndb", 2.0),
    ("raw / raw floor", "ours (raw)", "raw floor", 0.5),
    ("raw / naive ndb", "ours (raw)", "naive ndb", 2.0),
)
WARM_UP_N = 5000


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


# -- the variants, each run in a child process ------------------------------------------------


def raw_floor(namespace: str, n: int) -> None:
    from google.cloud import datastore

    client = datastore.Client()
    count, pending = 0, []
    for entity in client.query(kind=KIND, namespace=namespace).fetch():
        entity["touched"] += 1
        pending.append(entity)
        if len(pending) == 500:
            client.put_multi(pending)
            count, pending = count + len(pending), []
    client.put_multi(pending)
    if count + len(pending) != n:
        raise SystemExit(f"raw floor saw {count + len(pending)} entities, not {n}")


def naive_ndb(namespace: str, n: int) -> None:
    client = ndb.Client()
    count = 0
    with client.context(namespace=namespace, cache_policy=False, global_cache_policy=False):
        pending: list[Item] = []
        for entity in Item.query().order(Item.key):
            entity.touched = (entity.touched or 0) + 1
            pending.append(entity)
            if len(pending) == 100:
                ndb.put_multi(pending)
                count, pending = count + len(pending), []
        ndb.put_multi(pending)
    if count + len(pending) != n:
        raise SystemExit(f"naive ndb saw {count + len(pending)} entities, not {n}")


def ours(
    mapper: str, shards: int, batch_size: int, faults: str | None = None
) -> Callable[[str, int], None]:
    def run(namespace: str, n: int) -> None:
        from mapper.engine.jobs import start_job
        from mapper.engine.runtime import Runtime
        from mapper.engine.spec import JobSpec
        from mapper.settings import Settings
        from mapper.testing.faults import FaultPlan

        project, host = os.environ["GOOGLE_CLOUD_PROJECT"], os.environ["DATASTORE_EMULATOR_HOST"]
        settings = Settings(project=project, emulator_host=host, state_namespace=f"s-{namespace}")
        rt = Runtime(settings, faults=FaultPlan.from_spec(faults) if faults else None)
        try:
            spec = JobSpec(mapper=f"bench.touch:{mapper}", shards=shards, batch_size=batch_size,
                           namespace=namespace)  # fmt: skip
            job = start_job(rt, spec)
            rt.dispatcher.wait_idle()  # type: ignore[attr-defined]  # local dispatcher
            counters = job.status().counters
        finally:
            rt.close()
        if counters.get("processed") != n or counters.get("put") != n:
            raise SystemExit(f"ours counted {counters}, not {n}")

    return run


def child(args: argparse.Namespace) -> dict[str, Any]:
    runs = {
        "raw floor": raw_floor,
        "naive ndb": naive_ndb,
        "ours (model)": ours("TouchModel", args.shards, args.batch_size, args.faults),
        "ours (raw)": ours("TouchRaw", args.shards, args.batch_size, args.faults),
    }
    run = runs[args.child]
    if not args.profile:
        seconds = timed(lambda: run(args.namespace, args.n))
    else:
        with profiled(os.path.join(args.profile, f"{args.child.split()[-1].strip('()')}-{args.n}")):
            seconds = timed(lambda: run(args.namespace, args.n))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"variant": args.child, "n": args.n, "seconds": seconds, "rss_mb": rss_mb}


@contextlib.contextmanager
def profiled(path: str) -> Iterator[None]:
    """cProfile the main thread and every task the local dispatcher runs; one merged file."""
    from mapper.engine.runtime import Runtime

    profiles: list[cProfile.Profile] = []
    handle = Runtime.handle

    def handle_profiled(self: Runtime, task: Any) -> None:
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.runcall(handle, self, task)

    Runtime.handle = handle_profiled  # type: ignore[method-assign]
    main = cProfile.Profile()
    main.enable()
    try:
        yield
    finally:
        main.disable()
        Runtime.handle = handle  # type: ignore[method-assign]
        pstats.Stats(main, *profiles).dump_stats(path + ".prof")


# -- the parent: one emulator, seeding, rounds, the report ----------------------------------


def spawn(variant: str, namespace: str, n: int, env: dict[str, str], extra: list[str]) -> Any:
    command = [sys.executable, "-m", "bench.touch", "--child", variant,
               "--namespace", namespace, "--n", str(n), *extra]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{variant} at {n} failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    from google.cloud import datastore

    from mapper.testing.emulator import start_emulator

    sizes = [int(size) for size in args.sizes.split(",")]
    extra = ["--shards", str(args.shards), "--batch-size", str(args.batch_size)]
    results = []
    with start_emulator("datastore", project="bench") as emulator:
        env = {**os.environ, **emulator.env}
        os.environ.update(emulator.env)
        client = datastore.Client(project=emulator.project)
        seed_items(client, "warmup", WARM_UP_N)
        for variant in VARIANTS:
            spawn(variant, "warmup", WARM_UP_N, env, extra)
        for n in sizes:
            # The emulator's query cost grows with every entity of the kind, in any namespace:
            # each size gets an emulator holding just its own N.
            emulator.reset()
            seed_items(client, f"touch{n}", n)
            for round_ in range(args.rounds):
                order = VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]
                for variant in order:
                    result = spawn(variant, f"touch{n}", n, env, extra + args.child_extra)
                    results.append({**result, "round": round_})
                    print(f"  {n:>7,} round {round_} {variant:<13} "
                          f"{n / result['seconds']:>8,.0f}/s  {result['rss_mb']:.0f} MB",
                          file=sys.stderr, flush=True)  # fmt: skip
    return results


def report(results: list[dict[str, Any]]) -> None:
    sizes = sorted({r["n"] for r in results})
    rounds = sorted({r["round"] for r in results})

    def rate(variant: str, n: int, round_: int) -> float:
        (hit,) = [r for r in results if (r["variant"], r["n"], r["round"]) == (variant, n, round_)]
        return n / hit["seconds"]

    def median_rate(variant: str, n: int) -> float:
        return statistics.median(rate(variant, n, r) for r in rounds)

    def rss(variant: str, n: int) -> float:
        return max(r["rss_mb"] for r in results if (r["variant"], r["n"]) == (variant, n))

    print(f"\nentities/s, median of {len(rounds)} round(s)" + "".join(f"{n:>20,}" for n in sizes))
    for variant in VARIANTS:
        print(f"{variant:<34}" + "".join(f"{median_rate(variant, n):>20,.0f}" for n in sizes))
    for label, mine, base, target in RATIOS:
        cells = []
        for n in sizes:
            per_round = [rate(mine, n, r) / rate(base, n, r) for r in rounds]
            ratio = median_rate(mine, n) / median_rate(base, n)
            cells.append(f"{ratio:.2f} ({min(per_round):.2f}-{max(per_round):.2f})")
        print(f"{label:<34}" + "".join(f"{c:>20}" for c in cells) + f"   target >= {target}")
    for variant in VARIANTS:
        cells = "".join(f"{rss(variant, n):>20.0f}" for n in sizes)
        print(f"{'peak RSS MB, ' + variant:<34}{cells}")
    if len(sizes) > 1:
        for variant in ("ours (model)", "ours (raw)"):
            growth = rss(variant, sizes[-1]) / rss(variant, sizes[0]) - 1
            print(f"RSS growth {sizes[0]:,} -> {sizes[-1]:,}, {variant}: {growth:+.0%}"
                  "   target within 20%")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--profile", help="write a cProfile file per timed child into this dir")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--report", help="only print the report of a --json file")
    parser.add_argument("--faults", help="a fault plan spec for our variants: latency=0.03,...")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.report:
        with open(args.report) as saved:
            report(json.load(saved))
        return 0
    if args.child:
        print(json.dumps(child(args)))
        return 0
    args.child_extra = ["--profile", os.path.abspath(args.profile)] if args.profile else []
    args.child_extra += ["--faults", args.faults] if args.faults else []
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    results = measure(args)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
