"""Orphans: entities whose parent or referenced key no longer exists.

The scan is a sharded, resumable job (``OrphanMapper``): each batch gathers
the keys it refers to and looks them up at once (at most 1,000 keys a Lookup),
then counts (plan), deletes, nulls the reference, or deletes with dependents
(``cascade``: entities of declared ``KIND.PROP`` reverse references).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mapper.base import Mapper
from mapper.cleanup import SAMPLES, Plan, scan
from mapper.cleanup_jobs import _RawKindMapper
from mapper.errors import ConfigurationError
from mapper.jobs import start_job
from mapper.keymap import key_bytes
from mapper.messages import JobSpec
from mapper.query import KEY_PROPERTY
from mapper.store import MAX_LOOKUP_KEYS, Entity, PropertyFilter, Query

if TYPE_CHECKING:
    from mapper.runtime import Runtime

ACTIONS = ("plan", "delete", "null", "cascade")
RECORD_KIND = "_MapperOrphan"


@dataclasses.dataclass(frozen=True)
class OrphanSpec:
    kind: str
    properties: Sequence[str] = ()
    parents: bool = False
    #: [KIND, PROP]: entities whose PROP holds an orphan's key go with it (cascade).
    cascade: Sequence[Sequence[str]] = ()

    def validate(self) -> OrphanSpec:
        if not self.kind:
            raise ConfigurationError("orphans needs --kind")
        if not self.properties and not self.parents:
            raise ConfigurationError("orphans needs --property P (repeatable) and/or --parents")
        return self


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
            self.need_runtime().store.partition(self.params["state_namespace"])
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

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.FILTERS = [("scan", params["scan_job"])]

    def decode(self, pb: Any) -> Any:
        return pb

    def start_batch(self, records: list[Any]) -> None:
        keys = [r.properties["key"].key_value for r in records]
        self._targets = self.need_runtime().store.lookup(keys) if keys else {}
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
        found = []
        for kind, prop in self.params["cascade"]:
            query = Query()
            query.kind.add(name=kind)
            query.projection.add().property.name = KEY_PROPERTY
            query.filter.property_filter.property.name = prop
            query.filter.property_filter.op = PropertyFilter.EQUAL
            query.filter.property_filter.value.key_value.CopyFrom(key)
            batch = self.need_runtime().store.run_query(query, key.partition_id.namespace_id)
            found += [r.entity.key for r in batch.entity_results]
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
    mapper.count("lookups", -(-len(refs) // MAX_LOOKUP_KEYS))
    found = mapper.need_runtime().store.lookup(list(refs.values())) if refs else {}
    return set(refs) - set(found)


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


def _params(rt: Runtime, spec: OrphanSpec, action: str) -> dict[str, Any]:
    return {
        "kind": spec.kind,
        "properties": list(spec.properties),
        "parents": spec.parents,
        "action": action,
        "cascade": [list(c) for c in spec.cascade],
        "state_namespace": rt.settings.state_namespace,
    }


def plan_orphans(rt: Runtime, spec: OrphanSpec, namespace: str = "", shards: int = 4) -> Plan:
    """Find and record the orphans with a sharded, resumable scan job; sample a few."""
    job = JobSpec(
        mapper="mapper.orphans:OrphanMapper",
        params=_params(rt, spec.validate(), "plan"),
        shards=shards,
        batch_size=500,
        namespace=namespace,
    )
    status = start_job(rt, job).wait()
    if status["status"] != "succeeded":
        raise ConfigurationError(
            f"orphan scan {status['id']} {status['status']}: {status['error']}"
        )
    plan = Plan(f"orphaned {spec.kind}", namespace, target={**job.params, "scan_job": status["id"]})
    plan.counts[spec.kind] = status["counters"].get("orphans", 0)
    if plan.counts[spec.kind]:
        plan.samples[spec.kind] = _samples(rt, spec, namespace)
    return plan


def apply_orphans(rt: Runtime, plan: Plan, action: str, shards: int = 4) -> dict[str, int]:
    """Delete, null or cascade the orphans the plan recorded (each checked again)."""
    if action not in ACTIONS[1:]:
        raise ConfigurationError(f"--action must be one of {ACTIONS[1:]}, got {action!r}")
    if action == "null" and plan.target["parents"]:
        raise ConfigurationError("--action null cannot null a parent: use delete or cascade")
    if action == "cascade" and not plan.target["cascade"]:
        raise ConfigurationError("--action cascade needs --cascade KIND.PROP (repeatable)")
    job = JobSpec(
        mapper="mapper.orphans:OrphanApplyMapper",
        params={**plan.target, "action": action},
        shards=shards,
        batch_size=500,
        namespace=rt.settings.state_namespace,
    )
    status = start_job(rt, job).wait()
    if status["status"] != "succeeded":
        raise ConfigurationError(
            f"orphan {action} {status['id']} {status['status']}: {status['error']}"
        )
    reported = ("orphans", "removed", "nulled", "dependents", "no_longer_orphans")
    return {name: status["counters"][name] for name in reported if name in status["counters"]}


def _samples(rt: Runtime, spec: OrphanSpec, namespace: str) -> list[str]:
    from mapper.dumpformat import describe_key

    samples: list[str] = []
    page: list[Any] = []
    for entity in scan(rt, spec.kind, namespace):
        page.append(entity)
        if len(page) == 500:
            samples += _page_orphans(rt, spec, page)
            page = []
            if len(samples) >= SAMPLES:
                break
    samples += _page_orphans(rt, spec, page)
    return [describe_key(key) for key in samples[:SAMPLES]]


def _page_orphans(rt: Runtime, spec: OrphanSpec, page: list[Any]) -> list[Any]:
    refs = {
        key_bytes(key): key
        for entity in page
        for _, key in orphan_references(entity, spec.properties, spec.parents)
    }
    found = rt.store.lookup(list(refs.values())) if refs else {}
    return [
        entity.key
        for entity in page
        if any(
            key_bytes(key) not in found
            for _, key in orphan_references(entity, spec.properties, spec.parents)
        )
    ]
