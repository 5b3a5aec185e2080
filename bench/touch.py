"""Benchmark a touch job as a user runs it, against the raw floor, on both emulators.

    .venv/bin/python -m bench.touch [--emulators datastore,firestore] [--sizes 20000,100000]
                                    [--rounds 1] [--variants ...] [--beam-python PATH]
                                    [--json FILE] [--report FILE]

Per emulator: one emulator process, an untimed warm-up of every variant over 5,000
items (the emulators' JITs make whatever runs first slow), then per size N a reset
emulator seeded with N small items. Every variant runs in a fresh child process, in
turn, for ``--rounds`` rounds (the order reversed every other round):

  raw floor   google-cloud-datastore, one client: read every item (one query continued
              by cursor, pages of at most 20,000), touch, put_multi 500 a call
  cli model   ``python -m mapper run bench.touch:TouchModel --shards 2 --namespace NS``,
              in the child's process, everything else at the CLI's defaults
  cli raw     the same with ``TouchRaw`` (KIND = "Item": raw entities)
  cli sampled (on request) ``TouchModelSampled``: split by a keys-only sample
  beam        (with --beam-python) Apache Beam: ReadFromDatastore | Map(touch) |
              WriteToDatastore, DirectRunner, 2 workers, ramp-up throttling off
``cli model@250`` runs the CLI with ``--batch-size 250``, ``cli model#5000`` with the
stream's page limit (``mapper.datastore.query.STREAM_PAGE``) set to 5,000 (0: none), to
choose the defaults by measurement.

Reported per variant: wall time and its ratio to the raw floor of the same round,
client CPU seconds per 1,000 items (the child's user + system time, all threads), RPCs
per 1,000 items by method (Q RunQuery, L Lookup, C Commit, B BeginTransaction, Agg
RunAggregationQuery), peak RSS; then the issue's targets.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from typing import Any

from google.cloud import ndb

from bench.common import (
    EMULATORS,
    KIND,
    RpcCounter,
    emulator_env,
    fetch_all,
    fmt_rpcs,
    measure,
    per_thousand,
    seed_items,
    spawn,
)
from mapper import Mapper

DEFAULT_VARIANTS = ("raw floor", "cli model", "cli raw")
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


class TouchModelSampled(TouchModel):
    """TouchModel split by a keys-only sample, the candidate fallback where ``__scatter__``
    gives nothing (the Firestore emulator): read every key (one keys-only stream) and
    give evenly spaced ones as the sample the split points are picked from."""

    def split_keys(self, shards: int) -> list[Any] | None:
        from mapper.datastore.query import STREAM_PAGE, kind_query, results
        from mapper.engine.runtime import runtime_from_env
        from mapper.engine.splitting import OVERSAMPLE

        namespace = os.environ["BENCH_NAMESPACE"]
        rt = runtime_from_env()
        try:
            keys = results(rt.store, kind_query(KIND, keys_only=True), namespace,
                           page_size=STREAM_PAGE, prefetch=True)  # fmt: skip
            every = [e.key for e in keys]
            # A sample as __scatter__ gives one: OVERSAMPLE keys a shard, evenly spaced.
            return every[:: max(1, len(every) // (shards * OVERSAMPLE))]
        finally:
            rt.close()


# -- the variants, each in a child process ------------------------------------------------


def raw_floor(namespace: str, n: int) -> None:
    from google.cloud import datastore

    client = datastore.Client()
    count, pending = 0, []
    for entity in fetch_all(client, namespace):
        entity["touched"] += 1
        pending.append(entity)
        if len(pending) == 500:
            client.put_multi(pending)
            count, pending = count + len(pending), []
    client.put_multi(pending)
    if count + len(pending) != n:
        raise SystemExit(f"raw floor saw {count + len(pending)} items, not {n}")


def check_counted(n: int) -> None:
    """The job the CLI ran processed and put every item (reading them back costs a scan)."""
    from mapper.engine.runtime import runtime_from_env
    from mapper.engine.status import job_status, latest_job_id

    rt = runtime_from_env()
    try:
        with rt.context():
            job_id = latest_job_id(rt)
        info = job_status(rt, job_id or "")
    finally:
        rt.close()
    if info.status != "succeeded" or info.counters.get("processed") != n:
        raise SystemExit(f"job {job_id} {info.status}: {info.counters}, not {n} items")


def child(args: argparse.Namespace) -> dict[str, Any]:
    rpcs = RpcCounter()
    if args.child == "raw floor":
        result = measure(lambda: raw_floor(args.namespace, args.n), rpcs)
    else:
        result = measure(lambda: cli_run(args.child, args.namespace), rpcs)
        check_counted(args.n)
    return {"variant": args.child, "n": args.n, **result}


def cli_run(variant: str, namespace: str) -> None:
    """``python -m mapper run ...`` in this process (click's main, as the console script)."""
    from mapper.cli.main import main

    variant, _, page = variant.partition("#")
    if page:  # to choose STREAM_PAGE by measurement; 0: no limit
        from mapper.datastore import query

        query.STREAM_PAGE = int(page) or None  # type: ignore[assignment]
    name, _, batch = variant.partition("@")
    mapper = {"cli model": "TouchModel", "cli raw": "TouchRaw", "cli sampled": "TouchModelSampled"}[
        name
    ]
    os.environ["BENCH_NAMESPACE"] = namespace
    args = ["run", f"bench.touch:{mapper}", "--shards", "2", "--namespace", namespace]
    if batch:
        args += ["--batch-size", batch]
    try:
        main(args, standalone_mode=False)
    except SystemExit as done:
        if done.code:
            raise


# -- the parent: emulators, seeding, rounds, the report -----------------------------------


def run_variant(variant: str, emulator: Any, namespace: str, n: int, beam: str | None) -> Any:
    env = emulator_env(emulator)
    if variant == "beam":
        command = [beam or "", "-m", "bench.beam_touch", "--namespace", namespace, "--n", str(n)]
    else:
        command = [sys.executable, "-m", "bench.touch", "--child", variant,
                   "--namespace", namespace, "--n", str(n)]  # fmt: skip
    return spawn(command, env, f"{variant} at {n:,} on the {emulator.kind} emulator")


def measure_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    from google.cloud import datastore

    from mapper.testing.emulator import start_emulator

    sizes = [int(size) for size in args.sizes.split(",")]
    variants = [v.strip() for v in args.variants.split(",")]
    variants += ["beam"] if args.beam_python else []
    results = []
    for kind in args.emulators.split(","):
        with start_emulator(kind, project="bench") as emulator:
            os.environ.update(emulator.env)
            client = datastore.Client(project=emulator.project)
            seed_items(client, "warmup", WARM_UP_N)
            for variant in variants:
                run_variant(variant, emulator, "warmup", WARM_UP_N, args.beam_python)
            for n in sizes:
                # The emulators' query cost grows with the whole kind: N is all there is.
                emulator.reset()
                seed_items(client, f"touch{n}", n)
                for round_ in range(args.rounds):
                    for variant in variants if round_ % 2 == 0 else variants[::-1]:
                        try:
                            result = run_variant(variant, emulator, f"touch{n}", n,
                                                 args.beam_python)  # fmt: skip
                        except SystemExit as failed:
                            if variant != "beam":
                                raise
                            # Beam's one query page can be over the client's 4 MiB limit.
                            print(f"  {kind} {n:,} {variant}: {failed}", file=sys.stderr)
                            continue
                        results.append({**result, "emulator": kind, "round": round_})
                        print(f"  {kind:<9} {n:>7,} round {round_} {variant:<14} "
                              f"{result['seconds']:>7.1f} s  cpu {result['cpu']:>6.1f} s  "
                              f"{result['rss_mb']:.0f} MB  {fmt_rpcs(per_thousand(result))}",
                              file=sys.stderr, flush=True)  # fmt: skip
    return results


def report(results: list[dict[str, Any]]) -> None:
    for kind in [k for k in EMULATORS if any(r["emulator"] == k for r in results)]:
        mine = [r for r in results if r["emulator"] == kind]
        sizes = sorted({r["n"] for r in mine})
        variants = list(dict.fromkeys(r["variant"] for r in mine))
        print(f"\n{kind} emulator")
        table = Table(mine)
        for n in sizes:
            print(f"  {n:,} items, {len(table.rounds)} round(s)")
            print(f"    {'variant':<15}{'seconds':>9}{'x floor':>9}{'cpu s/1k':>10}"
                  f"{'RSS MB':>8}   RPCs per 1,000 items")  # fmt: skip
            for v in variants:
                if table.has(v, n):
                    ratio = table.ratio(v, n) if v != "raw floor" else 1.0
                    print(f"    {v:<15}{table.seconds(v, n):>9.1f}{ratio:>9.2f}"
                          f"{table.cpu(v, n):>10.3f}{table.rss(v, n):>8.0f}   "
                          f"{fmt_rpcs(table.rpcs(v, n))}")  # fmt: skip
        table.targets(sizes)


class Table:
    """Medians over rounds; ratios taken round by round (same round, same emulator)."""

    def __init__(self, results: list[dict[str, Any]]):
        self.results = results
        self.rounds = sorted({r["round"] for r in results})

    def _hits(self, variant: str, n: int) -> list[dict[str, Any]]:
        return [r for r in self.results if (r["variant"], r["n"]) == (variant, n)]

    def has(self, variant: str, n: int) -> bool:
        return bool(self._hits(variant, n))

    def seconds(self, variant: str, n: int) -> float:
        return statistics.median(r["seconds"] for r in self._hits(variant, n))

    def ratio(self, variant: str, n: int) -> float:
        """Floor seconds / variant seconds (>= 1: faster than the floor), median of rounds."""
        floor = {r["round"]: r["seconds"] for r in self._hits("raw floor", n)}
        return statistics.median(floor[r["round"]] / r["seconds"] for r in self._hits(variant, n))

    def cpu(self, variant: str, n: int) -> float:
        return statistics.median(r["cpu"] for r in self._hits(variant, n)) * 1000 / n

    def rss(self, variant: str, n: int) -> float:
        return max(r["rss_mb"] for r in self._hits(variant, n))

    def rpcs(self, variant: str, n: int) -> dict[str, float]:
        return per_thousand(self._hits(variant, n)[0])

    def targets(self, sizes: list[int]) -> None:
        print("    targets:")
        for n in sizes:
            for v in ("cli model", "cli raw"):
                if not self.has(v, n):
                    continue
                cpu_target = 2.0 if v == "cli model" else 1.2
                queries = self.rpcs(v, n).get("RunQuery", 0) / self.rpcs("raw floor", n)["RunQuery"]
                line = (f"      {n:>7,} {v:<10} x floor {self.ratio(v, n):.2f} (>= 0.8); "
                        f"cpu x raw {self.cpu(v, n) / self.cpu('raw floor', n):.2f} "
                        f"(<= {cpu_target}); queries x raw {queries:.2f} (<= 2)")  # fmt: skip
                if self.has("beam", n):
                    line += f"; x beam {self.seconds('beam', n) / self.seconds(v, n):.2f} (> 1)"
                print(line)
        if len(sizes) > 1:
            small, large = sizes[0], sizes[-1]
            for v in ("cli model", "cli raw"):
                if self.has(v, small) and self.has(v, large):
                    growth = self.seconds(v, large) / self.seconds(v, small)
                    rss = self.rss(v, large) / self.rss(v, small) - 1
                    print(f"      {v:<10} {large:,} / {small:,}: time x{growth:.1f} "
                          f"(<= {6 * large / small / 5:.0f} on firestore), "
                          f"RSS {rss:+.0%} (within 20%)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emulators", default=",".join(EMULATORS))
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    parser.add_argument("--beam-python", help="a Python with apache-beam[gcp]: adds 'beam'")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--report", help="only print the report of a --json file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
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
    results = measure_all(args)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
