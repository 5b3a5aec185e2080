"""The pytest plugin for users, run as a user would (its own pytest): the example user
tests (examples/usertest), and a user's test of a mapper under production faults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_users_own_tests_pass_with_the_plugin_against_the_emulator(emulator):
    env = {**os.environ, **emulator.env, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/usertest"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


USER_TEST = """
from google.cloud import ndb

from mapper import Mapper


class Item(ndb.Model):
    n = ndb.IntegerProperty()


class Double(Mapper):
    KIND = Item

    def map(self, item):
        item.n *= 2
        return [item], []


def test_my_mapper_survives_production_faults(mapper_runtime, mapper_faults, mapper_namespace):
    with mapper_runtime.context(mapper_namespace):
        ndb.put_multi([Item(n=i) for i in range(50)])
    mapper_faults.aborted_commits(rate=0.3).latency(0.002)
    mapper_faults.unavailable_bursts(rate=0.05, rpcs=["RunQuery", "Lookup"])
    job = Double().run(runtime=mapper_runtime, namespace=mapper_namespace, batch_size=10)
    assert job.status().counters["processed"] == 50
    assert mapper_faults.injected["aborted_commit"] > 0
    with mapper_runtime.context(mapper_namespace):
        assert sorted(i.n for i in Item.query()) == [2 * i for i in range(50)]
"""


def test_the_plugin_gives_users_an_emulator_runtime_and_fault_plan(emulator_env, tmp_path):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["mapper.testing.pytest_plugin"]\n')
    (tmp_path / "test_user.py").write_text(USER_TEST)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
