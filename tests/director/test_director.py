"""`direct` on an example brief with the preview backends: four pull branches, four rewards, the best
branch ranked; main holds only the director's record; every pull branch audits and replays
identically; bad agent answers are rejected and retried; an interrupted director resumes from the log
without repeating a recorded call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codirector.engine.director import bandit
from codirector.engine.director.agents import names_forbidden
from codirector.engine.director.direction import direct, resume_direction
from codirector.engine.loop.runs import execute
from codirector.engine.studio import Studio
from codirector.errors import BackendError, RunStateError
from codirector.generators.preview import PreviewVLM

from support import Counting, ScriptedVLM, fast_config, scripted_backends, shape

BRIEF = Path(__file__).resolve().parents[2] / "examples" / "briefs" / "dewline_serum.yaml"
DIRECTOR_AGENTS = {"direction_recommender", "creative_director", "ad_judge", "efficacy_judge"}


@pytest.fixture
def studio(tmp_path: Path) -> Studio:
    s = Studio(tmp_path / "home")
    s.init()
    return s


def preview_answer(request) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(PreviewVLM().complete(request).text)


def test_direct_explores_four_branches_rewards_each_and_ranks_the_best(studio: Studio, tmp_path: Path) -> None:
    result = direct(studio.workspace, BRIEF, config=fast_config(tmp_path / "f.toml"), backends=scripted_backends())
    sid = result.story_id
    assert sid == "dewline_serum" and result.completed and len(result.pulls) == 4

    main = studio.log(sid)
    kinds = shape(main)
    assert kinds.count("DirectionChosen") == 4 and kinds.count("RewardObserved") == 4
    assert kinds[-1] == "BranchRanked" and kinds[0] == "StoryCreated"
    # main holds only the director's record: its calls, choices, rewards and the ranking
    assert set(kinds) == {"StoryCreated", "DirectionChosen", "RewardObserved", "BranchRanked",
                          *(f"call:vlm:{a}" for a in DIRECTOR_AGENTS)}
    assert kinds.count("call:vlm:efficacy_judge") == 12  # one separate call per dimension per pull

    chosen = [e.payload for e in main if e.type == "DirectionChosen"]
    rewards = [e.payload for e in main if e.type == "RewardObserved"]
    # the warm start is honoured at the first pull
    assert chosen[0]["arms"] == chosen[0]["recommended"]
    assert all(w["rule"] == "untried: the warm-start recommendation" for w in chosen[0]["why"]["dimensions"].values())
    # every aesthetic-dimension arm of the first pulls is untried when chosen (cold start)
    assert len({c["arms"]["aesthetic"] for c in chosen}) == 4

    branches = {b.name: b for b in studio.stories()[0].branches}
    pulls = [c["branch"] for c in chosen]
    assert set(branches) == {"main", *pulls}
    for c in chosen:
        a = c["arms"]
        assert c["branch"] == f"pull-{c['iteration']}-{a['strategy']}-{a['narrative_mode']}-{a['aesthetic']}"
        assert branches[c["branch"]].status == "completed" and branches[c["branch"]].shots_completed == 3

    for r in rewards:
        assert r["execution"] == sum(r["criteria"].values()) and 0 <= r["execution"] <= 100
        assert set(r["efficacy"]) == set(bandit.DIMENSIONS) and r["primary_fault"] in ("storyline", "image", "video")
        assert "no judge looked at pixels" in r["feedback"]
    ranked = main[-1].payload
    scores = {r["branch"]: (r["execution"] + sum(r["efficacy"].values()) / 3) / 2 for r in rewards}
    assert ranked["best_branch"] == ranked["ranking"][0]["branch"] == max(scores, key=lambda b: scores[b])
    assert [r["branch"] for r in ranked["ranking"]] == sorted(scores, key=lambda b: -scores[b])
    assert result.best_branch == ranked["best_branch"]

    # the bandit state is a fold of main's events
    assert bandit.fold(main).to_json() == result.bandit.to_json()

    image_blob = next(m["reference_blob"] for m in main[0].payload["spec"]["cast"])
    brief = main[0].payload["spec"]
    for branch in pulls:
        own = [e for e in studio.log(sid, branch) if e.branch == branch]
        created = own[0]
        assert created.type == "BranchCreated" and created.payload["from_shot"] == 1
        plan = created.payload["plan"]
        assert not names_forbidden(plan["style_instructions"], [brief["product"], brief["brand"],
                                                                brief["target_audience"]])
        planned = [e for e in own if e.type == "ShotPlanned"]
        assert len(planned) == 3 and all(e.causation_id == created.id for e in planned)
        assert all(e.payload["planner"] == "creative director" for e in planned)
        assert any(brief["product"] in e.payload["uses"] for e in planned)
        # the brief's product image is the product's first view in every pull's memory
        memory = studio.memory(sid, branch)
        product = memory.get(brief["product"])
        assert product.kind == "prop" and product.views[0].blob == image_blob and product.views[0].kind == "cast_file"
        audit = studio.audit(sid, branch)
        assert [s.shot for s in audit.shots] == [1, 2, 3] and all(s.completed for s in audit.shots)
        report = studio.replay(sid, branch)
        assert report.identical and report.model_calls == 0, report.divergence
    assert studio.verify().ok

    with pytest.raises(RunStateError, match="is an advertising brief"):
        execute(studio.workspace, sid)  # the loop refuses a brief's main branch ...
    assert studio.resume(sid, backends=scripted_backends()).best_branch == result.best_branch  # ... resume directs
    with pytest.raises(RunStateError, match="already exists") as info:
        direct(studio.workspace, BRIEF, config=fast_config(tmp_path / "f.toml"), backends=scripted_backends())
    assert "codirector resume dewline_serum" in str(info.value.hint)
    again = resume_direction(studio.workspace, sid, backends=scripted_backends())  # a finished director: nothing to do
    assert again.best_branch == result.best_branch and len(studio.log(sid)) == len(main)


def test_bad_director_answers_are_rejected_with_the_reason_and_retried(studio: Studio, tmp_path: Path) -> None:
    def style_names_the_brand(request):  # type: ignore[no-untyped-def]
        answer = preview_answer(request)
        answer["style_instructions"] = "Soft window light, the way Quorra Skinworks likes it."
        return answer

    vlm = (ScriptedVLM().enqueue("creative_director", style_names_the_brand)
           .enqueue("efficacy_judge", {"efficacy": 150, "rationale": "great"})
           .enqueue("ad_judge", {"coherence": 10, "visual_quality": 10, "engagement": 10, "prompt_adherence": 10,
                                 "logical_consistency": 10, "primary_fault": "audio", "feedback": "ok"}))
    result = direct(studio.workspace, BRIEF, iterations=1, config=fast_config(tmp_path / "f.toml"),
                    backends=scripted_backends(vlm))
    assert result.completed and len(result.pulls) == 1
    rejected = {e.payload["agent"]: e.payload["errors"] for e in studio.log(result.story_id,
                                                                          types=["AgentOutputRejected"])}
    assert rejected["creative_director"] == [
        "style_instructions name 'Quorra Skinworks'; describe only the look (light, palette, lenses, camera), "
        "never the product, brand or audience"]
    assert rejected["efficacy_judge"] == ["efficacy must be an integer from 0 to 100, got 150"]
    assert rejected["ad_judge"][0].startswith("primary_fault:")
    reward = studio.log(result.story_id, types=["RewardObserved"])[0].payload
    assert all(0 <= v <= 100 for v in reward["efficacy"].values())


def test_an_interrupted_director_resumes_from_the_log_without_repeating_calls(studio: Studio, tmp_path: Path) -> None:
    config = fast_config(tmp_path / "f.toml")
    reference = Counting(scripted_backends())
    whole = direct(studio.workspace, BRIEF, config=config, story_id="whole", backends=reference.backends)

    def fail(request):  # type: ignore[no-untyped-def]
        raise BackendError("the judge's server went away")

    flaky = Counting(scripted_backends(ScriptedVLM().enqueue("ad_judge", preview_answer, fail)))
    with pytest.raises(BackendError, match="went away"):
        direct(studio.workspace, BRIEF, config=config, story_id="cut", backends=flaky.backends)
    cut = studio.log("cut")
    assert [e.type for e in cut].count("RewardObserved") == 1
    state = bandit.fold(cut)
    assert state.pending is not None and state.pending.iteration == 2  # chosen, run, not yet rewarded
    assert [b for b in studio.stories()[1].branches if b.name == state.pending.branch][0].status == "completed"

    resumed = Counting(scripted_backends())
    result = resume_direction(studio.workspace, "cut", backends=resumed.backends)
    assert result.completed
    assert [p.arms for p in result.pulls] == [p.arms for p in whole.pulls]
    assert [p.branch for p in result.pulls] == [p.branch for p in whole.pulls]
    assert result.bandit.to_json()["stats"] == whole.bandit.to_json()["stats"]
    assert result.best_branch == whole.best_branch
    # every call was made once: the failed judge call is the only extra one
    for kind in ("image", "video", "embed"):
        assert flaky.counts[kind] + resumed.counts[kind] == reference.counts[kind], kind
    assert flaky.counts["vlm"] + resumed.counts["vlm"] == reference.counts["vlm"] + 1
    failed = [e for e in studio.log("cut", types=["ModelCalled"]) if e.payload.get("error")]
    assert len(failed) == 1 and failed[0].payload["agent"] == "ad_judge"
    assert bandit.fold(studio.log("cut")).to_json() == result.bandit.to_json()
