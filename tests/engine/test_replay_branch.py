"""Replay (identical with zero calls; divergence after a prompt change), branches (shared prefix,
no repeated calls, memory at the fork, branches of branches) and diff."""

from __future__ import annotations

from pathlib import Path

import pytest

from codirector.engine import agents
from codirector.engine.studio import Studio
from codirector.engine.views.memory import fold
from codirector.events import MEMORY_EVENT_TYPES, RUN_MARKS

from support import Counting, ScriptedVLM, fast_config, scripted_backends, write_story

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "stories"
REGEN = {"decision": "regen_refined_desc", "reasons": ["coat colour wrong"], "refined_keyframe_prompt":
         "Ada and Ben on a pier at dawn, Ada's raincoat clearly blue",
         "alignment_report": {"main_character_count": "ok", "main_character_appearance": "mismatch",
                              "environment": "ok"}}
SAME = {**REGEN, "decision": "regen_same_desc", "refined_keyframe_prompt": "",
        "alignment_report": {**REGEN["alignment_report"], "main_character_count": "missing"}}


@pytest.fixture
def studio(tmp_path: Path) -> Studio:
    s = Studio(tmp_path / "home")
    s.init()
    return s


def test_replay_of_a_preview_run_is_identical_with_zero_calls(studio: Studio, tmp_path: Path) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=3)
    studio.run(story, config=fast_config(tmp_path / "f.toml"), backends=scripted_backends())
    counting = Counting(scripted_backends())
    report = studio.replay("pier", backends=counting.backends)
    assert report.identical and report.divergence is None
    assert report.model_calls == 0 and counting.total == 0  # counted at the backends: nothing reached them
    assert report.events_compared == len([e for e in studio.log("pier") if e.type not in RUN_MARKS]) - 1
    assert "pier" in [s.id for s in studio.stories()]
    assert all(b.name == "main" for b in studio.stories()[0].branches)  # the scratch branch is hidden
    assert studio.verify().ok


def test_replay_of_a_scripted_run_with_regenerations_is_identical(studio: Studio, tmp_path: Path) -> None:
    vlm = ScriptedVLM().enqueue("keyframe_analyzer", SAME, REGEN)
    story = write_story(tmp_path / "pier.yaml", shots=2)
    studio.run(story, config=fast_config(tmp_path / "f.toml"), backends=scripted_backends(vlm))
    judged = [e.payload["decision"] for e in studio.log("pier", types=["KeyframeJudged"])]
    assert judged[:3] == ["regen_same_desc", "regen_refined_desc", "accept"]
    counting = Counting(scripted_backends())
    report = studio.replay("pier", backends=counting.backends)
    assert report.identical and report.model_calls == 0 and counting.total == 0


def test_a_prompt_change_diverges_at_the_first_affected_call(studio: Studio, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    story = write_story(tmp_path / "pier.yaml", shots=2)
    studio.run(story, config=fast_config(tmp_path / "f.toml"), backends=scripted_backends())
    first = next(e for e in studio.log("pier", types=["ModelCalled"]) if e.payload.get("agent") == "motion_refiner")
    monkeypatch.setattr(agents.prompts, "MOTION_REFINER",
                        agents.prompts.MOTION_REFINER.replace("No jumps between close and wide framing",
                                                              "Never cut between close and wide framing"))
    report = studio.replay("pier")
    assert not report.identical and report.model_calls == 0
    d = report.divergence
    assert d is not None and d.position == first.position and d.shot == 1
    assert (d.expected_type, d.kind, d.agent) == ("ModelCalled", "vlm", "motion_refiner")
    assert "system:" in d.changes
    assert "    -No jumps between close and wide framing and no sudden changes of viewpoint within the shot." in \
        d.changes
    assert "    +Never cut between close and wide framing and no sudden changes of viewpoint within the shot." in \
        d.changes
    # everything before the call still matched, and the original branch was not touched
    assert report.events_compared == len([e for e in studio.log("pier")
                                          if 1 < e.position < first.position and e.type not in RUN_MARKS])
    assert studio.log("pier")[-1].type == "StoryCompleted"


def test_branch_from_shot_5_shares_shots_1_to_4_and_then_differs(studio: Studio, tmp_path: Path) -> None:
    cfg = fast_config(tmp_path / "f.toml")
    studio.run(EXAMPLES / "lighthouse.yaml", config=cfg, backends=scripted_backends())
    parent = studio.log("lighthouse")
    new_prompt = "Mia in her red scarf and Tom shelter in the lantern room from a storm, rain on the glass"
    info = studio.branch("lighthouse", from_shot=5, name="storm", overrides={"shots.5.keyframe": new_prompt})
    fork = info.fork_position
    started5 = next(e for e in parent if e.type == "ShotStarted" and e.shot == 5)
    assert fork == started5.position - 1

    # memory at the branch's start is the parent's memory just before shot 5
    at_start = studio.memory("lighthouse", "storm", at_position=fork)
    assert at_start.to_json() == studio.memory("lighthouse", "main", at_position=fork).to_json()

    counting = Counting(scripted_backends())
    result = studio.run_branch("lighthouse", "storm", backends=counting.backends)
    assert result.completed
    own = studio.store.read_own("lighthouse", "storm")
    assert own[0].type == "BranchCreated" and own[0].position == fork + 1  # nothing of shots 1-4 was copied
    assert min(e.shot for e in own if e.shot is not None) == 5
    calls = [e for e in own if e.type == "ModelCalled"]
    assert counting.total == len(calls) > 0 and all(e.shot >= 5 for e in calls)  # no call for shots 1-4
    started = next(e for e in own if e.type == "ShotStarted")
    # the new prompt keeps the line the loop's video analyzer added to shot 5's prompt after shot 4
    kept = f"{new_prompt} Keep the look of Mia_red_scarf from the previous shot."
    assert (started.shot, started.payload["keyframe_prompt"]) == (5, kept)
    revised = next(e for e in own if e.type == "ShotPlanRevised")
    assert (revised.payload["after"], revised.payload["keeps_continuity"]) == (new_prompt, True)

    d = studio.diff("lighthouse", "main", "storm")
    assert d.parted_at_position == fork and d.first_differing_shot == 5
    assert [s.same for s in d.shots][:5] == [True] * 4 + [False]
    # (a later shot can come out the same again: shot 7 has the same prompt, references and seed in both)
    assert d.shots[4].in_b is not None and d.shots[4].in_b.keyframe_prompt == kept
    assert d.to_json()["shots"][4]["storm"]["keyframe_prompt"] == kept  # --json keys by branch name

    # a branch of the branch
    studio.branch("lighthouse", from_shot=7, name="storm-night", parent="storm",
                  overrides={"shots.7.motion": "Tom fights the wind to light the lamp"})
    assert studio.run_branch("lighthouse", "storm-night", backends=scripted_backends()).completed
    grand = studio.log("lighthouse", "storm-night")
    assert [e.branch for e in grand if e.type == "ShotStarted"] == ["main"] * 4 + ["storm"] * 2 + ["storm-night"] * 2
    assert [e.position for e in grand] == list(range(1, len(grand) + 1))
    assert fold(e for e in grand if e.type in MEMORY_EVENT_TYPES).names()
    assert studio.replay("lighthouse", "storm-night").identical
    assert studio.verify().ok


def test_branch_errors_name_the_problem(studio: Studio, tmp_path: Path) -> None:
    from codirector.errors import InvalidArgument

    story = write_story(tmp_path / "pier.yaml", shots=2)
    studio.run(story, config=fast_config(tmp_path / "f.toml"), backends=scripted_backends())
    with pytest.raises(InvalidArgument, match="between 1 and 2"):
        studio.branch("pier", from_shot=3, name="x")
    with pytest.raises(InvalidArgument, match="shots.N.keyframe"):
        studio.branch("pier", from_shot=2, name="x", overrides={"shot.2.prompt": "y"})
    with pytest.raises(InvalidArgument, match="only shots 2..2 run on the new branch"):
        studio.branch("pier", from_shot=2, name="x", overrides={"shots.1.keyframe": "y"})


def test_a_branch_can_change_what_a_shot_uses_and_evolves(studio: Studio, tmp_path: Path) -> None:
    """"What if Ada wore a kilt instead": shot 2's uses and evolves replaced on a branch, checked like a story
    file; the new state enters memory at shot 2 with shot 2's keyframe, and the parent keeps its hat."""
    story = write_story(tmp_path / "pier.yaml", shots=4)
    studio.run(story, config=fast_config(tmp_path / "f.toml"), backends=scripted_backends())
    kilt = "a tall woman with grey hair and a blue raincoat, now in a green tartan kilt"
    studio.branch("pier", from_shot=2, name="kilt", overrides={
        "shots.2.uses": "[Ada_kilt, Ben]",
        "shots.2.evolves": f'[{{name: Ada_kilt, base_entity: Ada, description: "{kilt}"}}]',
        "shots.4.uses": '["Ada_kilt"]',  # JSON is YAML too
    })
    own = studio.store.read_own("pier", "kilt")
    revised = [(e.shot, e.payload["field"], e.payload["before"], e.payload["after"]) for e in own
               if e.type == "ShotPlanRevised"]
    assert revised == [
        (2, "uses", ["Ada_hat", "Ben"], ["Ada_kilt", "Ben"]),
        (2, "evolves", [{"name": "Ada_hat", "base_entity": "Ada",
                         "description": "a tall woman with grey hair and a blue raincoat, now in a green hat"}],
         [{"name": "Ada_kilt", "base_entity": "Ada", "description": kilt}]),
        (4, "uses", ["Ada_hat"], ["Ada_kilt"]),
    ]
    assert studio.run_branch("pier", "kilt", backends=scripted_backends()).completed
    memory = studio.memory("pier", "kilt")
    assert "Ada_hat" not in memory.names() and "Ada_hat" in studio.memory("pier").names()
    ada_kilt = memory.get("Ada_kilt")
    assert (ada_kilt.base_entity, ada_kilt.shot, ada_kilt.description) == ("Ada", 2, kilt)
    selected2 = next(e for e in studio.log("pier", "kilt") if e.type == "KeyframeSelected" and e.shot == 2)
    assert [(v.kind, v.shot, v.blob) for v in ada_kilt.views] == [("keyframe", 2, selected2.payload["blob"])]
    shot4 = next(e for e in studio.log("pier", "kilt") if e.type == "MemoryRetrieved" and e.shot == 4).payload
    assert shot4["retrieved_existing"] == ["Ada_kilt"]
    assert [(r["entity"], r["blob"]) for r in shot4["references"]] == [("Ada_kilt", selected2.payload["blob"])]
    roles = [m.role for m in studio.history("pier", "Ada_kilt", branch="kilt").events]
    assert roles[:3] == ["revised_use", "revised_evolution", "revised_use"] and "registered" in roles
    assert studio.replay("pier", "kilt").identical


def test_branch_uses_and_evolves_are_checked_as_a_story_file_before_anything_is_written(
    studio: Studio, tmp_path: Path
) -> None:
    from codirector.errors import InvalidArgument

    story = write_story(tmp_path / "pier.yaml", shots=4)
    studio.run(story, config=fast_config(tmp_path / "f.toml"), backends=scripted_backends())
    head = studio.store.branch("pier", "main").head_position
    evolves = '[{name: Ada_kilt, base_entity: Ada, description: "Ada in a kilt"}]'
    refused = {
        r"cannot set shots\.2\.uses: the branch's plan: shots\[1\]\.uses\[0\] \(shot 2\): 'Ada_kilt' is not "
        r"declared": {"shots.2.uses": "[Ada_kilt, Ben]"},
        r"shots\[1\]\.evolves\[0\] \(shot 2\): base_entity 'Nobody' is not declared before shot 2":
            {"shots.2.evolves": "[{name: Ada_kilt, base_entity: Nobody, description: x}]"},
        # shot 4 still uses the hat the override took away
        r"shots\[3\]\.uses\[0\] \(shot 4\): 'Ada_hat' is not declared":
            {"shots.2.uses": "[Ada_kilt, Ben]", "shots.2.evolves": evolves},
        r"shots\[1\]\.evolves\[0\]\.description \(shot 2\): missing":
            {"shots.2.evolves": "[{name: Ada_kilt, base_entity: Ada}]"},
        r"shots\[1\]\.uses \(shot 2\): must be a non-empty name": {"shots.2.uses": "['  ', Ben]"},
        r"shots\.2\.uses: expected a list, got 'Ada'": {"shots.2.uses": "Ada"},
        r"shots\.2\.evolves: .* is not a YAML or JSON list": {"shots.2.evolves": "[{name: Ada_kilt"},
        r"cannot set 'shots\.2\.group'": {"shots.2.group": "C"},
    }
    for message, overrides in refused.items():
        with pytest.raises(InvalidArgument, match=message):
            studio.branch("pier", from_shot=2, name="kilt", overrides=overrides)
    assert [b.name for b in studio.store.story("pier").branches] == ["main"]
    assert studio.store.branch("pier", "main").head_position == head


def test_a_replaced_prompt_keeps_the_loops_continuity_line(studio: Studio, tmp_path: Path) -> None:
    """A later shot's new prompt is refined by the video analyzer that runs on the branch; an override
    recorded before overrides kept it (keeps_continuity false) still replaces it, as it did then."""
    from codirector.events import BranchCreated, ShotPlanRevised

    story = write_story(tmp_path / "pier.yaml", shots=3)
    studio.run(story, config=fast_config(tmp_path / "f.toml"), backends=scripted_backends())
    studio.branch("pier", from_shot=2, name="dusk", overrides={"shots.3.keyframe": "Ben alone at dusk"})
    assert studio.run_branch("pier", "dusk", backends=scripted_backends()).completed
    started3 = next(e for e in studio.log("pier", "dusk") if e.type == "ShotStarted" and e.shot == 3)
    assert started3.payload["keyframe_prompt"] == "Ben alone at dusk Keep the look of Ben from the previous shot."

    main = studio.log("pier")
    fork = next(e for e in main if e.type == "ShotStarted" and e.shot == 2).position - 1
    created = BranchCreated(name="old", parent="main", fork_position=fork, from_shot=2,
                            overrides={"shots.3.keyframe": "Ben alone at dusk"}).at(2)
    studio.store.create_branch("pier", "old", parent="main", at_position=fork, events=[
        created, ShotPlanRevised(field="keyframe", before="x", after="Ben alone at dusk",
                                 reason="branch override").at(3, cause=created.id)])
    assert studio.run_branch("pier", "old", backends=scripted_backends()).completed
    started3 = next(e for e in studio.log("pier", "old") if e.type == "ShotStarted" and e.shot == 3)
    assert started3.payload["keyframe_prompt"] == "Ben alone at dusk"


def test_a_story_recorded_before_evolved_view_existed_runs_and_replays_as_it_was_recorded(
    studio: Studio, tmp_path: Path
) -> None:
    """Its StoryCreated has no [run] evolved_view, and its video analyzer (the old preview's answer) gave
    shot 2's state from clip 1: resume and replay reproduce that; a new state gets a generated reference."""
    from codirector.engine.loop.runs import execute, prepare_story, record_story

    story = write_story(tmp_path / "pier.yaml", shots=3)
    sid, _, new = prepare_story(story, config=fast_config(tmp_path / "f.toml"))
    del new.event.settings.run["evolved_view"]
    record_story(studio.workspace, sid, new)
    old_answer = {"entity_updates": [{"name": "Ada_hat", "frame_index": 0, "base_entity": "Ada",
                                      "description": "a tall woman with grey hair and a blue raincoat, now in a green "
                                                     "hat"}],
                  "refined_next_shot": {"keyframe_prompt": "Ada in a green hat beside Ben"}}
    assert execute(studio.workspace, sid, backends=scripted_backends(ScriptedVLM().enqueue("video_analyzer",
                                                                                           old_answer))).completed
    hat = studio.memory(sid).get("Ada_hat")
    assert (hat.shot, hat.origin, [v.kind for v in hat.views]) == (1, "video_analyzer", ["video_frame"])
    report = studio.replay(sid)
    assert report.identical and report.model_calls == 0
    # a branch of it keeps the semantics it was recorded with: a state new on the branch gets a reference image
    studio.branch(sid, from_shot=2, name="kilt", overrides={
        "shots.2.uses": "[Ada_kilt, Ben]",
        "shots.2.evolves": "[{name: Ada_kilt, base_entity: Ada, description: Ada in a kilt}]"})
    assert studio.run_branch(sid, "kilt", backends=scripted_backends()).completed
    assert [(v.kind, v.shot) for v in studio.memory(sid, "kilt").get("Ada_kilt").views] == [("reference", 2)]
