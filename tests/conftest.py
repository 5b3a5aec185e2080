"""Shared fixtures: real emulators, one fresh namespace per test (as python-ndb's system tests)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from google.cloud import datastore, ndb

from mapper.settings import Settings
from mapper.testing.emulator import Emulator, settings_for_tests, start_emulator

EMULATOR_KINDS = ("datastore", "firestore")


def _selected_kinds() -> list[str]:
    raw = os.environ.get("MAPPER_TEST_EMULATORS", ",".join(EMULATOR_KINDS))
    kinds = [kind.strip() for kind in raw.split(",") if kind.strip()]
    unknown = sorted(set(kinds) - set(EMULATOR_KINDS))
    if unknown or not kinds:
        raise pytest.UsageError(
            f"MAPPER_TEST_EMULATORS must be a comma list of {EMULATOR_KINDS}, got {raw!r}"
        )
    return kinds


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test`` runs ``-n 2 --dist loadgroup``), every test of one
    emulator kind goes to the same worker: each worker starts one emulator, as a serial
    run does, and the two kinds' tests run side by side (the suite mostly waits on the
    emulators: measured 50-70% idle CPU serially)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        kind = callspec.params.get("emulator") if callspec is not None else None
        if kind is not None:
            item.add_marker(pytest.mark.xdist_group(kind))


@pytest.fixture(scope="session", params=_selected_kinds())
def emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """A running emulator, shared by the session; tests run once per selected kind."""
    with start_emulator(request.param) as running:
        yield running


#: Per emulator kind, the test module that last used it.
_LAST_MODULE: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _fresh_emulator_per_module(request: pytest.FixtureRequest) -> None:
    """Empty the shared emulator when a new test module starts using it.

    Tests are isolated by namespace, but the Datastore emulator's queries slow down
    with every entity of the kind in ANY namespace (measured: reading 20,000 entities
    took 6 s alone and 31 s beside 200,000 of the same kind elsewhere), so data left by
    earlier modules made the 50,000-entity test time out late in a full run. Nothing
    stored outlives a module: no fixture above module scope writes to the emulator.
    """
    if "emulator" not in request.fixturenames:
        return
    emulator: Emulator = request.getfixturevalue("emulator")
    module = request.node.module.__name__
    if _LAST_MODULE.get(emulator.kind) not in (None, module):
        emulator.reset()
    _LAST_MODULE[emulator.kind] = module


@pytest.fixture
def namespace() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def emulator_env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """Point google-cloud clients built during this test at the emulator."""
    for name, value in emulator.env.items():
        monkeypatch.setenv(name, value)
    return emulator


@pytest.fixture
def settings(emulator_env: Emulator, namespace: str) -> Settings:
    """Settings for the emulator; state and test data share the test's namespace."""
    return settings_for_tests(emulator_env.host, emulator_env.project, namespace)


@pytest.fixture
def ndb_client(emulator_env: Emulator, namespace: str) -> Iterator[ndb.Client]:
    client = ndb.Client(project=emulator_env.project, namespace=namespace)
    yield client
    client.stub.close()


@pytest.fixture
def ndb_context(ndb_client: ndb.Client) -> Iterator[ndb.Context]:
    with ndb_client.context(cache_policy=False, global_cache_policy=False) as context:
        yield context


@pytest.fixture
def datastore_client(emulator_env: Emulator, namespace: str) -> Iterator[datastore.Client]:
    client = datastore.Client(project=emulator_env.project, namespace=namespace)
    yield client
    client.close()


@pytest.fixture
def needs_metadata(emulator: Emulator) -> None:
    if not emulator.supports_metadata:
        pytest.skip(
            "Firestore emulator in Datastore mode has no metadata queries "
            "(DESIGN.md emulator table)"
        )


@pytest.fixture
def needs_scatter(emulator: Emulator) -> None:
    if not emulator.supports_scatter:
        pytest.skip(
            "Firestore emulator in Datastore mode has no __scatter__ (DESIGN.md emulator table)"
        )


@pytest.fixture
def needs_conflict_detection(emulator: Emulator) -> None:
    if emulator.kind != "datastore":
        pytest.skip(
            "the Firestore emulator in Datastore mode ignores Mutation.base_version "
            "(measured; docs/live-app.md): conflict-checked writes are tested on the "
            "Datastore emulator, as production Datastore checks them"
        )


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """An in-process Cloud Storage emulator (gcp-storage-emulator); yields its URL."""
    from gcp_storage_emulator.server import create_server

    from mapper.testing.process import free_port

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def gcs_bucket(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket in the GCS emulator, as ``gs://name``; storage clients find the emulator."""
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    name = "b" + uuid.uuid4().hex[:16]
    storage.Client().create_bucket(name)
    return f"gs://{name}"
