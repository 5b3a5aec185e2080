"""A child process the test kit starts and must stop: spawn, wait until ready, stop its group.

The Datastore, Firestore and Cloud Tasks emulators are each a small process
tree (gcloud and a JVM; a virtualenv's script). Each runs in a session of its
own so that stopping it ends the whole tree and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from mapper.errors import ConfigurationError


@dataclasses.dataclass
class ManagedProcess:
    """A running child process group with a log; stop it (or use ``with``) when done."""

    process: subprocess.Popen[bytes] = dataclasses.field(repr=False)
    log_path: Path = dataclasses.field(repr=False)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10) -> None:
        """End the process and every child of its group."""
        if self.running:
            terminate_group(self.process.pid, timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``ready()`` until it holds; ConfigurationError (with the log's tail) if the
        process exits first or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise ConfigurationError(
                    f"{what} exited with status {self.process.returncode!r}:\n"
                    f"{log_tail(self.log_path)}"
                )
            if ready():
                return
            time.sleep(0.1)
        raise ConfigurationError(
            f"{what} did not answer within {timeout!r} s:\n{log_tail(self.log_path)}"
        )

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def spawn(args: list[str], log_path: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start ``args`` in a session of its own, stdout and stderr to ``log_path``."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
        )


def terminate_group(pgid: int, timeout: float) -> None:
    """SIGTERM the group's leaves first (the JVM), then SIGKILL whatever is left.

    Leaves first, so every parent is alive to reap its child: killing the whole
    group at once orphans the JVM, which then lingers as a zombie under init.
    """
    deadline = time.monotonic() + timeout
    while (members := _group_members(pgid)) and time.monotonic() < deadline:
        for pid in members.keys() - set(members.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _group_members(pgid: int) -> dict[int, int]:
    """Live processes of the group, pid -> parent pid (Linux /proc; empty elsewhere)."""
    members = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            state, ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            if int(pgrp) == pgid and state not in ("Z", "X"):
                members[int(stat.parent.name)] = int(ppid)
    return members


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def listening(host: str, port: int) -> bool:
    """True once something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
        return True
    return False


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"
