"""The dump commands: ``python -m mapper export`` and ``python -m mapper import``."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from mapper.cli.progress import Progress
from mapper.engine.runtime import Runtime
from mapper.settings import Settings


def _filter(raw: str) -> tuple[str, Any]:
    from mapper.cli.main import parse_param

    try:
        return parse_param(raw)
    except click.BadParameter as e:
        raise click.BadParameter(str(e.message), param_hint="--filter") from e


@click.command()
@click.option("--out", required=True, help="Directory or gs://bucket/prefix for the dump.")
@click.option("--kind", "kinds", multiple=True, help="Kind to export (default: every kind).")
@click.option("--namespace", "namespaces", multiple=True, help="Namespace (default: '').")
@click.option("--all-namespaces", is_flag=True, help="Every namespace the store lists.")
@click.option("--filter", "filters", multiple=True, help="PROP=VALUE equality filter.")
@click.option("--shards", default=4, show_default=True, type=int)
@click.option("--batch-size", default=500, show_default=True, type=int, help="Entities a part.")
@click.option("--id", "export_id", default=None, help="Client-chosen export id (idempotent).")
def export(
    out: str,
    kinds: tuple[str, ...],
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    filters: tuple[str, ...],
    shards: int,
    batch_size: int,
    export_id: str | None,
) -> None:
    """Export kinds (raw entities, with or without models) to a dump."""
    from mapper.transfer.export import ExportSpec, start_export

    if all_namespaces and namespaces:
        raise click.UsageError("use --namespace or --all-namespaces, not both")
    spec = ExportSpec(
        out=out,
        kinds=kinds,
        namespaces=["*"] if all_namespaces else (list(namespaces) or None),
        filters=[_filter(f) for f in filters],
        shards=shards,
        batch_size=batch_size,
        id=export_id,
    ).validate()
    rt = Runtime(Settings.from_env())
    started = time.monotonic()
    try:
        handle = start_export(rt, spec)
        click.echo(f"export {handle.id} started", err=True)
        status = handle.wait(progress=Progress(None))
    finally:
        rt.close()
    _export_summary(status, time.monotonic() - started)
    sys.exit(0 if status["status"] == "succeeded" else 1)


def _export_summary(status: dict[str, Any], seconds: float) -> None:
    click.echo(f"export {status['id']} {status['status']}")
    for item in status["kinds"]:
        where = f"{item['namespace']}/" if item["namespace"] else ""
        line = f"  {where}{item['kind']}: {item['entities']} entities, {item['bytes']} bytes"
        click.echo(line + (f"  error: {item['error']}" if item["error"] else ""))
    total = status["counters"].get("processed", 0)
    rate = total / seconds if seconds > 0 else 0.0
    click.echo(f"  total: {total} entities in {seconds:.1f}s ({rate:,.0f}/s)")
    if status["manifest"]:
        click.echo(f"  manifest: {status['manifest']}")


@click.command("import")
@click.argument("source", metavar="DIR")
@click.option(
    "--mode",
    type=click.Choice(["keep", "remap"]),
    required=True,
    help="keep: same keys (restore); remap: new ids, every reference rewritten (merge).",
)
@click.option("--namespace", default=None, help="Write every entity into this namespace.")
@click.option("--move-project", is_flag=True, help="Allow a dump of another project.")
@click.option("--natural-key", "natural_keys", multiple=True, metavar="KIND=PROP[,PROP]")
@click.option("--keep-names", is_flag=True, help="Keep key names (the default).")
@click.option("--rename-names", default=None, metavar="PREFIX", help="Prefix every key name.")
@click.option("--dangling", type=click.Choice(["keep", "null", "fail"]), default="keep")
@click.option("--on-conflict", type=click.Choice(["skip", "overwrite", "fail"]), default="skip")
@click.option("--default", "defaults", multiple=True, metavar="KIND.PROP=VALUE|now|@OTHER")
@click.option("--rename", "renames", multiple=True, metavar="KIND.OLD=NEW")
@click.option("--drop", "drops", multiple=True, metavar="KIND.PROP")
@click.option("--dry-run", is_flag=True, help="Validate and report; write nothing.")
@click.option("--shards", default=4, show_default=True, type=int)
@click.option("--batch-size", default=2, show_default=True, type=int, help="Parts a batch.")
@click.option("--id", "import_id", default=None, help="Client-chosen import id (idempotent).")
def import_(source: str, mode: str, **options: Any) -> None:
    """Import the dump in DIR (validated whole before anything is written)."""
    from mapper.transfer.importer import ImportSpec, start_import
    from mapper.transfer.options import RemapOptions, parse_options

    if options.pop("keep_names") and options["rename_names"] is not None:
        raise click.UsageError("use --keep-names or --rename-names, not both")
    remap = parse_options(
        **{k: options.pop(k) for k in ("natural_keys", "rename_names", "dangling", "on_conflict")},
        **{k: options.pop(k) for k in ("defaults", "renames", "drops")},
    )
    spec = ImportSpec(
        source=source,
        mode=mode,
        namespace=options["namespace"],
        move_project=options["move_project"],
        dry_run=options["dry_run"],
        shards=options["shards"],
        batch_size=options["batch_size"],
        id=options["import_id"],
        options=remap if mode == "remap" else RemapOptions(),
    ).validate()
    if mode == "keep" and remap != RemapOptions():
        raise click.UsageError("--natural-key, --rename-names ... need --mode remap")
    rt = Runtime(Settings.from_env())
    started = time.monotonic()
    try:
        plan, run = start_import(rt, spec)
        _print_plan(plan)
        if run is None:
            click.echo("dry run: nothing was written")
            return
        status = run.wait(progress=Progress(plan["parts"] * len(run.status()["stages"])))
    finally:
        rt.close()
    _import_summary(status, time.monotonic() - started)
    sys.exit(0 if status["status"] == "succeeded" else 1)


def _import_summary(status: dict[str, Any], seconds: float) -> None:
    counters = status["counters"]
    written = counters.get("put", 0)
    click.echo(
        f"import {status['id']} {status['status']}: {written} entities written in "
        f"{seconds:.1f}s ({written / max(seconds, 1e-9):,.0f}/s)"
    )
    if status["mode"] == "remap":
        keys = ", ".join(
            f"{how}={counters.get(how, 0)}"
            for how in ("allocated", "named", "merged", "conflict-skipped", "overwrite")
        )
        click.echo(f"  new keys: {keys}; dangling references: {counters.get('dangling', 0)}")
    if status.get("error"):
        click.echo(f"  error: {status['error']}")
        click.echo(f"  at key: {status['failed_key']}")


def _print_plan(plan: dict[str, Any]) -> None:
    moved = ", ".join(
        f"{src or '(default)'} -> {dst or '(default)'}" for src, dst in plan["namespaces"].items()
    )
    click.echo(
        f"dump {plan['source']}: {plan['entities']} entities in {plan['parts']} parts, "
        f"project {plan['from']['project']!r} -> {plan['to']['project']!r}, namespaces {moved}"
    )
    for kind, count in plan["kinds"].items():
        click.echo(f"  {kind}: {count}")
    if "remap" in plan:
        from mapper.transfer.remap_plan import summarize

        click.echo("remap plan:")
        for line in summarize(plan["remap"]):
            click.echo(line)
