"""The studio's actions: each POST is the Studio call the matching CLI command makes.

    POST /action/branch   codirector branch S --from-shot N --name NEW --set ...   then run it in the background
    POST /action/run      codirector run --story S --branch B (or resume S)        in the background
    POST /action/replay   codirector replay S --branch B
    POST /action/verify   codirector verify S
    POST /action/export   codirector export S --branch B -o <a temporary file>     downloaded, then deleted

Invariants:
- Only a POST changes anything, and ``serve.security.Guard`` has checked its Origin (and token)
  and read its body, under ``Limits.max_body`` and within ``Limits.body_timeout_s``, before it gets
  here. A form names stories, branches and shots, never a file: the export's
  output is a temporary file the server picks and deletes once sent.
- Runs go to ``serve.jobs.Runner`` (a worker thread of this server, or a job on the Ray pool of
  ``serve --workers/--ray``; the branch lease either way); the page they redirect to follows them
  live from the log. Replay, verify and export answer when done, each on a Studio of
  its own, like a CLI invocation.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from codirector.errors import InvalidArgument
from codirector.serve import pages
from codirector.serve.context import StudioApp, url
from codirector.serve.security import new_branch_name, whole
from codirector.store.event_store import MAIN


async def form_of(request: Request) -> dict[str, str]:
    """The URL-encoded form of a POST (first value of each field); ``InvalidArgument`` if it is not one. Its
    body is the one ``Guard`` read (capped, in time), so this never waits on the client."""
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        raise InvalidArgument(f"expected a form (application/x-www-form-urlencoded), got {kind or 'no body'!r}")
    body = await request.body()
    out: dict[str, str] = {}
    for k, v in parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True):
        out.setdefault(k, v)
    return out


def need(form: dict[str, str], name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise InvalidArgument(f"the form has no {name!r}", hint=f"fill in {name}")
    return value


def need_int(form: dict[str, str], name: str) -> int:
    if name not in form:
        raise InvalidArgument(f"the form has no {name!r}", hint=f"fill in {name}")
    return whole(name, form[name])  # as sent: 1 to 9 digits, no spaces


def register(app: FastAPI, ctx: StudioApp) -> None:
    """Add the action routes to ``app``."""
    def timeline(story: str, branch: str) -> Response:
        return RedirectResponse(url("/timeline", story=story, branch=branch), status_code=303)

    @app.post("/action/branch")
    async def branch(request: Request) -> Response:
        form = await form_of(request)
        story, parent, name = need(form, "story"), need(form, "branch"), new_branch_name(need(form, "name"))
        shot = need_int(form, "shot")

        def fork() -> None:
            prompts = pages.branch_prompts(ctx.studio, story, parent, shot)
            overrides = pages.overrides_from_form(prompts, form)
            with ctx.make_studio() as studio:
                studio.branch(story, from_shot=shot, name=name, parent=parent, overrides=overrides)
                ctx.runner.submit(studio, story, name)

        await run_in_threadpool(fork)
        return timeline(story, name)

    @app.post("/action/run")
    async def run(request: Request) -> Response:
        form = await form_of(request)
        story, name = need(form, "story"), form.get("branch") or MAIN
        await run_in_threadpool(ctx.runner.submit, ctx.studio, story, name)
        return timeline(story, name)

    @app.post("/action/replay")
    async def replay(request: Request) -> Response:
        form = await form_of(request)
        story, name = need(form, "story"), form.get("branch") or MAIN

        def go() -> Response:
            with ctx.make_studio() as studio:
                report = studio.replay(story, name)
            return ctx.render("result.html", action="replay", story=story, branch=name, replay=report, verify=None)

        return await run_in_threadpool(go)

    @app.post("/action/verify")
    async def verify(request: Request) -> Response:
        form = await form_of(request)
        story = need(form, "story")

        def go() -> Response:
            with ctx.make_studio() as studio:
                report = studio.verify(story)
            return ctx.render("result.html", action="verify", story=story, branch=form.get("branch") or MAIN,
                              replay=None, verify=report)

        return await run_in_threadpool(go)

    @app.post("/action/export")
    async def export(request: Request) -> Response:
        form = await form_of(request)
        story, name = need(form, "story"), form.get("branch") or MAIN
        folder = Path(tempfile.mkdtemp(prefix="codirector-export-"))

        def go() -> Path:
            with ctx.make_studio() as studio:
                return Path(studio.export(story, folder / "export.mp4", name).path)

        try:
            path = await run_in_threadpool(go)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{story}-{name}")[:120]
        return FileResponse(path, media_type="video/mp4", filename=f"{safe}.mp4",
                            background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))


__all__ = ["form_of", "register"]
