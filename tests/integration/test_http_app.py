"""The Flask app against the emulator: job API, task endpoints, status codes, auth refusals."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import ndb

from handlers import create_app
from mapper.dispatch.base import Dispatcher
from mapper.dispatch.messages import SliceTask, task_to_json
from mapper.engine.runtime import Runtime
from mapper.errors import ConfigurationError
from mapper.testing.faults import FaultPlan
from tests.support.mappers import Person
from tests.support.tokens import OTHER_PRIVATE, TASK_SA, TASK_URL, LocalCerts, google_token

TOUCH = "tests.support.mappers:TouchPeople"


class RecordingDispatcher(Dispatcher):
    """Records what would be enqueued; runs nothing (for requests that must change nothing)."""

    in_process = False

    def __init__(self) -> None:
        self.enqueued: list[Any] = []

    def enqueue(self, task: Any, delay: float = 0.0) -> bool:
        self.enqueued.append(task)
        return True


class WatchedRuntime(Runtime):
    """A Runtime that counts ndb contexts: no Datastore read through ndb happens without one.

    Raw-store RPCs are counted by the fault plan's ``rpc:*`` points.
    """

    contexts = 0

    @contextlib.contextmanager
    def context(self, namespace: str | None = None) -> Iterator[Any]:
        self.contexts += 1
        with super().context(namespace) as context:
            yield context


@pytest.fixture
def client(runtime):
    app = create_app(runtime=runtime.__class__(runtime.settings.replace(auth="off")))
    yield app.test_client()
    app.extensions["mapper"].close()


def test_post_jobs_starts_a_job_and_get_shows_it_succeeded_with_counters(client, namespace, seed):
    seed(300)
    reply = client.post(
        "/_mapper/jobs", json={"mapper": TOUCH, "namespace": namespace, "shards": 2, "id": "j1"}
    )
    assert reply.status_code == 200, reply.json
    assert reply.json == {"id": "j1"}
    status = wait_for(client, "j1")
    assert status["status"] == "succeeded"
    assert status["counters"] == {"processed": 300, "put": 300, "deleted": 0}
    assert sum(s["counters"]["processed"] for s in status["shards"]) == 300
    listed = client.get("/_mapper/jobs").json["jobs"]
    assert [j["id"] for j in listed] == ["j1"]


def test_the_same_client_chosen_id_twice_starts_one_job(client, namespace, seed, people):
    seed(50)
    body = {"mapper": TOUCH, "namespace": namespace, "id": "once"}
    assert client.post("/_mapper/jobs", json=body).json == {"id": "once"}
    wait_for(client, "once")
    assert client.post("/_mapper/jobs", json=body).json == {"id": "once"}
    assert collections.Counter(p.touched for p in people()) == {1: 50}


def test_post_jobs_accepts_exactly_once_and_the_status_shows_it(client, namespace, seed, people):
    seed(30)
    body = {"mapper": TOUCH, "namespace": namespace, "id": "xo", "exactly_once": True,
            "batch_size": 7, "params": {}, "shards": 1}  # fmt: skip
    assert client.post("/_mapper/jobs", json=body).json == {"id": "xo"}
    status = wait_for(client, "xo")
    assert status["exactly_once"] is True and status["batch_size"] == 7
    assert status["counters"]["processed"] == 30
    assert collections.Counter(p.touched for p in people()) == {1: 30}


def test_post_jobs_runs_one_job_over_the_namespaces_named(client, namespace, runtime):
    tenants = [f"{namespace}-{i}" for i in range(3)]
    with runtime.context():
        for i, tenant in enumerate(tenants):
            ndb.put_multi([Person(key=ndb.Key(Person, j + 1, namespace=tenant)) for j in range(i)])
    body = {"mapper": TOUCH, "namespaces": tenants, "shards": 2, "id": "many",
            "namespace_counters": True}  # fmt: skip
    assert client.post("/_mapper/jobs", json=body).json == {"id": "many"}
    status = wait_for(client, "many")
    assert status["counters"]["processed"] == 3
    assert (status["namespaces_done"], status["namespaces_total"]) == (2, 2)
    assert status["namespace_counters"][tenants[2]] == {"processed": 2, "put": 2}
    both = client.post("/_mapper/jobs", json={**body, "id": "x", "namespace": namespace})
    assert both.status_code == 400 and "exclude each other" in both.json["error"]


def test_a_cross_site_post_from_a_browser_is_refused_and_changes_nothing(client, namespace, seed):
    """IAP signs a browser in by cookie: another site must not be able to make that
    browser start or abort jobs. Browsers say where a request comes from."""
    seed(20)
    body = {"mapper": TOUCH, "namespace": namespace, "id": "xs"}
    for site in ("cross-site", "same-site"):
        refused = client.post("/_mapper/jobs", json=body, headers={"Sec-Fetch-Site": site})
        assert refused.status_code == 403 and site in refused.json["error"]
    assert client.get("/_mapper/jobs/xs").status_code == 404
    assert client.post(
        "/_mapper/jobs", json=body, headers={"Sec-Fetch-Site": "same-origin"}
    ).json == {"id": "xs"}
    wait_for(client, "xs")
    refused = client.post("/_mapper/jobs/xs/abort", headers={"Sec-Fetch-Site": "cross-site"})
    assert refused.status_code == 403
    assert client.get("/_mapper/jobs/xs").json["status"] == "succeeded"


def test_errors_are_json_with_4xx_codes(client, namespace):
    bad = client.post("/_mapper/jobs", json={"mapper": "tests.support.mappers:Nope"})
    assert bad.status_code == 400 and "Nope" in bad.json["error"]
    assert client.post("/_mapper/jobs", data="not json").status_code == 400
    missing = client.get("/_mapper/jobs/no-such-job")
    assert missing.status_code == 404 and "no-such-job" in missing.json["error"]
    client.post("/_mapper/jobs", json={"mapper": TOUCH, "namespace": namespace, "id": "done"})
    wait_for(client, "done")
    again = client.post("/_mapper/jobs/done/pause")
    assert again.status_code == 409 and "succeeded" in again.json["error"]
    assert client.post("/_mapper/jobs/done/explode").status_code == 404


def test_slice_endpoint_answers_stale_2xx_future_503_and_bad_bodies_400(client, namespace, seed):
    seed(20)
    client.post("/_mapper/jobs", json={"mapper": TOUCH, "namespace": namespace, "id": "s"})
    before = wait_for(client, "s")
    stale = client.post("/_mapper/tasks/slice", data=task_to_json(SliceTask("s", 0, 0, 0)))
    assert stale.status_code == 200
    future = client.post("/_mapper/tasks/slice", data=task_to_json(SliceTask("s", 0, 9, 0)))
    assert future.status_code == 503 and "Retry-After" in future.headers
    assert client.post("/_mapper/tasks/slice", data=b"{").status_code == 400
    assert client.get("/_mapper/jobs/s").json["counters"] == before["counters"]


@pytest.fixture
def manual(settings):
    """Auth off, slices delivered by hand: the test client plays Cloud Tasks."""
    faults, dispatcher = FaultPlan(), RecordingDispatcher()
    runtime = Runtime(settings.replace(auth="off"), dispatcher=dispatcher, faults=faults)
    yield create_app(runtime=runtime).test_client(), faults, dispatcher
    runtime.close()


def test_a_slice_whose_retries_are_spent_fails_the_job_and_answers_2xx(manual, namespace, seed):
    client, _, dispatcher = manual
    seed(20)
    body = {"mapper": "tests.support.mappers:Poison", "params": {"poison": "p00003"},
            "namespace": namespace, "id": "poisoned"}  # fmt: skip
    assert client.post("/_mapper/jobs", json=body).status_code == 200
    (first,) = dispatcher.enqueued
    slice_body = task_to_json(first)

    # settings.max_attempts == 3: two answers Cloud Tasks retries, then the job gives up.
    codes = [client.post("/_mapper/tasks/slice", data=slice_body).status_code for _ in range(3)]

    assert codes == [503, 503, 200]
    status = client.get("/_mapper/jobs/poisoned").json
    assert status["status"] == "failed"
    assert "cannot map p00003" in status["error"] and status["failed_key"]
    assert status["shards"][0]["attempts"] == 3
    # A late redelivery of the failed slice changes nothing and stops the queue too.
    assert client.post("/_mapper/tasks/slice", data=slice_body).status_code == 200
    assert client.get("/_mapper/jobs/poisoned").json["shards"][0]["attempts"] == 3


def test_an_unexpected_error_answers_5xx_so_cloud_tasks_retries(manual, namespace, seed, people):
    client, faults, dispatcher = manual
    seed(10)
    client.post("/_mapper/jobs", json={"mapper": TOUCH, "namespace": namespace, "id": "flaky"})
    slice_body = task_to_json(dispatcher.enqueued[0])
    faults.raise_at("rpc:Lookup", lambda: RuntimeError("datastore went away"))

    assert client.post("/_mapper/tasks/slice", data=slice_body).status_code == 500

    assert client.post("/_mapper/tasks/slice", data=slice_body).status_code == 200
    assert collections.Counter(p.touched for p in people()) == {1: 10}


def test_start_task_endpoint_starts_a_job_from_a_task_body(client, namespace, seed):
    seed(10)
    body = {"mapper": TOUCH, "namespace": namespace, "id": "from-task"}
    assert client.post("/_mapper/tasks/start", json=body).json == {"id": "from-task"}
    assert wait_for(client, "from-task")["counters"]["processed"] == 10


def test_export_and_import_start_through_the_jobs_api(client, namespace, seed, tmp_path, runtime):
    seed(40)
    out = str(tmp_path / "dump")
    body = {"mapper": "export", "params": {"out": out, "kinds": ["Person"]}, "namespace": namespace}
    exported = client.post("/_mapper/jobs", json=body).json
    status = wait_for(client, exported["id"])
    assert status["kind"] == "export" and status["counters"]["processed"] == 40
    target = namespace + "r"
    body = {"mapper": "import", "params": {"source": out, "mode": "keep"}, "namespace": target}
    imported = client.post("/_mapper/jobs", json=body).json
    assert imported["plan"]["entities"] == 40
    assert wait_for(client, imported["id"])["counters"]["put"] == 40
    with runtime.context(target):
        assert Person.query().count() == 40


def wait_for(client, job_id, timeout=60.0):
    import time

    deadline = time.monotonic() + timeout
    while True:
        status = client.get(f"/_mapper/jobs/{job_id}").json
        if status["status"] in ("succeeded", "failed", "aborted"):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


# -- authentication: refused requests touch nothing -------------------------------------


@pytest.fixture
def guarded(settings):
    """An app with OIDC auth on, whose store and dispatcher record every use."""
    faults = FaultPlan()
    dispatcher = RecordingDispatcher()
    secured = settings.replace(
        auth="oidc", task_url=TASK_URL + "/", task_service_account=TASK_SA,
        admin_emails=("admin@example.com",), queue="projects/demo/locations/l/queues/q",
    )  # fmt: skip
    runtime = WatchedRuntime(secured, dispatcher=dispatcher, faults=faults)
    app = create_app(runtime=runtime, verifier=_verifier())
    runtime.contexts = 0
    yield app.test_client(), faults, dispatcher, runtime
    runtime.close()


def _verifier():
    from mapper.web.auth import Verifier

    return Verifier(certs=LocalCerts())


REFUSED = {
    "no credentials": ({}, 401),
    "forged App Engine header off App Engine": ({"X-AppEngine-QueueName": "mapper"}, 401),
    "Cloud Tasks headers alone": (
        {"X-CloudTasks-QueueName": "mapper", "X-CloudTasks-TaskName": "t1"},
        401,
    ),
    "wrong audience": ({"Authorization": "Bearer " + google_token(aud="https://evil")}, 403),
    "expired": ({"Authorization": "Bearer " + google_token(exp=1, iat=0)}, 403),
    "wrong email": ({"Authorization": "Bearer " + google_token(email="x@evil.com")}, 403),
    "unsigned": ({"Authorization": "Bearer " + google_token().rsplit(".", 1)[0] + "."}, 403),
    "signed by a key Google did not publish": (
        {"Authorization": "Bearer " + google_token(private=OTHER_PRIVATE)},
        403,
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/_mapper/tasks/slice"),
        ("POST", "/_mapper/tasks/finalize"),
        ("POST", "/_mapper/tasks/start"),
        ("POST", "/_mapper/jobs"),
        ("GET", "/_mapper/jobs"),
        ("GET", "/_mapper/jobs/nope"),
        ("POST", "/_mapper/jobs/nope/abort"),
        ("POST", "/_mapper/jobs/nope/resume"),
        ("POST", "/_mapper/imports"),
        ("POST", "/_mapper/cleanup/orphans"),
        ("GET", "/_mapper/"),
    ],
)
def test_refused_requests_get_401_or_403_and_cause_no_read_write_or_enqueue(
    guarded, namespace, case, method, path
):
    client, faults, dispatcher, runtime = guarded
    headers, code = REFUSED[case]
    body: dict[str, Any] = {"mapper": TOUCH, "namespace": namespace, "id": "nope"}
    if path.endswith("slice"):
        body = {"kind": "slice", "job_id": "nope", "shard": 0, "slice": 0}
    elif path.endswith("finalize"):
        body = {"kind": "finalize", "job_id": "nope"}
    reply = client.open(path, method=method, json=body, headers=headers)
    assert reply.status_code == code, reply.json
    assert "error" in reply.json
    assert not [point for point in faults.hits if point.startswith("rpc:")]
    assert runtime.contexts == 0
    assert dispatcher.enqueued == []


def test_a_genuine_task_token_is_let_through(guarded, namespace, seed):
    client, faults, dispatcher, runtime = guarded
    token = google_token()
    body = {"mapper": TOUCH, "namespace": namespace, "id": "genuine"}
    reply = client.post(
        "/_mapper/tasks/start", json=body, headers={"Authorization": "Bearer " + token}
    )
    assert reply.status_code == 200, reply.json
    assert [t.job_id for t in dispatcher.enqueued] == ["genuine"]
    # What the refusal tests count does see an accepted request's reads and writes.
    assert runtime.contexts > 0 and faults.hits.get("rpc:Commit", 0) > 0
    # An admin token from the allow-list reads it; the task service account may not.
    admin = google_token(email="admin@example.com")
    read = client.get("/_mapper/jobs/genuine", headers={"Authorization": "Bearer " + admin})
    assert read.status_code == 200 and read.json["id"] == "genuine"
    assert (
        client.get("/_mapper/jobs", headers={"Authorization": "Bearer " + token}).status_code == 403
    )


def test_auth_off_is_refused_at_start_up_on_app_engine(settings):
    with pytest.raises(ConfigurationError, match="refused on App Engine"):
        create_app(settings.replace(auth="off", on_app_engine=True))


@pytest.mark.parametrize("marker", ["GAE_ENV", "GAE_APPLICATION"])
def test_auth_off_is_refused_when_the_environment_says_app_engine_whatever_the_settings(
    settings, monkeypatch, marker
):
    monkeypatch.setenv(marker, "standard" if marker == "GAE_ENV" else "s~demo")
    with pytest.raises(ConfigurationError, match=f"refused on App Engine.*{marker}"):
        create_app(settings.replace(auth="off"))


def test_cleanup_plans_and_applies_through_the_admin_api(client, namespace, datastore_client):
    from google.cloud import datastore as ds

    orders = [ds.Entity(datastore_client.key("Order")) for _ in range(3)]
    for order in orders:
        order.update({"total": 1, "legacy_code": "x"})
    datastore_client.put_multi(orders)
    body = {"models": "tests.support.cleanup_models", "namespace": namespace}
    planned = client.post("/_mapper/cleanup/stale-properties", json=body).json
    assert planned["plan"]["counts"] == {"Order.legacy_code": 3} and planned["applied"] is None
    applied = client.post("/_mapper/cleanup/stale-properties", json={**body, "apply": True}).json
    assert applied["applied"] == {"Order": 3}
    again = client.post("/_mapper/cleanup/stale-properties", json=body).json
    assert again["plan"]["empty"] is True
    assert client.post("/_mapper/cleanup/everything", json=body).status_code == 404
    # The namespace list of a plan over many (docs/namespaces.md).
    many = {"models": body["models"], "namespaces": [namespace, namespace + "x"]}
    listed = client.post("/_mapper/cleanup/stale-properties", json=many).json
    assert listed["plan"]["namespaces"] == [namespace, namespace + "x"]
    both = client.post("/_mapper/cleanup/stale-kinds", json={**many, "namespace": namespace})
    assert both.status_code == 400 and "exclude each other" in both.json["error"]
