"""The sharded, resumable jobs that apply a cleanup plan."""

from __future__ import annotations

from typing import Any

from mapper.base import Mapper
from mapper.errors import InvalidJobError


class _RawKindMapper(Mapper):
    """A mapper over the raw entities of the kind named in its params."""

    RAW = True

    def __init__(self, **params: Any):
        super().__init__(**params)
        if not isinstance(params.get("kind"), str) or not params["kind"]:
            raise InvalidJobError(f"{type(self).__name__} needs a 'kind' param: {params}")
        self.KIND = params["kind"]


class DeleteKind(_RawKindMapper):
    """Deletes every entity of one kind (a stale kind)."""

    def map(self, entity: Any) -> tuple[list[Any], list[Any]]:
        return [], [entity.key]


class StripProperties(_RawKindMapper):
    """Rewrites the entities of one kind without the listed properties, all else unchanged."""

    def map(self, entity: Any) -> tuple[list[Any], list[Any]]:
        names = [
            name
            for name in entity.properties
            if name in self.params["properties"]
            or name.split(".", 1)[0] in self.params["properties"]
        ]
        if not names:
            return [], []
        for name in names:
            del entity.properties[name]
        self.count("rewritten")
        return [entity], []
