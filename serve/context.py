"""What the studio's routes share: the ``StudioApp`` context, its templates, and small page helpers.

Its own module so that the routes in ``serve.app`` and in ``serve.actions`` both take the context
without importing each other (``serve.app`` registers ``serve.actions``' routes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi.responses import HTMLResponse
from jinja2 import Environment

from codirector.engine.studio import Studio
from codirector.engine.views.templating import add_folder
from codirector.errors import CodirectorError, InputError, NotFound, StateConflict
from codirector.serve import live
from codirector.serve.jobs import Runner
from codirector.serve.media import Thumbnails
from codirector.serve.security import LIMITS, Limits

HERE = Path(str(resources.files("codirector.serve")))
STATIC = {"studio.css": "text/css; charset=utf-8", "studio.js": "text/javascript; charset=utf-8"}
CSP = ("default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self' 'unsafe-inline'; "
       "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
                "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY"}


def url(path: str, **params: Any) -> str:
    """``path?k=v&...`` with the parameters that are not None, URL-encoded."""
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{path}?{query}" if query else path


def usd(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:.4f}" if value < 100 else f"${value:,.0f}"


def templates() -> Environment:
    """The one Jinja2 environment (``engine.views.templating``): the studio's folder added to its loader, and
    the studio's page helpers to its globals (the same values each time: safe to ask once per app)."""
    env = add_folder(HERE / "templates")
    from codirector.engine.views.describe import brief_entity

    env.globals.update(url=url, usd=usd, thumb=lambda d, w=320: f"/thumb/{d}?w={w}", blob=lambda d: f"/blob/{d}",
                       MAIN="main", described=brief_entity)
    return env


def status_code(e: CodirectorError) -> int:
    if isinstance(e, NotFound):
        return 404
    if isinstance(e, InputError):
        return 400
    if isinstance(e, StateConflict):
        return 409
    return 500


@dataclass
class StudioApp:
    """What the routes share: the Studio pages read through, a factory of Studios for runs, the runner."""

    studio: Studio
    make_studio: Callable[[], Studio]
    runner: Runner
    env: Environment = field(default_factory=templates)
    thumbs: Thumbnails | None = None
    stopping: bool = False
    static: dict[str, bytes] = field(default_factory=dict)
    limits: Limits = LIMITS
    streams: live.Slots = field(default_factory=lambda: live.Slots(LIMITS.streams_per_client))

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(jobs=self.runner.jobs(), **context)
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

    def error(self, e: CodirectorError) -> HTMLResponse:
        return self.render("error.html", status_code(e), message=e.message, hint=e.hint, kind=type(e).__name__)


__all__ = ["HERE", "PAGE_HEADERS", "STATIC", "StudioApp", "status_code", "templates", "url", "usd"]
