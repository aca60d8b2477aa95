"""Story and branch events: what was asked for and how far the run got.

A story's first event is ``StoryCreated`` on branch ``main``; it carries everything needed to
resume or replay the run (the normalised story spec and the run settings, never secrets), typed
by ``events.specs`` and stored exactly as they were before those types existed.

``StoryForgotten`` hides a story that never completed a shot from listings; nothing is deleted. It
is the one event of a branch of its own (``forgotten~N``, forked at main's head when forgotten), so
main's log, and every run, resume and replay of it, stay exactly as they were; once main grows past
that fork (the story was continued) it is listed again.

A branch's run is versioned (``engine.loop.patches``): the event that creates the branch
(``StoryCreated`` for main, ``BranchCreated`` for a fork) names the release that created it and the
loop patches its run keeps (``codirector``, ``loop_patches``); ``RunSegmentStarted`` records where a
later segment of the run took over on another release. Events written before runs were versioned
lack both fields and are stored and re-sealed exactly as they were.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from codirector.events.base import Event
from codirector.events.specs import BranchPlan, Evolution, RecordedSettings, SpecRecord, StoryRecord


def _unset(value: object) -> bool:
    return value is None


class StoryCreated(Event):
    """A story was started from a story file (or a brief), by release ``codirector``; main's run keeps
    ``loop_patches`` (both absent from stories created before runs were versioned)."""

    title: str
    seed: int
    spec: SpecRecord = Field(default_factory=StoryRecord)
    settings: RecordedSettings = Field(default_factory=RecordedSettings)
    codirector: str | None = Field(default=None, exclude_if=_unset)
    loop_patches: list[str] | None = Field(default=None, exclude_if=_unset)


class ShotPlanned(Event):
    """The plan for one shot: the keyframe prompt q0 and the motion prompt m0."""

    keyframe_prompt: str
    motion_prompt: str
    uses: list[str] = Field(default_factory=list)
    evolves: list[Evolution] = Field(default_factory=list)
    group: str | None = None
    planner: str = "story file"


class ShotPlanRevised(Event):
    """A planned shot was changed before it ran (a branch override, a user edit): its keyframe or
    motion prompt (text), or the entities it declares, ``uses`` (names) or ``evolves`` (states).

    ``keeps_continuity``: the loop's own refinement of the shot's keyframe prompt still applies to
    the new text (what the video analyzer appended to the prompt it refined, e.g. "Keep the look of
    ...", or its rewrite of the new text itself); recorded False before 2026-12-07, when the new text
    replaced every refinement.
    """

    field: str
    before: str | list[Any]
    after: str | list[Any]
    reason: str
    keeps_continuity: bool = Field(default=False, exclude_if=lambda kept: not kept)  # False: stored as before


class BranchCreated(Event):
    """This branch was forked from ``parent`` after ``fork_position`` (shots >= from_shot run anew), by release
    ``codirector``; its run keeps ``loop_patches`` (both absent from branches created before runs were versioned)."""

    name: str
    parent: str
    fork_position: int
    from_shot: int | None = None
    overrides: dict[str, str] = Field(default_factory=dict)
    plan: BranchPlan = Field(default_factory=BranchPlan)  # a branch's own plan context (a director pull's cast)
    codirector: str | None = Field(default=None, exclude_if=_unset)
    loop_patches: list[str] | None = Field(default=None, exclude_if=_unset)


class ShotStarted(Event):
    """Shot generation began with this keyframe prompt q_t (after any inter-shot refinement)."""

    keyframe_prompt: str
    motion_prompt: str


class ShotCompleted(Event):
    """A shot's keyframe and clip are final."""

    keyframe_blob: str
    video_blob: str
    frames: int
    fps: float
    keyframe_round: int


class StoryCompleted(Event):
    """Every planned shot of the branch is complete."""

    shots: int
    frames: int


class RunSegmentStarted(Event):
    """A segment of this branch's run (a resume, a ``run --branch``) began here on release ``codirector``, another
    release than the last one recorded (the branch's creation names the first), or a run begun before runs were
    versioned went on; the run keeps ``patches`` (``engine.loop.patches``). A run mark: re-running never produces it."""

    codirector: str
    patches: list[str] = Field(default_factory=list)


class StoryForgotten(Event):
    """The user hid this story from listings (``codirector forget``); it had completed no shot. Its log stays."""

    shots_started: int = 0
    events: int = 0  # how many events the story held when it was forgotten
