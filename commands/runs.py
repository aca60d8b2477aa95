"""Making and re-making videos: ``run``, ``resume``, ``export``, ``branch``, ``replay``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from codirector.commands.common import (
    BranchOpt,
    BudgetOpt,
    JsonOpt,
    PricesOpt,
    StoryFormatOpt,
    WaitOpt,
    command,
    emit_json,
    note,
    progress,
    remember_continue,
    studio_of,
    wait_seconds,
)

if TYPE_CHECKING:
    from codirector.engine.director.direction import DirectorResult
    from codirector.engine.loop.runs import RunResult


def report_run(result: RunResult | DirectorResult, as_json: bool) -> None:
    """What a run (or, for a brief, a director run) did, or its ``--json``."""
    from codirector.engine.director.direction import DirectorResult
    from codirector.engine.views.export import video_name

    if as_json:
        emit_json(result.to_json())
        return
    if isinstance(result, DirectorResult):  # `resume` of an advertising brief continues its director
        from codirector.commands.director import report_direction

        report_direction(result)
        return
    for text in result.notes:
        note(text)
    c = result.calls
    sid, b = result.story_id, result.branch
    typer.echo(f"{sid}/{b}: {'complete' if result.completed else 'stopped'} at position "
               f"{result.head} ({result.written} events written, {result.matched} matched from the log; model calls "
               f"of this run: {c.live} made, {c.matched + c.reused} served by the recording)")
    unpriced = f"; unpriced: {', '.join(sorted(c.unpriced))}" if c.unpriced else ""
    typer.echo(f"cost: ${c.spent_usd:.4f} spent; the recording saved ${c.saved_usd:.4f}{unpriced}   "
               f"({command('codirector', 'cost', sid, '--branch', b)})")
    typer.echo(f"next: {command('codirector', 'memory', sid, '--branch', b)}   |   "
               f"{command('codirector', 'export', sid, '--branch', b, '-o', video_name(sid, b))}")


def run(
    ctx: typer.Context,
    story_file: Annotated[str | None, typer.Argument(help="Story file (YAML or JSON; ours, ST-Bench, or a "
                                                     "ViStoryBench story folder). Example: "
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
    story_format: StoryFormatOpt = None,
    wait: WaitOpt = False,
    budget: BudgetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a story file through the loop, or (with --story and --branch) run a branch from its fork.

    Examples: codirector run examples/stories/lighthouse.yaml --profile preview
              codirector run --story lighthouse --branch storm
    """
    studio = studio_of(ctx)
    with progress(quiet=as_json, ctx=ctx) as shown:
        if story is not None or branch is not None:
            if story is None or branch is None or story_file is not None:
                raise typer.BadParameter("to run a branch give --story STORY --branch NAME and no story file")
            result = studio.run_branch(story, branch, progress=shown, wait=wait_seconds(wait), budget=budget,
                                       prices=config)
        else:
            if story_file is None:
                raise typer.BadParameter("give a story file, e.g. examples/stories/lighthouse.yaml")
            result = studio.run(story_file, profile=profile, config=config, seed=seed, max_rounds=max_rounds,
                                story_id=story_id, no_memory=no_memory, no_synergy=no_synergy, no_refine=no_refine,
                                progress=shown, story_format=story_format, wait=wait_seconds(wait), budget=budget)
    report_run(result, as_json)


def resume(
    ctx: typer.Context,
    story: Annotated[str, typer.Argument(help="Story id.")],
    branch: BranchOpt = "main",
    wait: WaitOpt = False,
    budget: BudgetOpt = None,
    prices: PricesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Continue an interrupted run from its last event. Recorded model calls are never made again.

    Example: codirector resume lighthouse --budget 5
    """
    from codirector.engine.jobs import continue_command

    studio = studio_of(ctx)
    remember_continue(ctx, continue_command(story, branch))
    with progress(quiet=as_json, ctx=ctx, director=branch == "main") as shown:
        result = studio.resume(story, branch, progress=shown, wait=wait_seconds(wait), budget=budget, prices=prices)
    report_run(result, as_json)


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
    video = studio_of(ctx).export(story, out, branch)
    if as_json:
        emit_json(video.to_json())
        return
    shots = len(video.shots)
    partial = "" if video.complete else f" (the branch has {shots} of {video.planned_shots} shots)"
    typer.echo(f"wrote {video.path}: {shots} shots, {video.frames} frames at {video.fps:g} fps{partial}")


def branch(
    ctx: typer.Context,
    story: Annotated[str, typer.Argument(help="Story id.")],
    from_shot: Annotated[int, typer.Option("--from-shot", help="First shot the new branch generates anew.")],
    name: Annotated[str, typer.Option("--name", help="Name of the new branch.")],
    parent: Annotated[str, typer.Option("--branch", "-b", help="Branch to fork (default main).")] = "main",
    sets: Annotated[list[str] | None, typer.Option("--set", help="Override a shot: shots.N.keyframe=TEXT, "
                                                   "shots.N.motion=TEXT, shots.N.uses=[A, B] or shots.N.evolves="
                                                   "[{name: A_kilt, base_entity: A, description: ...}] (YAML, "
                                                   "checked as a story file is; repeatable).")] = None,
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
            raise typer.BadParameter(f"--set {item!r}: expected shots.N.keyframe=TEXT (or motion, uses, evolves)")
        overrides[key.strip()] = value
    created = studio_of(ctx).branch(story, from_shot=from_shot, name=name, parent=parent, overrides=overrides)
    if as_json:
        emit_json(created.to_json())
        return
    typer.echo(f"created {story}/{name} from {parent} at position {created.fork_position} (before shot {from_shot})"
               + (f" with {len(overrides)} override(s)" if overrides else ""))
    typer.echo(f"next: {command('codirector', 'run', '--story', story, '--branch', name)}")


def replay(
    ctx: typer.Context,
    story: Annotated[str, typer.Argument(help="Story id.")],
    branch: BranchOpt = "main",
    as_json: JsonOpt = False,
) -> None:
    """Re-execute a branch with the current code against its recording (no model is called) and compare.

    Exit 0 when identical, 9 when the replay diverges. Example: codirector replay lighthouse
    """
    report = studio_of(ctx).replay(story, branch)
    if as_json:
        emit_json(report.to_json())
    else:
        for text in report.notes:
            typer.secho(f"note: {text}", fg=typer.colors.YELLOW)
        d = report.divergence
        if d is None:
            typer.secho(f"identical: {report.events_compared} events compared, {report.model_calls} model calls "
                        f"made ({report.seconds:.2f} s; scratch branch {report.scratch_branch})",
                        fg=typer.colors.GREEN)
        else:
            typer.secho(f"DIVERGES at position {d.position} (shot {d.shot}): the recording has "
                        f"{d.expected_type}, the replay produced {d.replayed_type}", fg=typer.colors.RED)
            if d.message:
                typer.echo(f"  {d.message}")
            for line in d.changes[:60]:
                typer.echo(f"  {line}")
    if not report.identical:
        raise typer.Exit(9)
