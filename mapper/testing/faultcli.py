"""The ``mapper`` command with a fault plan installed: ``python -m mapper.testing.faultcli ARGS``.

``MAPPER_FAULTS`` holds the plan as a spec (``FaultPlan.from_spec``), e.g.
``seed=3,latency=0.02,aborted=0.1,unavailable=0.01``; the rest of the settings
come from the environment as for ``mapper``. Recovery tests run it as a real
subprocess, kill it with SIGKILL mid-job and run the same command again.
"""

from __future__ import annotations

import os
import sys

from mapper.cli.main import main as mapper_main
from mapper.engine.runtime import Runtime
from mapper.settings import Settings
from mapper.testing.faults import FaultPlan


def main(argv: list[str] | None = None) -> None:
    plan = FaultPlan.from_spec(os.environ.get("MAPPER_FAULTS", ""))
    rt = Runtime(Settings.from_env(), faults=plan)
    try:
        mapper_main.main(args=argv, prog_name="mapper", obj=rt)
    finally:
        rt.close()


if __name__ == "__main__":
    main(sys.argv[1:])
