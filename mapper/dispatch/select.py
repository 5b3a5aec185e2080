"""Choosing the dispatcher from settings: no queue means in-process."""

from __future__ import annotations

from mapper.dispatch.base import Dispatcher
from mapper.dispatch.local import LocalDispatcher
from mapper.settings import Settings


def make_dispatcher(settings: Settings) -> Dispatcher:
    """LocalDispatcher when ``settings.queue`` is None, else CloudTasksDispatcher."""
    if settings.queue is None:
        return LocalDispatcher(settings.local_workers)
    # Imported here so the local path never loads google-cloud-tasks.
    from mapper.dispatch.cloudtasks import CloudTasksDispatcher  # noqa: PLC0415

    return CloudTasksDispatcher(settings)
