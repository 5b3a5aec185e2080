"""Where a dump's files live: a local directory or a gs:// prefix."""

from __future__ import annotations

import abc
import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import IO, Any, TypeAlias

from google.api_core.exceptions import NotFound

from mapper.errors import ConfigurationError, DumpFormatError

GCS_CHUNK = 8 * 1024 * 1024

# -- where the files live --------------------------------------------------------


class DumpStore(abc.ABC):
    """The files of one dump, named by '/'-separated paths relative to its root."""

    @abc.abstractmethod
    def location(self, relpath: str = "") -> str:
        """The full name of ``relpath`` (or of the root), for messages."""

    @abc.abstractmethod
    def open_read(self, relpath: str) -> IO[bytes]:
        """Open ``relpath`` for reading; FileNotFoundError if it does not exist."""

    @abc.abstractmethod
    def open_write(self, relpath: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """Write ``relpath`` whole: it appears (or is replaced) only on a clean exit."""

    @abc.abstractmethod
    def exists(self, relpath: str) -> bool:
        """Whether the file ``relpath`` exists."""

    @abc.abstractmethod
    def list_files(self, prefix: str = "") -> list[str]:
        """The relative paths of the files under the folder ``prefix``, sorted."""

    @abc.abstractmethod
    def delete_all(self) -> None:
        """Remove the whole dump (every file under this location)."""

    @abc.abstractmethod
    def probe_write(self) -> None:
        """Write a file here and remove it again; raise whatever stops that."""

    def check_writable(self) -> None:
        """Raise ConfigurationError naming the location and the reason if it cannot be
        written: before a job starts, not when its first part (or, for an empty kind,
        its manifest) is due."""
        try:
            self.probe_write()
        except Exception as e:
            raise ConfigurationError(f"cannot write the dump to {self.location()}: {e}") from e


#: The probe file's name: list_files skips ``.tmp-`` names, so a left-over is harmless.
PROBE = ".tmp-mapper-probe"


DumpLocation: TypeAlias = "str | os.PathLike[str] | DumpStore"


class LocalDumpStore(DumpStore):
    """A dump in a local directory; writes go to a temp file renamed into place."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = os.path.abspath(os.fspath(root))

    def _file(self, relpath: str) -> str:
        return os.path.join(self.root, *check_relpath(relpath).split("/"))

    def location(self, relpath: str = "") -> str:
        return self._file(relpath) if relpath else self.root

    def open_read(self, relpath: str) -> IO[bytes]:
        return open(self._file(relpath), "rb")  # noqa: SIM115 - the caller closes it

    @contextlib.contextmanager
    def open_write(self, relpath: str) -> Iterator[IO[bytes]]:
        final = self._file(relpath)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        temp = f"{final}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            with open(temp, "xb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    def exists(self, relpath: str) -> bool:
        return os.path.isfile(self._file(relpath))

    def list_files(self, prefix: str = "") -> list[str]:
        found = []
        for dirpath, _dirs, files in os.walk(self.location(prefix)):
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            found += [n if rel == "." else f"{rel}/{n}" for n in files if ".tmp-" not in n]
        return sorted(found)

    def delete_all(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def probe_write(self) -> None:
        os.makedirs(self.root, exist_ok=True)
        probe = os.path.join(self.root, f"{PROBE}-{os.getpid()}-{os.urandom(4).hex()}")
        with open(probe, "xb") as f:
            f.write(b"probe")
        os.unlink(probe)


class GcsDumpStore(DumpStore):
    """A dump under ``gs://bucket/prefix``; an object appears only once fully uploaded."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None):
        # google-cloud-storage is needed only for gs:// dumps: loaded when one is opened.
        from google.cloud import storage  # type: ignore[attr-defined]  # noqa: PLC0415

        self.client = client if client is not None else storage.Client()
        self.bucket = self.client.bucket(bucket)
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def _name(self, relpath: str) -> str:
        return self.prefix + check_relpath(relpath)

    def location(self, relpath: str = "") -> str:
        name = self._name(relpath) if relpath else self.prefix
        return f"gs://{self.bucket.name}/{name}".rstrip("/")

    def open_read(self, relpath: str) -> IO[bytes]:
        blob = self.bucket.blob(self._name(relpath))
        try:
            blob.reload()  # a missing object fails here, not at the first read
        except NotFound as e:
            raise FileNotFoundError(self.location(relpath)) from e
        return blob.open("rb", chunk_size=GCS_CHUNK)  # type: ignore[no-any-return]

    def open_write(self, relpath: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        # A BlobWriter cancels its upload when the with-block raises.
        blob = self.bucket.blob(self._name(relpath))
        return blob.open("wb", chunk_size=GCS_CHUNK, ignore_flush=True)  # type: ignore[no-any-return]

    def exists(self, relpath: str) -> bool:
        return bool(self.bucket.blob(self._name(relpath)).exists())

    def list_files(self, prefix: str = "") -> list[str]:
        folder = self._name(prefix) + "/" if prefix else self.prefix
        blobs = self.client.list_blobs(self.bucket, prefix=folder)
        return sorted(b.name[len(self.prefix) :] for b in blobs)

    def delete_all(self) -> None:
        if not self.prefix:
            raise ConfigurationError(f"refusing to empty the whole bucket {self.location()!r}")
        for blob in self.client.list_blobs(self.bucket, prefix=self.prefix):
            blob.delete()

    def probe_write(self) -> None:
        blob = self.bucket.blob(f"{self.prefix}{PROBE}-{os.urandom(8).hex()}")
        blob.upload_from_string(b"probe")
        blob.delete()


def open_dump_store(location: DumpLocation, *, gcs_client: Any = None) -> DumpStore:
    """The store for a local path or a ``gs://bucket/prefix`` URL (a store is returned as is)."""
    if isinstance(location, DumpStore):
        return location
    text = os.fspath(location)
    if text.startswith("gs://"):
        bucket, _, prefix = text[len("gs://") :].partition("/")
        if not bucket:
            raise ConfigurationError(f"a gs:// dump location needs a bucket: {text!r}")
        try:
            return GcsDumpStore(bucket, prefix, gcs_client)
        except ImportError as e:
            raise ConfigurationError(f"{text!r}: gs:// needs google-cloud-storage installed") from e
    if "://" in text:
        raise ConfigurationError(f"unsupported dump location {text!r}: use a local path or gs://")
    return LocalDumpStore(text)


def check_relpath(relpath: str) -> str:
    """Return ``relpath`` if it names a file inside a dump, else raise DumpFormatError."""
    parts = relpath.split("/") if isinstance(relpath, str) else [""]
    if any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
        raise DumpFormatError(f"not a relative path inside the dump: {relpath!r}")
    return relpath
