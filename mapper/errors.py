"""The error tree: every error mapper raises on purpose is a MapperError."""

from __future__ import annotations


class MapperError(Exception):
    """Base of every error mapper raises on purpose."""

    #: HTTP status the handlers answer with when this error escapes a request.
    http_status = 400


class ConfigurationError(MapperError):
    """Settings are missing, malformed or contradict each other."""


class NotFoundError(MapperError):
    """A job, shard, mapper class or file does not exist."""

    http_status = 404


class InvalidJobError(MapperError):
    """A job's spec (mapper, params, options) cannot be run."""


class JobStateError(MapperError):
    """The operation does not apply to the job in its current state."""

    http_status = 409


class DumpFormatError(MapperError):
    """A dump is incomplete, corrupt, or of an unknown format version."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


class TooLargeError(MapperError):
    """An upload (or a part of it) is over one of the bounds set for it."""

    http_status = 413


class DispatchError(MapperError):
    """A task could not be enqueued."""

    http_status = 502


class AuthError(MapperError):
    """A request did not prove it comes from an allowed caller."""

    http_status = 403


class WriteConflict(MapperError):
    """Entities kept changing between a batch's read and its conditional write."""

    http_status = 409


class PermanentSliceError(MapperError):
    """A slice failed in a way no retry can fix (bad argument, entity too large)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


# Control-flow signals: not errors, never logged as such.


class RetrySlice(Exception):
    """Deliver this task again later (a future slice, or a lease held by a twin)."""

    def __init__(self, reason: str, delay: float = 1.0):
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class CleanupError(MapperError):
    """A cleanup cannot plan or apply as asked (bad models, spec, plan or dump scope)."""
