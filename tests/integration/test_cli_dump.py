"""``python -m mapper export`` and ``import`` through click's runner, on the emulator."""

from __future__ import annotations

import uuid

from mapper.dump.manifest import MANIFEST, read_manifest
from mapper.engine.status import job_status, list_job_ids


def test_export_then_import_keep_into_another_namespace(cli, namespace, seed, tmp_path, runtime):
    seed(90)
    out = str(tmp_path / "dump")
    exported = cli(
        "export", "--out", out, "--kind", "Person", "--namespace", namespace,
        "--shards", "2", "--batch-size", "40",
    )  # fmt: skip
    assert exported.exit_code == 0, exported.output
    assert f"{namespace}/Person: 90 entities" in exported.output
    assert "total: 90 entities in" in exported.output
    assert f"manifest: {out}/{MANIFEST}" in exported.output
    assert read_manifest(out).totals["entities"] == 90

    target = "c" + uuid.uuid4().hex[:10]
    dry = cli("import", out, "--mode", "keep", "--namespace", target, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Person: 90" in dry.output
    assert f"{namespace} -> {target}" in dry.output
    assert "dry run: nothing was written" in dry.output

    done = cli("import", out, "--mode", "keep", "--namespace", target)
    assert done.exit_code == 0, done.output
    assert "succeeded: 90 entities written" in done.output
    with runtime.context(target):
        from tests.support.mappers import Person

        assert Person.query().count() == 90


def test_import_of_an_incomplete_dump_exits_2_naming_it(cli, tmp_path):
    (tmp_path / "half").mkdir()
    result = cli("import", str(tmp_path / "half"), "--mode", "keep")
    assert result.exit_code == 2
    assert "incomplete dump: no manifest.json" in result.output
    assert str(tmp_path / "half") in result.output


def test_export_option_errors_exit_2(cli, tmp_path):
    both = cli("export", "--out", str(tmp_path), "--namespace", "a", "--all-namespaces")
    assert both.exit_code == 2
    assert "not both" in both.output
    reserved = cli("export", "--out", str(tmp_path), "--kind", "__kind__")
    assert reserved.exit_code == 2
    assert "'__kind__'" in reserved.output


def test_export_to_a_destination_nobody_can_write_fails_before_the_job_starts(
    cli, namespace, runtime
):
    """Finding 7, as a user sees it: it used to sit in FINALIZING with its progress line."""
    result = cli(
        "export", "--out", "/proc/x", "--kind", "K", "--namespace", namespace, "--id", "e1"
    )
    assert result.exit_code == 2
    assert "cannot write the dump to /proc/x" in result.output
    assert "No such file or directory" in result.output
    assert list_job_ids(runtime) == []


def test_export_to_a_bucket_that_does_not_exist_fails_before_the_job_starts(
    cli, namespace, runtime, gcs_bucket
):
    out = gcs_bucket + "-missing/dump"
    result = cli("export", "--out", out, "--kind", "K", "--namespace", namespace)
    assert result.exit_code == 2
    assert f"cannot write the dump to {out}" in result.output
    assert list_job_ids(runtime) == []


def test_import_with_two_shards_runs_on_two_shards(cli, namespace, seed, tmp_path, runtime):
    """Finding 12: the stage's one split key used to give one range."""
    seed(90)
    out = str(tmp_path / "dump")
    exported = cli("export", "--out", out, "--kind", "Person", "--namespace", namespace,
                   "--shards", "1", "--batch-size", "30")  # fmt: skip
    assert exported.exit_code == 0, exported.output
    assert len(read_manifest(out).parts) == 3
    target = "s" + uuid.uuid4().hex[:10]
    args = ["import", out, "--mode", "keep", "--namespace", target, "--id", "two"]
    done = cli(*args, "--shards", "2", "--batch-size", "1")
    assert done.exit_code == 0, done.output
    stage = job_status(runtime, "two-0")
    assert len(stage.shards) == 2
    assert all(s.counters["processed"] > 0 for s in stage.shards)


def test_export_takes_its_namespaces_from_a_file(cli, runtime, namespace, tmp_path):
    from tests.support.fixtures_alltypes import entity, key

    tenants = [f"{namespace}-{i}" for i in range(3)]
    for i, tenant in enumerate(tenants):
        runtime.store.write(
            [entity(key(runtime.settings.project, tenant, "Person", j + 1)) for j in range(i + 1)],
            [],
        )
    listed = tmp_path / "tenants.txt"
    listed.write_text("\n".join(tenants))
    result = cli("export", "--out", str(tmp_path / "dump"), "--kind", "Person",
                 "--namespaces-from", str(listed))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3 namespaces/Person: 6 entities" in result.output
