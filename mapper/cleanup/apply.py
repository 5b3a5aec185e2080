"""Stale cleanup: plan what went stale, show it, and delete only what the plan lists.

Each cleanup is a ``plan_*`` function that reads and changes nothing, and
:func:`apply` acts on a plan: stale kinds (kinds no model defines), stale
properties (properties a model no longer defines), orphans
(``mapper.cleanup.orphans``) and missing rows after a sync (``mapper.cleanup.missing``).
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as core_exceptions
from google.cloud import ndb

from mapper.cleanup.missing import apply_missing, plan_missing
from mapper.cleanup.plan import SAMPLES, Plan, scan
from mapper.datastore.keys import key_repr
from mapper.datastore.metadata import list_kinds
from mapper.engine.jobs import start_job
from mapper.engine.records import INTERNAL_KINDS
from mapper.engine.spec import JobSpec
from mapper.errors import CleanupError

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime

__all__ = [
    "Plan",
    "apply",
    "model_classes",
    "plan_missing",
    "plan_stale_kinds",
    "plan_stale_properties",
]


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


def plan_stale_kinds(rt: Runtime, modules: Sequence[str], namespace: str = "") -> Plan:
    """Kinds in ``namespace`` (``__kind__`` query) that no model in ``modules`` defines.

    Mapper's own kinds (``_MapperJob`` ...) and Datastore's ``__*__`` kinds are
    never stale. Needs metadata queries (not on the Firestore emulator).
    """
    defined = set(model_classes(modules))
    stale = [k for k in list_kinds(rt.store, namespace) if k not in defined | INTERNAL_KINDS]
    plan = Plan("stale kinds", namespace, target={"kinds": stale}, command="stale-kinds")
    for kind in stale:
        plan.counts[kind] = count_kind(rt, kind, namespace)
        first = itertools.islice(scan(rt, kind, namespace, keys_only=True), SAMPLES)
        plan.samples[kind] = [key_repr(e.key) for e in first]
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


def plan_stale_properties(rt: Runtime, modules: Sequence[str], namespace: str = "") -> Plan:
    """Per kind of a model in ``modules`` (Expando models excepted): stale property names.

    Reads every entity of those kinds rather than asking ``__property__``:
    that metadata lists indexed properties only, so an unindexed stale
    property (a dropped TextProperty, BlobProperty ...) would go unseen. The
    scan also works where metadata queries do not (the Firestore emulator).
    """
    plan = Plan("stale properties", namespace, target={"properties": {}},
                command="stale-properties")  # fmt: skip
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


# -- apply ----------------------------------------------------------------------------


def apply(rt: Runtime, plan: Plan, shards: int = 4) -> dict[str, int]:
    """Remove exactly what ``plan`` lists; returns what was removed or rewritten per label.

    Stale kinds and stale properties run as sharded, resumable jobs; orphans
    act on the orphans their scan recorded (with the plan's action); missing
    rows delete the planned keys that still exist. A second apply of the same
    plan finds nothing left to do.
    """
    if plan.empty:
        return {}
    if plan.command == "stale-kinds":
        return {
            kind: _run(rt, "mapper.cleanup.jobs:DeleteKind", {"kind": kind}, plan, shards)
            for kind in plan.target["kinds"]
        }
    if plan.command == "stale-properties":
        return {
            kind: _run(
                rt, "mapper.cleanup.jobs:StripProperties", {"kind": kind, "properties": props},
                plan, shards,
            )
            for kind, props in plan.target["properties"].items()
        }  # fmt: skip
    if plan.command == "orphans":
        from mapper.cleanup.orphans import apply_orphans

        return apply_orphans(rt, plan, shards=shards)
    if plan.command == "missing":
        return apply_missing(rt, plan)
    raise CleanupError(f"cannot apply a plan of unknown command {plan.command!r}")


def _run(rt: Runtime, mapper: str, params: dict[str, Any], plan: Plan, shards: int) -> int:
    spec = JobSpec(mapper=mapper, params=params, shards=shards, batch_size=500,
                   namespace=plan.namespace)  # fmt: skip
    status = start_job(rt, spec).wait()
    if status["status"] != "succeeded":
        raise CleanupError(f"cleanup job {status['id']} {status['status']}: {status['error']}")
    counters = status["counters"]
    return int(counters.get("deleted", 0) + counters.get("rewritten", 0))
