"""Malformed agent output is rejected, recorded and retried with feedback; past the bound the run
stops cleanly with memory untouched, and `resume` finishes once the backend answers well."""

from __future__ import annotations

from pathlib import Path

import pytest

from codirector.engine.studio import Studio
from codirector.errors import AgentOutputInvalid
from codirector.events import RUN_MARKS

from support import ScriptedVLM, fast_config, scripted_backends, write_story

GOOD_MC = {"retrieved_existing": [], "new_entities": [
    {"name": "Ada", "description": "a tall woman with grey hair and a blue raincoat", "base_entity": None},
    {"name": "Ben", "description": "a small boy with red hair and a yellow jumper", "base_entity": None}]}


def mc_new(*entities: dict) -> dict:
    return {"retrieved_existing": [], "new_entities": list(entities)}


def ent(name: str, base: str | None = None) -> dict:
    return {"name": name, "description": f"{name or 'someone'} described", "base_entity": base}


CASES = {
    "invalid json": ("memory_controller", '{"retrieved_existing": [', "not valid JSON"),
    "unknown decision": ("keyframe_analyzer", {"decision": "maybe", "reasons": ["?"], "refined_keyframe_prompt": "",
                                               "alignment_report": {"main_character_count": "ok",
                                                                    "main_character_appearance": "ok",
                                                                    "environment": "ok"}}, "decision"),
    "six entities": ("memory_controller", mc_new(*[ent(f"E{i}") for i in range(6)]), "at most 4 new_entities"),
    "unknown base_entity": ("memory_controller", mc_new(ent("Ada"), ent("Ada_hat", base="Zed")),
                            "base_entity 'Zed', which is not a known entity"),
    "frame_index outside the clip": ("video_analyzer",
                                     {"entity_updates": [{**ent("Ben_back", "Ben"), "frame_index": 99}],
                                      "refined_next_shot": {"keyframe_prompt": "next"}},
                                     "frame_index 99 for 'Ben_back' is outside the 5 frames shown"),
    "empty name": ("memory_controller", mc_new(ent("")), "empty name"),
}


@pytest.fixture
def studio(tmp_path: Path) -> Studio:
    s = Studio(tmp_path / "home")
    s.init()
    return s


@pytest.mark.parametrize("case", list(CASES))
def test_bad_answer_is_rejected_recorded_and_retried_with_feedback(studio: Studio, tmp_path: Path, case: str) -> None:
    agent, bad, expected = CASES[case]
    vlm = ScriptedVLM().enqueue(agent, bad)  # then the plan-driven answer, which is valid
    story = write_story(tmp_path / "pier.yaml", shots=2)
    result = studio.run(story, config=fast_config(tmp_path / "f.toml"), backends=scripted_backends(vlm))
    assert result.completed
    rejected = studio.log("pier", types=["AgentOutputRejected"])
    assert len(rejected) == 1
    r = rejected[0].payload
    assert (r["agent"], r["attempt"]) == (agent, 1)
    assert any(expected in e for e in r["errors"]), r["errors"]
    assert r["raw_output"]  # what the model said is kept for the audit
    attempts = [req for a, req in vlm.calls if a == agent]
    retry = attempts[1]
    assert "Attempt 2. Your previous answer was rejected" in retry.user and expected.split()[0] in retry.user
    assert studio.verify().ok


def test_past_the_bound_the_run_stops_memory_is_untouched_and_resume_finishes(studio: Studio, tmp_path: Path) -> None:
    bad = mc_new(ent("Ada", base="Nobody"))
    vlm = ScriptedVLM().enqueue("memory_controller", bad, bad, bad)
    story = write_story(tmp_path / "pier.yaml", shots=2)
    cfg = fast_config(tmp_path / "f.toml")
    with pytest.raises(AgentOutputInvalid) as info:
        studio.run(story, config=cfg, backends=scripted_backends(vlm))
    assert "memory_controller gave 3 unusable answers for shot 1" in str(info.value)
    assert "resume" in str(info.value.hint)
    log = studio.log("pier")
    assert [e.payload["attempt"] for e in log if e.type == "AgentOutputRejected"] == [1, 2, 3]
    assert not [e for e in log if e.type in ("EntityRegistered", "ViewAdded")]
    assert len(studio.memory("pier")) == 0

    fixed = ScriptedVLM().enqueue("memory_controller", GOOD_MC)
    result = studio.resume("pier", backends=scripted_backends(fixed))
    marks = [e for e in log if e.type in RUN_MARKS]  # where the run began: not something a re-run produces
    assert result.completed and result.matched == len(log) - 1 - len(marks)  # all but StoryCreated was matched
    # the three recorded bad answers came from the log, not from the backend: one new memory_controller call
    assert [a for a, _ in fixed.calls].count("memory_controller") == 1 + 1  # attempt 4 of shot 1, and shot 2
    final = studio.log("pier")
    assert [e.payload["attempt"] for e in final if e.type == "AgentOutputRejected"] == [1, 2, 3]
    assert studio.memory("pier", at_shot=1).names() == ["Ada", "Ben"]
    assert final[-1].type == "StoryCompleted"
    assert studio.verify().ok
