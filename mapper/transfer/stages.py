"""The jobs an import runs, one per stage, each walking the staged parts of the dump."""

from __future__ import annotations

from typing import Any

from mapper.datastore.keys import key_bytes, key_repr
from mapper.datastore.keywalk import move_partitions
from mapper.errors import PermanentSliceError
from mapper.transfer.importer import part_index, part_split_keys, start_next_stage
from mapper.transfer.remap import (
    ImportStage,
    choose_keys,
    dangling,
    parent_key,
    reference_values,
    rewrite,
)


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
        self.count("entities", len(entities))
        return entities, []


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

    def map(self, record: Any) -> tuple[list[Any], list[Any]]:
        return rewrite(self, part_index(record), list(self.part_entities(record)), self.count), []
