"""Run state as a fold of the log: the plan, each shot's progress, and the next prompts.

Like memory, this is a projection: the plan is the ``ShotPlanned`` events with their
``ShotPlanRevised`` overrides (prompts, and the ``uses``/``evolves`` a shot declares); the prompt a
shot starts from is its plan, replaced by the video analyzer's refinement of it
(``VideoAnalyzed.next_prompt_after``) and then by any override. An override that keeps the loop's
continuity (``keeps_continuity``, every override since 2026-12-07) is itself refined: by the
analyzer's rewrite of it when the analyzer ran after it, else by the line the analyzer had appended
to the prompt it replaced ("Keep the look of ..."); an older override replaces every refinement,
as it did when it was recorded. A shot is complete when ``ShotCompleted`` is logged.

Invariants: the fold reads typed, upcast events through the ``RUN_STATE`` projection (the same
dispatch style as memory); a running loop never changes a ``RunState`` by hand: a listener on the
run writer applies each event written or matched (``engine.loop.context``), so the state the loop
reasons about is always the fold of what the log holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from codirector.engine.views.projection import Projection
from codirector.errors import RunStateError
from codirector.events import (
    BranchCreated,
    RecordedEvent,
    ShotCompleted,
    ShotPlanned,
    ShotPlanRevised,
    ShotStarted,
    StoryCompleted,
    StoryCreated,
    VideoAnalyzed,
)
from codirector.events.specs import Evolution, RecordedSettings, SpecRecord, StoryRecord


@dataclass
class PlannedShot:
    """One shot of the plan: q0, m0 and the plan hints."""

    shot: int
    keyframe_prompt: str
    motion_prompt: str
    uses: list[str] = field(default_factory=list)
    evolves: list[Evolution] = field(default_factory=list)
    group: str | None = None


@dataclass
class RunState:
    """What the log says about a branch's run."""

    story_id: str = ""
    title: str = ""
    seed: int = 0
    spec: SpecRecord = field(default_factory=StoryRecord)  # with a branch's own cast (``BranchCreated.plan``)
    settings: RecordedSettings = field(default_factory=RecordedSettings)
    plan: dict[int, PlannedShot] = field(default_factory=dict)
    next_prompt: dict[int, str] = field(default_factory=dict)   # refined by the video analyzer
    refined_from: dict[int, tuple[int, str]] = field(default_factory=dict)  # shot -> (position, prompt it refined)
    overrides: dict[int, dict[str, Any]] = field(default_factory=dict)
    continuity_kept: dict[int, int] = field(default_factory=dict)  # shot -> position of its override keeping it
    started: dict[int, int] = field(default_factory=dict)       # shot -> position of ShotStarted
    started_prompt: dict[int, str] = field(default_factory=dict)  # shot -> the prompt it started from
    completed: dict[int, dict[str, Any]] = field(default_factory=dict)
    story_completed: bool = False
    branch_created: BranchCreated | None = None

    @property
    def num_shots(self) -> int:
        return len(self.plan)

    def keyframe_prompt(self, shot: int) -> str:
        """The prompt shot ``shot`` starts from: override (refined as the module says), else refined,
        else planned."""
        override = self.overrides.get(shot, {}).get("keyframe")
        if override is None:
            return self.next_prompt.get(shot, self.plan[shot].keyframe_prompt)
        kept_at = self.continuity_kept.get(shot)
        if kept_at is None or shot not in self.next_prompt:
            return str(override)
        refined = self.next_prompt[shot]
        refined_at, refined_text = self.refined_from[shot]
        if refined_at > kept_at:
            return refined  # the analyzer refined the new text itself
        line = refined[len(refined_text):] if refined.startswith(refined_text) else ""
        return f"{override}{line}"

    def motion_prompt(self, shot: int) -> str:
        return str(self.overrides.get(shot, {}).get("motion", self.plan[shot].motion_prompt))

    def uses(self, shot: int) -> list[str]:
        """The entities shot ``shot`` declares it shows: overridden, else planned."""
        return list(self.overrides.get(shot, {}).get("uses", self.plan[shot].uses))

    def evolves(self, shot: int) -> list[Evolution]:
        """The evolved states shot ``shot`` declares first: overridden, else planned."""
        override = self.overrides.get(shot, {}).get("evolves")
        if override is None:
            return list(self.plan[shot].evolves)
        return [Evolution.model_validate(e) for e in override]  # an override's states, stored as in a story file

    def fork_position_for(self, shot: int) -> int:
        """The position just before ``shot`` started (what a branch from that shot forks after)."""
        if shot not in self.started:
            reached = max(self.started, default=0)
            raise RunStateError(
                f"shot {shot} has not started on this branch (it reached shot {reached} of {self.num_shots})",
                hint=f"branch from a shot between 1 and {reached}" if reached else "run the story first",
            )
        return self.started[shot] - 1


RUN_STATE: Projection[RunState] = Projection("run state")


@RUN_STATE.on(StoryCreated)
def _story_created(state: RunState, e: StoryCreated, ev: RecordedEvent) -> None:
    state.story_id, state.title, state.seed = ev.story_id, e.title, e.seed
    state.spec, state.settings = e.spec, e.settings


@RUN_STATE.on(ShotPlanned)
def _shot_planned(state: RunState, e: ShotPlanned, ev: RecordedEvent) -> None:
    if ev.shot is not None:
        state.plan[ev.shot] = PlannedShot(ev.shot, e.keyframe_prompt, e.motion_prompt, list(e.uses),
                                          list(e.evolves), e.group)


@RUN_STATE.on(ShotPlanRevised)
def _plan_revised(state: RunState, e: ShotPlanRevised, ev: RecordedEvent) -> None:
    if ev.shot is not None:
        state.overrides.setdefault(ev.shot, {})[e.field] = e.after
        if e.field == "keyframe":
            if e.keeps_continuity:
                state.continuity_kept[ev.shot] = ev.position
            else:
                state.continuity_kept.pop(ev.shot, None)


@RUN_STATE.on(VideoAnalyzed)
def _video_analyzed(state: RunState, e: VideoAnalyzed, ev: RecordedEvent) -> None:
    if e.next_shot is not None and e.next_prompt_after is not None:
        state.next_prompt[e.next_shot] = e.next_prompt_after
        state.refined_from[e.next_shot] = (ev.position, e.next_prompt_before or "")


@RUN_STATE.on(ShotStarted)
def _shot_started(state: RunState, e: ShotStarted, ev: RecordedEvent) -> None:
    if ev.shot is not None:
        state.started[ev.shot] = ev.position
        state.started_prompt[ev.shot] = e.keyframe_prompt


@RUN_STATE.on(ShotCompleted)
def _shot_completed(state: RunState, e: ShotCompleted, ev: RecordedEvent) -> None:
    if ev.shot is not None:
        state.completed[ev.shot] = e.payload()


@RUN_STATE.on(StoryCompleted)
def _story_completed(state: RunState, e: StoryCompleted, ev: RecordedEvent) -> None:
    state.story_completed = True


@RUN_STATE.on(BranchCreated)
def _branch_created(state: RunState, e: BranchCreated, ev: RecordedEvent) -> None:
    state.branch_created = e
    if e.plan.cast:
        known = {m.name for m in state.spec.cast}
        state.spec = state.spec.model_copy(
            update={"cast": [*state.spec.cast, *(m for m in e.plan.cast if m.name not in known)]})


def fold_run_state(events: Iterable[RecordedEvent], initial: RunState | None = None) -> RunState:
    """The run state after ``events`` (a branch read through its lineage), from ``initial`` if given."""
    return RUN_STATE.fold(initial if initial is not None else RunState(), events)
