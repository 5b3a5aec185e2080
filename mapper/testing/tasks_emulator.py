"""The Cloud Tasks emulator (PyPI gcloud-tasks-emulator) for tests and local runs.

gcloud-tasks-emulator pins protobuf<5, which the app's own google-cloud-tasks
cannot share, so it lives in its own virtualenv, ``.venv-tasks`` in the working
directory or ``$MAPPER_TASKS_EMULATOR_VENV`` (created on first use). Point the app at it with
``CLOUD_TASKS_EMULATOR_HOST=localhost:PORT``.

How it delivers (read from gcloud-tasks-emulator 0.6.2's ``server.py``, and
checked by tests/integration/test_cloudtasks_emulator.py):

- It serves the Cloud Tasks gRPC API, without TLS or auth, on ``[::]:PORT``.
  Queues must exist before CreateTask (``-d projects/P/locations/L/queues/Q``,
  or ``-Q queue.yaml -P P -L L``); an unknown queue is FAILED_PRECONDITION.
- **App Engine targets** go to ``http://TARGET_HOST:TARGET_PORT{relative_uri}``
  (``--target-host``, default localhost; ``--target-port``); ``app_engine_routing``
  is ignored. Headers: the task's own, plus ``X-AppEngine-QueueName`` (the
  *full* queue path, where App Engine sends the short name),
  ``X-AppEngine-TaskName`` (the task id), ``X-AppEngine-TaskRetryCount``,
  ``X-AppEngine-TaskExecutionCount`` (both: deliveries so far, 0 first) and
  ``X-AppEngine-TaskETA``.
- **HTTP targets** go to ``http_request.url`` as is (target host/port unused),
  with ``X-CloudTasks-QueueName``/``TaskName``/``TaskRetryCount``/
  ``TaskExecutionCount``/``TaskETA``. The ``oidc_token`` is ignored: no
  ``Authorization`` header is sent, so handlers behind OIDC need
  ``MAPPER_AUTH=off`` against the emulator.
- Header names arrive as urllib capitalises them (``X-appengine-queuename``):
  read them case-insensitively, as Flask's ``request.headers`` does.
- One thread per queue delivers its tasks **one at a time**, polling every
  0.1 s, with no request timeout: a handler that hangs stalls the queue.
- ``schedule_time`` is honoured (a task is not sent before it);
  ``dispatch_deadline`` and queue rate/retry settings are ignored.
- A 4xx/5xx answer (or a connection error) puts the task back at the end of
  the queue: it is retried on the next pass (~0.1 s), forever, no backoff, unless
  ``--max-retries`` is given. 2xx/3xx completes it.
- **No de-duplication**: CreateTask with a name already used (even one still
  queued) succeeds again and the task is delivered twice; ALREADY_EXISTS never
  happens. Tests that need it use a fake client.
- State is in memory only; stopping the process forgets every queue and task.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import subprocess
import sys
from pathlib import Path

from mapper.errors import ConfigurationError
from mapper.testing.process import ManagedProcess, free_port, listening, spawn

#: Pinned: the delivery notes above were read from this version.
EMULATOR_REQUIREMENT = "gcloud-tasks-emulator==0.6.2"
DEFAULT_QUEUE = "projects/demo/locations/us-central1/queues/mapper"


def default_venv() -> Path:
    """The emulator's virtualenv: ``MAPPER_TASKS_EMULATOR_VENV``, else ``.venv-tasks`` here."""
    return Path(os.environ.get("MAPPER_TASKS_EMULATOR_VENV") or Path.cwd() / ".venv-tasks")


def log_dir() -> Path:
    """Where emulator logs go: ``.emulators`` in the working directory."""
    return Path.cwd() / ".emulators"


@dataclasses.dataclass(kw_only=True)
class TasksEmulator(ManagedProcess):
    """A running emulator process; ``stop()`` ends its whole process group."""

    host: str
    queue: str
    target_port: int

    def __enter__(self) -> TasksEmulator:
        return self


def start_tasks_emulator(
    port: int | None = None,
    queue: str = DEFAULT_QUEUE,
    target_port: int = 8080,
    target_host: str = "localhost",
    max_retries: int | None = None,
    venv: Path | None = None,
    timeout: float = 30.0,
) -> TasksEmulator:
    """Start the emulator with ``queue`` created; return once it accepts connections.

    Args:
        port: gRPC port; a free one when None.
        queue: full name of the queue to create.
        target_port: where App Engine-target tasks are POSTed (the app's port).
        target_host: host of App Engine-target deliveries.
        max_retries: give up a failing task after this many retries (default: never).
        venv: the emulator's own virtualenv, created if missing (default: default_venv()).
        timeout: seconds to wait for the port to open.

    Raises:
        ConfigurationError: the emulator could not be installed or did not start.
    """
    executable = ensure_emulator_installed(venv)
    port = port or free_port()
    log_dir().mkdir(exist_ok=True)
    log_path = log_dir() / f"tasks-emulator-{port}.log"
    command = [str(executable), "start", f"--port={port}", f"--target-port={target_port}"]
    command += [f"--target-host={target_host}", f"--default-queue={queue}"]
    if max_retries is not None:
        command.append(f"--max-retries={max_retries}")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONWARNINGS"] = "ignore::FutureWarning"
    emulator = TasksEmulator(
        process=spawn(command, log_path, env),
        log_path=log_path,
        host=f"localhost:{port}",
        queue=queue,
        target_port=target_port,
    )
    try:
        emulator.wait_until(
            lambda: listening("localhost", port), timeout, "the Cloud Tasks emulator"
        )
    except BaseException:
        emulator.stop()
        raise
    return emulator


def ensure_emulator_installed(venv: Path | None = None) -> Path:
    """Create ``venv`` with the pinned emulator unless it is there; return its script."""
    venv = venv or default_venv()
    executable = venv / "bin" / "gcloud-tasks-emulator"
    if executable.exists():
        return executable
    venv.parent.mkdir(parents=True, exist_ok=True)
    # Two test processes may get here at once: one installs, the other waits.
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not executable.exists():
            _run([sys.executable, "-m", "venv", str(venv)])
            _run([str(venv / "bin" / "pip"), "install", "-q", EMULATOR_REQUIREMENT])
    return executable


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ConfigurationError(
            f"installing the Cloud Tasks emulator failed: {' '.join(command)!r} exited "
            f"{result.returncode}: {(result.stderr or result.stdout)[-2000:]}"
        )
