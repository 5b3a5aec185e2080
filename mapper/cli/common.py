"""What every command shares: the Runtime (built once, closed once) and KEY=VALUE parsing."""

from __future__ import annotations

import json
from typing import Any

import click

from mapper.engine.runtime import Runtime
from mapper.settings import Settings

_META = "mapper.runtime"


def runtime() -> Runtime:
    """The command's Runtime, from the environment: built on first use, closed when it ends.

    A caller that invokes the command with a Runtime as click's ``obj`` (the test
    kit's ``python -m mapper.testing.faultcli``) gets that one, and closes it itself.
    """
    ctx = click.get_current_context().find_root()
    rt = ctx.meta.get(_META)
    if rt is None and isinstance(ctx.obj, Runtime):
        rt = ctx.meta[_META] = ctx.obj
    if rt is None:
        rt = ctx.meta[_META] = Runtime(Settings.from_env())
        ctx.call_on_close(rt.close)
    return rt


def parse_param(raw: str, hint: str = "--param") -> tuple[str, Any]:
    """``KEY=VALUE``; VALUE is JSON when it parses as JSON, else a string."""
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected KEY=VALUE, got {raw!r}", param_hint=hint)
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def exit_for(status: Any) -> None:
    """Exit 0 for a job, export or import that succeeded, 1 otherwise."""
    raise SystemExit(0 if status.status.value == "succeeded" else 1)
