"""Errors drive HTTP status: each MapperError answers with its own http_status, as JSON."""

from __future__ import annotations

import flask
import pytest

from mapper.engine.runtime import Runtime
from mapper.errors import (
    AuthError,
    CleanupError,
    DispatchError,
    InvalidJobError,
    JobStateError,
    MapperError,
    NotFoundError,
)
from mapper.settings import Settings
from mapper.web import init_app
from mapper.web.auth import Unauthenticated


@pytest.fixture
def client(monkeypatch):
    # An emulator host nobody answers on: no credentials needed, and no request reaches it.
    # (Runtime exports it to the environment; monkeypatch puts the environment back.)
    monkeypatch.setenv("DATASTORE_EMULATOR_HOST", "127.0.0.1:1")
    settings = Settings(project="demo", emulator_host="127.0.0.1:1", auth="off")
    runtime = Runtime(settings)
    app = flask.Flask(__name__)
    init_app(app, settings, runtime)

    @app.get("/raise/<name>")
    def raise_(name: str):
        raise ERRORS[name]("it went wrong")

    yield app.test_client()
    runtime.close()


ERRORS: dict[str, type[MapperError]] = {
    "invalid": InvalidJobError,
    "cleanup": CleanupError,
    "unauthenticated": Unauthenticated,
    "forbidden": AuthError,
    "missing": NotFoundError,
    "state": JobStateError,
    "dispatch": DispatchError,
}


@pytest.mark.parametrize(
    "name, status",
    [
        ("invalid", 400),
        ("cleanup", 400),
        ("unauthenticated", 401),
        ("forbidden", 403),
        ("missing", 404),
        ("state", 409),
        ("dispatch", 502),
    ],
)
def test_a_mapper_error_answers_with_its_declared_status_and_a_json_body(client, name, status):
    response = client.get(f"/raise/{name}")
    assert response.status_code == status == ERRORS[name].http_status
    assert response.get_json() == {"error": "it went wrong", "type": ERRORS[name].__name__}


def test_an_unexpected_error_is_a_5xx_so_the_queue_retries(client):
    @client.application.get("/boom")
    def boom():
        raise RuntimeError("bug")

    client.application.testing = False
    assert client.get("/boom").status_code == 500
