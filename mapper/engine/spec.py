"""JobSpec: what to run, the start message of a job, validated before any write."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any

from mapper.dispatch.messages import check_int, check_job_id
from mapper.engine.loading import class_spec
from mapper.engine.units import check_selection
from mapper.errors import InvalidJobError

_SPEC_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

#: The largest batch of a job that writes: one commit holds 500 mutations.
MAX_BATCH_SIZE = 500
#: The largest batch of a job whose mapper writes nothing (``WRITES = False``, not
#: exactly-once): an export, whose batch is several part files under one checkpoint.
MAX_READ_BATCH_SIZE = 5_000
MAX_SHARDS = 256
#: The most namespaces one job names (the list is recorded on the job).
MAX_NAMESPACES = 20_000


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """What to run: the start message of a job."""

    mapper: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    shards: int = 1
    batch_size: int = 500
    namespace: str = ""
    exactly_once: bool = False
    id: str | None = None
    #: An audit run: map every entity (or ``sample`` of them), write nothing, and count
    #: per kind what would be put, changed, deleted and unchanged (mapper.engine.audit).
    dry_run: bool = False
    sample: int | None = None
    #: ``{"call": "module:function", ...params}``: called before each batch's writes with
    #: the before-images of what it changes (``mapper.engine.audit.BeforeWrite``).
    before_write: dict[str, Any] | None = None
    #: Ops per second for the whole job (writes + deletes; reads for a mapper that does
    #: not write); None: no limit.
    max_rate: float | None = None
    #: The 500/50/5 ramp-up; None: the settings' default, for a mapper that writes.
    ramp_up: bool | None = None
    #: One job over many namespaces (mapper.engine.units): every namespace the store
    #: lists, those starting with a prefix, or the ones named; at most one of the three,
    #: and not with ``namespace``.
    all_namespaces: bool = False
    namespace_prefix: str | None = None
    namespaces: list[str] | None = None
    #: Counters broken down per namespace (the top ones, the rest as "other").
    namespace_counters: bool = False

    @property
    def many_namespaces(self) -> bool:
        """True for a job over many namespaces (planned as work units)."""
        chosen = self.namespace_prefix is not None or self.namespaces is not None
        return self.all_namespaces or chosen

    def validate(self) -> JobSpec:
        """Raise InvalidJobError naming the first bad field."""
        if not isinstance(self.mapper, str) or not _SPEC_RE.match(self.mapper):
            raise InvalidJobError(f"mapper must be 'module:Class', got {self.mapper!r}")
        if not isinstance(self.params, dict):
            raise InvalidJobError(f"params must be a JSON object, got {self.params!r}")
        try:
            json.dumps(self.params, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise InvalidJobError(f"params must be JSON-serialisable: {e}") from e
        check_int("shards", self.shards, 1, MAX_SHARDS)
        check_int("batch_size", self.batch_size, 1, MAX_READ_BATCH_SIZE)
        if not isinstance(self.namespace, str):
            raise InvalidJobError(f"namespace must be a string, got {self.namespace!r}")
        if not isinstance(self.exactly_once, bool):
            raise InvalidJobError(f"exactly_once must be a boolean, got {self.exactly_once!r}")
        if self.id is not None:
            check_job_id(self.id)
        self._validate_audit()
        check_max_rate(self.max_rate)
        if self.ramp_up is not None and not isinstance(self.ramp_up, bool):
            raise InvalidJobError(f"ramp_up must be a boolean, got {self.ramp_up!r}")
        self._validate_namespaces()
        return self

    def _validate_namespaces(self) -> None:
        check_selection(self.all_namespaces, self.namespace_prefix, self.namespaces, self.namespace)
        if self.namespaces is not None and not 0 < len(self.namespaces) <= MAX_NAMESPACES:
            raise InvalidJobError(
                f"namespaces must name 1 to {MAX_NAMESPACES} namespaces, got {len(self.namespaces)}"
            )
        if not isinstance(self.namespace_counters, bool):
            raise InvalidJobError(
                f"namespace_counters must be a boolean, got {self.namespace_counters!r}"
            )
        if self.namespace_counters and not self.many_namespaces:
            raise InvalidJobError(
                "namespace_counters needs a job over many namespaces "
                "(all_namespaces, namespace_prefix or namespaces)"
            )

    def _validate_audit(self) -> None:
        if not isinstance(self.dry_run, bool):
            raise InvalidJobError(f"dry_run must be a boolean, got {self.dry_run!r}")
        if self.sample is not None:
            if not self.dry_run:
                raise InvalidJobError("sample needs dry_run: a real run maps every entity")
            check_int("sample", self.sample, 1, 10**9)
        hook = self.before_write
        if hook is None:
            return
        if not isinstance(hook, dict) or not _SPEC_RE.match(str(hook.get("call", ""))):
            raise InvalidJobError(
                f"before_write must be {{'call': 'module:function', ...}}, got {hook!r}"
            )
        if self.exactly_once:
            raise InvalidJobError("before_write (a backup) does not combine with exactly_once")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> JobSpec:
        """Build and validate a spec from decoded JSON."""
        if not isinstance(data, dict):
            raise InvalidJobError(f"a job spec must be a JSON object, got {data!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidJobError(f"unknown job spec field(s): {', '.join(unknown)}")
        if "mapper" not in data:
            raise InvalidJobError("a job spec needs 'mapper': 'module:Class'")
        return cls(**data).validate()


def check_max_rate(value: Any) -> None:
    """Raise InvalidJobError unless ``value`` is None or a positive, finite number."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidJobError(f"max_rate must be a number of entities per second, got {value!r}")
    if value <= 0:
        raise InvalidJobError(
            f"max_rate must be > 0 entities per second, got {value!r} "
            "(leave it out for no limit; pause a job to stop it)"
        )


def spec_for(
    mapper: Any,
    *,
    shards: int = JobSpec.shards,
    batch_size: int = JobSpec.batch_size,
    namespace: str = "",
    exactly_once: bool = False,
    job_id: str | None = None,
    dry_run: bool = False,
    sample: int | None = None,
    max_rate: float | None = None,
    ramp_up: bool | None = None,
    all_namespaces: bool = False,
    namespace_prefix: str | None = None,
    namespaces: list[str] | None = None,
    namespace_counters: bool = False,
) -> JobSpec:
    """The validated JobSpec that runs ``mapper`` (an instance: its class and params)."""
    return JobSpec(
        mapper=class_spec(type(mapper)),
        params=mapper.params,
        shards=shards,
        batch_size=batch_size,
        namespace=namespace,
        exactly_once=exactly_once,
        id=job_id,
        dry_run=dry_run,
        sample=sample,
        max_rate=max_rate,
        ramp_up=ramp_up,
        all_namespaces=all_namespaces,
        namespace_prefix=namespace_prefix,
        namespaces=None if namespaces is None else list(namespaces),
        namespace_counters=namespace_counters,
    ).validate()
