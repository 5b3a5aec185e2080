"""The cleanup Plan: what a cleanup would remove, shown before anything is removed."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from mapper.datastore.keys import key_repr
from mapper.datastore.query import PARENT, STREAM_PAGE, key_filter, kind_query, results
from mapper.datastore.rpc import PropertyFilter
from mapper.errors import CleanupError

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime

#: Sample keys a plan shows per label.
SAMPLES = 5
GUARANTEE = "Nothing else will be deleted or changed."


@dataclasses.dataclass
class Plan:
    """What a cleanup would remove: counts per label, sample keys, and what apply needs.

    ``command`` names the cleanup (a name in ``mapper.cleanup.table.CLEANUPS``);
    ``cleanup`` says what it removes, for people. ``target`` is what
    :func:`mapper.cleanup.table.apply` acts on (kinds, properties, keys, the
    orphan scan), JSON-ready.
    """

    cleanup: str
    namespace: str
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    samples: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    target: dict[str, Any] = dataclasses.field(default_factory=dict)
    command: str = ""
    #: A plan over many namespaces (docs/namespaces.md): the ones it looked in
    #: (``namespace`` is then ""); its target says per kind where to act.
    namespaces: list[str] | None = None

    @property
    def empty(self) -> bool:
        return not any(self.counts.values())

    def add(self, label: str, key: Any) -> None:
        """Count one stale item under ``label``; keep its key as a sample while few."""
        self.counts[label] = self.counts.get(label, 0) + 1
        samples = self.samples.setdefault(label, [])
        if len(samples) < SAMPLES:
            samples.append(key_repr(key))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {
            "empty": self.empty,
            "guarantee": None if self.empty else GUARANTEE,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        """The plan ``to_json`` gave (a plan shown first, applied in a later request)."""
        if not isinstance(data, dict):
            raise CleanupError(f"a plan is a JSON object, got {data!r}")
        fields = {f.name for f in dataclasses.fields(cls)}
        try:
            plan = cls(**{k: v for k, v in data.items() if k in fields})
        except TypeError as e:
            raise CleanupError(f"not a cleanup plan: {e}") from e
        if not isinstance(plan.target, dict) or not isinstance(plan.counts, dict):
            raise CleanupError(f"plan target and counts must be objects: {data!r}")
        return plan

    def render(self) -> list[str]:
        """The plan as lines, in the manner of Django's remove_stale_contenttypes."""
        where = f"namespace {self.namespace!r}" if self.namespace else "the default namespace"
        if self.namespaces is not None:
            where = f"{len(self.namespaces)} namespaces"
        if self.empty:
            return [f"{self.cleanup}: nothing is stale in {where}."]
        lines = [f"{self.cleanup} in {where}:"]
        for label, count in sorted(self.counts.items()):
            lines.append(f"    - {label}: {count}")
            lines += [f"        {sample}" for sample in self.samples.get(label, [])]
        lines.append(GUARANTEE)
        return lines


def scan(
    rt: Runtime,
    kind: str,
    namespace: str,
    filters: Sequence[Any] = (),
    keys_only: bool = False,
    limit: int | None = None,
) -> Iterator[Any]:
    """Raw entities of ``kind`` in key order (all, or the first ``limit``), as one query
    stream: large pages (memory stays bounded), the next prefetched while this one is used."""
    query = kind_query(kind, filters, keys_only)
    if limit is not None:
        query.limit.value = limit
    return results(rt.store, query, namespace, page_size=STREAM_PAGE, prefetch=True)


def keys_where(rt: Runtime, kind: str, prop: str, key: Any) -> list[Any]:
    """Keys of the ``kind`` entities whose ``prop`` holds ``key`` (in ``key``'s namespace).

    ``prop`` ``__parent__`` means the ``kind`` entities under ``key`` (its
    descendants, at any depth): an ancestor query.
    """
    if prop == PARENT:
        where = key_filter(PropertyFilter.HAS_ANCESTOR, key)
    else:
        where = key_filter(PropertyFilter.EQUAL, key, name=prop)
    namespace = key.partition_id.namespace_id
    found = (e.key for e in scan(rt, kind, namespace, [where], keys_only=True))
    return [k for k in found if k != key]


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
