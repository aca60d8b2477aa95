"""``codirector serve``: the studio in the browser, over the same home as every other command.

Imports only typer at load time: FastAPI, uvicorn and Jinja2 (the ``serve`` extra) load when the
command runs, so ``codirector --help`` and the query commands never pay for them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from codirector.commands.common import studio_of
from codirector.errors import ConfigError


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on. Anything but a loopback address "
                                      "needs --token. Example: --host 0.0.0.0 --token $TOKEN")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on. Example: --port 8766")] = 8765,
    token: Annotated[str | None, typer.Option("--token", envvar="CODIRECTOR_SERVE_TOKEN",
                                              help="Require this token on every request (the printed address "
                                                   "carries it once; the browser then keeps it in a cookie).")] = None,
) -> None:
    """The studio in the browser: stories, shot timelines, memory at any shot, branch from a shot and watch it run.

    Every page is a query of the log and every button the same call the CLI makes; runs started
    from the page go on in the server's worker and the page follows them live.
    Example: codirector serve   (then open http://127.0.0.1:8765/)
    """
    try:
        from codirector.serve.app import create_app
        from codirector.serve.security import AccessPolicy
        from codirector.serve.server import StudioServer, bind
    except ImportError as e:
        raise ConfigError(f"`codirector serve` needs the web packages of the serve extra ({e.name} is missing)",
                          hint='pip install "codirector[serve]"') from e
    policy = AccessPolicy.for_bind(host, token)
    studio = studio_of(ctx)
    app = create_app(studio, policy=policy)
    server = StudioServer(app, bind(host, port))
    shown = f"[{host}]" if ":" in host else host
    address = f"http://{shown}:{server.port}/" + (f"?token={token}" if token else "")
    typer.echo(f"codirector studio for {studio.home.root}: {address}")
    typer.echo("  every page is read from the log; runs started here keep going in this process. Ctrl-C stops.")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    typer.echo("studio stopped; runs it started that did not finish can be continued with `codirector resume`")
