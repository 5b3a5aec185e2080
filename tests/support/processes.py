"""``mapper`` run as a real subprocess with a fault plan, killed and run again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mapper.errors import NotFoundError

ROOT = Path(__file__).resolve().parents[2]
#: The lease of the killed commands: a re-run takes over within it.
LEASE = 2

Command = Callable[..., "subprocess.Popen[str]"]
#: Production's faults, at rates a run meets each of: latency, ambiguous commits (applied,
#: then an error), empty NOT_FINISHED pages, ABORTED commits and UNAVAILABLE.
FAULTS = "latency=0.01,ambiguous=0.02,empty=0.25,aborted=0.05,unavailable=0.01"


def command_starter(namespace: str, faults: str = "seed=1,latency=0.01", **more: str) -> Command:
    """start(*args) -> a Popen of ``mapper ARGS`` under the fault spec ``faults``
    (``python -m mapper.testing.faultcli``), its state in ``namespace``; ``more``
    environment variables on top."""
    env = {
        **os.environ,
        "MAPPER_STATE_NAMESPACE": namespace,
        "MAPPER_LEASE_SECONDS": str(LEASE),
        "MAPPER_SLICE_SECONDS": "3",
        "MAPPER_MAX_ATTEMPTS": "3",
        "MAPPER_FAULTS": faults,
        "PYTHONPATH": str(ROOT),
        **more,
    }
    env.pop("MAPPER_QUEUE", None)

    def start(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "mapper.testing.faultcli", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    return start


def kill_when(process: subprocess.Popen[str], ready: Callable[[], bool], timeout=150) -> None:
    """SIGKILL ``process`` as soon as ``ready()`` holds; fail if it ended before that.

    The timeout covers a re-run after an earlier kill that landed inside a transaction:
    Firestore keeps that transaction's locks for 60 s (measured), and the re-run waits
    them out (``LOCK_PATIENCE_SECONDS``) before it gets anywhere.
    """
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"ended before the kill: {process.communicate()[0]}"
        assert time.monotonic() < deadline, "never got far enough to be killed"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


def finish(process: subprocess.Popen[str], timeout: float = 120) -> str:
    """Wait for ``process`` to exit 0; return its output."""
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return output


def progress(fetch: Callable[[], Any], low: int, key: str = "processed") -> Callable[[], bool]:
    """True once ``fetch()`` (a status) counts ``low`` or more, and is not final."""

    def ready() -> bool:
        try:
            info = fetch()
        except NotFoundError:
            return False
        return info.counters.get(key, 0) >= low and not info.status.is_final

    return ready
