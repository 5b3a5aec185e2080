"""Stale cleanup: plan what went stale, show it, and delete only what the plan lists.

Each cleanup is a ``plan_*`` function that reads and changes nothing, and
:func:`apply` that acts on a plan: stale kinds (kinds no model defines), stale
properties (properties a model no longer defines), missing rows (entities in a
scope that a sync dump no longer contains). Orphans are in ``mapper.orphans``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from google.cloud import ndb

from mapper.dumpformat import describe_key, read_part, validate_dump
from mapper.errors import ConfigurationError
from mapper.jobs import start_job
from mapper.keymap import key_bytes
from mapper.messages import JobSpec
from mapper.metadata import list_kinds
from mapper.query import shard_query
from mapper.state import INTERNAL_KINDS

if TYPE_CHECKING:
    from mapper.runtime import Runtime

SAMPLES = 5
_PAGE = 500


@dataclasses.dataclass
class Plan:
    """What a cleanup would remove: counts per label, sample keys, and what apply needs."""

    cleanup: str
    namespace: str
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    samples: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    #: What apply() acts on (kinds, properties, keys ...), JSON-ready.
    target: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not any(self.counts.values())

    def add(self, label: str, key: Any) -> None:
        self.counts[label] = self.counts.get(label, 0) + 1
        samples = self.samples.setdefault(label, [])
        if len(samples) < SAMPLES:
            samples.append(describe_key(key))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"empty": self.empty}

    def render(self) -> list[str]:
        """The plan as lines, in the manner of Django's remove_stale_contenttypes."""
        where = f"namespace {self.namespace!r}" if self.namespace else "the default namespace"
        if self.empty:
            return [f"{self.cleanup}: nothing is stale in {where}."]
        lines = [f"{self.cleanup} in {where}:"]
        for label, count in sorted(self.counts.items()):
            lines.append(f"    - {label}: {count}")
            lines += [f"        {sample}" for sample in self.samples.get(label, [])]
        lines.append("Nothing else will be deleted or changed.")
        return lines


def model_classes(modules: Sequence[str]) -> dict[str, type[ndb.Model]]:
    """Kind name -> model class for every ndb.Model subclass defined in ``modules``."""
    found: dict[str, type[ndb.Model]] = {}
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            raise ConfigurationError(f"cannot import models module {name!r}: {e}") from e
        for value in vars(module).values():
            is_model = isinstance(value, type) and issubclass(value, ndb.Model)
            if is_model and value.__module__ == module.__name__:
                found[value._get_kind()] = value
    if not found:
        raise ConfigurationError(f"no ndb.Model classes in {list(modules)!r}")
    return found


def scan(rt: Runtime, kind: str, namespace: str, filters: Sequence[Any] = ()) -> Iterator[Any]:
    """Every raw entity of ``kind`` in key order, a page at a time (memory stays flat)."""
    after = None
    while True:
        batch = rt.store.run_query(shard_query(kind, filters, None, None, after, _PAGE), namespace)
        results = batch.entity_results
        yield from (r.entity for r in results)
        if len(results) < _PAGE:
            return
        after = results[-1].entity.key


# -- stale kinds ---------------------------------------------------------------------


def plan_stale_kinds(rt: Runtime, modules: Sequence[str], namespace: str = "") -> Plan:
    """Kinds in the store (metadata query) that no model in ``modules`` defines."""
    defined = set(model_classes(modules))
    stale = [k for k in list_kinds(rt.store, namespace) if k not in defined | INTERNAL_KINDS]
    plan = Plan("stale kinds", namespace, target={"kinds": stale})
    for kind in stale:
        plan.counts[kind] = 0
        for entity in scan(rt, kind, namespace):
            plan.add(kind, entity.key)
    return plan


# -- stale properties --------------------------------------------------------------


def stale_properties_of(entity: Any, model: type[ndb.Model]) -> list[str]:
    """Stored property names ``model`` does not define (``a.b`` belongs to a defined ``a``)."""
    known = {prop._name for prop in model._properties.values()}
    return [name for name in entity.properties if name.split(".", 1)[0] not in known]


def plan_stale_properties(rt: Runtime, modules: Sequence[str], namespace: str = "") -> Plan:
    """Per kind of a model in ``modules`` (Expando models excepted): stale property names."""
    plan = Plan("stale properties", namespace, target={"properties": {}})
    for kind, model in sorted(model_classes(modules).items()):
        if issubclass(model, ndb.Expando):
            continue
        stale: set[str] = set()
        for entity in scan(rt, kind, namespace):
            for name in stale_properties_of(entity, model):
                plan.add(f"{kind}.{name}", entity.key)
                stale.add(name)
        if stale:
            plan.target["properties"][kind] = sorted(stale)
    return plan


# -- missing after a sync ------------------------------------------------------------


def plan_missing(
    rt: Runtime, source: str, kind: str, namespace: str = "", filters: Sequence[Any] = ()
) -> Plan:
    """Entities of ``kind`` (in the ``filters`` scope) whose keys the dump does not contain."""
    manifest = validate_dump(source)
    if kind not in manifest.kinds:
        raise ConfigurationError(f"the dump {source!r} holds no kind {kind!r}: {manifest.kinds}")
    if namespace not in manifest.namespaces:
        raise ConfigurationError(
            f"the dump {source!r} is of namespaces {list(manifest.namespaces)!r}, not {namespace!r}"
        )
    present = {
        key_bytes(_in_target(rt, pb.key, namespace))
        for part in manifest.parts
        if kind in part.kinds
        for pb in read_part(source, part.path, part)
        if pb.key.path[-1].kind == kind and pb.key.partition_id.namespace_id == namespace
    }
    plan = Plan(f"missing {kind} rows", namespace, target={"keys": []})
    for entity in scan(rt, kind, namespace, filters):
        if key_bytes(entity.key) not in present:
            plan.add(kind, entity.key)
            plan.target["keys"].append(key_bytes(entity.key).hex())
    return plan


def _in_target(rt: Runtime, key: Any, namespace: str) -> Any:
    moved = type(key)()
    moved.CopyFrom(key)
    moved.partition_id.project_id = rt.settings.project
    moved.partition_id.database_id = rt.settings.database
    moved.partition_id.namespace_id = namespace
    return moved


# -- apply ----------------------------------------------------------------------------


def apply(rt: Runtime, plan: Plan, shards: int = 4) -> dict[str, int]:
    """Remove exactly what ``plan`` lists; returns what was removed or rewritten per label."""
    from mapper.store import Key

    if plan.empty:
        return {}
    if "kinds" in plan.target:
        return {
            kind: _run(rt, "mapper.cleanup_jobs:DeleteKind", {"kind": kind}, plan, shards)
            for kind in plan.target["kinds"]
        }
    if "properties" in plan.target:
        return {
            kind: _run(
                rt, "mapper.cleanup_jobs:StripProperties", {"kind": kind, "properties": props},
                plan, shards,
            )
            for kind, props in plan.target["properties"].items()
        }  # fmt: skip
    keys = [Key.FromString(bytes.fromhex(k)) for k in plan.target["keys"]]
    rt.store.write([], keys)
    return {label: count for label, count in plan.counts.items()}


def _run(rt: Runtime, mapper: str, params: dict[str, Any], plan: Plan, shards: int) -> int:
    spec = JobSpec(mapper=mapper, params=params, shards=shards, batch_size=500,
                   namespace=plan.namespace)  # fmt: skip
    status = start_job(rt, spec).wait()
    if status["status"] != "succeeded":
        raise ConfigurationError(
            f"cleanup job {status['id']} {status['status']}: {status['error']}"
        )
    return status["counters"].get("deleted", 0) + status["counters"].get("rewritten", 0)
