"""app.yaml's entrypoint, run as App Engine runs it: gunicorn serving main:app."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from mapper.testing.process import free_port, listening

ROOT = Path(__file__).resolve().parents[2]


class Gunicorn:
    """app.yaml's entrypoint with $PORT filled in, in its own process group."""

    def __init__(self, env: dict[str, str], log: Path):
        self.port = free_port()
        entrypoint = yaml.safe_load((ROOT / "app.yaml").read_text())["entrypoint"]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MAPPER_", "GAE_"))}
        full_env.update(env, PORT=str(self.port))
        full_env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{full_env['PATH']}"
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                ["sh", "-c", f"exec {entrypoint}"],
                cwd=ROOT,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            if listening("127.0.0.1", self.port):
                return
            time.sleep(0.1)
        raise AssertionError(f"gunicorn did not listen: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # gunicorn's graceful shutdown stops its workers
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(5)


@pytest.fixture
def gunicorn_env(emulator_env, namespace) -> dict[str, str]:
    return {
        **emulator_env.env,
        "GOOGLE_CLOUD_PROJECT": emulator_env.project,
        "MAPPER_AUTH": "off",
        "MAPPER_STATE_NAMESPACE": namespace,
    }


@pytest.fixture
def gunicorn(gunicorn_env, tmp_path) -> Iterator[Gunicorn]:
    server = Gunicorn(gunicorn_env, tmp_path / "gunicorn.log")
    yield server
    server.stop()


def test_app_yaml_entrypoint_serves_main_app_and_runs_a_job(gunicorn, namespace, seed):
    seed(100)
    gunicorn.wait_listening()
    body = {"mapper": "tests.support.mappers:TouchPeople", "namespace": namespace, "id": "gun"}

    reply = requests.post(f"{gunicorn.url}/_mapper/jobs", json=body, timeout=30)

    assert reply.status_code == 200 and reply.json() == {"id": "gun"}, reply.text
    deadline = time.monotonic() + 60
    while (status := requests.get(f"{gunicorn.url}/_mapper/jobs/gun", timeout=30).json())[
        "status"
    ] != "succeeded":
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["counters"]["processed"] == 100
    assert requests.get(f"{gunicorn.url}/_mapper/", timeout=30).status_code == 200


def test_gunicorn_refuses_to_start_with_auth_off_on_app_engine(gunicorn_env, tmp_path):
    env = {**gunicorn_env, "GAE_ENV": "standard", "GAE_APPLICATION": "s~demo"}
    server = Gunicorn(env, tmp_path / "refused.log")
    try:
        code = server.process.wait(60)
    finally:
        server.stop()
    assert code != 0
    assert "MAPPER_AUTH=off is refused on App Engine" in server.log.read_text()
