"""Quality events: rejected agent answers and the judges' scores."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from codirector.events.base import Event


class AgentOutputRejected(Event):
    """An agent's answer failed validation; the errors were fed back for the next attempt."""

    agent: str
    attempt: int
    errors: list[str]
    raw_output: str = ""
    request_key: str | None = None


class ShotJudged(Event):
    """The shot judge scored one clip against its description (1-5)."""

    content_match: int
    action_match: int
    camera_match: int
    overall: int
    rationale: str
    sampled_frames: int = 0


class StoryJudged(Event):
    """The story judge scored the assembled video against the story (1-5)."""

    plot_completeness: int
    character_consistency: int
    narrative_flow: int
    overall: int
    strongest_aspect: str
    weakest_aspect: str
    sampled_frames: int = 0
    extra: dict[str, Any] = Field(default_factory=dict)
    consistency: dict[str, Any] | None = None  # the cross-shot consistency metric measured with it
