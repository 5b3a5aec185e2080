"""FILTERS checked on an entity read anew (exactly-once mode), as an index would match it."""

from __future__ import annotations

from google.cloud import datastore

from mapper import Mapper
from mapper.datastore.convert import entity_to_pb
from mapper.engine.adapter import Adapter

CLIENT = datastore.Client(project="p", namespace="ns", credentials=None, _http=object())


def adapter(*filters):
    mapper = type("M", (Mapper,), {"KIND": "Person", "FILTERS": list(filters)})()
    return Adapter(mapper)


def person(unindexed=(), **values):
    entity = datastore.Entity(CLIENT.key("Person", 1), exclude_from_indexes=unindexed)
    entity.update(values)
    return entity_to_pb(entity)


def test_an_equality_matches_the_same_value_only():
    check = adapter(("active", True))
    assert check.matches(person(active=True))
    assert not check.matches(person(active=False))
    assert not check.matches(person())


def test_an_integer_does_not_match_a_float_or_a_string():
    check = adapter(("n", 1))
    assert check.matches(person(n=1))
    assert not check.matches(person(n=1.0)) and not check.matches(person(n="1"))


def test_one_element_of_a_list_is_enough():
    check = adapter(("tags", "a"))
    assert check.matches(person(tags=["b", "a"]))
    assert not check.matches(person(tags=["b", "c"]))


def test_an_unindexed_value_matches_nothing():
    assert not adapter(("name", "x")).matches(person(unindexed=("name",), name="x"))


def test_every_filter_must_match():
    check = adapter(("active", True), ("name", "x"))
    assert check.matches(person(active=True, name="x"))
    assert not check.matches(person(active=True, name="y"))


def test_a_key_value_matches_by_its_path():
    other = CLIENT.key("Team", "red")
    check = adapter(("team", other))
    assert check.matches(person(team=other))
    assert not check.matches(person(team=CLIENT.key("Team", "blue")))


def test_a_dotted_name_looks_inside_embedded_entities():
    inner = datastore.Entity()
    inner["city"] = "Oslo"
    check = adapter(("address.city", "Oslo"))
    assert check.matches(person(address=inner))
    assert not check.matches(person(address=datastore.Entity()))
