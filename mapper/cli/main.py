"""The command line: ``python -m mapper run|status|abort|pause|resume``."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click

from mapper.cli.progress import Progress
from mapper.engine.runtime import Runtime
from mapper.engine.spec import JobSpec
from mapper.errors import MapperError
from mapper.settings import Settings


def _runtime() -> Runtime:
    return Runtime(Settings.from_env())


class _Group(click.Group):
    """Turns MapperError into a one-line message and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MapperError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.option("-v", "--verbose", is_flag=True, help="Log every slice.")
def main(verbose: bool) -> None:
    """Resumable batch jobs over Cloud Datastore.

    Project and emulator come from GOOGLE_CLOUD_PROJECT and
    DATASTORE_EMULATOR_HOST; MAPPER_QUEUE selects Cloud Tasks.
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


def parse_param(raw: str) -> tuple[str, Any]:
    """``KEY=VALUE``; VALUE is JSON when it parses as JSON, else a string."""
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected KEY=VALUE, got {raw!r}", param_hint="--param")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


@main.command()
@click.argument("mapper_spec", metavar="MODULE:CLASS")
@click.option("--shards", default=1, show_default=True, type=int)
@click.option("--batch-size", default=100, show_default=True, type=int)
@click.option("--param", "params", multiple=True, help="KEY=VALUE (VALUE may be JSON).")
@click.option("--namespace", default="", help="Datastore namespace to map over.")
@click.option("--exactly-once", is_flag=True, help="Write each batch with its checkpoint.")
@click.option("--id", "job_id", default=None, help="Client-chosen job id (idempotent start).")
@click.option("--no-wait", is_flag=True, help="Return once the job is enqueued.")
def run(
    mapper_spec: str,
    shards: int,
    batch_size: int,
    params: tuple[str, ...],
    namespace: str,
    exactly_once: bool,
    job_id: str | None,
    no_wait: bool,
) -> None:
    """Run MODULE:CLASS as a job; waits with a progress bar unless --no-wait."""
    from mapper.engine.jobs import start_job

    spec = JobSpec(
        mapper=mapper_spec,
        params=dict(parse_param(p) for p in params),
        shards=shards,
        batch_size=batch_size,
        namespace=namespace,
        exactly_once=exactly_once,
        id=job_id,
    ).validate()
    rt = _runtime()
    if no_wait and rt.dispatcher.in_process:
        raise click.UsageError(
            "--no-wait needs MAPPER_QUEUE: without a queue the slices run in this process"
        )
    try:
        total = count_entities(rt, spec)
        job = start_job(rt, spec)
        click.echo(f"job {job.id} started", err=True)
        if no_wait:
            click.echo(job.id)
            return
        status = job.wait(progress=Progress(total))
    finally:
        rt.close()
    print_summary(status)
    sys.exit(0 if status["status"] == "succeeded" else 1)


def count_entities(rt: Runtime, spec: JobSpec) -> int | None:
    """How many entities the job will see, for the progress bar (None if unknown)."""
    from mapper.engine.loading import load_mapper_class

    try:
        mapper = load_mapper_class(spec.mapper)(**spec.params)
        return rt.store.count(mapper.kind_name(), mapper.filter_pbs(), spec.namespace)
    except Exception:  # a progress bar is not worth failing a job for
        logging.getLogger(__name__).debug("count failed", exc_info=True)
        return None


def print_summary(status: dict[str, Any]) -> None:
    counters = ", ".join(f"{k}={v}" for k, v in status["counters"].items())
    click.echo(f"job {status['id']} {status['status']}: {counters}")
    if status.get("error"):
        click.echo(f"  error: {status['error']}")
        click.echo(f"  at key: {status['failed_key']} (shard {status['failed_shard']})")


@main.command()
@click.argument("job_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(job_id: str | None, as_json: bool) -> None:
    """Show a job (the newest one when JOB_ID is omitted)."""
    from mapper.engine.status import job_status, latest_job_id
    from mapper.errors import NotFoundError

    rt = _runtime()
    try:
        job_id = job_id or latest_job_id(rt)
        if job_id is None:
            raise NotFoundError("no jobs yet")
        data = job_status(rt, job_id)
    finally:
        rt.close()
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    print_summary(data)
    click.echo(f"  mapper: {data['mapper']}  split: {data['split']}")
    for shard in data["shards"]:
        counters = ", ".join(f"{k}={v}" for k, v in shard["counters"].items())
        click.echo(
            f"  shard {shard['index']}: {shard['status']} slice={shard['slice']} {counters}"
            + (f"  last error: {shard['last_error']}" if shard["last_error"] else "")
        )


def _control(action: str, job_id: str) -> None:
    from mapper.engine import jobs

    rt = _runtime()
    try:
        data = getattr(jobs, f"{action}_job")(rt, job_id)
    finally:
        rt.close()
    click.echo(f"job {job_id} is {data['status']}")


@main.command()
@click.argument("job_id")
def abort(job_id: str) -> None:
    """Abort a job; running slices stop at their next batch."""
    _control("abort", job_id)


@main.command()
@click.argument("job_id")
def pause(job_id: str) -> None:
    """Pause a job; running slices stop at their next batch."""
    _control("pause", job_id)


@main.command()
@click.argument("job_id")
def resume(job_id: str) -> None:
    """Resume a paused job (with the local dispatcher: runs it here until done)."""
    from mapper.engine.jobs import Job, resume_job

    rt = _runtime()
    try:
        data = resume_job(rt, job_id)
        if rt.dispatcher.in_process:
            data = Job(rt, job_id).wait(progress=Progress(None))
    finally:
        rt.close()
    click.echo(f"job {job_id} is {data['status']}")


from mapper.cli.dump import export, import_  # noqa: E402 - commands of their own module

main.add_command(export)
main.add_command(import_)

from mapper.cli.cleanup import cleanup  # noqa: E402 - commands of their own module

main.add_command(cleanup)
