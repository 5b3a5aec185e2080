"""Audits: what a batch's writes would change, compared property by property with the store.

A dry run maps as usual and, where a batch would write, counts per kind what
would be put, changed, deleted and unchanged, and keeps a few diffs. A job with a
``before_write`` hook (a migration's ``--backup``) hands the hook the
before-images of what the batch is about to change or delete, then writes.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format

from mapper.datastore.keys import key_bytes, key_repr
from mapper.datastore.keywalk import is_complete
from mapper.errors import InvalidJobError

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime

#: Diffs a shard keeps (the job shows up to ``status.MAX_JOB_DIFFS`` of all shards').
MAX_DIFFS = 5
#: A value printed in a diff is cut to this many characters.
MAX_VALUE_CHARS = 200


@dataclasses.dataclass(frozen=True)
class BeforeWrite:
    """A batch about to be written: the hook's argument.

    ``before``: the stored entities (raw protobufs) the batch changes or deletes, by
    key bytes; ``created``: keys of puts that exist nowhere yet (a way back deletes
    them). ``batch`` is the shard's batch number, stable under replay.
    """

    job_id: str
    shard: int
    batch: int
    before: dict[bytes, Any]
    created: list[Any]
    params: dict[str, Any]


def stored_before(
    rt: Runtime, results: list[Any], puts: list[Any], deletes: list[Any]
) -> tuple[dict[bytes, Any], dict[bytes, Any]]:
    """The stored versions of what ``puts`` and ``deletes`` touch, and what the batch read.

    Both by key bytes. Entities the batch read come from the read; other complete
    keys are looked up (an incomplete key is an insert: nothing is stored under it).
    """
    read = {key_bytes(r.entity.key): r.entity for r in results}
    touched = {key_bytes(k): k for k in [*(pb.key for pb in puts), *deletes] if is_complete(k)}
    missing = [k for kb, k in touched.items() if kb not in read]
    found = rt.store.lookup(missing) if missing else {}
    stored = {kb: read.get(kb) or found.get(kb) for kb in touched}
    return {kb: pb for kb, pb in stored.items() if pb is not None}, read


def before_write(
    rt: Runtime, job: Any, shard: int, batch: int, writes: tuple[list[Any], list[Any], list[Any]]
) -> None:
    """Call the job's ``before_write`` hook with the before-images of a batch's writes.

    ``writes``: the results the batch read, its puts and its deletes. Puts equal to
    the stored entity are left out: they change nothing.
    """
    results, puts, deletes = writes
    hook = dict(job.before_write)
    call = load_callable(hook.pop("call"))
    stored, _ = stored_before(rt, results, puts, deletes)
    last_put = {key_bytes(pb.key): pb for pb in puts}
    before = {
        kb: pb for kb, pb in stored.items() if kb not in last_put or _differs(pb, last_put[kb])
    }
    created = [pb.key for kb, pb in last_put.items() if kb not in stored]
    call(rt, BeforeWrite(job.job_id, shard, batch, before, created, hook))


def audit_batch(
    rt: Runtime, results: list[Any], puts: list[Any], deletes: list[Any], want_diffs: int
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """What writing ``puts`` and ``deletes`` would do: per-kind counters and a few diffs.

    Counters ``dry_run.KIND.put|changed|deleted|unchanged``: ``put`` every entity
    the batch would put, ``changed`` those that differ from the stored entity (or
    do not exist yet), ``deleted`` every key it would delete, ``unchanged`` every
    entity it read that it would neither change nor delete.
    """
    stored, read = stored_before(rt, results, puts, deletes)
    counts: dict[str, int] = {}
    diffs: list[dict[str, Any]] = []
    last_put = {key_bytes(pb.key): pb for pb in puts}
    deleted = {key_bytes(k) for k in deletes}

    def add(kind: str, what: str) -> None:
        name = f"dry_run.{kind}.{what}"
        counts[name] = counts.get(name, 0) + 1

    def diff(key: Any, before: Any, after: Any) -> None:
        if len(diffs) < want_diffs:
            diffs.append(describe(key, before, after))

    for pb in puts:
        kind, kb = _kind(pb.key), key_bytes(pb.key)
        add(kind, "put")
        before = stored.get(kb)
        if before is None or _differs(before, pb):
            add(kind, "changed")
            diff(pb.key, before, pb)
        elif kb in read:
            add(kind, "unchanged")
    for key in deletes:
        add(_kind(key), "deleted")
        diff(key, stored.get(key_bytes(key)), None)
    for kb, pb in read.items():
        if kb not in last_put and kb not in deleted:
            add(_kind(pb.key), "unchanged")
    return counts, diffs


def describe(key: Any, before: Any, after: Any) -> dict[str, Any]:
    """One entity's diff, property by property: ``{name: [before, after]}`` (None: absent)."""
    change = "deleted" if after is None else "inserted" if before is None else "changed"
    old = dict(before.properties) if before is not None else {}
    new = dict(after.properties) if after is not None else {}
    properties = {
        name: [_printed(old.get(name)), _printed(new.get(name))]
        for name in sorted(set(old) | set(new))
        if name not in old or name not in new or _value_bytes(old[name]) != _value_bytes(new[name])
    }
    return {"key": key_repr(key), "change": change, "properties": properties}


def _differs(before: Any, after: Any) -> bool:
    if set(before.properties) != set(after.properties):
        return True
    return any(
        _value_bytes(before.properties[name]) != _value_bytes(after.properties[name])
        for name in before.properties
    )


def _value_bytes(value: Any) -> bytes:
    return bytes(value.SerializeToString(deterministic=True))


def _printed(value: Any) -> Any:
    """A value as JSON-ready data: scalars as themselves, anything else in protobuf JSON."""
    if value is None:
        return None
    which = value.WhichOneof("value_type")
    if which in ("integer_value", "double_value", "boolean_value", "string_value"):
        scalar = getattr(value, which)
        if not isinstance(scalar, str) or len(scalar) <= MAX_VALUE_CHARS:
            return scalar
        return scalar[: MAX_VALUE_CHARS - 3] + "..."
    if which == "null_value":
        return None
    data = json_format.MessageToDict(value)
    data.pop("excludeFromIndexes", None)
    data.pop("meaning", None)
    text = str(next(iter(data.values()))) if len(data) == 1 else str(data)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def _kind(key: Any) -> str:
    return str(key.path[-1].kind)


def audit_summary(counters: dict[str, int]) -> dict[str, Any]:
    """A dry run's counters ``dry_run.KIND.WHAT`` as ``{"kinds": {KIND: {WHAT: n}}}``."""
    kinds: dict[str, dict[str, int]] = {}
    for name, value in counters.items():
        if name.startswith("dry_run."):
            kind, _, what = name[len("dry_run.") :].rpartition(".")
            row = kinds.setdefault(kind, {"put": 0, "changed": 0, "deleted": 0, "unchanged": 0})
            row[what] = row.get(what, 0) + value
    return {"kinds": dict(sorted(kinds.items()))}


def load_callable(spec: str) -> Callable[..., Any]:
    """Import ``module:function`` (a job's ``before_write`` hook)."""
    module_name, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as e:
        raise InvalidJobError(f"cannot load before_write hook {spec!r}: {e}") from e
    if not callable(fn):
        raise InvalidJobError(f"before_write hook {spec!r} is not callable")
    return fn  # type: ignore[no-any-return]
