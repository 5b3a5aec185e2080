"""The status page: jobs, their shards, progress, counters and errors, as HTML."""

from __future__ import annotations

from typing import Any

import flask

from mapper.engine.runtime import Runtime
from mapper.engine.status import list_jobs
from mapper.web.auth import Verifier, require_admin_auth


def blueprint(runtime: Runtime, verifier: Verifier | None = None) -> flask.Blueprint:
    bp = flask.Blueprint(
        "mapper_status",
        __name__,
        url_prefix=runtime.settings.url_prefix,
        template_folder="templates",
    )
    guard = require_admin_auth(runtime.settings, verifier)

    @bp.get("/")
    @guard
    def page() -> Any:
        limit = flask.request.args.get("limit", 20, type=int)
        listed = [j.to_json() for j in list_jobs(runtime, limit=max(1, min(limit, 200)))]
        return flask.render_template(
            "status.html", jobs=[_view(job) for job in listed], refresh=_refresh(listed)
        )

    return bp


def _refresh(listed: list[dict[str, Any]]) -> int | None:
    """Reload every 3 s while something runs."""
    final = ("succeeded", "failed", "aborted")
    return 3 if any(job["status"] not in final for job in listed) else None


def _view(job: dict[str, Any]) -> dict[str, Any]:
    shards = job["shards"]
    return {
        **job,
        "counters_text": ", ".join(f"{k}={v}" for k, v in job["counters"].items()),
        "done_fraction": f"{job['shards_done']}/{len(shards)}",
        "shard_rows": [
            {
                **shard,
                "counters_text": ", ".join(f"{k}={v}" for k, v in shard["counters"].items()),
            }
            for shard in shards
        ],
    }
