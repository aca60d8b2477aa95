"""Replay (identical with zero calls; divergence after a prompt change), branches (shared prefix,
no repeated calls, memory at the fork, branches of branches) and diff."""

from __future__ import annotations

from pathlib import Path

import pytest

from codirector.engine import agents
from codirector.engine.studio import Studio
from codirector.engine.views.memory import fold
from codirector.events import MEMORY_EVENT_TYPES

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
    assert report.events_compared == len(studio.log("pier")) - 1
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
    assert report.events_compared == first.position - 2
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
    assert (started.shot, started.payload["keyframe_prompt"]) == (5, new_prompt)

    d = studio.diff("lighthouse", "main", "storm")
    assert d.parted_at_position == fork and d.first_differing_shot == 5
    assert [s.same for s in d.shots][:5] == [True] * 4 + [False]
    # (a later shot can come out the same again: shot 7 has the same prompt, references and seed in both)
    assert d.shots[4].in_b is not None and d.shots[4].in_b.keyframe_prompt == new_prompt
    assert d.to_json()["shots"][4]["storm"]["keyframe_prompt"] == new_prompt  # --json keys by branch name

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
