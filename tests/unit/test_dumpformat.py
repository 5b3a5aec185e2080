"""The dump format: exact entity round trips, part files, the manifest, and what is refused."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import math
import os
import random
import uuid
from pathlib import Path
from typing import Any

import pytest
from google.cloud.datastore_v1.types import entity as entity_types
from google.protobuf.timestamp_pb2 import Timestamp

from mapper.dump import files as dumpfiles
from mapper.dump.codec import MAX_ENTITY_BYTES, decode_entity, decode_strict, encode_entity
from mapper.dump.files import DumpStore, LocalDumpStore, open_dump_store
from mapper.dump.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    Manifest,
    copy_dump,
    read_manifest,
    validate_dump,
    write_manifest,
)
from mapper.dump.parts import PartInfo, part_relpath, read_part, scan_part, write_part
from mapper.errors import ConfigurationError, DumpFormatError
from tests.support.fixtures_alltypes import (
    Entity,
    all_types_entities,
    entity,
    entity_value,
    key,
    scalar,
)

PROJECT, NAMESPACE = "proj", "ns1"
ALL = all_types_entities(PROJECT, NAMESPACE)


def exact_bytes(pb: Any) -> bytes:
    return pb.SerializeToString(deterministic=True)


def round_trip(pb: Any) -> Any:
    return decode_entity(encode_entity(pb), "test", 1)


def person(n: int, namespace: str = NAMESPACE, kind: str = "Person") -> Any:
    return entity(key(PROJECT, namespace, kind, n), name=scalar("string_value", f"person {n}"))


def write_raw_part(root: Path, relpath: str, lines: list[bytes]) -> PartInfo:
    """A part written by hand, for lines the writer would never produce."""
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(b"".join(line + b"\n" for line in lines), mtime=0))
    return scan_part(root, relpath)


def dump_with(root: Path | DumpStore, *parts: tuple[str, Any]) -> Manifest:
    infos = [write_part(root, relpath, entities) for relpath, entities in parts]
    manifest = Manifest.build(PROJECT, "", infos)
    write_manifest(root, manifest)
    return manifest


def edit_manifest(root: Path, **changes: Any) -> None:
    obj = json.loads((root / MANIFEST).read_text())
    obj.update(changes)
    (root / MANIFEST).write_text(json.dumps(obj))


# -- one entity per line ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ALL[0].properties))
def test_every_value_type_round_trips_exactly(name: str) -> None:
    original = entity(key(PROJECT, NAMESPACE, "AllTypes", 1))
    original.properties[name].CopyFrom(ALL[0].properties[name])

    decoded = round_trip(original)

    assert exact_bytes(decoded) == exact_bytes(original)
    if not math.isnan(original.properties[name].double_value):  # nan != nan
        assert decoded == original


def test_every_fixture_entity_round_trips_exactly() -> None:
    for original in ALL:
        decoded = round_trip(original)
        assert exact_bytes(decoded) == exact_bytes(original)
        assert decoded.ListFields() and len(decoded.properties) == len(original.properties)


def test_negative_zero_and_non_finite_doubles_keep_their_bits() -> None:
    decoded = round_trip(ALL[0]).properties

    assert math.copysign(1.0, decoded["d_negative_zero"].double_value) == -1.0
    assert math.copysign(1.0, decoded["geo_negative_zero"].geo_point_value.latitude) == -1.0
    assert math.isnan(decoded["d_nan"].double_value)
    assert decoded["d_neg_inf"].double_value == -math.inf
    assert decoded["d_min_subnormal"].double_value == 5e-324


def test_values_that_look_alike_stay_distinct() -> None:
    decoded = round_trip(ALL[0]).properties

    assert decoded["int_zero"].WhichOneof("value_type") == "integer_value"
    assert decoded["d_integral"].WhichOneof("value_type") == "double_value"
    assert decoded["null"].WhichOneof("value_type") == "null_value"
    assert decoded["array_empty"].WhichOneof("value_type") == "array_value"
    assert decoded["entity_empty"].WhichOneof("value_type") == "entity_value"
    assert decoded["s_empty"].WhichOneof("value_type") == "string_value"
    assert decoded["blob_empty"].WhichOneof("value_type") == "blob_value"
    assert not decoded["entity_keyless"].entity_value.HasField("key")
    assert decoded["entity_keyed"].entity_value.HasField("key")


def test_timestamps_round_trip_to_the_microsecond_at_both_range_ends() -> None:
    line = encode_entity(ALL[0]).decode()
    decoded = round_trip(ALL[0]).properties

    assert '"0001-01-01T00:00:00Z"' in line and '"9999-12-31T23:59:59.999999Z"' in line
    assert decoded["ts_max"].timestamp_value.nanos == 999_999_000
    assert decoded["ts_before_epoch"].timestamp_value.seconds == -1


def test_a_line_is_compact_utf8_json_without_newlines() -> None:
    line = encode_entity(ALL[0])

    assert b"\n" not in line and b"\r" not in line and b", " not in line
    assert "😀".encode() in line
    assert json.loads(line)["key"]["path"] == [{"id": "1", "kind": "AllTypes"}]


def test_equal_entities_encode_to_equal_bytes_whatever_the_property_order() -> None:
    forward = entity(None, a=scalar("integer_value", 1), b=scalar("integer_value", 2))
    backward = entity(None, b=scalar("integer_value", 2), a=scalar("integer_value", 1))

    assert encode_entity(forward) == encode_entity(backward)


def test_entity_with_fields_unknown_to_the_schema_is_refused_on_encode() -> None:
    unknown_field = b"\x98\x06\x01"  # field 99, varint 1: in neither Entity nor Value
    future_entity = Entity.FromString(exact_bytes(ALL[3]) + unknown_field)
    future_value = entity_types.Value.pb().FromString(b"\x10\x01" + unknown_field)
    nested = entity(key(PROJECT, NAMESPACE, "K", 1), e=entity_value(entity(None, v=future_value)))

    for future in (future_entity, nested):
        with pytest.raises(DumpFormatError, match=r"Key\('.*unknown"):
            encode_entity(future)


def test_encode_accepts_only_raw_entity_messages() -> None:
    with pytest.raises(TypeError, match="raw google.datastore.v1.Entity"):
        encode_entity(entity_types.Entity())


@pytest.mark.parametrize(
    "line",
    [
        b"{not json",
        b"[]",
        b'{"unknownField":1}',
        b'{"properties":{"a":{"integerValue":"1","stringValue":"x"}}}',
        b'{"properties":{"a":{"integerValue":"9223372036854775808"}}}',
        b'{"properties":{"a":{"nullValue":null},"a":{"nullValue":null}}}',
        b"\xff\xfe",
        b"",
    ],
)
def test_a_line_that_is_not_an_entity_is_refused_with_its_location(line: bytes) -> None:
    with pytest.raises(DumpFormatError) as refused:
        decode_entity(line, "dump/part.jsonl.gz", 7)

    assert (refused.value.path, refused.value.line) == ("dump/part.jsonl.gz", 7)
    assert str(refused.value).startswith("dump/part.jsonl.gz:7: ")


# -- part files ---------------------------------------------------------------


def test_part_round_trips_every_entity_and_reports_what_it_holds(tmp_path: Path) -> None:
    relpath = part_relpath("AllTypes", 0, 0, NAMESPACE)
    info = write_part(tmp_path, relpath, iter(ALL))

    read = list(read_part(tmp_path, relpath, info))

    assert [exact_bytes(pb) for pb in read] == [exact_bytes(pb) for pb in ALL]
    assert info.count == len(ALL) and info.bytes == (tmp_path / relpath).stat().st_size
    assert info.kinds == ("AllTypes",) and info.namespaces == (NAMESPACE,)
    assert scan_part(tmp_path, relpath) == info


def test_part_rewritten_whole_on_replay_gives_identical_checksum(tmp_path: Path) -> None:
    relpath = part_relpath("Person", 3, 17)
    first = write_part(tmp_path, relpath, [person(n) for n in range(50)])
    stored = (tmp_path / relpath).read_bytes()
    write_part(tmp_path, relpath, [person(n) for n in range(500)])  # a longer attempt...

    replay = write_part(tmp_path, relpath, [person(n) for n in range(50)])  # ...then the replay

    assert replay == first
    assert (tmp_path / relpath).read_bytes() == stored
    assert [p.name for p in (tmp_path / relpath).parent.iterdir()] == [Path(relpath).name]


def test_crash_while_writing_a_part_leaves_the_previous_file_whole(tmp_path: Path) -> None:
    relpath = part_relpath("Person", 0, 1)
    before = write_part(tmp_path, relpath, [person(1)])

    def crashing() -> Any:
        yield person(2)
        raise RuntimeError("process died")

    with pytest.raises(RuntimeError):
        write_part(tmp_path, relpath, crashing())

    assert scan_part(tmp_path, relpath) == before
    assert LocalDumpStore(tmp_path).list_files() == [relpath]


def test_crash_while_writing_a_new_part_leaves_nothing_under_its_name(tmp_path: Path) -> None:
    def crashing() -> Any:
        yield person(1)
        raise RuntimeError("process died")

    with pytest.raises(RuntimeError):
        write_part(tmp_path, "Person/part.jsonl.gz", crashing())

    assert list((tmp_path / "Person").iterdir()) == []


@pytest.mark.parametrize("keep", [0, 5, 20, -8, -1])
def test_truncated_part_is_refused_naming_the_file(tmp_path: Path, keep: int) -> None:
    relpath = "Person/part-00000-000000.jsonl.gz"
    write_part(tmp_path, relpath, [person(n) for n in range(200)])
    path = tmp_path / relpath
    path.write_bytes(path.read_bytes()[:keep])

    with pytest.raises(DumpFormatError, match="truncated") as refused:
        list(read_part(tmp_path, relpath))

    assert refused.value.path == str(path)


def test_part_with_a_bad_checksum_is_refused(tmp_path: Path) -> None:
    relpath = "Person/part.jsonl.gz"
    info = write_part(tmp_path, relpath, [person(1), person(2)])
    write_part(tmp_path, relpath, [person(1), person(3)])  # same size, other content

    with pytest.raises(DumpFormatError, match="sha256 mismatch") as refused:
        list(read_part(tmp_path, relpath, info))

    assert refused.value.path == str(tmp_path / relpath)


def test_part_with_a_wrong_count_is_refused(tmp_path: Path) -> None:
    relpath = "Person/part.jsonl.gz"
    info = write_part(tmp_path, relpath, [person(1), person(2)])

    with pytest.raises(DumpFormatError, match="count mismatch"):
        list(read_part(tmp_path, relpath, dataclasses.replace(info, count=3)))


def test_bad_json_line_is_refused_with_its_line_number(tmp_path: Path) -> None:
    good = encode_entity(person(1))
    write_raw_part(tmp_path, "Person/part.jsonl.gz", [good])
    path = tmp_path / "Person/part.jsonl.gz"
    path.write_bytes(gzip.compress(good + b"\n" + good + b"\n" + b'{"key":\n', mtime=0))

    with pytest.raises(DumpFormatError) as refused:
        list(read_part(tmp_path, "Person/part.jsonl.gz"))

    assert (refused.value.path, refused.value.line) == (str(path), 3)


def test_corrupt_compressed_bytes_are_refused_naming_the_file(tmp_path: Path) -> None:
    relpath = "Person/part.jsonl.gz"
    write_part(tmp_path, relpath, [person(n) for n in range(50)])
    data = bytearray((tmp_path / relpath).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / relpath).write_bytes(bytes(data))

    with pytest.raises(DumpFormatError) as refused:
        list(read_part(tmp_path, relpath))

    assert refused.value.path == str(tmp_path / relpath)


def test_part_relpath_gives_one_safe_file_per_namespace_kind_shard_and_slice() -> None:
    assert part_relpath("Person", 2, 31) == "~default/Person/part-00002-000031.jsonl.gz"
    assert part_relpath("Person", 0, 0, "ns1").startswith("ns1/Person/")
    assert part_relpath("a/b", 0, 0).split("/")[1] == "a%2Fb"
    assert part_relpath("..", 0, 0).split("/")[1] == "%2E."
    assert part_relpath("ñ", 0, 0).split("/")[1] == "%C3%B1"
    long_kind = part_relpath("K" * 1500, 0, 0).split("/")[1]
    assert len(long_kind) < 130 and long_kind != part_relpath("K" * 1499, 0, 0).split("/")[1]


# -- the manifest -------------------------------------------------------------


def test_manifest_round_trips_and_is_written_last(tmp_path: Path) -> None:
    manifest = dump_with(tmp_path, ("a.jsonl.gz", [person(1)]), ("b.jsonl.gz", ALL))

    assert read_manifest(tmp_path) == manifest
    assert manifest.kinds == ("AllTypes", "Person") and manifest.namespaces == (NAMESPACE,)
    assert manifest.totals == {
        "parts": 2,
        "entities": 1 + len(ALL),
        "bytes": manifest.totals["bytes"],
    }
    obj = json.loads((tmp_path / MANIFEST).read_text())
    assert (obj["format"], obj["version"]) == ("mapper-dump", FORMAT_VERSION)


def test_missing_manifest_is_refused_as_incomplete(tmp_path: Path) -> None:
    write_part(tmp_path, "Person/part.jsonl.gz", [person(1)])

    with pytest.raises(DumpFormatError, match="incomplete dump: no manifest.json"):
        validate_dump(tmp_path)


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 0, "1", None, True])
def test_unknown_version_is_refused_saying_which_versions_this_mapper_reads(
    tmp_path: Path, version: Any
) -> None:
    dump_with(tmp_path, ("a.jsonl.gz", [person(1)]))
    edit_manifest(tmp_path, version=version)

    with pytest.raises(DumpFormatError, match=f"reads version 1.*{version!r}|{version!r}.*reads"):
        read_manifest(tmp_path)


def test_other_format_is_refused(tmp_path: Path) -> None:
    dump_with(tmp_path, ("a.jsonl.gz", [person(1)]))
    edit_manifest(tmp_path, format="feincms3-data")

    with pytest.raises(DumpFormatError, match="not a mapper-dump manifest"):
        read_manifest(tmp_path)


@pytest.mark.parametrize(
    "changes",
    [
        {"project": 7},
        {"created": "2024-01-01T00:00:00+02:00"},
        {"kinds": "Person"},
        {"totals": {"parts": 9, "entities": 1, "bytes": 1}},
        {"surprise": 1},
        {"parts": [{"path": "../outside.jsonl.gz"}]},
        {"parts": "none"},
    ],
)
def test_malformed_manifest_is_refused(tmp_path: Path, changes: dict[str, Any]) -> None:
    dump_with(tmp_path, ("a.jsonl.gz", [person(1)]))
    edit_manifest(tmp_path, **changes)

    with pytest.raises(DumpFormatError) as refused:
        read_manifest(tmp_path)

    assert refused.value.path == str(tmp_path / MANIFEST)


@pytest.mark.parametrize(
    "part_changes",
    [{"path": "/etc/passwd"}, {"path": "a/../../b"}, {"count": -1}, {"sha256": "ABC"}],
)
def test_malformed_part_entry_is_refused(tmp_path: Path, part_changes: dict[str, Any]) -> None:
    manifest = dump_with(tmp_path, ("a.jsonl.gz", [person(1)]))
    part = {**manifest.to_json()["parts"][0], **part_changes}
    edit_manifest(tmp_path, parts=[part])

    with pytest.raises(DumpFormatError):
        read_manifest(tmp_path)


def test_manifest_that_is_not_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text('{"format": "mapper-dump", ')

    with pytest.raises(DumpFormatError, match="not JSON"):
        read_manifest(tmp_path)


# -- validating a whole dump --------------------------------------------------


def test_validate_dump_accepts_a_complete_dump(tmp_path: Path) -> None:
    manifest = dump_with(
        tmp_path,
        (part_relpath("AllTypes", 0, 0, NAMESPACE), ALL),
        (part_relpath("Person", 0, 0, NAMESPACE), [person(n) for n in range(10)]),
    )

    assert validate_dump(str(tmp_path)) == manifest


def test_missing_part_is_refused_as_incomplete(tmp_path: Path) -> None:
    dump_with(tmp_path, ("a.jsonl.gz", [person(1)]))
    (tmp_path / "a.jsonl.gz").unlink()

    with pytest.raises(DumpFormatError, match="incomplete dump: part file is missing"):
        validate_dump(tmp_path)


def test_bad_checksum_is_refused_by_validate_dump(tmp_path: Path) -> None:
    dump_with(tmp_path, ("a.jsonl.gz", [person(1), person(2)]))
    write_part(tmp_path, "a.jsonl.gz", [person(1), person(3)])

    with pytest.raises(DumpFormatError, match="sha256 mismatch"):
        validate_dump(tmp_path)


@pytest.mark.parametrize(
    "reserved", [("__kind__", "Person"), ("Person", 1, "__Stat_Kind__", "x"), ("__x__", 1)]
)
def test_reserved_kind_is_refused_with_file_line_and_key(tmp_path: Path, reserved: tuple) -> None:
    path = reserved if len(reserved) % 2 == 0 else reserved[:-1]
    bad = entity(key(PROJECT, NAMESPACE, *path), n=scalar("integer_value", 1))
    dump_with(tmp_path, ("p.jsonl.gz", [person(1), bad, person(2)]))

    with pytest.raises(DumpFormatError, match=r"reserved kind '__.*__' in Key\(") as refused:
        validate_dump(tmp_path)

    assert (refused.value.path, refused.value.line) == (str(tmp_path / "p.jsonl.gz"), 2)


def sized_entity(size: int) -> Any:
    """An entity whose protobuf encoding is exactly ``size`` bytes."""
    pb = entity(key(PROJECT, NAMESPACE, "Big", 1), blob=scalar("blob_value", b""))
    pb.properties["blob"].blob_value = b"x" * (size - 100)
    while pb.ByteSize() < size:
        pb.properties["blob"].blob_value += b"x"
    if pb.ByteSize() != size:
        pytest.fail(f"could not build an entity of exactly {size} bytes")
    return pb


def test_entity_at_the_size_limit_is_accepted(tmp_path: Path) -> None:
    dump_with(tmp_path, ("big.jsonl.gz", [sized_entity(MAX_ENTITY_BYTES)]))

    assert validate_dump(tmp_path).totals["entities"] == 1


def test_oversize_entity_is_refused_with_file_line_and_key(tmp_path: Path) -> None:
    dump_with(tmp_path, ("big.jsonl.gz", [person(1), sized_entity(MAX_ENTITY_BYTES + 1)]))

    with pytest.raises(DumpFormatError, match=r"Key\('Big', 1.*1048573 bytes") as refused:
        validate_dump(tmp_path)

    assert (refused.value.path, refused.value.line) == (str(tmp_path / "big.jsonl.gz"), 2)


def test_entity_without_a_key_is_refused(tmp_path: Path) -> None:
    dump_with(tmp_path, ("p.jsonl.gz", [person(1), entity(None, n=scalar("integer_value", 1))]))

    with pytest.raises(DumpFormatError, match="no key"):
        validate_dump(tmp_path)


def test_entity_of_a_kind_its_part_does_not_list_is_refused(tmp_path: Path) -> None:
    manifest = dump_with(tmp_path, ("p.jsonl.gz", [person(1), person(2, kind="Other")]))
    part = {**manifest.to_json()["parts"][0], "kinds": ["Person"]}
    edit_manifest(tmp_path, parts=[part])

    with pytest.raises(DumpFormatError, match="kind or namespace"):
        validate_dump(tmp_path)


class CountingStore(LocalDumpStore):
    """A local store that counts the stored bytes read, to show that readers stream."""

    bytes_read = 0

    def open_read(self, relpath: str) -> Any:
        return _Counted(super().open_read(relpath), self)


class _Counted:
    def __init__(self, raw: Any, store: CountingStore):
        self.raw, self.store = raw, store

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.store.bytes_read += len(data)
        return data

    def __enter__(self) -> _Counted:
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw.close()


def big_part(store: DumpStore, first: Any = None) -> PartInfo:
    """A part of ~3 MB of incompressible blobs, optionally after a given first entity."""
    blobs = (
        entity(key(PROJECT, "", "Blob", n), b=scalar("blob_value", os.urandom(1000)))
        for n in range(1, 2001)
    )
    return write_part(store, "big.jsonl.gz", [first, *blobs] if first is not None else blobs)


def test_read_part_streams_without_reading_the_whole_file(tmp_path: Path) -> None:
    store = CountingStore(tmp_path)
    info = big_part(store)

    first = next(read_part(store, "big.jsonl.gz", info))

    assert first.key.path[0].id == 1
    assert 0 < store.bytes_read < info.bytes / 4


def test_validate_dump_refuses_a_bad_entity_before_reading_the_rest(tmp_path: Path) -> None:
    store = CountingStore(tmp_path)
    reserved = entity(key(PROJECT, "", "__kind__", "Blob"))
    write_manifest(store, Manifest.build(PROJECT, "", [big_part(store, first=reserved)]))

    with pytest.raises(DumpFormatError, match="reserved kind"):
        validate_dump(store)

    assert store.bytes_read < (tmp_path / "big.jsonl.gz").stat().st_size / 4


# -- stores -------------------------------------------------------------------


@pytest.fixture(params=["local", "gcs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> DumpStore:
    """Each store implementation, so every one passes the same contract."""
    if request.param == "local":
        return LocalDumpStore(tmp_path / "dump")
    bucket = request.getfixturevalue("gcs_bucket")
    return open_dump_store(f"{bucket}/{uuid.uuid4().hex}/dump")


def test_store_writes_reads_lists_and_checks_existence(store: DumpStore) -> None:
    for relpath, data in [("b/two", b"2"), ("a", b"1"), ("b/c/three", b"3")]:
        with store.open_write(relpath) as f:
            f.write(data)

    assert store.list_files() == ["a", "b/c/three", "b/two"]
    assert store.list_files("b") == ["b/c/three", "b/two"]
    assert store.exists("b/two") and not store.exists("b/four") and not store.exists("b/c")
    with store.open_read("b/two") as f:
        assert f.read() == b"2"
    with pytest.raises(FileNotFoundError):
        store.open_read("b/four")


def test_store_write_that_raises_leaves_the_previous_file_whole(store: DumpStore) -> None:
    with store.open_write("a") as f:
        f.write(b"before")

    with pytest.raises(RuntimeError), store.open_write("a") as f:
        f.write(b"half of the new")
        raise RuntimeError("process died")
    with pytest.raises(RuntimeError), store.open_write("new") as f:
        f.write(b"half")
        raise RuntimeError("process died")

    with store.open_read("a") as f:
        assert f.read() == b"before"
    assert store.list_files() == ["a"]


def test_store_round_trips_a_whole_dump(store: DumpStore) -> None:
    manifest = dump_with(store, (part_relpath("AllTypes", 0, 0, NAMESPACE), ALL))

    assert validate_dump(store) == manifest
    assert [exact_bytes(pb) for pb in read_part(store, manifest.parts[0].path)] == [
        exact_bytes(pb) for pb in ALL
    ]


def test_store_errors_name_the_file_in_the_store(store: DumpStore) -> None:
    with pytest.raises(DumpFormatError, match="incomplete dump: no manifest.json") as refused:
        validate_dump(store)
    assert refused.value.path == store.location()

    with pytest.raises(DumpFormatError, match="part file is missing") as refused:
        list(read_part(store, "x/part.jsonl.gz"))
    assert refused.value.path == store.location("x/part.jsonl.gz")
    assert refused.value.path.endswith("/dump/x/part.jsonl.gz")


def test_local_store_does_not_list_temporary_files(tmp_path: Path) -> None:
    store = LocalDumpStore(tmp_path)
    with store.open_write("b/two") as f:
        f.write(b"2")
    (tmp_path / "b" / "two.tmp-1-abcd").write_bytes(b"partial")

    assert store.list_files() == ["b/two"]


@pytest.mark.parametrize("relpath", ["", "/abs", "a//b", "a/../b", "..", "a\\b"])
def test_store_refuses_paths_outside_the_dump(tmp_path: Path, relpath: str) -> None:
    store: DumpStore = LocalDumpStore(tmp_path)

    with pytest.raises(DumpFormatError, match="not a relative path"):
        store.open_read(relpath)


def test_dump_location_is_a_local_path_or_a_gs_url(tmp_path: Path) -> None:
    assert isinstance(open_dump_store(tmp_path), LocalDumpStore)
    store = open_dump_store(str(tmp_path))
    assert open_dump_store(store) is store
    with pytest.raises(ConfigurationError, match="unsupported dump location"):
        open_dump_store("s3://bucket/dump")
    with pytest.raises(ConfigurationError, match="needs a bucket"):
        open_dump_store("gs:///dump")


def test_gs_url_names_files_under_its_prefix() -> None:
    pytest.importorskip("google.cloud.storage")
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="p", credentials=AnonymousCredentials())
    store = open_dump_store("gs://bucket/dumps/2024/", gcs_client=client)

    assert isinstance(store, dumpfiles.GcsDumpStore)
    assert store.location() == "gs://bucket/dumps/2024"
    assert store.location("a/b.jsonl.gz") == "gs://bucket/dumps/2024/a/b.jsonl.gz"


def test_fast_decoder_gives_the_strict_parsers_message() -> None:
    values = [pb for e in ALL for pb in [e, *(v.entity_value for v in e.properties.values())]]
    for pb in values:
        if not pb.HasField("key"):
            continue
        line = encode_entity(pb)
        assert exact_bytes(decode_entity(line)) == exact_bytes(decode_strict(line))


def test_fast_decoder_hands_anything_unexpected_to_the_strict_parser() -> None:
    with pytest.raises(DumpFormatError, match="not a Datastore entity"):
        decode_entity(b'{"key": {"path": [{"kind": "A", "id": "1"}]}, "bogus": 1}')
    template = b'{"key":{"path":[{"kind":"A","id":"1"}]},"properties":{"i":%s}}'
    for value in (b'{"integerValue":"1_000"}', b'{"integerValue":" 12"}', b'{"integerValue":1.5}',
                  b'{"integerValue":true}', b'{"integerValue":"1","stringValue":"x"}',
                  b'{"arrayValue":{"values":"ab"}}', b'{"booleanValue":1}'):  # fmt: skip
        line = template % value
        try:
            expected = exact_bytes(decode_strict(line))
        except DumpFormatError as refusal:
            with pytest.raises(DumpFormatError) as error:
                decode_entity(line)
            assert str(error.value) == str(refusal)
        else:
            assert exact_bytes(decode_entity(line)) == expected
    with pytest.raises(DumpFormatError, match="duplicate key"):
        decode_entity(b'{"key":{"path":[{"kind":"A","id":"1"}]},"key":{"path":[]}}')
    odd = b'{"key":{"path":[{"kind":"A","id":"1"}]},"properties":{"d":{"doubleValue":"NaN"}}}'
    assert math.isnan(decode_entity(odd).properties["d"].double_value)


def test_fast_timestamps_are_the_strict_parsers_valid_or_not() -> None:
    """Timestamps skip protobuf's strptime in the form dumps hold; every other spelling,
    and every refusal, is still the strict parser's."""
    rng = random.Random(13)
    spelled = ["2026-02-30T00:00:00Z", "2026-12-02T24:00:00Z", "2026-12-02T23:59:60Z",
               "2026-12-02T14:16:05+01:00", "2026-12-02T14:16:05.1234567890Z",
               "2026-12-02t14:16:05Z", "\u0662\u0660\u0662\u0666-12-02T14:16:05Z"]  # fmt: skip
    stamp = Timestamp()
    for _ in range(2000):
        stamp.seconds = rng.randrange(-62135596800, 253402300800)
        stamp.nanos = rng.choice([0, rng.randrange(10**9), rng.randrange(1000) * 10**6])
        spelled.append(stamp.ToJsonString())
    template = '{"key":{"path":[{"kind":"A","id":"1"}]},"properties":{"t":{"timestampValue":"%s"}}}'
    for text in spelled:
        line = (template % text).encode()
        try:
            expected = exact_bytes(decode_strict(line))
        except DumpFormatError:
            with pytest.raises(DumpFormatError):
                decode_entity(line)
        else:
            assert exact_bytes(decode_entity(line)) == expected, text


def test_store_delete_all_removes_every_file_and_copy_dump_copies_them(
    store: DumpStore, tmp_path: Path
) -> None:
    write_part(store, "a/part.jsonl.gz", ALL[:1])
    write_manifest(store, Manifest.build("p", "", [scan_part(store, "a/part.jsonl.gz")]))
    copy = LocalDumpStore(tmp_path / "copy")
    copy_dump(store, copy)
    assert copy.list_files() == store.list_files() == ["a/part.jsonl.gz", MANIFEST]
    assert validate_dump(copy).totals["entities"] == 1
    store.delete_all()
    assert store.list_files() == []


def test_a_writable_location_is_probed_without_leaving_a_file(tmp_path: Path) -> None:
    store = LocalDumpStore(tmp_path / "new" / "dump")
    store.check_writable()
    assert store.list_files() == []
    assert list((tmp_path / "new" / "dump").iterdir()) == []


def test_an_unwritable_location_is_refused_naming_it_and_why() -> None:
    with pytest.raises(ConfigurationError, match=r"cannot write the dump to /proc/x: .*Errno"):
        LocalDumpStore("/proc/x").check_writable()


# -- bounds: a dump from anywhere cannot make a reader run away ---------------


def test_a_part_that_inflates_far_beyond_its_count_stops_at_the_count(tmp_path: Path) -> None:
    """Finding 13: a small gzip part holding 200,000 entities where the manifest says 2."""
    relpath = "Person/part.jsonl.gz"
    path = tmp_path / relpath
    path.parent.mkdir(parents=True)
    data = gzip.compress((encode_entity(person(1)) + b"\n") * 200_000, mtime=0)
    path.write_bytes(data)
    info = PartInfo(relpath, 2, hashlib.sha256(data).hexdigest(), len(data))
    seen = 0
    with pytest.raises(DumpFormatError, match="more entities than the manifest's count of 2"):
        for _ in read_part(tmp_path, relpath, info):
            seen += 1
    assert seen == 2


def test_a_part_longer_than_the_manifest_says_stops_at_that_size(tmp_path: Path) -> None:
    relpath = "Person/part.jsonl.gz"
    info = write_part(tmp_path, relpath, [person(1)])
    with open(tmp_path / relpath, "ab") as f:
        f.write(b"\0" * 5_000_000)
    with pytest.raises(DumpFormatError, match=f"more bytes than the manifest's {info.bytes}"):
        list(read_part(tmp_path, relpath, info))


def test_a_huge_manifest_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_bytes(b"{" + b" " * MAX_MANIFEST_BYTES + b"}")
    with pytest.raises(DumpFormatError, match=f"manifest is over {MAX_MANIFEST_BYTES} bytes"):
        read_manifest(tmp_path)
