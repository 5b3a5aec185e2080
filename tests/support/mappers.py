"""Mappers and models the tests run (importable as ``tests.support.mappers:Class``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from google.cloud import datastore, ndb

from mapper import Mapper


class Person(ndb.Model):
    name = ndb.StringProperty()
    active = ndb.BooleanProperty(default=True)
    touched = ndb.IntegerProperty(default=0)
    blob = ndb.BlobProperty()


class TouchPeople(Mapper):
    """Adds one to ``touched``: a replayed batch shows up as a 2."""

    KIND = Person

    def map(self, entity: Person) -> tuple[list[Any], list[Any]]:
        entity.touched = (entity.touched or 0) + 1
        return [entity], []


class SlowTouchPeople(TouchPeople):
    """TouchPeople taking ``params['pause']`` seconds per entity (a batch past its lease)."""

    def map(self, entity: Person) -> tuple[list[Any], list[Any]]:
        time.sleep(self.params["pause"])
        return super().map(entity)


class TouchActive(TouchPeople):
    FILTERS = [(Person.active, True)]


class DeleteInactive(Mapper):
    KIND = Person
    FILTERS = [(Person.active, False)]

    def map(self, entity: Person) -> tuple[list[Any], list[Any]]:
        return [], [entity.key]


class CountRaw(Mapper):
    """Raw-kind mapper: counts entities per ``name`` initial via a custom counter."""

    KIND = "Person"

    def map(self, entity: Any) -> None:
        self.count("raw_seen")
        return None


class Poison(TouchPeople):
    """Fails on the entity named in params['poison']."""

    def map(self, entity: Person) -> tuple[list[Any], list[Any]]:
        if entity.name == self.params["poison"]:
            raise ValueError(f"cannot map {entity.name}")
        return super().map(entity)


class SlowTouch(TouchPeople):
    """TouchPeople taking params['sleep'] seconds an entity: slow enough to watch it run."""

    def map(self, entity: Person) -> tuple[list[Any], list[Any]]:
        time.sleep(float(self.params.get("sleep", 0.02)))
        return super().map(entity)


FINISHED: list[str] = []


class RecordsFinish(TouchPeople):
    def finish(self) -> None:
        FINISHED.append(self.job_id or "")


class Bloat(TouchPeople):
    """Makes the entity named params['name'] larger than Datastore allows."""

    def map(self, entity: Person) -> tuple[list[Any], list[Any]]:
        if entity.name == self.params["name"]:
            entity.blob = b"x" * 1_100_000
        return super().map(entity)


def seed_people_raw(client: datastore.Client, n: int) -> None:
    """n Person entities (p00000.., touched=0) through the raw client: faster than ndb."""
    for start in range(0, n, 500):
        batch = []
        for i in range(start, min(n, start + 500)):
            entity = datastore.Entity(client.key("Person"))
            entity.update({"name": f"p{i:05d}", "active": True, "touched": 0})
            batch.append(entity)
        client.put_multi(batch)


class SplitAt(TouchPeople):
    """Splits its shards at the Person ids in params['split'] (in params['namespace'])."""

    def split_keys(self, shards: int) -> list[Any]:
        from tests.support.fixtures_alltypes import key

        p = self.params
        return [key(p["project"], p["namespace"], "Person", i) for i in p["split"]]


class FailingFinish(TouchPeople):
    """finish() raises every time it runs."""

    def finish(self) -> None:
        raise RuntimeError("finish cannot reach the outside world")


class HeldFinish(TouchPeople):
    """finish() marks that it began (a file in params['folder']), then waits while
    params['folder']/hold exists: a process can be killed inside it."""

    def finish(self) -> None:
        folder = Path(self.params["folder"])
        (folder / f"finish-{time.monotonic_ns()}").touch()
        while (folder / "hold").exists():
            time.sleep(0.05)


class TouchTouched(TouchPeople):
    """An inequality filter: refused at start (a shard's query is ordered by key)."""

    FILTERS = [Person.touched > 0]


#: (job id, shard, batch number) for every end_batch call of a LogBatches job.
BATCH_NUMBERS: list[tuple[str, int | None, int]] = []


class LogBatches(TouchPeople):
    """Logs every ``end_batch(number)``: a side output named by the number."""

    def end_batch(self, number: int) -> None:
        BATCH_NUMBERS.append((self.job_id or "", self.shard, number))


class LongName(Mapper):
    """Gives the entity named params['name'] an indexed name over 1,500 bytes (raw kind)."""

    KIND = "Person"

    def map(self, entity: Any) -> tuple[list[Any], list[Any]]:
        if entity["name"] == self.params["name"]:
            entity["name"] = "x" * 1501
        entity["touched"] = (entity.get("touched") or 0) + 1
        return [entity], []


class TouchAndOpenTenant(TouchPeople):
    """TouchPeople that, at person p00000 of namespace ``params['at']``, opens tenants:
    one Person in each namespace of ``params['tenants']`` (namespaces that appear, or
    get the kind, while a job over many runs)."""

    def map(self, entity: Person) -> tuple[list[Any], list[Any]]:
        puts, deletes = super().map(entity)
        if entity.key.namespace() == self.params["at"] and entity.name == "p00000":
            for tenant in self.params["tenants"]:
                puts.append(Person(key=ndb.Key(Person, "first", namespace=tenant)))
        return puts, deletes
