"""The ``codirector`` command line: parse, call ``Studio``, print. No logic of its own.

Every query takes ``--json`` (stable keys, nothing else on stdout). Errors from the tree in
``codirector.errors`` become one line of cause, one line of fix, and the error's exit code.
Heavy modules are imported inside commands so ``codirector --help`` and queries start fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from codirector.errors import CodirectorError

if TYPE_CHECKING:
    from codirector.engine.studio import Studio


class _Group(TyperGroup):
    """Turns ``CodirectorError`` into a short message and its exit code, for every command."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CodirectorError as e:
            _print_error(e)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted; the log holds everything up to the last complete step — "
                       "`codirector resume STORY` continues", err=True)
            raise typer.Exit(130) from None


def _print_error(e: CodirectorError) -> None:
    typer.secho(f"error: {e.message}", fg=typer.colors.RED, err=True)
    if e.hint:
        typer.echo(f"  fix: {e.hint}", err=True)


app = typer.Typer(
    cls=_Group,
    name="codirector",
    help=(
        "Turn a story into a coherent multi-shot video, with a queryable, replayable record of how.\n\n"
        "Start with `codirector demo` (offline, about a minute). Example session:\n\n"
        "  codirector init\n\n"
        "  codirector run examples/stories/lighthouse.yaml --profile preview\n\n"
        "  codirector history lighthouse Mia_red_scarf"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON (stable keys).")]
BranchOpt = Annotated[str, typer.Option("--branch", "-b", help="Branch to read. Example: --branch alt_ending")]


def _studio(ctx: typer.Context) -> Studio:
    from codirector.engine.studio import Studio

    obj = ctx.ensure_object(dict)
    if "studio" not in obj:
        obj["studio"] = Studio(home=obj.get("home"), db=obj.get("db"))
    return obj["studio"]  # type: ignore[no-any-return]


def _emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def _console() -> Any:
    from rich.console import Console

    # Piped output (scripts, tests) gets a wide page so names and ids are never wrapped.
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 200)


@app.callback()
def _global(
    ctx: typer.Context,
    home: Annotated[
        str | None,
        typer.Option("--home", envvar="CODIRECTOR_HOME", help="Home folder (database, blobs, indexes). "
                     "Default ./.codirector. Example: --home ~/films"),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option("--db", envvar="CODIRECTOR_DB", help="Database URL; default SQLite in the home. "
                     "Example: --db postgresql://me:pw@localhost/codirector"),
    ] = None,
) -> None:
    ctx.ensure_object(dict).update(home=home, db=db)


# ---------------------------------------------------------------------------- init


@app.command()
def init(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Create the home and database, or upgrade an existing database to this version.

    Example: codirector --home ./films init
    """
    result = _studio(ctx).init()
    if as_json:
        _emit_json(result)
        return
    before = result["revision_before"]
    if before is None:
        state = "created"
    else:
        state = "already current" if before == result["revision"] else f"upgraded from {before}"
    typer.echo(f"database {result['database']}: {state} (revision {result['revision']})")
    typer.echo(f"home     {result['home']}")


# ---------------------------------------------------------------------------- stories / log


@app.command()
def stories(
    ctx: typer.Context,
    replays: Annotated[bool, typer.Option("--replays", help="Also list replay scratch branches.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List stories with their branches and status.

    Example: codirector stories --json
    """
    data = _studio(ctx).stories(include_replays=replays)
    if as_json:
        _emit_json(data)
        return
    if not data:
        typer.echo("no stories yet — try `codirector demo` or `codirector run STORY_FILE --profile preview`")
        return
    from rich.table import Table

    table = Table("story", "title", "branch", "parent@fork", "events", "shots", "status")
    for s in data:
        for i, b in enumerate(s["branches"]):
            fork = f"{b['parent']}@{b['fork_position']}" if b["parent"] else ""
            table.add_row(s["id"] if i == 0 else "", s["title"] if i == 0 else "", b["name"], fork,
                          str(b["events"]), str(b["shots_completed"]), b["status"])
    _console().print(table)


@app.command()
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
    events = _studio(ctx).log(story, branch, types=types or None, shot=shot, limit=limit)
    if as_json:
        _emit_json([e.summary() for e in events])
        return
    from rich.table import Table

    table = Table("pos", "branch", "shot", "type", "summary")
    for e in events:
        table.add_row(str(e.position), e.branch, "" if e.shot is None else str(e.shot), e.type, _short(e.payload))
    _console().print(table)


def _short(payload: dict[str, Any], width: int = 90) -> str:
    parts = []
    for k, v in payload.items():
        if v in (None, [], {}, ""):
            continue
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        if isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v):
            text = v[:10] + "…"
        parts.append(f"{k}={text}")
    line = " ".join(parts)
    return line if len(line) <= width else line[: width - 1] + "…"


# ---------------------------------------------------------------------------- memory / history


@app.command()
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
    bank = _studio(ctx).memory(story, branch, at_shot=at_shot, at_position=at_position)
    if as_json:
        _emit_json({"story": story, "branch": branch, "position": bank.position,
                    "entities": [e.to_dict() for e in bank], "anomalies": bank.anomalies})
        return
    from rich.table import Table

    table = Table("entity", "kind", "base_entity", "origin", "shot", "views", "description",
                  title=f"{story}/{branch} memory at position {bank.position}")
    for e in bank:
        table.add_row(e.name, e.kind, e.base_entity or "", e.origin, "" if e.shot is None else str(e.shot),
                      str(len(e.views)), e.description if len(e.description) < 60 else e.description[:59] + "…")
    _console().print(table)
    for a in bank.anomalies:
        typer.secho(f"anomaly: {a}", fg=typer.colors.YELLOW, err=True)


@app.command()
def history(
    ctx: typer.Context,
    story: Annotated[str, typer.Argument(help="Story id.")],
    entity: Annotated[str, typer.Argument(help="Entity name, e.g. Mia_red_scarf.")],
    branch: BranchOpt = "main",
    as_json: JsonOpt = False,
) -> None:
    """An entity's lineage (base_entity chain, derived states, views) and every event touching it.

    Example: codirector history lighthouse Mia_red_scarf
    """
    data = _studio(ctx).history(story, entity, branch)
    if as_json:
        _emit_json(data)
        return
    con = _console()
    ent = data["entity"]
    con.print(f"[bold]{ent['name']}[/bold] ({ent['kind']}, origin {ent['origin']}, registered at shot "
              f"{ent['registered']['shot']}, position {ent['registered']['position']})")
    con.print(f"  {ent['description']}")
    con.print("lineage: " + " → ".join(data["lineage"]["chain"])
              + (f"   derived: {', '.join(data['lineage']['descendants'])}" if data["lineage"]["descendants"] else ""))
    for member in data["lineage"]["entities"]:
        for v in member["views"]:
            frame = "" if v["frame_index"] is None else f" frame {v['frame_index']}"
            con.print(f"  view of {member['name']}: {v['kind']} from shot {v['shot']}{frame} "
                      f"(blob {v['blob'][:10]}…, position {v['position']})")
    from rich.table import Table

    table = Table("pos", "shot", "event", "role", "detail")
    for e in data["events"]:
        table.add_row(str(e["position"]), "" if e["shot"] is None else str(e["shot"]), e["type"], e["role"],
                      _short(e["detail"], 70))
    con.print(table)
    if data["used_as_reference_in_shots"]:
        con.print("used as a reference in shots: " + ", ".join(map(str, data["used_as_reference_in_shots"])))


# ---------------------------------------------------------------------------- runs


class _RichProgress:
    """Shot bar plus the current step (keyframe round, model call, analysis) and how long it has taken."""

    def __init__(self) -> None:
        import time

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
        from rich.text import Text

        class StepElapsed(ProgressColumn):
            def render(self, task: Any) -> Text:
                started = task.fields.get("since")
                if not started or task.finished:
                    return Text("")
                seconds = time.monotonic() - started
                return Text(f"({seconds:.0f} s)" if seconds >= 2 else "", style="dim")

        self._clock = time.monotonic
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[step]}"), StepElapsed(), transient=False, console=_console_err(),
        )
        self._task: Any = None

    def __enter__(self) -> _RichProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def begin(self, story: str, branch: str, total: int) -> None:
        self._label = f"{story}/{branch}"
        self._task = None

    def shot(self, shot: int, total: int, prompt: str) -> None:
        if self._task is None:
            self._task = self._progress.add_task("shots", total=total, completed=shot - 1, step="", since=None)
        label = getattr(self, "_label", "")
        self._progress.update(self._task, description=f"{label} shot {shot}/{total}", step=prompt[:50],
                              since=self._clock())

    def step(self, what: str) -> None:
        if self._task is not None:
            self._progress.update(self._task, step=what[:60], since=self._clock())

    def done(self, shot: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=shot, step="done")


@contextmanager
def _progress(*, quiet: bool) -> Iterator[_RichProgress | None]:
    """Progress bars on stderr, or nothing at all (``--json`` keeps stdout and stderr clean)."""
    if quiet:
        yield None
        return
    with _RichProgress() as progress:
        yield progress


def _console_err() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _report_run(result: Any, as_json: bool) -> None:
    if as_json:
        _emit_json(result.to_json())
        return
    if hasattr(result, "best_branch"):  # a director run (resume of a brief)
        _report_direction(result)
        return
    for note in result.notes:
        typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
    c = result.calls
    typer.echo(f"{result.story_id}/{result.branch}: {'complete' if result.completed else 'stopped'} at position "
               f"{result.head} ({result.written} events written, {result.matched} matched from the log; model calls: "
               f"{c.live} made, {c.matched + c.reused} answered by the recording)")
    typer.echo(f"next: codirector memory {result.story_id} --branch {result.branch}   |   "
               f"codirector export {result.story_id} --branch {result.branch} -o {result.story_id}.mp4")


@app.command()
def run(
    ctx: typer.Context,
    story_file: Annotated[str | None, typer.Argument(help="Story file (YAML or JSON). Example: "
                                                     "examples/stories/lighthouse.yaml")] = None,
    profile: Annotated[str | None, typer.Option("--profile", "-p", help="preview (offline), openai, or local.")] = None,
    config: Annotated[str | None, typer.Option("--config", "-c", help="TOML config overriding the profile.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Story seed (default: the file's `seed`).")] = None,
    max_rounds: Annotated[int | None, typer.Option("--max-rounds", help="Keyframe rounds K (default 3).")] = None,
    story_id: Annotated[str | None, typer.Option("--story-id", help="Id for the new story (default: "
                                                 "the file name).")] = None,
    story: Annotated[str | None, typer.Option("--story", help="With --branch: the story whose branch "
                                              "to run.")] = None,
    branch: Annotated[str | None, typer.Option("--branch", "-b", help="With --story: run this branch "
                                               "from its fork.")] = None,
    no_memory: Annotated[bool, typer.Option("--no-memory", help="Ablation: independent shots, no entity "
                                            "memory.")] = False,
    no_synergy: Annotated[bool, typer.Option("--no-synergy", help="Ablation: no analyzer (keeps pre-keyframe "
                                             "memory updates).")] = False,
    no_refine: Annotated[bool, typer.Option("--no-refine", help="Ablation: never rewrite prompts.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a story file through the loop, or (with --story and --branch) run a branch from its fork.

    Examples: codirector run examples/stories/lighthouse.yaml --profile preview
              codirector run --story lighthouse --branch storm
    """
    studio = _studio(ctx)
    with _progress(quiet=as_json) as progress:
        if story is not None or branch is not None:
            if story is None or branch is None or story_file is not None:
                raise typer.BadParameter("to run a branch give --story STORY --branch NAME and no story file")
            result = studio.run_branch(story, branch, progress=progress)
        else:
            if story_file is None:
                raise typer.BadParameter("give a story file, e.g. examples/stories/lighthouse.yaml")
            result = studio.run(story_file, profile=profile, config=config, seed=seed, max_rounds=max_rounds,
                                story_id=story_id, no_memory=no_memory, no_synergy=no_synergy, no_refine=no_refine,
                                progress=progress)
    _report_run(result, as_json)


@app.command()
def resume(
    ctx: typer.Context,
    story: Annotated[str, typer.Argument(help="Story id.")],
    branch: BranchOpt = "main",
    as_json: JsonOpt = False,
) -> None:
    """Continue an interrupted run from its last event. Recorded model calls are never made again.

    Example: codirector resume lighthouse
    """
    studio = _studio(ctx)
    with _progress(quiet=as_json) as progress:
        result = studio.resume(story, branch, progress=progress)
    _report_run(result, as_json)


@app.command()
def export(
    ctx: typer.Context,
    story: Annotated[str, typer.Argument(help="Story id.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output MP4 path. Example: -o lighthouse.mp4")],
    branch: BranchOpt = "main",
    as_json: JsonOpt = False,
) -> None:
    """Assemble the branch's clips, in shot order, into one MP4.

    Example: codirector export lighthouse -o lighthouse.mp4
    """
    result = _studio(ctx).export(story, out, branch)
    if as_json:
        _emit_json(result)
        return
    shots = len(result["shots"])
    partial = "" if result["complete"] else f" (the branch has {shots} of {result['planned_shots']} shots)"
    typer.echo(f"wrote {result['path']}: {len(result['shots'])} shots, {result['frames']} frames at "
               f"{result['fps']:g} fps{partial}")


# ---------------------------------------------------------------------------- branch / replay / diff / audit


@app.command()
def branch(
    ctx: typer.Context,
    story: Annotated[str, typer.Argument(help="Story id.")],
    from_shot: Annotated[int, typer.Option("--from-shot", help="First shot the new branch generates anew.")],
    name: Annotated[str, typer.Option("--name", help="Name of the new branch.")],
    parent: Annotated[str, typer.Option("--branch", "-b", help="Branch to fork (default main).")] = "main",
    sets: Annotated[list[str] | None, typer.Option("--set", help="Override a prompt: shots.N.keyframe=TEXT or "
                                                   "shots.N.motion=TEXT (repeatable).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fork a branch just before a shot, optionally with new prompts; shots before it are shared, not copied.

    Example: codirector branch lighthouse --from-shot 5 --name storm --set "shots.5.keyframe=Mia and Tom in a storm"
             then: codirector run --story lighthouse --branch storm
    """
    overrides: dict[str, str] = {}
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set {item!r}: expected shots.N.keyframe=TEXT")
        overrides[key.strip()] = value
    result = _studio(ctx).branch(story, from_shot=from_shot, name=name, parent=parent, overrides=overrides)
    if as_json:
        _emit_json(result)
        return
    typer.echo(f"created {story}/{name} from {parent} at position {result['fork_position']} (before shot {from_shot})"
               + (f" with {len(overrides)} override(s)" if overrides else ""))
    typer.echo(f"next: codirector run --story {story} --branch {name}")


@app.command()
def replay(
    ctx: typer.Context,
    story: Annotated[str, typer.Argument(help="Story id.")],
    branch: BranchOpt = "main",
    as_json: JsonOpt = False,
) -> None:
    """Re-execute a branch with the current code against its recording (no model is called) and compare.

    Exit 0 when identical, 9 when the replay diverges. Example: codirector replay lighthouse
    """
    report = _studio(ctx).replay(story, branch)
    if as_json:
        _emit_json(report.to_json())
    else:
        for note in report.notes:
            typer.secho(f"note: {note}", fg=typer.colors.YELLOW)
        if report.identical:
            typer.secho(f"identical: {report.events_compared} events compared, {report.model_calls} model calls "
                        f"made ({report.seconds:.2f} s; scratch branch {report.scratch_branch})",
                        fg=typer.colors.GREEN)
        else:
            d = report.divergence or {}
            typer.secho(f"DIVERGES at position {d.get('position')} (shot {d.get('shot')}): the recording has "
                        f"{d.get('expected_type')}, the replay produced {d.get('replayed_type')}", fg=typer.colors.RED)
            if d.get("message"):
                typer.echo(f"  {d['message']}")
            for line in d.get("changes", [])[:60]:
                typer.echo(f"  {line}")
    if not report.identical:
        raise typer.Exit(9)


@app.command()
def diff(
    ctx: typer.Context,
    story: Annotated[str, typer.Argument(help="Story id.")],
    a: Annotated[str, typer.Argument(help="First branch.")],
    b: Annotated[str, typer.Argument(help="Second branch.")],
    as_json: JsonOpt = False,
) -> None:
    """Where two branches part, and how their shots and memory differ.

    Example: codirector diff lighthouse main storm
    """
    data = _studio(ctx).diff(story, a, b)
    if as_json:
        _emit_json(data)
        return
    typer.echo(f"{a} and {b} share positions 1..{data['parted_at_position']}; first differing shot: "
               f"{data['first_differing_shot'] or 'none'}")
    from rich.table import Table

    table = Table("shot", "same", f"{a}: keyframe prompt", f"{b}: keyframe prompt")
    for s in data["shots"]:
        pa, pb = (s[a] or {}).get("keyframe_prompt") or "", (s[b] or {}).get("keyframe_prompt") or ""
        table.add_row(str(s["shot"]), "yes" if s["same"] else "NO", pa[:60], pb[:60])
    _console().print(table)
    m = data["memory"]
    only_a, only_b = ", ".join(m["only_in_a"]) or "-", ", ".join(m["only_in_b"]) or "-"
    changed = ", ".join(c["name"] for c in m["changed"]) or "-"
    typer.echo(f"memory only in {a}: {only_a}; only in {b}: {only_b}; changed: {changed}")


@app.command()
def audit(
    ctx: typer.Context,
    story: Annotated[str, typer.Argument(help="Story id.")],
    branch: BranchOpt = "main",
    html_out: Annotated[str | None, typer.Option("--html", help="Also write a self-contained HTML report "
                                                 "here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every continuity decision, per shot, with its evidence (retrieval, rounds, memory updates, prompts).

    Example: codirector audit lighthouse --html lighthouse-audit.html
    """
    data = _studio(ctx).audit(story, branch, html=html_out)
    if as_json:
        _emit_json(data)
        return
    con = _console()
    con.print(f"[bold]{data['title']}[/bold] ({story}/{branch}): {len(data['shots'])} of {data['planned_shots']} shots")
    for note in data["notes"]:
        con.print(f"[yellow]note:[/yellow] {note}")
    for s in data["shots"]:
        sel = s.get("selected") or {}
        decisions = " ".join(f"r{r['round']}:{r['decision'] or '-'}" for r in s["rounds"])
        refs = ", ".join(x["entity"] for r in s["retrievals"][-1:] for x in r["references"])
        con.print(f"shot {s['shot']}: rounds ({decisions}) -> round {sel.get('round')} ({sel.get('how')}); "
                  f"references: {refs or '-'}; updates: {', '.join(u['entity'] for u in s['memory_updates']) or '-'}"
                  + (f"; [red]{len(s['rejected'])} rejected answers[/red]" if s["rejected"] else ""))
    if data.get("html"):
        con.print(f"wrote {data['html']}")


# ---------------------------------------------------------------------------- Co-Director, eval, bench


def _report_direction(result: Any) -> None:
    data = result.to_json()
    for note in data["notes"]:
        typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
    from rich.table import Table

    table = Table("pull", "branch", "strategy", "narrative", "aesthetic", "execution", "efficacy s/n/a", "rank")
    ranks = {r["branch"]: r for r in data["ranking"]}
    for p in data["pulls"]:
        arms, eff = p.get("arms", {}), p.get("efficacy") or {}
        rank = ranks.get(p.get("branch"), {})
        effs = "/".join(f"{eff[d]:.0f}" if d in eff else "-" for d in ("strategy", "narrative_mode", "aesthetic"))
        table.add_row(str(p.get("iteration")), p.get("branch", ""), arms.get("strategy", ""),
                      arms.get("narrative_mode", ""), arms.get("aesthetic", ""),
                      "" if p.get("execution") is None else f"{p['execution']:.0f}", effs,
                      f"{rank['rank']} ({rank['score']:.1f})" if rank else "")
    _console().print(table)
    if data["best_branch"]:
        typer.echo(f"best: {data['best_branch']}   next: codirector audit {data['story']} --branch "
                   f"{data['best_branch']}   |   codirector export {data['story']} --branch {data['best_branch']} "
                   f"-o {data['story']}.mp4")


@app.command()
def direct(
    ctx: typer.Context,
    brief: Annotated[str, typer.Argument(help="Brief file (YAML). Example: examples/briefs/dewline_serum.yaml")],
    iterations: Annotated[int, typer.Option("--iterations", "-n", help="Bandit pulls (branches).")] = 4,
    profile: Annotated[str | None, typer.Option("--profile", "-p", help="preview (offline), openai, local.")] = None,
    config: Annotated[str | None, typer.Option("--config", "-c", help="TOML config overriding the profile.")] = None,
    c: Annotated[float, typer.Option("--c", help="UCB exploration constant (rewards are 0-100).")] = 50.0,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed (default: the brief's).")] = None,
    story_id: Annotated[str | None, typer.Option("--story-id", help="Id for the story (default: file name).")] = None,
    policy: Annotated[str, typer.Option("--policy", help="ucb or epsilon (epsilon-greedy).")] = "ucb",
    as_json: JsonOpt = False,
) -> None:
    """Co-Director: explore creative directions for an ad brief with a bandit, one story branch per pull.

    Each pull picks a strategy, narrative mode and aesthetic, writes a storyline, runs the loop on
    its own branch and is judged; the best branch is marked.
    Example: codirector direct examples/briefs/dewline_serum.yaml --profile preview --iterations 4
    """
    studio = _studio(ctx)
    with _progress(quiet=as_json) as progress:
        result = studio.direct(brief, iterations=iterations, profile=profile, config=config, c=c, seed=seed,
                               story_id=story_id, policy=policy, progress=progress)
    if as_json:
        _emit_json(result.to_json())
    else:
        _report_direction(result)


@app.command(name="eval")
def eval_(
    ctx: typer.Context,
    story: Annotated[str, typer.Argument(help="Story id.")],
    branch: BranchOpt = "main",
    profile: Annotated[str | None, typer.Option("--profile", "-p", help="Judge with this profile's VLM.")] = None,
    config: Annotated[str | None, typer.Option("--config", "-c", help="TOML config for the judges.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Judge a finished branch (the paper's shot and story judges) and measure cross-shot consistency.

    Example: codirector eval lighthouse --branch storm
    """
    data = _studio(ctx).evaluate(story, branch, profile=profile, config=config)
    if as_json:
        _emit_json(data)
        return
    for note in data.get("notes", []):
        typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"{story}/{branch}: shot overall adherence {data.get('shot_overall')}")
    sj = data.get("story_judge") or {}
    if sj:
        typer.echo("story: " + ", ".join(f"{k} {sj[k]}" for k in ("plot_completeness", "character_consistency",
                                                                  "narrative_flow", "overall") if k in sj))
        typer.echo(f"strongest: {sj.get('strongest_aspect')}\nweakest: {sj.get('weakest_aspect')}")
    cons = data.get("consistency") or {}
    if cons:
        typer.echo("consistency: " + ", ".join(f"{k} {v}" for k, v in cons.items()
                                               if isinstance(v, int | float) and not isinstance(v, bool)))


@app.command()
def bench(
    ctx: typer.Context,
    stories_dir: Annotated[str, typer.Argument(help="Folder of story files. Example: examples/stories")],
    methods: Annotated[str, typer.Option("--methods", help="Comma-separated: full, no-memory, no-synergy, "
                                         "no-refine.")] = "full,no-memory,no-synergy,no-refine",
    profile: Annotated[str | None, typer.Option("--profile", "-p", help="Backends to run with.")] = None,
    config: Annotated[str | None, typer.Option("--config", "-c", help="TOML config.")] = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Folder for bench.md, bench.csv, "
                                            "bench.json.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run and judge every story under every method; print the paper's Table 1/2 layout.

    Example: codirector bench examples/stories --methods full,no-memory,no-synergy,no-refine --out bench-results
    """
    from codirector.engine.evaluation.bench import render_markdown

    studio = _studio(ctx)
    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    with _progress(quiet=as_json) as progress:
        result = studio.bench(stories_dir, methods=chosen, profile=profile, config=config, out_dir=out,
                              progress=progress)
    if as_json:
        _emit_json(result.to_json())
        return
    typer.echo(render_markdown(result))  # the table carries its notes
    for kind, path in result.files.items():
        typer.echo(f"wrote {kind}: {path}")


# ---------------------------------------------------------------------------- demo / backends


@app.command()
def demo(
    ctx: typer.Context,
    out: Annotated[str, typer.Option("--out", "-o", help="Folder for the outputs.")] = "codirector-demo",
    as_json: JsonOpt = False,
) -> None:
    """The offline showcase (about half a minute): run an 8-shot story, branch it, replay it, write the results.

    Writes an MP4 per branch, the HTML audit, keyframe contact sheets and the entity lineage.
    Example: codirector demo --out codirector-demo
    """
    studio = _studio(ctx)
    with _progress(quiet=as_json) as progress:
        summary = studio.demo(out, progress=progress)
    if as_json:
        _emit_json(summary)
        return
    _print_demo(summary, ctx.ensure_object(dict).get("home"))


def _print_demo(s: dict[str, Any], home: str | None) -> None:
    con = _console()
    sid = s["story"]
    h = f"--home {home} " if home else ""
    b = s["branch"]
    con.print(f"\n[bold]codirector demo[/bold]: the 8-shot story [bold]{sid}[/bold], fully offline (preview profile)")
    con.print(f"  main: {s['shots']} shots, {s['events']} events, {s['model_calls']['main']} model calls recorded")
    con.print(f"  memory: {len(s['entities'])} entities ({', '.join(s['entities'])})")
    for line in s["lineage"]:
        con.print(f"  lineage: {line}")
    con.print(f"  branch {b['name']}: forked before shot {b['from_shot']} (shares positions "
              f"1..{b['shared_positions']}), differs from shot {b['first_differing_shot']} on; "
              f"{s['model_calls'][b['name']]} new calls, none for the shared shots")
    r = s["replay"]
    con.print(f"  replay of main: {'identical' if r['identical'] else 'DIVERGED'}, {r['events_compared']} events "
              f"compared, {r['model_calls']} model calls")
    for note in dict.fromkeys(s["notes"]):
        con.print(f"  [yellow]note:[/yellow] {note}")
    con.print(f"\nwrote {s['output_dir']}/: " + ", ".join(Path(p).name for p in s["files"].values()))
    con.print(f"took {s['seconds']['total']:.1f} s\n\n[bold]Next[/bold]")
    for cmd, why in [
        (f"codirector {h}history {sid} Mia_red_scarf",
         "when Mia got the scarf, from which frame, which shots reused it"),
        (f"codirector {h}memory {sid} --at-shot 5", "memory as shot 5's keyframe saw it"),
        (f"codirector {h}audit {sid} --branch {b['name']}", "every continuity decision of the branch"),
        (f"codirector {h}branch {sid} --from-shot 7 --name night --set \"shots.7.keyframe=Tom lights the lamp "
         "at midnight\"", "try another storyline from shot 7"),
        ("codirector run my-story.yaml --profile openai", "real models: see README, 'Real models'"),
    ]:
        con.print(f"  {cmd}\n      [dim]{why}[/dim]")


@app.command()
def backends(
    ctx: typer.Context,
    profile: Annotated[str | None, typer.Option("--profile", "-p", help="Mark and check this profile's "
                                                "backends.")] = None,
    config: Annotated[str | None, typer.Option("--config", "-c", help="Check with this config's options.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List registered model backends, what each needs, and whether it can run here.

    Example: codirector backends --profile openai
    """
    rows = _studio(ctx).backends(profile=profile, config=config)
    if as_json:
        _emit_json(rows)
        return
    from rich.table import Table

    table = Table("kind", "backend", "usable here", "needs", "what it is")
    for r in rows:
        mark = "*" if r["selected"] else ""
        table.add_row(r["kind"], r["name"] + mark, ("yes: " if r["usable"] else "no: ") + r["status"], r["needs"],
                      r["summary"])
    _console().print(table)
    if profile or config:
        typer.echo("* = used by the selected profile/config")


# ---------------------------------------------------------------------------- verify / reindex


@app.command()
def verify(
    ctx: typer.Context,
    story: Annotated[str | None, typer.Argument(help="Only this story (default: all).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the hash chain, every referenced blob and the vector index. Exit 5 on damage.

    Example: codirector verify lighthouse
    """
    report = _studio(ctx).verify(story)
    if as_json:
        _emit_json(report.to_json())
    else:
        typer.echo(f"checked {report.stories} stories, {report.branches} branches, {report.events} events, "
                   f"{report.blobs} blobs, {report.vectors} vectors")
        for p in report.problems:
            typer.secho(f"DAMAGED {p.line()}", fg=typer.colors.RED)
        if report.ok:
            typer.secho("ok: the log, blobs and vector index are intact", fg=typer.colors.GREEN)
    if not report.ok:
        raise typer.Exit(5)


@app.command()
def reindex(
    ctx: typer.Context,
    story: Annotated[str | None, typer.Argument(help="Only this story (default: all).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild the FAISS vector index from the log (it is a projection; nothing is lost).

    Example: codirector reindex
    """
    result = _studio(ctx).reindex(story)
    if as_json:
        _emit_json(result)
        return
    for r in result:
        typer.echo(f"{r['story']}: {r['vectors']} vectors" + (f" of dimension {r['dim']}" if r["dim"] else ""))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
