"""Local Datastore emulators (Datastore, Firestore in Datastore mode) for tests and demos."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import os
import shutil
import signal
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

from mapper.errors import ConfigurationError
from mapper.settings import Settings
from mapper.testing.process import (
    ManagedProcess,
    free_port,
    log_tail,
    port_is_free,
    spawn,
)

#: Per kind: the gcloud arguments, the SDK component directory, the Debian package.
_KINDS: dict[str, tuple[list[str], str, str]] = {
    "datastore": (
        ["beta", "emulators", "datastore", "start", "--no-store-on-disk", "--consistency=1.0"],
        "cloud-datastore-emulator",
        "google-cloud-cli-datastore-emulator",
    ),
    "firestore": (
        ["emulators", "firestore", "start", "--database-mode=datastore-mode"],
        "cloud-firestore-emulator",
        "google-cloud-cli-firestore-emulator",
    ),
}


@dataclasses.dataclass(kw_only=True)
class Emulator(ManagedProcess):
    """A running emulator process; stop it (or use it as a context manager) when done."""

    kind: str
    host: str
    project: str
    workdir: Path = dataclasses.field(repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point google-cloud clients at this emulator."""
        return client_env(self.host, self.project)

    @property
    def supports_metadata(self) -> bool:
        """``__kind__``, ``__property__`` and ``__namespace__`` queries."""
        return self.kind == "datastore"

    @property
    def supports_scatter(self) -> bool:
        """The ``__scatter__`` property used to pick shard split points."""
        return self.kind == "datastore"

    @property
    def max_txn_entity_groups(self) -> int:
        """Entity groups one transaction may touch (production allows 500)."""
        return 25 if self.kind == "datastore" else 500

    def reset(self) -> None:
        """Delete all data held by the emulator."""
        _post(self.url + "/reset", timeout=30)

    def stop(self, timeout: float = 10) -> None:
        """Stop gcloud and its Java child, leaving no process of the group behind."""
        super().stop(timeout)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Emulator:
        return self


def client_env(host: str, project: str) -> dict[str, str]:
    """Environment variables that point google-cloud clients at the emulator on ``host``."""
    return {
        "DATASTORE_EMULATOR_HOST": host,
        "DATASTORE_PROJECT_ID": project,
        "GOOGLE_CLOUD_PROJECT": project,
    }


def settings_for_tests(host: str, project: str, namespace: str, max_attempts: int = 3) -> Settings:
    """Settings for tests: state in ``namespace``, slices and leases short, few attempts,
    so crash and retry tests finish in seconds."""
    return Settings(
        project=project,
        emulator_host=host,
        state_namespace=namespace,
        slice_seconds=5.0,
        lease_seconds=2.0,
        max_attempts=max_attempts,
    )


def start_emulator(
    kind: str = "datastore",
    project: str = "demo",
    port: int | None = None,
    timeout: float = 60,
) -> Emulator:
    """Start an emulator on 127.0.0.1 and wait until it answers.

    Args:
        kind: ``"datastore"`` or ``"firestore"`` (Firestore in Datastore mode).
        project: Project id clients should use against it.
        port: TCP port; a free one when None.
        timeout: Seconds to wait for the emulator to answer ``GET /``.

    Raises:
        ConfigurationError: gcloud or the emulator component is missing, the port
            is taken, or the emulator did not come up (with the tail of its log).
    """
    args = _command(kind, project)
    if port is None:
        port = free_port()
    elif not port_is_free(port):
        raise ConfigurationError(f"port {port!r} is already in use; pick another or omit it")
    host = f"127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix=f"mapper-{kind}-emulator-"))
    args.append(f"--host-port={host}")
    if kind == "datastore":
        # Not the shared default in ~/.config: emulators running side by side must not collide.
        args.append(f"--data-dir={workdir / 'data'}")
    log_path = workdir / "emulator.log"
    env = dict(os.environ, CLOUDSDK_CORE_DISABLE_PROMPTS="1")
    emulator = Emulator(
        process=spawn(args, log_path, env),
        log_path=log_path,
        kind=kind,
        host=host,
        project=project,
        workdir=workdir,
    )
    try:
        emulator.wait_until(lambda: _answers(emulator.url), timeout, f"the {kind} emulator")
    except ConfigurationError as e:
        emulator.stop()
        raise ConfigurationError(
            f"{kind} emulator failed to start on {host}. Is it installed "
            f"(apt-get install {_KINDS[kind][2]}) and is Java on PATH? {e}"
        ) from e
    except BaseException:
        emulator.stop()
        raise
    return emulator


def _command(kind: str, project: str) -> list[str]:
    if kind not in _KINDS:
        raise ConfigurationError(f"unknown emulator kind {kind!r}; use one of {sorted(_KINDS)}")
    gcloud_args, component, package = _KINDS[kind]
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise ConfigurationError(
            f"gcloud is not on PATH: install the Google Cloud CLI with its {kind} emulator: "
            f"apt-get install {package}"
        )
    platform = Path(gcloud).resolve().parent.parent / "platform"
    # Only judge SDK layouts we recognise; anything else fails later, with its log.
    if platform.is_dir() and not (platform / component).is_dir():
        raise ConfigurationError(
            f"the {kind} emulator component is not installed in {str(platform.parent)!r}: "
            f"apt-get install {package} (or `gcloud components install {component}`)"
        )
    return [gcloud, *gcloud_args, f"--project={project}"]


def _answers(url: str) -> bool:
    """True once the emulator answers ``GET /`` with ``Ok``."""
    with (
        contextlib.suppress(OSError, http.client.HTTPException),
        urllib.request.urlopen(url + "/", timeout=2) as response,
    ):
        return bool(response.read().strip() == b"Ok")
    return False


def _post(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def _serve(kind: str, project: str, port: int | None) -> int:
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    with start_emulator(kind, project, port) as emulator:
        for name, value in emulator.env.items():
            print(f"export {name}={value}", flush=True)
        while not stopping.wait(0.5):
            if not emulator.running:
                print(f"{kind} emulator exited:\n{log_tail(emulator.log_path)}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m mapper.testing.emulator")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="run an emulator in the foreground")
    start.add_argument("--kind", choices=sorted(_KINDS), default="datastore")
    start.add_argument("--project", default="demo")
    start.add_argument("--port", type=int, default=None)
    options = parser.parse_args()
    try:
        sys.exit(_serve(options.kind, options.project, options.port))
    except ConfigurationError as e:
        sys.exit(f"error: {e}")
