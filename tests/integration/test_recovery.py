"""Recovery the way users expect: the process running a local job is killed with SIGKILL,
the same command is run again, and the job finishes exactly, without ``mapper resume``.

Each command runs as a real subprocess (``python -m mapper.testing.faultcli``, which is
``mapper`` with a fault plan: here only latency per RPC, so that a kill lands mid-job).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

import pytest

from mapper.dump.manifest import read_manifest, validate_dump
from mapper.dump.parts import read_part
from mapper.engine.status import job_status
from mapper.transfer.export import ExportSpec, export_status, start_export
from mapper.transfer.importer import import_status
from tests.support.blog import blog_mistakes, seed_blog
from tests.support.processes import Command, command_starter, finish, kill_when, progress


@pytest.fixture
def command(emulator_env, namespace) -> Command:
    """command(*args) -> a Popen of ``mapper ARGS`` (with latency) against the emulator."""
    return command_starter(namespace)


def test_mapper_run_killed_mid_job_finishes_when_run_again(
    command, runtime, namespace, seed, people
):
    seed(1000)
    args = ["run", "tests.support.mappers:TouchPeople", "--id", "rerun", "--shards", "2",
            "--batch-size", "20", "--namespace", namespace]  # fmt: skip
    kill_when(command(*args), progress(lambda: job_status(runtime, "rerun"), 300))
    killed = job_status(runtime, "rerun")
    assert killed.status == "running" and killed.counters["processed"] < 1000

    started = time.monotonic()
    output = finish(command(*args))
    assert "job rerun succeeded: processed=1000, put=1000, deleted=0" in output
    touched = collections.Counter(p.touched for p in people())
    assert sum(touched.values()) == 1000 and min(touched) == 1
    # At least once: the batch in flight on each shard when the process died, at most.
    assert touched[2] <= 2 * 20 and max(touched) <= 2
    assert time.monotonic() - started < 60


def test_mapper_export_killed_mid_job_finishes_when_run_again(
    command, runtime, namespace, seed, tmp_path
):
    keys = seed(1000)
    out = str(tmp_path / "dump")
    args = ["export", "--out", out, "--kind", "Person", "--namespace", namespace,
            "--id", "exp", "--shards", "2", "--batch-size", "20"]  # fmt: skip
    kill_when(command(*args), progress(lambda: export_status(runtime, "exp"), 300))
    assert export_status(runtime, "exp").manifest is None

    output = finish(command(*args))
    assert "export exp succeeded" in output
    manifest = validate_dump(out)
    assert manifest.totals["entities"] == 1000
    parts = manifest.parts
    dumped = sorted(pb.key.path[-1].id for p in parts for pb in read_part(out, p.path, p))
    assert dumped == sorted(k.id() for k in keys)  # every entity once


def test_a_job_killed_inside_finish_more_times_than_its_attempts_finishes_when_run_again(
    command, runtime, namespace, seed, tmp_path
):
    """A death in finish() counts as one of its attempts (a task that keeps dying there
    must end), but a re-run of the command gives it its attempts anew."""
    seed(20)
    (tmp_path / "hold").touch()
    args = ["run", "tests.support.mappers:HeldFinish", "--id", "held", "--namespace", namespace,
            "--param", f"folder={tmp_path}"]  # fmt: skip
    attempts = 3  # MAPPER_MAX_ATTEMPTS of the command

    for kill in range(1, attempts + 1):
        kill_when(command(*args), lambda k=kill: len(list(tmp_path.glob("finish-*"))) == k)
    held = job_status(runtime, "held")
    assert held.status == "finalizing", held

    (tmp_path / "hold").unlink()
    output = finish(command(*args))
    assert "job held succeeded: processed=20" in output
    assert len(list(tmp_path.glob("finish-*"))) == attempts + 1


@pytest.fixture
def blog_dump(runtime, namespace, datastore_client, tmp_path) -> str:
    """300 authors and 700 posts (each referring to an author), exported to a dump."""
    source = namespace + "src"
    seed_blog(runtime.settings.project, source, authors=300, posts=700)
    out = str(tmp_path / "blog")
    spec = ExportSpec(out=out, kinds=["Author", "Post"], namespaces=[source], batch_size=20)
    assert start_export(runtime, spec).wait(timeout=120).status == "succeeded"
    assert read_manifest(out).totals["entities"] == 1000
    return out


def test_mapper_import_remap_killed_in_each_stage_finishes_when_run_again(
    command, runtime, namespace, blog_dump
):
    target = namespace + "dst"
    args = ["import", blog_dump, "--mode", "remap", "--namespace", target, "--id", "imp",
            "--shards", "2", "--batch-size", "1"]  # fmt: skip

    def stage(index: int) -> Callable[[], bool]:  # a stage 10 parts (of 54) in
        return progress(lambda: job_status(runtime, f"imp-{index}"), 10)

    kill_when(command(*args), stage(0))  # map:1, choosing new keys
    kill_when(command(*args), stage(1))  # write
    output = finish(command(*args))
    assert "import imp succeeded: 1000 entities written" in output
    info = import_status(runtime, "imp")
    assert info.counters["allocated"] == 1000 and info.counters["put"] == 1000

    assert blog_mistakes(runtime.settings.project, target, authors=300, posts=700) == []
