"""The query half of the CLI: init, stories, log, memory, history, with and without --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codirector.cli import app
from codirector.engine.studio import Studio

runner = CliRunner()


@pytest.fixture
def home(lineage_home: Path) -> Path:
    return lineage_home


def cli(home: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--home", str(home), *args])
    return result.exit_code, result.output


def test_history_shows_lineage_and_every_touching_event(home: Path) -> None:
    code, out = cli(home, "history", "lighthouse", "Mia_red_scarf_back")
    assert code == 0, out
    assert "Mia → Mia_red_scarf → Mia_red_scarf_back" in out
    assert "video_frame from shot 3 frame 30" in out
    assert "video_frame from shot 2 frame 12" in out  # the base state's view, in the lineage

    code, out = cli(home, "history", "lighthouse", "Mia_red_scarf_back", "--json")
    data = json.loads(out)
    assert data["lineage"]["chain"] == ["Mia", "Mia_red_scarf", "Mia_red_scarf_back"]
    ent = data["entity"]
    assert (ent["origin"], ent["registered"]["shot"], ent["base_entity"]) == ("video_analyzer", 3, "Mia_red_scarf")
    assert ent["views"][0]["frame_index"] == 30 and ent["views"][0]["shot"] == 3
    roles = [(e["type"], e["role"], e["shot"]) for e in data["events"]]
    assert roles == [("EntityRegistered", "registered", 3), ("ViewAdded", "view_added", 3)]
    assert [m["name"] for m in data["lineage"]["entities"]] == ["Mia", "Mia_red_scarf", "Mia_red_scarf_back"]


def test_history_of_a_base_entity_lists_derivations_and_reuse(home: Path) -> None:
    data = json.loads(cli(home, "history", "lighthouse", "Mia_red_scarf", "--json")[1])
    roles = [(e["type"], e["role"], e["shot"]) for e in data["events"]]
    assert ("EntityRegistered", "registered", 2) in roles
    assert ("ViewAdded", "view_added", 2) in roles
    assert ("MemoryRetrieved", "retrieved", 4) in roles
    assert ("MemoryRetrieved", "reference", 4) in roles
    assert ("EntityRegistered", "derived", 3) in roles
    assert data["used_as_reference_in_shots"] == [4]
    assert data["lineage"]["descendants"] == ["Mia_red_scarf_back"]


def test_history_reads_only_its_event_types_and_answers_the_same(home: Path) -> None:
    """``Studio.history`` asks the store for ``history_event_types()`` only; for every entity, on every branch,
    the answer equals the history folded from the whole branch (so no mention or lineage link is lost)."""
    from codirector.engine.views.history import entity_history, history_event_types

    with Studio(home) as studio:
        for b in studio.store.story("lighthouse").branches:
            everything = studio.store.read("lighthouse", b.name)
            assert len(studio.store.read("lighthouse", b.name, types=history_event_types())) < len(everything)
            names = studio.memory("lighthouse", b.name).entities
            assert names
            for name in names:
                whole = entity_history(everything, name, story_id="lighthouse", branch=b.name)
                assert studio.history("lighthouse", name, b.name).to_json() == whole.to_json(), (b.name, name)


def test_unknown_names_get_suggestions(home: Path) -> None:
    code, out = cli(home, "history", "lighthouse", "Mia_red_scraf")
    assert code == 3 and "no entity 'Mia_red_scraf'" in out and "Mia_red_scarf" in out
    code, out = cli(home, "memory", "lighthous")
    assert code == 3 and "did you mean 'lighthouse'" in out
    code, out = cli(home, "log", "lighthouse", "--branch", "mian")
    assert code == 3 and "did you mean 'main'" in out
    code, out = cli(home, "log", "lighthouse", "--type", "EntityRegistred")
    assert code != 0 and "EntityRegistered" in out


def test_memory_and_log_json(home: Path) -> None:
    data = json.loads(cli(home, "memory", "lighthouse", "--at-shot", "1", "--json")[1])
    assert [e["name"] for e in data["entities"]] == ["Mia", "Tom"]
    events = json.loads(cli(home, "log", "lighthouse", "--type", "ViewAdded", "--json")[1])
    assert [e["payload"]["entity"] for e in events] == ["Mia", "Tom", "Mia_red_scarf", "Mia_red_scarf_back"]
    assert {"position", "branch", "type", "shot", "payload", "hash"} <= set(events[0])
    code, out = cli(home, "memory", "lighthouse")
    assert code == 0 and "Mia_red_scarf_back" in out


def test_stories_lists_branches(home: Path) -> None:
    Studio(home).store.create_branch("lighthouse", "alt", at_position=7)
    data = json.loads(cli(home, "stories", "--json")[1])
    assert data[0]["id"] == "lighthouse"
    assert [(b["name"], b["parent"], b["fork_position"]) for b in data[0]["branches"]] == [
        ("main", None, 0), ("alt", "main", 7)]
    code, out = cli(home, "stories")
    assert code == 0 and "main@7" in out


def test_missing_home_says_to_init(tmp_path: Path) -> None:
    code, out = cli(tmp_path / "nowhere", "stories")
    assert code == 6 and "codirector init" in out


def test_init_is_idempotent(tmp_path: Path) -> None:
    code, out = cli(tmp_path / "h", "init")
    assert code == 0 and "created" in out
    code, out = cli(tmp_path / "h", "init")
    assert code == 0 and "already current" in out
