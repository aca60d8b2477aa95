"""What a director run reports: its pulls, the final ranking and the winner, read from main's log.

Invariant: every value here is computed from the brief's main branch (``DirectionChosen``,
``RewardObserved``, ``BranchRanked``) and the bandit's fold of it; nothing is kept beside the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from codirector.engine.director.bandit import BanditState
from codirector.engine.recording.recorder import CallStats
from codirector.engine.views.cost import Spend
from codirector.events import RecordedEvent


@dataclass
class PullSummary:
    """One pull as main's log tells it: its branch and arms, the rule that chose each arm, the judge's reward."""

    iteration: int
    branch: str
    arms: dict[str, str]
    why: dict[str, str | None]  # per dimension, the rule that chose the arm
    execution: float | None = None  # None until the pull is judged
    efficacy: dict[str, float] | None = None
    primary_fault: str | None = None
    feedback: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "branch": self.branch, "arms": dict(self.arms), "why": dict(self.why),
                "execution": self.execution, "efficacy": self.efficacy, "primary_fault": self.primary_fault,
                "feedback": self.feedback}


@dataclass
class RankedBranch:
    """A place in the final ranking (``BranchRanked``): rank 1 is the best branch."""

    rank: int
    branch: str
    iteration: int
    arms: dict[str, str]
    score: float
    execution: float | None
    rewards: dict[str, float]

    @classmethod
    def from_payload(cls, row: dict[str, Any]) -> RankedBranch:
        return cls(int(row["rank"]), str(row["branch"]), int(row["iteration"]), dict(row.get("arms", {})),
                   float(row["score"]), row.get("execution"), dict(row.get("rewards") or {}))

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "branch": self.branch, "iteration": self.iteration, "arms": dict(self.arms),
                "score": self.score, "execution": self.execution, "rewards": dict(self.rewards)}


@dataclass
class DirectorResult:
    """What a director run did: the pulls with their rewards, the ranking and the winner."""

    story_id: str
    iterations: int
    pulls: list[PullSummary]
    ranking: list[RankedBranch]
    best_branch: str | None
    bandit: BanditState
    calls: CallStats
    notes: list[str] = field(default_factory=list)
    spend: Spend | None = None  # USD per branch (main: the director's own calls), from the log

    @property
    def completed(self) -> bool:
        return self.best_branch is not None

    def to_json(self) -> dict[str, Any]:
        return {"story": self.story_id, "iterations": self.iterations, "completed": self.completed,
                "best_branch": self.best_branch, "pulls": [p.to_json() for p in self.pulls],
                "ranking": [r.to_json() for r in self.ranking], "bandit": self.bandit.to_json(),
                "model_calls": {"live": self.calls.live, "reused": self.calls.reused,
                                "matched_from_log": self.calls.matched, "by_kind": self.calls.by_kind},
                "notes": self.notes, "cost": None if self.spend is None else self.spend.to_json()}


def pull_summaries(events: list[RecordedEvent]) -> list[PullSummary]:
    """Per pull, from main's log: the branch, arms and rules that chose them, and the judge's reward."""
    rewards = {e.payload["iteration"]: e.payload for e in events if e.type == "RewardObserved"}
    out = []
    for e in events:
        if e.type != "DirectionChosen":
            continue
        p = e.payload
        reward = rewards.get(p["iteration"], {})
        out.append(PullSummary(p["iteration"], p["branch"], p["arms"],
                               {d: w.get("rule") for d, w in p["why"].get("dimensions", {}).items()},
                               reward.get("execution"), reward.get("efficacy"), reward.get("primary_fault"),
                               reward.get("feedback")))
    return out
