"""The ``mapper`` command: the click group and the commands it is made of."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from mapper.cli import cleanup, dump, jobs, migrate
from mapper.errors import MapperError


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
@click.option(
    "--path",
    "paths",
    multiple=True,
    default=["."],
    show_default=True,
    help="Where to import MODULE:CLASS from (prepended to sys.path; repeatable).",
)
def main(verbose: bool, paths: tuple[str, ...]) -> None:
    """Resumable batch jobs over Cloud Datastore.

    Project and emulator come from GOOGLE_CLOUD_PROJECT and
    DATASTORE_EMULATOR_HOST; MAPPER_QUEUE selects Cloud Tasks.
    """
    # An installed `mapper` command, unlike `python -m mapper`, does not import from
    # the working directory: the app's own mappers live there.
    for path in reversed(paths):
        resolved = os.path.abspath(path)
        if resolved not in sys.path:
            sys.path.insert(0, resolved)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


for command in (jobs.run, jobs.status, jobs.abort, jobs.pause, jobs.resume, jobs.throttle):
    main.add_command(command)
main.add_command(dump.export)
main.add_command(dump.import_)
main.add_command(cleanup.cleanup)
main.add_command(migrate.migrate)
