"""Task messages: small frozen dataclasses that travel as JSON, never as pickles."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any, ClassVar

from mapper.errors import InvalidJobError

_JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


def check_job_id(job_id: str) -> str:
    """Return ``job_id`` if it may name a job (and a task), else raise."""
    if not isinstance(job_id, str) or not _JOB_ID_RE.match(job_id):
        raise InvalidJobError(f"job id must match [A-Za-z0-9_-]{{1,100}}, got {job_id!r}")
    return job_id


def check_int(name: str, value: Any, low: int, high: int) -> None:
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
    """Move job ``job_id`` to its final state and run ``finish()`` once.

    ``generation`` is the job's: a resumed job finalizes under a name of its own
    (the name of a finalize that found the job paused is spent).
    """

    kind: ClassVar[str] = "finalize"
    job_id: str
    generation: int = 0

    def task_name(self) -> str:
        suffix = "finalize" if not self.generation else f"finalize-g{self.generation}"
        return _task_name(self.job_id, suffix)


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
    names = ("shard", "slice", "generation") if isinstance(task, SliceTask) else ("generation",)
    for name in names:
        check_int(name, getattr(task, name), 0, 2**62)
    return task


def _task_name(job_id: str, suffix: str) -> str:
    # Cloud Tasks advises a hash prefix so that sequential names do not
    # concentrate on one part of its index.
    plain = f"{job_id}-{suffix}"
    prefix = hashlib.sha256(plain.encode()).hexdigest()[:8]
    return f"{prefix}-{plain}"
