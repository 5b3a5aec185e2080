"""Jobs under the fault layer's production faults: contention, outages, latency, lost answers.

A commit that applied and then answered an error (finding 1 of issue 11) is run
again by run_in_transaction; each transaction of a slice must find its own step
already committed and go on from there, not apply it twice.
"""

from __future__ import annotations

import collections

from google.cloud import datastore

from mapper.datastore.metadata import list_kinds
from mapper.engine.jobs import start_job
from mapper.engine.spec import JobSpec
from mapper.engine.splitting import split_ranges
from mapper.transfer.export import ExportSpec, start_export
from mapper.transfer.importer import ImportSpec, start_import
from mapper.transfer.options import parse_options


def run(runtime, namespace, timeout=120, **options):
    spec = JobSpec(mapper="tests.support.mappers:TouchPeople", namespace=namespace, **options)
    return start_job(runtime, spec).wait(timeout=timeout)


def touched(people):
    return collections.Counter(p.touched for p in people())


def test_a_job_is_exact_under_aborted_commits_unavailable_bursts_and_latency(
    runtime, namespace, seed, people, faults
):
    seed(600)
    faults.aborted_commits(rate=0.3).unavailable_bursts(rate=0.05, length=3).latency(0.005)
    status = run(runtime, namespace, batch_size=50, shards=2)
    assert status.status == "succeeded"
    assert status.counters == {"processed": 600, "put": 600, "deleted": 0}
    assert touched(people) == {1: 600}
    assert faults.injected["aborted_commit"] > 0 and faults.injected["unavailable"] > 0


def is_checkpoint(request):
    """A transactional commit that writes a shard record with batches counted."""
    return any(
        m.upsert.key.path[-1].kind == "_MapperShard"
        and m.upsert.properties["batches"].integer_value > 0
        for m in request.mutations
    )


def test_an_ambiguous_checkpoint_commit_counts_its_batch_once(
    runtime, namespace, seed, people, faults
):
    seed(300)
    faults.ambiguous_commits(times=1, transactional=True, when=is_checkpoint)
    status = run(runtime, namespace, batch_size=100)
    assert faults.injected["ambiguous_commit"] == 1
    assert status.status == "succeeded"
    assert status.counters["processed"] == 300


def shard_record(request, **values):
    """A commit writing a shard record whose integer/string properties hold ``values``."""
    for m in request.mutations:
        if m.upsert.key.path and m.upsert.key.path[-1].kind == "_MapperShard":
            props = m.upsert.properties
            if all(
                props[name].integer_value == value
                if isinstance(value, int)
                else props[name].string_value == value
                for name, value in values.items()
            ):
                return True
    return False


def test_an_ambiguous_commit_of_the_last_checkpoint_still_finalizes_the_job(
    runtime, namespace, seed, people, faults
):
    """Failed before: the re-run found the lease released, stopped, and the job hung."""
    seed(300)
    faults.ambiguous_commits(
        times=1, transactional=True, when=lambda r: shard_record(r, status="done")
    )
    status = run(runtime, namespace, timeout=30, batch_size=100)
    assert faults.injected["ambiguous_commit"] == 1
    assert status.status == "succeeded"
    assert status.counters == {"processed": 300, "put": 300, "deleted": 0}
    assert touched(people) == {1: 300}


def test_an_ambiguous_commit_at_the_end_of_a_slice_still_enqueues_its_successor(
    runtime, namespace, seed, people, faults
):
    """Failed before: the re-run found the slice bumped, lost ownership, and the chain stalled."""
    seed(300)
    runtime.settings = runtime.settings.replace(slice_seconds=0.01)
    faults.ambiguous_commits(times=1, transactional=True, when=lambda r: shard_record(r, slice=1))
    status = run(runtime, namespace, timeout=30, batch_size=100)
    assert faults.injected["ambiguous_commit"] == 1
    assert status.status == "succeeded"
    assert status.counters == {"processed": 300, "put": 300, "deleted": 0}
    assert touched(people) == {1: 300}


def writes_people(request):
    return any(m.upsert.key.path[-1].kind == "Person" for m in request.mutations)


def test_an_ambiguous_exactly_once_commit_does_not_map_its_batch_again(
    runtime, namespace, seed, people, faults
):
    """Failed before: the re-run read the batch as written and mapped it again (touched 2)."""
    seed(300)
    faults.ambiguous_commits(times=2, transactional=True, when=writes_people)
    status = run(runtime, namespace, batch_size=100, exactly_once=True)
    assert faults.injected["ambiguous_commit"] == 2
    assert status.status == "succeeded"
    assert status.counters == {"processed": 300, "put": 300, "deleted": 0}
    assert touched(people) == {1: 300}


def is_claim(request):
    """The commit of a slice's claim: a shard record with a lease and no batch yet."""
    return shard_record(request, batches=0) and any(
        m.upsert.properties["lease_token"].string_value for m in request.mutations
    )


def test_an_ambiguous_commit_of_a_slice_claim_does_not_wait_for_its_own_lease(
    runtime, namespace, seed, people, faults
):
    """Failed before: the re-run found its own lease held and retried after it ran out."""
    seed(50)
    runtime.settings = runtime.settings.replace(lease_seconds=60.0)
    faults.ambiguous_commits(times=1, transactional=True, when=is_claim)
    status = run(runtime, namespace, timeout=20, batch_size=100)
    assert faults.injected["ambiguous_commit"] == 1
    assert status.status == "succeeded"
    assert touched(people) == {1: 50}


def test_an_empty_page_marked_not_finished_does_not_end_the_shard(
    runtime, namespace, seed, people, faults
):
    seed(300)
    faults.empty_pages(times=1, when=lambda request: request.query.kind[0].name == "Person")
    status = run(runtime, namespace, batch_size=100)
    assert faults.injected["empty_page"] == 1
    assert status.status == "succeeded"
    assert status.counters["processed"] == 300
    assert touched(people) == {1: 300}


# -- finding 2 outside the slice loop: every other query goes through the one pager ------


def is_query_of(kind):
    return lambda request: request.query.kind[0].name == kind


def test_split_points_survive_an_empty_scatter_page(
    runtime, namespace, seed, faults, needs_scatter
):
    """The scatter sample had a loop of its own that stopped at an empty page (one shard)."""
    seed(3000)
    wanted = split_ranges(runtime.store, "Person", namespace, 4)
    faults.empty_pages(times=1, when=is_query_of("Person"))
    assert split_ranges(runtime.store, "Person", namespace, 4) == wanted
    assert len(wanted[0]) == 4 and faults.injected["empty_page"] == 1


def test_metadata_listings_go_on_past_empty_pages(runtime, namespace, seed, faults, needs_metadata):
    """Holds already (the one pager): kept to show it."""
    seed(5)
    faults.empty_pages(times=2, when=is_query_of("__kind__"))
    assert "Person" in list_kinds(runtime.store, namespace)
    assert faults.injected["empty_page"] == 2


def test_a_natural_key_lookup_goes_on_past_an_empty_page(runtime, namespace, faults, tmp_path):
    """Holds already (the one pager): an empty page is not "no match", so nothing doubles."""
    project, source, target = runtime.settings.project, namespace + "src", namespace + "dst"
    for ns in (source, target):
        client = datastore.Client(project=project, namespace=ns)
        tags = [datastore.Entity(client.key("Tag")) for _ in range(5)]
        for i, tag in enumerate(tags):
            tag["name"] = f"tag {i}"
        client.put_multi(tags)
        client.close()
    out = str(tmp_path / "dump")
    spec = ExportSpec(out=out, kinds=["Tag"], namespaces=[source])
    assert start_export(runtime, spec).wait(timeout=60).status == "succeeded"
    is_lookup = is_query_of("Tag")
    faults.empty_pages(times=5, when=lambda request: is_lookup(request) and request.query.filter)
    options = parse_options(natural_keys=["Tag=name"])
    _, imported = start_import(
        runtime, ImportSpec(source=out, mode="remap", namespace=target, options=options)
    )
    status = imported.wait(timeout=60)
    assert status.status == "succeeded"
    assert faults.injected["empty_page"] == 5
    assert status.counters["merged"] == 5
    client = datastore.Client(project=project, namespace=target)
    assert len(list(client.query(kind="Tag").fetch())) == 5
