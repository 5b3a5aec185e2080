"""Stale kinds (no model defines them) and stale properties (a model no longer does).

Each ``plan_*`` function reads and changes nothing; its apply runs sharded,
resumable jobs (``mapper.cleanup.jobs``) over exactly what the plan lists.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as core_exceptions
from google.cloud import ndb

from mapper.cleanup.jobs import DeleteKind, StripProperties
from mapper.cleanup.plan import SAMPLES, Plan, scan
from mapper.datastore.keys import key_repr
from mapper.datastore.metadata import list_kinds
from mapper.engine.jobs import start_job
from mapper.engine.loading import class_spec
from mapper.engine.records import INTERNAL_KINDS, JobStatus
from mapper.engine.spec import JobSpec
from mapper.errors import CleanupError

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime


def model_classes(modules: Sequence[str]) -> dict[str, type[ndb.Model]]:
    """Kind name -> model class for every ndb.Model subclass defined in ``modules``."""
    if isinstance(modules, str) or not modules:
        raise CleanupError(f"name the models modules as a list, got {modules!r}")
    found: dict[str, type[ndb.Model]] = {}
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            raise CleanupError(f"cannot import models module {name!r}: {e}") from e
        for value in vars(module).values():
            is_model = isinstance(value, type) and issubclass(value, ndb.Model)
            if is_model and value.__module__ == module.__name__:
                found[value._get_kind()] = value
    if not found:
        raise CleanupError(f"no ndb.Model classes in {list(modules)!r}")
    return found


# -- stale kinds ---------------------------------------------------------------------


def plan_stale_kinds(
    rt: Runtime, modules: Sequence[str], namespace: str = "", namespaces: list[str] | None = None
) -> Plan:
    """Kinds in ``namespace`` (``__kind__`` query) that no model in ``modules`` defines;
    with ``namespaces``, in each of them (the plan says per kind where).

    Mapper's own kinds (``_MapperJob`` ...) and Datastore's ``__*__`` kinds are
    never stale. Needs metadata queries (not on the Firestore emulator).
    """
    defined = set(model_classes(modules))
    plan = Plan("stale kinds", namespace, target={"kinds": []}, command="stale-kinds",
                namespaces=namespaces)  # fmt: skip
    where: dict[str, list[str]] = {}
    for each in namespaces if namespaces is not None else [namespace]:
        for kind in list_kinds(rt.store, each):
            if kind in defined | INTERNAL_KINDS:
                continue
            where.setdefault(kind, []).append(each)
            plan.counts[kind] = plan.counts.get(kind, 0) + count_kind(rt, kind, each)
            room = SAMPLES - len(plan.samples.get(kind, []))
            if room > 0:
                first = scan(rt, kind, each, keys_only=True, limit=room)
                plan.samples.setdefault(kind, []).extend(key_repr(e.key) for e in first)
    plan.target["kinds"] = sorted(where)
    if namespaces is not None:
        plan.target["namespaces"] = where
    return plan


def count_kind(rt: Runtime, kind: str, namespace: str) -> int:
    """COUNT(*) of ``kind``; a keys-only scan where aggregations are missing (the emulator)."""
    try:
        return rt.store.count(kind, [], namespace)
    except core_exceptions.MethodNotImplemented:
        return sum(1 for _ in scan(rt, kind, namespace, keys_only=True))


# -- stale properties --------------------------------------------------------------


def stale_properties_of(entity: Any, model: type[ndb.Model]) -> list[str]:
    """Stored property names ``model`` does not define (``a.b`` belongs to a defined ``a``)."""
    known = {prop._name for prop in model._properties.values()}
    return [name for name in entity.properties if name.split(".", 1)[0] not in known]


def plan_stale_properties(
    rt: Runtime, modules: Sequence[str], namespace: str = "", namespaces: list[str] | None = None
) -> Plan:
    """Per kind of a model in ``modules`` (Expando models excepted): stale property names,
    in ``namespace`` or in each of ``namespaces`` (the plan says per kind where).

    Reads every entity of those kinds rather than asking ``__property__``:
    that metadata lists indexed properties only, so an unindexed stale
    property (a dropped TextProperty, BlobProperty ...) would go unseen. The
    scan also works where metadata queries do not (the Firestore emulator).
    """
    plan = Plan("stale properties", namespace, target={"properties": {}},
                command="stale-properties", namespaces=namespaces)  # fmt: skip
    where: dict[str, list[str]] = {}
    for kind, model in sorted(model_classes(modules).items()):
        if issubclass(model, ndb.Expando):
            continue
        stale: set[str] = set()
        for each in namespaces if namespaces is not None else [namespace]:
            seen = False
            for entity in scan(rt, kind, each):
                for name in stale_properties_of(entity, model):
                    plan.add(f"{kind}.{name}", entity.key)
                    stale.add(name)
                    seen = True
            if seen:
                where.setdefault(kind, []).append(each)
        if stale:
            plan.target["properties"][kind] = sorted(stale)
    if namespaces is not None:
        plan.target["namespaces"] = where
    return plan


def apply_stale_kinds(
    rt: Runtime, plan: Plan, shards: int = 4, max_rate: float | None = None
) -> dict[str, int]:
    """Delete every entity of each stale kind (one kind after another); {kind: deleted}."""
    return {
        kind: _run(rt, DeleteKind, {"kind": kind}, plan, shards, max_rate)
        for kind in plan.target["kinds"]
    }


def apply_stale_properties(
    rt: Runtime, plan: Plan, shards: int = 4, max_rate: float | None = None
) -> dict[str, int]:
    """Rewrite the entities of each kind without its stale properties; {kind: rewritten}."""
    return {
        kind: _run(rt, StripProperties, {"kind": kind, "properties": props}, plan, shards, max_rate)
        for kind, props in plan.target["properties"].items()
    }


def _run(
    rt: Runtime,
    mapper: type,
    params: dict[str, Any],
    plan: Plan,
    shards: int,
    max_rate: float | None = None,
) -> int:
    """One job over the kind: in the plan's namespace, or over the namespaces the plan
    found it stale in (one job over many: mapper.engine.units)."""
    where: list[str] | None = (plan.target.get("namespaces") or {}).get(params["kind"])
    many = plan.namespaces is not None and where is not None
    spec = JobSpec(mapper=class_spec(mapper), params=params, shards=shards, batch_size=500,
                   namespace="" if many else plan.namespace,
                   namespaces=list(where or ()) if many else None, max_rate=max_rate)  # fmt: skip
    info = start_job(rt, spec).wait()
    if info.status != JobStatus.SUCCEEDED:
        raise CleanupError(f"cleanup job {info.id} {info.status.value}: {info.error}")
    return int(info.counters.get("deleted", 0) + info.counters.get("rewritten", 0))
