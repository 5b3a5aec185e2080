"""What the benchmarks share: timing, seeding, one child process per size on one emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

KIND = "Item"


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


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


def run_sizes(module: str, sizes: Sequence[int], args: Sequence[str]) -> list[dict[str, Any]]:
    """Start one Datastore emulator; run ``module --child N`` per size; collect their JSON."""
    from mapper.testing.emulator import start_emulator

    results = []
    with start_emulator("datastore", project="bench") as emulator:
        env = {**os.environ, **emulator.env}
        for n in sizes:
            command = [sys.executable, "-m", module, "--child", str(n), *args]
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode:
                sys.stderr.write(done.stderr)
                raise SystemExit(f"{module} --child {n} failed")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def print_rates(results: list[dict[str, Any]], ratios: Sequence[tuple[str, str, str, Any]]) -> None:
    """Entities/s per variant and size, the ratios (label, ours, base, target), peak RSS."""
    print(f"{'entities/s':<18}" + "".join(f"{r['n']:>12,}" for r in results))
    for name in results[0]["rates"]:
        print(f"{name:<18}" + "".join(f"{r['rates'][name]:>12,.0f}" for r in results))
    for label, ours, base, target in ratios:
        values = "".join(f"{r['rates'][ours] / r['rates'][base]:>12.2f}" for r in results)
        print(f"{label:<18}{values}" + (f"   target >= {target}" if target else ""))
    print(f"{'peak RSS MB':<18}" + "".join(f"{r['rss_mb']:>12.0f}" for r in results))
    if len(results) > 1:
        growth = results[-1]["rss_mb"] / results[0]["rss_mb"] - 1
        print(f"RSS growth {results[0]['n']:,} -> {results[-1]['n']:,}: {growth:+.0%}")
