"""The ``mapper`` command with a fault plan installed: ``python -m mapper.testing.faultcli ARGS``.

``MAPPER_FAULTS`` holds the plan as a spec (``FaultPlan.from_spec``), e.g.
``seed=3,latency=0.02,aborted=0.1,unavailable=0.01``; the rest of the settings
come from the environment as for ``mapper``. Recovery tests run it as a real
subprocess, kill it with SIGKILL mid-job and run the same command again.

What the plan injected is printed to stderr at exit and, with
``MAPPER_FAULTS_REPORT=DIR``, kept in ``DIR/<pid>.json`` while the command runs, so
that a run killed with SIGKILL still tells what it met.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from mapper.cli.main import main as mapper_main
from mapper.engine.runtime import Runtime
from mapper.settings import Settings
from mapper.testing.faults import FaultPlan


def main(argv: list[str] | None = None) -> None:
    plan = FaultPlan.from_spec(os.environ.get("MAPPER_FAULTS", ""))
    report = os.environ.get("MAPPER_FAULTS_REPORT")
    if report:
        threading.Thread(target=_keep_reporting, args=(plan, Path(report)), daemon=True).start()
    rt = Runtime(Settings.from_env(), faults=plan)
    try:
        mapper_main.main(args=argv, prog_name="mapper", obj=rt)
    finally:
        rt.close()
        if report:
            _report(plan, Path(report))
        print(f"faults injected: {_injected(plan)}", file=sys.stderr)


def _injected(plan: FaultPlan) -> str:
    return json.dumps(dict(sorted(plan.injected.items())))


def _report(plan: FaultPlan, folder: Path) -> None:
    path = folder / f"{os.getpid()}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(_injected(plan))
    os.replace(temporary, path)


def _keep_reporting(plan: FaultPlan, folder: Path) -> None:
    while True:
        _report(plan, folder)
        time.sleep(0.2)


if __name__ == "__main__":
    main(sys.argv[1:])
