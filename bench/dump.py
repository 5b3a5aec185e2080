"""Benchmark the dump jobs against baselines measured in the same run, on one emulator.

    .venv/bin/python -m bench.dump [--sizes 10000,50000] [--shards 4]

For each size N, in a fresh child process (so peak RSS is per size):
  raw scan      google-cloud-datastore: iterate every entity of the kind
  export        our export (sharded, part files, manifest)
  managed       the emulator's managed export endpoint (POST /v1/projects/P:export)
  raw write     google-cloud-datastore: put_multi N new entities, 500 a call
  import keep   our restore of the dump into a fresh namespace
  import remap  our merge of the dump into a fresh namespace (every id reallocated)
Prints entities/s, the ratios the issues set (export/raw scan >= 0.7,
remap/raw write >= 0.5) and peak RSS after our jobs (before the raw write,
which is not ours).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import requests

KIND = "Item"


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def seed(client: Any, namespace: str, n: int) -> None:
    from google.cloud import datastore

    now = datetime.datetime.now(datetime.UTC)
    for start in range(0, n, 500):
        batch = []
        for i in range(start, min(n, start + 500)):
            entity = datastore.Entity(client.key(KIND, namespace=namespace))
            entity.update(
                {"name": f"item {i}", "n": i, "flag": i % 2 == 0, "tags": ["a", "b"], "at": now}
            )
            batch.append(entity)
        client.put_multi(batch)


def child(n: int, shards: int) -> dict[str, Any]:
    from google.cloud import datastore

    from mapper.export import ExportSpec, start_export
    from mapper.importer import ImportSpec, start_import
    from mapper.remap_options import RemapOptions
    from mapper.runtime import Runtime
    from mapper.settings import Settings

    project, host = os.environ["GOOGLE_CLOUD_PROJECT"], os.environ["DATASTORE_EMULATOR_HOST"]
    client = datastore.Client(project=project)
    source = f"src{n}"
    seed(client, source, n)
    rt = Runtime(Settings(project=project, emulator_host=host, state_namespace=f"state{n}"))
    work = tempfile.mkdtemp(prefix="bench-dump-")
    seconds: dict[str, float] = {}

    def scan() -> None:
        count = sum(1 for _ in client.query(kind=KIND, namespace=source).fetch())
        assert count == n, count

    def export() -> None:
        spec = ExportSpec(out=f"{work}/ours", kinds=[KIND], namespaces=[source], shards=shards)
        assert start_export(rt, spec).wait()["counters"]["processed"] == n

    def managed() -> None:
        body = {
            "outputUrlPrefix": f"{work}/managed",
            "entityFilter": {"kinds": [KIND], "namespaceIds": [source]},
        }
        reply = requests.post(f"http://{host}/v1/projects/{project}:export", json=body, timeout=600)
        assert reply.ok and reply.json().get("done"), reply.text

    def restore(mode: str) -> Callable[[], None]:
        def run() -> None:
            spec = ImportSpec(
                source=f"{work}/ours",
                mode=mode,
                namespace=f"{mode}{n}",
                shards=shards,
                options=RemapOptions(),
            )
            _, handle = start_import(rt, spec)
            assert handle is not None
            assert handle.wait()["counters"]["put"] == n

        return run

    def raw_write() -> None:
        seed(client, f"floor{n}", n)

    seconds["raw scan"] = timed(scan)
    seconds["export"] = timed(export)
    seconds["managed export"] = timed(managed)
    seconds["import keep"] = timed(restore("keep"))
    seconds["import remap"] = timed(restore("remap"))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds["raw write"] = timed(raw_write)
    rt.close()
    return {"n": n, "rates": {k: n / v for k, v in seconds.items()}, "rss_mb": rss_mb}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.shards)))
        return 0

    from mapper.emulator import start_emulator

    results = []
    with start_emulator("datastore", project="bench") as emulator:
        env = {**os.environ, **emulator.env}
        for n in (int(s) for s in args.sizes.split(",")):
            command = [sys.executable, "-m", "bench.dump", "--child", str(n)]
            command += ["--shards", str(args.shards)]
            out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    report(results)
    return 0


def report(results: list[dict[str, Any]]) -> None:
    names = list(results[0]["rates"])
    print(f"{'entities/s':<16}" + "".join(f"{r['n']:>12,}" for r in results))
    for name in names:
        print(f"{name:<16}" + "".join(f"{r['rates'][name]:>12,.0f}" for r in results))
    ratios = [
        ("export / raw scan", "export", "raw scan", 0.7),
        ("export / managed", "export", "managed export", None),
        ("keep / raw write", "import keep", "raw write", None),
        ("remap / raw write", "import remap", "raw write", 0.5),
    ]
    for label, ours, base, target in ratios:
        values = "".join(f"{r['rates'][ours] / r['rates'][base]:>12.2f}" for r in results)
        print(f"{label:<16}{values}" + (f"   target >= {target}" if target else ""))
    print(f"{'peak RSS MB':<16}" + "".join(f"{r['rss_mb']:>12.0f}" for r in results))
    if len(results) > 1:
        growth = results[-1]["rss_mb"] / results[0]["rss_mb"] - 1
        print(f"RSS growth {results[0]['n']:,} -> {results[-1]['n']:,}: {growth:+.0%}")


if __name__ == "__main__":
    sys.exit(main())
