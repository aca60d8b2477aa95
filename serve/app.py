"""The studio's web app: ``create_app(studio)`` builds the FastAPI application behind ``codirector serve``.

    GET  /                         stories and briefs, each with its branch tree, status and cost (live)
    GET  /story?id=S               a story's main timeline, or a brief's director view
    GET  /timeline?story=S&branch=B[&page=N]   the shot timeline (live while it runs)
    GET  /shot?story=S&branch=B&shot=N         one shot: retrieval, rounds, clip; "branch from here"
    GET  /memory?story=S&branch=B[&shot=N|&position=P]   the memory scrubber, lineage drawn
    GET  /entity?story=S&branch=B&name=E       an entity's history
    GET  /compare?story=S&a=A&b=B              two branches side by side from their fork
    GET  /director?story=S                     a brief's rounds, rewards, UCB scores, ranking, chart
    GET  /live, /live/branch?story=S&branch=B  server-sent events read from the log
    GET  /blob/DIGEST, /thumb/DIGEST?w=W       media by validated digest; small JPEG thumbnails
    POST /action/branch|run|replay|verify|export   the Studio calls the CLI makes (``serve.actions``)

Invariants:
- The app holds no state of its own: every page is a query of the log through ``Studio``, and
  every action is the Studio call the matching CLI command makes. (Two caches, both keyed by what
  never changes, so never stale: thumbnails by blob digest, and a branch's spend by its head
  position and hash, ``serve.pages.SpendByHead``.)
- Story ids and branch names travel in query strings and form fields, never in the path, and
  the only path parameter is a blob digest checked against ``[0-9a-f]{64}``: no request names a
  file. Static files come from a fixed list shipped in the package.
- ``serve.security.Guard`` sees every request first (Host, token, Origin, body size and time), so a
  refused request reaches neither the log nor the blob store. Every number in a query is parsed
  by ``serve.security.whole`` (1 to 9 ASCII digits), so none can overflow or pass as a digit it is not.
- Live streams are capped per client address (``Limits.streams_per_client``; 429 beyond).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from codirector.engine.studio import Studio
from codirector.errors import CodirectorError
from codirector.serve import actions, director_page, live, memory_page, pages
from codirector.serve.context import HERE, STATIC, StudioApp, url
from codirector.serve.jobs import Runner
from codirector.serve.media import IMMUTABLE, Thumbnails, blob_bytes, byte_range, media_type, valid_digest
from codirector.serve.security import LIMITS, AccessPolicy, Guard, Limits, whole

if TYPE_CHECKING:
    from codirector.engine.jobs import Submitter

def create_app(studio: Studio, *, policy: AccessPolicy | None = None, runner: Runner | None = None,
               make_studio: Callable[[], Studio] | None = None, pool: Submitter | None = None,
               limits: Limits = LIMITS) -> FastAPI:
    """The studio over ``studio``'s home. ``policy`` defaults to a loopback studio without a token;
    ``codirector serve`` passes ``AccessPolicy.for_bind(host, token)``. ``pool``: runs started from
    the page go to its workers (``serve --workers/--ray``) instead of this server's threads. ``limits``
    also set the server's (``serve.server.StudioServer`` reads them from the app)."""
    if make_studio is None:
        home = studio.home

        def make_studio() -> Studio:
            return Studio(home=home.root, db=home.db_url, blobs=home.blobs, cache=home.cache)

    _ = studio.workspace  # open it now (or fail with the `codirector init` hint) rather than on the first request
    ctx = StudioApp(studio, make_studio, runner or Runner(make_studio, pool=pool), limits=limits,
                    streams=live.Slots(limits.streams_per_client))
    ctx.thumbs = Thumbnails(studio.blobs)
    ctx.static = {name: (HERE / "static" / name).read_bytes() for name in STATIC}
    app = FastAPI(title="codirector studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.studio_app = ctx
    app.add_middleware(Guard, policy=policy or AccessPolicy.for_bind("127.0.0.1", None), limits=limits)

    @app.exception_handler(CodirectorError)
    async def _codirector_error(request: Request, e: CodirectorError) -> Response:
        return ctx.error(e)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, e: RequestValidationError) -> Response:
        wrong = "; ".join(f"{'.'.join(str(x) for x in err.get('loc', ())[1:])}: {err.get('msg')}"
                          for err in e.errors())
        return ctx.render("error.html", 400, message=f"bad request: {wrong}", hint="check the link", kind="400")

    _pages(app, ctx)
    _media(app, ctx)
    actions.register(app, ctx)
    return app


def _pages(app: FastAPI, ctx: StudioApp) -> None:
    s = ctx.studio

    @app.get("/", response_class=HTMLResponse)
    def stories() -> Response:
        return ctx.render("stories.html", stories=pages.stories_page(s))

    @app.get("/story")
    def story(id: str) -> Response:
        kind = pages.find_story(s, id).kind
        target = url("/director", story=id) if kind == "brief" else url("/timeline", story=id, branch="main")
        return RedirectResponse(target, status_code=303)

    @app.get("/timeline", response_class=HTMLResponse)
    def timeline(story: str, branch: str = "main", page: str | None = None) -> Response:
        number = None if page is None else whole("page", page)
        if branch == "main" and pages.find_story(s, story).kind == "brief":
            return RedirectResponse(url("/director", story=story), status_code=303)
        return ctx.render("timeline.html", t=pages.timeline_page(s, story, branch, number))

    @app.get("/shot", response_class=HTMLResponse)
    def shot(story: str, shot: str, branch: str = "main") -> Response:
        return ctx.render("shot.html", p=pages.shot_page(s, story, branch, whole("shot", shot)))

    @app.get("/memory", response_class=HTMLResponse)
    def memory(story: str, branch: str = "main", shot: str | None = None, position: str | None = None) -> Response:
        at_shot = None if shot is None else whole("shot", shot)
        at_position = None if position is None else whole("position", position)
        return ctx.render("memory.html", m=memory_page.memory_page(s, story, branch, shot=at_shot,
                                                                   position=at_position))

    @app.get("/entity", response_class=HTMLResponse)
    def entity(story: str, name: str, branch: str = "main") -> Response:
        return ctx.render("entity.html", p=memory_page.entity_page(s, story, branch, name))

    @app.get("/compare", response_class=HTMLResponse)
    def compare(story: str, a: str | None = None, b: str | None = None) -> Response:
        row = pages.find_story(s, story)
        names = [x.name for x in row.branches]
        a = a or "main"
        b = b or next((n for n in names if n != a), a)
        return ctx.render("compare.html", c=director_page.compare_page(s, story, a, b), names=names)

    @app.get("/director", response_class=HTMLResponse)
    def director(story: str) -> Response:
        return ctx.render("director.html", d=director_page.director_page(s, story))

    def too_many_streams() -> Response:
        n = ctx.streams.per_client
        return Response(f"429: this client has {n} live streams open, the most it may; close a studio tab "
                        "(or reload this page later)\n", status_code=429, media_type="text/plain",
                        headers={"Retry-After": "10", "Cache-Control": "no-store"})

    @app.get("/live")
    async def live_home(request: Request) -> Response:
        client = request.client.host if request.client else "-"
        if not ctx.streams.take(client):
            return too_many_streams()
        events = live.stream(lambda: live.home_progress(s), disconnected=request.is_disconnected,
                             stopping=lambda: ctx.stopping,
                             encode=lambda rows: {"branches": len(rows), "running": sum(1 for r in rows if r[3])})
        return live.SlotStream(events, ctx.streams, client)

    @app.get("/live/branch")
    async def live_branch(request: Request, story: str, branch: str = "main") -> Response:
        await run_in_threadpool(s.store.branch, story, branch)  # BranchNotFound -> 404 before streaming
        client = request.client.host if request.client else "-"
        if not ctx.streams.take(client):
            return too_many_streams()
        events = live.stream(lambda: live.branch_progress(s, story, branch), disconnected=request.is_disconnected,
                             finished=lambda p: p.completed and not p.running, stopping=lambda: ctx.stopping,
                             encode=lambda p: p.to_json())
        return live.SlotStream(events, ctx.streams, client)


def _media(app: FastAPI, ctx: StudioApp) -> None:
    blobs = ctx.studio.blobs
    missing = Response("no such blob\n", status_code=404, media_type="text/plain")

    @app.get("/blob/{digest}")
    def blob(digest: str, request: Request) -> Response:
        data = blob_bytes(blobs, digest) if valid_digest(digest) else None
        kind = None if data is None else media_type(data)
        if data is None or kind is None:
            return missing
        headers = {"Cache-Control": IMMUTABLE, "ETag": f'"{digest}"', "Accept-Ranges": "bytes",
                   "X-Content-Type-Options": "nosniff"}
        span = byte_range(request.headers.get("range"), len(data))
        if span is None:
            return Response(data, media_type=kind, headers=headers)
        start, end = span
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return Response(data[start:end + 1], status_code=206, media_type=kind, headers=headers)

    @app.get("/thumb/{digest}")
    def thumb(digest: str, w: str = "320") -> Response:
        width = whole("w", w)
        made = ctx.thumbs.get(digest, width) if valid_digest(digest) and ctx.thumbs is not None else None
        if made is None:
            return missing
        return Response(made, media_type="image/jpeg", headers={"Cache-Control": IMMUTABLE, "ETag": f'"{digest}-{w}"',
                                                                "X-Content-Type-Options": "nosniff"})

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            return Response("not found\n", status_code=404, media_type="text/plain")
        return Response(ctx.static[name], media_type=STATIC[name], headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)


__all__ = ["StudioApp", "create_app", "url"]
