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
from mapper.datastore.keywalk import Partition, partition_of
from mapper.dispatch.messages import check_job_id
from mapper.dump.files import open_dump_store
from mapper.dump.manifest import Manifest, read_manifest, validate_dump
from mapper.engine.jobs import start_job
from mapper.engine.records import JobStatus
from mapper.engine.spec import JobSpec
from mapper.engine.status import StatusHandle, job_status
from mapper.errors import ConfigurationError, DumpFormatError, NotFoundError
from mapper.transfer.options import RemapOptions

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
    shards: int = 1
    batch_size: int = 2
    id: str | None = None
    #: Remap mode only: natural keys, names, dangling and conflict policies, schema drift.
    options: RemapOptions = dataclasses.field(default_factory=RemapOptions)

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
        return self


def plan_import(rt: Runtime, spec: ImportSpec) -> dict[str, Any]:
    """Validate the whole dump against this store; returns what the import will write.

    Raises DumpFormatError (naming file and line) or ConfigurationError before
    anything is written.
    """
    spec.validate()
    manifest = read_manifest(spec.source)
    moves = partition_moves(rt, manifest, spec)
    per_kind: dict[str, int] = collections.Counter()
    expected = (manifest.project, manifest.database)
    depth = [0]  # the longest key path: remap maps one path length at a time
    referenced: set[str] = set()  # kinds something in the dump points at
    depth_of: dict[str, int] = {}  # the longest key path per kind

    def check(pb: Any, where: str, lineno: int) -> None:
        if partition_of(pb.key)[:2] != expected:
            message = f"{key_repr(pb.key)} is not of the dump's project {expected[0]!r}"
            raise DumpFormatError(message, where, lineno)
        per_kind[pb.key.path[-1].kind] += 1
        depth[0] = max(depth[0], len(pb.key.path))
        referenced.update(referenced_kinds(pb))
        kind = pb.key.path[-1].kind
        depth_of[kind] = max(depth_of.get(kind, 0), len(pb.key.path))

    validate_dump(spec.source, check)
    return {
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
    for a client-chosen ``spec.id``.
    """
    plan = plan_import(rt, spec)
    if spec.dry_run:
        if spec.mode == "remap":
            from mapper.transfer.remap_plan import plan_remap

            params = plan_params(rt, spec, "dry-run", plan, read_manifest(spec.source))
            plan["remap"] = plan_remap(rt, spec, params)
        return plan, None
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    import_id = spec.id or f"import-{stamp}-{uuid.uuid4().hex[:6]}"
    manifest = read_manifest(spec.source)
    _stage_parts(rt, import_id, spec.source, manifest)
    params = plan_params(rt, spec, import_id, plan, manifest)
    start_job(rt, stage_job_spec(params, 0))
    return plan, ImportRun(rt, import_id)


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
        "state_namespace": rt.settings.state_namespace,
        "state_partition": [rt.settings.project, rt.settings.database],
        "parts": len(manifest.parts),
        "referenced_kinds": plan["referenced_kinds"],
    }


def stage_job_spec(params: dict[str, Any], index: int) -> JobSpec:
    name, _, depth = params["stages"][index].partition(":")
    return JobSpec(
        mapper=f"mapper.transfer.stages:{_STAGE_CLASSES[name]}",
        params={**params, "stage": index, "depth": int(depth or 0)},
        shards=params["shards"],
        batch_size=params["batch_size"],
        namespace=params["state_namespace"],
        id=f"{params['import']}-{index}",
    )


_STAGE_CLASSES = {
    "keep": "KeepMapper",
    "map": "MapKeysMapper",
    "check": "CheckRefsMapper",
    "write": "WriteRemappedMapper",
}


def start_next_stage(rt: Runtime, params: dict[str, Any]) -> None:
    """Called by a stage's finish(): start the next stage (idempotent by job id)."""
    index = params["stage"] + 1
    if index < len(params["stages"]):
        start_job(rt, stage_job_spec(params, index))


def import_status(rt: Runtime, import_id: str) -> dict[str, Any]:
    """The whole import as JSON-ready data: combined status and counters, every stage."""
    first = job_status(rt, f"{import_id}-0")
    stages = []
    for index, name in enumerate(first["params"]["stages"]):
        try:
            stages.append({"stage": name, **job_status(rt, f"{import_id}-{index}")})
        except NotFoundError:
            stages.append({"stage": name, "status": "starting", "counters": {}, "shards": []})
    statuses = [JobStatus(s["status"]) if s["status"] != "starting" else None for s in stages]
    if JobStatus.FAILED in statuses:
        status = JobStatus.FAILED
    elif JobStatus.ABORTED in statuses:
        status = JobStatus.ABORTED
    elif statuses[-1] == JobStatus.SUCCEEDED:
        status = JobStatus.SUCCEEDED
    else:
        status = JobStatus.RUNNING
    counters: dict[str, int] = {}
    for stage in stages:
        for name, value in stage["counters"].items():
            counters[name] = counters.get(name, 0) + value
    failed = next((s for s in stages if s["status"] == "failed"), None)
    return {
        "id": import_id,
        "status": status.value,
        "mode": first["params"]["mode"],
        "counters": counters,
        "stages": [
            {"stage": s["stage"], "status": s["status"], "counters": s["counters"]} for s in stages
        ],
        "shards": [shard for s in stages for shard in s["shards"]],
        "shards_done": sum(s.get("shards_done", 0) for s in stages),
        "error": failed["error"] if failed else None,
        "failed_key": failed["failed_key"] if failed else None,
    }


class ImportRun(StatusHandle):
    """A handle on an import: combined status of its stages, and wait()."""

    what = "import"

    def status(self) -> dict[str, Any]:
        return import_status(self.rt, self.id)


def part_key_name(import_id: str, index: int) -> str:
    return f"{import_id}:{index:06d}"


def referenced_kinds(entity: Any) -> set[str]:
    """Kinds ``entity`` refers to: its ancestors', its key values', its embedded keys'."""
    from mapper.transfer.remap import embedded_keys, reference_values

    kinds = {element.kind for element in entity.key.path[:-1]}
    kinds.update(v.key_value.path[-1].kind for v in reference_values(entity) if v.key_value.path)
    kinds.update(k.path[-1].kind for k in embedded_keys(entity) if k.path)
    return kinds


def part_index(record: Any) -> int:
    """The index of a staged part record (raw entity), from its key name."""
    return int(record.key.path[-1].name.rpartition(":")[2])


def part_split_keys(params: dict[str, Any], shards: int) -> list[Any]:
    """Keys of the staged parts at even intervals: ``shards`` ranges of equal part counts."""
    from mapper.datastore.rpc import Key

    parts = params.get("parts", 0)
    keys = []
    for i in range(1, min(shards, parts)):
        key = Key()
        key.partition_id.project_id, key.partition_id.database_id = params["state_partition"]
        key.partition_id.namespace_id = params["state_namespace"]
        key.path.add(
            kind=_MapperImportPart._get_kind(),
            name=part_key_name(params["import"], i * parts // shards),
        )
        keys.append(key)
    return keys


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
