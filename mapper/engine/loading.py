"""Resolving ``module:Class`` names to mapper classes, old names included."""

from __future__ import annotations

import importlib
from typing import Any

from mapper.engine.adapter import check_class
from mapper.errors import InvalidJobError

#: Names that released versions stored in job records, and where each class lives now.
#: A job started before an upgrade keeps running after it; never remove an entry.
ALIASES = {
    "mapper.export:ExportMapper": "mapper.transfer.export:ExportMapper",
    "mapper.import_stages:KeepMapper": "mapper.transfer.stages:KeepMapper",
    "mapper.import_stages:MapKeysMapper": "mapper.transfer.stages:MapKeysMapper",
    "mapper.import_stages:CheckRefsMapper": "mapper.transfer.stages:CheckRefsMapper",
    "mapper.import_stages:WriteRemappedMapper": "mapper.transfer.stages:WriteRemappedMapper",
    "mapper.cleanup_jobs:DeleteKind": "mapper.cleanup.jobs:DeleteKind",
    "mapper.cleanup_jobs:StripProperties": "mapper.cleanup.jobs:StripProperties",
    "mapper.orphans:OrphanMapper": "mapper.cleanup.orphans:OrphanMapper",
    "mapper.orphans:OrphanApplyMapper": "mapper.cleanup.orphans:OrphanApplyMapper",
}


def load_mapper_class(spec: str) -> Any:
    """Import ``module:Class`` (or an old name of it) and check it is a runnable Mapper."""
    name = ALIASES.get(spec, spec)
    module_name, sep, class_name = name.partition(":")
    if not sep or not module_name or not class_name:
        raise InvalidJobError(f"mapper must be 'module:Class', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise InvalidJobError(f"cannot import module {module_name!r} for {spec!r}: {e}") from e
    cls = getattr(module, class_name, None)
    if cls is None:
        raise InvalidJobError(f"module {module_name!r} has no attribute {class_name!r}")
    check_class(cls, spec)
    return cls


def class_spec(cls: type) -> str:
    """The name a job record stores for ``cls``: ``module:Class``."""
    return f"{cls.__module__}:{cls.__qualname__}"
