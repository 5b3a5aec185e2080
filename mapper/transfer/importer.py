"""Import a dump: validate it whole, then write its parts as a chain of sharded jobs.

The dump's parts are staged as ``_MapperImportPart`` records; each stage is a
job walking them in key order like any other kind (``mapper.transfer.stages``),
and each stage's ``finish()`` starts the next. ``keep`` is one stage that writes
the entities with their keys; ``remap`` chooses every new key first
(``mapper.transfer.remap``), then writes.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import logging
import uuid
from typing import TYPE_CHECKING, Any

from google.cloud import ndb

from mapper.datastore import txn as txns
from mapper.datastore.keys import key_repr
from mapper.datastore.keywalk import (
    Partition,
    is_complete,
    key_sites,
    partition_of,
)
from mapper.dispatch.messages import check_job_id
from mapper.dump.files import open_dump_store
from mapper.dump.manifest import Manifest
from mapper.dump.sources import read_manifest, resolve_source, validate_dump
from mapper.engine.jobs import start_job
from mapper.engine.records import JobStatus
from mapper.engine.spec import check_max_rate
from mapper.engine.status import (
    JobInfo,
    ShardInfo,
    StatusHandle,
    job_status,
    json_ready,
    roll_up,
    sum_counters,
)
from mapper.errors import ConfigurationError, DumpFormatError, NotFoundError
from mapper.transfer import locks
from mapper.transfer.locks import lock_targets
from mapper.transfer.options import RemapOptions
from mapper.transfer.remap_plan import plan_remap
from mapper.transfer.stages import part_key_name, stage_job_spec

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime

logger = logging.getLogger(__name__)

MODES = ("keep", "remap")


class _MapperImportPart(ndb.Model):
    """One part of a dump an import job will write (key name: ``{import id}:{index}``)."""

    import_id = ndb.StringProperty()
    source = ndb.TextProperty()
    path = ndb.TextProperty()
    count = ndb.IntegerProperty(indexed=False)
    sha256 = ndb.TextProperty()
    bytes = ndb.IntegerProperty(indexed=False)


@dataclasses.dataclass(frozen=True)
class ImportSpec:
    """Where the dump is, how its keys land in this store, and how the job runs."""

    source: str
    mode: str = "keep"
    #: Move every entity (and every key value of the dump's partitions) to this namespace.
    namespace: str | None = None
    #: Allow a dump of another project (its keys move to this project).
    move_project: bool = False
    dry_run: bool = False
    shards: int = 4
    batch_size: int = 2
    id: str | None = None
    #: Entities written per second, for each stage of the import; None: no limit.
    max_rate: float | None = None
    #: Remap mode only: natural keys, names, dangling and conflict policies, schema drift.
    options: RemapOptions = dataclasses.field(default_factory=RemapOptions)
    #: The writing stage's ``JobSpec.before_write`` hook (a migration's backup), or None.
    before_write: dict[str, Any] | None = None

    def validate(self) -> ImportSpec:
        if self.mode not in MODES:
            raise ConfigurationError(f"import mode must be one of {MODES}, got {self.mode!r}")
        self.options.validate()
        if self.mode == "keep" and self.options != RemapOptions():
            raise ConfigurationError("remap options (--natural-key ...) need --mode remap")
        if self.id is not None:
            check_job_id(self.id)
        if not 1 <= self.shards <= 256 or not 1 <= self.batch_size <= 100:
            raise ConfigurationError(
                f"shards must be 1..256 and batch size 1..100 parts, got {self.shards}, "
                f"{self.batch_size}"
            )
        check_max_rate(self.max_rate)
        return self


def plan_import(rt: Runtime, spec: ImportSpec) -> dict[str, Any]:
    """Validate the whole dump against this store; returns what the import will write.

    Raises DumpFormatError (naming file and line) or ConfigurationError before
    anything is written.
    """
    return _plan(rt, spec)[0]


def _plan(rt: Runtime, spec: ImportSpec) -> tuple[dict[str, Any], Manifest]:
    """The plan and the table of contents it validated (a managed export's is built by
    a pass over its files: the import then stages the same one instead of another)."""
    spec = dataclasses.replace(spec.validate(), source=resolve_source(spec.source))
    manifest = read_manifest(spec.source)
    moves = partition_moves(rt, manifest, spec)
    per_kind: dict[str, int] = collections.Counter()
    expected = (manifest.project, manifest.database)
    depth = [0]  # the longest key path: remap maps one path length at a time
    referenced: set[str] = set()  # kinds something in the dump points at
    depth_of: dict[str, int] = {}  # the longest key path per kind

    def check(pb: Any, where: str, lineno: int | None) -> None:
        if partition_of(pb.key)[:2] != expected:
            message = f"{key_repr(pb.key)} is not of the dump's project {expected[0]!r}"
            raise DumpFormatError(message, where, lineno)
        per_kind[pb.key.path[-1].kind] += 1
        depth[0] = max(depth[0], len(pb.key.path))
        referenced.update(referenced_kinds(pb))
        kind = pb.key.path[-1].kind
        depth_of[kind] = max(depth_of.get(kind, 0), len(pb.key.path))

    validate_dump(spec.source, check, manifest)
    plan = {
        "source": open_dump_store(spec.source).location(),
        "mode": spec.mode,
        "from": {"project": manifest.project, "database": manifest.database},
        "to": {"project": rt.settings.project, "database": rt.settings.database},
        "namespaces": {src[2]: dst[2] for src, dst in sorted(moves.items())},
        "kinds": dict(sorted(per_kind.items())),
        "entities": manifest.totals["entities"],
        "parts": len(manifest.parts),
        "depth": depth[0],
        "referenced_kinds": sorted(referenced),
        # Map stages run up to the deepest entity something refers to; the
        # rest get their keys in the write stage.
        "referenced_depth": max((depth_of.get(k, 0) for k in referenced), default=0),
    }
    return plan, manifest


def partition_moves(
    rt: Runtime, manifest: Manifest, spec: ImportSpec
) -> dict[Partition, Partition]:
    """Source partition -> target partition for every namespace in the dump."""
    target = (rt.settings.project, rt.settings.database)
    if (manifest.project, manifest.database) != target and not spec.move_project:
        raise ConfigurationError(
            f"the dump is of project {manifest.project!r} database {manifest.database!r}, "
            f"this store is {target[0]!r} {target[1]!r}: pass --move-project to move its keys"
        )
    if spec.namespace is not None and len(manifest.namespaces) > 1:
        raise ConfigurationError(
            f"the dump holds namespaces {list(manifest.namespaces)!r}; --namespace would merge "
            "them into one: import each namespace's dump separately"
        )
    return {
        (manifest.project, manifest.database, ns): (
            *target,
            ns if spec.namespace is None else spec.namespace,
        )
        for ns in manifest.namespaces
    }


def start_import(rt: Runtime, spec: ImportSpec) -> tuple[dict[str, Any], ImportRun | None]:
    """Plan (validating everything), then stage the parts and start the first stage.

    Returns the plan and a handle on the run (None for a dry run). Idempotent
    for a client-chosen ``spec.id``: a second start re-drives every stage already
    started (the command re-run after its process died goes on where it stopped).
    """
    spec = dataclasses.replace(spec, source=resolve_source(spec.source))
    plan, manifest = _plan(rt, spec)
    if spec.dry_run:
        if spec.mode == "remap":
            params = plan_params(rt, spec, "dry-run", plan, manifest)
            plan["remap"] = plan_remap(rt, spec, params, manifest)
        return plan, None
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    import_id = spec.id or f"import-{stamp}-{uuid.uuid4().hex[:6]}"
    params = plan_params(rt, spec, import_id, plan, manifest)
    locks.acquire(rt, import_id, lock_targets(params), lambda holder: _is_live(rt, holder))
    _stage_parts(rt, import_id, spec.source, manifest)
    for index in range(len(params["stages"])):
        # Each stage's finish() starts the next: a stage not started yet is not ours to start.
        if index == 0 or _job_exists(rt, f"{import_id}-{index}"):
            start_job(rt, stage_job_spec(params, index))
    return plan, ImportRun(rt, import_id)


def _is_live(rt: Runtime, import_id: str) -> bool | None:
    """Whether an import still runs (None: it has no job yet)."""
    try:
        return not import_status(rt, import_id).status.is_final
    except NotFoundError:
        return None


def _job_exists(rt: Runtime, job_id: str) -> bool:
    try:
        job_status(rt, job_id)
    except NotFoundError:
        return False
    return True


def plan_params(
    rt: Runtime, spec: ImportSpec, import_id: str, plan: dict[str, Any], manifest: Manifest
) -> dict[str, Any]:
    """The JSON params every stage job of this import carries."""
    moves = partition_moves(rt, manifest, spec)
    if spec.mode == "keep":
        stages = ["keep"]
    else:
        stages = [f"map:{depth}" for depth in range(1, plan["referenced_depth"] + 1)]
        stages += ["check"] if spec.options.dangling == "fail" else []
        stages += ["write"]
    return {
        "import": import_id,
        "source": spec.source,
        "mode": spec.mode,
        "moves": [[list(src), list(dst)] for src, dst in moves.items()],
        "options": spec.options.to_json(),
        "stages": stages,
        "shards": spec.shards,
        "batch_size": spec.batch_size,
        "max_rate": spec.max_rate,
        "state_namespace": rt.settings.state_namespace,
        "state_partition": [rt.settings.project, rt.settings.database],
        "parts": len(manifest.parts),
        "referenced_kinds": plan["referenced_kinds"],
        "before_write": spec.before_write,
        # Remap: the (target namespace, kind) pairs no other remap import may write meanwhile.
        "locks": sorted([dst[2], kind] for dst in set(moves.values()) for kind in manifest.kinds)
        if spec.mode == "remap"
        else [],
    }


@dataclasses.dataclass(frozen=True)
class ImportInfo:
    """An import as it stands: one status over its stage jobs, each stage's counters."""

    id: str
    status: JobStatus
    mode: str
    counters: dict[str, int]
    stages: tuple[dict[str, Any], ...]
    shards: tuple[ShardInfo, ...]
    shards_done: int
    error: str | None
    failed_key: str | None

    def to_json(self) -> dict[str, Any]:
        return json_ready(self)


def import_status(rt: Runtime, import_id: str) -> ImportInfo:
    """The whole import as it stands: combined status and counters, every stage."""
    first = job_status(rt, f"{import_id}-0")
    names = first.params["stages"]
    jobs: list[JobInfo | None] = []
    for index in range(len(names)):
        try:
            jobs.append(job_status(rt, f"{import_id}-{index}"))
        except NotFoundError:
            jobs.append(None)  # a later stage not started yet
    last = jobs[-1]
    failed = next((j for j in jobs if j is not None and j.status == JobStatus.FAILED), None)
    stages = [
        {
            "stage": name,
            "status": j.status.value if j is not None else "starting",
            "counters": j.counters if j is not None else {},
        }
        for name, j in zip(names, jobs, strict=True)
    ]
    started = [j for j in jobs if j is not None]
    return ImportInfo(
        id=import_id,
        status=roll_up(
            (j.status if j else None for j in jobs),
            last is not None and last.status == JobStatus.SUCCEEDED,
        ),
        mode=first.params["mode"],
        counters=sum_counters(j.counters for j in started),
        stages=tuple(stages),
        shards=tuple(s for j in started for s in j.shards),
        shards_done=sum(j.shards_done for j in started),
        error=failed.error if failed else None,
        failed_key=failed.failed_key if failed else None,
    )


class ImportRun(StatusHandle):
    """A handle on an import: combined status of its stages, and wait()."""

    what = "import"

    def status(self) -> ImportInfo:
        return import_status(self.rt, self.id)


def referenced_kinds(entity: Any) -> set[str]:
    """Kinds ``entity`` refers to: its ancestors', its key values', its embedded keys'."""
    kinds = {element.kind for element in entity.key.path[:-1]}
    refs, embedded = key_sites(entity)
    kinds.update(v.key_value.path[-1].kind for v in refs if v.key_value.path)
    kinds.update(k.path[-1].kind for k in embedded if is_complete(k))
    return kinds


def _stage_parts(rt: Runtime, import_id: str, source: str, manifest: Manifest) -> None:
    """One record per part, keyed by the import id: staging twice writes the same records."""
    ns = rt.settings.state_namespace
    with rt.context():
        records = [
            _MapperImportPart(
                key=ndb.Key(_MapperImportPart, part_key_name(import_id, i), namespace=ns),
                import_id=import_id,
                source=source,
                path=part.path,
                count=part.count,
                sha256=part.sha256,
                bytes=part.bytes,
            )
            for i, part in enumerate(manifest.parts)
        ]
        for start in range(0, len(records), 500):
            txns.put_records(rt.store, records[start : start + 500])
