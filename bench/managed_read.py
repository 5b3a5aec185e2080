"""Reading a managed export against reading mapper's own dump of the same entities.

    .venv/bin/python -m bench.managed_read [--sizes 10000,100000]

Per size N: N entities (5 properties, a list, a timestamp, like bench.dump's
items) written once as mapper's dump (500 a part) and once as a managed export
(output files of 10,000 records, as a production export's are large). Each is
then read whole, in its own child process, the way an import reads it: the
table of contents, then every part's v1 entities. Prints seconds, entities a
second, the ratio (managed / mapper, the issue asks >= 0.7) and each reader's
peak RSS (flat across sizes: memory does not grow with the export).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from typing import Any

from mapper.dump.managed.tree import write_metadata, write_output
from mapper.dump.manifest import Manifest, write_manifest
from mapper.dump.parts import write_part
from mapper.dump.sources import read_manifest, read_part, resolve_source
from tests.support.fixtures_alltypes import array, entity, key, scalar, timestamp

PART, OUTPUT = 500, 10_000


def items(n: int) -> Any:
    for i in range(1, n + 1):
        yield entity(
            key("bench", "", "Item", i),
            name=scalar("string_value", f"item {i:08d}"),
            count=scalar("integer_value", i),
            score=scalar("double_value", i / 7),
            active=scalar("boolean_value", i % 2 == 0),
            note=scalar("string_value", "x" * 40, excluded=True),
            tags=array(scalar("string_value", "a"), scalar("string_value", "b")),
            created=timestamp(1_700_000_000 + i, 123_000),
        )


def write_both(n: int, root: str) -> tuple[str, str]:
    mapper_dir, managed_dir = f"{root}/mapper", f"{root}/managed"
    every = list(items(n))
    parts = [
        write_part(mapper_dir, f"~default/Item/part-00000-{i:06d}.jsonl.gz", every[s : s + PART])
        for i, s in enumerate(range(0, n, PART))
    ]
    write_manifest(mapper_dir, Manifest.build("bench", "", parts))
    outputs = [
        write_output(managed_dir, f"default_namespace/kind_Item/output-{i}", every[s : s + OUTPUT])
        for i, s in enumerate(range(0, n, OUTPUT))
    ]
    write_metadata(managed_dir, "bench", outputs)
    return mapper_dir, managed_dir


def read_all(location: str) -> dict[str, Any]:
    started = time.perf_counter()
    source = resolve_source(location)
    manifest = read_manifest(source)
    count = sum(1 for part in manifest.parts for _ in read_part(source, part.path, part))
    seconds = time.perf_counter() - started
    return {"entities": count, "seconds": seconds, "peak_rss_mib": peak_rss_mib()}


def peak_rss_mib() -> int:
    """This process's own peak RSS (VmHWM: ru_maxrss would count the parent's, inherited
    across fork)."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) // 1024


def child(location: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.managed_read", "--read", location],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.managed_read")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--read", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read:
        print(json.dumps(read_all(args.read)))
        return
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as root:
            mapper_dir, managed_dir = write_both(n, root)
            mine, managed = child(mapper_dir), child(managed_dir)
        assert mine["entities"] == managed["entities"] == n
        for name, r in (("mapper dump", mine), ("managed export", managed)):
            rate = n / r["seconds"]
            print(f"N={n:>7} {name:<15} {r['seconds']:6.2f}s {rate:9,.0f}/s"
                  f"  peak RSS {r['peak_rss_mib']} MiB")  # fmt: skip
        print(f"N={n:>7} managed / mapper speed: {mine['seconds'] / managed['seconds']:.2f}x")


if __name__ == "__main__":
    main()
