"""The adapter between a mapper and the engine."""

from __future__ import annotations

from mapper import Mapper
from mapper.engine.adapter import Adapter


def test_adapter_maps_each_entity_only_for_a_mapper_that_overrides_map():
    class Batches(Mapper):
        KIND = "Item"

    class Each(Batches):
        def map(self, entity):
            return None

    class EachAgain(Each):
        pass

    assert not Adapter(Batches()).maps_each
    assert Adapter(Each()).maps_each
    assert Adapter(EachAgain()).maps_each
