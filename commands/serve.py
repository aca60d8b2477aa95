"""``codirector serve``: the studio in the browser, over the same home as every other command.

Imports only typer at load time: FastAPI, uvicorn and Jinja2 (the ``serve`` extra) load when the
command runs, so ``codirector --help`` and the query commands never pay for them. Ray loads only
with ``--workers``/``--ray``: then runs started from the page are jobs on a Ray pool opened before
the server listens and closed when it stops (``serve.jobs.Runner``); without them, threads here.
"""

from __future__ import annotations

import secrets
from typing import Annotated

import typer

from codirector.commands.batch import GpusOpt, RayOpt, WorkersOpt
from codirector.commands.common import studio_of
from codirector.errors import ConfigError


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on. Anything but a loopback address "
                                      "needs a token: --token, or one generated and printed once in the address. "
                                      "Example: --host 0.0.0.0")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on. Example: --port 8766")] = 8765,
    token: Annotated[str | None, typer.Option("--token", envvar="CODIRECTOR_SERVE_TOKEN",
                                              help="Require this token on every request (the printed address "
                                                   "carries it once; the browser then keeps it in a cookie).")] = None,
    workers: WorkersOpt = None,
    ray: RayOpt = None,
    gpus_per_worker: GpusOpt = 0.0,
) -> None:
    """The studio in the browser: stories, shot timelines, memory at any shot, branch from a shot and watch it run.

    Every page is a query of the log and every button the same call the CLI makes; runs started
    from the page go on in the server's own worker threads, or as jobs on Ray workers with
    --workers/--ray (as `batch` runs them), and the page follows them live.
    Examples: codirector serve   (then open http://127.0.0.1:8765/)
              codirector serve --workers 2 --gpus-per-worker 1
    """
    try:
        from codirector.serve.app import create_app
        from codirector.serve.security import AccessPolicy, is_loopback
        from codirector.serve.server import StudioServer, address, bind
    except ImportError as e:
        raise ConfigError(f"`codirector serve` needs the web packages of the serve extra ({e.name} is missing)",
                          hint='pip install "codirector[serve]"') from e
    from codirector.engine.scale import check_ray_options, open_ray_pool, wants_ray

    check_ray_options(workers, gpus_per_worker)  # before anything starts
    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(32)  # as Jupyter does: shown once, in the address printed below
    policy = AccessPolicy.for_bind(host, token)
    studio = studio_of(ctx)
    _ = studio.workspace  # no home: the `codirector init` hint before a socket or Ray is opened
    sock = bind(host, port)
    pool = None
    try:
        if wants_ray(workers, ray):
            pool = open_ray_pool(studio.spec, workers=workers, address=ray, gpus_per_worker=gpus_per_worker)
        server = StudioServer(create_app(studio, policy=policy, pool=pool), sock)
    except BaseException:
        if pool is not None:
            pool.close()
        sock.close()
        raise
    runner = server.app.state.studio_app.runner
    url = address(host, server.port) + (f"?token={token}" if token else "")
    typer.echo(f"codirector studio for {studio.home.root}: {url}")
    typer.echo(f"  every page is read from the log; {runner.where}. Ctrl-C stops.")
    try:
        server.run()  # ends by shutting the runner down: a Ray pool's workers stop with the server
    except KeyboardInterrupt:
        pass
    typer.echo("studio stopped; runs it started that did not finish can be continued with `codirector resume`")
