"""Jobs in flight keep working after an upgrade: every name a released version stored runs.

Job records store the mapper as ``module:Class``. Before the subpackage layout
the built-in jobs lived at ``mapper.export``, ``mapper.import_stages`` ... A job
started by that version and continued by this one must still load, run and
finish: each test starts work whose records carry the OLD names, then lets
this version run it to the end.
"""

from __future__ import annotations

import dataclasses

import pytest
from google.cloud import datastore, ndb

from examples.blog import Author, Comment, Post
from mapper.datastore import txn as txns
from mapper.dispatch.base import Dispatcher
from mapper.engine.jobs import start_job
from mapper.engine.loading import ALIASES, class_spec, load_mapper_class
from mapper.engine.records import RECORD_FORMAT, JobStatus, job_key
from mapper.engine.routing import route
from mapper.engine.runtime import Runtime
from mapper.engine.spec import JobSpec
from mapper.engine.status import job_status
from mapper.errors import RetrySlice
from mapper.transfer.export import ExportSpec, export_status, start_export
from mapper.transfer.importer import ImportRun, ImportSpec, start_import
from mapper.transfer.options import parse_options
from mapper.transfer.stages import stage_job_spec

OLD = {new: old for old, new in ALIASES.items()}


class Holding(Dispatcher):
    """Keeps tasks instead of running them: work started, then the process went away."""

    def __init__(self) -> None:
        self.tasks: list = []

    def enqueue(self, task, delay: float = 0.0) -> bool:
        self.tasks.append(task)
        return True


@pytest.fixture
def held(settings, emulator_env):
    rt = Runtime(settings, dispatcher=Holding())
    yield rt
    rt.close()


def relabel(rt: Runtime, job_id: str) -> str:
    """Rewrite a job record's mapper as the old version stored it; returns the old name."""

    def fn(t: txns.Txn) -> str:
        job = t.get(job_key(job_id, rt.settings.state_namespace))[0]
        job.mapper = OLD[job.mapper]
        t.put(job)
        return job.mapper

    with rt.context():
        return txns.run_in_transaction(rt.store, fn)


def continue_here(runtime: Runtime, held: Runtime) -> None:
    """This version's process picks up the tasks the old one had enqueued."""
    for task in held.dispatcher.tasks:
        runtime.dispatcher.deliver(task)
    held.dispatcher.tasks.clear()


def test_every_old_name_loads_the_class_that_now_has_it():
    for old, new in ALIASES.items():
        cls = load_mapper_class(old)
        assert class_spec(cls) == new == class_spec(load_mapper_class(new))


def test_an_export_started_under_the_old_name_completes(runtime, held, namespace, seed, tmp_path):
    seed(120)
    spec = ExportSpec(out=str(tmp_path / "d"), kinds=["Person"], namespaces=[namespace], shards=2)
    handle = start_export(held, spec)
    jobs = export_status(held, handle.id).jobs
    assert [relabel(held, j) for j in jobs] == ["mapper.export:ExportMapper"]
    continue_here(runtime, held)
    info = handle.__class__(runtime, handle.id).wait(timeout=120)
    assert info.status == JobStatus.SUCCEEDED and info.manifest
    assert info.counters["processed"] == 120


def seed_blog(runtime: Runtime, namespace: str) -> None:
    """Authors, posts that reference them, comments under the posts: no dangling reference."""
    with runtime.context(namespace):
        authors = ndb.put_multi([Author(name=f"author {i}") for i in range(3)])
        posts = ndb.put_multi([Post(title=f"post {i}", author=authors[i % 3]) for i in range(6)])
        ndb.put_multi([Comment(parent=p, text=f"on {p.id()}", author=authors[0]) for p in posts])


@pytest.mark.parametrize("mode", ["keep", "remap"])
def test_an_import_whose_stages_carry_old_names_completes(runtime, held, namespace, tmp_path, mode):
    source = namespace + "src"
    seed_blog(runtime, source)
    dump = str(tmp_path / "blog")
    spec = ExportSpec(out=dump, kinds=["Author", "Post", "Comment"], namespaces=[source])
    assert start_export(runtime, spec).wait(timeout=120).status == JobStatus.SUCCEEDED

    options = parse_options(dangling="fail") if mode == "remap" else parse_options()
    spec = ImportSpec(source=dump, mode=mode, namespace=namespace, shards=2, options=options)
    _, run = start_import(held, spec)
    params = job_status(held, f"{run.id}-0").params
    names = [relabel(held, f"{run.id}-0")]
    for index in range(1, len(params["stages"])):  # stages the old version had created
        later = stage_job_spec(params, index)
        start_job(held, dataclasses.replace(later, mapper=OLD[later.mapper]))
        names.append(job_status(held, later.id).mapper)
    first = f"{run.id}-0"  # only the first stage had started running
    held.dispatcher.tasks[:] = [t for t in held.dispatcher.tasks if t.job_id == first]
    continue_here(runtime, held)

    info = ImportRun(runtime, run.id).wait(timeout=180)
    assert info.status == JobStatus.SUCCEEDED, info.error
    expected = (
        ["mapper.import_stages:KeepMapper"]
        if mode == "keep"
        else [
            "mapper.import_stages:MapKeysMapper",  # one key depth is referenced
            "mapper.import_stages:CheckRefsMapper",
            "mapper.import_stages:WriteRemappedMapper",
        ]
    )
    assert names == expected
    with runtime.context(namespace):
        posts = Post.query().fetch()
        authors = {a.key for a in Author.query()}
        comments = Comment.query().fetch()
    assert len(posts) == 6 and len(authors) == 3 and len(comments) == 6
    assert all(p.author in authors for p in posts)
    assert {c.key.parent() for c in comments} == {p.key for p in posts}


def run_old(runtime: Runtime, name: str, namespace: str, **params) -> JobStatus:
    spec = JobSpec(mapper=name, params=params, namespace=namespace, shards=2)
    info = start_job(runtime, spec).wait(timeout=120)
    assert job_status(runtime, info.id).mapper == name
    return info


def test_cleanup_jobs_under_old_names_complete(runtime, namespace, emulator_env):
    client = datastore.Client(namespace=namespace)
    legacy = [datastore.Entity(client.key("Legacy", i + 1)) for i in range(5)]
    for i, e in enumerate(legacy):
        e.update({"a": i, "b": "keep"})
    client.put_multi(legacy)

    info = run_old(runtime, "mapper.cleanup_jobs:StripProperties", namespace,
                   kind="Legacy", properties=["a"])  # fmt: skip
    assert info.status == JobStatus.SUCCEEDED and info.counters["rewritten"] == 5
    assert [dict(e) for e in client.query(kind="Legacy").fetch()] == [{"b": "keep"}] * 5

    info = run_old(runtime, "mapper.cleanup_jobs:DeleteKind", namespace, kind="Legacy")
    assert info.status == JobStatus.SUCCEEDED and info.counters["deleted"] == 5
    assert list(client.query(kind="Legacy").fetch()) == []


def test_orphan_jobs_under_old_names_complete(runtime, namespace, emulator_env):
    with runtime.context(namespace):
        author = Author(name="there").put()
        gone = Author(name="gone").put()
        Post(title="kept", author=author).put()
        Post(title="orphan", author=gone).put()
        gone.delete()
    params = {"kind": "Post", "properties": ["author"], "parents": False, "action": "delete",
              "cascade": [], "state_namespace": namespace}  # fmt: skip
    scan = run_old(runtime, "mapper.orphans:OrphanMapper", namespace, **params)
    assert scan.status == JobStatus.SUCCEEDED and scan.counters["orphans"] == 1
    apply = run_old(runtime, "mapper.orphans:OrphanApplyMapper", namespace,
                    **params, scan_job=scan.id)  # fmt: skip
    assert apply.status == JobStatus.SUCCEEDED and apply.counters["removed"] == 1
    with runtime.context(namespace):
        assert [p.title for p in Post.query()] == ["kept"]


def test_a_job_record_of_a_newer_format_is_left_for_the_newer_version(
    runtime, held, namespace, seed
):
    seed(30)
    job = start_job(held, JobSpec(mapper="tests.support.mappers:TouchPeople", namespace=namespace))

    def newer(t: txns.Txn) -> None:
        record = t.get(job_key(job.id, held.settings.state_namespace))[0]
        record.record_format = RECORD_FORMAT + 1
        t.put(record)

    with held.context():
        txns.run_in_transaction(held.store, newer)
    with pytest.raises(RetrySlice, match=f"record format {RECORD_FORMAT + 1}"):
        route(runtime, held.dispatcher.tasks[0])
    info = job_status(runtime, job.id)
    assert info.status == JobStatus.RUNNING and info.counters["processed"] == 0
