"""The Mapper base class: what users subclass to write a batch job, and nothing else."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from google.cloud import ndb

from mapper.engine.jobs import Job, start_job
from mapper.engine.runtime import Runtime, runtime_from_env
from mapper.engine.spec import JobSpec, spec_for
from mapper.errors import InvalidJobError


class Mapper:
    """Subclass, set KIND (and FILTERS), override map(); then ``run()``.

    ``map`` returns ``(to_put, to_delete)``; the framework writes them in
    bounded batches after each batch of entities, then checkpoints.
    """

    #: An ndb.Model subclass, or a kind name (str) for raw datastore.Entity values.
    KIND: type[ndb.Model] | str | None = None
    #: Equality pairs ``(property, value)`` or ndb filter nodes.
    FILTERS: Sequence[Any] = ()
    #: True: ``map`` gets raw ``google.datastore.v1.Entity`` protobufs, and KIND
    #: may be set per instance (the built-in jobs take their kind from params).
    RAW = False
    #: A model mapper writes back the stored properties its model does not declare,
    #: exactly as read. True: drop them instead (counted as ``undeclared_dropped``).
    DROP_UNDECLARED = False
    #: ndb hooks: ``_pre_put_hook`` always runs. True: ``_post_put_hook``,
    #: ``_pre_delete_hook`` and ``_post_delete_hook`` run too (post hooks once the
    #: batch's writes committed).
    RUN_HOOKS = False
    #: Each write of an entity the batch read is conflict-checked against the version
    #: read (an app write in between is never lost: the entity is read and mapped
    #: again). True: write blind, for offline jobs with no other writer.
    BLIND_WRITES = False
    #: False for a mapper that only reads (an export): ``max_rate`` then counts
    #: entities read, and ramp-up (which is for write load) is off unless asked for.
    WRITES = True
    #: In a job over many namespaces, True: a batch never runs from one work unit into
    #: the next, so its entities share a namespace (an export's part files are per
    #: namespace). False: a batch fills up across tenants (fewer writes and checkpoints).
    ONE_NAMESPACE_A_BATCH = False

    def __init__(self, **params: Any):
        try:
            json.dumps(params, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise InvalidJobError(f"mapper params must be JSON-serialisable: {e}") from e
        self.params = params
        #: While the mapper runs inside a job: the job's id and the shard index.
        self.job_id: str | None = None
        self.shard: int | None = None
        self._runtime: Runtime | None = None
        self._counts: dict[str, int] = {}

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

    @staticmethod
    def namespace_of(entity: Any) -> str:
        """The namespace ``entity`` is in (a model or a raw protobuf): in a job over many
        namespaces, a key ``map`` makes for a related entity belongs there too."""
        key = entity.key
        if isinstance(key, ndb.Key):
            return key.namespace() or ""
        return str(key.partition_id.namespace_id)

    def split_keys(self, shards: int) -> list[Any] | None:
        """Split keys for ``shards`` ranges when the mapper knows its keys; None: scatter."""
        return None

    # -- helpers for subclasses -------------------------------------------------

    @property
    def runtime(self) -> Runtime:
        """The Runtime (settings, store, dispatcher) of the job this mapper runs in."""
        if self._runtime is None:
            raise InvalidJobError(f"{type(self).__name__}.runtime exists only inside a job")
        return self._runtime

    def count(self, name: str, value: int = 1) -> None:
        """Add to a custom counter, committed with the batch's checkpoint."""
        self._counts[name] = self._counts.get(name, 0) + value

    def run(
        self,
        *,
        shards: int = JobSpec.shards,
        batch_size: int = JobSpec.batch_size,
        namespace: str = "",
        exactly_once: bool = False,
        job_id: str | None = None,
        runtime: Runtime | None = None,
        wait: bool | None = None,
        max_rate: float | None = None,
        ramp_up: bool | None = None,
        all_namespaces: bool = False,
        namespace_prefix: str | None = None,
        namespaces: list[str] | None = None,
        namespace_counters: bool = False,
    ) -> Job:
        """Start this mapper as a job and return its handle.

        Without ``runtime`` one is built from the environment. With the local
        (in-process) dispatcher ``wait`` defaults to True: the slices run here.
        ``max_rate`` bounds the whole job's entities written and deleted per second
        (read, for a mapper with ``WRITES = False``); ``ramp_up`` turns the 500/50/5
        ramp on or off (default: the settings', see docs/throttling.md).

        ``all_namespaces``, ``namespace_prefix`` or ``namespaces`` (a list) make it
        one job over many namespaces (docs/namespaces.md); ``namespace_counters``
        breaks its counters down per namespace.
        """
        spec = spec_for(
            self,
            shards=shards,
            batch_size=batch_size,
            namespace=namespace,
            exactly_once=exactly_once,
            job_id=job_id,
            max_rate=max_rate,
            ramp_up=ramp_up,
            all_namespaces=all_namespaces,
            namespace_prefix=namespace_prefix,
            namespaces=namespaces,
            namespace_counters=namespace_counters,
        )
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

    # -- called by the engine ---------------------------------------------------

    def bind(self, job_id: str, shard: int | None, runtime: Runtime) -> None:
        """Attach the job this instance runs in (the engine calls it before any hook)."""
        self.job_id, self.shard, self._runtime = job_id, shard, runtime

    def take_counts(self) -> dict[str, int]:
        """The custom counters since the last call, and reset them."""
        counts, self._counts = self._counts, {}
        return counts
