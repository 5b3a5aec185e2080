"""A pytest plugin for your own tests: an emulator, a fresh namespace, a Runtime with faults.

Enable it in your ``conftest.py`` (nothing registers it for you)::

    pytest_plugins = ["mapper.testing.pytest_plugin"]

Fixtures:
- ``mapper_settings``: Settings on a Datastore emulator (the one at
  ``DATASTORE_EMULATOR_HOST``, or one started for the session, of the kind in
  ``MAPPER_TEST_EMULATOR``: ``datastore`` (default) or ``firestore``), with mapper's
  state in a fresh namespace per test (``mapper_namespace``);
- ``mapper_faults``: a ``FaultPlan`` (seed 0) the Runtime below consults;
- ``mapper_runtime``: a Runtime on those settings with those faults and the local
  dispatcher (closed after the test).

See docs/faults.md for what a FaultPlan can inject.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from mapper.engine.runtime import Runtime
from mapper.settings import Settings
from mapper.testing.emulator import start_emulator
from mapper.testing.faults import FaultPlan


@pytest.fixture(scope="session")
def mapper_emulator_host() -> Iterator[tuple[str, str]]:
    """(host:port, project) of the emulator the session's tests use."""
    host = os.environ.get("DATASTORE_EMULATOR_HOST")
    if host:
        yield host, os.environ.get("GOOGLE_CLOUD_PROJECT") or "demo"
        return
    with start_emulator(os.environ.get("MAPPER_TEST_EMULATOR", "datastore")) as emulator:
        yield emulator.host, emulator.project


@pytest.fixture
def mapper_namespace() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def mapper_settings(
    mapper_emulator_host: tuple[str, str], mapper_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    host, project = mapper_emulator_host
    # Clients built during the test (ndb, google-cloud-datastore) find the emulator too.
    monkeypatch.setenv("DATASTORE_EMULATOR_HOST", host)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", project)
    return Settings(project=project, emulator_host=host, state_namespace=mapper_namespace)


@pytest.fixture
def mapper_faults() -> FaultPlan:
    return FaultPlan(seed=0)


@pytest.fixture
def mapper_runtime(mapper_settings: Settings, mapper_faults: FaultPlan) -> Iterator[Runtime]:
    runtime = Runtime(mapper_settings, faults=mapper_faults)
    yield runtime
    runtime.close()
