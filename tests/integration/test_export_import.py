"""Export to a dump and restore it (import --mode keep), on both emulators."""

from __future__ import annotations

import collections
import gzip
import json
import os
import uuid
from pathlib import Path

import pytest
from google.cloud import ndb

from mapper.datastore import txn as txns
from mapper.datastore.keys import key_from_bytes, key_order
from mapper.datastore.keywalk import move_partitions
from mapper.datastore.query import shard_query
from mapper.dump.manifest import MANIFEST, read_manifest
from mapper.dump.parts import read_part
from mapper.engine.records import shard_key
from mapper.errors import ConfigurationError, DumpFormatError
from mapper.transfer.export import (
    ExportSpec,
    _MapperExportPart,
    export_key,
    start_export,
    write_export_manifest,
)
from mapper.transfer.importer import ImportSpec, _MapperImportPart, plan_import, start_import
from tests.support.fixtures_alltypes import all_types_entities, entity, key, scalar
from tests.support.mappers import Person


def exact(pb):
    return pb.SerializeToString(deterministic=True)


def stored(runtime, namespace, kind):
    """Every entity of ``kind`` in ``namespace``, raw, in key order."""
    batch = runtime.store.run_query(shard_query(kind, [], None, None, None, 1000), namespace)
    return [r.entity for r in batch.entity_results]


def dump_keys(out):
    manifest = read_manifest(out)
    return [exact(pb.key) for part in manifest.parts for pb in read_part(out, part.path, part)]


def export(runtime, out, **options):
    status = start_export(runtime, ExportSpec(out=str(out), **options)).wait(timeout=120)
    assert status.status == "succeeded", status
    return status


def import_keep(runtime, source, **options):
    plan, job = start_import(runtime, ImportSpec(source=str(source), **options))
    status = job.wait(timeout=120)
    assert status.status == "succeeded", status
    return plan, status


def new_namespace():
    return "r" + uuid.uuid4().hex[:12]


def test_all_types_round_trip_into_a_fresh_namespace_is_exact(runtime, namespace, tmp_path):
    project = runtime.settings.project
    originals = all_types_entities(project, namespace)
    runtime.store.write(originals, [])
    export(runtime, tmp_path / "dump", kinds=["AllTypes"], namespaces=[namespace], shards=2)
    target = new_namespace()
    plan, status = import_keep(runtime, tmp_path / "dump", namespace=target)
    assert plan["kinds"] == {"AllTypes": 4}
    assert status.counters["put"] == 4

    moves = {(project, "", namespace): (project, "", target)}
    expected = []
    for pb in originals:
        move_partitions(pb, moves)
        expected.append(pb)
    restored = stored(runtime, target, "AllTypes")
    expected.sort(key=lambda pb: key_order(pb.key))
    assert [exact(pb) for pb in restored] == [exact(pb) for pb in expected]
    # Key values outside the dump's partition (other namespace, database, project) stay.
    first = next(pb for pb in restored if pb.key.path[-1].id == 1)
    assert first.properties["key_other_namespace"].key_value.partition_id.namespace_id == (
        "other-ns"
    )
    assert first.properties["key_id"].key_value.partition_id.namespace_id == target


def test_export_of_every_kind_lists_kinds_from_metadata_and_leaves_out_internal_ones(
    runtime, namespace, seed, tmp_path, needs_metadata
):
    seed(120)
    runtime.store.write([entity(key(runtime.settings.project, namespace, "Tag", "t1"))], [])
    status = export(runtime, tmp_path / "dump", namespaces=[namespace], shards=2, batch_size=50)
    manifest = read_manifest(tmp_path / "dump")
    assert manifest.kinds == ("Person", "Tag")
    assert manifest.totals["entities"] == 121
    assert {(k["kind"], k["entities"]) for k in status.kinds} == {("Person", 120), ("Tag", 1)}
    assert len(set(dump_keys(tmp_path / "dump"))) == 121


def test_export_replayed_after_a_crash_holds_each_entity_exactly_once(
    runtime, namespace, seed, faults, tmp_path
):
    seed(700)
    faults.crash_at("after_map", times=3, when=lambda info: info["batch"] in (1, 2))
    faults.crash_at("after_checkpoint", times=1)
    # Parts of 25, batches of 100 (four parts a checkpoint): several batches a shard.
    export(runtime, tmp_path / "dump", kinds=["Person"], namespaces=[namespace], batch_size=25)
    assert faults.fired["after_map"] == 3
    keys = dump_keys(tmp_path / "dump")
    assert len(keys) == 700
    assert len(set(keys)) == 700


def test_a_batchs_part_record_commits_with_its_checkpoint_not_before(
    runtime, namespace, seed, faults, tmp_path
):
    """The part record is written in the checkpoint's transaction (it was a commit of
    its own, before it): between a batch's write and its checkpoint it is not there."""
    seed(300)
    recorded = []

    def count_part_records(info):
        parent = shard_key(info["job_id"], info["shard"], runtime.settings.state_namespace)
        with runtime.context():
            recorded.append(len(_MapperExportPart.query(ancestor=parent).fetch(keys_only=True)))

    # The third batch, its four part files written: the first two batches' records only.
    faults.call_at("after_write", count_part_records, when=lambda info: info["batch"] == 2)
    export(runtime, tmp_path / "d", kinds=["Person"], namespaces=[namespace], batch_size=25,
           shards=1)  # fmt: skip
    assert recorded == [2 * 4]
    assert read_manifest(tmp_path / "d").totals["entities"] == 300


def test_an_export_batch_is_several_part_files_under_one_checkpoint(
    runtime, namespace, seed, tmp_path
):
    seed(1000)
    done = export(runtime, tmp_path / "d", kinds=["Person"], namespaces=[namespace],
                  batch_size=100, shards=1)  # fmt: skip
    manifest = read_manifest(tmp_path / "d")
    assert [part.count for part in manifest.parts] == [100] * 10
    assert len({part.path for part in manifest.parts}) == 10
    assert len(set(dump_keys(tmp_path / "d"))) == 1000
    # Batches of PARTS_PER_BATCH parts: 400, 400 and 200 entities, three checkpoints.
    assert [shard.batches for shard in done.shards] == [3]


def test_the_manifest_lists_parts_recorded_under_the_export_by_an_earlier_version(
    runtime, namespace, seed, tmp_path
):
    """An export begun before part records moved under the shard records, and finished
    by this version, has records in both places; the manifest lists them all, the
    shard's winning a path recorded in both (written later, by the replay)."""
    seed(120)
    done = export(runtime, tmp_path / "d", kinds=["Person"], namespaces=[namespace],
                  batch_size=50, shards=1)  # fmt: skip
    first = read_manifest(tmp_path / "d").parts[0]
    with runtime.context():
        record = txns.get(runtime.store, export_key(done.id, runtime.settings.state_namespace))[0]
        record.parts_under_shards = False  # as an earlier version created it

        def old_part(path, count):
            return _MapperExportPart(key=ndb.Key(_MapperExportPart, path, parent=record.key),
                                     count=count, sha256="0" * 64, bytes=1, kinds=["Person"],
                                     namespaces=[namespace])  # fmt: skip

        txns.put_records(runtime.store, [record, old_part(first.path, 999), old_part("old", 7)])
        manifest = write_export_manifest(runtime, record)
    counts = {part.path: part.count for part in manifest.parts}
    assert counts["old"] == 7
    assert counts[first.path] == first.count
    assert len(counts) == 4  # 120 entities in batches of 50, and the old one


def test_export_filters_select_entities(runtime, namespace, seed, tmp_path):
    seed(30, active=True)
    seed(20, start=30, active=False)
    export(
        runtime,
        tmp_path / "d",
        kinds=["Person"],
        namespaces=[namespace],
        filters=[("active", False)],
    )
    assert read_manifest(tmp_path / "d").totals["entities"] == 20


def test_restore_into_the_same_namespace_overwrites_by_key(runtime, namespace, seed, tmp_path):
    seed(50)
    export(runtime, tmp_path / "dump", kinds=["Person"], namespaces=[namespace])
    with runtime.context(namespace):
        people = Person.query().fetch()
        for p in people:
            p.name = "changed"
        ndb.put_multi(people)
    import_keep(runtime, tmp_path / "dump")
    with runtime.context(namespace):
        names = sorted(p.name for p in Person.query().fetch())
    assert names == [f"p{i:05d}" for i in range(50)]


def test_dry_run_reports_the_plan_and_writes_nothing(runtime, namespace, seed, tmp_path):
    seed(40)
    export(runtime, tmp_path / "dump", kinds=["Person"], namespaces=[namespace])
    target = new_namespace()
    plan, job = start_import(
        runtime, ImportSpec(source=str(tmp_path / "dump"), namespace=target, dry_run=True)
    )
    assert job is None
    assert plan["kinds"] == {"Person": 40}
    assert plan["namespaces"] == {namespace: target}
    assert stored(runtime, target, "Person") == []
    assert staged(runtime) == 0


def staged(runtime):
    with runtime.context():
        return _MapperImportPart.query().count()


@pytest.fixture
def good_dump(runtime, namespace, seed, tmp_path):
    seed(30)
    out = tmp_path / "dump"
    export(runtime, out, kinds=["Person"], namespaces=[namespace], batch_size=10)
    return out


def _first_part(out):
    return out / read_manifest(out).parts[0].path


def truncate_part(out):
    part = _first_part(out)
    part.write_bytes(part.read_bytes()[:-20])


def flip_a_byte(out):
    part = _first_part(out)
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))


def remove_manifest(out):
    (out / MANIFEST).unlink()


def future_version(out):
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["version"] = 99
    (out / MANIFEST).write_text(json.dumps(manifest))


def reserved_kind(out):
    """A part whose entity has a reserved kind, with a manifest that agrees with it."""
    import hashlib

    manifest = json.loads((out / MANIFEST).read_text())
    part = manifest["parts"][0]
    path = out / part["path"]
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    lines[0] = lines[0].replace('"kind":"Person"', '"kind":"__Stat_Total__"')
    data = gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)
    path.write_bytes(data)
    part.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    manifest["totals"]["bytes"] = sum(p["bytes"] for p in manifest["parts"])
    (out / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (truncate_part, "part-"),
        (flip_a_byte, "part-"),
        (remove_manifest, "incomplete dump: no manifest.json"),
        (future_version, "unsupported dump format version 99"),
        (reserved_kind, "reserved kind '__Stat_Total__'"),
    ],
)
def test_corrupt_dump_is_refused_and_nothing_is_written(runtime, good_dump, corrupt, message):
    corrupt(good_dump)
    target = new_namespace()
    with pytest.raises(DumpFormatError, match=message.replace("(", r"\(")) as error:
        start_import(runtime, ImportSpec(source=str(good_dump), namespace=target))
    assert str(good_dump) in str(error.value)
    assert stored(runtime, target, "Person") == []
    assert staged(runtime) == 0


def test_dump_of_another_project_needs_move_project(runtime, good_dump):
    manifest = json.loads((good_dump / MANIFEST).read_text())
    manifest["project"] = "elsewhere"
    (good_dump / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ConfigurationError, match="--move-project"):
        plan_import(runtime, ImportSpec(source=str(good_dump)))
    # Asked to move: the entities' own keys must then be of the dump's project.
    with pytest.raises(DumpFormatError, match="not of the dump's project 'elsewhere'"):
        plan_import(runtime, ImportSpec(source=str(good_dump), move_project=True))


def test_export_refuses_a_location_that_already_holds_a_dump(runtime, good_dump):
    with pytest.raises(ConfigurationError, match="already holds a complete dump"):
        start_export(runtime, ExportSpec(out=str(good_dump), kinds=["Person"]))


def test_export_to_an_empty_kind_writes_a_manifest_with_no_entities(runtime, namespace, tmp_path):
    export(runtime, tmp_path / "e", kinds=["Nothing"], namespaces=[namespace])
    manifest = read_manifest(tmp_path / "e")
    assert manifest.kinds == ("Nothing",)
    assert manifest.totals["entities"] == 0
    assert os.path.exists(tmp_path / "e" / MANIFEST)


def test_large_unindexed_text_and_many_parts_round_trip(runtime, namespace, tmp_path):
    project = runtime.settings.project
    text = "long text " * 50_000
    pbs = [
        entity(
            key(project, namespace, "Doc", i + 1), body=scalar("string_value", text, excluded=True)
        )
        for i in range(12)
    ]
    runtime.store.write(pbs, [])
    # One shard: batches of 5 make exactly three parts (scatter samples are random).
    export(runtime, tmp_path / "d", kinds=["Doc"], namespaces=[namespace], batch_size=5, shards=1)
    assert len(read_manifest(tmp_path / "d").parts) == 3
    target = new_namespace()
    import_keep(runtime, tmp_path / "d", namespace=target)
    restored = stored(runtime, target, "Doc")
    assert [pb.properties["body"].string_value for pb in restored] == [text] * 12
    assert Path(tmp_path / "d").exists()


def test_export_to_cloud_storage_and_restore_from_it(runtime, namespace, seed, gcs_bucket):
    seed(80)
    out = f"{gcs_bucket}/dumps/today"
    status = export(runtime, out, kinds=["Person"], namespaces=[namespace], batch_size=30, shards=1)
    assert status.manifest == f"{out}/manifest.json"
    assert len(read_manifest(out).parts) == 3
    target = new_namespace()
    plan, done = import_keep(runtime, out, namespace=target)
    assert plan["entities"] == done.counters["put"] == 80
    names = sorted(pb.properties["name"].string_value for pb in stored(runtime, target, "Person"))
    assert names == [f"p{i:05d}" for i in range(80)]


def test_an_export_over_many_namespaces_is_one_job_per_kind_with_each_entity_once(
    runtime, namespace, tmp_path
):
    sizes = [230, 40, 7, 1] + [3] * 20
    tenants = [f"{namespace}-{i:02d}" for i in range(len(sizes))]
    project = runtime.settings.project
    for tenant, size in zip(tenants, sizes, strict=True):
        people = [
            entity(key(project, tenant, "Person", i + 1), name=scalar("string_value", f"p{i}"))
            for i in range(size)
        ]
        tags = [entity(key(project, tenant, "Tag", "t"))] if size > 5 else []
        runtime.store.write(people + tags, [])
    status = export(runtime, tmp_path / "dump", namespaces=tenants, kinds=["Person", "Tag"],
                    shards=3, batch_size=50)  # fmt: skip

    # One job per kind, each over the namespaces holding it (docs/namespaces.md).
    assert [(k["kind"], len(k["namespaces"]), k["entities"]) for k in status.kinds] == [
        ("Person", 24, sum(sizes)), ("Tag", 24, 3)
    ]  # fmt: skip
    assert len(status.jobs) == 2
    manifest = read_manifest(tmp_path / "dump")
    assert set(manifest.namespaces) == set(tenants)
    assert manifest.totals["entities"] == sum(sizes) + 3
    # Each part holds one namespace; every entity is in the dump once.
    assert all(len(part.namespaces) == 1 for part in manifest.parts)
    keys = [key_from_bytes(k) for k in dump_keys(tmp_path / "dump")]
    assert len(set(dump_keys(tmp_path / "dump"))) == len(keys) == sum(sizes) + 3
    per_tenant = collections.Counter(k.partition_id.namespace_id for k in keys)
    assert per_tenant == {t: s + (s > 5) for t, s in zip(tenants, sizes, strict=True)}

    # Restored: one import (a job over the dump's parts, whatever their namespaces), every
    # tenant's entities back in their own namespace, exactly as they were.
    before = {t: stored(runtime, t, "Person") for t in tenants}
    runtime.store.write([], [e.key for t in tenants for e in before[t]])
    _, restored = import_keep(runtime, tmp_path / "dump", shards=3)
    assert restored.counters["put"] == sum(sizes) + 3
    after = {t: stored(runtime, t, "Person") for t in tenants}
    assert {t: list(map(exact, after[t])) for t in tenants} == {
        t: list(map(exact, before[t])) for t in tenants
    }
