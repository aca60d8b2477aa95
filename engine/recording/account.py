"""A budget's account: what was spent, what is held for calls in flight, and the cap (pure, no I/O).

    account = Account(limit_usd=2.0)
    hold = account.reserve("ray-0", "gpt-4.1", 0.12)       # before a live call: its worst case
    if hold.ticket is None: ...                             # refused: committed + worst > limit
    account.settle(hold.ticket, "gpt-4.1", 0.03)           # after it: the hold becomes the actual cost
    account.release(hold.ticket)                            # or the call failed: nothing was billed

One ``Account`` serves one command. In one process the ``Budget`` holds it directly; with Ray
workers it lives in one actor (``engine.scale.ray_pool``) and every worker's ``Budget`` and the
driver's reach it there, so the check and the hold are one step for all of them.

Invariants:
- ``committed`` = spent + every hold. A reservation fits when committed + worst <= limit, so calls
  whose worst cases are exact (a backend's ``usage_bound``) spend at most the limit together, however
  many run at once: a hold only ever turns into an actual cost no larger than itself.
- A model whose backend states no worst case is bounded by the dearest call of it settled so far.
  Its first call (no dearest yet) is not bounded; only one such first call of a model is in flight
  at a time (``probe``): a second asks again once it has settled (``Hold.wait``), so that, as in one
  process, one call per model goes unbounded. A later call costing more than the dearest before it
  can pass the limit by that excess, at most one such call per process in flight at the end.
- A branch's recorded spend is counted once (``count``), whoever asks first.
- A hold is never lost: ``settle`` (answered), ``release`` (the call failed: nothing billed), or
  ``drop_holder`` (its process died: each hold is settled at its worst case, since the call may have
  been billed before the process died and the log cannot say).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

SLACK = 1e-12  # float noise: a call that fits exactly is not refused


@dataclass(frozen=True)
class Hold:
    """The answer to a reservation. ``ticket``: to settle or release (``None``: refused, or ``wait``).

    ``worst``: the bound the call was checked with; ``committed``: spent + holds when it was checked;
    ``unbounded``: a first call with no worst case (let through at 0); ``wait``: ask again soon."""

    ticket: int | None
    worst: float = 0.0
    committed: float = 0.0
    unbounded: bool = False
    wait: bool = False


class Ledger(Protocol):
    """Where a ``Budget`` keeps its account: an ``Account`` here, or one shared by many processes."""

    @property
    def limit_usd(self) -> float | None: ...

    def spent(self) -> float: ...

    def counts(self, story_id: str, branch: str) -> bool: ...

    def count(self, story_id: str, branch: str, costs: Sequence[tuple[str, float]]) -> None: ...

    def reserve(self, holder: str, model: str, bound: float | None) -> Hold: ...

    def settle(self, ticket: int | None, model: str, cost: float | None) -> None: ...

    def release(self, ticket: int) -> None: ...


@dataclass
class Account:
    """Spending against an optional limit (USD), with the holds of calls in flight."""

    limit_usd: float | None = None
    spent_usd: float = 0.0
    counted: set[tuple[str, str]] = field(default_factory=set)
    dearest: dict[str, float] = field(default_factory=dict)
    held: dict[int, tuple[str, str, float]] = field(default_factory=dict)  # ticket -> holder, model, worst
    probes: dict[str, int] = field(default_factory=dict)  # model -> ticket of its unbounded first call
    next_ticket: int = 1

    @property
    def committed(self) -> float:
        return self.spent_usd + sum(worst for _, _, worst in self.held.values())

    def spent(self) -> float:
        return self.spent_usd

    def counts(self, story_id: str, branch: str) -> bool:
        """Whether ``branch``'s recorded spend is counted already."""
        return (story_id, branch) in self.counted

    def count(self, story_id: str, branch: str, costs: Sequence[tuple[str, float]]) -> None:
        """Add a branch's recorded calls, ``(model, USD)`` each, unless that branch is counted already."""
        if (story_id, branch) in self.counted:
            return
        self.counted.add((story_id, branch))
        for model, cost in costs:
            self._add(model, cost)

    def reserve(self, holder: str, model: str, bound: float | None) -> Hold:
        """Hold ``bound`` (the call's worst case; ``None``: its backend states none) for ``holder``."""
        committed = self.committed
        if self.limit_usd is None:
            return Hold(self._hold(holder, model, 0.0), 0.0, committed)
        unbounded = False
        if bound is None:
            bound = self.dearest.get(model)
            if bound is None:
                if model in self.probes:
                    return Hold(None, 0.0, committed, wait=True)
                bound, unbounded = 0.0, True
        if committed + bound > self.limit_usd + SLACK:
            return Hold(None, bound, committed)
        ticket = self._hold(holder, model, bound)
        if unbounded:
            self.probes[model] = ticket
        return Hold(ticket, bound, committed, unbounded=unbounded)

    def settle(self, ticket: int | None, model: str, cost: float | None) -> None:
        """The call of ``ticket`` (``None``: an unchecked call) was answered and cost ``cost`` (``None``: unpriced)."""
        if ticket is not None:
            self._unhold(ticket)
        if cost is not None:
            self._add(model, cost)

    def release(self, ticket: int) -> None:
        """The call of ``ticket`` failed or was never made: drop its hold, nothing spent."""
        self._unhold(ticket)

    def drop_holder(self, holder: str) -> float:
        """``holder``'s process died: settle each of its holds at its worst case; the USD so settled."""
        tickets = [t for t, (who, _, _) in self.held.items() if who == holder]
        total = 0.0
        for t in tickets:
            worst = self.held[t][2]
            self._unhold(t)
            self.spent_usd += worst
            total += worst
        return total

    def final(self, holders: Sequence[str]) -> Account:
        """This account once ``holders`` (stopped processes) are dropped (``drop_holder``): what a driver keeps."""
        for holder in holders:
            self.drop_holder(holder)
        return self

    def _hold(self, holder: str, model: str, worst: float) -> int:
        ticket, self.next_ticket = self.next_ticket, self.next_ticket + 1
        self.held[ticket] = (holder, model, worst)
        return ticket

    def _unhold(self, ticket: int) -> None:
        found = self.held.pop(ticket, None)
        if found is not None and self.probes.get(found[1]) == ticket:
            del self.probes[found[1]]

    def _add(self, model: str, cost: float) -> None:
        self.spent_usd += cost
        self.dearest[model] = max(cost, self.dearest.get(model, 0.0))


__all__ = ["SLACK", "Account", "Hold", "Ledger"]
