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
  say so in their rationale. What they read of the log is a fold of typed, upcast events (the
  ``FACTS`` and ``JUDGED`` projections), like every other view.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from codirector.engine.agents.base import AgentContext
from codirector.engine.evaluation import metrics
from codirector.engine.evaluation.judges import clip_frames, clips_of, shot_judge, story_frames, story_judge
from codirector.engine.loop.context import Progress, QuietProgress, RunSettings
from codirector.engine.loop.runs import refuse_brief_main
from codirector.engine.recording.budget import Budget
from codirector.engine.recording.recorder import CallRecorder, recorded_answers
from codirector.engine.recording.writer import RunWriter
from codirector.engine.views.projection import Projection
from codirector.engine.views.state import RunState, fold_run_state
from codirector.engine.workspace import Workspace
from codirector.errors import RunStateError
from codirector.events import (
    EntityRegistered,
    KeyframeSelected,
    MemoryRetrieved,
    MotionPromptRefined,
    RecordedEvent,
    ShotJudged,
    StoryJudged,
    VideoAnalyzed,
)
from codirector.events.specs import BriefRecord, StoryRecord
from codirector.generators.base import Backends
from codirector.generators.build import build_backends
from codirector.generators.profiles import RunConfig, resolve
from codirector.store.event_store import MAIN

SHOT_FIELDS = ("content_match", "action_match", "camera_match", "overall", "rationale", "sampled_frames")
STORY_FIELDS = ("plot_completeness", "character_consistency", "narrative_flow", "overall", "strongest_aspect",
                "weakest_aspect", "sampled_frames")


@dataclass
class ShotScores:
    """The shot judge's scores for one shot (``ShotJudged``), 1-5 each, with its rationale."""

    shot: int | None
    content_match: int
    action_match: int
    camera_match: int
    overall: int
    rationale: str
    sampled_frames: int

    @classmethod
    def from_event(cls, e: RecordedEvent) -> ShotScores:
        return cls(e.shot, **{k: getattr(e.event, k) for k in SHOT_FIELDS})

    def to_json(self) -> dict[str, Any]:
        return {"shot": self.shot, **{k: getattr(self, k) for k in SHOT_FIELDS}}


@dataclass
class StoryScores:
    """The story judge's scores for the whole branch (``StoryJudged``), 1-5 each, with its two remarks."""

    plot_completeness: int
    character_consistency: int
    narrative_flow: int
    overall: int
    strongest_aspect: str
    weakest_aspect: str
    sampled_frames: int

    @classmethod
    def from_event(cls, e: RecordedEvent) -> StoryScores:
        return cls(**{k: getattr(e.event, k) for k in STORY_FIELDS})

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in STORY_FIELDS}


@dataclass
class Evaluation:
    """A judged branch (``codirector eval``): per-shot and story scores and cross-shot consistency."""

    story_id: str
    branch: str
    shots: list[ShotScores]
    shot_overall: float | None
    story_judge: StoryScores | None
    consistency: dict[str, Any] | None  # ``metrics.consistency`` as measured, with the embedder's name
    already_evaluated: bool = False
    events_written: int = 0
    calls_live: int = 0
    calls_reused: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def preview_judged(self) -> bool:
        """Whether the plan-driven preview judges scored it (from the log, not from pixels)."""
        return any(s.rationale.startswith("preview:") for s in self.shots)

    @property
    def consistency_meaningful(self) -> bool:
        return bool((self.consistency or {}).get("meaningful", True))

    def to_json(self) -> dict[str, Any]:
        return {"story": self.story_id, "branch": self.branch, "shots": [s.to_json() for s in self.shots],
                "shot_overall": self.shot_overall,
                "story_judge": None if self.story_judge is None else self.story_judge.to_json(),
                "consistency": self.consistency, "already_evaluated": self.already_evaluated,
                "events_written": self.events_written,
                "model_calls": {"live": self.calls_live, "reused": self.calls_reused}, "notes": self.notes}


def story_prompt(state: RunState) -> str:
    """What the story judge checks the video against: the story text, a brief's storyline, or the shots."""
    spec = state.spec
    storyline = state.branch_created.plan.storyline if state.branch_created is not None else ""
    if isinstance(spec, BriefRecord) and storyline:
        return f"An ad for {spec.product} by {spec.brand}, for {spec.target_audience}. {storyline}"
    if isinstance(spec, StoryRecord) and spec.story:
        return spec.story
    return " ".join(state.plan[s].keyframe_prompt for s in sorted(state.plan))


def _after_completion(events: list[RecordedEvent]) -> list[RecordedEvent] | None:
    """The events after the branch's (last) ``StoryCompleted``, or None when the story is not complete."""
    ends = [i for i, e in enumerate(events) if e.type == "StoryCompleted"]
    return events[ends[-1] + 1:] if ends else None


@dataclass
class _Facts:
    """What the run's log says about its shots (the plan-driven preview judges score from these)."""

    references: dict[int, int] = field(default_factory=dict)  # shot -> references of its last retrieval
    keyframe_how: dict[int, str] = field(default_factory=dict)  # shot -> how its (last) keyframe was selected
    motion_refined: set[int] = field(default_factory=set)
    refined_next: int = 0
    evolved_entities: int = 0

    def shot(self, shot: int, frames: int) -> dict[str, Any]:
        return {"shot": shot, "frames": frames, "references": self.references.get(shot, 0),
                "keyframe_how": self.keyframe_how.get(shot), "motion_refined": shot in self.motion_refined}

    def story(self, state: RunState) -> dict[str, Any]:
        with_refs = sum(1 for shot in state.completed if self.references.get(shot, 0) > 0)
        return {"shots": state.num_shots, "completed": len(state.completed), "with_references": with_refs,
                "refined_next": self.refined_next, "evolved_entities": self.evolved_entities}


FACTS: Projection[_Facts] = Projection("evaluation facts")


@FACTS.on(MemoryRetrieved)
def _retrieved(f: _Facts, e: MemoryRetrieved, ev: RecordedEvent) -> None:
    if ev.shot is not None:
        f.references[ev.shot] = len(e.references)


@FACTS.on(KeyframeSelected)
def _selected(f: _Facts, e: KeyframeSelected, ev: RecordedEvent) -> None:
    if ev.shot is not None:
        f.keyframe_how[ev.shot] = e.how


@FACTS.on(MotionPromptRefined)
def _motion(f: _Facts, e: MotionPromptRefined, ev: RecordedEvent) -> None:
    if ev.shot is not None:
        f.motion_refined.add(ev.shot)


@FACTS.on(VideoAnalyzed)
def _analyzed(f: _Facts, e: VideoAnalyzed, ev: RecordedEvent) -> None:
    f.refined_next += e.next_prompt_after != e.next_prompt_before


@FACTS.on(EntityRegistered)
def _registered(f: _Facts, e: EntityRegistered, ev: RecordedEvent) -> None:
    f.evolved_entities += bool(e.base_entity)


@dataclass
class _Judged:
    """The judgements logged after ``StoryCompleted``: the last per shot, the first of the story."""

    shots: dict[int, RecordedEvent] = field(default_factory=dict)
    story: RecordedEvent | None = None


JUDGED: Projection[_Judged] = Projection("judgements")


@JUDGED.on(ShotJudged)
def _shot_judged(j: _Judged, e: ShotJudged, ev: RecordedEvent) -> None:
    if ev.shot is not None:
        j.shots[ev.shot] = ev


@JUDGED.on(StoryJudged)
def _story_judged(j: _Judged, e: StoryJudged, ev: RecordedEvent) -> None:
    if j.story is None:
        j.story = ev


def _summary(story_id: str, branch: str, judged: list[RecordedEvent], story: RecordedEvent | None,
             consistency: dict[str, Any] | None) -> Evaluation:
    shots = [ShotScores.from_event(e) for e in judged]
    overall = [float(s.overall) for s in shots]
    return Evaluation(story_id, branch, shots, round(float(np.mean(overall)), 4) if overall else None,
                      StoryScores.from_event(story) if story is not None else None, consistency)


def evaluate(
    ws: Workspace, story_id: str, branch: str = MAIN, *, profile: str | None = None,
    config: str | os.PathLike[str] | None = None, backends: Backends | None = None, progress: Progress | None = None,
    budget: Budget | None = None,
) -> Evaluation:
    """Judge a completed branch (shots, story, consistency); ``to_json()`` is the stable ``eval --json``.

    The judges and the embedder are the story's recorded backends unless ``profile``/``config``
    (or ``backends``) name others, e.g. a stronger VLM as judge.
    """
    store = ws.store
    progress = progress or QuietProgress()
    events = store.read(story_id, branch)
    state = fold_run_state(events)
    after = _after_completion(events)
    if after is None:
        refuse_brief_main(ws, story_id, branch, action="evaluate")
        raise RunStateError(f"{story_id}/{branch} is not complete ({len(state.completed)} of {state.num_shots} "
                            "shots); only a finished story can be judged",
                            hint=f"finish it first: `codirector resume {story_id}`" if branch == MAIN else
                            f"finish it first: `codirector run --story {story_id} --branch {branch}`")
    logged = JUDGED.fold(_Judged(), after)
    stored_story, judged = logged.story, logged.shots
    if stored_story is not None:
        out = _summary(story_id, branch, [judged[s] for s in sorted(judged)], stored_story,
                       cast(StoryJudged, stored_story.event).consistency)
        out.already_evaluated = True
        out.notes = ["this branch was already evaluated; the logged judgements are shown"]
        return out

    if backends is None:
        cfg = resolve(profile, config) if (profile or config) else RunConfig.from_settings(state.settings)
        backends = build_backends(cfg)
    settings = RunSettings.from_table(state.settings.run)
    writer = RunWriter(store, story_id, branch, head=store.branch(story_id, branch).head_position,
                       lease=ws.held(story_id, branch))
    known = recorded_answers(events)
    recorder = CallRecorder(writer, ws.blobs, backends, known=known, budget=budget)
    ctx = AgentContext(recorder, writer, settings.agent_attempts)

    facts = FACTS.fold(_Facts(), events)
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
            verdict, call = shot_judge(ctx, description=description, frames=frames, shot=clip.shot,
                                       plan=facts.shot(clip.shot, len(frames)))
            judged[clip.shot] = writer.one(ShotJudged(
                content_match=verdict.content_match, action_match=verdict.action_match,
                camera_match=verdict.camera_match, overall=verdict.overall, rationale=verdict.rationale,
                sampled_frames=len(frames),
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
    out_story, call = story_judge(ctx, story_prompt=prompt, frames=frames, plan=facts.story(state))
    story_event = writer.one(StoryJudged(
        plot_completeness=out_story.plot_completeness, character_consistency=out_story.character_consistency,
        narrative_flow=out_story.narrative_flow, overall=out_story.overall,
        strongest_aspect=out_story.strongest_aspect, weakest_aspect=out_story.weakest_aspect,
        sampled_frames=len(frames), extra={"story_prompt": prompt}, consistency=measured,
    ).at(None, cause=call.id))
    out = _summary(story_id, branch, [judged[s] for s in sorted(judged)], story_event, measured)
    out.events_written, out.calls_live, out.calls_reused = writer.written, recorder.stats.live, recorder.stats.reused
    out.notes = [] if meaningful else ["the embedder is untrained here: consistency values carry no meaning"]
    return out
