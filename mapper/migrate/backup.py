"""Backups: the before-images of what a migration changes, in the dump format, and the way back.

Each step of a migration run with ``--backup ROOT`` writes two dumps under
``ROOT/<migration>-r<run>/s<step>/``: ``before/`` holds the entities as they were
before the step changed or deleted them, ``created/`` the keys of entities it
inserted (as entities without properties). Parts are named by job, shard and
batch, and written only if absent: a replayed batch, whose first copy may already
have written, never replaces the first before-image. The manifests are written
once the step succeeded. Rolling back deletes what the steps created and writes
the before-images back with their keys, last step first.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mapper.datastore.rpc import Entity
from mapper.dump.files import open_dump_store
from mapper.dump.manifest import MANIFEST, Manifest, read_manifest, write_manifest
from mapper.dump.parts import PART_SUFFIX, read_part, scan_part, write_part
from mapper.engine.audit import BeforeWrite
from mapper.errors import JobStateError
from mapper.transfer.importer import ImportSpec, start_import

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime

logger = logging.getLogger(__name__)

HOOK = "mapper.migrate.backup:save_before_images"
#: Keys deleted per commit when a rollback removes what a migration created.
DELETE_BATCH = 500


def step_location(root: str, name: str, run: int, step: int) -> str:
    return f"{root.rstrip('/')}/{name}-r{run}/s{step}"


def hook_for(location: str) -> dict[str, Any]:
    """The ``before_write`` hook that backs a step up to ``location``."""
    return {"call": HOOK, "location": location}


def save_before_images(rt: Runtime, event: BeforeWrite) -> None:
    """The ``before_write`` hook: write the batch's before-images and created keys."""
    location = event.params["location"]
    relpath = f"{event.job_id}-s{event.shard}-b{event.batch}{PART_SUFFIX}"
    created = []
    for key in event.created:
        entity = Entity()
        entity.key.CopyFrom(key)
        created.append(entity)
    for sub, entities in (("before", list(event.before.values())), ("created", created)):
        store = open_dump_store(f"{location}/{sub}")
        if entities and not store.exists(relpath):  # the first copy of a batch wins
            write_part(f"{location}/{sub}", relpath, entities)


def seal(rt: Runtime, location: str, job_id: str) -> None:
    """Write the manifests of a step's backup once the step succeeded."""
    for sub in ("before", "created"):
        directory = f"{location}/{sub}"
        store = open_dump_store(directory)
        paths = sorted(p for p in store.list_files() if p.endswith(PART_SUFFIX))
        parts = [scan_part(directory, p) for p in paths]
        metadata = {"migration_job": job_id, "content": sub}
        manifest = Manifest.build(
            rt.settings.project, rt.settings.database or "", parts, metadata=metadata
        )
        write_manifest(directory, manifest)


def restore(rt: Runtime, location: str, import_id: str) -> dict[str, int]:
    """Undo one step: delete what it created, write back what it changed or deleted."""
    created = read_manifest(f"{location}/created")
    keys = [
        pb.key for part in created.parts for pb in read_part(f"{location}/created", part.path, part)
    ]
    for start in range(0, len(keys), DELETE_BATCH):
        rt.store.write([], keys[start : start + DELETE_BATCH])
    before = f"{location}/before"
    restored = read_manifest(before).totals["entities"]
    if restored:
        spec = ImportSpec(source=before, mode="keep", id=import_id, shards=1)
        _, run = start_import(rt, spec.validate())
        if run is not None:
            info = run.wait()
            if info.status.value != "succeeded":
                raise JobStateError(f"restoring {before} failed: {info.error}")
    return {"deleted": len(keys), "restored": restored}


def has_backup(location: str) -> bool:
    return all(
        open_dump_store(f"{location}/{sub}").exists(MANIFEST) for sub in ("before", "created")
    )
