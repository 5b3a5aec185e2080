"""Missing rows: after a sync import, the entities in scope that the dump no longer holds.

feincms3-data's ``delete_missing``: the dump is the truth for the scope (a
kind, optionally narrowed by equality filters); whatever the target holds in
that scope under a key the dump does not contain was deleted at the source.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mapper.cleanup.plan import Plan, chunks, scan
from mapper.datastore.keys import key_bytes
from mapper.datastore.query import filters_from
from mapper.datastore.rpc import MAX_LOOKUP_KEYS, Key
from mapper.dump.sources import read_manifest, resolve_source, validate_dump
from mapper.engine.throttle import BATCH_SECONDS, Pacer
from mapper.errors import CleanupError

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime


def scope_filters(filters: Sequence[Any]) -> list[Any]:
    """Filter protobufs for ``filters``: ``(PROP, VALUE)`` pairs or Filter protobufs."""
    return filters_from(filters)


def plan_missing(
    rt: Runtime,
    source: str,
    kind: str,
    namespace: str = "",
    filters: Sequence[Any] = (),
    dump_namespace: str | None = None,
    namespaces: list[str] | None = None,
) -> Plan:
    """Entities of ``kind`` in scope whose keys the (complete) dump at ``source`` lacks;
    with ``namespaces``, in each of them (a multi-tenant dump, each tenant its own).

    Args:
        source: the dump directory (local path or ``gs://``) the sync imported.
        kind: the kind the sync covers.
        namespace: the target namespace to clean.
        filters: the scope within ``kind``: ``(PROP, VALUE)`` pairs or Filter protobufs.
        dump_namespace: the dump's namespace, when it was imported into another one.

    Raises:
        DumpFormatError: the dump is incomplete (no manifest) or corrupt.
        CleanupError: the dump does not cover the scope (kind, namespace, filters).
    """
    if not isinstance(kind, str) or not kind or kind.startswith("__"):
        raise CleanupError(f"missing needs a user kind (--kind), got {kind!r}")
    if namespaces is not None and dump_namespace is not None:
        raise CleanupError("--dump-namespace moves one namespace; with many, each is its own")
    scope = scope_filters(filters)
    source = resolve_source(source)
    # Target namespace -> the dump's namespace that is the truth for it.
    sources = (
        {n: n for n in namespaces}
        if namespaces is not None
        else {namespace: namespace if dump_namespace is None else dump_namespace}
    )
    manifest = read_manifest(source)  # a managed export's is built from its files: once
    for source_ns in sources.values():
        check_covers(manifest, source, kind, source_ns, scope)
    targets = {source_ns: target for target, source_ns in sources.items()}
    present: set[bytes] = set()

    def collect(pb: Any, where: str, lineno: int | None) -> None:
        target = targets.get(pb.key.partition_id.namespace_id)
        if pb.key.path[-1].kind == kind and target is not None:
            present.add(key_bytes(_in_target(rt, pb.key, target)))

    validate_dump(source, check=collect, manifest=manifest)
    plan = Plan(f"missing {kind} rows", namespace if namespaces is None else "",
                target={"kind": kind, "keys": []}, command="missing",
                namespaces=namespaces)  # fmt: skip
    for target in sources:
        for entity in scan(rt, kind, target, scope, keys_only=True):
            if key_bytes(entity.key) not in present:
                plan.add(kind, entity.key)
                plan.target["keys"].append(key_bytes(entity.key).hex())
    return plan


def check_covers(
    manifest: Any, source: str, kind: str, namespace: str, scope: Sequence[Any]
) -> None:
    """Refuse a dump that does not hold the whole scope: deleting by it would be wrong."""
    if kind not in manifest.kinds:
        raise CleanupError(f"the dump {source!r} holds no kind {kind!r}: {list(manifest.kinds)}")
    if namespace not in manifest.namespaces:
        raise CleanupError(
            f"the dump {source!r} is of namespaces {list(manifest.namespaces)!r}, not {namespace!r}"
        )
    exported = manifest.metadata.get("filters") or []
    wanted = {f.SerializeToString(deterministic=True) for f in scope}
    for pair, pb in zip(exported, scope_filters(exported), strict=True):
        if pb.SerializeToString(deterministic=True) not in wanted:
            raise CleanupError(
                f"the dump {source!r} was exported with the filter {pair!r}: entities outside "
                "it are not in the dump, so the scope must include it (--filter PROP=VALUE)"
            )


def apply_missing(rt: Runtime, plan: Plan, max_rate: float | None = None) -> dict[str, int]:
    """Delete the planned keys that still exist, at most ``max_rate`` a second;
    returns {kind: deleted}."""
    keys = [Key.FromString(bytes.fromhex(k)) for k in plan.target["keys"]]
    deleted = 0
    pacer = Pacer()
    size = MAX_LOOKUP_KEYS if max_rate is None else max(1, int(max_rate * BATCH_SECONDS))
    for chunk in chunks(keys, min(MAX_LOOKUP_KEYS, size)):
        existing = list(rt.store.lookup(chunk).keys())
        if max_rate is not None and existing:
            time.sleep(pacer.reserve(len(existing), max_rate))
        rt.store.write([], [Key.FromString(k) for k in existing])
        deleted += len(existing)
    return {plan.target["kind"]: deleted}


def _in_target(rt: Runtime, key: Any, namespace: str) -> Any:
    moved = type(key)()
    moved.CopyFrom(key)
    moved.partition_id.project_id = rt.settings.project
    moved.partition_id.database_id = rt.settings.database
    moved.partition_id.namespace_id = namespace
    return moved
