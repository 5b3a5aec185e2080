"""One job over many namespaces (docs/namespaces.md): planned as work units, each
entity touched once, the shards evenly loaded, resumable by re-running the command."""

from __future__ import annotations

import collections
import json

import pytest
from google.cloud import ndb

from mapper.engine.runtime import Runtime
from mapper.engine.status import job_status
from mapper.testing.emulator import Emulator
from tests.support.mappers import Person, TouchPeople
from tests.support.processes import FAULTS, command_starter, finish, kill_when, progress


class QuietTenantMark(ndb.Model):
    """Another kind than the job's (a name no other test module's model takes: ndb keeps
    one model class per kind for the whole process)."""


#: One tenant of 20,000, three middling, the rest tiny (1 to 40 entities).
SIZES = [20_000, 1_500, 800, 300] + [1 + (i * 7) % 40 for i in range(296)]


def tenants(namespace: str, sizes: list[int], tag: str = "") -> dict[str, int]:
    return {f"{namespace}{tag}-{i:03d}": size for i, size in enumerate(sizes)}


def seed_tenants(runtime: Runtime, planned: dict[str, int]) -> None:
    with runtime.context():
        for name, size in planned.items():
            for start in range(0, size, 500):
                people = [
                    Person(key=ndb.Key(Person, f"p{j:05d}", namespace=name), name=f"p{j:05d}")
                    for j in range(start, min(size, start + 500))
                ]
                ndb.put_multi(people, use_cache=False)


def touched(runtime: Runtime, names: list[str]) -> dict[str, collections.Counter[int]]:
    """Per namespace: how many of its people were touched how many times."""
    with runtime.context():
        return {
            name: collections.Counter(
                p.touched for p in Person.query(namespace=name).fetch(use_cache=False)
            )
            for name in names
        }


@pytest.fixture
def fresh(emulator: Emulator) -> None:
    """An emulator holding nothing: --all-namespaces sees this test's namespaces alone."""
    emulator.reset()


def test_all_namespaces_touch_every_entity_once_with_even_shards(
    fresh, needs_metadata, runtime, namespace, cli
):
    planned = tenants(namespace, SIZES)
    seed_tenants(runtime, planned)

    result = cli("run", "tests.support.mappers:TouchPeople", "--all-namespaces",
                 "--shards", "8", "--id", "tenants", "--namespace-counters")  # fmt: skip
    total = sum(SIZES)
    assert f"job tenants succeeded: processed={total}, put={total}" in result.output

    assert all(counts == {1: planned[n]} for n, counts in touched(runtime, list(planned)).items())
    info = job_status(runtime, "tenants")
    assert (info.namespaces_done, info.namespaces_total, info.planned) == (300, 300, total)
    loads = [shard.counters["processed"] for shard in info.shards]
    assert len(loads) == 8 and max(loads) <= 2 * total / 8, loads
    # The large tenant was cut into key ranges: no shard read it alone.
    # docs/namespaces.md quotes this line.
    assert "300 hold the kind (28636 entities) -> 311 units over 8 shards" in info.split
    assert "(largest shard 3580, average 3580)" in info.split
    # Counters per namespace: the top ones, and the rest as "(other)", adding up.
    counters = info.namespace_counters
    assert counters[f"{namespace}-000"] == {"processed": 20_000, "put": 20_000}
    assert sum(c["processed"] for c in counters.values()) == total
    assert "(other)" in counters and len(counters) <= 21
    assert info.namespaces_added == {"count": 0, "first": []}

    shown = cli("status", "tenants")
    assert "namespaces: 300/300 done" in shown.output
    as_json = json.loads(cli("status", "tenants", "--json").output)
    assert as_json["namespaces_total"] == 300


def test_a_prefix_selects_its_namespaces_and_reports_ones_that_appear_later(
    fresh, needs_metadata, runtime, namespace, cli
):
    chosen = tenants(namespace, [30, 5, 1], tag="a")
    other = tenants(namespace, [12, 7], tag="b")
    seed_tenants(runtime, chosen | other)
    # Listed at the start, without the kind: it gets some while the job runs.
    quiet = f"{namespace}a-quiet"
    with runtime.context():
        QuietTenantMark(key=ndb.Key(QuietTenantMark, "t", namespace=quiet)).put(use_cache=False)
    late = f"{namespace}a-new"

    result = cli("run", "tests.support.mappers:TouchAndOpenTenant",
                 "--namespace-prefix", f"{namespace}a", "--shards", "2", "--id", "pre",
                 "--param", f'tenants=["{late}", "{quiet}"]',
                 "--param", f"at={namespace}a-000")  # fmt: skip
    assert "job pre succeeded: processed=36, put=38" in result.output

    seen = touched(runtime, [*chosen, *other, late, quiet])
    assert all(seen[n] == {1: size} for n, size in chosen.items())
    assert all(seen[n] == {0: size} for n, size in other.items())
    # The tenants that appeared (or got the kind) while the job ran were not read, and
    # are reported.
    assert seen[late] == seen[quiet] == {0: 1}
    info = job_status(runtime, "pre")
    assert info.namespaces_added == {"count": 2, "first": sorted([late, quiet])}
    assert (info.namespaces_listed, info.namespaces_total) == (4, 3)


def test_tenants_larger_than_the_probe_are_counted_in_full(runtime, namespace):
    planned = tenants(namespace, [1_100, 1_300])
    seed_tenants(runtime, planned)
    job = TouchPeople().run(namespaces=list(planned), runtime=runtime, job_id="full")
    info = job.status()
    assert info.planned == info.counters["processed"] == 2_400


def test_namespaces_from_a_file_on_either_emulator(runtime, namespace, cli, tmp_path):
    planned = tenants(namespace, [700, 40, 3, 1, 0])
    seed_tenants(runtime, planned)
    names = tmp_path / "tenants.txt"
    names.write_text("# one per line\n" + "\n".join(planned) + "\n")

    result = cli("run", "tests.support.mappers:TouchPeople", "--namespaces-from", str(names),
                 "--shards", "3", "--id", "listed", "--batch-size", "50")  # fmt: skip
    assert "job listed succeeded: processed=744, put=744" in result.output
    seen = touched(runtime, list(planned))
    assert all(seen[n] == ({1: size} if size else {}) for n, size in planned.items())
    info = job_status(runtime, "listed")
    # The empty namespace was listed, not planned: nothing of the kind to read there.
    assert (info.namespaces_listed, info.namespaces_done, info.namespaces_total) == (5, 4, 4)


def test_a_killed_job_over_many_namespaces_under_faults_finishes_exactly_when_run_again(
    runtime, namespace, tmp_path
):
    planned = tenants(namespace, [1_200, 400] + [1 + i % 9 for i in range(60)])
    seed_tenants(runtime, planned)
    names = tmp_path / "tenants.txt"
    names.write_text("\n".join(planned))
    # Production's faults too: empty NOT_FINISHED pages, ambiguous and aborted commits.
    command = command_starter(namespace, f"seed=7,{FAULTS}")
    args = ["run", "tests.support.mappers:TouchPeople", "--namespaces-from", str(names),
            "--shards", "4", "--batch-size", "20", "--exactly-once", "--id", "again"]  # fmt: skip
    total = sum(planned.values())

    kill_when(command(*args), progress(lambda: job_status(runtime, "again"), total // 3))
    killed = job_status(runtime, "again")
    assert killed.status == "running" and killed.counters["processed"] < total

    output = finish(command(*args))
    assert f"job again succeeded: processed={total}, put={total}" in output
    assert all(counts == {1: planned[n]} for n, counts in touched(runtime, list(planned)).items())


def test_bad_namespace_choices_are_refused_before_any_write(runtime, namespace, cli, tmp_path):
    both = cli("run", "tests.support.mappers:TouchPeople", "--all-namespaces",
               "--namespace-prefix", "x")  # fmt: skip
    assert both.exit_code != 0
    assert "use one of all_namespaces, namespace_prefix, not several" in both.output
    mixed = cli("run", "tests.support.mappers:TouchPeople", "--namespace", "n1",
                "--all-namespaces")  # fmt: skip
    assert "namespace 'n1' and all_namespaces exclude each other" in mixed.output
    empty = tmp_path / "none.txt"
    empty.write_text("# nobody\n")
    nobody = cli("run", "tests.support.mappers:TouchPeople", "--namespaces-from", str(empty))
    assert "names no namespace" in nobody.output
    counters = cli("run", "tests.support.mappers:TouchPeople", "--namespace-counters")
    assert "namespace_counters needs a job over many namespaces" in counters.output
    with runtime.context():
        from mapper.engine.records import _MapperJob

        assert _MapperJob.query(namespace=namespace).count() == 0


def test_all_namespaces_where_the_store_lists_none_says_what_to_use(
    emulator, runtime, namespace, cli
):
    result = cli("run", "tests.support.mappers:TouchPeople", "--namespace-prefix", namespace)
    if emulator.supports_metadata:
        # No namespace has the prefix yet: one job that finds nothing to do.
        assert "succeeded: processed=0" in result.output
        return
    # The Firestore emulator answers no metadata query: refused before any write.
    assert result.exit_code != 0
    assert "--namespaces-from FILE" in result.output
    with runtime.context():
        from mapper.engine.records import _MapperJob

        assert _MapperJob.query(namespace=namespace).count() == 0
