"""Task messages: small frozen dataclasses that travel as JSON, never as pickles."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any, ClassVar

from mapper.errors import InvalidJobError

_JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_SPEC_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

MAX_BATCH_SIZE = 500
MAX_SHARDS = 256


def check_job_id(job_id: str) -> str:
    """Return ``job_id`` if it may name a job (and a task), else raise."""
    if not isinstance(job_id, str) or not _JOB_ID_RE.match(job_id):
        raise InvalidJobError(f"job id must match [A-Za-z0-9_-]{{1,100}}, got {job_id!r}")
    return job_id


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """What to run: the start message of a job."""

    mapper: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    shards: int = 1
    batch_size: int = 100
    namespace: str = ""
    exactly_once: bool = False
    id: str | None = None

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
        _check_int("shards", self.shards, 1, MAX_SHARDS)
        _check_int("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        if not isinstance(self.namespace, str):
            raise InvalidJobError(f"namespace must be a string, got {self.namespace!r}")
        if not isinstance(self.exactly_once, bool):
            raise InvalidJobError(f"exactly_once must be a boolean, got {self.exactly_once!r}")
        if self.id is not None:
            check_job_id(self.id)
        return self

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


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidJobError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


@dataclasses.dataclass(frozen=True)
class SliceTask:
    """Run slice ``slice`` of shard ``shard`` of job ``job_id``.

    ``generation`` changes when a paused job resumes, so the resumed chain gets
    task names of its own (Cloud Tasks refuses a used name for hours).
    """

    kind: ClassVar[str] = "slice"
    job_id: str
    shard: int
    slice: int
    generation: int = 0

    def task_name(self) -> str:
        return _task_name(self.job_id, f"s{self.shard}-{self.slice}-g{self.generation}")


@dataclasses.dataclass(frozen=True)
class FinalizeTask:
    """Move job ``job_id`` to its final state and run ``finish()`` once."""

    kind: ClassVar[str] = "finalize"
    job_id: str

    def task_name(self) -> str:
        return _task_name(self.job_id, "finalize")


Task = SliceTask | FinalizeTask


def task_to_json(task: Task) -> str:
    return json.dumps({"kind": task.kind, **dataclasses.asdict(task)}, sort_keys=True)


def task_from_json(body: str | bytes) -> Task:
    """Decode a task body; raise InvalidJobError on anything malformed."""
    try:
        data = json.loads(body)
    except ValueError as e:
        raise InvalidJobError(f"task body is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise InvalidJobError(f"task body must be a JSON object, got {data!r}")
    kind = data.pop("kind", None)
    cls: type[SliceTask] | type[FinalizeTask]
    if kind == "slice":
        cls = SliceTask
    elif kind == "finalize":
        cls = FinalizeTask
    else:
        raise InvalidJobError(f"unknown task kind {kind!r}")
    try:
        task = cls(**data)
    except TypeError as e:
        raise InvalidJobError(f"bad {kind} task {data!r}: {e}") from e
    check_job_id(task.job_id)
    if isinstance(task, SliceTask):
        for name in ("shard", "slice", "generation"):
            _check_int(name, getattr(task, name), 0, 2**62)
    return task


def _task_name(job_id: str, suffix: str) -> str:
    # Cloud Tasks advises a hash prefix so that sequential names do not
    # concentrate on one part of its index.
    plain = f"{job_id}-{suffix}"
    prefix = hashlib.sha256(plain.encode()).hexdigest()[:8]
    return f"{prefix}-{plain}"
