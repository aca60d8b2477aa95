"""What every command module shares: option types, the Studio of this invocation, JSON and console output,
and the progress display. Nothing heavy is imported at module level (rich and the engine load on use)."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from codirector.engine.studio import Studio

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON (stable keys).")]
BranchOpt = Annotated[str, typer.Option("--branch", "-b", help="Branch to read. Example: --branch alt_ending")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="If another process is running this branch, wait for it "
                                       "instead of failing with BranchBusy.")]
StoryFormatOpt = Annotated[str | None, typer.Option("--format", help="Story layout: codirector, st-bench or "
                                                    "vistorybench (default: found from the content).")]
BudgetOpt = Annotated[float | None, typer.Option("--budget", help="Stop cleanly (exit 12) before a model call "
                                                "whose worst case would take spending past this many US dollars. "
                                                "Example: --budget 2.50")]
PricesOpt = Annotated[str | None, typer.Option("--prices", help="TOML file whose [prices.\"MODEL\"] tables override "
                                               "the built-in prices (e.g. the run's --config).")]


def studio_of(ctx: typer.Context) -> Studio:
    """The invocation's Studio, built from the global options on first use."""
    from codirector.engine.studio import Studio

    obj = ctx.ensure_object(dict)
    if "studio" not in obj:
        obj["studio"] = Studio(home=obj.get("home"), db=obj.get("db"), blobs=obj.get("blobs"), cache=obj.get("cache"))
    return obj["studio"]  # type: ignore[no-any-return]


def command(*words: object) -> str:
    """A command line to paste back into a shell: each word quoted where it must be (``shlex.quote``), so a
    story id or branch name with spaces, quotes or ``$`` comes back as the same argument."""
    return " ".join(shlex.quote(str(w)) for w in words)


def emit_json(value: Any) -> None:
    """A result's ``to_json()`` on stdout, and nothing else."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def console() -> Console:
    from rich.console import Console

    # Piped output (scripts, tests) gets a wide page so names and ids are never wrapped.
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 200)


def console_err() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def note(text: str) -> None:
    """A note for the user, on stderr (``--json`` output stays clean)."""
    typer.secho(f"note: {text}", fg=typer.colors.YELLOW, err=True)


def short(payload: dict[str, Any], width: int = 90) -> str:
    """A payload on one line: non-empty fields, digests cut to 10 characters, the line cut to ``width``."""
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


def wait_seconds(wait: bool) -> float | None:
    """``--wait``: wait for another runner's lease with no time limit; otherwise fail fast."""
    return float("inf") if wait else None


def remember_continue(ctx: typer.Context | None, hint: str) -> None:
    """The command that continues this invocation's work, for the message of a Ctrl-C (``cli.py`` prints it)."""
    if ctx is not None:
        ctx.ensure_object(dict)["continue"] = hint


class _Begun:
    """Implements the engine's optional ``Progress.begin``: notes which branch is being run, so that Ctrl-C
    can say the exact command that continues it (``director``: the brief's, whose ``resume`` continues all)."""

    def __init__(self, ctx: typer.Context | None, director: bool) -> None:
        self._ctx = ctx
        self._director = director

    def begin(self, story: str, branch: str, total: int) -> None:
        from codirector.engine.jobs import continue_command

        remember_continue(self._ctx, continue_command(story, "main" if self._director else branch))

    def shot(self, shot: int, total: int, prompt: str) -> None:
        pass

    def step(self, what: str) -> None:
        pass

    def done(self, shot: int) -> None:
        pass


class RichProgress(_Begun):
    """Shot bar plus the current step (keyframe round, model call, analysis) and how long it has taken.

    Implements the engine's ``Progress`` protocol (and its optional ``begin``)."""

    def __init__(self, ctx: typer.Context | None = None, director: bool = False) -> None:
        super().__init__(ctx, director)
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
            TextColumn("{task.fields[step]}"), StepElapsed(), transient=False, console=console_err(),
        )
        self._task: Any = None
        self._label = ""

    def __enter__(self) -> RichProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def begin(self, story: str, branch: str, total: int) -> None:
        super().begin(story, branch, total)
        self._label = f"{story}/{branch}"
        self._task = None

    def shot(self, shot: int, total: int, prompt: str) -> None:
        if self._task is None:
            self._task = self._progress.add_task("shots", total=total, completed=shot - 1, step="", since=None)
        self._progress.update(self._task, description=f"{self._label} shot {shot}/{total}", step=prompt[:50],
                              since=self._clock())

    def step(self, what: str) -> None:
        if self._task is not None:
            self._progress.update(self._task, step=what[:60], since=self._clock())

    def done(self, shot: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=shot, step="done")


@contextmanager
def progress(*, quiet: bool, ctx: typer.Context | None = None, director: bool = False) -> Iterator[_Begun | None]:
    """Progress bars on stderr, or nothing at all (``--json`` keeps stdout and stderr clean). With ``ctx``,
    the branch being run is noted for the message of a Ctrl-C (``remember_continue``)."""
    if quiet:
        yield None if ctx is None else _Begun(ctx, director)
        return
    with RichProgress(ctx, director) as shown:
        yield shown
