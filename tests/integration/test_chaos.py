"""Chaos: production faults at random and the process killed (SIGKILL) at random moments,
at least five times, each time re-run with the same command; the result is exact.

The fault layer (``MAPPER_FAULTS``) injects ambiguous commits (applied, then an error),
empty ``NOT_FINISHED`` pages, ABORTED transactional commits and bursts of UNAVAILABLE,
plus latency on every RPC so that the kills land mid-job. The kill times come from a
seeded random stream, printed on failure so a run can be replayed.
"""

from __future__ import annotations

import collections
import json
import random
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from mapper.dump.manifest import validate_dump
from mapper.dump.parts import read_part
from mapper.engine.status import job_status
from mapper.transfer.export import ExportSpec, start_export
from mapper.transfer.importer import import_status
from tests.support.blog import blog_mistakes, seed_blog
from tests.support.processes import FAULTS, Command, command_starter, finish

KILLS = 5
#: Every kind of fault the plan injects (each test checks that its runs met them all).
KINDS = ("ambiguous_commit", "empty_page", "aborted_commit", "unavailable")


def through_kills(
    chaos: Callable[[int], Command], args: list[str], seed: int
) -> tuple[str, list[float]]:
    """Run ``mapper ARGS``, SIGKILL it at a random moment, run it again; KILLS times,
    then let the last run finish. Every run draws its faults from a seed of its own (the
    same seed would replay the same first faults each time). Returns the last run's
    output and the moments of the kills."""
    rng = random.Random(seed)
    moments: list[float] = []
    while len(moments) < KILLS:
        moment = rng.uniform(1.0, 4.0)
        process = chaos(seed * 100 + len(moments))(*args)
        try:
            output, _ = process.communicate(timeout=moment)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.communicate()
            moments.append(round(moment, 2))
            continue
        raise AssertionError(
            f"the job ended after {len(moments)} kills {moments}, before {KILLS}: {output}"
        )
    output = finish(chaos(seed * 100 + KILLS)(*args), timeout=600)
    return output, moments


def injected(folder: Path) -> dict[str, int]:
    """What the fault plans of every run, the killed ones too, injected in all."""
    total: collections.Counter[str] = collections.Counter()
    for report in folder.glob("*.json"):
        total.update(json.loads(report.read_text()))
    return dict(total)


@pytest.fixture
def chaos(emulator_env, namespace, tmp_path) -> Callable[[int], Command]:
    """chaos(seed) -> a starter of ``mapper ARGS`` under the random production faults,
    each run reporting what it injected in ``tmp_path/faults``."""
    (tmp_path / "faults").mkdir()
    report = str(tmp_path / "faults")
    return lambda seed: command_starter(
        namespace, f"seed={seed},{FAULTS}", MAPPER_FAULTS_REPORT=report
    )


def test_remap_import_of_15000_entities_survives_faults_and_five_kills_exactly(
    chaos, runtime, namespace, tmp_path
):
    source, target = namespace + "src", namespace + "dst"
    seed_blog(runtime.settings.project, source, authors=5_000, posts=10_000)
    dump = str(tmp_path / "blog")
    spec = ExportSpec(out=dump, kinds=["Author", "Post"], namespaces=[source], batch_size=500)
    assert start_export(runtime, spec).wait(timeout=300).status == "succeeded"

    args = ["import", dump, "--mode", "remap", "--namespace", target, "--id", "chaos",
            "--shards", "2", "--batch-size", "2"]  # fmt: skip
    output, moments = through_kills(chaos, args, seed=11)
    assert "import chaos succeeded: 15000 entities written" in output, moments
    assert set(injected(tmp_path / "faults")) == set(KINDS), (moments, tmp_path)
    counters = import_status(runtime, "chaos").counters
    assert counters["allocated"] == 15_000 and counters["put"] == 15_000, (counters, moments)

    mistakes = blog_mistakes(runtime.settings.project, target, authors=5_000, posts=10_000)
    assert mistakes == [], (len(mistakes), mistakes[:10], moments)


def test_exactly_once_touch_survives_faults_and_five_kills_exactly(
    chaos, runtime, namespace, seed, people, tmp_path
):
    seed(5_000)
    args = ["run", "tests.support.mappers:TouchPeople", "--id", "chaos", "--shards", "2",
            "--batch-size", "20", "--exactly-once", "--namespace", namespace]  # fmt: skip
    output, moments = through_kills(chaos, args, seed=12)
    assert "job chaos succeeded: processed=5000, put=5000, deleted=0" in output, moments
    assert set(injected(tmp_path / "faults")) == set(KINDS), (moments, tmp_path)
    touched = collections.Counter(p.touched for p in people())
    assert touched == {1: 5_000}, (touched, moments)
    assert job_status(runtime, "chaos").counters["processed"] == 5_000


def test_export_survives_faults_and_five_kills_exactly(chaos, runtime, namespace, seed, tmp_path):
    keys = seed(5_000)
    out = str(tmp_path / "dump")
    args = ["export", "--out", out, "--kind", "Person", "--namespace", namespace,
            "--id", "chaos", "--shards", "2", "--batch-size", "5"]  # fmt: skip
    # Parts of 5, batches of 20 under one checkpoint: long enough for five kills.
    output, moments = through_kills(chaos, args, seed=13)
    assert "export chaos succeeded" in output, moments
    assert set(injected(tmp_path / "faults")) == set(KINDS), (moments, tmp_path)
    manifest = validate_dump(out)
    assert manifest.totals["entities"] == 5_000, moments
    dumped = sorted(pb.key.path[-1].id for p in manifest.parts for pb in read_part(out, p.path, p))
    assert dumped == sorted(k.id() for k in keys), moments  # every entity once
