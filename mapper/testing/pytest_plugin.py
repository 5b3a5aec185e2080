"""A pytest plugin for testing your own mappers the way mapper tests its own.

Against a real emulator, never a mock; each test in a namespace of its own (as
python-ndb's system tests do). Enable it in your project's top-level
``conftest.py``::

    pytest_plugins = ["mapper.testing.pytest_plugin"]

Fixtures:
    mapper_emulator (session): the emulator ``DATASTORE_EMULATOR_HOST`` names (with
        ``GOOGLE_CLOUD_PROJECT``), else one started for the session and stopped after
        it: ``--mapper-emulator=datastore|firestore`` (default datastore).
    mapper_namespace: a fresh namespace per test.
    mapper_settings: Settings for the emulator; job state in the test's namespace,
        short slices and leases so crash tests finish quickly.
    mapper_faults: a FaultPlan the runtime calls: crash or fail at named points, and
        production's faults at the RPC boundary (docs/faults.md).
    mapper_runtime: a Runtime with the local (in-process) dispatcher, closed after the test.
    mapper_ndb: an ndb context in the test's namespace, for seeding and checking
        with your own models.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from mapper.engine.runtime import Runtime
from mapper.settings import Settings
from mapper.testing.emulator import client_env, settings_for_tests, start_emulator
from mapper.testing.faults import FaultPlan


@dataclasses.dataclass(frozen=True)
class EmulatorInfo:
    """Where the session's emulator answers, and the environment that points clients at it."""

    host: str
    project: str

    @property
    def env(self) -> dict[str, str]:
        return client_env(self.host, self.project)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--mapper-emulator",
        choices=("datastore", "firestore"),
        default="datastore",
        help="mapper plugin: the emulator to start when DATASTORE_EMULATOR_HOST is not set",
    )


@pytest.fixture(scope="session")
def mapper_emulator(request: pytest.FixtureRequest) -> Iterator[EmulatorInfo]:
    host = os.environ.get("DATASTORE_EMULATOR_HOST")
    if host:
        yield EmulatorInfo(host, os.environ.get("GOOGLE_CLOUD_PROJECT") or "demo")
        return
    with start_emulator(request.config.getoption("--mapper-emulator")) as running:
        yield EmulatorInfo(running.host, running.project)


@pytest.fixture
def mapper_namespace() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def mapper_settings(
    mapper_emulator: EmulatorInfo, mapper_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    for name, value in mapper_emulator.env.items():
        monkeypatch.setenv(name, value)
    # As many attempts as production gives a slice: a user's test under injected
    # faults (bursts of UNAVAILABLE, ABORTED commits) sees what production would.
    return settings_for_tests(
        mapper_emulator.host, mapper_emulator.project, mapper_namespace, max_attempts=5
    )


@pytest.fixture
def mapper_faults() -> FaultPlan:
    return FaultPlan()


@pytest.fixture
def mapper_runtime(mapper_settings: Settings, mapper_faults: FaultPlan) -> Iterator[Runtime]:
    runtime = Runtime(mapper_settings, faults=mapper_faults)
    yield runtime
    runtime.close()


@pytest.fixture
def mapper_ndb(mapper_runtime: Runtime, mapper_namespace: str) -> Iterator[Any]:
    with mapper_runtime.context(mapper_namespace) as context:
        yield context
