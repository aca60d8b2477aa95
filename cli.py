"""The ``codirector`` command line: parse, call ``Studio``, print. No logic of its own.

This module is the Typer app, its global options and the one place errors become exit codes;
the commands live in ``codirector.commands`` (one module per job) and are registered below in
the order ``--help`` lists them. Every query takes ``--json`` (the result's ``to_json()``, stable
keys, nothing else on stdout). Errors from the tree in ``codirector.errors`` become one line of
cause, one line of fix, and the error's exit code; a file the system refuses (a missing folder, no
permission, a full disk) and Ctrl-C get the same treatment, so no traceback reaches the user for
anything codirector can name. Heavy modules are imported inside commands, so ``codirector --help``
and queries start fast.

Output: third-party log lines and warnings (huggingface_hub, transformers, diffusers, open_clip's
root-logger errors, Python warnings) stay off the terminal; codirector's own warnings are shown as
``warning: ...``. ``--verbose`` shows all of them, and the traceback behind an error.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from codirector.commands import batch, director, gc, queries, runs, serve, views
from codirector.errors import CodirectorError

INTERRUPTED = 130  # the shell's code for a process stopped by SIGINT
TERMINATED = 143  # ... and by SIGTERM
FILE_ERROR = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, like Ctrl-C: ``with`` blocks end (the branch lease is
    released, an open transaction rolls back) and the command exits 143 instead of being cut off."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


class _Group(TyperGroup):
    """Turns errors into a short message and an exit code, for every command."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CodirectorError as e:
            _print_detail(ctx, e)
            _print_error(e.message, e.hint)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt as e:
            stopped = "terminated" if isinstance(e, Terminated) else "interrupted"
            typer.echo(f"{stopped}; the log holds everything up to the last complete step — "
                       f"{_continue_hint(ctx.obj or {})}", err=True)
            raise typer.Exit(TERMINATED if isinstance(e, Terminated) else INTERRUPTED) from None
        except OSError as e:  # the system refused a file or folder the user named (or the home)
            _print_detail(ctx, e)
            where = f"{e.filename}" if e.filename else "a file or folder could not be read or written"
            _print_error(f"{where}: {e.strerror or e}",
                         "check that the path exists, that you may write there, and that the disk has room")
            raise typer.Exit(FILE_ERROR) from None


def _continue_hint(obj: dict[str, Any]) -> str:
    """What continues the interrupted work: the command the running command noted (``commands.common.
    remember_continue``), with the ``--home`` it was given, or where to find the story when none was noted."""
    hint = obj.get("continue")
    if not hint:
        return "`codirector stories` lists the story, and `codirector resume STORY` continues it"
    if obj.get("home"):
        hint = hint.replace("codirector ", f"codirector --home {shlex.quote(str(obj['home']))} ", 1)
    return f"`{hint}` continues"


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"codirector {version('codirector')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            typer.echo("codirector (not installed: no version)")
        raise typer.Exit()


def _print_detail(ctx: Any, e: BaseException) -> None:
    """With ``--verbose``: the traceback behind an error (its causes included), before the message."""
    if (ctx.obj or {}).get("verbose"):
        typer.echo("".join(traceback.format_exception(e)).rstrip(), err=True)


class _Echo(logging.Handler):
    """Log records to the stderr of the moment (looked up per record, so a test runner's swap is followed)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            typer.echo(self.format(record), err=True)
        except Exception:
            self.handleError(record)


_LIBRARIES = ("huggingface_hub", "transformers", "diffusers")  # they log through handlers of their own
_QUIET_LIBRARIES = ("HF_HUB_VERBOSITY", "TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY")


def _configure_output(verbose: bool) -> None:
    """Third-party log lines and warnings off the terminal (``--verbose``: on); codirector's warnings shown."""
    own = logging.getLogger("codirector")
    echo = next((h for h in own.handlers if isinstance(h, _Echo)), None)
    if echo is None:
        echo = _Echo()
        own.addHandler(echo)
    root = logging.getLogger()
    if verbose:
        echo.setFormatter(logging.Formatter("%(levelname)s:%(name)s: %(message)s"))
        echo.setLevel(logging.INFO)
        own.setLevel(logging.INFO)
        own.propagate = False  # shown once, by ``echo``
        if not any(isinstance(h, _Echo) for h in root.handlers):
            root.addHandler(_Echo(logging.WARNING))
            root.handlers[-1].setFormatter(logging.Formatter("%(levelname)s:%(name)s: %(message)s"))
        for name in _LIBRARIES:
            if name in sys.modules:
                logging.getLogger(name).setLevel(logging.WARNING)
        return
    echo.setFormatter(logging.Formatter("warning: %(message)s"))
    echo.setLevel(logging.WARNING)
    own.setLevel(logging.NOTSET)
    own.propagate = True  # (an earlier --verbose call in this process turned it off)
    for handler in [h for h in root.handlers if isinstance(h, _Echo)]:
        root.removeHandler(handler)
    if not root.handlers:
        root.addHandler(logging.NullHandler())  # no implicit basicConfig, no last-resort printing of others' lines
    for variable in _QUIET_LIBRARIES:  # these libraries print through handlers of their own
        os.environ.setdefault(variable, "critical")
    for name in _LIBRARIES:
        if name in sys.modules:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    warnings.simplefilter("ignore")


def _print_error(message: str, hint: str | None) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    if hint:
        typer.echo(f"  fix: {hint}", err=True)


app = typer.Typer(
    cls=_Group,
    name="codirector",
    help=(
        "Turn a story into a coherent multi-shot video, with a queryable, replayable record of how.\n\n"
        "Start with `codirector demo` (offline, under a minute). Example session:\n\n"
        "  codirector init\n\n"
        "  codirector run examples/stories/lighthouse.yaml --profile preview\n\n"
        "  codirector history lighthouse Mia_red_scarf"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


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
    blobs: Annotated[
        str | None,
        typer.Option("--blobs", envvar="CODIRECTOR_BLOBS", help="Blob store: a folder or URL; default the "
                     "home's blobs/. Example: --blobs s3://bucket/prefix (credentials from AWS_* variables; "
                     "gs://bucket/prefix: GOOGLE_APPLICATION_CREDENTIALS or gcloud's login)"),
    ] = None,
    cache: Annotated[
        str | None,
        typer.Option("--cache", envvar="CODIRECTOR_CACHE", help="This machine's vector-index cache folder "
                     "(rebuilt from the log when missing); default the home. Example: --cache /tmp/cd-cache"),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Show the log lines and warnings of the libraries underneath "
                     "(model hub, diffusers, open_clip) and the traceback behind an error."),
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, expose_value=True,
                     help="Print the installed version and exit."),
    ] = False,
) -> None:
    _configure_output(verbose)
    ctx.ensure_object(dict).update(home=home, db=db, blobs=blobs, cache=cache, verbose=verbose)


# In the order `codirector --help` lists them.
_COMMANDS: list[tuple[str, Callable[..., Any]]] = [
    ("init", queries.init), ("stories", queries.stories), ("forget", queries.forget), ("log", queries.log),
    ("memory", queries.memory),
    ("history", views.history), ("run", runs.run), ("resume", runs.resume), ("export", runs.export),
    ("branch", runs.branch), ("replay", runs.replay), ("diff", views.diff), ("audit", views.audit),
    ("cost", views.cost),
    ("direct", director.direct), ("eval", director.eval_), ("bench", director.bench), ("batch", batch.batch),
    ("demo", director.demo),
    ("serve", serve.serve),
    ("backends", queries.backends), ("verify", queries.verify), ("reindex", queries.reindex), ("gc", gc.gc),
]
for _name, _command in _COMMANDS:
    app.command(name=_name)(_command)


def main() -> None:
    """Console-script entry point. SIGTERM (``kill``, a container or job scheduler stopping us) ends the
    command the way Ctrl-C does, so its lease is released at once instead of expiring after the TTL."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    app()


if __name__ == "__main__":
    main()
