"""Task routing: a delivered task to the code that runs it (a slice, or a finalize)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mapper.dispatch.messages import FinalizeTask, SliceTask, Task
from mapper.engine.finalize import finalize
from mapper.engine.slices import run_slice

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime


def route(rt: Runtime, task: Task) -> None:
    """Run one task inside the Runtime's ndb context (what task endpoints and dispatchers call)."""
    with rt.context():
        if isinstance(task, SliceTask):
            run_slice(rt, task)
        elif isinstance(task, FinalizeTask):
            finalize(rt, task)
