"""Reading the home: ``init``, ``stories``, ``forget``, ``log``, ``memory``, ``backends``, ``verify``, ``reindex``."""

from __future__ import annotations

from typing import Annotated

import typer

from codirector.commands.common import BranchOpt, JsonOpt, console, emit_json, short, studio_of


def init(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Create the home and database, or upgrade an existing database to this version.

    Example: codirector --home ./films init
    """
    result = studio_of(ctx).init()
    if as_json:
        emit_json(result.to_json())
        return
    typer.echo(f"database {result.database}: {result.change} (revision {result.revision})")
    typer.echo(f"home     {result.home}")
    typer.echo(f"blobs    {result.blobs}")


def stories(
    ctx: typer.Context,
    replays: Annotated[bool, typer.Option("--replays", help="Also list replay scratch branches.")] = False,
    forgotten: Annotated[bool, typer.Option("--forgotten", help="Also list forgotten stories.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List stories with their branches and status.

    Example: codirector stories --json
    """
    listing = studio_of(ctx).stories(include_replays=replays, include_forgotten=forgotten)
    if as_json:
        emit_json(listing.to_json())
        return
    if not listing:
        typer.echo("no stories yet — try `codirector demo` or `codirector run STORY_FILE --profile preview`")
        return
    from rich.table import Table

    table = Table("story", "title", "branch", "parent@fork", "events", "shots", "status", "running")
    for s in listing:
        for i, b in enumerate(s.branches):
            fork = f"{b.parent}@{b.fork_position}" if b.parent else ""
            lease = b.lease
            running = "" if lease is None else (
                f"{lease.host} pid {lease.pid}, heartbeat {lease.heartbeat_age:.0f} s ago"
                + (" (its process has ended: the next run takes over at once)" if lease.gone
                   else "" if lease.live else " (expired: holder gone?)"))
            table.add_row(s.id if i == 0 else "", s.title if i == 0 else "", b.name, fork,
                          str(b.events), str(b.shots_completed), b.status, running)
    console().print(table)


def forget(
    ctx: typer.Context,
    story: Annotated[str, typer.Argument(help="Story id (see `codirector stories`).")],
    as_json: JsonOpt = False,
) -> None:
    """Hide a story that never got a shot done (a failed first try) from `codirector stories`.

    Nothing is deleted: a StoryForgotten event is appended, and the log stays. Running its story file
    again continues it (and lists it again). Example: codirector forget santa
    """
    done = studio_of(ctx).forget(story)
    if as_json:
        emit_json(done.to_json())
        return
    if done.already:
        typer.echo(f"{story} was already forgotten")
        return
    typer.echo(f"forgot {story}: hidden from `codirector stories`; its {done.events} events stay in the log "
               f"(`codirector log {story}`, `codirector stories --forgotten`). Running its story file again "
               "continues it.")


def log(
    ctx: typer.Context,
    story: Annotated[str, typer.Argument(help="Story id (see `codirector stories`).")],
    branch: BranchOpt = "main",
    types: Annotated[list[str] | None, typer.Option("--type", "-t", help="Only this event type (repeatable). "
                                                     "Example: --type EntityRegistered --type ViewAdded")] = None,
    shot: Annotated[int | None, typer.Option("--shot", help="Only events of this shot (from 1).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many events.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the events of a story branch, oldest first.

    Example: codirector log lighthouse --type MemoryRetrieved --shot 3
    """
    events = studio_of(ctx).log(story, branch, types=types or None, shot=shot, limit=limit)
    if as_json:
        emit_json([e.summary() for e in events])
        return
    from rich.table import Table

    table = Table("pos", "branch", "shot", "type", "summary")
    for e in events:
        table.add_row(str(e.position), e.branch, "" if e.shot is None else str(e.shot), e.type, short(e.payload))
    console().print(table)


def memory(
    ctx: typer.Context,
    story: Annotated[str, typer.Argument(help="Story id.")],
    branch: BranchOpt = "main",
    at_shot: Annotated[int | None, typer.Option("--at-shot", help="Memory shot N's keyframe was made with.")] = None,
    at_position: Annotated[int | None, typer.Option("--at-position", help="Memory at log position P.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show entity memory as it stood (now, at a shot, or at a log position).

    Example: codirector memory lighthouse --at-shot 5
    """
    if at_shot is not None and at_position is not None:
        raise typer.BadParameter("give --at-shot or --at-position, not both")
    bank = studio_of(ctx).memory(story, branch, at_shot=at_shot, at_position=at_position)
    if as_json:
        emit_json({"story": story, "branch": branch, "position": bank.position,
                   "entities": [e.to_dict() for e in bank], "anomalies": bank.anomalies})
        return
    from rich.table import Table

    from codirector.engine.views.describe import brief_entity

    table = Table("entity", "kind", "base_entity", "origin", "shot", "views", "description",
                  title=f"{story}/{branch} memory at position {bank.position}")
    for e in bank:
        table.add_row(e.name, e.kind, e.base_entity or "", e.origin, "" if e.shot is None else str(e.shot),
                      str(len(e.views)), brief_entity(e, bank, 80))
    console().print(table)
    for a in bank.anomalies:
        typer.secho(f"anomaly: {a}", fg=typer.colors.YELLOW, err=True)


def backends(
    ctx: typer.Context,
    profile: Annotated[str | None, typer.Option("--profile", "-p", help="Mark and check this profile's "
                                                "backends.")] = None,
    config: Annotated[str | None, typer.Option("--config", "-c", help="Check with this config's options.")] = None,
    check: Annotated[bool, typer.Option("--check", help="Pre-flight the profile/config (default: preview) as a run "
                                        "would: a table of its backends' readiness with fixes; exit 13 when any "
                                        "is not ready.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List registered model backends, what each needs, and whether it can run here.

    Examples: codirector backends --profile openai
              codirector backends --check --profile openai
    """
    if check:
        _preflight_table(ctx, profile, config, as_json)
        return
    report = studio_of(ctx).backends(profile=profile, config=config)
    if as_json:
        emit_json(report.to_json())
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table("kind", "backend", "usable here", "needs", "what it is")
    for b in report:
        mark = "*" if b.selected else ""
        what = b.summary + (f"\ncan take: {b.capabilities.summary()}" if b.capabilities else "")
        table.add_row(b.kind, b.name + mark, escape(("yes: " if b.usable else "no: ") + b.status), b.needs,
                      escape(what))
    console().print(table)
    if report.checked_profile:
        typer.echo("* = used by the selected profile/config")


def _preflight_table(ctx: typer.Context, profile: str | None, config: str | None, as_json: bool) -> None:
    """``backends --check``: each backend of the profile/config, ready or not and the fix; NotReady if any is not."""
    report = studio_of(ctx).preflight(profile=profile, config=config)
    if as_json:
        emit_json(report.to_json())
    else:
        from rich.markup import escape
        from rich.table import Table

        table = Table("kind", "backend", "model", "state", "what was found / the fix")
        for c in report.checks:
            found = c.detail + (f"\nfix: {c.fix}" if c.fix and not c.ready else "")
            if c.capabilities and c.capabilities.summary() not in c.detail:
                found += f"\ncan take: {c.capabilities.summary()}"
            state = c.state if c.ready else "NOT READY"
            table.add_row(c.kind, escape(c.backend), escape(c.model or ""), state, escape(found))  # "[embedder]"
        console().print(table)
        for text in report.notes:
            typer.secho(f"note: {text}", fg=typer.colors.YELLOW, err=True)
        if report.ok:
            source = f"the config {report.source}" if report.source else f"profile {report.profile!r}"
            typer.echo(f"ready: every backend of {source} can run here")
    if not report.ok:
        raise report.error(listed=False)


def verify(
    ctx: typer.Context,
    story: Annotated[str | None, typer.Argument(help="Only this story (default: all).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the hash chain, every referenced blob and the vector index. Exit 5 on damage; blobs no event names
    are listed apart (not damage; `codirector gc` removes them).

    Example: codirector verify lighthouse
    """
    report = studio_of(ctx).verify(story)
    if as_json:
        emit_json(report.to_json())
    else:
        typer.echo(f"checked {report.stories} stories, {report.branches} branches, {report.events} events, "
                   f"{report.blobs} blobs, {report.vectors} vectors")
        for p in report.problems:
            typer.secho(f"DAMAGED {p.line()}", fg=typer.colors.RED)
        if report.unreferenced:  # not damage: a run stopped between writing a blob and its event
            typer.echo(f"unreferenced: {len(report.unreferenced)} blobs, {report.unreferenced_bytes} bytes "
                       "(no event names them; not damage); `codirector gc` removes them")
        if report.ok:
            typer.secho("ok: the log, blobs and vector index are intact", fg=typer.colors.GREEN)
    if not report.ok:
        raise typer.Exit(5)


def reindex(
    ctx: typer.Context,
    story: Annotated[str | None, typer.Argument(help="Only this story (default: all).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild the FAISS vector index from the log (it is a projection; nothing is lost).

    Example: codirector reindex
    """
    result = studio_of(ctx).reindex(story)
    if as_json:
        emit_json(result.to_json())
        return
    for r in result:
        typer.echo(f"{r.story}: {r.vectors} vectors" + (f" of dimension {r.dim}" if r.dim else ""))
