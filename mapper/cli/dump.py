"""The dump commands: ``mapper export`` and ``mapper import``."""

from __future__ import annotations

import time
from typing import Any

import click

from mapper.cli.common import exit_for, parse_param, runtime
from mapper.cli.progress import MAX_POLL, Progress
from mapper.engine.units import read_namespace_file
from mapper.transfer.export import FORMATS, ExportInfo, ExportSpec, start_export
from mapper.transfer.importer import ImportInfo, ImportSpec, start_import
from mapper.transfer.remap_plan import summarize
from mapper.transfer.requests import export_spec, import_spec


def _filter(raw: str) -> tuple[str, Any]:
    return parse_param(raw, hint="--filter")


@click.command()
@click.option("--out", required=True, help="Directory or gs://bucket/prefix for the dump.")
@click.option("--kind", "kinds", multiple=True, help="Kind to export (default: every kind).")
@click.option("--namespace", "namespaces", multiple=True, help="Namespace (default: '').")
@click.option("--all-namespaces", is_flag=True, help="Every namespace the store lists.")
@click.option(
    "--namespaces-from",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The namespaces named in FILE, one per line (a store without namespace metadata).",
)
@click.option("--filter", "filters", multiple=True, help="PROP=VALUE equality filter.")
@click.option("--shards", default=ExportSpec.shards, show_default=True, type=int)
@click.option(
    "--batch-size",
    default=ExportSpec.batch_size,
    show_default=True,
    type=int,
    help="Entities a part.",
)
@click.option("--id", "export_id", default=None, help="Client-chosen export id (idempotent).")
@click.option(
    "--format",
    "dump_format",
    type=click.Choice(FORMATS),
    default=ExportSpec.format,
    show_default=True,
    help="mapper's dump, or a managed export (what `gcloud datastore import` reads).",
)
@click.option(
    "--max-rate", type=float, default=None, help="Entities read per second (default: no limit)."
)
def export(
    out: str,
    kinds: tuple[str, ...],
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    namespaces_from: str | None,
    filters: tuple[str, ...],
    shards: int,
    batch_size: int,
    export_id: str | None,
    dump_format: str,
    max_rate: float | None,
) -> None:
    """Export kinds (raw entities, with or without models) to a dump."""
    spec = export_spec(
        {
            "out": out,
            "kinds": kinds,
            "namespaces": namespaces + tuple(read_namespace_file(namespaces_from))
            if namespaces_from
            else namespaces,
            "all_namespaces": all_namespaces,
            "filters": [_filter(f) for f in filters],
            "shards": shards,
            "batch_size": batch_size,
            "id": export_id,
            "format": dump_format,
            "max_rate": max_rate,
        }
    )
    started = time.monotonic()
    handle = start_export(runtime(), spec)
    click.echo(f"export {handle.id} started", err=True)
    info = handle.wait(progress=Progress(None), max_poll=MAX_POLL)
    _export_summary(info, time.monotonic() - started)
    exit_for(info)


def _export_summary(info: ExportInfo, seconds: float) -> None:
    click.echo(f"export {info.id} {info.status.value}")
    for item in info.kinds:
        many = len(item.get("namespaces") or ()) > 1
        where = f"{len(item['namespaces'])} namespaces/" if many else ""
        where = f"{item['namespace']}/" if item["namespace"] else where
        line = f"  {where}{item['kind']}: {item['entities']} entities, {item['bytes']} bytes"
        click.echo(line + (f"  error: {item['error']}" if item["error"] else ""))
    total = info.counters.get("processed", 0)
    rate = total / seconds if seconds > 0 else 0.0
    click.echo(f"  total: {total} entities in {seconds:.1f}s ({rate:,.0f}/s)")
    if info.manifest:
        click.echo(f"  manifest: {info.manifest}")


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
@click.option("--natural-key", "natural_key", multiple=True, metavar="KIND=PROP[,PROP]")
@click.option("--keep-names", is_flag=True, help="Keep key names (the default).")
@click.option("--rename-names", default=None, metavar="PREFIX", help="Prefix every key name.")
@click.option("--dangling", type=click.Choice(["keep", "null", "fail"]), default=None)
@click.option("--on-conflict", type=click.Choice(["skip", "overwrite", "fail"]), default=None)
@click.option("--default", "default", multiple=True, metavar="KIND.PROP=VALUE|now|@OTHER")
@click.option("--rename", "rename", multiple=True, metavar="KIND.OLD=NEW")
@click.option("--drop", "drop", multiple=True, metavar="KIND.PROP")
@click.option("--dry-run", is_flag=True, help="Validate and report; write nothing.")
@click.option("--shards", default=ImportSpec.shards, show_default=True, type=int)
@click.option(
    "--batch-size",
    default=ImportSpec.batch_size,
    show_default=True,
    type=int,
    help="Parts a batch.",
)
@click.option("--id", "import_id", default=None, help="Client-chosen import id (idempotent).")
@click.option(
    "--max-rate",
    type=float,
    default=None,
    help="Entities written per second (default: no limit).",
)
def import_(source: str, mode: str, **options: Any) -> None:
    """Import the dump in DIR (validated whole before anything is written)."""
    options["id"] = options.pop("import_id")
    spec = import_spec({"source": source, "mode": mode, **options})
    started = time.monotonic()
    plan, run = start_import(runtime(), spec)
    _print_plan(plan)
    if run is None:
        click.echo("dry run: nothing was written")
        return
    info = run.wait(progress=Progress(plan["parts"] * len(run.status().stages)), max_poll=MAX_POLL)
    _import_summary(info, time.monotonic() - started)
    exit_for(info)


def _import_summary(info: ImportInfo, seconds: float) -> None:
    counters = info.counters
    written = counters.get("put", 0)
    click.echo(
        f"import {info.id} {info.status.value}: {written} entities written in "
        f"{seconds:.1f}s ({written / max(seconds, 1e-9):,.0f}/s)"
    )
    if info.mode == "remap":
        keys = ", ".join(
            f"{how}={counters.get(how, 0)}"
            for how in ("allocated", "named", "merged", "conflict-skipped", "overwrite")
        )
        click.echo(f"  new keys: {keys}; dangling references: {counters.get('dangling', 0)}")
    if info.error:
        click.echo(f"  error: {info.error}")
        click.echo(f"  at key: {info.failed_key}")


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
        click.echo("remap plan:")
        for line in summarize(plan["remap"]):
            click.echo(line)
