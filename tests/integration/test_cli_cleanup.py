"""``python -m mapper cleanup ...``: exit 1 when something is stale, 0 when not or applied."""

from __future__ import annotations

import json

from google.cloud import datastore


def put(client: datastore.Client, kind: str, n: int, **props) -> None:
    entities = [datastore.Entity(client.key(kind)) for _ in range(n)]
    for entity in entities:
        entity.update(props)
    client.put_multi(entities)


def test_stale_properties_plan_exits_1_and_apply_yes_exits_0(cli, namespace, datastore_client):
    put(datastore_client, "Order", 3, total=1, legacy_code="x")
    args = ["cleanup", "stale-properties", "--models", "tests.cleanup_models"]
    args += ["--namespace", namespace]
    planned = cli(*args)
    assert planned.exit_code == 1, planned.output
    assert "- Order.legacy_code: 3" in planned.output
    assert "Nothing else will be deleted or changed." in planned.output
    assert "Nothing was changed" in planned.output
    as_json = json.loads(cli(*args, "--json").output.split("\nNothing was changed")[0])
    assert as_json["counts"] == {"Order.legacy_code": 3} and not as_json["empty"]
    refused = cli(*args, "--apply")  # no terminal to confirm on, no --yes
    assert refused.exit_code == 2 and "--yes" in refused.output
    applied = cli(*args, "--apply", "--yes")
    assert applied.exit_code == 0, applied.output
    assert "applied: Order=3" in applied.output
    clean = cli(*args)
    assert clean.exit_code == 0 and "nothing is stale" in clean.output


def test_orphans_command_plans_and_deletes(cli, namespace, datastore_client):
    person = datastore.Entity(datastore_client.key("Person"))
    datastore_client.put(person)
    put(datastore_client, "Order", 2, person=person.key, total=1)
    datastore_client.delete(person.key)
    args = [
        "cleanup",
        "orphans",
        "--kind",
        "Order",
        "--property",
        "person",
        "--namespace",
        namespace,
    ]
    assert cli(*args).exit_code == 1
    done = cli(*args, "--apply", "--yes")
    assert done.exit_code == 0 and "orphans=2" in done.output
    assert cli(*args).exit_code == 0


def test_cleanup_bad_input_exits_2(cli, namespace, tmp_path):
    no_models = cli("cleanup", "stale-properties", "--models", "no.such.module")
    assert no_models.exit_code == 2 and "no.such.module" in no_models.output
    no_refs = cli("cleanup", "orphans", "--kind", "Order")
    assert no_refs.exit_code == 2 and "--property" in no_refs.output
    incomplete = cli("cleanup", "missing", str(tmp_path), "--kind", "Person")
    assert incomplete.exit_code == 2 and "incomplete dump" in incomplete.output
