"""Evaluating a finished branch: the paper's shot and story judges plus cross-shot consistency.

``evaluate(ws, story, branch)`` (what ``codirector eval`` calls) judges every completed shot
(``ShotJudged``, frames at 2 fps from its clip), measures cross-shot consistency on the same
frames (``engine.metrics``), then judges the whole story (``StoryJudged``, frames at 1 fps over the
assembled story, with the consistency result attached).

Invariants:
- Evaluation events are appended to the evaluated branch AFTER its ``StoryCompleted``: replay
  compares a run only up to ``StoryCompleted``, so evaluating never makes a run diverge.
- Every judge call and every frame embedding goes through the call recorder (recorded before
  use). Evaluating again is free: a branch whose ``StoryJudged`` is logged is read back, not
  re-judged; an interrupted evaluation continues where it stopped, with recorded calls reused.
- The preview judges derive their scores from the run's log (``plan``), never from pixels, and
  say so in their rationale.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from codirector.engine.agents.base import AgentContext
from codirector.engine.evaluation import metrics
from codirector.engine.evaluation.judges import clip_frames, clips_of, shot_judge, story_frames, story_judge
from codirector.engine.loop.context import Progress, QuietProgress, RunSettings
from codirector.engine.recording.recorder import CallRecorder
from codirector.engine.recording.writer import RunWriter
from codirector.engine.views.state import RunState, fold_run_state
from codirector.engine.workspace import Workspace
from codirector.errors import RunStateError
from codirector.events import RecordedEvent, ShotJudged, StoryJudged
from codirector.generators.base import Backends
from codirector.generators.profiles import RunConfig, build_backends, resolve
from codirector.store.event_store import MAIN

SHOT_FIELDS = ("content_match", "action_match", "camera_match", "overall", "rationale", "sampled_frames")
STORY_FIELDS = ("plot_completeness", "character_consistency", "narrative_flow", "overall", "strongest_aspect",
                "weakest_aspect", "sampled_frames")


def story_prompt(state: RunState) -> str:
    """What the story judge checks the video against: the story text, a brief's storyline, or the shots."""
    spec = state.spec
    plan = (state.branch_created or {}).get("plan", {})
    if spec.get("kind") == "brief" and plan.get("storyline"):
        return (f"An ad for {spec.get('product')} by {spec.get('brand')}, for {spec.get('target_audience')}. "
                f"{plan['storyline']}")
    if spec.get("story"):
        return str(spec["story"])
    return " ".join(state.plan[s].keyframe_prompt for s in sorted(state.plan))


def _after_completion(events: list[RecordedEvent]) -> list[RecordedEvent] | None:
    """The events after the branch's (last) ``StoryCompleted``, or None when the story is not complete."""
    ends = [i for i, e in enumerate(events) if e.type == "StoryCompleted"]
    return events[ends[-1] + 1:] if ends else None


def _shot_facts(events: list[RecordedEvent], shot: int, frames: int) -> dict[str, Any]:
    """What the run's log says about a shot (the plan-driven preview judge scores from these)."""
    mine = [e for e in events if e.shot == shot]
    retrievals = [e for e in mine if e.type == "MemoryRetrieved"]
    selected = [e for e in mine if e.type == "KeyframeSelected"]
    return {"shot": shot, "frames": frames,
            "references": len(retrievals[-1].payload.get("references", [])) if retrievals else 0,
            "keyframe_how": selected[-1].payload["how"] if selected else None,
            "motion_refined": any(e.type == "MotionPromptRefined" for e in mine)}


def _story_facts(events: list[RecordedEvent], state: RunState) -> dict[str, Any]:
    with_refs = 0
    for shot in state.completed:
        facts = _shot_facts(events, shot, 0)
        with_refs += facts["references"] > 0
    refined = sum(1 for e in events if e.type == "VideoAnalyzed"
                  and e.payload.get("next_prompt_after") != e.payload.get("next_prompt_before"))
    evolved = sum(1 for e in events if e.type == "EntityRegistered" and e.payload.get("base_entity"))
    return {"shots": state.num_shots, "completed": len(state.completed), "with_references": with_refs,
            "refined_next": refined, "evolved_entities": evolved}


def _summary(story_id: str, branch: str, judged: list[RecordedEvent], story: RecordedEvent | None,
             consistency: dict[str, Any] | None) -> dict[str, Any]:
    shots = [{"shot": e.shot, **{k: e.payload.get(k) for k in SHOT_FIELDS}} for e in judged]
    overall = [float(s["overall"]) for s in shots]
    return {
        "story": story_id, "branch": branch,
        "shots": shots,
        "shot_overall": round(float(np.mean(overall)), 4) if overall else None,
        "story_judge": {k: story.payload.get(k) for k in STORY_FIELDS} if story is not None else None,
        "consistency": consistency,
    }


def evaluate(
    ws: Workspace, story_id: str, branch: str = MAIN, *, profile: str | None = None,
    config: str | os.PathLike[str] | None = None, backends: Backends | None = None, progress: Progress | None = None,
) -> dict[str, Any]:
    """Judge a completed branch (shots, story, consistency); returns the stable ``eval --json`` document.

    The judges and the embedder are the story's recorded backends unless ``profile``/``config``
    (or ``backends``) name others, e.g. a stronger VLM as judge.
    """
    store = ws.store
    progress = progress or QuietProgress()
    events = store.read(story_id, branch)
    state = fold_run_state(events)
    after = _after_completion(events)
    if after is None:
        if state.spec.get("kind") == "brief" and branch == MAIN:
            pulls = [b.name for b in store.story(story_id).branches if b.name != MAIN]
            raise RunStateError(f"{story_id!r} is an advertising brief: its main branch holds the director's "
                                "decisions, not a video", hint="evaluate one of its branches: "
                                + (", ".join(pulls[:6]) or "(none yet; run `codirector direct`)"))
        raise RunStateError(f"{story_id}/{branch} is not complete ({len(state.completed)} of {state.num_shots} "
                            "shots); only a finished story can be judged",
                            hint=f"finish it first: `codirector resume {story_id}`" if branch == MAIN else
                            f"finish it first: `codirector run --story {story_id} --branch {branch}`")
    stored_story = next((e for e in after if e.type == "StoryJudged"), None)
    judged = {e.shot: e for e in after if e.type == "ShotJudged" and e.shot is not None}
    if stored_story is not None:
        out = _summary(story_id, branch, [judged[s] for s in sorted(judged)], stored_story,
                       stored_story.payload.get("consistency"))
        return {**out, "already_evaluated": True, "events_written": 0, "model_calls": {"live": 0, "reused": 0},
                "notes": ["this branch was already evaluated; the logged judgements are shown"]}

    if backends is None:
        cfg = resolve(profile, config) if (profile or config) else RunConfig.from_settings(state.settings)
        backends = build_backends(cfg)
    settings = RunSettings.from_table(state.settings.get("run", {}))
    writer = RunWriter(store, story_id, branch, head=store.branch(story_id, branch).head_position)
    known = {e.payload["request_key"]: e for e in events if e.type == "ModelCalled" and e.payload.get("error") is None}
    recorder = CallRecorder(writer, ws.blobs, backends, known=known)
    ctx = AgentContext(recorder, writer, settings.agent_attempts)

    clips = clips_of(state.completed)
    vectors: dict[int, np.ndarray] = {}
    meaningful = True
    embedder = ""
    for clip in clips:
        progress.step(f"judge shot {clip.shot}")
        frames = clip_frames(ws.blobs, clip)
        if clip.shot not in judged:
            planned = state.plan[clip.shot]
            description = f"Keyframe: {planned.keyframe_prompt}\nMotion: {planned.motion_prompt}"
            out, call = shot_judge(ctx, description=description, frames=frames, shot=clip.shot,
                                   plan=_shot_facts(events, clip.shot, len(frames)))
            judged[clip.shot] = writer.one(ShotJudged(
                content_match=out.content_match, action_match=out.action_match, camera_match=out.camera_match,
                overall=out.overall, rationale=out.rationale, sampled_frames=len(frames),
            ).at(clip.shot, cause=call.id))
        emb = recorder.embed_images(frames, shot=clip.shot)
        vectors[clip.shot] = metrics.clip_vector(emb.vectors)
        meaningful &= emb.meaningful
        embedder = emb.model

    measured = metrics.consistency(vectors, {s: state.plan[s].group for s in vectors}).to_json()
    measured.update(embedder=embedder, meaningful=meaningful)
    progress.step("judge the story")
    frames = story_frames(ws.blobs, clips)
    prompt = story_prompt(state)
    out_story, call = story_judge(ctx, story_prompt=prompt, frames=frames, plan=_story_facts(events, state))
    story_event = writer.one(StoryJudged(
        plot_completeness=out_story.plot_completeness, character_consistency=out_story.character_consistency,
        narrative_flow=out_story.narrative_flow, overall=out_story.overall,
        strongest_aspect=out_story.strongest_aspect, weakest_aspect=out_story.weakest_aspect,
        sampled_frames=len(frames), extra={"story_prompt": prompt}, consistency=measured,
    ).at(None, cause=call.id))
    out = _summary(story_id, branch, [judged[s] for s in sorted(judged)], story_event, measured)
    notes = [] if meaningful else ["the embedder is untrained here: consistency values carry no meaning"]
    return {**out, "already_evaluated": False, "events_written": writer.written,
            "model_calls": {"live": recorder.stats.live, "reused": recorder.stats.reused}, "notes": notes}
