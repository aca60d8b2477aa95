"""Parallel Co-Director pulls (``direct --parallel P``, docs/architecture.md §10): P pulls per round, run as P jobs.

A round of iterations ``start .. start+P-1``:
1. choose every pull of the round not yet chosen, in order, each on the statistics at the round's
   start with the pulls already chosen in the round counted as pending (``bandit.before`` and
   ``bandit.with_pending``); each choice is a ``DirectionChosen`` whose ``why`` records the round and
   the pending counts it saw;
2. write each pull's storyline and create its branch (the director's calls, on main, in order);
3. run the round's branches as jobs on the pool the director was handed (Ray workers, threads), or,
   without one, in this process one after another;
4. judge each pull in order (``RewardObserved`` on main).

Invariant: every step is decided by main's log alone, so ``resume`` of a brief cut short mid-round
chooses the same arms, skips what is done, and ends with the bandit state of an uninterrupted run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from codirector.engine.director import bandit
from codirector.engine.jobs import Job, budget_stop
from codirector.engine.workspace import Workspace
from codirector.errors import RunStateError

if TYPE_CHECKING:
    from codirector.engine.jobs import Pool
    from codirector.events import RecordedEvent


class Pilot(Protocol):
    """What a round needs of the director's run (``engine.director.direction``'s pilot)."""

    ws: Workspace
    story_id: str

    def choose(self, state: bandit.BanditState, iteration: int, *, seen: bandit.BanditState | None = None,
               extra: dict[str, Any] | None = None) -> bandit.BanditState:
        ...

    def prepare(self, state: bandit.BanditState, pull: bandit.Pull, total: int, *, before: int | None = None) -> None:
        ...

    def run(self, pull: bandit.Pull) -> None:
        ...

    def count(self, live: int, reused: int, matched: int = 0, by_kind: dict[str, int] | None = None) -> None:
        ...

    def judge(self, pull: bandit.Pull) -> RecordedEvent:
        ...


def run_rounds(pilot: Pilot, state: bandit.BanditState, iterations: int, parallel: int,
               pool: Pool | None) -> bandit.BanditState:
    """Finish every round of a parallel director; the final bandit state. Each round's branches run as jobs
    on ``pool`` (the caller's), or, without one, here one after another (``pilot.run``)."""
    for start in range(1, iterations + 1, parallel):
        members = list(range(start, min(start + parallel, iterations + 1)))
        seen = bandit.before(state, start)
        for it in members:
            if it not in state.pulls:
                pending = [state.pulls[j].arms for j in members if j < it]
                extra = {"round": (start - 1) // parallel + 1, "parallel": parallel,
                         "pending": bandit.pending_counts(pending)}
                state = pilot.choose(state, it, seen=bandit.with_pending(seen, pending), extra=extra)
        todo = [state.pulls[it] for it in members if not state.pulls[it].rewarded]
        for pull in todo:
            pilot.prepare(state, pull, iterations, before=start)
        if pool is None:
            for pull in todo:
                pilot.run(pull)
        else:
            _run_on_pool(pilot, pool, [Job(pilot.story_id, pull.branch) for pull in todo])
        for pull in todo:
            state = bandit.apply(state, pilot.judge(pull).event)
    return state


def _run_on_pool(pilot: Pilot, pool: Pool, jobs: list[Job]) -> None:
    """Run a round's branches as jobs; raise what one process would have (the budget's stop, or a failure)."""
    rows = pool.run(jobs)
    for row in rows:
        pilot.count(row.calls_made, row.calls_recorded)
    for row in rows:
        stopped = budget_stop(pilot.ws, row)
        if stopped is not None:  # what the in-process run raises itself
            raise stopped
        if not row.ok:
            raise RunStateError(f"{row.story_id}/{row.branch} {row.status} on {row.worker}: {row.error}",
                                hint=row.hint or f"`codirector resume {pilot.story_id}` continues the director")
