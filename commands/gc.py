"""``gc``: list, and on request remove, blobs that no event names (what a run stopped between writing a blob and
appending its event leaves behind). A dry run unless ``--delete``; referenced blobs are never touched."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from codirector.commands.common import JsonOpt, emit_json, studio_of


def gc(
    ctx: typer.Context,
    delete: Annotated[bool, typer.Option("--delete", "--yes", help="Remove the unreferenced blobs (default: only "
                                         "list them).")] = False,
    min_age: Annotated[float | None, typer.Option("--min-age", min=0, help="Only blobs older than this many "
                                                  "seconds (default 3600). Needed while a branch is being run: a "
                                                  "run writes a blob just before the event naming it. "
                                                  "Example: --min-age 600")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List blobs no event of any story names (a dry run); --delete removes them. Damage is `verify`'s.

    Example: codirector gc --delete
    """
    report = studio_of(ctx).gc(delete=delete, min_age=min_age)
    if as_json:
        emit_json(report.to_json())
        return
    now = time.time()
    for b in report.candidates:
        age = f"{(now - b.modified) / 3600:.1f} h old" if b.modified is not None else "age unknown"
        typer.echo(f"{'removed' if report.deleted else 'unreferenced'} {b.digest}  {b.size} bytes  {age}")
    summary = f"{len(report.candidates)} unreferenced blobs, {report.bytes} bytes, in {report.store}"
    if report.young:
        summary += f" ({len(report.young)} more younger than {report.min_age:.0f} s kept)"
    if report.deleted:
        typer.secho(f"removed {summary}", fg=typer.colors.GREEN)
    else:
        typer.echo(f"dry run: {summary}; nothing removed"
                   + ("; `codirector gc --delete` removes them" if report.candidates else ""))
