"""Import a dump: validate it whole, then write its parts as a sharded, resumable job.

The dump's parts are staged as ``_MapperImportPart`` records; an ``ImportMapper``
job walks them in key order like any other kind, and each part's entities come
back from ``map`` as puts, so they go out in bounded batches and a replayed
batch writes the same keys again (``keep`` mode overwrites by key).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import logging
import uuid
from typing import TYPE_CHECKING, Any

from google.cloud import ndb

from mapper import txn as txns
from mapper.base import Mapper
from mapper.dumpformat import (
    Manifest,
    PartInfo,
    describe_key,
    open_dump_store,
    read_manifest,
    read_part,
    validate_dump,
)
from mapper.errors import ConfigurationError, DumpFormatError, InvalidJobError
from mapper.jobs import Job, start_job
from mapper.keywalk import Partition, move_partitions, partition_of
from mapper.messages import JobSpec, check_job_id

if TYPE_CHECKING:
    from mapper.runtime import Runtime

logger = logging.getLogger(__name__)

MODES = ("keep",)


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

    def validate(self) -> ImportSpec:
        if self.mode not in MODES:
            raise ConfigurationError(f"import mode must be one of {MODES}, got {self.mode!r}")
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

    def check(pb: Any, where: str, lineno: int) -> None:
        if partition_of(pb.key)[:2] != expected:
            message = f"{describe_key(pb.key)} is not of the dump's project {expected[0]!r}"
            raise DumpFormatError(message, where, lineno)
        per_kind[pb.key.path[-1].kind] += 1

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


def start_import(rt: Runtime, spec: ImportSpec) -> tuple[dict[str, Any], Job | None]:
    """Plan (validating everything), then stage the parts and start the job.

    Returns the plan and the job (None for a dry run). Idempotent for a
    client-chosen ``spec.id``.
    """
    plan = plan_import(rt, spec)
    if spec.dry_run:
        return plan, None
    manifest = read_manifest(spec.source)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    import_id = spec.id or f"import-{stamp}-{uuid.uuid4().hex[:6]}"
    _stage_parts(rt, import_id, spec.source, manifest)
    params = {
        "import": import_id,
        "source": spec.source,
        "mode": spec.mode,
        "namespace": spec.namespace,
        "move_project": spec.move_project,
    }
    job_spec = JobSpec(
        mapper="mapper.importer:ImportMapper",
        params=params,
        shards=spec.shards,
        batch_size=spec.batch_size,
        namespace=rt.settings.state_namespace,
        id=import_id,
    )
    return plan, start_job(rt, job_spec)


def _stage_parts(rt: Runtime, import_id: str, source: str, manifest: Manifest) -> None:
    """One record per part, keyed by the import id: staging twice writes the same records."""
    ns = rt.settings.state_namespace
    with rt.context():
        records = [
            _MapperImportPart(
                key=ndb.Key(_MapperImportPart, f"{import_id}:{i:06d}", namespace=ns),
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
            txns.put_records(rt, records[start : start + 500])


class ImportMapper(Mapper):
    """Writes the entities of each staged part, their keys moved to this store."""

    KIND = "_MapperImportPart"

    def __init__(self, **params: Any):
        super().__init__(**params)
        if not isinstance(params.get("import"), str) or not isinstance(params.get("source"), str):
            raise InvalidJobError(f"ImportMapper needs 'import' and 'source' params: {params}")
        self.FILTERS = [("import_id", params["import"])]
        self._moves: dict[Partition, Partition] | None = None

    def decode(self, pb: Any) -> Any:
        return pb

    def map(self, record: Any) -> tuple[list[Any], list[Any]]:
        props = record.properties
        part = PartInfo(
            path=props["path"].string_value,
            count=props["count"].integer_value,
            sha256=props["sha256"].string_value,
            bytes=props["bytes"].integer_value,
        )
        moves = self._partition_moves()
        entities = []
        for pb in read_part(self.params["source"], part.path, part):
            move_partitions(pb, moves)
            entities.append(pb)
        self.count("entities", len(entities))
        return entities, []

    def _partition_moves(self) -> dict[Partition, Partition]:
        if self._moves is None:
            if self.runtime is None:
                raise InvalidJobError("ImportMapper runs only inside a job")
            spec = ImportSpec(
                source=self.params["source"],
                namespace=self.params.get("namespace"),
                move_project=bool(self.params.get("move_project")),
            )
            self._moves = partition_moves(self.runtime, read_manifest(spec.source), spec)
        return self._moves
