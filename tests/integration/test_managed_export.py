"""Managed exports (gcloud's format) in and out, against the Datastore emulator's own
``:export`` and ``:import``."""

from __future__ import annotations

import glob
import json
import os
import urllib.error
import urllib.request

import pytest

from examples import blog as sites
from mapper.datastore.keys import key_order
from mapper.datastore.keywalk import move_partitions
from mapper.datastore.rpc import Key
from mapper.dump.codec import Entity
from mapper.dump.managed import leveldb
from mapper.dump.managed import metadata as meta
from mapper.errors import DumpFormatError
from mapper.transfer.export import ExportSpec, start_export
from mapper.transfer.importer import ImportSpec, start_import
from tests.integration.test_export_import import exact, new_namespace, stored
from tests.integration.test_remap import counts, expected_b, merge, snapshot
from tests.support.fixtures_alltypes import all_types_entities


def emulator_call(emulator, verb, body):
    url = f"{emulator.url}/v1/projects/{emulator.project}:{verb}"
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        raise AssertionError(f"{verb}: {e.code} {e.read()[:2000]!r}") from e


def managed_export(emulator, out, namespace):
    """The emulator's managed export of ``namespace``; returns its overall metadata file."""
    emulator_call(emulator, "export", {"outputUrlPrefix": str(out),
                                       "entityFilter": {"namespaceIds": [namespace]}})  # fmt: skip
    # The emulator may write a folder per step; the last one lists everything.
    return sorted(glob.glob(f"{out}/*/*{meta.OVERALL_SUFFIX}"))[-1]


def import_from(runtime, source, **options):
    plan, run = start_import(runtime, ImportSpec(source=str(source), **options))
    status = run.wait(timeout=120)
    assert status.status == "succeeded", status
    return plan, status


def moved(originals, project, source, target):
    expected = []
    for pb in originals:
        move_partitions(pb, {(project, "", source): (project, "", target)})
        expected.append(pb)
    return sorted(expected, key=lambda pb: key_order(pb.key))


def as_the_managed_import_restores(source, project):
    """``source`` as the managed import writes it back: it moves key values of another
    project into the importing one (the emulator's own export, imported back, does the
    same); all else is exact."""
    expected = [Entity.FromString(exact(pb)) for pb in source]
    for pb in expected:
        if "key_other_project" in pb.properties:
            pb.properties["key_other_project"].key_value.partition_id.project_id = project
    return [exact(pb) for pb in expected]


def test_emulator_export_imports_keep_into_another_namespace_protobuf_for_protobuf(
    runtime, namespace, tmp_path, emulator, needs_managed_export
):
    project = runtime.settings.project
    runtime.store.write(all_types_entities(project, namespace), [])
    source = sorted(
        (pb for pb in stored(runtime, namespace, "AllTypes")), key=lambda pb: key_order(pb.key)
    )
    overall = managed_export(emulator, tmp_path / "x", namespace)
    target = new_namespace()
    # The folder holding the overall file names the export as well as the file itself.
    plan, status = import_from(runtime, os.path.dirname(overall), namespace=target)
    assert plan["kinds"] == {"AllTypes": 4} and status.counters["put"] == 4
    restored = stored(runtime, target, "AllTypes")
    assert [exact(pb) for pb in restored] == [
        exact(pb) for pb in moved(source, project, namespace, target)
    ]


def test_keep_import_reserves_the_restored_ids(
    runtime, namespace, tmp_path, emulator, needs_managed_export
):
    project = runtime.settings.project
    high = 5_000
    entity = all_types_entities(project, namespace)[3]  # Parent/Middle/AllTypes 2: a leaf
    entity.key.path[-1].id = high
    del entity.key.path[:-1]
    runtime.store.write([entity], [])
    overall = managed_export(emulator, tmp_path / "x", namespace)
    target = new_namespace()
    import_from(runtime, overall, namespace=target)
    incomplete = Key()
    incomplete.partition_id.project_id, incomplete.partition_id.namespace_id = project, target
    incomplete.path.add(kind="AllTypes")
    allocated = runtime.store.allocate_ids([incomplete] * 20)
    assert all(key.path[-1].id != high for key in allocated)
    assert all(key.path[-1].id > high for key in allocated)


def test_emulator_export_merges_with_remap_like_a_mapper_dump(
    runtime, namespace, tmp_path, emulator, needs_managed_export
):
    site_b = namespace + "b"
    with runtime.context(namespace):
        sites.seed_site("A", ("python", "go"))
    with runtime.context(site_b):
        sites.seed_site("B", ("python", "rust"))
    before = snapshot(runtime, namespace)
    overall = managed_export(emulator, tmp_path / "x", site_b)
    status = merge(runtime, namespace, overall)
    assert status.status == "succeeded", status
    assert snapshot(runtime, namespace) == {**before, **expected_b(("dangling", "Author", 99))}
    assert counts(runtime, namespace) == {"Author": 6, "Tag": 3, "Post": 4, "Config": 1}
    c = status.counters
    assert c["merged"] == 1 and c["conflict-skipped"] == 1 and c["dangling"] == 1
    assert c["put"] == 3 + 1 + 2 + 2 + 2


def test_mapper_managed_export_is_read_back_by_the_emulator_import(
    runtime, namespace, tmp_path, emulator, needs_managed_export
):
    project = runtime.settings.project
    runtime.store.write(all_types_entities(project, namespace), [])
    source = stored(runtime, namespace, "AllTypes")
    out = tmp_path / "managed"
    spec = ExportSpec(out=str(out), kinds=["AllTypes"], namespaces=[namespace],
                      shards=2, batch_size=2, format="managed")  # fmt: skip
    info = start_export(runtime, spec).wait(timeout=120)
    assert info.status == "succeeded" and info.manifest.endswith(meta.OVERALL_SUFFIX)
    runtime.store.write([], [pb.key for pb in source])
    assert stored(runtime, namespace, "AllTypes") == []
    emulator_call(emulator, "import", {"inputUrl": info.manifest})
    assert [
        exact(pb) for pb in stored(runtime, namespace, "AllTypes")
    ] == as_the_managed_import_restores(source, project)
    # ... and mapper reads its own managed output back, exactly, into another namespace.
    target = new_namespace()
    import_from(runtime, out, namespace=target)
    assert [exact(pb) for pb in stored(runtime, target, "AllTypes")] == [
        exact(pb) for pb in moved(source, project, namespace, target)
    ]


def _output(overall):
    return glob.glob(f"{os.path.dirname(overall)}/*/*/output-*")[0]


def _flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def _truncate(path, size):
    os.truncate(path, size)


def _wrong_count(overall):
    with open(overall, "rb") as f:
        records = [r for _, r in leveldb.read_records(f, overall)]
    table = meta.Overall.FromString(records[1])
    table.folder[0].count += 1
    with open(overall, "wb") as f:
        writer = leveldb.RecordWriter(f)
        writer.write(records[0])
        writer.write(table.SerializeToString())


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda o: _flip(_output(o), 40), ("bad CRC", "output-0", "offset 0")),
        (
            lambda o: _truncate(_output(o), os.path.getsize(_output(o)) - 3),
            ("truncated record", "output-0", "offset "),
        ),
        (lambda o: _truncate(_output(o), 5), ("truncated record header", "offset 0")),
        (_wrong_count, ("the metadata says", "overall_export_metadata", "holds 5 entities")),
    ],
    ids=["bad-crc", "truncated-record", "truncated-header", "wrong-metadata"],
)
def test_a_damaged_managed_export_is_refused_naming_file_and_offset_and_nothing_is_written(
    runtime, namespace, tmp_path, emulator, needs_managed_export, damage, named
):
    project = runtime.settings.project
    runtime.store.write(all_types_entities(project, namespace), [])
    overall = managed_export(emulator, tmp_path / "x", namespace)
    damage(overall)
    target = new_namespace()
    with pytest.raises(DumpFormatError) as refused:
        start_import(runtime, ImportSpec(source=overall, namespace=target))
    for words in named:
        assert words in str(refused.value)
    assert stored(runtime, target, "AllTypes") == []


@pytest.fixture
def table_builds(monkeypatch):
    """How many times a managed export's table of contents is built (one pass over its files)."""
    from mapper.dump.managed import tree

    built = []
    real = tree.read_managed_manifest

    def counted(overall):
        built.append(overall)
        return real(overall)

    monkeypatch.setattr(tree, "read_managed_manifest", counted)
    return built


def test_an_import_builds_the_table_of_contents_once(
    runtime, namespace, tmp_path, emulator, needs_managed_export, table_builds
):
    from mapper.cleanup.missing import plan_missing

    runtime.store.write(all_types_entities(runtime.settings.project, namespace), [])
    overall = managed_export(emulator, tmp_path / "x", namespace)
    import_from(runtime, overall, namespace=new_namespace())
    assert table_builds == [overall]
    del table_builds[:]
    plan, run = start_import(
        runtime, ImportSpec(source=overall, mode="remap", namespace=new_namespace(), dry_run=True)
    )
    assert run is None and plan["remap"]["AllTypes"]["inserts"] == 4
    assert table_builds == [overall]
    del table_builds[:]
    assert plan_missing(runtime, overall, "AllTypes", namespace).empty
    assert table_builds == [overall]
