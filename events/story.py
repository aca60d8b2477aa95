"""Story and branch events: what was asked for and how far the run got.

A story's first event is ``StoryCreated`` on branch ``main``; it carries everything needed to
resume or replay the run (the normalised story spec and the run settings, never secrets), typed
by ``events.specs`` and stored exactly as they were before those types existed.

``StoryForgotten`` hides a story that never completed a shot from listings; nothing is deleted. It
is the one event of a branch of its own (``forgotten~N``, forked at main's head when forgotten), so
main's log, and every run, resume and replay of it, stay exactly as they were; once main grows past
that fork (the story was continued) it is listed again.

``RunSegmentStarted`` records which release ran each segment of a branch's run and with which loop
patches, so a run begun on one release resumes with the same loop behaviour on the next.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from codirector.events.base import Event
from codirector.events.specs import BranchPlan, Evolution, RecordedSettings, SpecRecord, StoryRecord


class StoryCreated(Event):
    """A story was started from a story file (or a brief)."""

    title: str
    seed: int
    spec: SpecRecord = Field(default_factory=StoryRecord)
    settings: RecordedSettings = Field(default_factory=RecordedSettings)


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
    """This branch was forked from ``parent`` after ``fork_position`` (shots >= from_shot run anew)."""

    name: str
    parent: str
    fork_position: int
    from_shot: int | None = None
    overrides: dict[str, str] = Field(default_factory=dict)
    plan: BranchPlan = Field(default_factory=BranchPlan)  # a branch's own plan context (a director pull's cast)


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
    """A run of this branch (a first run, a resume, a ``run --branch``) began here, on release ``codirector``,
    with these loop ``patches`` (``engine.loop.patches``). A run mark: re-running the branch never produces it."""

    codirector: str
    patches: list[str] = Field(default_factory=list)


class StoryForgotten(Event):
    """The user hid this story from listings (``codirector forget``); it had completed no shot. Its log stays."""

    shots_started: int = 0
    events: int = 0  # how many events the story held when it was forgotten
