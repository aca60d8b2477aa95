"""The one Jinja2 environment: the audit report (``audit.html``), the entity lineage (``lineage.svg``) and the
studio's pages all render through ``environment()``.

Invariants:
- Autoescape is on for ``.html``, ``.htm``, ``.xml`` and ``.svg`` templates (and for templates from strings):
  a name, prompt or description from the log is always text in a page or picture, never markup.
- An undefined name is an error (``StrictUndefined``), never an empty string.
- Templates are looked up in this package's ``templates/`` folder first, then in each folder added with
  ``add_folder`` in the order added (the studio adds ``serve/templates``): the engine never imports the
  studio, the studio hands its folder to the engine's environment.
- jinja2 is imported by this module only, and this module only where something is rendered, so that
  commands which render nothing (``codirector stories``) do not load it.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).resolve().parent / "templates"
AUTOESCAPED = ("html", "htm", "xml", "svg")


def cut(text: str | None, n: int = 160) -> str:
    """``text`` in at most ``n`` characters, an ellipsis marking a cut; None as empty."""
    if text is None:
        return ""
    return text if len(text) <= n else text[: n - 1] + "…"


def text(value: Any) -> Any:
    """``value`` as page text, None as empty (Jinja would write ``None``)."""
    return "" if value is None else value


@functools.cache
def environment() -> Environment:
    """The environment (made once per process)."""
    env = Environment(loader=FileSystemLoader([TEMPLATES]),
                      autoescape=select_autoescape(AUTOESCAPED, default_for_string=True, default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(cut=cut, text=text)
    env.globals.update(isfinite=math.isfinite)
    return env


def add_folder(folder: str | os.PathLike[str]) -> Environment:
    """The environment, with ``folder`` searched after the folders already there (once, however often asked)."""
    env = environment()
    loader = env.loader
    assert isinstance(loader, FileSystemLoader)
    path = os.fspath(folder)
    if path not in loader.searchpath:
        loader.searchpath.append(path)
    return env


def render(name: str, **context: Any) -> str:
    """Template ``name`` rendered with ``context``."""
    return environment().get_template(name).render(**context)


__all__ = ["AUTOESCAPED", "TEMPLATES", "add_folder", "cut", "environment", "render", "text"]
