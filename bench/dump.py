"""Benchmark export and import against raw floors measured in the same run, on both emulators.

    .venv/bin/python -m bench.dump [--emulators datastore,firestore] [--sizes 20000,100000]
                                   [--rounds 1]

Per emulator and size N, in one fresh child process against a reset emulator
seeded with N items (5 properties, a list and a timestamp; no references):
  raw scan     one client (google-cloud-datastore's API, raw protobuf pages by
               cursor) writing the same gzip JSON-lines part files, 500 a part
  export       ours, at the CLI's defaults (part files + manifest)
  raw write    google-cloud-datastore: put_multi N new items, 500 a call
  import keep  ours: the dump restored into a fresh namespace, at the CLI's defaults
  import remap ours: the dump merged into a fresh namespace (every id reallocated)
Prints seconds, the ratios the issue sets (export / raw scan >= 0.9, keep / raw
write >= 0.8, remap / raw write >= 0.6), client CPU and RPCs per 1,000 entities,
and the child's peak RSS. ``--rounds N`` runs N children per size (each on a reset
emulator) and prints each round, then the medians of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
from typing import Any

from bench.common import (
    EMULATORS,
    KIND,
    RpcCounter,
    emulator_env,
    fmt_rpcs,
    measure,
    seed_items,
    spawn,
)

#: The raw scan's page limit: these items (with a list and a timestamp) are about 230 bytes,
#: and google-cloud-datastore refuses a response over 4 MiB (20,000 of them is 4.6 MB).
PAGE = 10_000
STEPS = ("raw scan", "export", "raw write", "import keep", "import remap")
TARGETS = (("export", "raw scan", 0.9), ("import keep", "raw write", 0.8),
           ("import remap", "raw write", 0.6))  # fmt: skip


def raw_scan(client: Any, namespace: str, out: str, n: int) -> None:
    """Every item by cursor pages (of at most PAGE), as raw protobufs, into parts of 500."""
    from google.cloud.datastore_v1.types import query as query_types

    from mapper.dump.parts import write_part

    query = query_types.Query.pb()()
    query.kind.add(name=KIND)
    query.limit.value = PAGE
    more = query_types.QueryResultBatch.MoreResultsType
    pending: list[Any] = []
    parts = count = 0
    while True:
        request = {"project_id": client.project, "partition_id": {"namespace_id": namespace},
                   "query": query_types.Query.wrap(query)}  # fmt: skip
        batch = client._datastore_api.run_query(request=request)._pb.batch
        for result in batch.entity_results:
            pending.append(result.entity)
            if len(pending) == 500:
                write_part(out, f"part-{parts:06d}.jsonl.gz", pending)
                parts, count, pending = parts + 1, count + len(pending), []
        full = len(batch.entity_results) == PAGE
        if batch.more_results != more.NOT_FINISHED and not (
            batch.more_results == more.MORE_RESULTS_AFTER_LIMIT and full
        ):
            break
        query.start_cursor = batch.end_cursor
    if pending:
        write_part(out, f"part-{parts:06d}.jsonl.gz", pending)
    if count + len(pending) != n:
        raise SystemExit(f"raw scan saw {count + len(pending)} items, not {n}")


def child(n: int) -> dict[str, Any]:
    rpcs = RpcCounter()
    from google.cloud import datastore

    from mapper.engine.runtime import runtime_from_env
    from mapper.transfer.export import ExportSpec, start_export
    from mapper.transfer.importer import ImportSpec, start_import
    from mapper.transfer.options import RemapOptions

    client = datastore.Client()
    source, now = f"src{n}", datetime.datetime.now(datetime.UTC)
    seed_items(client, source, n, tags=["a", "b"], at=now)
    rt = runtime_from_env(state_namespace=f"state{n}")
    work = tempfile.mkdtemp(prefix="bench-dump-")
    results: dict[str, Any] = {}

    def export() -> None:
        spec = ExportSpec(out=f"{work}/ours", kinds=[KIND], namespaces=[source])
        if start_export(rt, spec).wait().counters["processed"] != n:
            raise SystemExit("export lost items")

    def restore(mode: str) -> None:
        spec = ImportSpec(source=f"{work}/ours", mode=mode, namespace=f"{mode}{n}",
                          options=RemapOptions())  # fmt: skip
        _, handle = start_import(rt, spec)
        if handle is None or handle.wait().counters["put"] != n:
            raise SystemExit(f"import {mode} did not put {n} items")

    steps = {
        "raw scan": lambda: raw_scan(client, source, f"{work}/raw", n),
        "export": export,
        "raw write": lambda: seed_items(client, f"floor{n}", n, tags=["a", "b"], at=now),
        "import keep": lambda: restore("keep"),
        "import remap": lambda: restore("remap"),
    }
    for name in STEPS:
        results[name] = measure(steps[name], rpcs)
    rt.close()
    return {"n": n, "steps": results}


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    from mapper.testing.emulator import start_emulator

    results = []
    for kind in args.emulators.split(","):
        with start_emulator(kind, project="bench") as emulator:
            env = emulator_env(emulator)
            spawn([sys.executable, "-m", "bench.dump", "--child", "3000"], env, "warm-up")
            for n in [int(size) for size in args.sizes.split(",")]:
                for round_ in range(args.rounds):
                    emulator.reset()
                    command = [sys.executable, "-m", "bench.dump", "--child", str(n)]
                    result = spawn(command, env, f"bench.dump at {n:,} on the {kind} emulator")
                    results.append({**result, "emulator": kind, "round": round_})
                    print(f"  {kind} {n:,} round {round_ + 1} done", file=sys.stderr, flush=True)
    return results


def report(results: list[dict[str, Any]]) -> None:
    for result in results:
        n, steps = result["n"], result["steps"]
        print(f"\n{result['emulator']} emulator, {n:,} entities")
        print(f"    {'step':<14}{'seconds':>9}{'cpu s/1k':>10}{'peak RSS':>10}   RPCs per 1,000")
        for name in STEPS:
            step = steps[name]
            rpcs = {m: c * 1000 / n for m, c in sorted(step["rpcs"].items())}
            print(f"    {name:<14}{step['seconds']:>9.1f}{step['cpu'] * 1000 / n:>10.3f}"
                  f"{step['rss_mb']:>10.0f}   {fmt_rpcs(rpcs)}")  # fmt: skip
        for ours, base, target in TARGETS:
            ratio = steps[base]["seconds"] / steps[ours]["seconds"]
            print(f"    {ours} / {base}: {ratio:.2f}   target >= {target}")
    by_size: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for result in results:
        by_size.setdefault((result["emulator"], result["n"]), []).append(result["steps"])
    for (emulator, n), rounds in by_size.items():
        if len(rounds) < 2:
            continue
        print(f"\n{emulator} emulator, {n:,} entities: medians of {len(rounds)} rounds")
        for ours, base, target in TARGETS:
            ratios = [steps[base]["seconds"] / steps[ours]["seconds"] for steps in rounds]
            spread = " ".join(f"{r:.2f}" for r in ratios)
            print(f"    {ours} / {base}: {statistics.median(ratios):.2f} ({spread})"
                  f"   target >= {target}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emulators", default=",".join(EMULATORS))
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--report", help="only print the report of a --json file")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.report:
        with open(args.report) as saved:
            report(json.load(saved))
        return 0
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    results = run_all(args)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
