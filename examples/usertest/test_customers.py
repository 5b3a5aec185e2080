"""A team's own tests of its mappers, written with mapper's pytest plugin.

Run against the emulator named by DATASTORE_EMULATOR_HOST, or one the plugin
starts: ``pytest examples/usertest``. mapper's suite runs this file too.
"""

from __future__ import annotations

from google.cloud import ndb

from examples.models import Customer, FillEmailDomain
from mapper import JobStatus


def seed(n: int) -> None:
    ndb.put_multi(
        [
            Customer(name=f"c{i}", email=f"c{i}@shop{i % 3}.test", active=i % 4 != 0)
            for i in range(n)
        ]
    )


def test_fill_email_domain_fills_active_customers_only(
    mapper_runtime, mapper_ndb, mapper_namespace
):
    seed(300)
    job = FillEmailDomain().run(runtime=mapper_runtime, namespace=mapper_namespace, shards=2)
    info = job.status()
    assert info.status == JobStatus.SUCCEEDED
    assert info.counters["processed"] == info.counters["domains_filled"] == 225
    customers = Customer.query().fetch()
    assert {c.email_domain for c in customers if c.active} == {
        "shop0.test",
        "shop1.test",
        "shop2.test",
    }
    assert {c.email_domain for c in customers if not c.active} == {None}


def test_a_crash_after_a_write_replays_that_batch_and_counts_once(
    mapper_runtime, mapper_faults, mapper_ndb, mapper_namespace
):
    seed(300)
    mapper_faults.crash_at("after_write", times=1)
    job = FillEmailDomain().run(runtime=mapper_runtime, namespace=mapper_namespace, batch_size=50)
    info = job.status()
    assert mapper_faults.fired == {"after_write": 1}
    assert info.status == JobStatus.SUCCEEDED
    assert info.counters["processed"] == 225  # the replayed batch is not counted twice
