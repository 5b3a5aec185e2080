"""`python -m mapper cleanup ...`: exit 1 when something is stale, 0 when clean or applied."""

from __future__ import annotations

import json

from google.cloud import datastore

from mapper.transfer.export import ExportSpec, start_export
from tests.support.cleanup_seed import put, snapshot

MODELS = ["--models", "tests.support.cleanup_models"]


def test_stale_properties_plan_exits_1_and_apply_yes_exits_0(cli, namespace, datastore_client):
    put(datastore_client, "Order", 3, total=1, legacy_code="x")
    args = ["cleanup", "stale-properties", *MODELS, "--namespace", namespace]

    planned = cli(*args)
    assert planned.exit_code == 1, planned.output
    assert planned.stdout.splitlines() == [
        f"stale properties in namespace {namespace!r}:",
        "    - Order.legacy_code: 3",
        *[line for line in planned.stdout.splitlines() if line.startswith("        Key(")],
        "Nothing else will be deleted or changed.",
        "Nothing was changed (plan only); run again with --apply.",
    ]
    as_json = json.loads(cli(*args, "--json").stdout)
    assert as_json["counts"] == {"Order.legacy_code": 3} and not as_json["empty"]
    assert as_json["guarantee"] == "Nothing else will be deleted or changed."

    refused = cli(*args, "--apply")  # no terminal to confirm on, no --yes
    assert refused.exit_code == 2 and "--yes" in refused.output
    applied = cli(*args, "--apply", "--yes")
    assert applied.exit_code == 0, applied.output
    assert applied.stdout.splitlines()[-1] == "applied: Order=3"
    clean = cli(*args)
    assert clean.exit_code == 0
    assert clean.stdout == f"stale properties: nothing is stale in namespace {namespace!r}.\n"


def test_stale_kinds_command_plans_then_applies(
    cli, runtime, namespace, datastore_client, needs_metadata
):
    put(datastore_client, "OldThing", 2, x=1)
    put(datastore_client, "Person", 1, name="p")
    args = ["cleanup", "stale-kinds", *MODELS, "--namespace", namespace]
    planned = cli(*args)
    assert planned.exit_code == 1 and "    - OldThing: 2" in planned.stdout
    assert snapshot(runtime, namespace, "OldThing")
    done = cli(*args, "--apply", "--yes")
    assert done.exit_code == 0 and done.stdout.endswith("applied: OldThing=2\n")
    assert cli(*args).exit_code == 0


def test_orphans_command_plans_and_deletes(cli, namespace, datastore_client):
    person = datastore.Entity(datastore_client.key("Person"))
    datastore_client.put(person)
    put(datastore_client, "Order", 2, person=person.key, total=1)
    datastore_client.delete(person.key)
    args = ["cleanup", "orphans", "--kind", "Order", "--property", "person"]
    args += ["--namespace", namespace]
    planned = cli(*args)
    assert planned.exit_code == 1 and "    - Order: 2" in planned.stdout
    done = cli(*args, "--apply", "--yes")
    assert done.exit_code == 0, done.output
    assert done.stdout.endswith("applied: orphans=2, removed=2\n")
    assert cli(*args).exit_code == 0


def test_orphans_command_cascades_to_declared_dependents(cli, namespace, datastore_client):
    person = datastore.Entity(datastore_client.key("Person"))
    datastore_client.put(person)
    (order,) = put(datastore_client, "Order", 1, person=person.key, total=1)
    put(datastore_client, "Line", 3, order=order)
    datastore_client.delete(person.key)
    args = ["cleanup", "orphans", "--kind", "Order", "--property", "person", "--namespace"]
    args += [namespace, "--action", "cascade", "--cascade", "Line.order", "--apply", "--yes"]
    done = cli(*args)
    assert done.exit_code == 0, done.output
    assert done.stdout.endswith("applied: dependents=3, orphans=1, removed=1\n")
    assert not list(datastore_client.query(kind="Line").fetch())


def test_missing_command_deletes_rows_in_scope_the_dump_lacks(
    cli, runtime, namespace, datastore_client, tmp_path
):
    put(datastore_client, "Person", 3, name="synced", active=True)
    out = str(tmp_path / "sync")
    spec = ExportSpec(out=out, kinds=["Person"], namespaces=[namespace])
    assert start_export(runtime, spec).wait().status == "succeeded"
    put(datastore_client, "Person", 2, name="gone", active=True)
    put(datastore_client, "Person", 1, name="out of scope", active=False)
    args = ["cleanup", "missing", out, "--kind", "Person", "--filter", "active=true"]
    args += ["--namespace", namespace]
    planned = cli(*args)
    assert planned.exit_code == 1 and "    - Person: 2" in planned.stdout
    assert cli(*args, "--apply", "--yes").stdout.endswith("applied: Person=2\n")
    names = sorted(p["name"] for p in datastore_client.query(kind="Person").fetch())
    assert names == ["out of scope", "synced", "synced", "synced"]


def test_cleanup_bad_input_exits_2_naming_the_bad_value(cli, runtime, namespace, tmp_path):
    no_models = cli("cleanup", "stale-properties", "--models", "no.such.module")
    assert no_models.exit_code == 2 and "'no.such.module'" in no_models.stderr
    no_refs = cli("cleanup", "orphans", "--kind", "Order")
    assert no_refs.exit_code == 2 and "--property" in no_refs.stderr
    null_parent = cli("cleanup", "orphans", "--kind", "Note", "--parents", "--action", "null")
    assert null_parent.exit_code == 2 and "cannot null a parent" in null_parent.stderr
    cascade = cli("cleanup", "orphans", "--kind", "Order", "--property", "person",
                  "--cascade", "Line")  # fmt: skip
    assert cascade.exit_code == 2 and "'Line'" in cascade.output
    incomplete = cli("cleanup", "missing", str(tmp_path), "--kind", "Person")
    assert incomplete.exit_code == 2 and "incomplete dump" in incomplete.stderr
    bad_filter = cli("cleanup", "missing", str(tmp_path), "--kind", "Person", "--filter", "x")
    assert bad_filter.exit_code == 2 and "--filter" in bad_filter.output
    assert snapshot(runtime, namespace, "_MapperJob") == {}  # refused before any job
