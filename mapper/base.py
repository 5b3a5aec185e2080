"""The Mapper base class: what users subclass to write a batch job."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from google.cloud import datastore, ndb
from google.cloud.datastore import helpers
from google.cloud.ndb import model as ndb_model
from google.cloud.ndb import query as ndb_query

from mapper.datastore.convert import entity_to_pb, key_to_pb
from mapper.datastore.rpc import CompositeFilter, Entity, Filter, Key
from mapper.errors import InvalidJobError

if TYPE_CHECKING:
    from mapper.engine.jobs import Job
    from mapper.engine.runtime import Runtime


class Mapper:
    """Subclass, set KIND (and FILTERS), override map(); then ``run()``.

    ``map`` returns ``(to_put, to_delete)``; the framework writes them in
    bounded batches after each batch of entities, then checkpoints.
    """

    #: An ndb.Model subclass, or a kind name (str) for raw datastore.Entity values.
    KIND: type[ndb.Model] | str | None = None
    #: Equality pairs ``(property, value)`` or ndb filter nodes.
    FILTERS: Sequence[Any] = ()

    def __init__(self, **params: Any):
        try:
            json.dumps(params, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise InvalidJobError(f"mapper params must be JSON-serialisable: {e}") from e
        self.params = params
        self._counts: dict[str, int] = {}
        #: Set by the framework while running: the job's id, the shard index and
        #: the Runtime (settings, store, dispatcher) of the task at hand.
        self.job_id: str | None = None
        self.shard: int | None = None
        self.runtime: Runtime | None = None

    # -- hooks for subclasses ---------------------------------------------------

    def map(self, entity: Any) -> tuple[Iterable[Any], Iterable[Any]] | None:
        """Process one entity; return ``(entities_to_put, keys_to_delete)``."""
        return (), ()

    def start_batch(self, entities: list[Any]) -> None:
        """Runs before ``map`` sees a batch, with its raw entity protobufs.

        For work better done once per batch than once per entity, such as one
        batched lookup of every key the batch refers to.
        """

    def end_batch(self, number: int) -> None:
        """Runs after a batch is mapped, before its writes and checkpoint.

        ``number`` counts the shard's batches from 0 and is stable under
        replay: a batch mapped again after a crash gets the same number, so a
        side output named by it (an export part file) is rewritten, not doubled.
        """

    def finish(self) -> None:
        """Runs once, after every shard has finished."""

    def split_keys(self, shards: int) -> list[Any] | None:
        """Split keys for ``shards`` ranges when the mapper knows its keys; None: scatter."""
        return None

    # -- helpers for subclasses -------------------------------------------------

    def need_runtime(self) -> Runtime:
        """The Runtime of the task at hand (set while the mapper runs inside a job)."""
        if self.runtime is None:
            raise InvalidJobError(f"{type(self).__name__} runs only inside a job")
        return self.runtime

    def count(self, name: str, value: int = 1) -> None:
        """Add to a custom counter, committed with the batch's checkpoint."""
        self._counts[name] = self._counts.get(name, 0) + value

    def run(
        self,
        *,
        shards: int = 1,
        batch_size: int = 100,
        namespace: str = "",
        exactly_once: bool = False,
        job_id: str | None = None,
        runtime: Runtime | None = None,
        wait: bool | None = None,
    ) -> Job:
        """Start this mapper as a job and return its handle.

        Without ``runtime`` one is built from the environment. With the local
        (in-process) dispatcher ``wait`` defaults to True: the slices run here.
        """
        from mapper.engine.jobs import start_job
        from mapper.engine.loading import class_spec
        from mapper.engine.runtime import runtime_from_env
        from mapper.engine.spec import JobSpec

        spec = JobSpec(
            mapper=class_spec(type(self)),
            params=self.params,
            shards=shards,
            batch_size=batch_size,
            namespace=namespace,
            exactly_once=exactly_once,
            id=job_id,
        ).validate()
        owned = runtime is None
        rt = runtime or runtime_from_env()
        try:
            job = start_job(rt, spec)
            if wait if wait is not None else rt.dispatcher.in_process:
                job.wait()
        finally:
            if owned:
                rt.close()
        return job

    # -- used by the framework --------------------------------------------------

    @classmethod
    def check_class(cls) -> None:
        """Raise InvalidJobError if the class cannot run (no or bad KIND)."""
        kind = cls.KIND
        if isinstance(kind, str):
            if not kind or kind.startswith("__"):
                raise InvalidJobError(f"{cls.__name__}.KIND {kind!r} is not a user kind")
        elif not (isinstance(kind, type) and issubclass(kind, ndb.Model)):
            raise InvalidJobError(
                f"{cls.__name__}.KIND must be an ndb.Model subclass or a kind name, got {kind!r}"
            )

    def kind_name(self) -> str:
        """The kind this mapper walks (an instance may set KIND from its params)."""
        kind = self.KIND
        if isinstance(kind, str):
            return kind
        if kind is None:
            raise InvalidJobError(f"{type(self).__name__}.KIND is not set")
        return kind._get_kind()

    def filter_pbs(self) -> list[Any]:
        """FILTERS as raw Datastore filter protobufs."""
        result = []
        for item in self.FILTERS:
            if isinstance(item, ndb_query.Node):
                node = item
            elif isinstance(item, tuple) and len(item) == 2:
                prop, value = item
                if isinstance(prop, ndb.Property):
                    node = prop == value
                elif isinstance(prop, str):
                    node = ndb_query.FilterNode(prop, "=", value)
                else:
                    raise InvalidJobError(f"filter property must be a Property or name: {prop!r}")
            else:
                raise InvalidJobError(f"FILTERS items are (property, value) pairs: {item!r}")
            result.append(_as_filter(_raw(node._to_filter())))
        return result

    def decode(self, pb: Any) -> Any:
        """Raw entity protobuf -> what ``map`` receives."""
        if isinstance(self.KIND, str):
            return helpers.entity_from_protobuf(pb)
        return ndb_model._entity_from_protobuf(pb)

    def encode(self, entity: Any) -> Any:
        """What ``map`` returned to put -> raw entity protobuf."""
        if isinstance(entity, Entity):
            return entity
        if isinstance(entity, ndb.Model):
            entity._pre_put_hook()
            entity._prepare_for_put()
            return entity_to_pb(ndb_model._entity_to_ds_entity(entity, set_key=True))
        if isinstance(entity, datastore.Entity):
            return entity_to_pb(entity)
        raise InvalidJobError(f"map() returned a non-entity to put: {entity!r}")

    def encode_key(self, key: Any) -> Any:
        """What ``map`` returned to delete -> raw key protobuf."""
        if isinstance(key, Key):
            return key
        if isinstance(key, ndb.Key):
            return key_to_pb(key._key)
        if isinstance(key, datastore.Key):
            return key_to_pb(key)
        if isinstance(key, (ndb.Model, datastore.Entity)) and key.key is not None:
            return self.encode_key(key.key)
        raise InvalidJobError(f"map() returned a non-key to delete: {key!r}")


def _as_filter(message: Any) -> Any:
    """Wrap a PropertyFilter or CompositeFilter in a Filter."""
    if isinstance(message, Filter):
        return message
    if isinstance(message, CompositeFilter):
        return Filter(composite_filter=message)
    return Filter(property_filter=message)


def _raw(message: Any) -> Any:
    """The upb message inside a proto-plus wrapper (or the message itself)."""
    return getattr(message, "_pb", message)
