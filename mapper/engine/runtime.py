"""Runtime: the settings, clients and dispatcher a process uses, built in one place."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from google.cloud import ndb

from mapper.datastore.cache import CacheCoherence, global_cache_from
from mapper.datastore.rpc import Send, Store
from mapper.dispatch.base import Dispatcher
from mapper.dispatch.messages import Task
from mapper.dispatch.select import make_dispatcher
from mapper.engine.routing import route
from mapper.settings import Settings

#: A test kit's hook (``mapper.testing.faults.FaultPlan``): called with a point's
#: name and details (job_id, shard, slice, batch, ...) at every named point, and
#: with ``rpc:NAME`` before every Datastore RPC. A hook that also has a method
#: ``rpc(name, request, send)`` wraps every RPC instead (see ``Store.intercept``):
#: that is how the fault layer applies a commit and then fails it.
FaultHook = Callable[[str, dict[str, Any]], None]


class Runtime:
    """Everything a task needs, passed explicitly (no module globals)."""

    def __init__(
        self,
        settings: Settings,
        dispatcher: Dispatcher | None = None,
        faults: FaultHook | None = None,
    ):
        self.settings = settings
        if settings.emulator_host:
            # ndb and google-cloud-datastore only learn the emulator from the env.
            os.environ["DATASTORE_EMULATOR_HOST"] = settings.emulator_host
        self.client = ndb.Client(project=settings.project, database=settings.database or None)
        self.faults = faults
        coherence = None
        if settings.ndb_global_cache:
            cache = global_cache_from(settings.ndb_global_cache)
            coherence = CacheCoherence(self.client, cache)
        self.store = Store(
            settings, self.client.stub.grpc_channel, intercept=self._intercept, coherence=coherence
        )
        if dispatcher is None:
            dispatcher = make_dispatcher(settings)
        self.dispatcher = dispatcher
        dispatcher.bind(self.handle)

    @contextlib.contextmanager
    def context(self, namespace: str | None = None) -> Iterator[Any]:
        """An ndb context with caches off: jobs read and write far more than fits."""
        ns = self.settings.state_namespace if namespace is None else namespace
        current = ndb.get_context(raise_context_error=False)
        if current is not None:  # re-entrant: public functions call each other
            with current.new(namespace=ns).use() as context:
                yield context
            return
        with self.client.context(
            namespace=ns, cache_policy=False, global_cache_policy=False
        ) as context:
            yield context

    def handle(self, task: Task) -> None:
        """Run one task (what the task endpoints and the local dispatcher call)."""
        route(self, task)

    def fault(self, point: str, **info: Any) -> None:
        if self.faults is not None:
            self.faults(point, info)

    def close(self) -> None:
        self.dispatcher.close()

    def _intercept(self, name: str, request: Any, send: Send) -> Any:
        faults = self.faults
        if faults is None:
            return send(request)
        wrap = getattr(faults, "rpc", None)  # the fault layer's RPC faults (FaultHook above)
        if wrap is not None:
            return wrap(name, request, send)
        faults(f"rpc:{name}", {})
        return send(request)


def runtime_from_env(**overrides: Any) -> Runtime:
    """A Runtime for the settings in the environment (the CLI and ``Mapper.run``)."""
    return Runtime(Settings.from_env(**overrides))
