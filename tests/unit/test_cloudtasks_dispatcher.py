"""CloudTasksDispatcher builds the right Task protos and maps API errors (fake client)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from google.api_core import exceptions as api_exceptions
from google.cloud import tasks_v2

from mapper.dispatch.cloudtasks import CloudTasksDispatcher, http_deadline, oidc_audience
from mapper.dispatch.local import LocalDispatcher
from mapper.dispatch.messages import FinalizeTask, SliceTask, task_from_json, task_to_json
from mapper.dispatch.select import make_dispatcher
from mapper.errors import ConfigurationError, DispatchError, InvalidJobError
from mapper.settings import Settings

QUEUE = "projects/demo/locations/us-central1/queues/mapper"
SA = "tasks@demo.iam.gserviceaccount.com"


class FakeTasksClient:
    """Captures created tasks; refuses a name twice like Cloud Tasks; can fail on demand."""

    def __init__(self, error: Exception | None = None):
        self.created: list[tasks_v2.Task] = []
        self.parents: list[str] = []
        self.error = error

    def create_task(self, *, parent: str, task: tasks_v2.Task, **kwargs: Any) -> tasks_v2.Task:
        if self.error is not None:
            raise self.error
        if any(t.name == task.name for t in self.created):
            raise api_exceptions.AlreadyExists(f"task {task.name} already exists")
        self.parents.append(parent)
        self.created.append(task)
        return task


def app_engine_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        project="demo", queue=QUEUE, task_service="worker", task_version="v7"
    )
    values.update(overrides)
    return Settings(**values)


def http_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        project="demo",
        queue=QUEUE,
        task_url="https://mapper.example.com/",
        task_service_account=SA,
    )
    values.update(overrides)
    return Settings(**values)


def test_app_engine_target_gets_relative_uri_routing_and_json_body() -> None:
    client = FakeTasksClient()
    task = SliceTask("job1", shard=2, slice=5)

    assert CloudTasksDispatcher(app_engine_settings(), client=client).enqueue(task) is True

    (created,) = client.created
    assert client.parents == [QUEUE]
    assert created.name == f"{QUEUE}/tasks/{task.task_name()}"
    request = created.app_engine_http_request
    assert request.relative_uri == "/_mapper/tasks/slice"
    assert request.http_method == tasks_v2.HttpMethod.POST
    assert request.headers["Content-Type"] == "application/json"
    assert task_from_json(request.body) == task
    assert request.app_engine_routing.service == "worker"
    assert request.app_engine_routing.version == "v7"
    assert not created.http_request.url


def test_app_engine_target_keeps_the_queue_dispatch_deadline() -> None:
    client = FakeTasksClient()
    CloudTasksDispatcher(app_engine_settings(), client=client).enqueue(FinalizeTask("job1"))

    (created,) = client.created
    assert created.app_engine_http_request.relative_uri == "/_mapper/tasks/finalize"
    assert "dispatch_deadline" not in created


def test_http_target_carries_oidc_token_with_explicit_audience_and_service_account() -> None:
    client = FakeTasksClient()
    task = FinalizeTask("job1")

    CloudTasksDispatcher(http_settings(), client=client).enqueue(task)

    (created,) = client.created
    request = created.http_request
    assert request.url == "https://mapper.example.com/_mapper/tasks/finalize"
    assert task_from_json(request.body) == task
    assert request.oidc_token.service_account_email == SA
    assert request.oidc_token.audience == "https://mapper.example.com"
    assert not created.app_engine_http_request.relative_uri


def test_http_target_uses_the_configured_audience_when_set() -> None:
    client = FakeTasksClient()
    settings = http_settings(task_audience="mapper-tasks")

    CloudTasksDispatcher(settings, client=client).enqueue(SliceTask("job1", 0, 0))

    assert client.created[0].http_request.oidc_token.audience == "mapper-tasks"
    assert oidc_audience(settings) == "mapper-tasks"


def test_http_target_dispatch_deadline_is_the_slice_box_plus_a_margin() -> None:
    client = FakeTasksClient()
    settings = http_settings(slice_seconds=300.0)

    CloudTasksDispatcher(settings, client=client).enqueue(SliceTask("job1", 0, 0))

    deadline = client.created[0].dispatch_deadline
    assert deadline == datetime.timedelta(seconds=http_deadline(settings))
    assert 300 < deadline.total_seconds() <= 1800


def test_http_target_without_service_account_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="MAPPER_TASK_SERVICE_ACCOUNT"):
        CloudTasksDispatcher(http_settings(task_service_account=None), client=FakeTasksClient())


def test_http_target_refuses_a_slice_box_longer_than_the_max_deadline() -> None:
    with pytest.raises(ConfigurationError, match="MAPPER_SLICE_SECONDS"):
        CloudTasksDispatcher(http_settings(slice_seconds=1790.0), client=FakeTasksClient())


def test_already_existing_name_returns_false() -> None:
    client = FakeTasksClient()
    dispatcher = CloudTasksDispatcher(app_engine_settings(), client=client)
    task = SliceTask("job1", 0, 1)

    assert dispatcher.enqueue(task) is True
    assert dispatcher.enqueue(task) is False
    assert len(client.created) == 1


@pytest.mark.parametrize(
    "error",
    [
        api_exceptions.PermissionDenied("caller lacks cloudtasks.tasks.create"),
        api_exceptions.NotFound("queue does not exist"),
        api_exceptions.RetryError("deadline of 60.0s exceeded", cause=None),
    ],
)
def test_other_api_errors_raise_dispatch_error_naming_task_and_queue(error: Exception) -> None:
    client = FakeTasksClient(error=error)
    task = SliceTask("job1", 0, 1)

    with pytest.raises(DispatchError) as raised:
        CloudTasksDispatcher(app_engine_settings(), client=client).enqueue(task)

    assert task.task_name() in str(raised.value)
    assert QUEUE in str(raised.value)
    assert raised.value.__cause__ is error


def test_delay_sets_schedule_time_and_no_delay_leaves_it_unset() -> None:
    client = FakeTasksClient()
    dispatcher = CloudTasksDispatcher(app_engine_settings(), client=client)
    before = datetime.datetime.now(datetime.UTC)

    dispatcher.enqueue(SliceTask("job1", 0, 1), delay=30.0)
    dispatcher.enqueue(SliceTask("job1", 0, 2))

    delayed, immediate = client.created
    scheduled = delayed.schedule_time - before
    assert datetime.timedelta(seconds=29) < scheduled < datetime.timedelta(seconds=32)
    assert "schedule_time" not in immediate


def test_make_dispatcher_is_local_without_a_queue() -> None:
    dispatcher = make_dispatcher(Settings(project="demo", local_workers=2))
    ran: list[SliceTask] = []
    try:
        assert isinstance(dispatcher, LocalDispatcher) and dispatcher.in_process
        dispatcher.bind(ran.append)
        task = SliceTask("job1", 0, 0)
        assert dispatcher.enqueue(task) and dispatcher.wait_idle(5)
        assert not dispatcher.enqueue(task)  # a used name is refused, as Cloud Tasks does
        assert dispatcher.wait_idle(5) and ran == [task]  # run here, in this process, once
    finally:
        dispatcher.close()


def test_make_dispatcher_uses_cloud_tasks_with_a_queue() -> None:
    settings = app_engine_settings(tasks_emulator_host="localhost:1")
    dispatcher = make_dispatcher(settings)
    try:
        assert isinstance(dispatcher, CloudTasksDispatcher) and not dispatcher.in_process
        # Tasks go to the configured queue, by name, as App Engine requests to the slice path.
        built = dispatcher.build_task(SliceTask("job1", 0, 0))
        assert built.name.startswith(f"{settings.queue}/tasks/")
        assert built.app_engine_http_request.relative_uri.endswith("/tasks/slice")
    finally:
        dispatcher.close()


def test_a_finalize_task_is_named_per_job_generation() -> None:
    names = {FinalizeTask("job1", g).task_name() for g in (0, 1, 2)}
    assert len(names) == 3
    assert task_from_json(task_to_json(FinalizeTask("job1", 2))) == FinalizeTask("job1", 2)
    with pytest.raises(InvalidJobError, match="generation"):
        task_from_json('{"kind": "finalize", "job_id": "job1", "generation": -1}')
