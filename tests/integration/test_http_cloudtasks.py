"""End to end: one POST starts a job; the Cloud Tasks emulator delivers every slice to the app."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from google.cloud import datastore
from werkzeug.serving import make_server

from handlers import create_app
from mapper.dispatch.cloudtasks import CloudTasksDispatcher
from mapper.dispatch.messages import SliceTask
from mapper.settings import Settings
from mapper.testing.process import free_port
from mapper.testing.tasks_emulator import DEFAULT_QUEUE, TasksEmulator, start_tasks_emulator
from tests.support.mappers import seed_people_raw

ENTITIES = 20_000


@pytest.fixture(scope="module")
def app_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def tasks_emulator(app_port: int) -> Iterator[TasksEmulator]:
    with start_tasks_emulator(queue=DEFAULT_QUEUE, target_port=app_port) as running:
        yield running


class ServedApp:
    """The Flask app on a real port, in a thread, as the emulator's delivery target."""

    def __init__(self, settings: Settings, port: int):
        self.app = create_app(settings)
        #: (path, status) of every task delivery, in the order they were answered.
        self.deliveries: list[tuple[str, int]] = []
        self.app.wsgi_app = _recording(self.app.wsgi_app, self.deliveries)  # type: ignore[method-assign]
        self.url = f"http://127.0.0.1:{port}"
        self._server = make_server("127.0.0.1", port, self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.url + path, timeout=30, **kwargs)

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=30)

    def wait(self, job_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.get(f"/_mapper/jobs/{job_id}").json()
            if status["status"] in ("succeeded", "failed", "aborted"):
                return status
            assert time.monotonic() < deadline, status
            time.sleep(0.2)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.app.extensions["mapper"].close()


def _recording(wsgi_app: Any, log: list[tuple[str, int]]) -> Any:
    """WSGI middleware noting what the app answered to each task delivery."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        def start(status: str, headers: Any, exc_info: Any = None) -> Any:
            if environ["PATH_INFO"].startswith("/_mapper/tasks/"):
                log.append((environ["PATH_INFO"], int(status.split()[0])))
            return start_response(status, headers, exc_info)

        return wsgi_app(environ, start)

    return app


@pytest.fixture
def served(settings, tasks_emulator, app_port) -> Iterator[ServedApp]:
    app_settings = settings.replace(
        auth="off",
        queue=tasks_emulator.queue,
        tasks_emulator_host=tasks_emulator.host,
        slice_seconds=3.0,
        lease_seconds=10.0,
    )
    served = ServedApp(app_settings, app_port)
    yield served
    served.close()


def touched(client: datastore.Client) -> collections.Counter[int]:
    query = client.query(kind="Person")
    query.projection = ["touched"]
    return collections.Counter(e["touched"] for e in query.fetch())


def test_one_post_runs_a_4_shard_20k_job_through_the_tasks_emulator(
    served, namespace, datastore_client, emulator
):
    # The emulator delivers one task at a time per queue, so the 4 shards take
    # turns; batches of 500 keep the number of deliveries (and the run) small.
    # Measured on this shared 2-core machine: the job itself takes 14 s on the
    # Datastore emulator and 22 s on Firestore's; the whole test 27-50 s with
    # seeding. The Firestore emulator has no __scatter__, so the job runs as 1
    # shard there (asserted below).
    seed_people_raw(datastore_client, ENTITIES)
    started = time.monotonic()
    body = {"mapper": "tests.support.mappers:TouchPeople", "namespace": namespace, "shards": 4,
            "batch_size": 500, "id": "e2e"}  # fmt: skip
    reply = served.post("/_mapper/jobs", json=body)
    assert reply.status_code == 200 and reply.json() == {"id": "e2e"}

    status = served.wait("e2e", timeout=120)
    print(f"20k job through the tasks emulator: {time.monotonic() - started:.1f} s")

    assert status["status"] == "succeeded", status
    assert status["counters"] == {"processed": ENTITIES, "put": ENTITIES, "deleted": 0}
    shards = status["shards"]
    assert len(shards) == (4 if emulator.supports_scatter else 1)
    assert all(s["status"] == "done" and s["counters"]["processed"] > 0 for s in shards)
    assert sum(s["counters"]["processed"] for s in shards) == ENTITIES
    assert touched(datastore_client) == {1: ENTITIES}


def test_duplicated_tasks_change_nothing(served, namespace, datastore_client, tasks_emulator):
    seed_people_raw(datastore_client, 2_000)
    body = {"mapper": "tests.support.mappers:TouchPeople", "namespace": namespace, "shards": 2,
            "batch_size": 200, "id": "dup"}  # fmt: skip
    served.post("/_mapper/jobs", json=body)
    # The emulator does not de-duplicate names: every first slice arrives twice more.
    dispatcher = CloudTasksDispatcher(served.app.extensions["mapper"].settings)
    for shard in range(2):
        for _ in range(2):
            assert dispatcher.enqueue(SliceTask("dup", shard, 0, 0)) is True
    status = served.wait("dup", timeout=120)
    # Late duplicates of the finished job are stale: still no second touch.
    for shard in range(2):
        dispatcher.enqueue(SliceTask("dup", shard, 1, 0))
    time.sleep(1.0)
    assert status["status"] == "succeeded"
    assert served.get("/_mapper/jobs/dup").json()["counters"]["processed"] == 2_000
    assert touched(datastore_client) == {1: 2_000}
    dispatcher.close()


def test_a_failing_slice_fails_the_job_and_the_queue_stops_delivering_it(
    served, namespace, datastore_client
):
    seed_people_raw(datastore_client, 50)
    body = {"mapper": "tests.support.mappers:Poison", "params": {"poison": "p00025"},
            "namespace": namespace, "batch_size": 10, "id": "poison"}  # fmt: skip
    served.post("/_mapper/jobs", json=body)

    status = served.wait("poison", timeout=60)

    assert status["status"] == "failed", status
    assert "cannot map p00025" in status["error"]
    # Only whole batches before the poison count (ids are allocated: key order is not name order).
    processed = status["counters"]["processed"]
    assert processed % 10 == 0 and processed < 50
    # settings.max_attempts == 3: two retryable answers, then 2xx with the job FAILED.
    slices = [code for path, code in served.deliveries if path.endswith("/slice")]
    assert slices.count(503) == 2 and slices[-1] == 200, served.deliveries
    delivered = len(served.deliveries)
    time.sleep(1.5)  # the emulator would redeliver a non-2xx task within ~0.1 s
    assert len(served.deliveries) == delivered
