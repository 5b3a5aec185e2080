"""Import with key remap at its edges: odd keys, big key maps, two imports at once."""

from __future__ import annotations

import threading

import pytest
from google.cloud import datastore

from mapper.datastore.query import kind_query
from mapper.datastore.rpc import MAX_ENTITY_BYTES, Entity
from mapper.dump.manifest import Manifest, write_manifest
from mapper.dump.parts import part_relpath, write_part
from mapper.errors import JobStateError
from mapper.transfer import locks
from mapper.transfer.export import ExportSpec, start_export
from mapper.transfer.importer import ImportSpec, start_import
from mapper.transfer.keymap import (
    ALLOCATED,
    CONFLICT_SKIPPED,
    MERGED,
    NAMED,
    OVERWRITE,
    PART_KIND,
    KeyMap,
)
from mapper.transfer.options import parse_options
from tests.support.fixtures_alltypes import key


@pytest.fixture
def source(runtime, namespace):
    """A datastore client on a namespace of its own, the dump's source."""
    client = datastore.Client(project=runtime.settings.project, namespace=namespace + "src")
    yield client
    client.close()


def export(runtime, client, tmp_path, kinds, batch_size=100):
    out = str(tmp_path / "dump")
    spec = ExportSpec(
        out=out, kinds=kinds, namespaces=[client.namespace], batch_size=batch_size, shards=1
    )
    assert start_export(runtime, spec).wait(timeout=120).status == "succeeded"
    return out


def remap(runtime, dump, target, import_id=None, **options):
    options = parse_options(**options)
    spec = ImportSpec(source=dump, mode="remap", namespace=target, id=import_id, options=options)
    return start_import(runtime, spec)[1]


def test_embedded_entities_with_incomplete_or_foreign_keys_are_not_references(
    runtime, namespace, source, tmp_path
):
    """Finding 9: the dangling check looked up every embedded key, and failed the import."""
    address = datastore.Entity(source.key("Address"))  # an incomplete key
    address["city"] = "Oslo"
    foreign = datastore.Entity(datastore.Key("Thing", 5, project="elsewhere"))
    foreign["x"] = 1
    person = datastore.Entity(source.key("Person", "p1"))
    person.update({"address": address, "foreign": foreign, "friend": source.key("Person", 7)})
    source.put(person)
    dump = export(runtime, source, tmp_path, ["Person"])

    target = namespace + "dst"
    status = remap(runtime, dump, target).wait(timeout=60)
    assert status.status == "succeeded", status.error
    (imported,) = (
        datastore.Client(project=runtime.settings.project, namespace=target)
        .query(kind="Person")
        .fetch()
    )
    assert imported["address"]["city"] == "Oslo"
    assert imported["address"].key.is_partial
    assert imported["foreign"].key.project == "elsewhere"
    assert imported["friend"].namespace == target  # a dangling reference, moved along
    assert status.counters["dangling"] == 1


def test_two_copies_of_a_batch_agree_on_the_key_choices_of_the_first_to_record(runtime, namespace):
    """Finding 3: two copies of a map batch (a duplicate delivery while one outlasts its
    lease) both allocate; the part record is insert-if-absent, so the second copy gets
    the first's choices back and builds its per-entity records from them (before, the
    last write won and references could point at keys no entity was written to)."""
    project, keymap = runtime.settings.project, KeyMap(runtime.store, namespace, "imp")
    olds = [key(project, namespace + "src", "Item", i) for i in (1, 2)]
    first = [
        (o, key(project, namespace + "dst", "Item", 10 + n), ALLOCATED) for n, o in enumerate(olds)
    ]
    second = [
        (o, key(project, namespace + "dst", "Item", 20 + n), ALLOCATED) for n, o in enumerate(olds)
    ]
    assert keymap.record_part(3, 1, first) == first
    assert keymap.record_part(3, 1, second) == first
    assert keymap.lookup_parts([(3, 1)]) == {(3, 1): first}


def test_a_batch_of_parts_recorded_at_once_keeps_the_part_another_copy_recorded_first(
    runtime, namespace
):
    """One commit inserts every part record of a batch; a part some other copy recorded
    already keeps that copy's choices, and the batch's other parts are still recorded."""
    project, keymap = runtime.settings.project, KeyMap(runtime.store, namespace, "imp")
    olds = [key(project, namespace + "src", "Item", i) for i in (1, 2)]
    first = [(olds[0], key(project, namespace + "dst", "Item", 10), ALLOCATED)]
    second = [(olds[0], key(project, namespace + "dst", "Item", 20), ALLOCATED)]
    other = [(olds[1], key(project, namespace + "dst", "Item", 21), ALLOCATED)]
    keymap.record_part(3, 1, first)
    assert keymap.record_parts({(3, 1): second, (4, 1): other}) == {(3, 1): first, (4, 1): other}
    assert keymap.lookup_parts([(3, 1), (4, 1)]) == {(3, 1): first, (4, 1): other}


def test_a_part_record_keeps_every_kind_of_choice_in_the_parts_order(runtime, namespace):
    """Choices are packed into one blob a record: keys of any shape and every ``how``
    come back as they went in, in order."""
    project, keymap = runtime.settings.project, KeyMap(runtime.store, namespace, "imp")
    parent = key(project, namespace + "dst", "Box", "b")
    new = Entity().key
    new.CopyFrom(parent)
    new.path.add(kind="Item", name="n" * 1400)
    olds = [key(project, namespace + "src", "Item", i) for i in range(1, 6)]
    hows = [ALLOCATED, NAMED, MERGED, CONFLICT_SKIPPED, OVERWRITE]
    items = [
        (old, new if i == 1 else parent, how)
        for i, (old, how) in enumerate(zip(olds, hows, strict=True))
    ]
    assert keymap.record_part(7, 2, items) == items
    assert keymap.lookup_parts([(7, 2), (8, 2)]) == {(7, 2): items}


def test_a_part_record_written_before_choices_were_packed_is_still_read(runtime, namespace):
    """An import started by an older mapper (choices as a list of embedded pairs) is
    resumed by this one: its records read back the same."""
    project, keymap = runtime.settings.project, KeyMap(runtime.store, namespace, "imp")
    items = [
        (
            key(project, namespace + "src", "Item", i + 1),
            key(project, namespace + "dst", "Item", 9 + i),
            how,
        )
        for i, how in enumerate([ALLOCATED, MERGED])
    ]
    record = Entity()
    record.key.CopyFrom(keymap.part_record_key(3, 1))
    pairs = record.properties["pairs"].array_value
    for old, new, how in items:
        pair = pairs.values.add().entity_value.properties
        pair["old"].key_value.CopyFrom(old)
        pair["new"].key_value.CopyFrom(new)
        pair["how"].string_value = how
    record.properties["chunks"].integer_value = 1
    runtime.store.write([record], [])
    assert keymap.lookup_parts([(3, 1)]) == {(3, 1): items}
    assert keymap.record_part(3, 1, items[:1]) == items  # the stored choices win


def test_a_key_map_part_of_500_long_named_keys_stays_under_the_entity_limit(
    runtime, namespace, tmp_path, faults
):
    """Finding 12: 500 pairs of 1,400-byte names made one part record over 1 MiB.

    A crash after the key map is written makes the replay read the records back.
    """
    faults.crash_at("after_map_write")
    source, project = namespace + "src", runtime.settings.project
    items = []
    for i in range(500):  # one part of 500 (an export's page can be smaller on an emulator)
        item = Entity()
        item.key.CopyFrom(key(project, source, "Item", f"{i:04d}-" + "x" * 1400))
        item.properties["n"].integer_value = i
        items.append(item)
    dump = str(tmp_path / "dump")
    part = write_part(dump, part_relpath("Item", 0, 0, source), items)
    write_manifest(dump, Manifest.build(project, "", [part]))

    target = namespace + "dst"
    status = remap(runtime, dump, target).wait(timeout=120)
    assert status.status == "succeeded", status.error
    assert status.counters["named"] == 500
    assert faults.fired == {"after_map_write": 1}
    imported = datastore.Client(project=project, namespace=target)
    assert sorted(e.key.name for e in imported.query(kind="Item").fetch()) == sorted(
        e.key.path[0].name for e in items
    )
    records = runtime.store.run_query(kind_query(PART_KIND), namespace).entity_results
    assert len(records) >= 2
    assert all(r.entity.ByteSize() < MAX_ENTITY_BYTES for r in records)


def test_a_second_remap_import_into_the_same_namespace_is_refused_while_the_first_runs(
    runtime, namespace, source, tmp_path, faults
):
    """Finding 11: two imports both saw a natural key as absent, and both inserted."""
    tags = []
    for i in range(40):
        tag = datastore.Entity(source.key("Tag"))
        tag["name"] = f"tag {i}"
        tags.append(tag)
    source.put_multi(tags)
    dump = export(runtime, source, tmp_path, ["Tag"])
    target = namespace + "dst"
    gate = threading.Event()  # holds the first import's first batch until the checks end
    faults.call_at("before_batch", lambda info: gate.wait(30))
    first = remap(runtime, dump, target, import_id="first", natural_keys=["Tag=name"])
    with pytest.raises(
        JobStateError, match=r"Tag in namespace '\w+dst' is being imported by first"
    ):
        remap(runtime, dump, target, import_id="second", natural_keys=["Tag=name"])
    locks.acquire(runtime, "first", [(target, "Tag")], lambda holder: True)  # its own: again
    gate.set()
    assert first.wait(timeout=60).status == "succeeded"

    second = remap(runtime, dump, target, import_id="second", natural_keys=["Tag=name"])
    status = second.wait(timeout=60)
    assert status.status == "succeeded"
    assert status.counters["merged"] == 40  # every tag matched the first import's
    imported = datastore.Client(project=runtime.settings.project, namespace=target)
    assert len(list(imported.query(kind="Tag").fetch())) == 40
