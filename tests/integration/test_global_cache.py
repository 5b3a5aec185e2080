"""An app reading through ndb's global cache (a real redis-server, a real memcached) sees
every write and delete a job made, even when it reads while the job runs."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.cloud import ndb

from mapper.datastore.cache import global_cache_from
from mapper.engine.jobs import start_job
from mapper.engine.loading import class_spec
from mapper.engine.records import JobStatus
from mapper.engine.runtime import Runtime
from mapper.engine.spec import JobSpec
from mapper.testing.process import ManagedProcess, free_port, listening, spawn
from tests.support.live_models import Hooked, PutOddDeleteEven

SERVERS = {
    "redis": (["redis-server", "--port", "{port}", "--save", "", "--appendonly", "no"],
              "redis://127.0.0.1:{port}/0", "redis-server"),
    "memcached": (["memcached", "-l", "127.0.0.1", "-p", "{port}", "-U", "0", "-u", "root"],
                  "memcached://127.0.0.1:{port}", "memcached"),
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(SERVERS))
def cache_url(request, tmp_path_factory) -> Iterator[str]:
    """A cache server of its own for this module; its URL as MAPPER_NDB_GLOBAL_CACHE takes it."""
    args, url, package = SERVERS[request.param]
    if shutil.which(args[0]) is None:
        pytest.fail(f"{args[0]} is not installed: apt-get install {package} (make test does)")
    port = free_port()
    log = Path(tmp_path_factory.mktemp("cache")) / "server.log"
    server = ManagedProcess(spawn([a.format(port=port) for a in args], log, {}), log)
    try:
        server.wait_until(lambda: listening("127.0.0.1", port), 20, args[0])
        yield url.format(port=port)
    finally:
        server.stop()


@pytest.fixture
def app(ndb_client, cache_url):
    """The app's own ndb reads: through the global cache, as App Engine apps configure it."""
    cache = global_cache_from(cache_url)

    def read(keys: list[ndb.Key]) -> list[Hooked | None]:
        with ndb_client.context(global_cache=cache):
            return ndb.get_multi(keys)

    return read


@pytest.fixture
def cached_runtime(settings, cache_url, emulator_env) -> Iterator[Runtime]:
    rt = Runtime(settings.replace(ndb_global_cache=cache_url))
    yield rt
    rt.close()


def seed(ndb_client, n: int) -> list[ndb.Key]:
    with ndb_client.context(cache_policy=False, global_cache_policy=False):
        return ndb.put_multi([Hooked(id=i, n=i) for i in range(1, n + 1)])


def run(rt: Runtime, namespace: str, **options) -> None:
    spec = JobSpec(mapper=class_spec(PutOddDeleteEven), namespace=namespace, **options)
    assert start_job(rt, spec).wait(timeout=120).status == JobStatus.SUCCEEDED


def expected(keys: list[ndb.Key]) -> list[int | None]:
    return [k.id() + 100 if k.id() % 2 else None for k in keys]


def seen(entities: list[Hooked | None]) -> list[int | None]:
    return [e.n if e is not None else None for e in entities]


def test_an_app_reading_through_its_cache_sees_what_the_job_wrote_and_deleted(
    ndb_client, app, cached_runtime, namespace
):
    keys = seed(ndb_client, 50)
    assert seen(app(keys)) == list(range(1, 51))  # every entity is now in the cache
    run(cached_runtime, namespace, batch_size=10, shards=2)
    assert seen(app(keys)) == expected(keys)


def test_a_reader_racing_the_job_never_leaves_an_old_value_cached(
    ndb_client, app, cached_runtime, namespace
):
    keys = seed(ndb_client, 200)
    stop = threading.Event()
    reads = []

    def reader() -> None:
        while not stop.is_set():
            reads.append(seen(app(keys)))

    racers = [threading.Thread(target=reader) for _ in range(2)]
    for racer in racers:
        racer.start()
    try:
        run(cached_runtime, namespace, batch_size=5)
    finally:
        stop.set()
        for racer in racers:
            racer.join()
    assert len(reads) > 2  # the readers did read while the job ran
    assert seen(app(keys)) == expected(keys)
