"""The pure parts of stale cleanup: plans, what counts as stale, references, validation."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mapper.cleanup.missing import scope_filters
from mapper.cleanup.orphans import OrphanSpec, _null, orphan_references
from mapper.cleanup.plan import GUARANTEE, Plan
from mapper.cleanup.stale import model_classes, stale_properties_of
from mapper.cleanup.table import load_plan
from mapper.cli.main import main
from mapper.datastore.rpc import Entity, Filter, Key
from mapper.errors import CleanupError
from tests.support.cleanup_models import Bag, Order, Person
from tests.support.fixtures_alltypes import key


def make_key(*path, namespace=""):
    return key("", namespace, *path)


def make_entity(key, **props):
    entity = Entity()
    entity.key.CopyFrom(key)
    for name, value in props.items():
        if isinstance(value, list):
            for item in value:
                entity.properties[name].array_value.values.add().key_value.CopyFrom(item)
        elif isinstance(value, Key):
            entity.properties[name].key_value.CopyFrom(value)
        else:
            entity.properties[name].string_value = value
    return entity


def test_a_plan_renders_counts_samples_and_that_nothing_else_changes():
    plan = Plan("stale kinds", "site-a", command="stale-kinds")
    for i in range(7):
        plan.add("OldThing", make_key("OldThing", i + 1, namespace="site-a"))
    assert plan.render() == [
        "stale kinds in namespace 'site-a':",
        "    - OldThing: 7",
        *[f"        Key('OldThing', {i}, namespace='site-a')" for i in range(1, 6)],
        GUARANTEE,
    ]


def test_an_empty_plan_says_nothing_is_stale():
    plan = Plan("stale kinds", "", counts={"OldThing": 0}, command="stale-kinds")
    assert plan.empty
    assert plan.render() == ["stale kinds: nothing is stale in the default namespace."]
    assert plan.to_json()["guarantee"] is None


def test_a_plan_round_trips_through_json():
    plan = Plan("missing Person rows", "ns", target={"kind": "Person", "keys": []},
                command="missing")  # fmt: skip
    plan.add("Person", make_key("Person", "x", namespace="ns"))
    data = json.loads(json.dumps(plan.to_json()))
    assert data["guarantee"] == GUARANTEE and data["counts"] == {"Person": 1}
    assert Plan.from_json(data) == plan


@pytest.mark.parametrize(
    "data, message",
    [
        ([], "a plan is a JSON object"),
        ({"cleanup": "x", "namespace": "", "command": "drop-all"}, "'drop-all'"),
        ({"namespace": "", "command": "missing"}, "not a cleanup plan"),
    ],
)
def test_a_plan_from_json_refuses_what_is_not_a_plan(data, message):
    with pytest.raises(CleanupError, match=message):
        load_plan(data)


def test_stale_properties_are_those_the_model_does_not_define():
    entity = make_entity(make_key("Order", 1), total="1", legacy="x")
    entity.properties["person.name"].string_value = "structured"
    entity.properties["old.name"].string_value = "gone"
    assert sorted(stale_properties_of(entity, Order)) == ["legacy", "old.name"]


def test_model_classes_finds_the_models_a_module_defines():
    found = model_classes(["tests.support.cleanup_models"])
    assert found["Person"] is Person and found["Bag"] is Bag
    assert "Mapper" not in found


@pytest.mark.parametrize(
    "modules, message",
    [
        (["no.such.module"], "cannot import models module 'no.such.module'"),
        (["json"], r"no ndb.Model classes in \['json'\]"),
        ("tests.support.cleanup_models", "as a list"),
        ([], "as a list"),
    ],
)
def test_model_classes_refuses_bad_modules_by_name(modules, message):
    with pytest.raises(CleanupError, match=message):
        model_classes(modules)


def test_orphan_references_are_the_parent_and_every_key_in_the_properties():
    parent, a, b = make_key("Person", 1), make_key("Person", 2), make_key("Person", 3)
    entity = make_entity(make_key("Person", 1, "Order", 9), person=a, watchers=[a, b], note="x")
    refs = orphan_references(entity, ["person", "watchers", "note", "absent"], parents=True)
    assert refs == [("parent", parent), ("person", a), ("watchers", a), ("watchers", b)]
    assert orphan_references(entity, [], parents=False) == []


def test_null_sets_only_the_missing_keys_and_keeps_index_exclusion():
    a, b = make_key("Person", 2), make_key("Person", 3)
    entity = make_entity(make_key("Order", 9), person=a, watchers=[a, b])
    entity.properties["person"].exclude_from_indexes = True
    missing = {a.SerializeToString(deterministic=True)}
    _null(entity, "person", missing)
    _null(entity, "watchers", missing)
    assert entity.properties["person"].WhichOneof("value_type") == "null_value"
    assert entity.properties["person"].exclude_from_indexes
    values = entity.properties["watchers"].array_value.values
    assert [v.WhichOneof("value_type") for v in values] == ["null_value", "key_value"]


@pytest.mark.parametrize(
    "spec, message",
    [
        (OrphanSpec(""), "needs a user kind"),
        (OrphanSpec("__kind__", ["x"]), "'__kind__'"),
        (OrphanSpec("Order"), "--property P"),
        (OrphanSpec("Order", "person"), "'person'"),
        (OrphanSpec("Order", ["person"], action="drop"), "'drop'"),
        (OrphanSpec("Note", parents=True, action="null"), "cannot null a parent"),
        (OrphanSpec("Order", ["person"], action="cascade"), "needs --cascade"),
        (OrphanSpec("Order", ["person"], cascade=[["Line"]], action="cascade"), r"\['Line'\]"),
    ],
)
def test_an_orphan_spec_refuses_what_cannot_run(spec, message):
    with pytest.raises(CleanupError, match=message):
        spec.validate()


def test_a_scope_takes_pairs_and_filter_protobufs_alike():
    (from_pair,) = scope_filters([("active", True)])
    assert isinstance(from_pair, Filter)
    assert from_pair.property_filter.property.name == "active"
    assert from_pair.property_filter.value.boolean_value is True
    assert scope_filters([["active", True], from_pair]) == [from_pair, from_pair]


@pytest.mark.parametrize(
    "args, message",
    [
        (["orphans", "--kind", "Order"], "--property P"),
        (["orphans", "--kind", "Order", "--property", "p", "--cascade", "Line"], "'Line'"),
        (["orphans", "--kind", "Note", "--parents", "--action", "null"], "null a parent"),
        (["orphans", "--kind", "Order", "--parents", "--action", "drop"], "'drop'"),
        (["missing", "dump", "--kind", "Person", "--filter", "active"], "'active'"),
    ],
)
def test_the_cli_refuses_bad_options_with_exit_2_before_connecting(args, message):
    result = CliRunner().invoke(main, ["cleanup", *args])
    assert result.exit_code == 2 and message in result.output
