"""The steps a migration is made of: a Mapper run as a job, or a dump loaded by import."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from mapper.engine.adapter import Adapter, check_class
from mapper.engine.audit import audit_summary
from mapper.engine.jobs import Job, retry_job, start_job
from mapper.engine.loading import class_spec
from mapper.engine.records import JobStatus
from mapper.engine.spec import JobSpec
from mapper.engine.status import StatusHandle, job_status
from mapper.errors import ConfigurationError, NotFoundError
from mapper.transfer.importer import ImportRun, ImportSpec, import_status, start_import
from mapper.transfer.options import parse_options

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime


@dataclasses.dataclass(frozen=True)
class Run:
    """Run ``mapper`` (a Mapper subclass) with ``params`` as one job over the whole kind."""

    mapper: type
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    shards: int = 1
    batch_size: int = JobSpec.batch_size  # the job's default, chosen by measurement
    namespace: str = ""
    exactly_once: bool = False

    def check(self, where: str) -> None:
        """Raise ConfigurationError naming ``where`` unless this step can run."""
        try:
            check_class(self.mapper, f"{where}: {self.mapper!r}")
            self.spec("check").validate()
        except Exception as e:
            raise ConfigurationError(f"{where}: {e}") from e

    def spec(self, job_id: str, **audit: Any) -> JobSpec:
        return JobSpec(
            mapper=class_spec(self.mapper),
            params=dict(self.params),
            shards=self.shards,
            batch_size=self.batch_size,
            namespace=self.namespace,
            exactly_once=self.exactly_once,
            id=job_id,
            **audit,
        )

    def describe(self) -> str:
        return f"run {class_spec(self.mapper)}"

    def in_namespace(self, namespace: str | None) -> Run:
        """This step over ``namespace`` unless the migration names its own."""
        if namespace is None or self.namespace:
            return self
        return dataclasses.replace(self, namespace=namespace)

    def start(self, rt: Runtime, job_id: str, before_write: dict[str, Any] | None) -> StatusHandle:
        """Start the job, or go on with it: re-drive it if it runs, retry it if it failed."""
        try:
            if job_status(rt, job_id).status == JobStatus.FAILED:
                retry_job(rt, job_id)
                return Job(rt, job_id)
        except NotFoundError:
            pass
        return start_job(rt, self.spec(job_id, before_write=before_write))

    def dry_run(self, rt: Runtime, job_id: str, sample: int | None) -> dict[str, Any]:
        """An audit job: per-kind counts and a few diffs; nothing is written."""
        Adapter(self.mapper(**self.params)).kind_name()
        job = start_job(rt, self.spec(job_id, dry_run=True, sample=sample))
        info = job.wait()
        return {"job": job_id, "status": info.status.value, **audit_summary(info.counters)}


@dataclasses.dataclass(frozen=True)
class LoadDump:
    """Load a dump (reference data) with import: ``remap`` by natural keys, or ``keep``.

    ``source`` is a dump directory: ``gs://...``, an absolute path, or a path
    relative to the migration's module. ``options``: the import's remap options in
    their CLI spellings, e.g. ``{"natural_keys": ["Country=code"], "renames": [...]}``.
    With natural keys the load can be re-applied without duplicates.
    """

    source: str
    mode: str = "remap"
    namespace: str | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    shards: int = 1
    #: Reference data shipped with the app was usually exported from another project.
    move_project: bool = True
    #: Set by the package loader: the directory of the migration's module.
    base: str = ""

    def location(self) -> str:
        if self.source.startswith("gs://") or os.path.isabs(self.source):
            return self.source
        return os.path.join(self.base, self.source)

    def import_spec(self, job_id: str | None, **more: Any) -> ImportSpec:
        options = parse_options(**self.options) if self.mode == "remap" else parse_options()
        return ImportSpec(
            source=self.location(),
            mode=self.mode,
            namespace=self.namespace,
            shards=self.shards,
            id=job_id,
            options=options,
            move_project=self.move_project,
            **more,
        ).validate()

    def check(self, where: str) -> None:
        try:
            self.import_spec(None)
        except Exception as e:
            raise ConfigurationError(f"{where}: {e}") from e
        if not self.source.startswith("gs://") and not os.path.isdir(self.location()):
            raise ConfigurationError(f"{where}: no dump directory {self.location()!r}")

    def describe(self) -> str:
        return f"load {self.source} ({self.mode})"

    def in_namespace(self, namespace: str | None) -> LoadDump:
        """This load into ``namespace`` unless the migration names its own."""
        if namespace is None or self.namespace is not None:
            return self
        return dataclasses.replace(self, namespace=namespace)

    def start(self, rt: Runtime, job_id: str, before_write: dict[str, Any] | None) -> StatusHandle:
        """Start the import, or go on with it (a failed stage is retried from its checkpoints)."""
        try:
            info = import_status(rt, job_id)
        except NotFoundError:
            info = None
        if info is not None and info.status == JobStatus.SUCCEEDED:
            return ImportRun(rt, job_id)  # done before its ledger entry said so
        if info is not None and info.status == JobStatus.FAILED:
            for index in range(len(info.stages)):
                stage = f"{job_id}-{index}"
                if info.stages[index]["status"] == JobStatus.FAILED.value:
                    retry_job(rt, stage)
            return ImportRun(rt, job_id)
        _, run = start_import(rt, self.import_spec(job_id, before_write=before_write))
        if run is None:  # pragma: no cover - only a dry run has no handle
            raise ConfigurationError("the import started nothing")
        return run

    def dry_run(self, rt: Runtime, job_id: str, sample: int | None) -> dict[str, Any]:
        """The import's own dry run: per kind, what would be inserted or merged."""
        plan, _ = start_import(rt, self.import_spec(None, dry_run=True))
        kinds: dict[str, dict[str, int]] = {}
        if self.mode == "remap":
            overwrite = self.import_spec(None).options.on_conflict == "overwrite"
            for kind, row in plan["remap"].items():
                conflicts = row["conflicts"]
                put = row["inserts"] + (conflicts if overwrite else 0)
                kinds[kind] = {
                    "put": put,
                    "changed": put,
                    "deleted": 0,
                    "unchanged": row["merges"] + (0 if overwrite else conflicts),
                }
        else:
            for kind, count in plan["kinds"].items():
                kinds[kind] = {"put": count, "changed": count, "deleted": 0, "unchanged": 0}
        return {"job": None, "status": "planned", "kinds": kinds, "diffs": []}


Step = Run | LoadDump
