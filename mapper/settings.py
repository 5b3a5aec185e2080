"""Settings: read once from the environment, validated, then passed explicitly."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping

from mapper.errors import ConfigurationError

_QUEUE_RE = re.compile(r"^projects/([^/]+)/locations/([^/]+)/queues/([A-Za-z0-9-]+)$")
_HOSTPORT_RE = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d+$")
_URL_PREFIX_RE = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything mapper needs to know about where it runs.

    Build it with :meth:`from_env` (or directly in tests) and pass it down;
    nothing in mapper reads the environment on its own.
    """

    project: str
    database: str = ""
    emulator_host: str | None = None
    #: Namespace holding mapper's own records (_MapperJob, _MapperShard).
    state_namespace: str = ""
    #: ``projects/P/locations/L/queues/Q``; None selects the local dispatcher.
    queue: str | None = None
    tasks_emulator_host: str | None = None
    #: App Engine targets: service/version to route slices to.
    task_service: str | None = None
    task_version: str | None = None
    #: HTTP targets: base URL of the app, and the OIDC identity tasks carry.
    task_url: str | None = None
    task_service_account: str | None = None
    task_audience: str | None = None
    #: Admin API: "iap", "oidc" or "off" (local development only).
    auth: str = "oidc"
    admin_emails: tuple[str, ...] = ()
    iap_audience: str | None = None
    on_app_engine: bool = False
    #: Time box of one slice, in seconds.
    slice_seconds: float = 540.0
    #: A lease outlives its last renewal by this long (renewed at every batch).
    lease_seconds: float = 120.0
    #: Attempts of one slice before the job is FAILED.
    max_attempts: int = 5
    #: Concurrent shard workers of the local dispatcher.
    local_workers: int = 8
    #: Where dumps uploaded to ``POST /_mapper/imports`` are kept (a directory or gs://).
    upload_location: str = "uploads"
    #: The app's ndb global cache, kept coherent with every write (see datastore/cache.py):
    #: ``redis://HOST:PORT/DB``, ``memcached://HOST:PORT`` or ``module:callable``.
    ndb_global_cache: str | None = None
    #: Path under which mapper.web mounts its endpoints, and where tasks are sent.
    url_prefix: str = "/_mapper"
    #: Bounds of one upload: the request, its archive unpacked, the archive's members.
    upload_max_bytes: int = 256 * 1024 * 1024
    upload_max_unpacked_bytes: int = 1024 * 1024 * 1024
    upload_max_members: int = 100_000
    #: The app's migrations package (``myapp.migrations``): ``/_mapper/migrations`` and the
    #: status page list its ledger. None: no migrations over HTTP.
    migrations_package: str | None = None
    #: Ramp-up (the 500/50/5 rule) for jobs that write, unless a job says otherwise:
    #: None means on in production and off against an emulator (nothing to warm up there,
    #: and a test or demo should not wait minutes at 500/s).
    ramp_up: bool | None = None
    #: The ramp: ``ramp_start_rate`` ops/s, times ``ramp_growth`` every ``ramp_step_seconds``.
    ramp_start_rate: float = 500.0
    ramp_growth: float = 1.5
    ramp_step_seconds: float = 300.0
    #: Back-off: the client-side throttling rule looks at this many seconds of writes.
    backoff_window_seconds: float = 60.0
    #: A slice waits at most this long for budget (and never past a quarter lease);
    #: a longer wait ends the slice and its successor is enqueued with that delay.
    throttle_max_wait: float = 10.0

    @property
    def ramp_up_default(self) -> bool:
        """Whether a writing job ramps up when it does not say."""
        return self.ramp_up if self.ramp_up is not None else self.emulator_host is None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read settings from ``env`` (default ``os.environ``) and validate them."""
        env = os.environ if env is None else env
        project = env.get("GOOGLE_CLOUD_PROJECT") or env.get("DATASTORE_PROJECT_ID") or ""
        values: dict[str, object] = dict(
            project=project,
            database=env.get("MAPPER_DATABASE", ""),
            emulator_host=env.get("DATASTORE_EMULATOR_HOST") or None,
            state_namespace=env.get("MAPPER_STATE_NAMESPACE", ""),
            queue=env.get("MAPPER_QUEUE") or None,
            tasks_emulator_host=env.get("CLOUD_TASKS_EMULATOR_HOST") or None,
            task_service=env.get("MAPPER_TASK_SERVICE") or None,
            task_version=env.get("MAPPER_TASK_VERSION") or None,
            task_url=env.get("MAPPER_TASK_URL") or None,
            task_service_account=env.get("MAPPER_TASK_SERVICE_ACCOUNT") or None,
            task_audience=env.get("MAPPER_TASK_AUDIENCE") or None,
            auth=env.get("MAPPER_AUTH", "oidc"),
            admin_emails=tuple(
                e.strip() for e in env.get("MAPPER_ADMIN_EMAILS", "").split(",") if e.strip()
            ),
            iap_audience=env.get("MAPPER_IAP_AUDIENCE") or None,
            on_app_engine=bool(env.get("GAE_ENV", "").startswith("standard")),
            slice_seconds=_number(env, "MAPPER_SLICE_SECONDS", 540.0),
            lease_seconds=_number(env, "MAPPER_LEASE_SECONDS", 120.0),
            max_attempts=int(_number(env, "MAPPER_MAX_ATTEMPTS", 5)),
            local_workers=int(_number(env, "MAPPER_LOCAL_WORKERS", 8)),
            upload_location=env.get("MAPPER_UPLOAD_LOCATION", "uploads"),
            ndb_global_cache=env.get("MAPPER_NDB_GLOBAL_CACHE") or None,
            url_prefix=env.get("MAPPER_URL_PREFIX") or "/_mapper",
            migrations_package=env.get("MAPPER_MIGRATIONS") or None,
            upload_max_bytes=int(_number(env, "MAPPER_UPLOAD_MAX_BYTES", cls.upload_max_bytes)),
            upload_max_unpacked_bytes=int(
                _number(env, "MAPPER_UPLOAD_MAX_UNPACKED_BYTES", cls.upload_max_unpacked_bytes)
            ),
            upload_max_members=int(
                _number(env, "MAPPER_UPLOAD_MAX_MEMBERS", cls.upload_max_members)
            ),
            ramp_up=_flag(env, "MAPPER_RAMP_UP"),
            ramp_start_rate=_number(env, "MAPPER_RAMP_START_RATE", cls.ramp_start_rate),
            ramp_growth=_number(env, "MAPPER_RAMP_GROWTH", cls.ramp_growth),
            ramp_step_seconds=_number(env, "MAPPER_RAMP_STEP_SECONDS", cls.ramp_step_seconds),
            backoff_window_seconds=_number(
                env, "MAPPER_BACKOFF_WINDOW_SECONDS", cls.backoff_window_seconds
            ),
            throttle_max_wait=_number(env, "MAPPER_THROTTLE_MAX_WAIT", cls.throttle_max_wait),
        )
        values.update(overrides)
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ConfigurationError naming the first bad setting."""
        if not self.project:
            raise ConfigurationError(
                "GOOGLE_CLOUD_PROJECT is not set: name the project (any id works "
                "against the emulator, e.g. GOOGLE_CLOUD_PROJECT=demo)"
            )
        if self.emulator_host is not None and not _HOSTPORT_RE.match(self.emulator_host):
            raise ConfigurationError(
                f"DATASTORE_EMULATOR_HOST must be HOST:PORT, got {self.emulator_host!r}"
            )
        if self.queue is not None and not _QUEUE_RE.match(self.queue):
            raise ConfigurationError(
                f"MAPPER_QUEUE must look like projects/P/locations/L/queues/Q, got {self.queue!r}"
            )
        if self.auth not in ("iap", "oidc", "off"):
            raise ConfigurationError(f"MAPPER_AUTH must be iap, oidc or off, got {self.auth!r}")
        if self.auth == "off" and self.on_app_engine:
            raise ConfigurationError("MAPPER_AUTH=off is refused on App Engine")
        if not _URL_PREFIX_RE.match(self.url_prefix):
            raise ConfigurationError(
                "MAPPER_URL_PREFIX must be a path such as /_mapper or /admin/mapper "
                f"(leading slash, no trailing slash), got {self.url_prefix!r}"
            )
        if self.slice_seconds <= 0 or self.lease_seconds <= 0 or self.max_attempts < 1:
            raise ConfigurationError(
                "MAPPER_SLICE_SECONDS and MAPPER_LEASE_SECONDS must be > 0 and "
                f"MAPPER_MAX_ATTEMPTS >= 1, got {self.slice_seconds!r}, "
                f"{self.lease_seconds!r}, {self.max_attempts!r}"
            )

        uploads = (self.upload_max_bytes, self.upload_max_unpacked_bytes, self.upload_max_members)
        if min(uploads) < 1:
            raise ConfigurationError(
                "MAPPER_UPLOAD_MAX_BYTES, MAPPER_UPLOAD_MAX_UNPACKED_BYTES and "
                f"MAPPER_UPLOAD_MAX_MEMBERS must be >= 1, got {uploads!r}"
            )

        throttle = {
            "MAPPER_RAMP_START_RATE": self.ramp_start_rate,
            "MAPPER_RAMP_STEP_SECONDS": self.ramp_step_seconds,
            "MAPPER_BACKOFF_WINDOW_SECONDS": self.backoff_window_seconds,
            "MAPPER_THROTTLE_MAX_WAIT": self.throttle_max_wait,
        }
        for name, value in throttle.items():
            if not value > 0:
                raise ConfigurationError(f"{name} must be > 0, got {value!r}")
        if not self.ramp_growth >= 1:
            raise ConfigurationError(f"MAPPER_RAMP_GROWTH must be >= 1, got {self.ramp_growth!r}")

    def replace(self, **changes: object) -> Settings:
        """A copy with ``changes`` applied and validated."""
        settings = dataclasses.replace(self, **changes)  # type: ignore[arg-type]
        settings.validate()
        return settings


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as e:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from e


def _flag(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return None
    if raw in ("1", "true", "on", "yes"):
        return True
    if raw in ("0", "false", "off", "no"):
        return False
    raise ConfigurationError(f"{name} must be on or off (1/0, true/false), got {raw!r}")
