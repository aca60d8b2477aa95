"""The director view of a brief and the side-by-side comparison of two branches.

Director view: per round (pull) the configuration per dimension and the rule that chose each arm,
the UCB scores the bandit saw when it chose, the judge's rewards, and the final ranking; a chart
of the rewards each arm received. Comparison: two branches from their fork, shot by shot, with
their memory and cost.

Invariants:
- The director view is a fold of the brief's typed, upcast events (``DIRECTOR`` below, the
  ``views.projection`` dispatch style); arm statistics come from the bandit's own fold
  (``director.bandit.fold``), so the chart shows exactly the means the bandit chose with.
- The comparison is what ``Studio.diff`` says (``views.diff.diff_fork``: where the branches part, each
  shot's outcome, memory), each branch's ``Studio.cost`` and ``Studio.memory``, and the typed
  ``KeyframeJudged`` events after the fork. The two branches are read once, as a ``Fork`` (their
  shared prefix once, then each tail), and the diff, both costs and the verdicts come from that read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from codirector.engine.director import bandit
from codirector.engine.studio import Studio
from codirector.engine.views.cost import CostReport
from codirector.engine.views.diff import BranchDiff, Fork, ShotOutcome, diff_fork
from codirector.engine.views.projection import Projection
from codirector.errors import InvalidArgument
from codirector.events import (
    BranchRanked,
    DirectionChosen,
    KeyframeJudged,
    RecordedEvent,
    RewardObserved,
    StoryCreated,
)
from codirector.events.arms import DIMENSIONS
from codirector.serve.pages import StoryRow, find_branch, find_story
from codirector.store.event_store import MAIN

DIRECTOR_TYPES = ["DirectionChosen", "RewardObserved", "BranchRanked"]


@dataclass
class Round:
    """One pull: its configuration, why each arm, the UCB table it was chosen from, and its rewards."""

    iteration: int
    branch: str
    arms: dict[str, str]
    rules: dict[str, str]
    scores: dict[str, dict[str, dict[str, Any]]]  # dimension -> arm -> {pulls, mean, bonus, score}
    execution: float | None = None
    efficacy: dict[str, float] = field(default_factory=dict)
    criteria: dict[str, float] = field(default_factory=dict)
    feedback: str = ""
    rank: int | None = None
    score: float | None = None


@dataclass
class _Direction:
    rounds: dict[int, Round] = field(default_factory=dict)
    best_branch: str | None = None
    rule: str = ""


DIRECTOR: Projection[_Direction] = Projection("director view")


@DIRECTOR.on(DirectionChosen)
def _chosen(d: _Direction, e: DirectionChosen, ev: RecordedEvent) -> None:
    dims = e.why.get("dimensions", {}) if isinstance(e.why, dict) else {}
    d.rounds[e.iteration] = Round(
        e.iteration, e.branch, dict(e.arms), {k: str(v.get("rule", "")) for k, v in dims.items()},
        {k: dict(v.get("scores", {})) for k, v in dims.items()})


@DIRECTOR.on(RewardObserved)
def _rewarded(d: _Direction, e: RewardObserved, ev: RecordedEvent) -> None:
    r = d.rounds.get(e.iteration)
    if r is not None:
        r.execution, r.efficacy, r.criteria, r.feedback = e.execution, dict(e.efficacy), dict(e.criteria), e.feedback


@DIRECTOR.on(BranchRanked)
def _ranked(d: _Direction, e: BranchRanked, ev: RecordedEvent) -> None:
    d.best_branch, d.rule = e.best_branch, e.rule
    for row in e.ranking:
        r = d.rounds.get(int(row.get("iteration", 0)))
        if r is not None:
            r.rank, r.score = int(row["rank"]), float(row["score"])


@dataclass(frozen=True)
class ArmBar:
    """An arm in the chart: its pulls, mean reward and every reward it received."""

    arm: str
    pulls: int
    mean: float
    rewards: tuple[float, ...]


@dataclass(frozen=True)
class DirectorPage:
    story: StoryRow
    rounds: tuple[Round, ...]
    arms: dict[str, tuple[ArmBar, ...]]  # dimension -> its arms, in the bandit's order
    best_branch: str | None
    rule: str
    planned_iterations: int


def director_page(studio: Studio, story_id: str) -> DirectorPage:
    """The Co-Director's rounds, rewards and ranking for a brief."""
    story = find_story(studio, story_id)
    if story.kind != "brief":
        raise InvalidArgument(f"{story_id!r} is a story, not an advertising brief: it has no director view",
                              hint="open its timeline instead")
    events = studio.log(story_id, MAIN, types=DIRECTOR_TYPES)
    view = DIRECTOR.fold(_Direction(), events)
    state = bandit.fold(events)
    arms: dict[str, tuple[ArmBar, ...]] = {}
    for dim, choices in DIMENSIONS.items():
        got = {a: [p.rewards[dim] for p in sorted(state.pulls.values(), key=lambda p: p.iteration)
                   if p.rewards is not None and p.arms.get(dim) == a] for a in choices}
        arms[dim] = tuple(ArmBar(a, state.stats[dim][a].pulls, state.stats[dim][a].mean, tuple(got[a]))
                          for a in choices)
    created = studio.log(story_id, MAIN, limit=1)
    first = created[0].event if created and created[0].type == "StoryCreated" else None
    director = first.settings.director if isinstance(first, StoryCreated) else None
    planned = director.iterations if director is not None else 0
    return DirectorPage(story, tuple(view.rounds[i] for i in sorted(view.rounds)), arms, view.best_branch, view.rule,
                        planned)


# ---------------------------------------------------------------------- two branches side by side


@dataclass(frozen=True)
class Judged:
    """One keyframe round's verdict (``KeyframeJudged``)."""

    round: int
    decision: str


@dataclass(frozen=True)
class ComparedShot:
    shot: int
    same: bool
    a: ShotOutcome | None
    b: ShotOutcome | None
    rounds_a: tuple[Judged, ...]
    rounds_b: tuple[Judged, ...]


@dataclass(frozen=True)
class ComparePage:
    story: StoryRow
    a: str
    b: str
    diff: BranchDiff
    shared_shots: tuple[int, ...]  # identical on both (before the first differing shot)
    shots: tuple[ComparedShot, ...]  # from the first differing shot on
    cost_a: CostReport
    cost_b: CostReport
    entities_a: int
    entities_b: int


def verdicts(events: Iterable[RecordedEvent], after: int) -> dict[int, tuple[Judged, ...]]:
    """Per shot, the keyframe rounds' decisions logged after position ``after`` (typed, upcast events)."""
    out: dict[int, list[Judged]] = {}
    for ev in events:
        e = ev.event if ev.type == "KeyframeJudged" and ev.position > after else None
        if ev.shot is not None and isinstance(e, KeyframeJudged):
            out.setdefault(ev.shot, []).append(Judged(e.round, e.decision))
    return {shot: tuple(rounds) for shot, rounds in out.items()}


def compare_page(studio: Studio, story_id: str, a: str, b: str) -> ComparePage:
    """Branches ``a`` and ``b`` from where they part: their diff, each branch's cost and memory, and the
    keyframe decisions logged after the fork; both branches read once (see the module docstring)."""
    story = find_story(studio, story_id)
    find_branch(story, a)
    find_branch(story, b)
    fork = Fork.read(studio.store, story_id, a, b)
    diff = diff_fork(fork, story_id, a, b)
    first = diff.first_differing_shot
    shared = tuple(s.shot for s in diff.shots if first is None or s.shot < first)
    judged_a = verdicts(fork.tail_a, diff.parted_at_position)
    judged_b = verdicts(fork.tail_b, diff.parted_at_position)
    shots = tuple(ComparedShot(s.shot, s.same, s.in_a, s.in_b, judged_a.get(s.shot, ()), judged_b.get(s.shot, ()))
                  for s in diff.shots if first is not None and s.shot >= first)
    return ComparePage(story, a, b, diff, shared, shots, studio.cost(story_id, a, events=fork.events_a),
                       studio.cost(story_id, b, events=fork.events_b),
                       len(studio.memory(story_id, a)), len(studio.memory(story_id, b)))


__all__ = ["DIRECTOR", "ArmBar", "ComparePage", "ComparedShot", "DirectorPage", "Judged", "Round", "compare_page",
           "director_page", "verdicts"]
