"""``python -m mapper cleanup ...``: plan first, delete only with --apply (and a yes)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from mapper.cleanup.plan import Plan
from mapper.engine.runtime import Runtime
from mapper.settings import Settings


def _modules(raw: str) -> list[str]:
    return [m.strip() for m in raw.split(",") if m.strip()]


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--namespace", default="", help="Datastore namespace (default: '').")(fn)
    fn = click.option(
        "--apply", "do_apply", is_flag=True, help="Act on what the plan lists (asks first)."
    )(fn)
    fn = click.option("--yes", is_flag=True, help="Do not ask for confirmation (scripts).")(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")(fn)
    return fn


def _run(
    make_plan: Callable[[Runtime], Plan],
    do_apply: bool,
    yes: bool,
    as_json: bool,
    question: str = "Delete all of the above?",
) -> None:
    """Plan, print, and apply only when asked: exit 1 stale, 0 clean or applied."""
    from mapper.cleanup.apply import apply

    rt = Runtime(Settings.from_env())
    try:
        plan = make_plan(rt)
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
            click.confirm(question, abort=True, err=as_json)
        done = apply(rt, plan)
    finally:
        rt.close()
    click.echo("applied: " + ", ".join(f"{k}={v}" for k, v in sorted(done.items())), err=as_json)
    sys.exit(0)


@click.group()
def cleanup() -> None:
    """Find what went stale; show it; delete it only when applied."""


@cleanup.command("stale-kinds")
@click.option("--models", required=True, metavar="MODULE[,MODULE]", help="Modules of models.")
@_common
def stale_kinds(models: str, namespace: str, do_apply: bool, yes: bool, as_json: bool) -> None:
    """Kinds in the store that no model in --models defines (never mapper's own)."""
    from mapper.cleanup.apply import plan_stale_kinds

    _run(lambda rt: plan_stale_kinds(rt, _modules(models), namespace), do_apply, yes, as_json)


@cleanup.command("stale-properties")
@click.option("--models", required=True, metavar="MODULE[,MODULE]", help="Modules of models.")
@_common
def stale_properties(models: str, namespace: str, do_apply: bool, yes: bool, as_json: bool) -> None:
    """Stored properties the models no longer define (Expando models excepted)."""
    from mapper.cleanup.apply import plan_stale_properties

    _run(
        lambda rt: plan_stale_properties(rt, _modules(models), namespace),
        do_apply,
        yes,
        as_json,
        "Rewrite those entities without the listed properties?",
    )


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
def orphans(
    kind: str,
    properties: tuple[str, ...],
    parents: bool,
    action: str,
    cascade: tuple[str, ...],
    shards: int,
    namespace: str,
    do_apply: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Entities whose parent or referenced key no longer exists."""
    from mapper.cleanup.orphans import OrphanSpec, plan_orphans

    pairs = []
    for item in cascade:
        target, dot, prop = item.partition(".")
        if not dot or not target or not prop:
            raise click.BadParameter(f"expected KIND.PROP, got {item!r}", param_hint="--cascade")
        pairs.append([target, prop])
    spec = OrphanSpec(kind, properties, parents, pairs, action).validate()
    verb = {"null": "Set the dangling references above to null?"}
    _run(
        lambda rt: plan_orphans(rt, spec, namespace, shards),
        do_apply,
        yes,
        as_json,
        verb.get(action, "Delete all of the above?"),
    )


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
def missing(
    dump_dir: str,
    kind: str,
    filters: tuple[str, ...],
    dump_namespace: str | None,
    namespace: str,
    do_apply: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Entities in scope whose keys the (complete) dump in DUMP_DIR does not contain."""
    from mapper.cleanup.apply import plan_missing
    from mapper.cli.main import parse_param

    scope = []
    for raw in filters:
        try:
            scope.append(parse_param(raw))
        except click.BadParameter as e:
            raise click.BadParameter(e.message, param_hint="--filter") from e
    _run(
        lambda rt: plan_missing(rt, dump_dir, kind, namespace, scope, dump_namespace),
        do_apply,
        yes,
        as_json,
    )
