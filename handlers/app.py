"""The Flask app: settings and the Runtime built once, blueprints, errors as JSON."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import flask

from handlers import admin, cleanup_api, imports, status, tasks
from handlers.auth import Unauthenticated, Verifier
from mapper.errors import (
    AuthError,
    ConfigurationError,
    JobStateError,
    MapperError,
    NotFoundError,
    RetrySlice,
)
from mapper.runtime import Runtime
from mapper.settings import Settings

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    runtime: Runtime | None = None,
    verifier: Verifier | None = None,
) -> flask.Flask:
    """The app for ``settings`` (default: the environment, validated).

    ``runtime`` and ``verifier`` are for tests: a Runtime with a fault plan, a
    Verifier with local keys. ``MAPPER_AUTH=off`` on App Engine is refused here,
    at start-up: by the settings' validation, and by :func:`refuse_auth_off_on_app_engine`
    for settings built by hand.
    """
    if settings is None:
        settings = runtime.settings if runtime is not None else Settings.from_env()
    settings.validate()
    refuse_auth_off_on_app_engine(settings)
    runtime = runtime or Runtime(settings)
    app = flask.Flask(__name__)
    app.extensions["mapper.runtime"] = runtime
    app.register_blueprint(tasks.blueprint(runtime, verifier))
    app.register_blueprint(admin.blueprint(runtime, verifier))
    app.register_blueprint(imports.blueprint(runtime, verifier))
    app.register_blueprint(cleanup_api.blueprint(runtime, verifier))
    app.register_blueprint(status.blueprint(runtime, verifier))
    app.register_error_handler(MapperError, _mapper_error)
    app.register_error_handler(RetrySlice, _retry)
    return app


def refuse_auth_off_on_app_engine(settings: Settings, env: Mapping[str, str] | None = None) -> None:
    """Raise if auth is off in a process App Engine started, however ``settings`` were made.

    App Engine sets ``GAE_APPLICATION`` (and ``GAE_ENV=standard`` in the standard
    environment) for every instance; either one is enough to refuse.
    """
    env = os.environ if env is None else env
    markers = [name for name in ("GAE_ENV", "GAE_APPLICATION") if env.get(name)]
    if settings.auth == "off" and (settings.on_app_engine or markers):
        raise ConfigurationError(
            f"MAPPER_AUTH=off is refused on App Engine (found {', '.join(markers) or 'GAE_ENV'}): "
            "use MAPPER_AUTH=iap or oidc"
        )


def _mapper_error(error: MapperError) -> tuple[flask.Response, int]:
    """A MapperError is the caller's problem: a 4xx with the message."""
    code = 400
    if isinstance(error, Unauthenticated):
        code = 401
    elif isinstance(error, AuthError):
        code = 403
    elif isinstance(error, NotFoundError):
        code = 404
    elif isinstance(error, JobStateError):
        code = 409
    if code >= 403:
        logger.info("%s %s -> %d: %s", flask.request.method, flask.request.path, code, error)
    return flask.jsonify(error=str(error), type=type(error).__name__), code


def _retry(signal: RetrySlice) -> tuple[flask.Response, int, dict[str, Any]]:
    """Not now: Cloud Tasks retries any non-2xx answer, after its backoff."""
    headers = {"Retry-After": str(max(1, round(signal.delay)))}
    return flask.jsonify(retry=signal.reason), 503, headers
