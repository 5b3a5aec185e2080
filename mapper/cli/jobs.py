"""``mapper run|status|abort|pause|resume``: user mappers as jobs."""

from __future__ import annotations

import json
import logging
from typing import Any

import click

from mapper.cli.audit import render_audit
from mapper.cli.common import exit_for, parse_param, runtime
from mapper.cli.progress import MAX_POLL, Progress
from mapper.engine.adapter import Adapter
from mapper.engine.audit import audit_summary
from mapper.engine.jobs import Job, abort_job, pause_job, resume_job, start_job, throttle_job
from mapper.engine.loading import load_mapper_class
from mapper.engine.runtime import Runtime
from mapper.engine.spec import JobSpec, spec_for
from mapper.engine.status import JobInfo, job_status, latest_job_id
from mapper.engine.units import read_namespace_file
from mapper.errors import NotFoundError

logger = logging.getLogger(__name__)


@click.command()
@click.argument("mapper_spec", metavar="MODULE:CLASS")
@click.option("--shards", default=JobSpec.shards, show_default=True, type=int)
@click.option("--batch-size", default=JobSpec.batch_size, show_default=True, type=int)
@click.option("--param", "params", multiple=True, help="KEY=VALUE (VALUE may be JSON).")
@click.option("--namespace", default="", help="Datastore namespace to map over.")
@click.option("--exactly-once", is_flag=True, help="Write each batch with its checkpoint.")
@click.option("--id", "job_id", default=None, help="Client-chosen job id (idempotent start).")
@click.option("--no-wait", is_flag=True, help="Return once the job is enqueued.")
@click.option("--dry-run", is_flag=True, help="Map, write nothing; count what would change.")
@click.option("--sample", type=int, default=None, help="With --dry-run: map only N entities.")
@click.option(
    "--max-rate",
    type=float,
    default=None,
    help="Entities written + deleted per second, for the whole job (default: no limit).",
)
@click.option(
    "--ramp-up/--no-ramp-up",
    default=None,
    help="Start at 500 writes/s and grow 50% every 5 minutes "
    "(default: on, off against an emulator; MAPPER_RAMP_UP).",
)
@click.option(
    "--all-namespaces", is_flag=True, help="One job over every namespace the store lists."
)
@click.option(
    "--namespace-prefix", default=None, help="One job over the namespaces starting with this."
)
@click.option(
    "--namespaces-from",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="One job over the namespaces named in FILE, one per line "
    "(for a store without namespace metadata, such as the Firestore emulator).",
)
@click.option(
    "--namespace-counters",
    is_flag=True,
    help="With many namespaces: counters per namespace (the top ones, the rest as other).",
)
def run(
    mapper_spec: str,
    shards: int,
    batch_size: int,
    params: tuple[str, ...],
    namespace: str,
    exactly_once: bool,
    job_id: str | None,
    no_wait: bool,
    dry_run: bool,
    sample: int | None,
    max_rate: float | None,
    ramp_up: bool | None,
    all_namespaces: bool,
    namespace_prefix: str | None,
    namespaces_from: str | None,
    namespace_counters: bool,
) -> None:
    """Run MODULE:CLASS as a job; waits with a progress bar unless --no-wait.

    --dry-run maps every entity (or --sample N) and writes nothing: it reports per
    kind what would be put, changed, deleted and unchanged, and a few diffs.

    --all-namespaces, --namespace-prefix or --namespaces-from make it one job over
    many namespaces: small ones grouped, large ones split by key range.
    """
    if sample is not None and not dry_run:
        raise click.UsageError("--sample N needs --dry-run")
    mapper = load_mapper_class(mapper_spec)(**dict(parse_param(p) for p in params))
    spec = spec_for(
        mapper,
        shards=shards,
        batch_size=batch_size,
        namespace=namespace,
        exactly_once=exactly_once,
        job_id=job_id,
        dry_run=dry_run,
        sample=sample,
        max_rate=max_rate,
        ramp_up=ramp_up,
        all_namespaces=all_namespaces,
        namespace_prefix=namespace_prefix,
        namespaces=read_namespace_file(namespaces_from) if namespaces_from else None,
        namespace_counters=namespace_counters,
    )
    rt = runtime()
    if no_wait and rt.dispatcher.in_process:
        raise click.UsageError(
            "--no-wait needs MAPPER_QUEUE: without a queue the slices run in this process"
        )
    job = start_job(rt, spec)
    click.echo(f"job {job.id} started", err=True)
    # A job over many namespaces knows its total from its plan (the status says it).
    total = None if spec.many_namespaces else count_entities(rt, mapper, namespace)
    if no_wait:
        click.echo(job.id)
        return
    info = job.wait(progress=Progress(sample if dry_run and sample else total), max_poll=MAX_POLL)
    print_summary(info)
    if info.dry_run:
        print_audit(info)
    exit_for(info)


def count_entities(rt: Runtime, mapper: Any, namespace: str) -> int | None:
    """How many entities the job will see, for the progress bar (None if unknown)."""
    try:
        adapter = Adapter(mapper)
        return rt.store.count(adapter.kind_name(), adapter.filter_pbs(), namespace)
    except Exception:  # a progress bar is not worth failing a job for
        logger.debug("count failed", exc_info=True)
        return None


def print_audit(info: JobInfo) -> None:
    """A dry run's per-kind table and its diffs."""
    step = {"step": 0, "describe": info.mapper, "diffs": list(info.diffs)}
    lines = render_audit(
        [{"name": f"dry run {info.id}", "steps": [{**step, **audit_summary(info.counters)}]}]
    )
    click.echo("\n".join(lines[2:]))  # the table and diffs: no migration or step heading
    click.echo("dry run: nothing was written")


def print_summary(info: JobInfo) -> None:
    counters = ", ".join(
        f"{k}={v}" for k, v in info.counters.items() if not k.startswith("dry_run.")
    )
    click.echo(f"job {info.id} {info.status.value}: {counters}")
    if info.error:
        click.echo(f"  error: {info.error}")
        click.echo(f"  at key: {info.failed_key} (shard {info.failed_shard})")


@click.command()
@click.argument("job_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(job_id: str | None, as_json: bool) -> None:
    """Show a job (the newest one when JOB_ID is omitted)."""
    rt = runtime()
    job_id = job_id or latest_job_id(rt)
    if job_id is None:
        raise NotFoundError("no jobs yet")
    info = job_status(rt, job_id)
    if as_json:
        click.echo(json.dumps(info.to_json(), indent=2, sort_keys=True))
        return
    print_summary(info)
    click.echo(f"  mapper: {info.mapper}  split: {info.split}")
    if info.namespaces_total is not None:
        click.echo(f"  namespaces: {info.namespaces_done}/{info.namespaces_total} done")
    for name, counts in (info.namespace_counters or {}).items():
        click.echo(
            f"  namespace {name or '(default)'}: "
            + ", ".join(f"{k}={v}" for k, v in counts.items())
        )
    for shard in info.shards:
        counters = ", ".join(f"{k}={v}" for k, v in shard.counters.items())
        click.echo(
            f"  shard {shard.index}: {shard.status.value} slice={shard.slice} {counters}"
            + (f"  last error: {shard.last_error}" if shard.last_error else "")
        )


@click.command()
@click.argument("job_id")
def abort(job_id: str) -> None:
    """Abort a job; running slices stop at their next batch."""
    click.echo(f"job {job_id} is {abort_job(runtime(), job_id).status.value}")


@click.command()
@click.argument("job_id")
def pause(job_id: str) -> None:
    """Pause a job; running slices stop at their next batch."""
    click.echo(f"job {job_id} is {pause_job(runtime(), job_id).status.value}")


@click.command()
@click.argument("job_id")
def resume(job_id: str) -> None:
    """Resume a paused job (with the local dispatcher: runs it here until done)."""
    rt = runtime()
    info = resume_job(rt, job_id)
    if rt.dispatcher.in_process:
        info = Job(rt, job_id).wait(progress=Progress(None), max_poll=MAX_POLL)
    click.echo(f"job {job_id} is {info.status.value}")


@click.command()
@click.argument("job_id")
@click.option("--max-rate", type=float, default=None, help="The job's new rate (ops/s).")
@click.option("--no-limit", is_flag=True, help="Lift the job's rate limit.")
@click.option("--ramp-up/--no-ramp-up", default=None, help="Turn the ramp-up on or off.")
def throttle(job_id: str, max_rate: float | None, no_limit: bool, ramp_up: bool | None) -> None:
    """Change a running job's rate: its slices take it at their next batch."""
    if (max_rate is None) == (not no_limit) and ramp_up is None:
        raise click.UsageError("give --max-rate N or --no-limit (and/or --ramp-up/--no-ramp-up)")
    if max_rate is not None and no_limit:
        raise click.UsageError("--max-rate and --no-limit contradict each other")
    rt = runtime()
    if max_rate is None and not no_limit:
        max_rate = job_status(rt, job_id).max_rate  # only the ramp changes
    info = throttle_job(rt, job_id, max_rate, ramp_up)
    limit = "no limit" if info.max_rate is None else f"max rate {info.max_rate:g}/s"
    ramp = "on" if info.ramp_up else "off"
    click.echo(f"job {job_id} is {info.status.value}: {limit}, ramp-up {ramp}")
