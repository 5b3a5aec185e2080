"""init_app: mount mapper's task endpoints, admin API and status page on a Flask app."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import flask

from mapper.engine.runtime import Runtime
from mapper.errors import ConfigurationError, MapperError, RetrySlice
from mapper.settings import Settings
from mapper.web import admin, cleanup_api, imports, migrations_api, status, tasks
from mapper.web.auth import Verifier

logger = logging.getLogger(__name__)


def init_app(
    app: flask.Flask,
    settings: Settings | None = None,
    runtime: Runtime | None = None,
    verifier: Verifier | None = None,
    url_prefix: str | None = None,
) -> Runtime:
    """Mount mapper's task endpoints, admin API and status page on ``app``; return its Runtime.

    Args:
        app: the Flask app, usually the user's own.
        settings: default: the environment (validated), or ``runtime.settings``.
        runtime: for tests (a Runtime with a fault plan).
        verifier: for tests (a Verifier with local keys).
        url_prefix: where the endpoints go; default ``settings.url_prefix``
            (``MAPPER_URL_PREFIX``, ``/_mapper``). Cloud Tasks slices are sent
            under the same prefix.

    The error handlers cover mapper's own exceptions only (a ``MapperError``
    answers with its ``http_status``), wherever in the app they are raised.
    ``MAPPER_AUTH=off`` inside App Engine is refused here.
    """
    if settings is None:
        settings = runtime.settings if runtime is not None else Settings.from_env()
    if url_prefix is not None and url_prefix != settings.url_prefix:
        settings = settings.replace(url_prefix=url_prefix)
    if runtime is not None and runtime.settings.url_prefix != settings.url_prefix:
        raise ConfigurationError(
            f"url prefix {settings.url_prefix!r} differs from the runtime's "
            f"{runtime.settings.url_prefix!r}, where its tasks go: set it in the runtime's settings"
        )
    settings.validate()
    refuse_auth_off_on_app_engine(settings)
    runtime = runtime or Runtime(settings)
    app.extensions["mapper"] = runtime
    for module in (tasks, admin, imports, cleanup_api, migrations_api, status):
        app.register_blueprint(module.blueprint(runtime, verifier))
    app.register_error_handler(MapperError, _mapper_error)
    app.register_error_handler(RetrySlice, _retry)
    return runtime


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
    """A MapperError answers with its own ``http_status`` and the message."""
    code = error.http_status
    if code >= 403:
        logger.info("%s %s -> %d: %s", flask.request.method, flask.request.path, code, error)
    return flask.jsonify(error=str(error), type=type(error).__name__), code


def _retry(signal: RetrySlice) -> tuple[flask.Response, int, dict[str, Any]]:
    """Not now: Cloud Tasks retries any non-2xx answer, after its backoff."""
    headers = {"Retry-After": str(max(1, round(signal.delay)))}
    return flask.jsonify(retry=signal.reason), 503, headers
