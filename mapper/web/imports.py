"""``POST /_mapper/imports``: upload a dump archive, validate it whole, store it, import it."""

from __future__ import annotations

import datetime
import tarfile
import tempfile
import uuid
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO, Any

import flask
from werkzeug.exceptions import RequestEntityTooLarge

from mapper.dispatch.messages import check_job_id
from mapper.dump.files import open_dump_store
from mapper.dump.manifest import MANIFEST, MAX_MANIFEST_BYTES, copy_dump
from mapper.engine.runtime import Runtime
from mapper.errors import DumpFormatError, InvalidJobError, TooLargeError
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
        """Multipart: ``dump`` (a .tar.gz/.tgz/.tar or .zip of a dump) and the import's options.

        The request, the unpacked archive, its member count and each member are
        bounded (settings ``upload_max_*``); over a bound: 413 naming it, nothing kept.
        """
        settings = runtime.settings
        flask.request.max_content_length = settings.upload_max_bytes
        try:
            archive = flask.request.files.get("dump")
            form = flask.request.form
        except RequestEntityTooLarge as e:
            raise TooLargeError(
                f"the upload is over {settings.upload_max_bytes} bytes (MAPPER_UPLOAD_MAX_BYTES)"
            ) from e
        if archive is None or not archive.filename:
            raise InvalidJobError("upload the dump archive as the multipart field 'dump'")
        import_id = check_job_id(form.get("id") or _new_id())
        with tempfile.TemporaryDirectory(prefix="mapper-upload-") as work:
            saved = Path(work) / "archive"
            archive.save(saved)
            budget = Budget(settings.upload_max_unpacked_bytes, settings.upload_max_members)
            root = _dump_root(_extract(saved, Path(work) / "dump", budget))
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


class Budget:
    """What an archive may unpack: members, total bytes, and each member's bytes.

    Every bound is checked against what a member declares (refused before a byte
    is written) and against what is actually written (declared sizes can lie).
    """

    def __init__(self, max_bytes: int, max_members: int):
        self.max_bytes, self.max_members = max_bytes, max_members
        self.written, self.members = 0, 0

    def count(self, members: int) -> None:
        if members > self.max_members:
            raise TooLargeError(
                f"the archive has more than {self.max_members} members (MAPPER_UPLOAD_MAX_MEMBERS)"
            )

    def member(self, name: str) -> None:
        self.members += 1
        self.count(self.members)
        if name.startswith("/") or ".." in Path(name).parts or "\\" in name:
            raise DumpFormatError(f"archive member outside the dump: {name!r}")

    def limit(self, name: str) -> tuple[int, str]:
        """The bytes member ``name`` may still take, and the setting that says so."""
        left = self.max_bytes - self.written
        if PurePosixPath(name).name == MANIFEST and left > MAX_MANIFEST_BYTES:
            return MAX_MANIFEST_BYTES, "a manifest's bound"
        return left, f"{self.max_bytes} bytes unpacked (MAPPER_UPLOAD_MAX_UNPACKED_BYTES)"

    def check(self, name: str, size: int) -> None:
        limit, what = self.limit(name)
        if size > limit:
            raise TooLargeError(f"archive member {name!r} is over {limit} bytes: {what}")

    def copy(self, name: str, source: IO[bytes], target: Path) -> None:
        """Copy one member, counting its bytes as they are written."""
        target.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        with open(target, "xb") as out:
            while chunk := source.read(CHUNK):
                size += len(chunk)
                self.check(name, size)
                out.write(chunk)
        self.written += size


#: Bytes an archive member is copied by.
CHUNK = 1024 * 1024


def _extract(archive: Path, into: Path, budget: Budget) -> Path:
    """Unpack a tar (gzip or not) or zip archive of plain files within ``budget``."""
    into.mkdir()
    try:
        if zipfile.is_zipfile(archive):
            _unzip(archive, into, budget)
        elif tarfile.is_tarfile(archive):
            _untar(archive, into, budget)
        else:
            raise DumpFormatError("the upload is neither a tar nor a zip archive")
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
        raise DumpFormatError(f"cannot unpack the uploaded archive: {e}") from e
    return into


def _unzip(archive: Path, into: Path, budget: Budget) -> None:
    declared = _zip_member_count(archive)  # before the directory is read into memory
    if declared is not None:
        budget.count(declared)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            budget.member(info.filename)
            if info.is_dir():
                continue
            budget.check(info.filename, info.file_size)
            with zf.open(info) as source:
                budget.copy(info.filename, source, into / info.filename)


def _untar(archive: Path, into: Path, budget: Budget) -> None:
    with tarfile.open(archive) as tf:
        for member in tf:  # read lazily: a member over a bound stops the walk there
            budget.member(member.name)
            if member.isdir():
                continue
            if not member.isfile():
                raise DumpFormatError(f"archive member is not a plain file: {member.name!r}")
            budget.check(member.name, member.size)
            source = tf.extractfile(member)
            if source is not None:
                with source:
                    budget.copy(member.name, source, into / member.name)


def _zip_member_count(archive: Path) -> int | None:
    """The member count a zip's end record declares (None if it cannot be found)."""
    with open(archive, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 65_557))  # the end record and the longest comment
        tail = f.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) < at + 12:
            return None
        count = int.from_bytes(tail[at + 10 : at + 12], "little")
        locator = tail.rfind(b"PK\x06\x07", 0, at)
        if count != 0xFFFF or locator < 0:
            return count
        f.seek(int.from_bytes(tail[locator + 8 : locator + 16], "little"))
        record = f.read(40)  # zip64: the count is in the zip64 end record
        return int.from_bytes(record[32:40], "little") if record[:4] == b"PK\x06\x06" else None


def _dump_root(folder: Path) -> Path:
    """The folder holding manifest.json: the archive's top, or its only folder."""
    if (folder / MANIFEST).exists():
        return folder
    children = [p for p in folder.iterdir() if p.is_dir()]
    if len(children) == 1 and (children[0] / MANIFEST).exists():
        return children[0]
    raise DumpFormatError(f"incomplete dump: no {MANIFEST} at the top of the archive")
