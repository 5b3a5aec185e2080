"""Models that declare fewer properties than are stored, and mappers over them."""

from __future__ import annotations

from typing import Any

from google.cloud import ndb

from mapper import Mapper

#: (hook, key id) for every ndb hook that ran, in order.
HOOKS: list[tuple[str, Any]] = []


class Legacy(ndb.Model):
    """Declares two of the properties its stored entities have."""

    name = ndb.StringProperty()
    touched = ndb.IntegerProperty(default=0)


class TouchLegacy(Mapper):
    KIND = Legacy

    def map(self, entity: Legacy) -> tuple[list[Any], list[Any]]:
        entity.touched = (entity.touched or 0) + 1
        return [entity], []


class TouchLegacyDroppingUndeclared(TouchLegacy):
    DROP_UNDECLARED = True


class Hooked(ndb.Model):
    n = ndb.IntegerProperty()

    def _pre_put_hook(self) -> None:
        HOOKS.append(("pre_put", self.key.id()))

    def _post_put_hook(self, future: Any) -> None:
        HOOKS.append(("post_put", future.result().id()))

    @classmethod
    def _pre_delete_hook(cls, key: ndb.Key) -> None:
        HOOKS.append(("pre_delete", key.id()))

    @classmethod
    def _post_delete_hook(cls, key: ndb.Key, future: Any) -> None:
        HOOKS.append(("post_delete", key.id()))


class PutOddDeleteEven(Mapper):
    KIND = Hooked

    def map(self, entity: Hooked) -> tuple[list[Any], list[Any]]:
        if entity.n % 2:
            entity.n += 100
            return [entity], []
        return [], [entity.key]


class PutOddDeleteEvenWithHooks(PutOddDeleteEven):
    RUN_HOOKS = True


class Counter(ndb.Model):
    """The app increments ``app`` in transactions while a job increments ``touched``."""

    app = ndb.IntegerProperty(default=0)
    touched = ndb.IntegerProperty(default=0)


class TouchCounter(Mapper):
    KIND = Counter

    def map(self, entity: Counter) -> tuple[list[Any], list[Any]]:
        entity.touched += 1
        return [entity], []
