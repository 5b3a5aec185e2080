"""The fast entity/key encoders give the library's bytes, value type by value type."""

from __future__ import annotations

import datetime

from google.cloud import datastore, ndb
from google.cloud.datastore import helpers
from google.cloud.ndb import model as ndb_model

from mapper.datastore.convert import entity_to_pb, key_to_pb
from tests.support.fixtures_alltypes import all_types_entities


def library(entity: datastore.Entity) -> bytes:
    return helpers.entity_to_protobuf(entity)._pb.SerializeToString(deterministic=True)


def fast(entity: datastore.Entity) -> bytes:
    return entity_to_pb(entity).SerializeToString(deterministic=True)


def test_every_value_type_of_the_fixture_encodes_as_the_library_does() -> None:
    compared = 0
    for pb in all_types_entities("proj", "ns"):
        for name in pb.properties:
            single = type(pb)()
            single.key.CopyFrom(pb.key)
            single.properties[name].CopyFrom(pb.properties[name])
            try:
                entity = helpers.entity_from_protobuf(single)
            except ValueError:  # e.g. an array mixing indexed and unindexed values
                continue
            assert fast(entity) == library(entity), name
            compared += 1
    assert compared >= 40


def test_plain_entities_take_the_fast_path_with_the_same_bytes() -> None:
    key = datastore.Key("Parent", "p", "Kind", 7, project="proj", namespace="ns", database="db")
    entity = datastore.Entity(key, exclude_from_indexes=("blob", "tags"))
    entity.update(
        {
            "s": "zoë 😀", "i": -(2**63), "f": -0.0, "b": False, "n": None, "blob": b"\x00",
            "t": datetime.datetime(2024, 2, 29, 12, 0, 0, 123456, tzinfo=datetime.UTC),
            "naive": datetime.datetime(1970, 1, 1), "k": datastore.Key("T", "x", project="proj"),
            "geo": helpers.GeoPoint(52.5, -0.0), "tags": ["a", 1, None], "empty": [],
        }
    )  # fmt: skip
    assert fast(entity) == library(entity)
    assert fast(datastore.Entity()) == library(datastore.Entity())


def test_keys_encode_as_the_library_does_including_partial_keys() -> None:
    for key in (
        datastore.Key("A", 1, project="p"),
        datastore.Key("A", "n", "B", 2, project="p", namespace="ns", database="d"),
        datastore.Key("A", 1, "B", project="p"),  # partial
    ):
        expected = key.to_protobuf()._pb.SerializeToString(deterministic=True)
        assert key_to_pb(key).SerializeToString(deterministic=True) == expected


class Inner(ndb.Model):
    label = ndb.StringProperty()
    ref = ndb.KeyProperty()


class Everything(ndb.Model):
    text = ndb.TextProperty()
    compressed = ndb.TextProperty(compressed=True)
    data = ndb.JsonProperty()
    when = ndb.DateTimeProperty()
    inner = ndb.StructuredProperty(Inner)
    local = ndb.LocalStructuredProperty(Inner, repeated=True)
    refs = ndb.KeyProperty(repeated=True)
    pickled = ndb.PickleProperty()


def test_ndb_models_encode_as_ndb_does(monkeypatch) -> None:
    monkeypatch.setenv("DATASTORE_EMULATOR_HOST", "localhost:1")  # no network: keys only
    client = ndb.Client(project="proj")
    with client.context():
        model = Everything(
            key=ndb.Key(Everything, 5, namespace="ns"),
            text="t" * 2000,
            compressed="c" * 100,
            data={"a": [1, 2]},
            when=datetime.datetime(2020, 1, 1, 1, 1, 1, 1),
            inner=Inner(label="x", ref=ndb.Key("R", 1)),
            local=[Inner(label="y"), Inner(label="z", ref=ndb.Key("R", "q"))],
            refs=[ndb.Key("R", 2), ndb.Key("R", 3, parent=ndb.Key("P", "p"))],
            pickled={"set": {1, 2}},
        )
        expected = ndb_model._entity_to_protobuf(model)._pb.SerializeToString(deterministic=True)
        ds_entity = ndb_model._entity_to_ds_entity(model, set_key=True)
        assert entity_to_pb(ds_entity).SerializeToString(deterministic=True) == expected
