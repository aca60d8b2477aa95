"""Old events through every query command: a schema-v1 ``EntityRegistered`` in a real store.

Version 1 of ``EntityRegistered`` named its base entity ``base`` and had neither ``kind`` nor
``origin``. The row is written the way an older codirector wrote it (canonical record, chained
hash, branch head moved) and never rewritten; every view must read it through the upcasters:
memory, history of the base and of the derived entity, audit as text, JSON and HTML, and verify.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from codirector.cli import app
from codirector.engine.studio import Studio
from codirector.events import (
    EntityRegistered,
    KeyframeSelected,
    MemoryRetrieved,
    Reference,
    ShotPlanned,
    ShotStarted,
    StoryCreated,
    ViewAdded,
    ViewSource,
)
from codirector.events.base import canonical_json, record_hash
from codirector.store.event_store import EventStore

from support import png_bytes

runner = CliRunner()
V1 = {"name": "Mia_red_scarf", "description": "Mia, now wearing a red scarf", "base": "Mia"}


def append_as_old_version(store: EventStore, story_id: str, *, type_: str, schema_version: int,
                          payload: dict[str, str], shot: int | None) -> int:
    """Append one row exactly as an older codirector wrote it: canonical record, chained hash."""
    head = store.branch(story_id)
    position = head.head_position + 1
    envelope = {"id": f"old-{position}", "story_id": story_id, "branch": "main", "position": position,
                "type": type_, "schema_version": schema_version, "payload": payload, "shot": shot,
                "recorded_at": "2025-01-01T00:00:00.000000Z", "prev_hash": head.head_hash, "causation_id": None}
    record = canonical_json(envelope)
    digest = record_hash(head.head_hash, record)
    with store.engine.begin() as conn:
        conn.execute(text("INSERT INTO events (story_id, branch, position, type, shot, record, hash) "
                          "VALUES (:s, 'main', :p, :t, :shot, :r, :h)"),
                     {"s": story_id, "p": position, "t": type_, "shot": shot, "r": record, "h": digest})
        conn.execute(text("UPDATE branches SET head_position = :p, head_hash = :h "
                          "WHERE story_id = :s AND name = 'main'"), {"p": position, "h": digest, "s": story_id})
    return position


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    studio = Studio(home)
    studio.init()
    store, blobs = studio.store, studio.blobs
    mia, scarf, keyframe = (blobs.put(png_bytes(c, mark=m)) for c, m in
                            (((200, 180, 160), 0), ((220, 20, 30), 12), ((10, 10, 10), 1)))
    store.create_story("pier", title="Ada at the pier", events=[StoryCreated(title="Ada at the pier", seed=3).at()])
    store.append("pier", "main", [
        ShotPlanned(keyframe_prompt="Mia on the pier", motion_prompt="slow pan", uses=["Mia"]).at(1),
        ShotPlanned(keyframe_prompt="Mia in her red scarf", motion_prompt="zoom in", uses=["Mia_red_scarf"]).at(2),
        ShotStarted(keyframe_prompt="Mia on the pier", motion_prompt="slow pan").at(1),
        EntityRegistered(name="Mia", kind="character", description="a young woman in a grey coat",
                         origin="cast").at(1),
        ViewAdded(entity="Mia", blob=mia, source=ViewSource(kind="cast_file")).at(1),
        KeyframeSelected(round=1, blob=keyframe, how="accepted", why="accepted in round 1").at(1),
    ], expected_position=1)
    append_as_old_version(store, "pier", type_="EntityRegistered", schema_version=1, payload=V1, shot=1)
    head = store.branch("pier").head_position
    store.append("pier", "main", [
        ViewAdded(entity="Mia_red_scarf", blob=scarf,
                  source=ViewSource(kind="video_frame", shot=1, frame_index=12)).at(1),
        ShotStarted(keyframe_prompt="Mia in her red scarf", motion_prompt="zoom in").at(2),
        MemoryRetrieved(round=1, query="Mia in her red scarf", retrieved_existing=["Mia_red_scarf"],
                        references=[Reference(entity="Mia_red_scarf", blob=scarf, view_position=head + 1)]).at(2),
    ], expected_position=head)
    stored = [e for e in store.read("pier") if e.type == "EntityRegistered"][-1]
    assert (stored.schema_version, stored.payload) == (1, V1)  # the row stays as it was written
    studio.close()
    return home


def cli(home: Path, *args: str) -> str:
    result = runner.invoke(app, ["--home", str(home), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_memory_shows_the_upcast_entity_with_its_base(home: Path) -> None:
    entities = {e["name"]: e for e in json.loads(cli(home, "memory", "pier", "--json"))["entities"]}
    scarf = entities["Mia_red_scarf"]
    assert (scarf["base_entity"], scarf["kind"], scarf["origin"]) == ("Mia", "other", "memory_controller")
    assert [v["frame_index"] for v in scarf["views"]] == [12]
    assert "Mia_red_scarf" in cli(home, "memory", "pier")


def test_history_of_the_base_and_of_the_derived_entity(home: Path) -> None:
    base = json.loads(cli(home, "history", "pier", "Mia", "--json"))
    assert base["lineage"]["derived"] == ["Mia_red_scarf"] and base["lineage"]["descendants"] == ["Mia_red_scarf"]
    assert ("EntityRegistered", "derived", {"entity": "Mia_red_scarf", "origin": "memory_controller"}) in [
        (e["type"], e["role"], e["detail"]) for e in base["events"]]
    assert "derived: Mia_red_scarf" in cli(home, "history", "pier", "Mia")

    derived = json.loads(cli(home, "history", "pier", "Mia_red_scarf", "--json"))
    assert derived["lineage"]["chain"] == ["Mia", "Mia_red_scarf"]
    assert derived["entity"]["base_entity"] == "Mia" and derived["entity"]["origin"] == "memory_controller"
    registered = next(e for e in derived["events"] if e["role"] == "registered")
    assert registered["detail"]["base_entity"] == "Mia" and registered["shot"] == 1
    assert derived["used_as_reference_in_shots"] == [2]
    assert "Mia → Mia_red_scarf" in cli(home, "history", "pier", "Mia_red_scarf")


def test_audit_as_text_json_and_html(home: Path, tmp_path: Path) -> None:
    out = cli(home, "audit", "pier")
    assert "Mia_red_scarf (from Mia)" in out  # the clip frame's update, with the entity it evolved from

    data = json.loads(cli(home, "audit", "pier", "--json"))
    shot1 = data["shots"][0]
    reg = next(r for r in shot1["registrations"] if r["name"] == "Mia_red_scarf")
    assert (reg["base_entity"], reg["origin"], reg["description"]) == ("Mia", "memory_controller", V1["description"])
    update = shot1["memory_updates"][0]
    assert (update["entity"], update["base_entity"], update["frame_index"]) == ("Mia_red_scarf", "Mia", 12)
    assert {e["name"]: e["base_entity"] for e in data["memory"]} == {"Mia": None, "Mia_red_scarf": "Mia"}

    page = tmp_path / "audit.html"
    assert str(page) in cli(home, "audit", "pier", "--html", str(page))
    html = page.read_text()
    assert "data-entity='Mia_red_scarf'><b>Mia_red_scarf</b> &larr; <b>Mia</b>" in html
    assert "(evolves from Mia)" in html


def test_verify_accepts_the_old_row(home: Path) -> None:
    out = cli(home, "verify", "pier")  # exit 0: the chain, its blobs and the vector index hold
    assert "ok: the log, blobs and vector index are intact" in out and "DAMAGED" not in out
    data = json.loads(cli(home, "verify", "pier", "--json"))
    assert data["ok"] is True and data["events"] == 11
