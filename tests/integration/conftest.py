"""Fixtures for jobs run against the emulator: a Runtime with a fault plan, seeded people."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner
from google.cloud import ndb

from mapper.cli.main import main
from mapper.engine.runtime import Runtime
from mapper.settings import Settings
from mapper.testing.emulator import Emulator
from mapper.testing.faults import FaultPlan
from tests.support.mappers import Person


@pytest.fixture
def faults() -> FaultPlan:
    return FaultPlan()


@pytest.fixture
def runtime(settings: Settings, faults: FaultPlan, emulator_env: object) -> Iterator[Runtime]:
    rt = Runtime(settings, faults=faults)
    yield rt
    rt.close()


@pytest.fixture
def seed(runtime: Runtime, namespace: str) -> Callable[..., list[ndb.Key]]:
    """seed(n, **fields) puts n Person entities named p00000.. in the test namespace."""

    def put_people(n: int, start: int = 0, chunk: int = 500, **fields: object) -> list[ndb.Key]:
        keys: list[ndb.Key] = []
        with runtime.context(namespace):
            for i in range(start, start + n, chunk):
                batch = [
                    Person(name=f"p{j:05d}", **fields) for j in range(i, min(start + n, i + chunk))
                ]
                keys.extend(ndb.put_multi(batch))
        return keys

    return put_people


@pytest.fixture
def people(runtime: Runtime, namespace: str) -> Callable[[], list[Person]]:
    def fetch() -> list[Person]:
        with runtime.context(namespace):
            return Person.query().fetch()

    return fetch


@pytest.fixture
def cli(
    emulator_env: object, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., object]:
    """cli(*args) runs ``python -m mapper`` in-process against the emulator."""
    monkeypatch.setenv("MAPPER_STATE_NAMESPACE", namespace)
    monkeypatch.setenv("MAPPER_SLICE_SECONDS", "5")
    monkeypatch.setenv("MAPPER_LEASE_SECONDS", "2")
    monkeypatch.setenv("MAPPER_MAX_ATTEMPTS", "2")
    monkeypatch.delenv("MAPPER_QUEUE", raising=False)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


@pytest.fixture
def needs_managed_export(emulator: Emulator) -> None:
    if emulator.kind != "datastore":
        pytest.skip(
            "the Firestore emulator has no managed export/import endpoints "
            "(DESIGN.md emulator table)"
        )
