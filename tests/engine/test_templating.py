"""The one Jinja2 environment: the audit report, the lineage picture and the studio's pages come from it,
text from the log is escaped in HTML and in SVG, and a command that renders nothing does not load it."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from codirector.engine.views.templating import add_folder, environment, render

HOSTILE = "Mia <script>alert('x')</script> & \"Tom\""


@dataclass(frozen=True)
class View:
    x: int
    href: str
    where: str


@dataclass(frozen=True)
class Node:
    name: str
    x: int
    y: int
    colour: str
    origin: str
    views: tuple[View, ...]


@dataclass(frozen=True)
class Link:
    source: str
    target: str
    d: str


def test_the_lineage_svg_escapes_names_and_stays_well_formed() -> None:
    nodes = [Node(HOSTILE, 20, 60, "#e8f1ff", "character, cast", (View(30, "data:image/jpeg;base64,AA==", "ref"),)),
             Node("b'<", 400, 196, "#fff1e0", HOSTILE, ())]
    svg = render("lineage.svg", width=800, height=400, title=HOSTILE, node_w=300, node_h=118,
                 links=[Link(HOSTILE, "b'<", "M1,2 C3,4 5,6 7,8")], nodes=nodes)
    assert "<script>" not in svg
    root = ET.fromstring(svg)
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert [g.get("data-entity") for g in root.findall("s:g", ns)] == [HOSTILE, "b'<"]
    link = root.find("s:path[@class='link']", ns)
    assert link is not None and (link.get("data-from"), link.get("data-to")) == (HOSTILE, "b'<")
    assert root.findall("s:text", ns)[0].text == HOSTILE


def test_html_and_svg_are_autoescaped_and_undefined_names_are_errors() -> None:
    env = environment()
    assert env.autoescape("audit.html") and env.autoescape("lineage.svg")  # type: ignore[operator]
    with pytest.raises(Exception, match="undefined"):
        env.from_string("{{ nothing.here }}").render()
    assert env.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"


def test_the_studio_renders_through_the_same_environment(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from codirector.serve.context import HERE, templates

    env = templates()
    assert env is environment() and templates() is env
    assert env.loader is not None and env.loader.searchpath.count(str(HERE / "templates")) == 1  # type: ignore[attr-defined]
    for name in ("audit.html", "lineage.svg", "timeline.html", "memory.html"):
        env.get_template(name)
    extra = tmp_path / "more"
    extra.mkdir()
    (extra / "extra.html").write_text("{{ x }}")
    try:
        assert add_folder(extra) is env and env.get_template("extra.html").render(x="&") == "&amp;"
    finally:
        env.loader.searchpath.remove(str(extra))  # type: ignore[attr-defined]


def test_stories_loads_neither_jinja2_nor_pil(tmp_path: Path) -> None:
    code = ("import json, sys\nfrom typer.testing import CliRunner\nfrom codirector.cli import app\n"
            "for args in (['init'], ['stories']):\n"
            "    r = CliRunner().invoke(app, ['--home', sys.argv[1], *args])\n"
            "    assert r.exit_code == 0, r.output\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'jinja2', 'PIL'})))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "home")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
