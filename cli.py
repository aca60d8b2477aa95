"""The ``codirector`` command line: parse, call ``Studio``, print. No logic of its own.

This module is the Typer app, its global options and the one place errors become exit codes;
the commands live in ``codirector.commands`` (one module per job) and are registered below in
the order ``--help`` lists them. Every query takes ``--json`` (the result's ``to_json()``, stable
keys, nothing else on stdout). Errors from the tree in ``codirector.errors`` become one line of
cause, one line of fix, and the error's exit code; a file the system refuses (a missing folder, no
permission, a full disk) and Ctrl-C get the same treatment, so no traceback reaches the user for
anything codirector can name. Heavy modules are imported inside commands, so ``codirector --help``
and queries start fast.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from codirector.commands import director, queries, runs, views
from codirector.errors import CodirectorError

INTERRUPTED = 130  # the shell's code for a process stopped by SIGINT
FILE_ERROR = 1


class _Group(TyperGroup):
    """Turns errors into a short message and an exit code, for every command."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CodirectorError as e:
            _print_error(e.message, e.hint)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted; the log holds everything up to the last complete step — "
                       "`codirector resume STORY` continues", err=True)
            raise typer.Exit(INTERRUPTED) from None
        except OSError as e:  # the system refused a file or folder the user named (or the home)
            where = f"{e.filename}" if e.filename else "a file or folder could not be read or written"
            _print_error(f"{where}: {e.strerror or e}",
                         "check that the path exists, that you may write there, and that the disk has room")
            raise typer.Exit(FILE_ERROR) from None


def _print_error(message: str, hint: str | None) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    if hint:
        typer.echo(f"  fix: {hint}", err=True)


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
                     "home's blobs/. Example: --blobs s3://bucket/prefix (credentials from AWS_* variables)"),
    ] = None,
    cache: Annotated[
        str | None,
        typer.Option("--cache", envvar="CODIRECTOR_CACHE", help="This machine's vector-index cache folder "
                     "(rebuilt from the log when missing); default the home. Example: --cache /tmp/cd-cache"),
    ] = None,
) -> None:
    ctx.ensure_object(dict).update(home=home, db=db, blobs=blobs, cache=cache)


# In the order `codirector --help` lists them.
for _name, _command in [
    ("init", queries.init), ("stories", queries.stories), ("log", queries.log), ("memory", queries.memory),
    ("history", views.history), ("run", runs.run), ("resume", runs.resume), ("export", runs.export),
    ("branch", runs.branch), ("replay", runs.replay), ("diff", views.diff), ("audit", views.audit),
    ("cost", views.cost),
    ("direct", director.direct), ("eval", director.eval_), ("bench", director.bench), ("demo", director.demo),
    ("backends", queries.backends), ("verify", queries.verify), ("reindex", queries.reindex),
]:
    app.command(name=_name)(_command)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
