"""Task and admin endpoints refuse everything but genuine, correctly addressed tokens."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import flask
import pytest

from mapper.errors import MapperError
from mapper.settings import Settings
from mapper.web.auth import (
    GOOGLE_CERTS_URL,
    IAP_CERTS_URL,
    HttpCerts,
    Verifier,
    require_admin_auth,
    require_task_auth,
)
from tests.support.tokens import (
    ADMIN,
    GOOGLE_PUBLIC,
    IAP_AUDIENCE,
    OTHER_PRIVATE,
    TASK_SA,
    TASK_URL,
    LocalCerts,
    b64,
    google_token,
    iap_assertion,
)


def settings_for(**overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        project="demo",
        queue="projects/demo/locations/us-central1/queues/mapper",
        task_url=TASK_URL + "/",
        task_service_account=TASK_SA,
        admin_emails=(ADMIN,),
        auth="oidc",
    )
    values.update(overrides)
    return Settings(**values)


class App:
    """A tiny Flask app with one task route and one admin route, and what they saw."""

    def __init__(self, settings: Settings):
        self.certs = LocalCerts()
        self.calls: list[str] = []
        self.error = ""
        verifier = Verifier(certs=self.certs)
        app = flask.Flask(__name__)

        @app.post("/task")
        @require_task_auth(settings, verifier)
        def task() -> str:
            self.calls.append("task")
            return "ran"

        @app.post("/admin")
        @require_admin_auth(settings, verifier)
        def admin() -> str:
            self.calls.append("admin")
            return "ran"

        @app.errorhandler(MapperError)
        def refused(e: MapperError) -> tuple[flask.Response, int]:
            return flask.jsonify(error=str(e)), e.http_status

        self.client = app.test_client()

    def task(self, headers: dict[str, str] | None = None) -> int:
        return self._post("/task", headers)

    def admin(self, headers: dict[str, str] | None = None) -> int:
        return self._post("/admin", headers)

    def _post(self, path: str, headers: dict[str, str] | None) -> int:
        response = self.client.post(path, headers=headers or {}, json={})
        self.error = (response.get_json(silent=True) or {}).get("error", "")
        return response.status_code


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def app() -> App:
    return App(settings_for())


# Task endpoints


def test_task_request_without_credentials_is_401(app: App) -> None:
    assert app.task() == 401
    assert app.calls == []


def test_forged_app_engine_queue_header_off_app_engine_is_refused(app: App) -> None:
    assert app.task({"X-AppEngine-QueueName": "mapper"}) == 401
    assert app.calls == []


def test_cloud_tasks_headers_alone_are_401(app: App) -> None:
    headers = {
        "X-CloudTasks-QueueName": "mapper",
        "X-CloudTasks-TaskName": "abc-job-s0-0-g0",
        "X-CloudTasks-TaskRetryCount": "0",
    }
    assert app.task(headers) == 401
    assert app.calls == []


def test_non_bearer_authorization_is_401(app: App) -> None:
    assert app.task({"Authorization": "Basic dXNlcjpwYXNz"}) == 401
    assert app.calls == []


def test_token_for_another_audience_is_403(app: App) -> None:
    assert app.task(bearer(google_token(aud="https://other.example.com"))) == 403
    assert "wrong audience" in app.error
    assert app.calls == []


def test_expired_token_is_403(app: App) -> None:
    long_ago = int(time.time()) - 7200
    assert app.task(bearer(google_token(iat=long_ago, exp=long_ago + 3600))) == 403
    assert "expired" in app.error
    assert app.calls == []


def test_token_for_another_service_account_is_403(app: App) -> None:
    assert app.task(bearer(google_token(email="intruder@demo.iam.gserviceaccount.com"))) == 403
    assert "intruder@" in app.error
    assert app.calls == []


def test_token_with_unverified_email_is_403(app: App) -> None:
    assert app.task(bearer(google_token(email_verified=False))) == 403
    assert "no verified email" in app.error
    assert app.calls == []


def test_token_from_another_issuer_is_403(app: App) -> None:
    assert app.task(bearer(google_token(iss="https://evil.example.com"))) == 403
    assert "issuer" in app.error
    assert app.calls == []


def test_unsigned_alg_none_token_is_403(app: App) -> None:
    now = int(time.time())
    claims = {"iss": "https://accounts.google.com", "aud": TASK_URL, "email": TASK_SA,
              "email_verified": True, "iat": now, "exp": now + 3600}  # fmt: skip
    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    assert app.task(bearer(token)) == 403
    assert "algorithm 'none'" in app.error
    assert app.calls == []


def test_token_with_garbage_signature_is_403(app: App) -> None:
    header, payload, _ = google_token().split(".")
    assert app.task(bearer(f"{header}.{payload}.{b64({'not': 'a signature'})}")) == 403
    assert "signature" in app.error
    assert app.task(bearer("not-a-jwt-at-all")) == 403
    assert app.calls == []


def test_token_signed_by_an_unknown_key_under_a_known_kid_is_403(app: App) -> None:
    assert app.task(bearer(google_token(private=OTHER_PRIVATE))) == 403
    assert "signature" in app.error
    assert app.calls == []


def test_valid_task_token_runs_the_view(app: App) -> None:
    assert app.task(bearer(google_token())) == 200
    assert app.calls == ["task"]
    assert app.certs.urls == [GOOGLE_CERTS_URL]


def test_explicit_task_audience_is_the_one_expected() -> None:
    app = App(settings_for(task_audience="mapper-tasks"))
    assert app.task(bearer(google_token())) == 403
    assert app.task(bearer(google_token(aud="mapper-tasks"))) == 200
    assert app.calls == ["task"]


def test_task_endpoints_refuse_tokens_when_no_audience_is_configured() -> None:
    app = App(settings_for(task_url=None))
    assert app.task(bearer(google_token())) == 403
    assert app.calls == []
    assert "MAPPER_TASK_AUDIENCE" in app.error


def test_queue_header_is_accepted_on_app_engine() -> None:
    app = App(settings_for(task_url=None, on_app_engine=True))
    assert app.task({"X-AppEngine-QueueName": "mapper"}) == 200
    assert app.calls == ["task"]


def test_on_app_engine_a_request_without_queue_header_still_needs_a_token() -> None:
    app = App(settings_for(on_app_engine=True))
    assert app.task({"X-CloudTasks-QueueName": "mapper"}) == 401
    assert app.task(bearer(google_token())) == 200
    assert app.calls == ["task"]


def test_auth_off_allows_everything() -> None:
    app = App(settings_for(auth="off"))
    assert app.task() == 200
    assert app.admin() == 200
    assert app.calls == ["task", "admin"]


# Admin endpoints


def test_admin_with_oidc_token_of_a_listed_email_runs_the_view(app: App) -> None:
    assert app.admin(bearer(google_token(email=ADMIN.upper()))) == 200
    assert app.calls == ["admin"]


def test_admin_without_credentials_is_401(app: App) -> None:
    assert app.admin() == 401
    assert app.calls == []


def test_admin_token_of_an_unlisted_email_is_403(app: App) -> None:
    assert app.admin(bearer(google_token())) == 403
    assert app.admin(bearer(google_token(email="someone@example.com"))) == 403
    assert app.calls == []


def test_admin_oidc_with_no_admin_emails_refuses_everyone() -> None:
    app = App(settings_for(admin_emails=()))
    assert app.admin(bearer(google_token(email=ADMIN))) == 403
    assert app.calls == []


def iap_app(**overrides: Any) -> App:
    values: dict[str, Any] = dict(auth="iap", iap_audience=IAP_AUDIENCE)
    values.update(overrides)
    return App(settings_for(**values))


def test_admin_behind_iap_with_a_valid_assertion_runs_the_view() -> None:
    app = iap_app()
    assert app.admin({"X-Goog-IAP-JWT-Assertion": iap_assertion()}) == 200
    assert app.calls == ["admin"]
    assert app.certs.urls == [IAP_CERTS_URL]


def test_iap_without_assertion_is_401_even_with_a_bearer_token() -> None:
    app = iap_app()
    assert app.admin(bearer(google_token(email=ADMIN))) == 401
    assert app.calls == []


def test_iap_assertion_for_another_audience_is_403() -> None:
    app = iap_app()
    assert app.admin({"X-Goog-IAP-JWT-Assertion": iap_assertion(aud="/projects/9/apps/x")}) == 403
    assert app.calls == []


def test_iap_refuses_a_google_rs256_token_in_the_assertion_header() -> None:
    app = iap_app()
    token = google_token(email=ADMIN, aud=IAP_AUDIENCE, iss="https://cloud.google.com/iap")
    assert app.admin({"X-Goog-IAP-JWT-Assertion": token}) == 403
    assert "algorithm 'RS256'" in app.error
    assert app.calls == []


def test_iap_limits_admins_to_admin_emails_when_listed() -> None:
    app = iap_app()
    assert app.admin({"X-Goog-IAP-JWT-Assertion": iap_assertion(email="x@example.com")}) == 403
    open_app = iap_app(admin_emails=())
    assert open_app.admin({"X-Goog-IAP-JWT-Assertion": iap_assertion(email="x@example.com")}) == 200


def test_iap_without_configured_audience_refuses() -> None:
    app = iap_app(iap_audience=None)
    assert app.admin({"X-Goog-IAP-JWT-Assertion": iap_assertion()}) == 403
    assert app.calls == []


# Cert fetching


@pytest.fixture
def certs_server() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = json.dumps({"google-kid": GOOGLE_PUBLIC}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "public, max-age=3600")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/certs", hits
    finally:
        server.shutdown()
        server.server_close()


def test_http_certs_are_fetched_once_within_max_age(certs_server: tuple[str, list[str]]) -> None:
    url, hits = certs_server
    certs = HttpCerts()
    assert certs(url) == {"google-kid": GOOGLE_PUBLIC}
    assert certs(url) == {"google-kid": GOOGLE_PUBLIC}
    assert hits == ["/certs"]
