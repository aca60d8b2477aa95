"""`evaluate`: the paper's shot judge (frames at 2 fps per clip) and story judge (1 fps over the story)
recorded as ShotJudged/StoryJudged after StoryCompleted, with the SameGrp/CrossGrp consistency metric;
replay still identical; evaluating again is free; an interrupted evaluation continues; bad scores are
rejected and retried."""

from __future__ import annotations

from pathlib import Path

import pytest

from codirector.engine.evaluation.evaluate import evaluate
from codirector.engine.evaluation.judges import frames_at_rate
from codirector.engine.studio import Studio
from codirector.errors import BackendError, RunStateError

from support import Counting, ScriptedVLM, fast_config, scripted_backends, write_story

SHOT_KEYS = {"content_match", "action_match", "camera_match", "overall", "rationale"}
STORY_KEYS = {"plot_completeness", "character_consistency", "narrative_flow", "overall", "strongest_aspect",
              "weakest_aspect"}


@pytest.fixture
def studio(tmp_path: Path) -> Studio:
    s = Studio(tmp_path / "home")
    s.init()
    s.run(write_story(tmp_path / "pier.yaml", shots=4), config=fast_config(tmp_path / "f.toml"),
          backends=scripted_backends())
    return s


def test_frames_are_sampled_at_the_papers_rates() -> None:
    assert frames_at_rate(80, 16.0, 2.0, 32) == [round(i * 79 / 9) for i in range(10)]  # 5 s at 2 fps: 10 frames
    assert len(frames_at_rate(80, 16.0, 1.0, 48)) == 5
    assert frames_at_rate(3, 8.0, 2.0, 32) == [1]  # a very short clip still gets one frame
    assert len(frames_at_rate(1000, 10.0, 2.0, 32)) == 32  # capped


def test_evaluate_records_the_judges_after_story_completed_with_consistency(studio: Studio) -> None:
    before = studio.log("pier")
    out = evaluate(studio.workspace, "pier", backends=scripted_backends())
    log = studio.log("pier")
    added = log[len(before):]
    assert before[-1].type == "StoryCompleted"  # everything evaluation wrote comes after the run
    judged = [e for e in added if e.type == "ShotJudged"]
    assert [e.shot for e in judged] == [1, 2, 3, 4]
    assert all(SHOT_KEYS <= set(e.payload) for e in judged)
    assert all(e.payload["sampled_frames"] == 2 for e in judged)  # 5 frames at 4 fps = 1.25 s, at 2 fps
    story = [e for e in added if e.type == "StoryJudged"]
    assert len(story) == 1 and added[-1].type == "StoryJudged" and STORY_KEYS <= set(story[0].payload)
    assert story[0].payload["sampled_frames"] == 5  # 4 clips x 1.25 s at 1 fps
    calls = {e.id: e for e in added if e.type == "ModelCalled"}
    assert calls[judged[0].causation_id].payload["agent"] == "shot_judge"
    assert len(calls[judged[0].causation_id].payload["request"]["images"]) == 2
    assert len(calls[story[0].causation_id].payload["request"]["images"]) == 5
    assert sum(1 for c in calls.values() if c.payload["kind"] == "embed") == 4  # the metric's frames, recorded

    # write_story's groups are A, B, B, B: 3 same-group pairs (B-B) and 3 cross-group pairs (A-B)
    c = out.consistency
    assert c is not None and (c["pairs"], c["same_group_pairs"], c["cross_group_pairs"]) == (6, 3, 3)
    assert c["same_group"] is not None and c["cross_group"] is not None and "ViCLIP" in c["note"]
    assert story[0].payload["consistency"]["average"] == c["average"]
    assert [s.shot for s in out.shots] == [1, 2, 3, 4]
    assert out.story_judge is not None and out.story_judge.overall in range(1, 6)
    assert "no judge looked at pixels" in out.shots[0].rationale
    assert out.events_written == len(added) and not out.already_evaluated

    report = studio.replay("pier")
    assert report.identical and any("evaluation events after StoryCompleted" in n for n in report.notes)

    counting = Counting(scripted_backends())
    again = evaluate(studio.workspace, "pier", backends=counting.backends)
    assert again.already_evaluated and counting.total == 0 and len(studio.log("pier")) == len(log)
    assert again.shots == out.shots and again.consistency == out.consistency
    assert again.story_judge == out.story_judge
    assert studio.verify().ok  # every frame and vector the judges' calls name is stored


def test_an_interrupted_evaluation_continues_without_judging_a_shot_twice(studio: Studio) -> None:
    def fail(request):  # type: ignore[no-untyped-def]
        raise BackendError("judge offline")

    with pytest.raises(BackendError):
        evaluate(studio.workspace, "pier", backends=scripted_backends(ScriptedVLM().enqueue("story_judge", fail)))
    assert len(studio.log("pier", types=["ShotJudged"])) == 4
    counting = Counting(scripted_backends())
    out = evaluate(studio.workspace, "pier", backends=counting.backends)
    assert dict(counting.counts) == {"vlm": 1}  # only the story judge; the frame embeddings are reused
    assert len(studio.log("pier", types=["ShotJudged"])) == 4 and out.story_judge is not None


def test_a_score_out_of_range_is_rejected_and_retried(studio: Studio) -> None:
    vlm = ScriptedVLM().enqueue("shot_judge", {"content_match": 4, "action_match": 4, "camera_match": 4,
                                               "overall": 7, "rationale": "fine"})
    evaluate(studio.workspace, "pier", backends=scripted_backends(vlm))
    rejected = studio.log("pier", types=["AgentOutputRejected"])
    assert [e.payload["errors"] for e in rejected] == [["overall must be an integer from 1 to 5, got 7"]]
    assert studio.log("pier", types=["ShotJudged"])[0].payload["overall"] in range(1, 6)


def test_only_a_finished_branch_can_be_evaluated(studio: Studio) -> None:
    studio.branch("pier", from_shot=3, name="alt")
    with pytest.raises(RunStateError, match="pier/alt is not complete \\(2 of 4 shots\\)") as info:
        evaluate(studio.workspace, "pier", "alt", backends=scripted_backends())
    assert "codirector run --story pier --branch alt" in str(info.value.hint)
