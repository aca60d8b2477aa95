"""The studio in the browser (``codirector serve``; needs the ``serve`` extra: FastAPI, uvicorn).

    app.py            the app factory and the read-only pages (server-rendered Jinja2 templates, through the
                      one environment of ``engine.views.templating``)
    actions.py        the POST actions: branch from a shot, run, replay, verify, export
    pages.py          page models: stories with their branch trees, a branch's timeline, one shot
    memory_page.py    the memory scrubber (memory at any shot or position, lineage drawn), entity history
    director_page.py  a brief's director view; two branches compared from their fork
    live.py           server-sent events read from the log
    jobs.py           background runs (a worker thread per run, the branch lease against double runs)
    media.py          blobs by validated digest, thumbnails
    security.py       Host, token and Origin checks before any route runs
    server.py         uvicorn on a socket bound here, in the foreground or in a thread
    templates/, static/   the pages and a little vanilla JS and CSS, shipped in the package (no build step)

Invariants: the studio holds no state of its own (every page is a query of the log through
``Studio``, every action the Studio call the CLI makes); nothing outside this package imports
FastAPI or uvicorn, and Jinja2 is loaded only where something is rendered (``engine.views.templating``), so
``codirector --help`` and the query commands load none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from codirector.serve.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from codirector.serve.app import create_app

        return create_app
    raise AttributeError(name)
