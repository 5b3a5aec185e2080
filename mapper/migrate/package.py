"""A migrations package: its modules in order, each one migration with a checksum of its source."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import os
import re
from typing import Any

from mapper.errors import ConfigurationError
from mapper.migrate.steps import LoadDump, Run, Step

#: A migration module's file name: four digits, an underscore, a name.
MODULE_RE = re.compile(r"^(\d{4})_([A-Za-z0-9_]+)\.py$")
#: What a migration module holds.
ATTRIBUTE = "migration"
#: A sequence holds at most this many steps: a longer one is several migrations.
MAX_STEPS = 10


@dataclasses.dataclass(frozen=True)
class Migration:
    """One module of the package: its name (``0001_fill_domain``), source checksum, steps."""

    name: str
    module: str
    checksum: str
    steps: tuple[Step, ...]

    def describe(self) -> str:
        return "; ".join(step.describe() for step in self.steps)


def load_package(package: str, namespace: str | None = None) -> list[Migration]:
    """Import every migration of ``package`` in order; raise ConfigurationError naming the
    first bad module (before anything is written).

    ``namespace``: where steps that name none run (``mapper migrate --namespace``).
    """
    try:
        pkg = importlib.import_module(package)
    except ImportError as e:
        raise ConfigurationError(f"cannot import migrations package {package!r}: {e}") from e
    paths = list(getattr(pkg, "__path__", []))
    if not paths:
        raise ConfigurationError(f"{package!r} is a module, not a package of migrations")
    found: dict[str, str] = {}
    for name in sorted(os.listdir(paths[0])):
        if not name[:1].isdigit() or not name.endswith(".py"):
            continue
        match = MODULE_RE.match(name)
        if match is None:
            raise ConfigurationError(
                f"{os.path.join(paths[0], name)!r}: a migration is named NNNN_name.py"
            )
        number = match.group(1)
        if number in found:
            raise ConfigurationError(f"two migrations numbered {number}: {found[number]}, {name}")
        found[number] = name
    return [
        _load(package, found[n][:-3], os.path.join(paths[0], found[n]), namespace)
        for n in sorted(found)
    ]


def _load(package: str, name: str, path: str, namespace: str | None) -> Migration:
    module_name = f"{package}.{name}"
    with open(path, "rb") as source:
        checksum = hashlib.sha256(source.read()).hexdigest()
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise ConfigurationError(f"migration {name}: cannot import it: {e}") from e
    if not hasattr(module, ATTRIBUTE):
        raise ConfigurationError(
            f"migration {name}: no module-level {ATTRIBUTE!r} (a Run, a LoadDump or a list)"
        )
    base = os.path.dirname(path)
    steps = tuple(_step(name, item, base).in_namespace(namespace) for item in _items(name, module))
    if not 1 <= len(steps) <= MAX_STEPS:
        raise ConfigurationError(f"migration {name}: 1 to {MAX_STEPS} steps, got {len(steps)}")
    for index, step in enumerate(steps):
        step.check(f"migration {name} step {index}")
    return Migration(name, module_name, checksum, steps)


def _items(name: str, module: Any) -> list[Any]:
    value = getattr(module, ATTRIBUTE)
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _step(name: str, item: Any, base: str) -> Step:
    if isinstance(item, Run):
        return item
    if isinstance(item, LoadDump):
        return dataclasses.replace(item, base=base)
    if isinstance(item, type) and callable(getattr(item, "map", None)):
        return Run(item)  # a Mapper subclass alone: run with the defaults
    raise ConfigurationError(
        f"migration {name}: {ATTRIBUTE} must be a Run, a LoadDump, a Mapper subclass "
        f"or a list of them, got {item!r}"
    )
