"""The operator console: the job list, a page per job, its chart and its control forms."""

from __future__ import annotations

import json
from typing import Any

import flask

from mapper.engine.jobs import throttle_job
from mapper.engine.runtime import Runtime
from mapper.errors import InvalidJobError, JobStateError, MapperError, NotFoundError
from mapper.migrate import runner
from mapper.web import csrf
from mapper.web.admin import ACTIONS
from mapper.web.auth import Verifier, require_admin_auth
from mapper.web.chart import progress_svg
from mapper.web.console_data import CountCache, duration_text, job_view
from mapper.web.joblist import STATUSES, ListQuery, list_entries

FINAL = ("succeeded", "failed", "aborted")
#: What an action does, said after it is done.
DONE = {
    "pause": "Paused: running slices stop at their next batch boundary.",
    "resume": "Resumed: every unfinished shard goes on from its checkpoint.",
    "abort": "Aborted: running slices stop at their next batch boundary; finish() will not run.",
    "throttle": "Throttled: running slices take the new rate at their next batch.",
}


def blueprint(runtime: Runtime, verifier: Verifier | None = None) -> flask.Blueprint:
    prefix = runtime.settings.url_prefix
    bp = flask.Blueprint("mapper_status", __name__, url_prefix=prefix, template_folder="templates")
    guard = require_admin_auth(runtime.settings, verifier)
    counts = CountCache()

    @bp.get("/")
    @guard
    def page() -> Any:
        query = ListQuery.from_args(flask.request.args)
        listed = list_entries(runtime, query)
        refresh = 3 if any(e["status"] not in FINAL for e in listed["entries"]) else None
        return flask.render_template(
            "console_list.html",
            entries=listed["entries"],
            next=listed["next"],
            query=query,
            statuses=STATUSES,
            refresh=refresh,
            prefix=prefix,
            ledger=_ledger(runtime),
        )

    @bp.get("/entries")
    @guard
    def entries() -> Any:
        """The list page's data as JSON (same filters: status, mapper, before, limit)."""
        return list_entries(runtime, ListQuery.from_args(flask.request.args))

    @bp.get("/console/<job_id>")
    @guard
    def job_page(job_id: str) -> Any:
        notice = DONE.get(flask.request.args.get("did", ""))
        return _job_page(
            runtime, counts, job_id, {"kind": "done", "text": notice} if notice else None
        )

    @bp.get("/console/<job_id>/chart.svg")
    @guard
    def chart(job_id: str) -> Any:
        data = job_view(runtime, job_id, counts)
        return flask.Response(str(progress_svg(data["samples"])), mimetype="image/svg+xml")

    @bp.post("/console/<job_id>/throttle")
    @guard
    def throttle(job_id: str) -> Any:
        """The max-rate form: a number of ops per second, or empty for no limit."""
        try:
            csrf.check()
        except csrf.CsrfRefused as refused:
            return _job_page(runtime, counts, job_id, _refused(str(refused)), 403)
        raw = flask.request.form.get("max_rate", "").strip()
        try:
            throttle_job(runtime, job_id, float(raw) if raw else None)
        except ValueError:
            why = f"Refused: the max rate must be a number of operations a second, got {raw!r}."
            return _job_page(runtime, counts, job_id, _refused(why), 400)
        except InvalidJobError as error:
            return _job_page(runtime, counts, job_id, _refused(f"Refused: {error}."), 400)
        except JobStateError as error:
            why = f"Refused: {error}. The page showed an older state; it is current now."
            return _job_page(runtime, counts, job_id, _refused(why), 409)
        return flask.redirect(flask.url_for(".job_page", job_id=job_id, did="throttle"), 303)

    @bp.post("/console/<job_id>/<action>")
    @guard
    def act(job_id: str, action: str) -> Any:
        if action not in ACTIONS:
            flask.abort(404)
        try:
            csrf.check()
        except csrf.CsrfRefused as refused:
            return _job_page(runtime, counts, job_id, _refused(str(refused)), 403)
        if action == "abort" and flask.request.form.get("confirm") != "yes":
            return _confirm(runtime, job_id, action)
        try:
            ACTIONS[action](runtime, job_id)
        except JobStateError as error:
            why = f"Refused: {error}. The page showed an older state; it is current now."
            return _job_page(runtime, counts, job_id, _refused(why), 409)
        return flask.redirect(flask.url_for(".job_page", job_id=job_id, did=action), 303)

    return bp


def _ledger(rt: Runtime) -> dict[str, Any] | None:
    """The migrations ledger for the list page (None: no package configured)."""
    if not rt.settings.migrations_package:
        return None
    try:
        return runner.ledger_status(rt, rt.settings.migrations_package).to_json()
    except MapperError as error:  # a broken package must not hide the jobs
        return {"package": rt.settings.migrations_package, "error": str(error)}


def _refused(text: str) -> dict[str, str]:
    return {"kind": "refused", "text": text}


def _job_page(
    rt: Runtime, counts: CountCache, job_id: str, notice: dict[str, str] | None, code: int = 200
) -> Any:
    try:
        data = job_view(rt, job_id, counts)
    except NotFoundError as error:
        return flask.render_template(
            "console_missing.html", error=str(error), prefix=_prefix(rt)
        ), 404
    token = csrf.token()
    html = flask.render_template(
        "console_job.html",
        job=data,
        chart=progress_svg(data["samples"]),
        params=json.dumps(data.get("params", {}), indent=2, sort_keys=True),
        eta=duration_text(data["eta_seconds"]),
        notice=notice,
        csrf_token=token,
        prefix=_prefix(rt),
        live=data["status"] not in FINAL,
    )
    response = flask.make_response(html, code)
    csrf.set_cookie(response, token, _prefix(rt) + "/")
    return response


def _confirm(rt: Runtime, job_id: str, action: str) -> Any:
    """Destructive: ask once more, with a form that says yes."""
    return flask.render_template(
        "console_confirm.html",
        job_id=job_id,
        action=action,
        csrf_token=flask.request.form.get(csrf.FIELD, ""),
        prefix=_prefix(rt),
    )


def _prefix(rt: Runtime) -> str:
    return rt.settings.url_prefix
