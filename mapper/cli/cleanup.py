"""``mapper cleanup ...``: plan first, delete only with --apply (and a yes)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from mapper.cleanup import table
from mapper.cli.common import parse_param, runtime
from mapper.engine.spec import check_max_rate
from mapper.engine.units import read_namespace_file


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--namespace", default="", help="Datastore namespace (default: '').")(fn)
    fn = click.option(
        "--apply", "do_apply", is_flag=True, help="Act on what the plan lists (asks first)."
    )(fn)
    fn = click.option("--yes", is_flag=True, help="Do not ask for confirmation (scripts).")(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")(fn)
    fn = click.option(
        "--max-rate",
        type=float,
        default=None,
        help="With --apply: entities deleted or rewritten per second (default: no limit).",
    )(fn)
    return fn


def _many(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options that plan the cleanup in many namespaces at once (docs/namespaces.md)."""
    fn = click.option(
        "--namespaces-from",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="In each namespace named in FILE, one per line.",
    )(fn)
    fn = click.option(
        "--namespace-prefix", default=None, help="In each namespace starting with this."
    )(fn)
    fn = click.option("--all-namespaces", is_flag=True, help="In every namespace listed.")(fn)
    return fn


def _with_selection(fields: dict[str, Any]) -> dict[str, Any]:
    """The request fields, ``--namespaces-from FILE`` read into ``namespaces``."""
    listed = fields.pop("namespaces_from", None)
    return {**fields, "namespaces": read_namespace_file(listed) if listed else None}


def _run(
    name: str,
    fields: dict[str, Any],
    do_apply: bool,
    yes: bool,
    as_json: bool,
    max_rate: float | None = None,
) -> None:
    """Plan, print, and apply only when asked: exit 1 stale, 0 clean or applied."""
    table.check(name, fields)
    check_max_rate(max_rate)
    rt = runtime()
    plan = table.plan(rt, name, fields)
    if as_json:
        click.echo(json.dumps(plan.to_json(), indent=2, sort_keys=True))
    else:
        click.echo("\n".join(plan.render()))
    if plan.empty:
        sys.exit(0)
    if not do_apply:
        click.echo("Nothing was changed (plan only); run again with --apply.", err=as_json)
        sys.exit(1)
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("--apply needs --yes when not run on a terminal")
        click.confirm(table.question(name, fields), abort=True, err=as_json)
    done = table.apply(rt, plan, max_rate)
    click.echo("applied: " + ", ".join(f"{k}={v}" for k, v in sorted(done.items())), err=as_json)
    sys.exit(0)


@click.group()
def cleanup() -> None:
    """Find what went stale; show it; delete it only when applied."""


@cleanup.command("stale-kinds")
@click.option("--models", required=True, metavar="MODULE[,MODULE]", help="Modules of models.")
@_common
@_many
def stale_kinds(
    models: str,
    do_apply: bool,
    yes: bool,
    as_json: bool,
    max_rate: float | None,
    **where: Any,
) -> None:
    """Kinds in the store that no model in --models defines (never mapper's own)."""
    fields = _with_selection({"models": models, **where})
    _run("stale-kinds", fields, do_apply, yes, as_json, max_rate)


@cleanup.command("stale-properties")
@click.option("--models", required=True, metavar="MODULE[,MODULE]", help="Modules of models.")
@_common
@_many
def stale_properties(
    models: str,
    do_apply: bool,
    yes: bool,
    as_json: bool,
    max_rate: float | None,
    **where: Any,
) -> None:
    """Stored properties the models no longer define (Expando models excepted)."""
    fields = _with_selection({"models": models, **where})
    _run("stale-properties", fields, do_apply, yes, as_json, max_rate)


@cleanup.command("orphans")
@click.option("--kind", required=True, help="The kind to scan.")
@click.option("--property", "properties", multiple=True, help="A key property to check.")
@click.option("--parents", is_flag=True, help="Check that each entity's parent exists.")
@click.option("--action", type=click.Choice(["delete", "null", "cascade"]), default="delete")
@click.option(
    "--cascade",
    "cascade",
    multiple=True,
    metavar="KIND.PROP",
    help="Dependents to delete with an orphan: KIND whose PROP holds its key "
    "(KIND.__parent__: KIND entities under it).",
)
@click.option("--shards", default=4, show_default=True, type=int)
@_common
@_many
def orphans(
    do_apply: bool, yes: bool, as_json: bool, max_rate: float | None, **fields: Any
) -> None:
    """Entities whose parent or referenced key no longer exists."""
    _run("orphans", _with_selection(fields), do_apply, yes, as_json, max_rate)


@cleanup.command("missing")
@click.argument("dump_dir", metavar="DUMP_DIR")
@click.option("--kind", required=True, help="The kind the sync imported.")
@click.option("--filter", "filters", multiple=True, help="PROP=VALUE: the scope the sync covers.")
@click.option(
    "--dump-namespace",
    default=None,
    help="The dump's namespace, when the sync imported it into another (default: --namespace).",
)
@_common
@_many
def missing(
    dump_dir: str,
    filters: tuple[str, ...],
    do_apply: bool,
    yes: bool,
    as_json: bool,
    max_rate: float | None,
    **fields: Any,
) -> None:
    """Entities in scope whose keys the (complete) dump in DUMP_DIR does not contain."""
    scope = [parse_param(raw, hint="--filter") for raw in filters]
    fields = {**_with_selection(fields), "source": dump_dir, "filters": scope}
    _run("missing", fields, do_apply, yes, as_json, max_rate)
