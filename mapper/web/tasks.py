"""Task endpoints: what Cloud Tasks (or the gcloud CLI, through a queue) delivers."""

from __future__ import annotations

from typing import Any

import flask

from mapper.dispatch.messages import FinalizeTask, SliceTask, task_from_json
from mapper.engine.runtime import Runtime
from mapper.errors import InvalidJobError
from mapper.web.auth import Verifier, require_task_auth
from mapper.web.jobs_api import start_from_json


def blueprint(runtime: Runtime, verifier: Verifier | None = None) -> flask.Blueprint:
    bp = flask.Blueprint(
        "mapper_tasks", __name__, url_prefix=f"{runtime.settings.url_prefix}/tasks"
    )
    guard = require_task_auth(runtime.settings, verifier)

    @bp.post("/slice")
    @guard
    def run_slice() -> Any:
        """One slice. Stale: a no-op; ahead: 503 (retried); retries spent: job FAILED, 200."""
        runtime.handle(_task(SliceTask))
        return {"ok": True}

    @bp.post("/finalize")
    @guard
    def finalize() -> Any:
        runtime.handle(_task(FinalizeTask))
        return {"ok": True}

    @bp.post("/start")
    @guard
    def start() -> Any:
        """Start a job from a task body (``gcloud tasks create-*-task --body-content``)."""
        return start_from_json(runtime, _json())

    return bp


def _task(kind: type[SliceTask] | type[FinalizeTask]) -> Any:
    task = task_from_json(flask.request.get_data())
    if not isinstance(task, kind):
        raise InvalidJobError(f"expected a {kind.kind} task, got a {task.kind} task")
    return task


def _json() -> Any:
    data = flask.request.get_json(silent=True, force=True)
    if not isinstance(data, dict):
        raise InvalidJobError("the request body must be a JSON object")
    return data
