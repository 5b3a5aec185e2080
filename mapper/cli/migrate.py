"""``mapper migrate``: list the migrations of a package; apply, audit or roll them back."""

from __future__ import annotations

import json
import os
import sys

import click

from mapper.cli.audit import render_audit
from mapper.cli.common import runtime
from mapper.migrate import runner
from mapper.migrate.ledger import who


@click.command()
@click.option("--package", required=True, metavar="MODULE", help="The migrations package.")
@click.option("--apply", "do_apply", is_flag=True, help="Run the pending migrations in order.")
@click.option("--dry-run", is_flag=True, help="Audit the pending migrations; write nothing.")
@click.option("--sample", type=int, default=None, help="With --dry-run: map only N entities.")
@click.option(
    "--backup",
    metavar="DIR",
    default=None,
    help="With --apply: keep before-images under DIR (local or gs://) for --rollback.",
)
@click.option("--rollback", metavar="NAME", default=None, help="Restore what NAME changed.")
@click.option("--namespace", default=None, help="Where steps that name no namespace run.")
@click.option(
    "--wait",
    "wait_seconds",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds to wait for another process that holds the ledger.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the ledger (or audit) as JSON.")
def migrate(
    package: str,
    do_apply: bool,
    dry_run: bool,
    sample: int | None,
    backup: str | None,
    rollback: str | None,
    namespace: str | None,
    wait_seconds: float,
    as_json: bool,
) -> None:
    """List applied, pending and changed migrations (exit 1 while any is pending).

    --apply runs the pending ones in order, each as a resumable job recorded in
    the ledger; a failed one stops the sequence and --apply again resumes it.
    """
    _check(do_apply, dry_run, sample, backup, rollback)
    rt = runtime()
    by = os.environ.get("MAPPER_MIGRATE_BY") or who()
    if rollback:
        totals = runner.rollback(rt, package, rollback, by, wait_seconds=wait_seconds)
        click.echo(f"{rollback}: rolled back: " + _counts(totals))
        sys.exit(0)
    if dry_run:
        reports = runner.dry_run(rt, package, sample=sample, namespace=namespace)
        if as_json:
            click.echo(json.dumps(reports, indent=2, sort_keys=True))
        else:
            click.echo("\n".join(render_audit(reports)))
        click.echo("dry run: nothing was written", err=as_json)
        sys.exit(1 if reports else 0)
    say = None if as_json else (lambda line: click.echo(line, err=True))
    if do_apply:
        info = runner.apply(
            rt,
            package,
            by,
            backup_root=backup,
            wait_seconds=wait_seconds,
            progress=say,
            namespace=namespace,
        )
    else:
        info = runner.ledger_status(rt, package)
    if as_json:
        click.echo(json.dumps(info.to_json(), indent=2, sort_keys=True))
    else:
        click.echo("\n".join(render(info)))
    if info.pending and not do_apply:
        click.echo("Nothing was run; run again with --apply.", err=as_json)
    sys.exit(1 if info.pending else 0)


def _check(
    do_apply: bool, dry_run: bool, sample: int | None, backup: str | None, rollback: str | None
) -> None:
    if sum([do_apply, dry_run, rollback is not None]) > 1:
        raise click.UsageError("choose one of --apply, --dry-run and --rollback")
    if sample is not None and (not dry_run or sample < 1):
        raise click.UsageError("--sample N needs --dry-run and N >= 1")
    if backup is not None and not do_apply:
        raise click.UsageError("--backup goes with --apply")


def render(info: runner.LedgerInfo) -> list[str]:
    lines = [f"migrations of {info.package}:"]
    for m in info.migrations:
        line = f"  {m.name:<32} {m.state:<8}"
        if m.state in ("applied", "changed"):
            line += f" {m.finished} by {m.by}: {_counts(m.counters)}"
        else:
            line += f" {m.steps}"
        lines.append(line)
        if m.state == "changed":
            lines.append("      its source changed since it was applied; it is not run again")
        if m.state == "failed":
            lines.append(f"      error: {m.error}")
        if m.rolled_back:
            lines.append(f"      rolled back {m.rolled_back}")
    pending, changed = len(info.pending), sum(m.state == "changed" for m in info.migrations)
    lines.append(f"{pending} pending, {changed} changed since applied")
    return lines


def _counts(counters: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counters.items())) or "-"
