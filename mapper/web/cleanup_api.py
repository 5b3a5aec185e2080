"""``POST /_mapper/cleanup/<name>``: the cleanup plans (and, when asked, their apply) as JSON."""

from __future__ import annotations

from typing import Any

import flask

from mapper.cleanup import table
from mapper.engine.runtime import Runtime
from mapper.engine.spec import check_max_rate
from mapper.errors import InvalidJobError
from mapper.web.auth import Verifier, require_admin_auth


def blueprint(runtime: Runtime, verifier: Verifier | None = None) -> flask.Blueprint:
    bp = flask.Blueprint(
        "mapper_cleanup", __name__, url_prefix=f"{runtime.settings.url_prefix}/cleanup"
    )
    guard = require_admin_auth(runtime.settings, verifier)

    @bp.post("/<name>")
    @guard
    def cleanup(name: str) -> Any:
        """Body: the CLI's options as JSON, plus ``"apply": true`` to act on the plan
        (and ``"max_rate": N``, entities deleted or rewritten per second)."""
        if name not in table.CLEANUPS:
            flask.abort(404)
        data = flask.request.get_json(silent=True, force=True)
        if not isinstance(data, dict):
            raise InvalidJobError("the request body must be a JSON object")
        max_rate = data.get("max_rate")
        check_max_rate(max_rate)
        plan = table.plan(runtime, name, data)
        applied = (
            table.apply(runtime, plan, max_rate) if data.get("apply") and not plan.empty else None
        )
        return {"plan": plan.to_json(), "applied": applied}

    return bp
