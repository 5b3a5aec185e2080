"""What conflict-checked writes cost: a touch job with the default (each write carries the
version read) against the same job with ``BLIND_WRITES = True``, same emulator, same run.

    .venv/bin/python -m bench.conflicts [--n 20000] [--rounds 2] [--emulators datastore,firestore]

Per emulator and round, each variant runs over a freshly seeded namespace (so both
write the same entities once), in this process, in turn (order reversed every other
round). Prints each variant's median seconds and the ratio checked / blind.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from typing import Any

from google.cloud import datastore

from bench.common import KIND, seed_items
from mapper import Mapper, Runtime, Settings
from mapper.testing import start_emulator


class Touch(Mapper):
    KIND = KIND

    def map(self, entity: Any) -> tuple[list[Any], list[Any]]:
        entity["touched"] = entity["touched"] + 1
        return [entity], []


class TouchBlind(Touch):
    BLIND_WRITES = True


def run(rt: Runtime, mapper: type[Mapper], n: int) -> float:
    namespace = "c" + uuid.uuid4().hex[:10]
    seed_items(datastore.Client(namespace=namespace), namespace, n)
    started = time.monotonic()
    info = mapper().run(runtime=rt, namespace=namespace, shards=2).status()
    seconds = time.monotonic() - started
    if info.counters.get("put") != n or info.counters.get("conflicts"):
        raise SystemExit(f"{mapper.__name__}: unexpected counters {info.counters}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.conflicts")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--emulators", default="datastore,firestore")
    args = parser.parse_args()
    for kind in args.emulators.split(","):
        with start_emulator(kind) as emulator:
            os.environ.update(emulator.env)
            rt = Runtime(Settings(project=emulator.project, emulator_host=emulator.host))
            times: dict[str, list[float]] = {"checked": [], "blind": []}
            variants = [("checked", Touch), ("blind", TouchBlind)]
            run(rt, Touch, 2000)  # untimed warm-up of the emulator's JIT
            for round_ in range(args.rounds):
                for name, mapper in variants if round_ % 2 == 0 else variants[::-1]:
                    times[name].append(run(rt, mapper, args.n))
            rt.close()
        checked, blind = (statistics.median(times[v]) for v in ("checked", "blind"))
        print(
            f"{kind:9} n={args.n}: checked {checked:.1f} s, blind {blind:.1f} s, "
            f"checked/blind time {checked / blind:.2f}x  (rounds: {times})"
        )


if __name__ == "__main__":
    main()
