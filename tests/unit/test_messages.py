"""Task messages and job specs: JSON round trips, refusals naming the bad field."""

from __future__ import annotations

import pytest

from mapper.dispatch.messages import SliceTask, task_from_json, task_to_json
from mapper.engine.spec import JobSpec
from mapper.errors import InvalidJobError


def test_slice_task_round_trips_through_json_with_a_valid_task_name():
    task = SliceTask("job-1", 2, 7, 1)
    assert task_from_json(task_to_json(task)) == task
    name = task.task_name()
    assert name.endswith("job-1-s2-7-g1")
    assert all(c.isalnum() or c in "-_" for c in name)


def test_malformed_task_bodies_are_refused():
    with pytest.raises(InvalidJobError, match="not JSON"):
        task_from_json(b"{")
    with pytest.raises(InvalidJobError, match="unknown task kind"):
        task_from_json(b'{"kind": "pickle"}')
    with pytest.raises(InvalidJobError):
        task_from_json(b'{"kind": "slice", "job_id": "a b", "shard": 0, "slice": 0}')


def test_job_spec_names_the_bad_field():
    with pytest.raises(InvalidJobError, match="batch_size"):
        JobSpec(mapper="m:C", batch_size=5001).validate()
    with pytest.raises(InvalidJobError, match="module:Class"):
        JobSpec(mapper="not a spec").validate()
    with pytest.raises(InvalidJobError, match="JSON-serialisable"):
        JobSpec(mapper="m:C", params={"x": object()}).validate()
    with pytest.raises(InvalidJobError, match="unknown job spec field"):
        JobSpec.from_dict({"mapper": "m:C", "shard": 2})
