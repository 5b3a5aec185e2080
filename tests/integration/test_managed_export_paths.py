"""Managed exports through every way in and out: the CLI, the jobs API, cleanup missing,
Cloud Storage, and records larger than a 32 KiB block; on the Datastore emulator."""

from __future__ import annotations

import glob
import os

import pytest

from handlers import create_app
from mapper.dump.codec import Entity
from mapper.dump.managed import metadata as meta
from mapper.dump.managed.leveldb import FIRST, LAST, MIDDLE
from tests.integration.test_export_import import exact, new_namespace, stored
from tests.integration.test_http_app import wait_for
from tests.integration.test_managed_export import (
    as_the_managed_import_restores,
    emulator_call,
    import_from,
    managed_export,
    moved,
)
from tests.support.cleanup_seed import put
from tests.support.fixtures_alltypes import all_types_entities
from tests.unit.test_leveldb import fragments


def all_types(runtime, namespace):
    runtime.store.write(all_types_entities(runtime.settings.project, namespace), [])
    return stored(runtime, namespace, "AllTypes")


def restored_by_the_emulator(runtime, emulator, namespace, kind, source, overall):
    """Delete ``source``, run the emulator's ``:import`` of ``overall``, return what it wrote."""
    runtime.store.write([], [pb.key for pb in source])
    assert stored(runtime, namespace, kind) == []
    emulator_call(emulator, "import", {"inputUrl": overall})
    return [exact(pb) for pb in stored(runtime, namespace, kind)]


# -- cleanup missing --------------------------------------------------------------


def test_cleanup_missing_with_a_managed_export_deletes_exactly_what_the_export_lacks(
    cli, runtime, namespace, datastore_client, tmp_path, emulator, needs_managed_export
):
    put(datastore_client, "Person", 3, name="synced", active=True)
    put(datastore_client, "Order", 2, total=1)  # another kind in the export: not in scope
    overall = managed_export(emulator, tmp_path / "x", namespace)
    gone = put(datastore_client, "Person", 2, name="gone", active=True)
    put(datastore_client, "Person", 1, name="out of scope", active=False)
    put(datastore_client, "Order", 1, total=2)  # lacking from the export, but another kind
    # The folder the emulator wrote names the export as well as its overall file.
    args = ["cleanup", "missing", os.path.dirname(overall), "--kind", "Person"]
    args += ["--filter", "active=true", "--namespace", namespace]
    planned = cli(*args)
    assert planned.exit_code == 1, planned.output
    assert "    - Person: 2" in planned.stdout
    sampled = {line.strip() for line in planned.stdout.splitlines() if "Key(" in line}
    assert len(sampled) == 2 and all(str(key.id) in " ".join(sampled) for key in gone)
    applied = cli(*args, "--apply", "--yes")
    assert applied.exit_code == 0, applied.output
    assert applied.stdout.endswith("applied: Person=2\n")
    names = sorted(p["name"] for p in datastore_client.query(kind="Person").fetch())
    assert names == ["out of scope", "synced", "synced", "synced"]
    assert len(list(datastore_client.query(kind="Order").fetch())) == 3
    assert cli(*args).exit_code == 0  # nothing is missing any more


# -- export --format managed: CLI and jobs API -----------------------------------------


def test_cli_export_format_managed_is_restored_by_the_emulator_import_and_by_mapper(
    cli, runtime, namespace, tmp_path, emulator, needs_managed_export
):
    source = all_types(runtime, namespace)
    out = str(tmp_path / "managed")
    args = ["export", "--out", out, "--kind", "AllTypes", "--namespace", namespace]
    exported = cli(*args, "--format", "managed", "--shards", "2", "--batch-size", "2", "--id", "m1")
    assert exported.exit_code == 0, exported.output
    overall = f"{out}/m1{meta.OVERALL_SUFFIX}"
    assert f"manifest: {overall}" in exported.output
    assert f"{namespace}/AllTypes: 4 entities" in exported.output
    assert not os.path.exists(f"{out}/manifest.json")

    project = runtime.settings.project
    assert restored_by_the_emulator(
        runtime, emulator, namespace, "AllTypes", source, overall
    ) == as_the_managed_import_restores(source, project)

    target = new_namespace()
    done = cli("import", out, "--mode", "keep", "--namespace", target)
    assert done.exit_code == 0, done.output
    assert "succeeded: 4 entities written" in done.output
    assert [exact(pb) for pb in stored(runtime, target, "AllTypes")] == [
        exact(pb) for pb in moved(source, project, namespace, target)
    ]


@pytest.fixture
def client(runtime):
    app = create_app(runtime=runtime.__class__(runtime.settings.replace(auth="off")))
    yield app.test_client()
    app.extensions["mapper"].close()


def test_jobs_api_export_with_format_managed_writes_what_the_emulator_imports(
    client, runtime, namespace, tmp_path, emulator, needs_managed_export
):
    source = all_types(runtime, namespace)
    out = str(tmp_path / "api")
    params = {"out": out, "kinds": ["AllTypes"], "format": "managed"}
    body = {"mapper": "export", "params": params, "namespace": namespace, "id": "api1"}
    started = client.post("/_mapper/jobs", json=body)
    assert started.status_code == 200, started.json
    status = wait_for(client, started.json["id"])
    assert status["status"] == "succeeded", status
    assert status["manifest"] == f"{out}/api1{meta.OVERALL_SUFFIX}"
    assert restored_by_the_emulator(
        runtime, emulator, namespace, "AllTypes", source, status["manifest"]
    ) == as_the_managed_import_restores(source, runtime.settings.project)

    bad = {"out": out, "kinds": ["AllTypes"], "format": "leveldb"}
    refused = client.post("/_mapper/jobs", json={"mapper": "export", "params": bad})
    assert refused.status_code == 400 and "'leveldb'" in refused.json["error"]


# -- Cloud Storage --------------------------------------------------------------------


def upload(tree, bucket_url):
    from google.cloud import storage

    bucket_name, _, prefix = bucket_url.removeprefix("gs://").partition("/")
    bucket = storage.Client().bucket(bucket_name)
    for path in glob.glob(f"{tree}/**", recursive=True):
        if os.path.isfile(path):
            name = f"{prefix}/{os.path.relpath(path, tree)}".lstrip("/")
            bucket.blob(name).upload_from_filename(path)


def test_an_emulator_export_on_cloud_storage_imports_exactly(
    runtime, namespace, tmp_path, emulator, gcs_bucket, needs_managed_export
):
    source = all_types(runtime, namespace)
    overall = managed_export(emulator, tmp_path / "x", namespace)
    remote = f"{gcs_bucket}/backups/{os.path.basename(os.path.dirname(overall))}"
    upload(os.path.dirname(overall), remote)
    target = new_namespace()
    plan, status = import_from(runtime, remote, namespace=target)  # the folder, on gs://
    assert plan["source"] == f"{remote}/{os.path.basename(overall)}"
    assert status.counters["put"] == 4
    project = runtime.settings.project
    assert [exact(pb) for pb in stored(runtime, target, "AllTypes")] == [
        exact(pb) for pb in moved(source, project, namespace, target)
    ]


def test_export_format_managed_to_cloud_storage_reads_back_by_its_overall_file(
    cli, runtime, namespace, gcs_bucket
):
    source = all_types(runtime, namespace)
    out = f"{gcs_bucket}/managed"
    exported = cli("export", "--out", out, "--kind", "AllTypes", "--namespace", namespace,
                   "--format", "managed", "--id", "g1")  # fmt: skip
    assert exported.exit_code == 0, exported.output
    target = new_namespace()
    import_from(runtime, f"{out}/g1{meta.OVERALL_SUFFIX}", namespace=target)
    project = runtime.settings.project
    assert [exact(pb) for pb in stored(runtime, target, "AllTypes")] == [
        exact(pb) for pb in moved(source, project, namespace, target)
    ]


# -- records over one 32 KiB block ----------------------------------------------------


def big_entities(project, namespace):
    """Entities whose records span several blocks, between small ones."""
    entities = []
    for i, size in enumerate((10, 100_000, 20, 40_000, 30)):
        pb = Entity()
        pb.key.partition_id.project_id, pb.key.partition_id.namespace_id = project, namespace
        pb.key.path.add(kind="Big", name=f"b{i}")
        pb.properties["text"].string_value = "é" * (size // 2)
        pb.properties["text"].exclude_from_indexes = True
        pb.properties["blob"].blob_value = os.urandom(size // 2)
        pb.properties["blob"].exclude_from_indexes = True
        pb.properties["n"].integer_value = i
        entities.append(pb)
    return entities


def spans_blocks(tree):
    files = glob.glob(f"{tree}/**/output-*", recursive=True)
    kinds = set()
    for path in files:
        with open(path, "rb") as f:
            kinds.update(kind for _, kind, _ in fragments(f.read()))
    return {FIRST, MIDDLE, LAST} <= kinds


def test_records_over_32_kib_round_trip_both_ways_through_the_emulator(
    runtime, namespace, tmp_path, emulator, needs_managed_export
):
    project = runtime.settings.project
    runtime.store.write(big_entities(project, namespace), [])
    source = stored(runtime, namespace, "Big")
    assert len(source) == 5

    # The emulator's export, read by mapper.
    overall = managed_export(emulator, tmp_path / "x", namespace)
    assert spans_blocks(os.path.dirname(overall))
    target = new_namespace()
    import_from(runtime, overall, namespace=target)
    copies = [Entity.FromString(exact(pb)) for pb in source]  # moved() moves in place
    assert [exact(pb) for pb in stored(runtime, target, "Big")] == [
        exact(pb) for pb in moved(copies, project, namespace, target)
    ]

    # mapper's managed output, read by the emulator's :import.
    from mapper.transfer.export import ExportSpec, start_export

    out = tmp_path / "mine"
    spec = ExportSpec(out=str(out), kinds=["Big"], namespaces=[namespace], shards=1,
                      batch_size=3, format="managed")  # fmt: skip
    info = start_export(runtime, spec).wait(timeout=120)
    assert info.status == "succeeded"
    assert spans_blocks(out)
    restored = restored_by_the_emulator(runtime, emulator, namespace, "Big", source, info.manifest)
    assert restored == [exact(pb) for pb in source]
