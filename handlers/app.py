"""This repository's own service: a Flask app with mapper's endpoints mounted."""

from __future__ import annotations

import flask

from mapper.engine.runtime import Runtime
from mapper.settings import Settings
from mapper.web import init_app
from mapper.web.auth import Verifier


def create_app(
    settings: Settings | None = None,
    runtime: Runtime | None = None,
    verifier: Verifier | None = None,
) -> flask.Flask:
    """The app for ``settings`` (default: the environment, validated)."""
    app = flask.Flask(__name__)
    init_app(app, settings, runtime, verifier)
    return app
