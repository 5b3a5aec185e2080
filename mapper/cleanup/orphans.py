"""Orphans: entities whose parent or referenced key no longer exists.

The scan is a sharded, resumable job (``OrphanMapper``): each batch gathers
the keys it refers to and looks them up at once (at most 1,000 keys a Lookup),
then counts (plan), deletes, nulls the reference, or deletes with dependents
(``cascade``: entities of declared ``KIND.PROP`` reverse references, or
``KIND.__parent__`` for the entities under an orphan).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mapper.base import Mapper
from mapper.cleanup.jobs import _RawKindMapper
from mapper.cleanup.plan import SAMPLES, Plan, chunks, keys_where
from mapper.datastore.keys import key_bytes, key_repr
from mapper.datastore.query import equal_filter, kind_query, results
from mapper.datastore.rpc import MAX_LOOKUP_KEYS, Entity
from mapper.engine.jobs import start_job
from mapper.engine.loading import class_spec
from mapper.engine.records import JobStatus
from mapper.engine.spec import JobSpec
from mapper.errors import CleanupError

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime

ACTIONS = ("plan", "delete", "null", "cascade")
RECORD_KIND = "_MapperOrphan"


@dataclasses.dataclass(frozen=True)
class OrphanSpec:
    """What an orphan scan checks, and what its apply does with the orphans it finds."""

    kind: str
    #: Key properties (single or repeated) whose every key must exist.
    properties: Sequence[str] = ()
    #: Check that each entity's parent exists.
    parents: bool = False
    #: The declared reverse references: [KIND, PROP] pairs; with ``cascade``, the
    #: entities of KIND whose PROP holds an orphan's key are deleted with it
    #: (PROP ``__parent__``: the KIND entities under the orphan's key).
    cascade: Sequence[Sequence[str]] = ()
    #: delete | null (set the dangling reference to null) | cascade.
    action: str = "delete"

    def validate(self) -> OrphanSpec:
        """Raise CleanupError naming the first bad field (before anything is written)."""
        if not isinstance(self.kind, str) or not self.kind or self.kind.startswith("__"):
            raise CleanupError(f"orphans needs a user kind (--kind), got {self.kind!r}")
        if not self.properties and not self.parents:
            raise CleanupError("orphans needs --property P (repeatable) and/or --parents")
        bad = [p for p in self.properties if not isinstance(p, str) or not p]
        if bad or isinstance(self.properties, str):
            raise CleanupError(f"--property names a property, got {self.properties!r}")
        check_action(self.action, self.parents, self.cascade)
        return self


def check_action(action: str, parents: bool, cascade: Sequence[Sequence[str]]) -> None:
    """Refuse an action that cannot apply to the scan (before the scan, not after)."""
    if action not in ACTIONS[1:]:
        raise CleanupError(f"--action must be one of {ACTIONS[1:]}, got {action!r}")
    if action == "null" and parents:
        raise CleanupError("--action null cannot null a parent: use delete or cascade")
    for pair in cascade:
        if len(pair) != 2 or not all(isinstance(p, str) and p for p in pair):
            raise CleanupError(f"--cascade takes KIND.PROP, got {pair!r}")
    if action == "cascade" and not cascade:
        raise CleanupError("--action cascade needs --cascade KIND.PROP (repeatable)")


def orphan_references(
    entity: Any, spec_properties: Sequence[str], parents: bool
) -> list[tuple[str, Any]]:
    """(label, key) of every reference of ``entity`` that the scan checks."""
    refs = []
    if parents and len(entity.key.path) > 1:
        parent = type(entity.key)()
        parent.CopyFrom(entity.key)
        del parent.path[-1]
        refs.append(("parent", parent))
    for name in spec_properties:
        value = entity.properties.get(name)
        if value is None:
            continue
        values = value.array_value.values if value.HasField("array_value") else [value]
        refs += [(name, v.key_value) for v in values if v.HasField("key_value")]
    return refs


class OrphanMapper(_RawKindMapper):
    """The plan: finds the orphans of one kind and records each (``_MapperOrphan``)."""

    def start_batch(self, entities: list[Any]) -> None:
        self._missing = missing_references(self, entities)

    def map(self, entity: Any) -> tuple[list[Any], list[Any]]:
        refs = orphan_references(entity, self.params["properties"], self.params["parents"])
        if not any(key_bytes(key) in self._missing for _, key in refs):
            return [], []
        self.count("orphans")
        record = Entity()
        record.key.partition_id.CopyFrom(
            self.runtime.store.partition(self.params["state_namespace"])
        )
        digest = hashlib.sha256(key_bytes(entity.key)).hexdigest()[:40]
        record.key.path.add(kind=RECORD_KIND, name=f"{self.job_id}:{digest}")
        record.properties["key"].key_value.CopyFrom(entity.key)
        record.properties["key"].exclude_from_indexes = True
        record.properties["scan"].string_value = self.job_id or ""
        return [record], []


class OrphanApplyMapper(Mapper):
    """Acts on the orphans a plan recorded, each checked again: still there, still orphaned."""

    KIND = RECORD_KIND
    RAW = True

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.FILTERS = [("scan", params["scan_job"])]

    def start_batch(self, records: list[Any]) -> None:
        keys = [r.properties["key"].key_value for r in records]
        self._targets = self.runtime.store.lookup(keys) if keys else {}
        self._missing = missing_references(self, list(self._targets.values()))

    def map(self, record: Any) -> tuple[list[Any], list[Any]]:
        entity = self._targets.get(key_bytes(record.properties["key"].key_value))
        if entity is None:
            return [], [record.key]  # gone already
        refs = orphan_references(entity, self.params["properties"], self.params["parents"])
        missing = [label for label, key in refs if key_bytes(key) in self._missing]
        if not missing:
            self.count("no_longer_orphans")
            return [], [record.key]
        self.count("orphans")
        if self.params["action"] == "null":
            for label in missing:
                _null(entity, label, self._missing)
            self.count("nulled")
            return [entity], [record.key]
        self.count("removed")
        return [], [entity.key, *self._dependents(entity.key), record.key]

    def _dependents(self, key: Any) -> list[Any]:
        if self.params["action"] != "cascade":
            return []
        rt = self.runtime
        found = []
        for kind, prop in self.params["cascade"]:
            found += keys_where(rt, kind, prop, key)
        self.count("dependents", len(found))
        return found


def missing_references(mapper: Mapper, entities: list[Any]) -> set[bytes]:
    """The referenced keys of ``entities`` that do not exist (one batched lookup)."""
    params = mapper.params
    refs = {
        key_bytes(key): key
        for entity in entities
        for _, key in orphan_references(entity, params["properties"], params["parents"])
    }
    store = mapper.runtime.store
    found: set[bytes] = set()
    for chunk in chunks(list(refs.values()), MAX_LOOKUP_KEYS):
        found.update(store.lookup(chunk))
        mapper.count("lookups")
        mapper.count("lookup_keys", len(chunk))
    return set(refs) - found


def _null(entity: Any, name: str, missing: set[bytes]) -> None:
    value = entity.properties[name]
    if value.HasField("array_value"):
        for item in value.array_value.values:
            if item.HasField("key_value") and key_bytes(item.key_value) in missing:
                item.null_value = 0
    else:
        excluded = value.exclude_from_indexes
        value.null_value = 0
        value.exclude_from_indexes = excluded


def _params(rt: Runtime, spec: OrphanSpec) -> dict[str, Any]:
    return {
        "kind": spec.kind,
        "properties": list(spec.properties),
        "parents": spec.parents,
        "action": spec.action,
        "cascade": [list(c) for c in spec.cascade],
        "state_namespace": rt.settings.state_namespace,
    }


def plan_orphans(
    rt: Runtime,
    spec: OrphanSpec,
    namespace: str = "",
    shards: int = 4,
    namespaces: list[str] | None = None,
) -> Plan:
    """Find the orphans with a sharded, resumable scan job that records each one; with
    ``namespaces``, one scan over all of them (mapper.engine.units).

    Reads user data only; the scan's job state and its ``_MapperOrphan``
    records (each holding the orphan's full key) go to the state namespace, for
    :func:`apply_orphans` to act on.
    """
    job = JobSpec(
        mapper=class_spec(OrphanMapper),
        params=_params(rt, spec.validate()),
        shards=shards,
        batch_size=500,
        namespace=namespace if namespaces is None else "",
        namespaces=namespaces,
    ).validate()
    info = start_job(rt, job).wait()
    if info.status != JobStatus.SUCCEEDED:
        raise CleanupError(f"orphan scan {info.id} {info.status.value}: {info.error}")
    target = {**job.params, "scan_job": info.id}
    plan = Plan(f"orphaned {spec.kind}", namespace if namespaces is None else "",
                target=target, command="orphans", namespaces=namespaces)  # fmt: skip
    plan.counts[spec.kind] = info.counters.get("orphans", 0)
    if plan.counts[spec.kind]:
        plan.samples[spec.kind] = _samples(rt, info.id)
    return plan


def apply_orphans(
    rt: Runtime,
    plan: Plan,
    action: str | None = None,
    shards: int = 4,
    max_rate: float | None = None,
) -> dict[str, int]:
    """Delete, null or cascade the orphans the plan's scan recorded, each checked again.

    ``action`` defaults to the one the plan was made with. Returns the counters
    ``orphans`` (acted on), ``removed``, ``nulled``, ``dependents`` and
    ``no_longer_orphans`` (recorded, but fixed since: left alone).
    """
    target = plan.target
    action = target.get("action", "delete") if action is None else action
    check_action(action, target["parents"], target["cascade"])
    job = JobSpec(
        mapper=class_spec(OrphanApplyMapper),
        params={**target, "action": action},
        shards=shards,
        batch_size=500,
        namespace=rt.settings.state_namespace,
        max_rate=max_rate,
    ).validate()
    info = start_job(rt, job).wait()
    if info.status != JobStatus.SUCCEEDED:
        raise CleanupError(f"orphan {action} {info.id} {info.status.value}: {info.error}")
    reported = ("orphans", "removed", "nulled", "dependents", "no_longer_orphans")
    return {name: info.counters[name] for name in reported if name in info.counters}


def _samples(rt: Runtime, scan_job: str) -> list[str]:
    """A few of the orphans the scan recorded (records are named by a hash: a spread)."""
    query = kind_query(RECORD_KIND, [equal_filter("scan", scan_job)])
    query.limit.value = SAMPLES
    found = results(rt.store, query, rt.settings.state_namespace)
    return sorted(key_repr(e.properties["key"].key_value) for e in found)
