"""The jobs an import runs, one per stage, each walking the staged parts of the dump.

Each stage's finish() starts the next one: the chain is built here, from the
stage classes themselves.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as core_exceptions

from mapper.datastore.keys import key_bytes, key_repr
from mapper.datastore.keywalk import move_partitions, reference_values
from mapper.datastore.rpc import TRANSIENT, Key
from mapper.engine.jobs import start_job
from mapper.engine.loading import class_spec
from mapper.engine.spec import JobSpec
from mapper.errors import PermanentSliceError
from mapper.transfer import locks
from mapper.transfer.locks import lock_targets
from mapper.transfer.remap import (
    PART_KIND,
    ImportStage,
    choose_keys,
    dangling,
    own_keys,
    parent_key,
    rewrite,
)

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime

logger = logging.getLogger(__name__)


class _Stage(ImportStage):
    """A Mapper over the import's ``_MapperImportPart`` records; finish() starts the next stage."""

    def finish(self) -> None:
        start_next_stage(self.runtime, self.params)

    def split_keys(self, shards: int) -> list[Any] | None:
        """The staged part records are named ``{import}:{index}``: split them evenly."""
        return part_split_keys(self.params, shards)


class KeepMapper(_Stage):
    """``--mode keep``: the part's entities, keys moved to the target partition."""

    def map(self, record: Any) -> tuple[list[Any], list[Any]]:
        entities = list(self.part_entities(record))
        for entity in entities:
            move_partitions(entity, self.moves)
        # As the managed import does: later allocations never hand out a restored id.
        self._reserve([e.key for e in entities if e.key.path[-1].id])
        self.count("entities", len(entities))
        return entities, []

    def _reserve(self, keys: list[Any]) -> None:
        """Reserve the ids of ``keys``; an id the store refuses outright is reported and
        counted (``ids_not_reserved``), not a reason to fail the import.

        The Firestore emulator answers UNKNOWN for an id of 2^63 - 1 (measured), an id
        no allocator hands out; one such key must not stop the other 499 of its batch.
        """
        try:
            self.runtime.store.reserve_ids(keys)
        except core_exceptions.GoogleAPICallError as e:
            if isinstance(e, TRANSIENT):
                raise
            refused = keys if len(keys) == 1 else [k for k in keys if not self._reserve_one(k)]
            for key in refused:
                logger.warning("the store refused to reserve the id of %s: %s", key_repr(key), e)
            self.count("ids_not_reserved", len(refused))

    def _reserve_one(self, key: Any) -> bool:
        try:
            self.runtime.store.reserve_ids([key])
        except core_exceptions.GoogleAPICallError as e:
            if isinstance(e, TRANSIENT):
                raise
            return False
        return True


class MapKeysMapper(_Stage):
    """Remap stage 1, for one key-path depth: choose and persist every new key."""

    def map(self, record: Any) -> None:
        depth, referenced = self.params["depth"], self.params.get("referenced_kinds")
        entities = [
            e
            for e in self.part_entities(record)
            if len(e.key.path) == depth
            and (referenced is None or e.key.path[-1].kind in referenced)
        ]
        choose_keys(self, part_index(record), entities, self.count)


class CheckRefsMapper(_Stage):
    """Remap stage 2 (``--dangling fail``): fail before writing if a reference dangles."""

    def map(self, record: Any) -> None:
        entities = list(self.part_entities(record))
        _, missing = dangling(self, entities)
        if not missing:
            return
        for entity in entities:
            parent_and_refs = [v.key_value for v in reference_values(entity)]
            if len(entity.key.path) > 1:
                parent_and_refs.append(parent_key(entity.key))
            for key in parent_and_refs:
                if key_bytes(key) in missing:
                    raise PermanentSliceError(
                        f"{key_repr(entity.key)} references {key_repr(key)}, which is "
                        "neither in the dump nor in the target (--dangling fail)",
                        key=key_repr(entity.key),
                    )


class WriteRemappedMapper(_Stage):
    """Remap stage 3: the entities with every key rewritten through the key map."""

    def setup(self) -> None:
        super().setup()
        #: The batch's parts (by index) read by start_batch, each until it is mapped.
        self.parts: dict[int, list[Any]] = {}
        #: The new keys of the batch's entities.
        self.own: dict[bytes, tuple[Any, str]] = {}

    def start_batch(self, entities: list[Any]) -> None:
        """Every key of the batch's parts read back, or chosen and recorded, at once:
        one lookup and one commit a batch rather than a part."""
        self.parts = {part_index(r): list(self.part_entities(r)) for r in entities}
        self.own = own_keys(self, self.parts, self.count)

    def map(self, record: Any) -> tuple[list[Any], list[Any]]:
        entities = self.parts.pop(part_index(record), None)
        if entities is None:  # mapped again after a conflicted write: keys known, part read anew
            entities = list(self.part_entities(record))
        return rewrite(self, entities, self.own, self.count), []


#: The stages an import may run, by the name its params list them with.
STAGES: dict[str, type[_Stage]] = {
    "keep": KeepMapper,
    "map": MapKeysMapper,
    "check": CheckRefsMapper,
    "write": WriteRemappedMapper,
}


def part_key_name(import_id: str, index: int) -> str:
    """The name of a staged part record: ``{import}:{index}``."""
    return f"{import_id}:{index:06d}"


def part_index(record: Any) -> int:
    """The index of a staged part record (raw entity), from its key name."""
    return int(record.key.path[-1].name.rpartition(":")[2])


def part_split_keys(params: dict[str, Any], shards: int) -> list[Any]:
    """Keys of the staged parts at even intervals: ``shards`` ranges of equal part counts."""
    parts = params.get("parts", 0)
    keys = []
    for i in range(1, min(shards, parts)):
        key = Key()
        key.partition_id.project_id, key.partition_id.database_id = params["state_partition"]
        key.partition_id.namespace_id = params["state_namespace"]
        key.path.add(
            kind=PART_KIND,
            name=part_key_name(params["import"], i * parts // shards),
        )
        keys.append(key)
    return keys


def stage_job_spec(params: dict[str, Any], index: int) -> JobSpec:
    name, _, depth = params["stages"][index].partition(":")
    return JobSpec(
        mapper=class_spec(STAGES[name]),
        params={**params, "stage": index, "depth": int(depth or 0)},
        shards=params["shards"],
        batch_size=params["batch_size"],
        namespace=params["state_namespace"],
        id=f"{params['import']}-{index}",
        # Only the stage that writes entities has before-images to hand a hook.
        before_write=params.get("before_write") if name in ("keep", "write") else None,
        max_rate=params.get("max_rate"),
    )


def start_next_stage(rt: Runtime, params: dict[str, Any]) -> None:
    """Called by a stage's finish(): start the next stage (idempotent by job id), or,
    after the last, free the import's target locks."""
    index = params["stage"] + 1
    if index < len(params["stages"]):
        start_job(rt, stage_job_spec(params, index))
    else:
        locks.release(rt, params["import"], lock_targets(params))
