"""``/_mapper/migrations``: the ledger as JSON, and applying the pending migrations over HTTP.

The package is the app's own (``MAPPER_MIGRATIONS``), never a name from the request.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import flask

from mapper.engine.runtime import Runtime
from mapper.errors import InvalidJobError, NotFoundError
from mapper.migrate import runner
from mapper.migrate.ledger import LedgerBusy, LedgerLock, busy_message
from mapper.web.auth import Verifier, require_admin_auth

logger = logging.getLogger(__name__)

#: The fields ``POST /migrations/apply`` reads.
APPLY_FIELDS = {"namespace", "backup", "wait", "by", "dry_run", "sample"}


def blueprint(runtime: Runtime, verifier: Verifier | None = None) -> flask.Blueprint:
    bp = flask.Blueprint(
        "mapper_migrations", __name__, url_prefix=f"{runtime.settings.url_prefix}/migrations"
    )
    guard = require_admin_auth(runtime.settings, verifier)

    @bp.get("")
    @guard
    def ledger() -> Any:
        return runner.ledger_status(runtime, package_of(runtime)).to_json()

    @bp.post("/apply")
    @guard
    def apply() -> Any:
        """Body (JSON, all optional): ``namespace``, ``backup``, ``by``; ``"wait": true``
        answers when done (200), else the apply goes on after the answer (202): poll
        ``GET``. ``"dry_run": true`` (and ``sample``) answers with the audit."""
        package = package_of(runtime)
        data = _body()
        namespace = data.get("namespace")
        if data.get("dry_run"):
            sample = data.get("sample")
            return {"dry_run": runner.dry_run(runtime, package, sample=sample, namespace=namespace)}
        options = {"backup_root": data.get("backup"), "namespace": namespace}
        by = str(data.get("by") or _caller())
        if data.get("wait"):
            return runner.apply(runtime, package, by, **options).to_json()
        refuse_if_busy(runtime)
        threading.Thread(
            target=_apply_later, args=(runtime, package, by, options), daemon=True
        ).start()
        return runner.ledger_status(runtime, package).to_json() | {"started": True}, 202

    return bp


def package_of(rt: Runtime) -> str:
    if not rt.settings.migrations_package:
        raise NotFoundError("no migrations package is configured (set MAPPER_MIGRATIONS)")
    return rt.settings.migrations_package


def refuse_if_busy(rt: Runtime) -> None:
    """Answer 409 now, naming the holder, rather than fail in the thread after the answer."""
    holder = LedgerLock(rt, "probe").holder()
    if holder is not None:
        raise LedgerBusy(busy_message(holder))


def _apply_later(rt: Runtime, package: str, by: str, options: dict[str, Any]) -> None:
    try:
        runner.apply(rt, package, by, **options)
    except Exception:  # the ledger says where it stopped; POST again resumes it
        logger.exception("migrations of %s: apply stopped", package)


def _body() -> dict[str, Any]:
    data = flask.request.get_json(silent=True, force=True)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidJobError("the request body must be a JSON object")
    unknown = sorted(set(data) - APPLY_FIELDS)
    if unknown:
        raise InvalidJobError(f"unknown field(s): {', '.join(unknown)}")
    return data


def _caller() -> str:
    """Who applies, when the body does not say (``"by"``): the caller's address."""
    return f"http:{flask.request.remote_addr or 'unknown'}"
