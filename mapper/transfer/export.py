"""Export: raw entities of any kinds and namespaces to a dump, one part file per batch.

An export is one job per kind, all started together; a kind in several namespaces
is one job over them all (docs/namespaces.md: small namespaces grouped, large ones
split by key range). Each batch (of one namespace) becomes a part file named by the
namespace, the shard and the batch's stable number, so a replayed batch rewrites its
file instead of adding one. Every part is recorded
in Datastore under the export's record; the job that finishes last writes the
manifest from those records.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from google.cloud import ndb

from mapper.base import Mapper
from mapper.datastore import txn as txns
from mapper.datastore.metadata import is_reserved_kind, list_kinds, list_namespaces
from mapper.dispatch.messages import check_job_id
from mapper.dump.files import open_dump_store
from mapper.dump.managed.metadata import OVERALL_SUFFIX
from mapper.dump.managed.tree import output_relpath, write_metadata, write_output
from mapper.dump.manifest import MANIFEST, Manifest, write_manifest
from mapper.dump.parts import PartInfo, part_relpath, write_part
from mapper.engine.jobs import Job, start_job
from mapper.engine.loading import class_spec
from mapper.engine.records import INTERNAL_KINDS, JobStatus, job_key, shard_key, utcnow
from mapper.engine.spec import MAX_BATCH_SIZE, JobSpec, check_max_rate
from mapper.engine.status import (
    ShardInfo,
    StatusHandle,
    job_status,
    json_ready,
    roll_up,
    sum_counters,
)
from mapper.errors import ConfigurationError, InvalidJobError, NotFoundError

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime

logger = logging.getLogger(__name__)

FORMATS = ("mapper", "managed")
#: Part files an export batch writes under one checkpoint (each of ``batch_size``
#: entities): a checkpoint transaction a part cost 10-20% of a scan on the Firestore
#: emulator (docs/performance.md, round five).
PARTS_PER_BATCH = 4


class _MapperExport(ndb.Model):
    """One export. Key name: the export id; its parts are child records."""

    out = ndb.TextProperty()
    project = ndb.TextProperty()
    database = ndb.TextProperty(default="")
    #: [[namespace, kind], ...]: what the export covers (the manifest's kinds and
    #: namespaces); one job each when ``groups`` is None (an export from before groups).
    pairs = ndb.JsonProperty(default=[])
    #: [[kind, [namespace, ...]], ...], one job each; job i has id ``{export id}-{i}``.
    groups = ndb.JsonProperty()
    done = ndb.JsonProperty(default=[])
    metadata = ndb.JsonProperty(default={})
    manifest_written = ndb.BooleanProperty(indexed=False, default=False)
    created = ndb.DateTimeProperty(indexed=False)
    #: True: every part record is under a shard record (False: begun by a version that
    #: kept them under this record, where they are looked for too).
    parts_under_shards = ndb.BooleanProperty(indexed=False, default=False)


class _MapperExportPart(ndb.Model):
    """One written part file (key id: its path in the dump), as the manifest lists it.

    A child of the shard record that wrote it, and written in that shard's checkpoint
    transaction (one commit a batch, no entity group shared between shards). Exports
    begun before that kept them under the export record; both are read.
    """

    count = ndb.IntegerProperty(indexed=False)
    sha256 = ndb.TextProperty()
    bytes = ndb.IntegerProperty(indexed=False)
    kinds = ndb.JsonProperty(default=[])
    namespaces = ndb.JsonProperty(default=[])


def export_key(export_id: str, namespace: str) -> ndb.Key:
    return ndb.Key(_MapperExport, export_id, namespace=namespace)


class ExportMapper(Mapper):
    """Writes every entity of one kind in one namespace to part files, as raw protobufs."""

    RAW = True
    WRITES = False  # its rate counts entities read; no write ramp-up
    ONE_NAMESPACE_A_BATCH = True  # a part file holds one namespace
    #: A batch (several part files) ends before its entities pass this many bytes.
    BATCH_BYTES = 8 * 2**20

    def __init__(self, **params: Any):
        super().__init__(**params)
        for name in ("export", "kind", "out"):
            if not isinstance(params.get(name), str) or not params[name]:
                raise InvalidJobError(f"ExportMapper needs a {name!r} string param, got {params}")
        if is_reserved_kind(params["kind"]):
            raise InvalidJobError(f"cannot export the reserved kind {params['kind']!r}")
        self.KIND = params["kind"]
        self.FILTERS = [tuple(pair) for pair in params.get("filters", [])]
        self._batch: list[Any] = []
        self._records: list[_MapperExportPart] = []

    def start_batch(self, entities: list[Any]) -> None:
        self._batch = entities  # no map(): the batch is written whole, in end_batch

    def end_batch(self, number: int) -> None:
        entities, self._batch = self._batch, []
        # One namespace a batch: the job's, or (a job over many) its entities' own.
        namespace = self.params.get("namespace") or entities[0].key.partition_id.namespace_id
        # A batch is up to PARTS_PER_BATCH part files (one, for an export begun before),
        # numbered from the batch's number: a replayed batch rewrites the same files.
        size = self.params.get("part_size") or len(entities)
        parts = self.params.get("parts_per_batch", 1)
        for index, start in enumerate(range(0, len(entities), size)):
            self._write_part(entities[start : start + size], number * parts + index, namespace)

    def _write_part(self, entities: list[Any], number: int, namespace: str) -> None:
        if self.params.get("format") == "managed":
            relpath = output_relpath(self.params["kind"], namespace, self.shard or 0, number)
            info = write_output(self.params["out"], relpath, entities)
        else:
            relpath = part_relpath(self.params["kind"], self.shard or 0, number, namespace)
            info = write_part(self.params["out"], relpath, entities)
        parent = shard_key(
            self.job_id or "", self.shard or 0, self.runtime.settings.state_namespace
        )
        record = _MapperExportPart(
            key=ndb.Key(_MapperExportPart, relpath, parent=parent),
            count=info.count,
            sha256=info.sha256,
            bytes=info.bytes,
            kinds=list(info.kinds) or [self.params["kind"]],
            namespaces=list(info.namespaces) or [namespace],
        )
        self._records.append(record)  # written by the engine, with the checkpoint
        self.count("bytes", info.bytes)

    def take_records(self) -> list[_MapperExportPart]:
        """The batch's part records, for the engine to write with its checkpoint."""
        records, self._records = self._records, []
        return records

    def finish(self) -> None:
        rt = self.runtime
        key = export_key(self.params["export"], rt.settings.state_namespace)
        job_id = self.job_id

        def mark_done(t: txns.Txn) -> _MapperExport:
            export = t.get(key)[0]
            if job_id not in export.done:
                export.done = [*export.done, job_id]
                t.put(export)
            return export

        with rt.context():
            export = txns.run_in_transaction(rt.store, mark_done)
            if len(export.done) == len(export_jobs(export)):
                write_export_manifest(rt, export)


def write_export_manifest(rt: Runtime, export: _MapperExport) -> Manifest:
    """Write the manifest from the recorded parts (idempotent: the same parts each time)."""
    parts = sorted(
        (
            PartInfo(
                path=p.key.id(),
                count=p.count,
                sha256=p.sha256,
                bytes=p.bytes,
                kinds=tuple(p.kinds),
                namespaces=tuple(p.namespaces),
            )
            for p in _part_records(rt, export)
        ),
        key=lambda part: part.path,
    )
    if export.metadata.get("format") == "managed":
        # The table a managed import reads: written last, like a manifest.
        write_metadata(export.out, export.key.id(), parts)
    manifest = Manifest.build(
        project=export.project,
        database=export.database,
        parts=parts,
        kinds={kind for _, kind in export.pairs},
        namespaces={namespace for namespace, _ in export.pairs} or {""},
        metadata={"export": export.key.id(), **export.metadata},
    )
    if export.metadata.get("format") != "managed":
        write_manifest(export.out, manifest)

    def mark(t: txns.Txn) -> None:
        current = t.get(export.key)[0]
        current.manifest_written = True
        t.put(current)

    txns.run_in_transaction(rt.store, mark)
    logger.info("export=%s manifest written: %s", export.key.id(), manifest.totals)
    return manifest


def _part_records(rt: Runtime, export: _MapperExport) -> list[_MapperExportPart]:
    """The export's part records, one per path: those under its shards' records, and
    those an export begun by an earlier version kept under the export record."""
    ns = rt.settings.state_namespace
    jobs = txns.get(
        rt.store, *[job_key(f"{export.key.id()}-{i}", ns) for i in range(len(export_jobs(export)))]
    )
    parents = [] if export.parts_under_shards else [export.key]
    parents += [
        shard_key(job.job_id, index, ns)
        for job in jobs
        if job is not None
        for index in range(len(job.ranges))
    ]
    queries = [_MapperExportPart.query(ancestor=parent).fetch_async() for parent in parents]
    by_path = {p.key.id(): p for query in queries for p in query.result()}  # later parents win
    return list(by_path.values())


# -- starting and watching -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ExportSpec:
    """What to export, and where (a local directory or ``gs://bucket/prefix``)."""

    out: str
    kinds: Sequence[str] = ()
    #: None: the default namespace only; ["*"]: every namespace the store lists.
    namespaces: Sequence[str] | None = None
    filters: Sequence[tuple[str, Any]] = ()
    shards: int = 4
    batch_size: int = 500
    id: str | None = None
    #: "mapper" (mapper's dump) or "managed" (what ``gcloud datastore import`` reads).
    format: str = "mapper"
    #: Entities read per second for the whole export (shared by its kinds); None: no limit.
    max_rate: float | None = None

    def validate(self) -> ExportSpec:
        if not self.out:
            raise ConfigurationError("export needs an output location (--out)")
        if self.format not in FORMATS:
            raise ConfigurationError(f"export format must be one of {FORMATS}, got {self.format!r}")
        if self.id is not None:
            check_job_id(self.id)
        for kind in self.kinds:
            if not kind or is_reserved_kind(kind):
                raise ConfigurationError(f"cannot export the kind {kind!r}")
        if not 1 <= self.shards <= 256 or not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ConfigurationError(
                f"shards must be 1..256 and batch size 1..{MAX_BATCH_SIZE}, got {self.shards}, "
                f"{self.batch_size}"
            )
        check_max_rate(self.max_rate)
        return self


def resolve_pairs(rt: Runtime, spec: ExportSpec) -> list[list[str]]:
    """The (namespace, kind) pairs the export covers, from the spec or metadata queries."""
    if spec.namespaces is None:
        namespaces = [""]
    elif list(spec.namespaces) == ["*"]:
        namespaces = list_namespaces(rt.store)
    else:
        namespaces = sorted(set(spec.namespaces))
    pairs = []
    for namespace in namespaces:
        kinds = spec.kinds or list_kinds(rt.store, namespace)
        for kind in sorted(set(kinds)):
            internal = namespace == rt.settings.state_namespace and kind in INTERNAL_KINDS
            if not internal or kind in spec.kinds:
                pairs.append([namespace, kind])
    return pairs


def group_by_kind(pairs: list[list[str]]) -> list[list[Any]]:
    """One job's worth each: ``[kind, [namespace, ...]]`` in kind order."""
    namespaces: dict[str, list[str]] = {}
    for namespace, kind in pairs:
        namespaces.setdefault(kind, []).append(namespace)
    return [[kind, sorted(namespaces[kind])] for kind in sorted(namespaces)]


def export_jobs(export: _MapperExport) -> list[tuple[str, list[str]]]:
    """The export's jobs in order, as (kind, namespaces)."""
    if export.groups is None:  # an export started before kinds were grouped
        return [(kind, [namespace]) for namespace, kind in export.pairs]
    return [(kind, list(namespaces)) for kind, namespaces in export.groups]


def start_export(rt: Runtime, spec: ExportSpec) -> Export:
    """Start an export (idempotent for a client-chosen ``spec.id``); returns its handle."""
    spec.validate()
    store = open_dump_store(spec.out)
    store.check_writable()
    export_id = (
        spec.id
        or f"export-{datetime.datetime.now(datetime.UTC):%Y%m%d-%H%M%S}-" + (uuid.uuid4().hex[:6])
    )
    with rt.context():
        export = _create_export(rt, export_id, spec, store)
        if not export.pairs and not export.manifest_written:
            write_export_manifest(rt, export)
        jobs = export_jobs(export)
        for index, (kind, namespaces) in enumerate(jobs):
            one = namespaces[0] if len(namespaces) == 1 else None
            params = {
                "export": export_id,
                "kind": kind,
                **({"namespace": one} if one is not None else {}),
                "out": spec.out,
                "part_size": spec.batch_size,
                "parts_per_batch": PARTS_PER_BATCH,
                "filters": [list(f) for f in spec.filters],
                **({"format": "managed"} if spec.format == "managed" else {}),
            }
            job_spec = JobSpec(
                mapper=class_spec(ExportMapper),
                params=params,
                shards=spec.shards,
                batch_size=spec.batch_size * PARTS_PER_BATCH,
                namespace=one or "",
                # A kind in several namespaces: one job over them (mapper.engine.units).
                namespaces=None if one is not None else namespaces,
                id=f"{export_id}-{index}",
                # The kinds' jobs run side by side: each gets an equal share.
                max_rate=spec.max_rate / len(jobs) if spec.max_rate else None,
            )
            start_job(rt, job_spec)
    return Export(rt, export_id)


def _create_export(rt: Runtime, export_id: str, spec: ExportSpec, store: Any) -> _MapperExport:
    key = export_key(export_id, rt.settings.state_namespace)
    existing = txns.get(rt.store, key)[0]
    if existing is not None:
        return existing
    if store.exists(MANIFEST):
        raise ConfigurationError(f"{store.location()} already holds a complete dump")
    pairs = resolve_pairs(rt, spec)
    export = _MapperExport(
        key=key,
        out=spec.out,
        project=rt.settings.project,
        database=rt.settings.database,
        pairs=pairs,
        groups=group_by_kind(pairs),
        metadata={
            "filters": [list(f) for f in spec.filters],
            **({"format": "managed"} if spec.format == "managed" else {}),
        },
        created=utcnow(),
        parts_under_shards=True,
    )

    def create(t: txns.Txn) -> _MapperExport:
        current = t.get(key)[0]
        if current is not None:
            return current
        t.put(export)
        return export

    return txns.run_in_transaction(rt.store, create)


class Export(StatusHandle):
    """A handle on an export: its jobs' combined status, and wait()."""

    what = "export"

    def status(self) -> ExportInfo:
        return export_status(self.rt, self.id)

    def jobs(self) -> list[Job]:
        return [Job(self.rt, job_id) for job_id in self.status().jobs]


@dataclasses.dataclass(frozen=True)
class ExportInfo:
    """An export as it stands: one status over its jobs (one per kind)."""

    id: str
    status: JobStatus
    out: str
    counters: dict[str, int]
    jobs: tuple[str, ...]
    kinds: tuple[dict[str, Any], ...]
    shards: tuple[ShardInfo, ...]
    shards_done: int
    manifest: str | None

    def to_json(self) -> dict[str, Any]:
        return json_ready(self)


def export_status(rt: Runtime, export_id: str) -> ExportInfo:
    """The export as it stands: combined status and counters, per-kind results."""
    with rt.context():
        export = txns.get(rt.store, export_key(export_id, rt.settings.state_namespace))[0]
        if export is None:
            raise NotFoundError(f"no export {export_id!r}")
        planned = export_jobs(export)
        jobs = [job_status(rt, f"{export_id}-{i}") for i in range(len(planned))]
    done = bool(export.manifest_written) and all(j.status == JobStatus.SUCCEEDED for j in jobs)
    kinds = [
        {
            # One namespace: its name; several: None, and ``namespaces`` lists them.
            "namespace": namespaces[0] if len(namespaces) == 1 else None,
            "namespaces": namespaces,
            "kind": kind,
            "entities": j.counters.get("processed", 0),
            "bytes": j.counters.get("bytes", 0),
            "status": j.status.value,
            "error": j.error,
        }
        for (kind, namespaces), j in zip(planned, jobs, strict=True)
    ]
    # A managed export's table of contents is its overall metadata file, named by the id.
    written = f"{export_id}{OVERALL_SUFFIX}" if export.metadata.get("format") else MANIFEST
    manifest = open_dump_store(export.out).location(written) if export.manifest_written else None
    return ExportInfo(
        id=export_id,
        status=roll_up((j.status for j in jobs), done),
        out=export.out,
        counters=sum_counters(j.counters for j in jobs),
        jobs=tuple(j.id for j in jobs),
        kinds=tuple(kinds),
        shards=tuple(s for j in jobs for s in j.shards),
        shards_done=sum(j.shards_done for j in jobs),
        manifest=manifest,
    )
