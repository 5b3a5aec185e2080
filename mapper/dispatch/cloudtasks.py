"""CloudTasksDispatcher: one named Cloud Tasks task per slice (google-cloud-tasks 2.x)."""

from __future__ import annotations

import datetime
import logging
from typing import Any

from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry
from google.auth import exceptions as auth_exceptions
from google.cloud import tasks_v2

from mapper.dispatch.base import Dispatcher
from mapper.dispatch.messages import Task, task_to_json
from mapper.errors import ConfigurationError, DispatchError
from mapper.settings import Settings

logger = logging.getLogger(__name__)

#: Where each kind of task is delivered, under ``settings.url_prefix`` (mapper.web's mount).
TASK_PATHS = {
    "slice": "/tasks/slice",
    "finalize": "/tasks/finalize",
}

#: A slice stops this long before the queue would give up on its request.
DEADLINE_MARGIN = 60.0
#: Cloud Tasks bounds an HTTP target's dispatch deadline to [15 s, 30 min].
MIN_HTTP_DEADLINE = 15.0
MAX_HTTP_DEADLINE = 1800.0

# A named task makes CreateTask safe to retry: if a lost response hid a
# success, the retry answers ALREADY_EXISTS, which enqueue() counts as done.
_CREATE_RETRY = api_retry.Retry(
    initial=0.2,
    maximum=5.0,
    multiplier=2.0,
    timeout=60.0,
    predicate=api_retry.if_exception_type(
        api_exceptions.ServiceUnavailable,
        api_exceptions.DeadlineExceeded,
        api_exceptions.InternalServerError,
    ),
)


def oidc_audience(settings: Settings) -> str | None:
    """The audience of the OIDC tokens HTTP-target tasks carry (and handlers expect).

    Explicit ``MAPPER_TASK_AUDIENCE`` if set, else the app's base URL, so that
    one audience covers every task endpoint. None when neither is configured.
    """
    if settings.task_audience:
        return settings.task_audience
    if settings.task_url:
        return settings.task_url.rstrip("/")
    return None


def make_client(settings: Settings) -> tasks_v2.CloudTasksClient:
    """A CloudTasksClient for production, or for the emulator when one is configured."""
    if settings.tasks_emulator_host:
        # Only the emulator path needs a hand-made channel: loaded here, not for production.
        import grpc  # noqa: PLC0415
        from google.cloud.tasks_v2.services.cloud_tasks.transports import (  # noqa: PLC0415
            CloudTasksGrpcTransport,
        )

        # An explicit channel makes the transport ignore credentials, so the
        # emulator never sees (or needs) a real identity.
        channel = grpc.insecure_channel(settings.tasks_emulator_host)
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    try:
        return tasks_v2.CloudTasksClient()
    except auth_exceptions.DefaultCredentialsError as e:
        raise ConfigurationError(
            f"MAPPER_QUEUE={settings.queue!r} needs Google credentials for Cloud Tasks "
            f"(or CLOUD_TASKS_EMULATOR_HOST): {e}"
        ) from e


class CloudTasksDispatcher(Dispatcher):
    """Enqueues each task under its deterministic name on ``settings.queue``.

    App Engine targets (no ``task_url``) get a relative URI and the queue's
    dispatch deadline; HTTP targets get a URL, an OIDC token with an explicit
    audience, and a dispatch deadline sized from ``slice_seconds``.
    """

    def __init__(self, settings: Settings, client: Any = None):
        if settings.queue is None:
            raise ConfigurationError("CloudTasksDispatcher needs MAPPER_QUEUE")
        if settings.task_url is not None:
            _check_http_target(settings)
        self.settings = settings
        self.queue: str = settings.queue
        self._client = client if client is not None else make_client(settings)

    def enqueue(self, task: Task, delay: float = 0.0) -> bool:
        proto = self.build_task(task, delay)
        try:
            self._client.create_task(parent=self.queue, task=proto, retry=_CREATE_RETRY)
        except api_exceptions.AlreadyExists:
            logger.info("task %s already exists on %s", proto.name, self.queue)
            return False
        except (api_exceptions.GoogleAPICallError, api_exceptions.RetryError) as e:
            raise DispatchError(
                f"could not enqueue task {proto.name!r} on queue {self.queue!r}: {e}"
            ) from e
        return True

    def build_task(self, task: Task, delay: float = 0.0) -> tasks_v2.Task:
        """The Task proto :meth:`enqueue` sends for ``task``."""
        body = task_to_json(task).encode()
        headers = {"Content-Type": "application/json"}
        path = self.settings.url_prefix + TASK_PATHS[task.kind]
        proto = tasks_v2.Task(name=f"{self.queue}/tasks/{task.task_name()}")
        if self.settings.task_url is None:
            proto.app_engine_http_request = tasks_v2.AppEngineHttpRequest(
                http_method=tasks_v2.HttpMethod.POST,
                relative_uri=path,
                headers=headers,
                body=body,
                app_engine_routing=tasks_v2.AppEngineRouting(
                    service=self.settings.task_service or "",
                    version=self.settings.task_version or "",
                ),
            )
        else:
            proto.http_request = tasks_v2.HttpRequest(
                http_method=tasks_v2.HttpMethod.POST,
                url=self.settings.task_url.rstrip("/") + path,
                headers=headers,
                body=body,
                oidc_token=tasks_v2.OidcToken(
                    service_account_email=self.settings.task_service_account,
                    audience=oidc_audience(self.settings),
                ),
            )
            proto.dispatch_deadline = datetime.timedelta(seconds=http_deadline(self.settings))
        if delay > 0:
            proto.schedule_time = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
                seconds=delay
            )
        return proto

    def close(self) -> None:
        transport = getattr(self._client, "transport", None)
        if transport is not None:
            transport.close()


def http_deadline(settings: Settings) -> float:
    """Dispatch deadline (seconds) of an HTTP-target slice: the time box plus a margin."""
    return max(MIN_HTTP_DEADLINE, min(MAX_HTTP_DEADLINE, settings.slice_seconds + DEADLINE_MARGIN))


def _check_http_target(settings: Settings) -> None:
    if not settings.task_service_account:
        raise ConfigurationError(
            f"MAPPER_TASK_URL={settings.task_url!r} needs MAPPER_TASK_SERVICE_ACCOUNT: "
            "HTTP-target tasks must carry an OIDC token"
        )
    if settings.slice_seconds + DEADLINE_MARGIN > MAX_HTTP_DEADLINE:
        raise ConfigurationError(
            f"MAPPER_SLICE_SECONDS={settings.slice_seconds!r} leaves less than "
            f"{DEADLINE_MARGIN:.0f} s under the 30 min dispatch deadline of HTTP targets"
        )
