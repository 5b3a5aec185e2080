"""``python -m mapper`` run/status/pause/resume/abort through click's runner, on the emulator."""

from __future__ import annotations

import json

import pytest

from mapper.engine.jobs import start_job
from mapper.engine.spec import JobSpec
from mapper.errors import DispatchError


def test_run_waits_for_the_job_and_prints_its_counters(cli, namespace, seed, people):
    seed(250)
    result = cli(
        "run", "tests.support.mappers:TouchPeople", "--shards", "2", "--batch-size", "40",
        "--namespace", namespace,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "succeeded: processed=250, put=250, deleted=0" in result.output
    assert {p.touched for p in people()} == {1}


def test_run_passes_json_params_and_exits_1_when_the_job_fails(cli, namespace, seed):
    seed(30)
    result = cli(
        "run", "tests.support.mappers:Poison", "--param", "poison=p00012", "--namespace", namespace,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "failed" in result.output
    assert "cannot map p00012" in result.output
    assert (
        "at key: Key('Person', " in result.output and f"namespace='{namespace}')" in result.output
    )


def test_status_without_id_shows_the_newest_job_as_json(cli, namespace, seed):
    seed(20)
    assert cli("run", "tests.support.mappers:TouchPeople", "--namespace", namespace).exit_code == 0
    assert cli("run", "tests.support.mappers:CountRaw", "--namespace", namespace).exit_code == 0
    result = cli("status", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["mapper"] == "tests.support.mappers:CountRaw"
    assert data["status"] == "succeeded"
    assert data["counters"]["processed"] == 20
    assert data["counters"]["raw_seen"] == 20
    text = cli("status", data["id"])
    assert "shard 0: done" in text.output


def test_pause_stops_a_job_and_resume_runs_it_to_the_end(cli, runtime, namespace, seed, people):
    seed(60)
    runtime.dispatcher.close()  # nothing runs in this process: the CLI resumes the job
    spec = JobSpec(mapper="tests.support.mappers:TouchPeople", namespace=namespace, id="cli-pause")
    with pytest.raises(DispatchError, match="closed"):
        start_job(runtime, spec)
    assert "job cli-pause is paused" in cli("pause", "cli-pause").output
    assert "job cli-pause paused: processed=0" in cli("status", "cli-pause").output
    result = cli("resume", "cli-pause")
    assert result.exit_code == 0, result.output
    assert "job cli-pause is succeeded" in result.output
    assert {p.touched for p in people()} == {1}


def test_bad_input_exits_2_with_a_message_naming_it(cli, namespace):
    missing = cli("run", "tests.support.mappers:NoSuchMapper", "--namespace", namespace)
    assert missing.exit_code == 2
    assert "NoSuchMapper" in missing.output
    bad_param = cli("run", "tests.support.mappers:TouchPeople", "--param", "novalue")
    assert bad_param.exit_code == 2
    assert "KEY=VALUE" in bad_param.output
    no_wait = cli("run", "tests.support.mappers:TouchPeople", "--no-wait")
    assert no_wait.exit_code == 2
    assert "MAPPER_QUEUE" in no_wait.output
    unknown = cli("status", "no-such-job")
    assert unknown.exit_code == 2
    assert "no-such-job" in unknown.output


def test_abort_stops_a_paused_job_for_good(cli, runtime, namespace, seed):
    seed(10)
    runtime.dispatcher.close()
    spec = JobSpec(mapper="tests.support.mappers:TouchPeople", namespace=namespace, id="cli-abort")
    with pytest.raises(DispatchError, match="closed"):
        start_job(runtime, spec)
    result = cli("abort", "cli-abort")
    assert result.exit_code == 0
    assert "job cli-abort is aborted" in result.output
    again = cli("resume", "cli-abort")
    assert again.exit_code == 2
    assert "aborted" in again.output
