"""The cleanups, in one table: each one's name, how it plans from request fields, how it applies.

The CLI (``mapper cleanup NAME``) and the admin API (``POST /_mapper/cleanup/NAME``)
both go through this table, with the same field names, so a cleanup is added
(or changed) in one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mapper.cleanup.missing import apply_missing, plan_missing
from mapper.cleanup.orphans import OrphanSpec, apply_orphans, plan_orphans
from mapper.cleanup.plan import Plan
from mapper.cleanup.stale import (
    apply_stale_kinds,
    apply_stale_properties,
    plan_stale_kinds,
    plan_stale_properties,
)
from mapper.engine.spec import check_max_rate
from mapper.engine.units import check_selection, select_namespaces
from mapper.errors import CleanupError

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime


@dataclasses.dataclass(frozen=True)
class Cleanup:
    """One cleanup: plan from request fields, apply a plan, and what to ask before applying."""

    name: str
    plan: Callable[[Runtime, Mapping[str, Any]], Plan]
    #: ``apply(rt, plan, max_rate=None)``: ``max_rate`` bounds entities deleted or
    #: rewritten per second (None: no limit).
    apply: Callable[..., dict[str, int]]
    question: str = "Delete all of the above?"
    #: Refuses bad fields before anything connects (the plan checks them again).
    check: Callable[[Mapping[str, Any]], object] = lambda fields: None


def _models(fields: Mapping[str, Any]) -> list[str]:
    raw = fields.get("models") or []
    names = raw.split(",") if isinstance(raw, str) else list(raw)
    return [name.strip() for name in names if name.strip()]


def _pairs(raw: Any, what: str) -> list[list[str]]:
    """``KIND.PROP`` strings (or ``[KIND, PROP]`` pairs) as pairs."""
    pairs = []
    for item in raw or ():
        if isinstance(item, str):
            target, dot, prop = item.partition(".")
            if not dot or not target or not prop:
                raise CleanupError(f"{what} takes KIND.PROP, got {item!r}")
            pairs.append([target, prop])
        else:
            pairs.append(list(item))
    return pairs


def _scope(raw: Any) -> list[tuple[str, Any]]:
    """The missing cleanup's scope: ``{PROP: VALUE}`` or ``[[PROP, VALUE], ...]``."""
    items: Sequence[Any] = list(raw.items()) if isinstance(raw, Mapping) else (raw or ())
    return [(prop, value) for prop, value in items]


def _orphan_spec(fields: Mapping[str, Any]) -> OrphanSpec:
    return OrphanSpec(
        kind=fields.get("kind", ""),
        properties=list(fields.get("properties") or ()),
        parents=bool(fields.get("parents")),
        cascade=_pairs(fields.get("cascade"), "--cascade"),
        action=fields.get("action") or "delete",
    ).validate()


def _check_many(fields: Mapping[str, Any]) -> None:
    given = fields.get("namespaces")
    check_selection(
        bool(fields.get("all_namespaces")),
        fields.get("namespace_prefix"),
        list(given) if isinstance(given, list | tuple) else given,
        fields.get("namespace") or "",
    )


def _where(rt: Runtime, fields: Mapping[str, Any]) -> dict[str, Any]:
    """``namespace`` and ``namespaces`` (None: that one namespace) for a stale cleanup."""
    _check_many(fields)
    given = fields.get("namespaces")
    if (
        not fields.get("all_namespaces")
        and fields.get("namespace_prefix") is None
        and (given is None)
    ):
        return {"namespace": fields.get("namespace", ""), "namespaces": None}
    names, _ = select_namespaces(
        rt.store,
        bool(fields.get("all_namespaces")),
        fields.get("namespace_prefix"),
        None if given is None else list(given),
    )
    return {"namespace": "", "namespaces": names}


def _check_orphans(fields: Mapping[str, Any]) -> OrphanSpec:
    _check_many(fields)
    return _orphan_spec(fields)


def _orphans(rt: Runtime, fields: Mapping[str, Any]) -> Plan:
    spec = _orphan_spec(fields)
    return plan_orphans(rt, spec, shards=fields.get("shards") or 4, **_where(rt, fields))


CLEANUPS: dict[str, Cleanup] = {
    c.name: c
    for c in (
        Cleanup(
            "stale-kinds",
            lambda rt, f: plan_stale_kinds(rt, _models(f), **_where(rt, f)),
            apply_stale_kinds,
            check=_check_many,
        ),
        Cleanup(
            "stale-properties",
            lambda rt, f: plan_stale_properties(rt, _models(f), **_where(rt, f)),
            apply_stale_properties,
            "Rewrite those entities without the listed properties?",
            check=_check_many,
        ),
        Cleanup(
            "orphans",
            _orphans,
            apply_orphans,
            check=_check_orphans,
        ),
        Cleanup(
            "missing",
            lambda rt, f: plan_missing(
                rt,
                f.get("source", ""),
                f.get("kind", ""),
                filters=_scope(f.get("filters")),
                dump_namespace=f.get("dump_namespace"),
                **_where(rt, f),
            ),
            apply_missing,
            check=_check_many,
        ),
    )
}


def cleanup(name: str) -> Cleanup:
    """The cleanup called ``name``, or a CleanupError naming the ones there are."""
    if name not in CLEANUPS:
        raise CleanupError(f"no cleanup {name!r}: one of {sorted(CLEANUPS)}")
    return CLEANUPS[name]


def question(name: str, fields: Mapping[str, Any]) -> str:
    """What to ask before applying (nulling references is not deleting them)."""
    if name == "orphans" and fields.get("action") == "null":
        return "Set the dangling references above to null?"
    return cleanup(name).question


def check(name: str, fields: Mapping[str, Any]) -> None:
    """Refuse bad request fields for cleanup ``name`` without touching the store."""
    cleanup(name).check(fields)


def plan(rt: Runtime, name: str, fields: Mapping[str, Any]) -> Plan:
    """Plan cleanup ``name`` from request fields (the CLI's options, the API's JSON)."""
    check(name, fields)
    return cleanup(name).plan(rt, fields)


def apply(rt: Runtime, plan: Plan, max_rate: float | None = None) -> dict[str, int]:
    """Remove exactly what ``plan`` lists; returns what was removed or rewritten per label.

    A second apply of the same plan finds nothing left to do. ``max_rate``: entities
    deleted or rewritten per second, at most (None: no limit).
    """
    check_max_rate(max_rate)
    if plan.empty:
        return {}
    return cleanup(plan.command).apply(rt, plan, max_rate=max_rate)


def load_plan(data: Any) -> Plan:
    """A plan from its JSON (shown first, applied in a later request), of a known cleanup."""
    loaded = Plan.from_json(data)
    cleanup(loaded.command)
    return loaded
