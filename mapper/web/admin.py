"""The job admin API: start, list, read, abort, pause and resume jobs (JSON)."""

from __future__ import annotations

from typing import Any

import flask

from mapper.engine.jobs import abort_job, pause_job, resume_job, throttle_job
from mapper.engine.runtime import Runtime
from mapper.engine.status import list_jobs
from mapper.errors import AuthError, InvalidJobError
from mapper.web.auth import Verifier, require_admin_auth
from mapper.web.console_data import CountCache, job_view
from mapper.web.jobs_api import start_from_json

ACTIONS = {"abort": abort_job, "pause": pause_job, "resume": resume_job}


def blueprint(runtime: Runtime, verifier: Verifier | None = None) -> flask.Blueprint:
    bp = flask.Blueprint("mapper_admin", __name__, url_prefix=f"{runtime.settings.url_prefix}/jobs")
    guard = require_admin_auth(runtime.settings, verifier)
    counts = CountCache()

    @bp.before_request
    def refuse_cross_site_posts() -> None:
        """A browser says where a request comes from (``Sec-Fetch-Site``): a POST that
        another site made a logged-in browser send (IAP signs in by cookie) is refused.
        API clients send no such header; the console's forms are same-origin."""
        site = flask.request.headers.get("Sec-Fetch-Site")
        if flask.request.method == "POST" and site in ("cross-site", "same-site"):
            raise AuthError(f"refused: a {site} request cannot start or change jobs")

    @bp.post("")
    @guard
    def start() -> Any:
        """``{"mapper": "module:Class", "params": {}, "shards": N, ...}`` -> ``{"id": ...}``."""
        data = flask.request.get_json(silent=True, force=True)
        if not isinstance(data, dict):
            raise InvalidJobError("the request body must be a JSON object")
        return start_from_json(runtime, data)

    @bp.get("")
    @guard
    def index() -> Any:
        limit = flask.request.args.get("limit", 50, type=int)
        return {"jobs": [j.to_json() for j in list_jobs(runtime, limit=max(1, min(limit, 500)))]}

    @bp.get("/<job_id>")
    @guard
    def show(job_id: str) -> Any:
        """The status, plus what the console shows: rates, ETA, samples, allowed actions."""
        return job_view(runtime, job_id, counts)

    @bp.post("/<job_id>/throttle")
    @guard
    def throttle(job_id: str) -> Any:
        """``{"max_rate": N | null, "ramp_up": true | false}``: change a job's rate budget."""
        data = flask.request.get_json(silent=True, force=True)
        if not isinstance(data, dict) or "max_rate" not in data:
            raise InvalidJobError(
                'the request body must be a JSON object with "max_rate" (a number, or null '
                'for no limit) and optionally "ramp_up"'
            )
        unknown = sorted(set(data) - {"max_rate", "ramp_up"})
        if unknown:
            raise InvalidJobError(f"unknown field(s) for throttle: {unknown}")
        return throttle_job(runtime, job_id, data["max_rate"], data.get("ramp_up")).to_json()

    @bp.post("/<job_id>/<action>")
    @guard
    def control(job_id: str, action: str) -> Any:
        if action not in ACTIONS:
            flask.abort(404)
        return ACTIONS[action](runtime, job_id).to_json()

    return bp
