"""CloudTasksDispatcher against the real Cloud Tasks emulator, delivering to a local server."""

from __future__ import annotations

import email.message
import http.server
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mapper.dispatch.cloudtasks import CloudTasksDispatcher
from mapper.dispatch.messages import FinalizeTask, SliceTask, task_to_json
from mapper.settings import Settings
from mapper.testing.tasks_emulator import (
    DEFAULT_QUEUE,
    TasksEmulator,
    free_port,
    start_tasks_emulator,
)


class Delivery:
    def __init__(self, method: str, path: str, headers: email.message.Message, body: bytes):
        self.method = method
        self.path = path
        # Case-insensitive: the emulator (urllib) sends "X-appengine-queuename".
        self.headers = headers
        self.body = body
        self.at = time.monotonic()

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class TargetServer:
    """A throwaway HTTP server standing for the app; records every request."""

    def __init__(self, port: int):
        self.deliveries: list[Delivery] = []
        #: Decides the status of each delivery; tests replace it.
        self.status: Callable[[Delivery], int] = lambda d: 200
        self._cond = threading.Condition()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                delivery = Delivery("POST", self.path, self.headers, body)
                with server._cond:
                    server.deliveries.append(delivery)
                    server._cond.notify_all()
                self.send_response(server.status(delivery))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.port = port
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, job_id: str, count: int = 1, timeout: float = 15.0) -> list[Delivery]:
        """The deliveries whose body names ``job_id``, once there are ``count`` of them."""

        def mine() -> list[Delivery]:
            return [d for d in self.deliveries if d.json.get("job_id") == job_id]

        with self._cond:
            self._cond.wait_for(lambda: len(mine()) >= count, timeout)
            return mine()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture(scope="module")
def target() -> Iterator[TargetServer]:
    server = TargetServer(free_port())
    yield server
    server.close()


@pytest.fixture(scope="module")
def tasks_emulator(target: TargetServer) -> Iterator[TasksEmulator]:
    with start_tasks_emulator(queue=DEFAULT_QUEUE, target_port=target.port) as running:
        yield running


@pytest.fixture(autouse=True)
def always_succeed(target: TargetServer) -> None:
    target.status = lambda d: 200


def dispatcher_for(tasks_emulator: TasksEmulator, **overrides: Any) -> CloudTasksDispatcher:
    values: dict[str, Any] = dict(
        project="demo", queue=tasks_emulator.queue, tasks_emulator_host=tasks_emulator.host
    )
    values.update(overrides)
    return CloudTasksDispatcher(Settings(**values))


def new_job_id() -> str:
    return f"job-{uuid.uuid4().hex[:12]}"


def test_app_engine_target_task_is_posted_to_the_slice_endpoint_with_its_json_body(
    tasks_emulator: TasksEmulator, target: TargetServer
) -> None:
    task = SliceTask(new_job_id(), shard=1, slice=3)

    assert dispatcher_for(tasks_emulator).enqueue(task) is True

    (delivery,) = target.wait_for(task.job_id)
    assert delivery.method == "POST"
    assert delivery.path == "/_mapper/tasks/slice"
    assert delivery.body == task_to_json(task).encode()
    assert delivery.headers["Content-Type"] == "application/json"
    # The emulator sends the full queue path where App Engine sends the short name.
    assert delivery.headers["X-AppEngine-QueueName"] == tasks_emulator.queue
    assert delivery.headers["X-AppEngine-TaskName"] == task.task_name()
    assert delivery.headers["X-AppEngine-TaskRetryCount"] == "0"


def test_http_target_task_is_posted_to_its_url_without_an_oidc_token(
    tasks_emulator: TasksEmulator, target: TargetServer
) -> None:
    dispatcher = dispatcher_for(
        tasks_emulator,
        task_url=f"http://127.0.0.1:{target.port}/",
        task_service_account="tasks@demo.iam.gserviceaccount.com",
    )
    task = FinalizeTask(new_job_id())

    assert dispatcher.enqueue(task) is True

    (delivery,) = target.wait_for(task.job_id)
    assert delivery.path == "/_mapper/tasks/finalize"
    assert delivery.json == {"job_id": task.job_id, "kind": "finalize", "generation": 0}
    assert delivery.headers["X-CloudTasks-TaskName"] == task.task_name()
    # The emulator ignores oidc_token: handlers need MAPPER_AUTH=off against it.
    assert "Authorization" not in delivery.headers


def test_emulator_does_not_deduplicate_task_names(
    tasks_emulator: TasksEmulator, target: TargetServer
) -> None:
    dispatcher = dispatcher_for(tasks_emulator)
    task = SliceTask(new_job_id(), shard=0, slice=1)

    # Cloud Tasks would answer ALREADY_EXISTS (False) the second time; the
    # emulator accepts the name again and delivers twice. The unit tests force
    # ALREADY_EXISTS with a fake client instead.
    assert dispatcher.enqueue(task) is True
    assert dispatcher.enqueue(task) is True

    assert len(target.wait_for(task.job_id, count=2)) == 2


def test_delayed_task_is_not_delivered_before_its_schedule_time(
    tasks_emulator: TasksEmulator, target: TargetServer
) -> None:
    task = SliceTask(new_job_id(), shard=0, slice=2)
    enqueued = time.monotonic()

    dispatcher_for(tasks_emulator).enqueue(task, delay=2.0)

    (delivery,) = target.wait_for(task.job_id)
    assert delivery.at - enqueued >= 1.5


def test_failed_delivery_is_retried_with_a_growing_retry_count(
    tasks_emulator: TasksEmulator, target: TargetServer
) -> None:
    task = SliceTask(new_job_id(), shard=0, slice=4)
    target.status = lambda d: 503 if d.headers["X-AppEngine-TaskRetryCount"] == "0" else 200

    dispatcher_for(tasks_emulator).enqueue(task)

    first, second = target.wait_for(task.job_id, count=2)
    retry_counts = [d.headers["X-AppEngine-TaskRetryCount"] for d in (first, second)]
    assert retry_counts == ["0", "1"]
    time.sleep(0.5)
    assert len(target.wait_for(task.job_id)) == 2
