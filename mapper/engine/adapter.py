"""The adapter between a user's Mapper and raw protobufs: kind, filters, decode, encode.

The engine reads and writes raw (upb) Datastore protobufs; a user's ``map``
sees ndb models (``KIND = SomeModel``), ``datastore.Entity`` values (``KIND =
"Name"``) or, for built-in jobs that say ``RAW = True``, the protobufs
themselves. Everything that touches ndb's private conversion lives here, not on
the user's class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from google.cloud import datastore, ndb
from google.cloud.datastore import helpers
from google.cloud.ndb import model as ndb_model
from google.cloud.ndb import tasklets

from mapper.datastore.convert import entity_to_pb, key_to_pb
from mapper.datastore.keys import key_bytes
from mapper.datastore.query import filters_from
from mapper.datastore.rpc import Entity, Key, PropertyFilter
from mapper.errors import InvalidJobError

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime

#: What the engine calls on a mapper class; a class without them is no Mapper.
HOOKS = ("map", "start_batch", "end_batch", "finish", "split_keys", "bind", "take_counts")


def check_class(cls: Any, name: str) -> None:
    """Raise InvalidJobError unless ``cls`` is a Mapper class that can run.

    A class with ``RAW = True`` may set KIND per instance (from its params);
    any other needs a KIND naming a user kind or an ndb.Model subclass.
    """
    if not isinstance(cls, type) or not all(callable(getattr(cls, h, None)) for h in HOOKS):
        raise InvalidJobError(f"{name!r} is not a subclass of mapper.Mapper")
    if getattr(cls, "RAW", False):
        return
    kind = getattr(cls, "KIND", None)
    if isinstance(kind, str):
        if not kind or kind.startswith("__"):
            raise InvalidJobError(f"{cls.__name__}.KIND {kind!r} is not a user kind")
    elif not (isinstance(kind, type) and issubclass(kind, ndb.Model)):
        raise InvalidJobError(
            f"{cls.__name__}.KIND must be an ndb.Model subclass or a kind name, got {kind!r}"
        )


class Adapter:
    """One mapper instance as the engine sees it: raw protobufs in and out."""

    def __init__(self, mapper: Any):
        self.mapper = mapper
        self.raw = bool(getattr(mapper, "RAW", False))
        self.model = not self.raw and not isinstance(mapper.KIND, str)
        self.drop_undeclared = bool(getattr(mapper, "DROP_UNDECLARED", False))
        self.run_hooks = bool(getattr(mapper, "RUN_HOOKS", False))
        #: False for a mapper that only reads (export): its rate counts entities read.
        self.writes = bool(getattr(mapper, "WRITES", True))
        #: False when the class keeps the base ``map`` (which does nothing): a mapper that
        #: works on whole batches in ``start_batch`` and ``end_batch``.
        self.maps_each = _overrides_map(type(mapper))
        #: The key being mapped, so a failure can name it.
        self.current_key: Any = None
        #: ndb post-put and post-delete hooks of the batch, run once its writes committed.
        self._post_hooks: list[Callable[[], None]] = []
        #: What each entity of the batch produced (puts, deletes, its own counters).
        self._by_entity: dict[bytes, dict[str, int]] = {}
        #: Called before every call into the mapper that may have side effects
        #: (``start_batch``, each ``map``, ``end_batch``): the engine checks there that
        #: its copy of the slice still owns the shard, and renews the lease.
        self.guard: Callable[[], None] = _no_guard

    def bind(self, job_id: str, shard: int | None, runtime: Runtime) -> Adapter:
        self.mapper.bind(job_id, shard, runtime)
        return self

    def kind_name(self) -> str:
        """The kind this mapper walks (an instance may set KIND from its params)."""
        kind: Any = self.mapper.KIND
        if isinstance(kind, str) and kind:
            return kind
        if isinstance(kind, type) and issubclass(kind, ndb.Model):
            model: Any = kind
            return str(model._get_kind())
        raise InvalidJobError(f"{type(self.mapper).__name__}.KIND is not set")

    def filter_pbs(self) -> list[Any]:
        """FILTERS as raw Datastore filter protobufs."""
        return filters_from(self.mapper.FILTERS)

    def matches(self, pb: Any) -> bool:
        """True if the raw entity ``pb`` (read anew) still matches FILTERS.

        Exactly-once mode asks this of each entity it re-reads in its transaction:
        the keys came from a query that may have matched an older version.
        """
        return all(_matches(pb, f) for f in self.filter_pbs())

    def decode(self, pb: Any) -> Any:
        """Raw entity protobuf -> what ``map`` receives."""
        if self.raw:
            return pb
        if self.model:
            return ndb_model._entity_from_protobuf(pb)
        return helpers.entity_from_protobuf(pb)

    def encode(self, entity: Any, read: dict[bytes, Any] | None = None) -> Any:
        """What ``map`` returned to put -> raw entity protobuf.

        A model entity written back over one the batch read (``read``: raw
        entities by key bytes) keeps the stored properties its model does not
        declare, values and index flags exactly as read, unless the mapper says
        ``DROP_UNDECLARED = True``.
        """
        if isinstance(entity, Entity):
            return entity
        if isinstance(entity, ndb.Model):
            entity._pre_put_hook()
            entity._prepare_for_put()
            pb = entity_to_pb(ndb_model._entity_to_ds_entity(entity, set_key=True))
            stored = (read or {}).get(key_bytes(pb.key))
            if stored is not None and not isinstance(entity, ndb.Expando):
                self._keep_undeclared(type(entity), stored, pb)
            if self.run_hooks:
                self._post_hooks.append(lambda: entity._post_put_hook(_done(entity.key)))
            return pb
        if isinstance(entity, datastore.Entity):
            return entity_to_pb(entity)
        raise InvalidJobError(f"map() returned a non-entity to put: {entity!r}")

    def _keep_undeclared(self, model: Any, stored: Any, pb: Any) -> None:
        declared = {prop._name for prop in model._properties.values()}
        undeclared = [
            name
            for name in stored.properties
            if name not in pb.properties and name.split(".", 1)[0] not in declared
        ]
        if not undeclared:
            return
        if self.drop_undeclared:
            self.mapper.count("undeclared_dropped", len(undeclared))
            return
        for name in undeclared:
            pb.properties[name].CopyFrom(stored.properties[name])

    def encode_key(self, key: Any) -> Any:
        """What ``map`` returned to delete -> raw key protobuf."""
        if isinstance(key, Key):
            return key
        if isinstance(key, ndb.Key):
            if self.run_hooks:
                self._delete_hooks(key)
            return key_to_pb(key._key)
        if isinstance(key, datastore.Key):
            return key_to_pb(key)
        if isinstance(key, (ndb.Model, datastore.Entity)) and key.key is not None:
            return self.encode_key(key.key)
        raise InvalidJobError(f"map() returned a non-key to delete: {key!r}")

    def map_batch(
        self, entities: list[Any], number: int
    ) -> tuple[list[Any], list[Any], dict[str, int]]:
        """Map one batch of raw entities: (puts, deletes, counts), all raw.

        The key being mapped stays on ``current_key`` so a failure can name it;
        what each entity's ``map`` produced is kept until the next batch, so that
        :meth:`remap` can replace it.
        """
        self._post_hooks = []
        self._by_entity = {}
        self.mapper.take_counts()
        self.guard()
        self.mapper.start_batch(entities)
        started = self.mapper.take_counts()  # the batch's, not its first entity's
        puts, deletes, counts = self._map_each(entities)
        self.guard()
        self.mapper.end_batch(number)
        for more in (started, self.mapper.take_counts()):
            counts.update(_added(counts, more))
        return puts, deletes, counts

    def take_records(self) -> list[Any]:
        """Records the mapper left for its batch's checkpoint (written in its transaction)."""
        take = getattr(self.mapper, "take_records", None)
        return list(take()) if take is not None else []

    def remap(self, entities: list[Any]) -> tuple[list[Any], list[Any], dict[str, int]]:
        """Map again entities read anew (their first write met a concurrent change).

        Returns what to write instead, and the counters to add: the new mapping's
        counts less those of the mapping it replaces (``processed`` is unchanged).
        """
        replaced = [self._by_entity.pop(key_bytes(pb.key), {}) for pb in entities]
        puts, deletes, counts = self._map_each(entities)
        counts["processed"] = 0
        for old in replaced:
            for name, value in old.items():
                counts[name] = counts.get(name, 0) - value
        return puts, deletes, counts

    def _map_each(self, entities: list[Any]) -> tuple[list[Any], list[Any], dict[str, int]]:
        mapper = self.mapper
        puts: list[Any] = []
        deletes: list[Any] = []
        counts = {"processed": len(entities), "put": 0, "deleted": 0}
        if not self.maps_each:  # a mapper that works on whole batches (an export)
            return puts, deletes, counts
        read = {key_bytes(pb.key): pb for pb in entities} if self.model else None
        for pb in entities:
            self.current_key = pb.key
            before = len(puts), len(deletes)
            self.guard()
            result = mapper.map(self.decode(pb))
            if result:
                to_put, to_delete = result
                puts.extend(self.encode(e, read) for e in to_put or ())
                deletes.extend(self.encode_key(k) for k in to_delete or ())
            own = {"put": len(puts) - before[0], "deleted": len(deletes) - before[1]}
            own.update(mapper.take_counts())
            self._by_entity[key_bytes(pb.key)] = own
            counts.update(_added(counts, own))
        self.current_key = None
        return puts, deletes, counts

    def after_write(self) -> None:
        """Run the batch's ndb post-put and post-delete hooks (``RUN_HOOKS``) once it committed."""
        hooks, self._post_hooks = self._post_hooks, []
        for hook in hooks:
            hook()

    def _delete_hooks(self, key: Any) -> None:
        model = ndb.Model._kind_map.get(key.kind())
        if model is None:
            return
        model._pre_delete_hook(key)
        self._post_hooks.append(lambda: model._post_delete_hook(key, _done(None)))


def _no_guard() -> None:
    pass


def _overrides_map(cls: type) -> bool:
    """False if ``cls.map`` is ``mapper.Mapper.map`` (named: the base class imports the engine)."""
    method = getattr(cls, "map", None)
    base = (getattr(method, "__module__", None), getattr(method, "__qualname__", None))
    return base != ("mapper.base", "Mapper.map")


def _done(result: Any) -> Any:
    """A finished ndb future holding ``result``: what ndb's post hooks are given."""
    future = tasklets.Future()
    future.set_result(result)
    return future


def _added(counts: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    """The counters of ``counts`` that ``more`` adds to, with its values added."""
    return {name: counts.get(name, 0) + value for name, value in more.items()}


# -- FILTERS (equalities and a key ancestor, joined by AND) on an entity read anew ------


def _matches(pb: Any, filter_pb: Any) -> bool:
    if filter_pb.WhichOneof("filter_type") == "composite_filter":
        return all(_matches(pb, part) for part in filter_pb.composite_filter.filters)
    prop = filter_pb.property_filter
    name, wanted = prop.property.name, prop.value
    if name == "__key__":
        path, other = _path(pb.key), _path(wanted.key_value)
        if prop.op == PropertyFilter.HAS_ANCESTOR:
            return path[: len(other)] == other
        return path == other
    # As an index sees it: one element of a list is enough; an unindexed value is not there.
    return any(not v.exclude_from_indexes and _same(v, wanted) for v in _values(pb, name))


def _values(pb: Any, name: str) -> list[Any]:
    """The values of property ``name`` (dotted into embedded entities), lists flattened."""
    if name in pb.properties:
        return _elements(pb.properties[name])
    parts = name.split(".")
    for cut in range(1, len(parts)):
        head, rest = ".".join(parts[:cut]), ".".join(parts[cut:])
        if head in pb.properties:
            inner = [v.entity_value for v in _elements(pb.properties[head])]
            return [v for entity in inner for v in _values(entity, rest)]
    return []


def _elements(value: Any) -> list[Any]:
    return list(value.array_value.values) if value.HasField("array_value") else [value]


def _same(value: Any, wanted: Any) -> bool:
    which = value.WhichOneof("value_type")
    if which != wanted.WhichOneof("value_type"):
        return False
    if which == "key_value":
        return _path(value.key_value) == _path(wanted.key_value)
    mine, theirs = getattr(value, which), getattr(wanted, which)
    if hasattr(mine, "SerializeToString"):
        return bool(
            mine.SerializeToString(deterministic=True)
            == theirs.SerializeToString(deterministic=True)
        )
    return bool(mine == theirs)


def _path(key: Any) -> list[tuple[str, str, int]]:
    return [(e.kind, e.name, e.id) for e in key.path]
