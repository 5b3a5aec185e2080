"""Benchmark one job over many namespaces against the same mapper run per namespace.

    .venv/bin/python -m bench.namespaces [--emulators datastore,firestore]
                                         [--namespaces 1000] [--per 20] [--rounds 1]

Per emulator: one emulator process, seeded with ``--namespaces`` namespaces of
``--per`` small ``Item`` entities each. Each variant runs in a fresh child process,
in turn (the order reversed every other round), touching every item once:

  loop      ``bench.touch:TouchModel().run(namespace=ns)`` for each namespace in turn:
            what a user scripts without jobs over many namespaces (one job each)
  tight loop  the same jobs, each waited for by polling its status every 10 ms
            instead of ``run()``'s quarter second: the jobs' own work alone
  one job   ``python -m mapper run bench.touch:TouchModel --shards 8`` with
            ``--all-namespaces`` (the Datastore emulator) or ``--namespaces-from FILE``
            (the Firestore emulator, which lists no namespaces)

Reported: wall seconds, the loop's time over the one job's (the issue's target: at
least 5), and RPCs per namespace by method.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from typing import Any

from bench.common import EMULATORS, RpcCounter, emulator_env, fmt_rpcs, measure, seed_items, spawn

VARIANTS = ("loop", "tight loop", "one job")
PREFIX = "tenant"


def names(count: int) -> list[str]:
    return [f"{PREFIX}{i:05d}" for i in range(count)]


# -- the variants, each in a child process ------------------------------------------------


def loop(namespaces: list[str], tight: bool) -> None:
    from bench.touch import TouchModel
    from mapper.engine.runtime import runtime_from_env

    rt = runtime_from_env()
    try:
        for namespace in namespaces:
            job = TouchModel().run(namespace=namespace, runtime=rt, wait=not tight)
            if tight:
                job.wait(poll=0.01)
    finally:
        rt.close()


def one_job(listed: str | None) -> None:
    from mapper.cli.main import main

    args = ["run", "bench.touch:TouchModel", "--shards", "8", "--id", "tenants"]
    args += ["--namespaces-from", listed] if listed else ["--all-namespaces"]
    try:
        main(args, standalone_mode=False)
    except SystemExit as done:
        if done.code:
            raise


def check_touched(n: int, job_id: str | None) -> None:
    """The jobs processed every item: the one job, or all the loop's jobs together."""
    from mapper.engine.runtime import runtime_from_env
    from mapper.engine.status import job_status, list_job_ids

    rt = runtime_from_env()
    try:
        ids = [job_id] if job_id else list_job_ids(rt, limit=100_000)
        processed = sum(job_status(rt, i).counters.get("processed", 0) for i in ids)
    finally:
        rt.close()
    if processed != n:
        raise SystemExit(f"the jobs processed {processed} items, not {n}")


def child(args: argparse.Namespace) -> dict[str, Any]:
    rpcs = RpcCounter()
    namespaces = names(args.count)
    os.environ["MAPPER_STATE_NAMESPACE"] = f"state-{args.child.replace(' ', '-')}-{args.round}"
    if args.child in ("loop", "tight loop"):
        result = measure(lambda: loop(namespaces, args.child == "tight loop"), rpcs)
        check_touched(args.count * args.per, None)
    else:
        result = measure(lambda: one_job(args.listed), rpcs)
        check_touched(args.count * args.per, "tenants")
    return {"variant": args.child, "n": args.count, **result}


# -- the parent -----------------------------------------------------------------------------


def measure_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    from google.cloud import datastore

    from mapper.testing.emulator import start_emulator

    results = []
    for kind in args.emulators.split(","):
        with (
            start_emulator(kind, project="bench") as emulator,
            tempfile.TemporaryDirectory() as tmp,
        ):
            os.environ.update(emulator.env)
            client = datastore.Client(project=emulator.project)
            for namespace in names(args.namespaces):
                seed_items(client, namespace, args.per)
            listed = None
            if not emulator.supports_metadata:
                listed = os.path.join(tmp, "namespaces.txt")
                with open(listed, "w") as out:
                    out.write("\n".join(names(args.namespaces)))
            for round_ in range(args.rounds):
                for variant in VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]:
                    command = [sys.executable, "-m", "bench.namespaces", "--child", variant,
                               "--count", str(args.namespaces), "--per", str(args.per),
                               "--round", str(round_)]  # fmt: skip
                    command += ["--listed", listed] if listed else []
                    env = emulator_env(emulator)
                    result = spawn(command, env, f"{variant} on the {kind} emulator")
                    results.append({**result, "emulator": kind, "round": round_})
                    print(f"  {kind:<9} round {round_} {variant:<10} {result['seconds']:>7.1f} s"
                          f"  {fmt_rpcs(per_namespace(result))} per namespace",
                          file=sys.stderr, flush=True)  # fmt: skip
    return results


def per_namespace(result: dict[str, Any]) -> dict[str, float]:
    return {m: c / result["n"] for m, c in sorted(result["rpcs"].items())}


def report(results: list[dict[str, Any]], per: int) -> None:
    for kind in [k for k in EMULATORS if any(r["emulator"] == k for r in results)]:
        mine = [r for r in results if r["emulator"] == kind]
        count = mine[0]["n"]
        print(f"\n{kind} emulator: {count:,} namespaces of {per} items")
        print(f"  {'variant':<11}{'seconds':>9}   RPCs per namespace")
        for variant in VARIANTS:
            hits = [r for r in mine if r["variant"] == variant]
            seconds = statistics.median(r["seconds"] for r in hits)
            print(f"  {variant:<11}{seconds:>9.1f}   {fmt_rpcs(per_namespace(hits[0]))}")
        rounds = sorted({r["round"] for r in mine})
        by = {(r["variant"], r["round"]): r["seconds"] for r in mine}
        for loop_ in ("loop", "tight loop"):
            ratio = statistics.median(by[(loop_, r)] / by[("one job", r)] for r in rounds)
            print(f"  one job x{ratio:.1f} faster than the {loop_} (target >= 5 for the loop)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emulators", default=",".join(EMULATORS))
    parser.add_argument("--namespaces", type=int, default=1000)
    parser.add_argument("--per", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--listed", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return 0
    results = measure_all(args)
    report(results, args.per)
    return 0


if __name__ == "__main__":
    sys.exit(main())
