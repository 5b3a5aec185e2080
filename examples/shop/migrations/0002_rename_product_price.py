"""Products: the stored property ``price`` becomes ``price_cents`` (raw entities: the old
name is not on the model any more)."""

from __future__ import annotations

from typing import Any

from mapper import Mapper
from mapper.migrate import Run


class RenamePrice(Mapper):
    KIND = "Product"

    def map(self, product: Any) -> tuple[list[Any], list[Any]] | None:
        if "price" not in product:
            return None
        product["price_cents"] = product.pop("price")
        return [product], []


migration = Run(RenamePrice, batch_size=10)
