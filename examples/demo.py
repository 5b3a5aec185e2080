"""The demo: start the Datastore emulator, seed customers, run two mappers, stop."""

from __future__ import annotations

import collections
import sys
import time

from google.cloud import ndb

from examples.models import Customer, DeleteInactive, FillEmailDomain
from mapper.emulator import start_emulator
from mapper.progress import Progress
from mapper.runtime import Runtime
from mapper.settings import Settings

CUSTOMERS = 20_000
DOMAINS = ("example.com", "example.org", "mail.test", "corp.test")


def seed(rt: Runtime) -> None:
    started = time.monotonic()
    with rt.context(""):
        for start in range(0, CUSTOMERS, 500):
            ndb.put_multi(
                [
                    Customer(
                        name=f"customer {i}",
                        email=f"c{i}@{DOMAINS[i % len(DOMAINS)]}",
                        active=i % 10 != 0,
                    )
                    for i in range(start, min(CUSTOMERS, start + 500))
                ]
            )
    print(f"seeded {CUSTOMERS} customers in {time.monotonic() - started:.1f}s")


def run(rt: Runtime, mapper: object, total: int, **options: object) -> dict:
    print(f"\nrunning {type(mapper).__name__} ({options})")
    job = mapper.run(runtime=rt, wait=False, **options)  # type: ignore[attr-defined]
    status = job.wait(progress=Progress(total))
    counters = ", ".join(f"{k}={v}" for k, v in status["counters"].items())
    print(f"job {job.id} {status['status']}: {counters}  [{status['split']}]")
    return status


def main() -> int:
    print("starting the Datastore emulator ...")
    with start_emulator("datastore", project="mapper-demo") as emulator:
        rt = Runtime(Settings(project=emulator.project, emulator_host=emulator.host))
        try:
            seed(rt)
            filled = run(rt, FillEmailDomain(), CUSTOMERS * 9 // 10, shards=4, batch_size=200)
            deleted = run(rt, DeleteInactive(), CUSTOMERS // 10, shards=2, batch_size=200)
            with rt.context(""):
                left = Customer.query().fetch()
            domains = collections.Counter(c.email_domain for c in left)
            print(f"\n{len(left)} customers left; email_domain per domain: {dict(domains)}")
            ok = (
                filled["status"] == deleted["status"] == "succeeded"
                and len(left) == CUSTOMERS * 9 // 10
                and None not in domains
            )
        finally:
            rt.close()
    print("emulator stopped; demo", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
