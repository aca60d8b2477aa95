"""Run state as a fold of the log: the plan, each shot's progress, and the next prompts.

Like memory, this is a projection: the plan is the ``ShotPlanned`` events with their
``ShotPlanRevised`` overrides; the prompt a shot starts from is its plan, replaced by the video
analyzer's refinement of it (``VideoAnalyzed.next_prompt_after``) and then by any override;
a shot is complete when ``ShotCompleted`` is logged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from codirector.errors import RunStateError
from codirector.events import RecordedEvent


@dataclass
class PlannedShot:
    """One shot of the plan: q0, m0 and the plan hints."""

    shot: int
    keyframe_prompt: str
    motion_prompt: str
    uses: list[str] = field(default_factory=list)
    evolves: list[dict[str, Any]] = field(default_factory=list)
    group: str | None = None


@dataclass
class RunState:
    """What the log says about a branch's run."""

    story_id: str = ""
    title: str = ""
    seed: int = 0
    spec: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    plan: dict[int, PlannedShot] = field(default_factory=dict)
    next_prompt: dict[int, str] = field(default_factory=dict)   # refined by the video analyzer
    overrides: dict[int, dict[str, str]] = field(default_factory=dict)
    started: dict[int, int] = field(default_factory=dict)       # shot -> position of ShotStarted
    started_prompt: dict[int, str] = field(default_factory=dict)  # shot -> the prompt it started from
    completed: dict[int, dict[str, Any]] = field(default_factory=dict)
    story_completed: bool = False
    branch_created: dict[str, Any] | None = None

    @property
    def num_shots(self) -> int:
        return len(self.plan)

    def keyframe_prompt(self, shot: int) -> str:
        """The prompt shot ``shot`` starts from: override, else refined, else planned."""
        override = self.overrides.get(shot, {}).get("keyframe")
        if override is not None:
            return override
        return self.next_prompt.get(shot, self.plan[shot].keyframe_prompt)

    def motion_prompt(self, shot: int) -> str:
        return self.overrides.get(shot, {}).get("motion", self.plan[shot].motion_prompt)

    def fork_position_for(self, shot: int) -> int:
        """The position just before ``shot`` started (what a branch from that shot forks after)."""
        if shot not in self.started:
            reached = max(self.started, default=0)
            raise RunStateError(
                f"shot {shot} has not started on this branch (it reached shot {reached} of {self.num_shots})",
                hint=f"branch from a shot between 1 and {reached}" if reached else "run the story first",
            )
        return self.started[shot] - 1


def fold_run_state(events: Iterable[RecordedEvent]) -> RunState:
    """The run state after ``events`` (a branch read through its lineage)."""
    state = RunState()
    for ev in events:
        p, t = ev.payload, ev.type
        if t == "StoryCreated":
            state.story_id, state.title, state.seed = ev.story_id, p["title"], p["seed"]
            state.spec, state.settings = p.get("spec", {}), p.get("settings", {})
        elif t == "ShotPlanned" and ev.shot is not None:
            state.plan[ev.shot] = PlannedShot(ev.shot, p["keyframe_prompt"], p["motion_prompt"],
                                              list(p.get("uses", [])), list(p.get("evolves", [])), p.get("group"))
        elif t == "ShotPlanRevised" and ev.shot is not None:
            state.overrides.setdefault(ev.shot, {})[p["field"]] = p["after"]
        elif t == "VideoAnalyzed" and p.get("next_shot") is not None and p.get("next_prompt_after") is not None:
            state.next_prompt[int(p["next_shot"])] = p["next_prompt_after"]
        elif t == "ShotStarted" and ev.shot is not None:
            state.started[ev.shot] = ev.position
            state.started_prompt[ev.shot] = p["keyframe_prompt"]
        elif t == "ShotCompleted" and ev.shot is not None:
            state.completed[ev.shot] = dict(p)
        elif t == "StoryCompleted":
            state.story_completed = True
        elif t == "BranchCreated":
            state.branch_created = dict(p)
            extra_cast = p.get("plan", {}).get("cast", [])
            if extra_cast:
                known = {m["name"] for m in state.spec.get("cast", [])}
                state.spec = {**state.spec,
                              "cast": [*state.spec.get("cast", []), *(m for m in extra_cast if m["name"] not in known)]}
    return state
