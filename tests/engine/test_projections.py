"""One dispatch style for projections, fed typed upcast events; run state kept current by the writer.

- ``Projection`` hands each handler the typed event after the upcasters ran (a schema-v1 row
  arrives as the current ``EntityRegistered``), and one class has one handler per projection.
- A running loop's ``RunState`` is the fold of what its writer wrote or matched: the listener
  ``RunContext`` puts on the writer applies every event, on a fresh run and on a resume alike.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from codirector.engine.loop.context import RunContext, RunSettings
from codirector.engine.recording.recorder import CallRecorder
from codirector.engine.recording.writer import RunWriter
from codirector.engine.studio import Studio
from codirector.engine.views.memory import MemoryBank, fold
from codirector.engine.views.projection import Projection
from codirector.engine.views.state import RunState, fold_run_state
from codirector.events import (
    EntityRegistered,
    RecordedEvent,
    ShotCompleted,
    ShotPlanned,
    ShotStarted,
    StoryCreated,
    VideoAnalyzed,
)
from codirector.events.base import GENESIS, canonical_json, from_record, record_hash


def v1_registration(position: int = 1) -> RecordedEvent:
    envelope = {"id": "old", "story_id": "s", "branch": "main", "position": position, "type": "EntityRegistered",
                "schema_version": 1, "payload": {"name": "Mia_red_scarf", "description": "with a red scarf",
                                                 "base": "Mia"},
                "shot": 2, "recorded_at": "2025-01-01T00:00:00.000000Z", "prev_hash": GENESIS, "causation_id": None}
    record = canonical_json(envelope)
    return from_record(record, record_hash(GENESIS, record))


def test_handlers_get_typed_upcast_events() -> None:
    seen: list[tuple[str, str | None, int]] = []
    names: Projection[list[tuple[str, str | None, int]]] = Projection("names")

    @names.on(EntityRegistered)
    def _registered(out: list[tuple[str, str | None, int]], e: EntityRegistered, ev: RecordedEvent) -> None:
        out.append((e.name, e.base_entity, ev.position))

    assert names.types == ("EntityRegistered",)
    names.fold(seen, [v1_registration(7)])
    assert seen == [("Mia_red_scarf", "Mia", 7)]
    with pytest.raises(TypeError, match="already handles EntityRegistered"):
        names.on(EntityRegistered)(_registered)

    bank = fold([v1_registration()])  # memory is written in the same style
    assert bank.get("Mia_red_scarf").base_entity == "Mia" and bank.get("Mia_red_scarf").kind == "other"


PLAN = [
    ShotPlanned(keyframe_prompt="Ada on the pier", motion_prompt="pan", uses=["Ada"]).at(1),
    ShotPlanned(keyframe_prompt="Ada waves", motion_prompt="zoom", uses=["Ada"]).at(2),
]
SHOT_1 = [
    ShotStarted(keyframe_prompt="Ada on the pier", motion_prompt="pan").at(1),
    VideoAnalyzed(next_shot=2, next_prompt_before="Ada waves", next_prompt_after="Ada waves, now in a hat").at(1),
    ShotCompleted(keyframe_blob="k" * 64, video_blob="v" * 64, frames=5, fps=8.0, keyframe_round=1).at(1),
]


def context(studio: Studio, writer: RunWriter, state: RunState) -> RunContext:
    return RunContext(story_id="s", branch="main", state=state, settings=RunSettings(), writer=writer,
                      recorder=CallRecorder(writer, studio.blobs, None), blobs=studio.blobs,
                      index=studio.index("s"), memory=MemoryBank())


def test_run_state_follows_every_event_the_writer_writes_or_matches(tmp_path: Path) -> None:
    studio = Studio(tmp_path / "home")
    studio.init()
    store = studio.store
    store.create_story("s", title="Pier", events=[StoryCreated(title="Pier", seed=1).at()])

    writer = RunWriter(store, "s", "main", head=1)
    ctx = context(studio, writer, fold_run_state(store.read("s")))
    writer.append(PLAN)
    assert sorted(ctx.state.plan) == [1, 2] and ctx.state.keyframe_prompt(2) == "Ada waves"
    writer.append(SHOT_1)
    assert ctx.state.keyframe_prompt(2) == "Ada waves, now in a hat"  # the video analyzer's rewrite
    assert ctx.state.completed[1]["frames"] == 5 and ctx.state.started == {1: 4}
    assert ctx.state == fold_run_state(store.read("s"))  # nothing kept beside the fold

    # a resume matches what the log holds instead of writing it: the state follows all the same
    head = store.branch("s").head_position
    events = store.read("s")
    resumed = RunWriter(store, "s", "main", head=head, existing=events[1:])
    again = context(studio, resumed, fold_run_state(events[:1]))
    resumed.append(PLAN)
    resumed.append(SHOT_1)
    assert resumed.matched == len(PLAN) + len(SHOT_1) and resumed.written == 0
    assert again.state == ctx.state == fold_run_state(store.read("s"))


def test_two_lineages_share_the_rows_up_to_their_fork() -> None:
    from codirector.engine.views.diff import shared_upto
    from codirector.store.lineage import Segment

    main = [Segment("main", 0, None)]
    alt = [Segment("main", 0, 40), Segment("alt", 40, None)]  # forked from main after position 40
    alt2 = [Segment("main", 0, 40), Segment("alt", 40, 55), Segment("alt2", 55, None)]  # from alt after 55
    other = [Segment("main", 0, 20), Segment("other", 20, None)]
    assert shared_upto(main, alt, 90, 60) == 40 == shared_upto(alt, main, 60, 90)
    assert shared_upto(alt, alt2, 60, 70) == 55
    assert shared_upto(alt2, other, 70, 30) == 20  # siblings: up to the earlier fork
    assert shared_upto(alt, alt, 60, 60) == 60  # a branch with itself: all of it
    assert shared_upto(main, alt, 40, 40) == 40  # nothing after the fork on either side yet
    assert shared_upto([Segment("a", 0, None)], [Segment("b", 0, None)], 5, 5) == 0  # nothing in common
