"""``POST /_mapper/imports``: upload a dump archive, validate it whole, store it, import it."""

from __future__ import annotations

import datetime
import tarfile
import tempfile
import uuid
import zipfile
from pathlib import Path
from typing import Any

import flask

from mapper.dispatch.messages import check_job_id
from mapper.dump.files import open_dump_store
from mapper.dump.manifest import MANIFEST, copy_dump
from mapper.engine.runtime import Runtime
from mapper.errors import DumpFormatError, InvalidJobError
from mapper.transfer.importer import ImportSpec, plan_import
from mapper.web.auth import Verifier, require_admin_auth
from mapper.web.jobs_api import start_from_json

#: Form fields that may repeat, as the CLI's options do.
_LISTS = ("natural_key", "default", "rename", "drop")
_FLAGS = ("move_project", "dry_run")


def blueprint(runtime: Runtime, verifier: Verifier | None = None) -> flask.Blueprint:
    bp = flask.Blueprint(
        "mapper_imports", __name__, url_prefix=f"{runtime.settings.url_prefix}/imports"
    )
    guard = require_admin_auth(runtime.settings, verifier)

    @bp.post("")
    @guard
    def upload() -> Any:
        """Multipart: ``dump`` (a .tar.gz/.tgz/.tar or .zip of a dump) and the import's options."""
        archive = flask.request.files.get("dump")
        if archive is None or not archive.filename:
            raise InvalidJobError("upload the dump archive as the multipart field 'dump'")
        form = flask.request.form
        import_id = check_job_id(form.get("id") or _new_id())
        with tempfile.TemporaryDirectory(prefix="mapper-upload-") as work:
            saved = Path(work) / "archive"
            archive.save(saved)
            root = _dump_root(_extract(saved, Path(work) / "dump"))
            # Validate the whole dump before anything is stored or written.
            plan_import(runtime, ImportSpec(source=str(root), namespace=form.get("namespace")))
            stored = f"{runtime.settings.upload_location.rstrip('/')}/{import_id}"
            copy_dump(root, stored)
        try:
            return start_from_json(runtime, _job(form, stored, import_id))
        except Exception:
            open_dump_store(stored).delete_all()  # a refused import keeps no upload
            raise

    return bp


def _new_id() -> str:
    return f"upload-{datetime.datetime.now(datetime.UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def _job(form: Any, source: str, import_id: str) -> dict[str, Any]:
    params: dict[str, Any] = {"source": source, "mode": form.get("mode", "keep")}
    for name in _LISTS:
        if form.getlist(name):
            params[name] = form.getlist(name)
    for name in _FLAGS:
        params[name] = form.get(name, "").lower() in ("1", "true", "yes", "on")
    for name in ("rename_names", "dangling", "on_conflict"):
        if form.get(name):
            params[name] = form[name]
    job: dict[str, Any] = {"mapper": "import", "params": params, "id": import_id}
    for name in ("shards", "batch_size"):
        if form.get(name):
            job[name] = form.get(name, type=int)
    if form.get("namespace") is not None:
        job["namespace"] = form["namespace"]
    return job


def _extract(archive: Path, into: Path) -> Path:
    """Unpack a tar (gzip or not) or zip archive; refuse members outside ``into``."""
    into.mkdir()
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    if name.startswith("/") or ".." in Path(name).parts:
                        raise DumpFormatError(f"archive member outside the dump: {name!r}")
                zf.extractall(into)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                tf.extractall(into, filter="data")  # refuses absolute paths, .., links out
        else:
            raise DumpFormatError("the upload is neither a tar nor a zip archive")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as e:
        raise DumpFormatError(f"cannot unpack the uploaded archive: {e}") from e
    return into


def _dump_root(folder: Path) -> Path:
    """The folder holding manifest.json: the archive's top, or its only folder."""
    if (folder / MANIFEST).exists():
        return folder
    children = [p for p in folder.iterdir() if p.is_dir()]
    if len(children) == 1 and (children[0] / MANIFEST).exists():
        return children[0]
    raise DumpFormatError(f"incomplete dump: no {MANIFEST} at the top of the archive")
