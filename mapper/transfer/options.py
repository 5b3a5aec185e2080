"""Options of an import with key remap, parsed from the CLI's strings and checked up front."""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from collections.abc import Iterable
from typing import Any

from mapper.datastore.convert import set_value
from mapper.errors import ConfigurationError

DANGLING = ("keep", "null", "fail")
ON_CONFLICT = ("skip", "overwrite", "fail")
_NAME = r"[^\s.=,]+"


@dataclasses.dataclass(frozen=True)
class RemapOptions:
    """How a dump's keys become new keys, and how its properties drift to the target schema."""

    #: kind -> property names whose values identify an entity (match = reuse the target's key).
    natural_keys: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    #: None keeps key names; a string prefixes every name with it.
    rename_names: str | None = None
    dangling: str = "keep"
    on_conflict: str = "skip"
    #: [kind, property, spec]: spec {"value": v} | {"now": iso} | {"copy": other}.
    defaults: list[list[Any]] = dataclasses.field(default_factory=list)
    #: [kind, old, new]
    renames: list[list[str]] = dataclasses.field(default_factory=list)
    #: [kind, property]
    drops: list[list[str]] = dataclasses.field(default_factory=list)

    def validate(self) -> RemapOptions:
        if self.dangling not in DANGLING:
            raise ConfigurationError(f"--dangling must be one of {DANGLING}, got {self.dangling!r}")
        if self.on_conflict not in ON_CONFLICT:
            raise ConfigurationError(
                f"--on-conflict must be one of {ON_CONFLICT}, got {self.on_conflict!r}"
            )
        if self.rename_names is not None and not self.rename_names:
            raise ConfigurationError("--rename-names needs a non-empty PREFIX")
        for kind, props in self.natural_keys.items():
            if not kind or not props or not all(props):
                raise ConfigurationError(f"--natural-key {kind}={props!r} names no property")
        return self

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> RemapOptions:
        return cls(**obj).validate()


def parse_options(
    *,
    natural_keys: Iterable[str] = (),
    rename_names: str | None = None,
    dangling: str = "keep",
    on_conflict: str = "skip",
    defaults: Iterable[str] = (),
    renames: Iterable[str] = (),
    drops: Iterable[str] = (),
    now: datetime.datetime | None = None,
) -> RemapOptions:
    """Options from the CLI's spellings (``KIND=PROP,PROP``, ``KIND.PROP=VALUE`` ...)."""
    moment = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return RemapOptions(
        natural_keys=dict(_natural_key(raw) for raw in natural_keys),
        rename_names=rename_names,
        dangling=dangling,
        on_conflict=on_conflict,
        defaults=[_default(raw, moment) for raw in defaults],
        renames=[_rename(raw) for raw in renames],
        drops=[_drop(raw) for raw in drops],
    ).validate()


def _natural_key(raw: str) -> tuple[str, list[str]]:
    match = re.fullmatch(rf"({_NAME})=({_NAME}(?:,{_NAME})*)", raw)
    if not match:
        raise ConfigurationError(f"--natural-key expects KIND=PROP[,PROP], got {raw!r}")
    return match[1], match[2].split(",")


def _default(raw: str, moment: str) -> list[Any]:
    match = re.fullmatch(rf"({_NAME})\.({_NAME})=(.*)", raw, re.DOTALL)
    if not match:
        raise ConfigurationError(f"--default expects KIND.PROP=VALUE|now|@OTHER, got {raw!r}")
    kind, prop, value = match[1], match[2], match[3]
    if value == "now":
        return [kind, prop, {"now": moment}]
    if value.startswith("@") and len(value) > 1:
        return [kind, prop, {"copy": value[1:]}]
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    if isinstance(parsed, (dict, list)):
        raise ConfigurationError(f"--default value must be a scalar, got {value!r}")
    return [kind, prop, {"value": parsed}]


def _rename(raw: str) -> list[str]:
    match = re.fullmatch(rf"({_NAME})\.({_NAME})=({_NAME})", raw)
    if not match:
        raise ConfigurationError(f"--rename expects KIND.OLD=NEW, got {raw!r}")
    return [match[1], match[2], match[3]]


def _drop(raw: str) -> list[str]:
    match = re.fullmatch(rf"({_NAME})\.({_NAME})", raw)
    if not match:
        raise ConfigurationError(f"--drop expects KIND.PROP, got {raw!r}")
    return [match[1], match[2]]


def apply_schema(entity: Any, options: RemapOptions) -> None:
    """Renames, then drops, then defaults for missing properties, in place.

    A rename or drop of ``P`` also covers ``P.x`` (a StructuredProperty's parts).
    """
    kind = entity.key.path[-1].kind
    props = entity.properties
    for k, old, new in options.renames:
        if k == kind:
            for name in _with_subproperties(props, old):
                props[new + name[len(old) :]].CopyFrom(props[name])
                del props[name]
    for k, prop in options.drops:
        if k == kind:
            for name in _with_subproperties(props, prop):
                del props[name]
    for k, prop, spec in options.defaults:
        if k != kind or prop in props:
            continue
        if "copy" in spec:
            if spec["copy"] in props:
                props[prop].CopyFrom(props[spec["copy"]])
        elif "now" in spec:
            stamp = datetime.datetime.fromisoformat(spec["now"].replace("Z", "+00:00"))
            props[prop].timestamp_value.FromDatetime(stamp)
        else:
            set_value(props[prop], spec["value"])


def _with_subproperties(props: Any, name: str) -> list[str]:
    """``name`` and the ``name.sub`` properties ndb stores a StructuredProperty as."""
    return [p for p in props if p == name or p.startswith(name + ".")]
