"""The console's data and controls over HTTP: samples, rates and ETA in the JSON API, the list's
filters and pages, and control forms that refuse a request without credentials or CSRF token."""

from __future__ import annotations

import html
import re
import time

import pytest

from handlers import create_app
from mapper.engine.runtime import Runtime
from mapper.engine.samples import MAX_SAMPLES
from tests.integration.test_http_app import RecordingDispatcher, _verifier
from tests.support.tokens import TASK_SA, TASK_URL, google_token

SLOW = "tests.support.mappers:SlowTouch"
ADMIN = {"Authorization": "Bearer " + google_token(email="admin@example.com")}


@pytest.fixture
def client(settings, emulator_env):
    app = create_app(settings.replace(auth="off"))
    yield app.test_client()
    app.extensions["mapper"].close()


@pytest.fixture
def guarded(settings, emulator_env):
    """OIDC auth on; tasks are recorded, not run, so a started job stays running."""
    secured = settings.replace(
        auth="oidc", task_url=TASK_URL + "/", task_service_account=TASK_SA,
        admin_emails=("admin@example.com",), queue="projects/demo/locations/l/queues/q",
    )  # fmt: skip
    runtime = Runtime(secured, dispatcher=RecordingDispatcher())
    app = create_app(runtime=runtime, verifier=_verifier())
    yield app.test_client()
    runtime.close()


def start(client, job_id, namespace, headers=None, **extra):
    body = {"mapper": SLOW, "namespace": namespace, "id": job_id, **extra}
    reply = client.post("/_mapper/jobs", json=body, headers=headers or {})
    assert reply.status_code == 200, reply.json


def status(client, job_id, headers=None):
    return client.get(f"/_mapper/jobs/{job_id}", headers=headers or {}).json


def test_a_running_job_shows_rates_total_eta_and_bounded_samples_in_the_api(
    client, namespace, seed, emulator
):
    seed(300)
    start(client, "rated", namespace, shards=2, batch_size=10, params={"sleep": 0.01})
    deadline = time.monotonic() + 60
    seen = None
    while time.monotonic() < deadline:
        job = status(client, "rated")
        if job["status"] == "running" and 0 < job["counters"]["processed"] < 250:
            seen = job
        if job["status"] == "succeeded":
            break
        time.sleep(0.3)
    assert job["status"] == "succeeded"
    assert seen is not None, "never saw the job half way"
    assert seen["rate_now"] > 0 and seen["rate_average"] > 0
    if emulator.kind == "datastore":
        # The Datastore emulator has no COUNT aggregation: no total, no ETA, and it says so.
        assert seen["total"] is seen["eta_seconds"] is None
        assert "answers no count query" in seen["count_note"]
    else:
        # What is left was counted, so the total and an ETA were known.
        assert seen["total"] == 300, seen["count_note"]
        assert seen["remaining"] == 300 - seen["counters"]["processed"]
        assert seen["eta_seconds"] is not None
    assert seen["actions"] == ["pause", "abort"]
    assert all(0 <= s["fraction"] <= 1 for s in seen["shards"] if s["fraction"] is not None)
    # Finished: every shard's samples are bounded, the job's series ends at the total.
    assert job["samples"][-1][1] == 300 and job["rate_average"] > 0 and job["actions"] == []
    assert all(1 <= len(s["samples"]) <= MAX_SAMPLES for s in job["shards"])
    assert [t for t, _ in job["samples"]] == sorted(t for t, _ in job["samples"])
    # Ranges: the first shard starts open; with more than one shard (a store with
    # __scatter__) the others are bounded by keys printed as everywhere else.
    assert job["shards"][0]["start"] is None and job["shards"][-1]["end"] is None
    assert all(s["start"].startswith("Key('Person', ") for s in job["shards"][1:])


def test_the_list_filters_by_status_and_mapper_and_pages_newest_first(guarded, namespace):
    for job_id in ("list-a", "list-b", "list-c"):
        start(guarded, job_id, namespace, headers=ADMIN)
    assert guarded.post("/_mapper/jobs/list-b/pause", headers=ADMIN).status_code == 200

    def ids(query):
        reply = guarded.get(f"/_mapper/entries?{query}", headers=ADMIN)
        assert reply.status_code == 200, reply.json
        return [e["id"] for e in reply.json["entries"]], reply.json["next"]

    assert ids("")[0] == ["list-c", "list-b", "list-a"]
    assert ids("status=paused")[0] == ["list-b"]
    assert ids("mapper=slowtouch&status=running")[0] == ["list-c", "list-a"]
    assert ids("mapper=nothing-like-it") == ([], None)
    first, after = ids("limit=2")
    assert first == ["list-c", "list-b"] and after
    assert ids(f"limit=2&before={after}") == (["list-a"], None)
    bad = guarded.get("/_mapper/entries?status=sleeping", headers=ADMIN)
    assert bad.status_code == 400 and "status must be one of" in bad.json["error"]


def _form_token(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_control_forms_refuse_requests_without_credentials_or_csrf_token(guarded, namespace):
    start(guarded, "guarded", namespace, headers=ADMIN)
    page = guarded.get("/_mapper/console/guarded", headers=ADMIN)
    assert page.status_code == 200 and "running" in page.text
    token = _form_token(page.text)
    refused = {
        "no credentials": ({}, {"csrf": token}, 401),
        "no CSRF token": (ADMIN, {}, 403),
        "a wrong CSRF token": (ADMIN, {"csrf": "x" * 43}, 403),
        "another site's form": ({**ADMIN, "Origin": "https://evil.example"}, {"csrf": token}, 403),
    }
    for case, (headers, form, code) in refused.items():
        for action in ("pause", "abort"):
            reply = guarded.post(
                f"/_mapper/console/guarded/{action}",
                headers=headers,
                data={**form, "confirm": "yes"},
            )
            assert reply.status_code == code, case
            assert status(guarded, "guarded", ADMIN)["status"] == "running", case
    reply = guarded.post("/_mapper/console/guarded/pause", headers=ADMIN, data={"csrf": "x"})
    assert "no CSRF token" in reply.text or "does not match" in reply.text

    # The same form with its token pauses; a second pause (a stale page) is refused and says why.
    done = guarded.post("/_mapper/console/guarded/pause", headers=ADMIN, data={"csrf": token})
    assert done.status_code == 303 and status(guarded, "guarded", ADMIN)["status"] == "paused"
    stale = guarded.post("/_mapper/console/guarded/pause", headers=ADMIN, data={"csrf": token})
    assert stale.status_code == 409 and "Refused" in stale.text and "is paused" in stale.text

    # Abort asks first; only the confirmed form aborts.
    ask = guarded.post("/_mapper/console/guarded/abort", headers=ADMIN, data={"csrf": token})
    assert ask.status_code == 200 and "Yes, abort it" in ask.text
    assert status(guarded, "guarded", ADMIN)["status"] == "paused"
    yes = guarded.post(
        "/_mapper/console/guarded/abort", headers=ADMIN, data={"csrf": token, "confirm": "yes"}
    )
    assert yes.status_code == 303 and status(guarded, "guarded", ADMIN)["status"] == "aborted"


def test_the_throttle_form_changes_a_running_jobs_rate_and_refuses_bad_input(guarded, namespace):
    start(guarded, "slowed", namespace, headers=ADMIN)
    page = guarded.get("/_mapper/console/slowed", headers=ADMIN)
    assert 'name="max_rate"' in page.text
    token = _form_token(page.text)
    refused = {
        "no CSRF token": ({"max_rate": "50"}, 403),
        "not a number": ({"csrf": token, "max_rate": "fast"}, 400),
        "not positive": ({"csrf": token, "max_rate": "-5"}, 400),
    }
    for case, (form, code) in refused.items():
        reply = guarded.post("/_mapper/console/slowed/throttle", headers=ADMIN, data=form)
        assert reply.status_code == code, case
        assert "Refused" in reply.text or "CSRF" in reply.text, case
        assert status(guarded, "slowed", ADMIN)["max_rate"] is None, case
    done = guarded.post(
        "/_mapper/console/slowed/throttle", headers=ADMIN, data={"csrf": token, "max_rate": "50"}
    )
    assert done.status_code == 303 and status(guarded, "slowed", ADMIN)["max_rate"] == 50
    lifted = guarded.post(
        "/_mapper/console/slowed/throttle", headers=ADMIN, data={"csrf": token, "max_rate": ""}
    )
    assert lifted.status_code == 303 and status(guarded, "slowed", ADMIN)["max_rate"] is None


def test_a_missing_job_page_says_so(guarded):
    reply = guarded.get("/_mapper/console/nope", headers=ADMIN)
    assert reply.status_code == 404 and "no job, export or import 'nope'" in html.unescape(
        reply.text
    )
