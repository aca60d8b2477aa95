"""The Co-Director bandit: one bandit per creative dimension, its state a fold of the director's events.

A creative configuration picks one arm in each of three dimensions (``DIMENSIONS``). Each
dimension keeps its own statistics and chooses on its own:

1. cold start: an arm never rewarded is pulled first: the warm-start recommendation if it is
   untried, else an untried arm drawn by a generator seeded from (seed, iteration, dimension);
2. then UCB: ``score = mean + c * sqrt(ln N_dim / n_arm)`` with ``c = 50`` on 0-100 rewards
   (``N_dim`` = rewarded pulls of the dimension, ``n_arm`` = those of the arm). Ties (scores
   within 1e-9) go to the arm with fewer pulls, then to the earlier arm in ``DIMENSIONS`` order;
   or epsilon-greedy (the alternative): with probability ``epsilon`` (seeded as above) a
   uniformly drawn arm, else the best mean with the same tie-breaking.

Each dimension's arm is rewarded with the judge's efficacy score for that dimension, or with the
execution score when the judge gave none for it.

Invariants: everything here is pure and deterministic (no clock, no global random state). The
state is ``fold(events)`` over ``DirectionChosen`` / ``RewardObserved`` (other events are
ignored), so the director's state after a crash is rebuilt exactly from the log; ``apply``
returns a new state and never mutates its argument.

Parallel pulls (``direct --parallel P``, docs/architecture.md §10): the P choices of a round are made on the
statistics at the round's start (``before``) with the pulls already chosen in the round counted as
pending (``with_pending``: the arm's count +1 at its current mean), so they spread over arms and
remain a pure function of the log.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from codirector.errors import RunStateError, did_you_mean
from codirector.events import DirectionChosen, Event, RecordedEvent, RewardObserved
from codirector.events.arms import DIMENSIONS as DIMENSIONS  # the one table of arms (re-exported here)
from codirector.events.specs import DirectorSettings

POLICIES = ("ucb", "epsilon_greedy")
DEFAULT_C = float(DirectorSettings().c)
DEFAULT_EPSILON = float(DirectorSettings().epsilon)
_TIE = 1e-9


def check_arms(arms: Mapping[str, str], *, what: str = "arms") -> dict[str, str]:
    """``arms`` as a full configuration (one known arm per dimension), or ``RunStateError`` saying what is wrong."""
    for dim in arms:
        if dim not in DIMENSIONS:
            raise RunStateError(f"{what}: unknown dimension {dim!r}", hint=did_you_mean(dim, DIMENSIONS, "dimension"))
    out: dict[str, str] = {}
    for dim, choices in DIMENSIONS.items():
        if dim not in arms:
            raise RunStateError(f"{what}: no arm for dimension {dim!r}", hint=f"choose one of {', '.join(choices)}")
        if arms[dim] not in choices:
            raise RunStateError(f"{what}: {arms[dim]!r} is not an arm of {dim!r}",
                                hint=did_you_mean(arms[dim], choices, "arm"))
        out[dim] = arms[dim]
    return out


@dataclass(frozen=True)
class ArmStats:
    """The rewards one arm has received."""

    pulls: int = 0
    total: float = 0.0

    @property
    def mean(self) -> float:
        return self.total / self.pulls if self.pulls else 0.0


@dataclass(frozen=True)
class Pull:
    """One bandit pull: the configuration chosen for a branch and, once judged, its rewards."""

    iteration: int
    branch: str
    arms: dict[str, str]
    execution: float | None = None
    rewards: dict[str, float] | None = None  # per dimension, after the fallback to the execution score

    @property
    def rewarded(self) -> bool:
        return self.rewards is not None

    @property
    def score(self) -> float | None:
        """The ranking score: the mean of the execution score and the mean of the dimension rewards."""
        if self.rewards is None or self.execution is None:
            return None
        return (self.execution + sum(self.rewards.values()) / len(self.rewards)) / 2


@dataclass(frozen=True)
class BanditState:
    """Per-dimension arm statistics and every pull so far (by iteration)."""

    stats: dict[str, dict[str, ArmStats]] = field(
        default_factory=lambda: {dim: {arm: ArmStats() for arm in arms} for dim, arms in DIMENSIONS.items()})
    pulls: dict[int, Pull] = field(default_factory=dict)
    recommended: dict[str, str] | None = None  # the warm start (from the first DirectionChosen)

    @property
    def pending(self) -> Pull | None:
        """The pull chosen but not yet rewarded (a director interrupted mid-pull), if any."""
        waiting = [p for p in self.pulls.values() if not p.rewarded]
        return min(waiting, key=lambda p: p.iteration) if waiting else None

    @property
    def next_iteration(self) -> int:
        return max(self.pulls, default=0) + 1

    def dimension_pulls(self, dim: str) -> int:
        return sum(s.pulls for s in self.stats[dim].values())

    def to_json(self) -> dict[str, Any]:
        """A stable, comparable form (what ``direct --json`` shows and the tests compare)."""
        return {
            "stats": {dim: {arm: {"pulls": s.pulls, "total": round(s.total, 9), "mean": round(s.mean, 9)}
                            for arm, s in arms.items()} for dim, arms in self.stats.items()},
            "pulls": [{"iteration": p.iteration, "branch": p.branch, "arms": dict(p.arms), "execution": p.execution,
                       "rewards": dict(p.rewards) if p.rewards is not None else None}
                      for p in sorted(self.pulls.values(), key=lambda p: p.iteration)],
            "recommended": dict(self.recommended) if self.recommended else None,
        }


def dimension_rewards(execution: float, efficacy: Mapping[str, float | None]) -> dict[str, float]:
    """Each dimension's reward: its own efficacy score, else the execution score."""
    out: dict[str, float] = {}
    for dim in DIMENSIONS:
        value = efficacy.get(dim)
        out[dim] = float(value) if value is not None else float(execution)
    return out


def apply(state: BanditState, event: Event) -> BanditState:
    """The state after one event (a new state; events other than the director's change nothing)."""
    if isinstance(event, DirectionChosen):
        if event.iteration in state.pulls:
            raise RunStateError(f"iteration {event.iteration} was chosen twice in the log",
                                hint="the director log is damaged; `codirector verify` checks it")
        arms = check_arms(event.arms, what=f"DirectionChosen of iteration {event.iteration}")
        recommended = state.recommended
        if recommended is None and event.recommended:
            recommended = dict(event.recommended)
        return replace(state, pulls={**state.pulls, event.iteration: Pull(event.iteration, event.branch, arms)},
                       recommended=recommended)
    if isinstance(event, RewardObserved):
        pull = state.pulls.get(event.iteration)
        if pull is None or pull.branch != event.branch:
            raise RunStateError(f"a reward for iteration {event.iteration} ({event.branch!r}) has no matching "
                                "DirectionChosen", hint="the director log is damaged; `codirector verify` checks it")
        if pull.rewarded:
            return state  # a repeated judgement never counts twice
        rewards = dimension_rewards(event.execution, event.efficacy)
        stats = {dim: dict(arms) for dim, arms in state.stats.items()}
        for dim, arm in pull.arms.items():
            old = stats[dim][arm]
            stats[dim][arm] = ArmStats(old.pulls + 1, old.total + rewards[dim])
        done = replace(pull, execution=float(event.execution), rewards=rewards)
        return replace(state, stats=stats, pulls={**state.pulls, event.iteration: done})
    return state


def fold(events: Iterable[RecordedEvent | Event]) -> BanditState:
    """The bandit state after ``events`` (recorded events of a brief's main branch, or domain events)."""
    state = BanditState()
    for ev in events:
        if isinstance(ev, RecordedEvent):
            if ev.type not in ("DirectionChosen", "RewardObserved"):
                continue
            state = apply(state, ev.event)
        else:
            state = apply(state, ev)
    return state


def before(state: BanditState, iteration: int) -> BanditState:
    """The statistics as they stood when round ``iteration`` began: only rewards of earlier pulls count
    (the pulls themselves, and the warm start, are kept)."""
    stats = {dim: {arm: ArmStats() for arm in arms} for dim, arms in DIMENSIONS.items()}
    for p in sorted(state.pulls.values(), key=lambda p: p.iteration):
        if p.iteration < iteration and p.rewards is not None:
            for dim, arm in p.arms.items():
                old = stats[dim][arm]
                stats[dim][arm] = ArmStats(old.pulls + 1, old.total + p.rewards[dim])
    return replace(state, stats=stats)


def with_pending(state: BanditState, pending: Iterable[Mapping[str, str]]) -> BanditState:
    """``state`` with each pending pull (chosen this round, not yet rewarded) counted: its arm's count
    +1 at the arm's current mean (0 for an arm never rewarded), so parallel choices spread over arms."""
    stats = {dim: dict(arms) for dim, arms in state.stats.items()}
    for arms in pending:
        for dim, arm in arms.items():
            old = stats[dim][arm]
            stats[dim][arm] = ArmStats(old.pulls + 1, old.total + old.mean)
    return replace(state, stats=stats)


def pending_counts(pending: Iterable[Mapping[str, str]]) -> dict[str, dict[str, int]]:
    """Per dimension, how many pending pulls hold each arm (what a parallel choice records)."""
    out: dict[str, dict[str, int]] = {dim: {} for dim in DIMENSIONS}
    for arms in pending:
        for dim, arm in arms.items():
            out[dim][arm] = out[dim].get(arm, 0) + 1
    return out


# ---------------------------------------------------------------------------- choosing


def _rng(seed: int, iteration: int, dim: str, purpose: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}/{iteration}/{dim}/{purpose}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def ucb_scores(stats: Mapping[str, ArmStats], c: float) -> dict[str, dict[str, float | int | None]]:
    """Per arm: pulls, mean, exploration bonus and score (bonus and score are None for an untried arm)."""
    total = sum(s.pulls for s in stats.values())
    out: dict[str, dict[str, float | int | None]] = {}
    for arm, s in stats.items():
        if s.pulls == 0:
            out[arm] = {"pulls": 0, "mean": None, "bonus": None, "score": None}
            continue
        bonus = c * math.sqrt(math.log(total) / s.pulls)
        out[arm] = {"pulls": s.pulls, "mean": round(s.mean, 6), "bonus": round(bonus, 6),
                    "score": round(s.mean + bonus, 6)}
    return out


def _best(arms: tuple[str, ...], value: Mapping[str, float], stats: Mapping[str, ArmStats]) -> str:
    """The arm with the highest value; ties to fewer pulls, then to the earlier arm."""
    top = max(value[a] for a in arms)
    tied = [a for a in arms if value[a] >= top - _TIE]
    return min(tied, key=lambda a: (stats[a].pulls, arms.index(a)))


def check_policy(*, c: float, policy: str, epsilon: float) -> None:
    """``RunStateError`` naming the bad value when a bandit setting is out of range."""
    if policy not in POLICIES:
        raise RunStateError(f"unknown bandit policy {policy!r}", hint=did_you_mean(policy, POLICIES, "policy"))
    if not c >= 0:
        raise RunStateError(f"the UCB exploration constant c must be 0 or more, got {c}",
                            hint="the default is 50 (rewards are on a 0-100 scale)")
    if not 0 <= epsilon <= 1:
        raise RunStateError(f"epsilon must be between 0 and 1, got {epsilon}", hint="the default is 0.1")


@dataclass(frozen=True)
class Choice:
    """A configuration and, per dimension, why each arm was chosen."""

    arms: dict[str, str]
    why: dict[str, dict[str, Any]]


def choose(
    state: BanditState, *, c: float = DEFAULT_C, policy: str = "ucb", epsilon: float = DEFAULT_EPSILON,
    recommended: Mapping[str, str] | None = None, seed: int = 0, iteration: int | None = None,
) -> Choice:
    """The next configuration (see the module docstring for the rules); pure and deterministic."""
    check_policy(c=c, policy=policy, epsilon=epsilon)
    rec = check_arms(recommended, what="the warm-start recommendation") if recommended else (state.recommended or {})
    it = state.next_iteration if iteration is None else iteration
    arms: dict[str, str] = {}
    why: dict[str, dict[str, Any]] = {}
    for dim, choices in DIMENSIONS.items():
        stats = state.stats[dim]
        untried = [a for a in choices if stats[a].pulls == 0]
        scores = ucb_scores(stats, c)
        if untried:
            if rec.get(dim) in untried:
                arm, rule = rec[dim], "untried: the warm-start recommendation"
            else:
                arm, rule = _rng(seed, it, dim, "untried").choice(untried), "untried: seeded random"
        elif policy == "ucb":
            arm = _best(choices, {a: float(scores[a]["score"] or 0.0) for a in choices}, stats)
            rule = f"ucb (c={c:g})"
        else:
            rng = _rng(seed, it, dim, "epsilon")
            if rng.random() < epsilon:
                arm, rule = rng.choice(choices), f"explore (epsilon={epsilon:g})"
            else:
                arm = _best(choices, {a: stats[a].mean for a in choices}, stats)
                rule = f"exploit: best mean (epsilon={epsilon:g})"
        arms[dim] = arm
        why[dim] = {"arm": arm, "rule": rule, "untried": untried, "pulls": state.dimension_pulls(dim),
                    "scores": scores}
    return Choice(arms, why)


def ranking(state: BanditState) -> list[dict[str, Any]]:
    """Rewarded pulls, best first: by score (mean of execution and mean dimension reward), then
    execution score, then the earlier iteration."""
    done = [p for p in state.pulls.values() if p.rewarded]
    done.sort(key=lambda p: (-(p.score or 0.0), -(p.execution or 0.0), p.iteration))
    return [{"rank": i, "branch": p.branch, "iteration": p.iteration, "arms": dict(p.arms),
             "score": round(p.score or 0.0, 6), "execution": p.execution, "rewards": dict(p.rewards or {})}
            for i, p in enumerate(done, start=1)]


RANKING_RULE = "score = (execution + mean of the dimension rewards) / 2; ties: execution, then earlier iteration"
