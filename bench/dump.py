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
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import requests

from bench.common import KIND, print_rates, run_sizes, seed_items, timed


def child(n: int, shards: int) -> dict[str, Any]:
    from google.cloud import datastore

    from mapper.engine.runtime import Runtime
    from mapper.settings import Settings
    from mapper.transfer.export import ExportSpec, start_export
    from mapper.transfer.importer import ImportSpec, start_import
    from mapper.transfer.options import RemapOptions

    project, host = os.environ["GOOGLE_CLOUD_PROJECT"], os.environ["DATASTORE_EMULATOR_HOST"]
    client = datastore.Client(project=project)
    source = f"src{n}"
    seed_items(client, source, n, tags=["a", "b"], at=datetime.datetime.now(datetime.UTC))
    rt = Runtime(Settings(project=project, emulator_host=host, state_namespace=f"state{n}"))
    work = tempfile.mkdtemp(prefix="bench-dump-")
    seconds: dict[str, float] = {}

    def scan() -> None:
        count = sum(1 for _ in client.query(kind=KIND, namespace=source).fetch())
        assert count == n, count

    def export() -> None:
        spec = ExportSpec(out=f"{work}/ours", kinds=[KIND], namespaces=[source], shards=shards)
        assert start_export(rt, spec).wait().counters["processed"] == n

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
            assert handle.wait().counters["put"] == n

        return run

    def raw_write() -> None:
        seed_items(client, f"floor{n}", n, tags=["a", "b"], at=datetime.datetime.now(datetime.UTC))

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

    sizes = [int(size) for size in args.sizes.split(",")]
    results = run_sizes("bench.dump", sizes, ["--shards", str(args.shards)])
    report(results)
    return 0


def report(results: list[dict[str, Any]]) -> None:
    print_rates(
        results,
        [
            ("export / raw scan", "export", "raw scan", 0.7),
            ("export / managed", "export", "managed export", None),
            ("keep / raw write", "import keep", "raw write", None),
            ("remap / raw write", "import remap", "raw write", 0.5),
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
