"""``batch``: many stories and briefs at once, one job each, in this process or on Ray workers
(docs/architecture.md §10).

Also the options every command that can run on Ray shares (``--workers``, ``--ray``, ``--gpus-per-worker``).
Nothing here imports Ray: the engine does, and only when one of those options is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from codirector.commands.common import BudgetOpt, JsonOpt, StoryFormatOpt, console, emit_json, note, studio_of

if TYPE_CHECKING:
    from codirector.engine.jobs import JobResult
    from codirector.engine.scale.batch import JobProgress

WorkersOpt = Annotated[int | None, typer.Option("--workers", help="Run jobs on N Ray worker actors (a local Ray "
                                                "unless --ray). Needs pip install \"codirector[ray]\".")]
RayOpt = Annotated[str | None, typer.Option("--ray", help="Join this Ray cluster (e.g. auto, or "
                                            "ray://head:10001); several machines need --db postgresql://… and "
                                            "--blobs s3://….")]
GpusOpt = Annotated[float, typer.Option("--gpus-per-worker", help="GPUs each worker takes (0: one CPU each).")]
ConcurrencyOpt = Annotated[int | None, typer.Option(
    "--concurrency", help="Keep N stories in flight in this process (hosted models wait on the provider, not the "
    "CPU); each provider's max_in_flight still caps its jobs. Not with --workers/--ray.")]


def _line(row: JobResult) -> str:
    calls = f"{row.calls_made} calls made, {row.calls_recorded} from the recording"
    why = f": {row.error}" if row.error else ""
    return f"{row.story_id}/{row.branch}: {row.status} ({row.events} events, {calls}, {row.seconds:.1f} s on " \
           f"{row.worker}){why}"


def batch(
    ctx: typer.Context,
    paths: Annotated[list[str], typer.Argument(help="Story files, briefs, or folders of them. Example: "
                                               "examples/stories examples/briefs/dewline_serum.yaml")],
    profile: Annotated[str | None, typer.Option("--profile", "-p", help="preview (offline), openai, or local.")] = None,
    config: Annotated[str | None, typer.Option("--config", "-c", help="TOML config overriding the profile.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for every story (default: each file's).")] = None,
    max_rounds: Annotated[int | None, typer.Option("--max-rounds", help="Keyframe rounds K (default 3).")] = None,
    prefix: Annotated[str | None, typer.Option("--prefix", help="Namespace the story ids: PREFIX-<file name>.")] = None,
    workers: WorkersOpt = None,
    ray: RayOpt = None,
    gpus_per_worker: GpusOpt = 0.0,
    story_format: StoryFormatOpt = None,
    budget: BudgetOpt = None,
    as_json: JsonOpt = False,
    concurrency: ConcurrencyOpt = None,
) -> None:
    """Run every story and brief under the paths, one job per story (a brief runs as `direct`).

    Story ids come from the file names. Running the same batch again continues unfinished stories
    and skips finished ones. --budget caps each story.
    Examples: codirector batch examples/stories --profile preview
              codirector batch stories/ briefs/ --workers 4 --gpus-per-worker 1
              codirector batch campaign/ --config fal.toml --concurrency 16
    """
    studio = studio_of(ctx)

    def shown(row: JobResult) -> None:
        if not as_json:
            typer.echo(_line(row), err=True)

    def moved(step: JobProgress) -> None:  # each running story's shot and stage, read from the log as it grows
        typer.echo(step.line(), err=True)

    result = studio.batch(paths, profile=profile, config=config, seed=seed, max_rounds=max_rounds, prefix=prefix,
                          story_format=story_format, budget=budget, workers=workers, ray=ray,
                          gpus_per_worker=gpus_per_worker, on_result=shown, on_progress=None if as_json else moved,
                          concurrency=concurrency)
    if as_json:
        emit_json(result.to_json())
    else:
        from rich.table import Table

        table = Table("story", "branch", "status", "events", "calls made", "from recording", "worker", "seconds",
                      "cost")
        for r in result.rows:
            table.add_row(r.story_id, r.branch, r.status, str(r.events), str(r.calls_made), str(r.calls_recorded),
                          r.worker, f"{r.seconds:.1f}", result.cost.line(r.story_id))
        console().print(table)
        done = sum(r.ok for r in result.rows)
        where = "(nothing left to run: no workers started)" if result.pool == "none" else \
            f"on {result.workers} worker(s) ({result.pool})"
        typer.echo(f"{done} of {len(result.rows)} jobs finished in {result.seconds:.1f} s {where}; spent "
                   f"${result.cost.total_usd:.4f}" + (" + unpriced calls" if result.cost.unpriced else ""))
        for r in result.rows:
            if r.hint and not r.ok:
                note(f"{r.story_id}: {r.hint}")
    if not result.ok:
        raise typer.Exit(1)
