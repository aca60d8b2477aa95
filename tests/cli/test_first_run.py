"""First run: `codirector demo`, --help everywhere, one-line errors with the fix, API == CLI."""

from __future__ import annotations

import json
import sqlite3
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.main import get_command
from typer.testing import CliRunner

from codirector import Studio
from codirector.cli import app
from codirector.generators.video_io import frame_count

from support import headless, tiny_preview_config, write_story

runner = CliRunner()


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.mark.slow
def test_demo_end_to_end_and_its_pages_in_a_browser(tmp_path: Path, browser: str) -> None:
    out = tmp_path / "codirector-demo"
    result = runner.invoke(app, ["--home", str(tmp_path / "home"), "demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "replay of main: identical" in text and "0 model calls" in text
    assert "lineage: Mia -> Mia_red_scarf (shot 4) -> Mia_red_scarf_back (shot 6)" in text  # the shots that show them
    assert "codirector --home" in text and "history lighthouse-demo Mia_red_scarf" in text
    assert "--profile openai" in text
    for name in ("main.mp4", "storm.mp4", "audit.html", "contact-main.png", "contact-storm.png", "lineage.svg"):
        assert (out / name).stat().st_size > 1000, name
    studio = Studio(tmp_path / "home")
    for branch in ("main", "storm"):
        clips = studio.log("lighthouse-demo", branch, types=["ShotCompleted"])
        assert frame_count(out / f"{branch}.mp4") == sum(c.payload["frames"] for c in clips) == 8 * 17

    # the audit report in a real browser: every shot, with its keyframe and decision
    shot = tmp_path / "audit.png"
    dom = Tags()
    dom.feed(headless((out / "audit.html").as_uri(), screenshot=shot))
    sections = [a for t, a in dom.tags if t == "section" and "shot" in (a.get("class") or "")]
    assert [int(a["data-shot"] or 0) for a in sections] == list(range(1, 9))
    keyframes = [a for t, a in dom.tags if t == "img" and "keyframe" in (a.get("class") or "")]
    assert len(keyframes) >= 8 and all((a.get("src") or "").startswith("data:image/") for a in keyframes)
    assert np.asarray(Image.open(shot).convert("RGB")).std() > 20

    # the lineage picture: each entity a node, base -> evolved as links
    shot = tmp_path / "lineage.png"
    dom = Tags()
    dom.feed(headless((out / "lineage.svg").as_uri(), screenshot=shot, size=(1300, 900)))
    nodes = {a["data-entity"] for t, a in dom.tags if t == "g" and a.get("class") == "entity"}
    assert nodes == {"Mia", "Tom", "bg_lighthouse_gallery", "Mia_red_scarf", "Mia_red_scarf_back"}
    links = {(a["data-from"], a["data-to"]) for t, a in dom.tags if t == "path" and a.get("class") == "link"}
    assert links == {("Mia", "Mia_red_scarf"), ("Mia_red_scarf", "Mia_red_scarf_back")}
    assert sum(1 for t, _ in dom.tags if t == "image") >= 5  # every node shows its views
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.std() > 20


def test_every_command_explains_itself_with_an_example() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "codirector demo" in result.output
    commands = get_command(app).commands  # type: ignore[attr-defined]
    assert {"init", "run", "resume", "stories", "log", "memory", "history", "branch", "replay", "diff", "audit",
            "verify", "reindex", "export", "demo", "backends"} <= set(commands)
    for name in commands:
        out = runner.invoke(app, [name, "--help"])
        assert out.exit_code == 0, name
        assert "Example" in out.output, f"`codirector {name} --help` has no example"


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(("error:", "  fix:"))]


def test_broken_story_file_gives_one_line_cause_and_fix(tmp_path: Path) -> None:
    story = tmp_path / "broken.yaml"
    story.write_text("title: T\nshots:\n  - keyframe: a\n")
    result = runner.invoke(app, ["--home", str(tmp_path / "h"), "run", str(story)])
    assert result.exit_code == 2
    lines = _error_lines(result.output)
    assert lines[0].startswith("error: ") and "shots[0].motion (shot 1): missing" in lines[0]
    assert lines[1].startswith("  fix: ")
    assert "Traceback" not in result.output


def test_missing_home_gives_the_fix(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--home", str(tmp_path / "nowhere"), "memory", "x"])
    assert result.exit_code == 6
    lines = _error_lines(result.output)
    assert "no codirector database" in lines[0] and "codirector init" in lines[1]


def test_locked_database_gives_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "h"
    cfg = tiny_preview_config(tmp_path)
    story = write_story(tmp_path / "pier.yaml", shots=1)
    assert runner.invoke(app, ["--home", str(home), "run", str(story), "--config", str(cfg)]).exit_code == 0
    monkeypatch.setenv("CODIRECTOR_BUSY_TIMEOUT", "0.3")
    holder = sqlite3.connect(home / "codirector.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process is writing and does not let go
    try:
        result = runner.invoke(app, ["--home", str(home), "branch", "pier", "--from-shot", "1", "--name", "x"])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 6
    lines = _error_lines(result.output)
    assert "is locked by another process" in lines[0] and "wait for the other codirector process" in lines[1]


def _normalised(studio: Studio, story: str) -> list[tuple]:  # type: ignore[type-arg]
    out = []
    for e in studio.log(story):
        p = dict(e.payload)
        p.pop("duration_ms", None)
        out.append((e.type, e.shot, json.dumps(p, sort_keys=True)))
    return out


def test_python_api_and_cli_give_the_same_results(tmp_path: Path) -> None:
    cfg = tiny_preview_config(tmp_path)
    story = write_story(tmp_path / "pier.yaml", shots=3)
    api = Studio(tmp_path / "api")
    api.run(story, config=cfg)
    cli_home = str(tmp_path / "cli")
    assert runner.invoke(app, ["--home", cli_home, "run", str(story), "--config", str(cfg)]).exit_code == 0
    cli = Studio(cli_home)
    assert _normalised(api, "pier") == _normalised(cli, "pier")

    def cli_json(*args: str) -> object:
        out = runner.invoke(app, ["--home", cli_home, *args, "--json"])
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)

    mem = cli_json("memory", "pier", "--at-shot", "2")
    assert mem["entities"] == [e.to_dict() for e in api.memory("pier", at_shot=2)]  # type: ignore[index]
    assert cli_json("history", "pier", "Ada_hat") == json.loads(json.dumps(api.history("pier", "Ada_hat").to_json()))
    audit_cli, audit_api = cli_json("audit", "pier"), api.audit("pier").to_json()
    assert _strip_times(audit_cli) == _strip_times(audit_api)  # model time per shot is a measurement
    api.branch("pier", from_shot=2, name="alt", overrides={"shots.2.keyframe": "Ada alone in a green hat"})
    cli_json("branch", "pier", "--from-shot", "2", "--name", "alt",
             "--set", "shots.2.keyframe=Ada alone in a green hat")
    api.run_branch("pier", "alt")
    cli_json("run", "--story", "pier", "--branch", "alt")
    assert _normalised(api, "pier") == _normalised(cli, "pier")
    assert cli_json("replay", "pier", "--branch", "alt")["identical"] is True  # type: ignore[index]
    assert api.replay("pier", "alt").identical
    assert cli_json("diff", "pier", "main", "alt") == api.diff("pier", "main", "alt").to_json()


def _strip_times(audit: object) -> object:
    data = json.loads(json.dumps(audit, default=str))
    for s in data["shots"]:
        s.pop("model_seconds", None)
    return data
