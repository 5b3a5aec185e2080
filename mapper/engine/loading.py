"""Resolving ``module:Class`` strings to mapper classes."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from mapper.errors import InvalidJobError

if TYPE_CHECKING:
    from mapper.base import Mapper


def load_mapper_class(spec: str) -> type[Mapper]:
    """Import ``module:Class`` and check it is a Mapper subclass with a KIND."""
    from mapper.base import Mapper

    module_name, sep, class_name = spec.partition(":")
    if not sep or not module_name or not class_name:
        raise InvalidJobError(f"mapper must be 'module:Class', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise InvalidJobError(f"cannot import module {module_name!r} for {spec!r}: {e}") from e
    cls = getattr(module, class_name, None)
    if cls is None:
        raise InvalidJobError(f"module {module_name!r} has no attribute {class_name!r}")
    if not isinstance(cls, type) or not issubclass(cls, Mapper):
        raise InvalidJobError(f"{spec!r} is not a subclass of mapper.Mapper")
    cls.check_class()
    return cls


def class_spec(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"
