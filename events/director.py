"""Director events: the Co-Director bandit's pulls, rewards and ranking, on the brief's story."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from codirector.events.base import Event


class DirectionChosen(Event):
    """One bandit pull chose an arm per dimension for a new branch."""

    iteration: int
    branch: str
    arms: dict[str, str]
    why: dict[str, Any] = Field(default_factory=dict)
    recommended: dict[str, str] = Field(default_factory=dict)  # the warm start the cold-start phase follows


class RewardObserved(Event):
    """The judge scored a pull's branch; each dimension's arm is updated with its own score."""

    iteration: int
    branch: str
    execution: float
    criteria: dict[str, float] = Field(default_factory=dict)
    efficacy: dict[str, float] = Field(default_factory=dict)
    primary_fault: str | None = None
    feedback: str = ""
    rationales: dict[str, str] = Field(default_factory=dict)  # the efficacy judge's reason, per dimension
    sampled_frames: int = 0


class BranchRanked(Event):
    """The explored branches were ranked by reward; the first is the winner."""

    ranking: list[dict[str, Any]]
    best_branch: str
    rule: str = ""  # how the ranking was ordered
