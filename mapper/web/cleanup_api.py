"""``POST /_mapper/cleanup/<name>``: the cleanup plans (and, when asked, their apply) as JSON."""

from __future__ import annotations

from typing import Any

import flask

from mapper.datastore.query import filters_from
from mapper.engine.runtime import Runtime
from mapper.errors import InvalidJobError
from mapper.web.auth import Verifier, require_admin_auth

NAMES = ("stale-kinds", "stale-properties", "orphans", "missing")


def blueprint(runtime: Runtime, verifier: Verifier | None = None) -> flask.Blueprint:
    bp = flask.Blueprint("mapper_cleanup", __name__, url_prefix="/_mapper/cleanup")
    guard = require_admin_auth(runtime.settings, verifier)

    @bp.post("/<name>")
    @guard
    def cleanup(name: str) -> Any:
        """Body: the CLI's options as JSON, plus ``"apply": true`` to act on the plan."""
        if name not in NAMES:
            flask.abort(404)
        data = flask.request.get_json(silent=True, force=True)
        if not isinstance(data, dict):
            raise InvalidJobError("the request body must be a JSON object")
        plan, apply = _plan_and_apply(runtime, name, data)
        applied = apply(plan) if data.get("apply") and not plan.empty else None
        return {"plan": plan.to_json(), "applied": applied}

    return bp


def _plan_and_apply(rt: Runtime, name: str, data: dict[str, Any]) -> tuple[Any, Any]:
    from mapper import cleanup, orphans

    namespace = data.get("namespace", "")
    models = data.get("models", [])
    models = models.split(",") if isinstance(models, str) else models
    if name == "stale-kinds":
        return cleanup.plan_stale_kinds(rt, models, namespace), lambda p: cleanup.apply(rt, p)
    if name == "stale-properties":
        plan = cleanup.plan_stale_properties(rt, models, namespace)
        return plan, lambda p: cleanup.apply(rt, p)
    if name == "orphans":
        spec = orphans.OrphanSpec(
            kind=data.get("kind", ""),
            properties=data.get("properties", []),
            parents=bool(data.get("parents")),
            cascade=[c.split(".", 1) for c in data.get("cascade", [])],
        )
        action = data.get("action", "delete")
        plan = orphans.plan_orphans(rt, spec, namespace)
        return plan, lambda p: orphans.apply_orphans(rt, p, action)
    scope = [(prop, value) for prop, value in data.get("filters", {}).items()]
    plan = cleanup.plan_missing(rt, data.get("source", ""), data.get("kind", ""), namespace,
                                _filters(scope))  # fmt: skip
    return plan, lambda p: cleanup.apply(rt, p)


def _filters(pairs: list[tuple[str, Any]]) -> list[Any]:
    return filters_from(pairs)
