"""A command's spending account: what the branches it works on spent, and the cap ``--budget USD``.

The call recorder asks it before every live call (``over``: the call's worst case is held in the
account) and tells it after (``charge``: the hold becomes the actual cost; ``release``: the call
failed, nothing billed); a ``Budget`` without a limit only meters, so every run can say what it
spent and what the recording saved it. The account is ``engine.recording.account.Account``: here
in this process, or shared by every worker of a capped Ray pool (``engine.scale.ray_pool``).

Invariants:
- The check comes before a call reaches a backend: spent so far + the holds of calls in flight
  (other workers') + the call's worst case (from the request: its max_tokens, its image size, its
  video length; see ``generators.prices``) must stay within the limit, else the recorder appends
  ``BudgetReached`` (its ``spent_usd`` is that spent + holds) and stops with ``BudgetExceeded`` and
  nothing is called. With exact worst cases, a budgeted command spends at most its limit, on one
  process or on N workers.
- Spent so far = the recorded spend of every branch the budget covers, each counted once from the
  log (``count``; a brief or a bench counts its stories up front), plus the live calls charged
  since. Answers served from the recording are never charged.
- Under a limit every model a run may call needs a price: an unpriced model cannot be bounded, so
  it is refused before the first call, with the ``[prices]`` line that fixes it.
- A call whose worst case its backend cannot state beforehand (a local GPU backend's seconds) is
  bounded by the dearest call of that model seen so far; its first call is not bounded (one such
  call per model at a time, whatever the number of workers), and the budget's ``notes`` say so.
  Such a call can pass the limit by what it costs above its bound: in one process by one call's
  excess, on N workers by at most N calls' (those in flight at once, one per worker).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from codirector.engine.recording.account import Account, Ledger
from codirector.errors import BudgetExceeded, ConfigError, InvalidArgument
from codirector.events import BudgetReached, RecordedEvent
from codirector.generators.prices import PriceTable, call_cost
from codirector.store.event_store import EventStore

PROBE_POLL_S = 0.05  # how often a call waits on another process's unbounded first call of its model


class Budget:
    """Spending of one command against an optional limit (USD), with the prices in force.

    The account itself (spent, holds, the limit) is ``ledger``: an ``Account`` in this process, or
    one shared with other processes (``engine.scale.ray_pool`` swaps it in for a capped Ray pool)."""

    def __init__(self, limit_usd: float | None = None, prices: PriceTable | None = None, *,
                 ledger: Ledger | None = None, holder: str = "local") -> None:
        self.prices = prices if prices is not None else PriceTable.builtin()
        self.ledger: Ledger = ledger if ledger is not None else Account(limit_usd)
        self.holder = holder  # whose holds these are, when the account is shared
        self.notes: list[str] = []
        # the hold of the live call checked last, until it is settled: one live call at a time per Budget (a worker
        # runs its jobs, and a job its calls, one after another; concurrent workers each have their own Budget)
        self._ticket: int | None = None
        self._committed = 0.0  # spent + holds when the last call was refused

    @property
    def limit_usd(self) -> float | None:
        return self.ledger.limit_usd

    @property
    def capped(self) -> bool:
        return self.limit_usd is not None

    @property
    def spent_usd(self) -> float:
        return self.ledger.spent()

    def count(self, story_id: str, branch: str, events: Iterable[RecordedEvent]) -> None:
        """Add what ``branch``'s own answered calls among ``events`` cost (once per branch)."""
        if self.ledger.counts(story_id, branch):
            return
        costs = []
        for ev in events:
            if ev.type == "ModelCalled" and ev.branch == branch and ev.payload.get("error") is None:
                p = ev.payload
                cost = self.prices.cost(str(p["backend"]), str(p["model"]), p.get("usage"))
                if cost is not None:
                    costs.append((str(p["model"]), cost))
        self.ledger.count(story_id, branch, costs)

    def count_story(self, store: EventStore, story_id: str, *, skip: Callable[[str], bool]) -> None:
        """Count every branch of a story but those ``skip`` names (replays: their calls are copies)."""
        for b in store.story(story_id).branches:
            if not skip(b.name) and not self.ledger.counts(story_id, b.name):
                self.count(story_id, b.name, store.read(story_id, b.name, after=b.fork_position,
                                                        types=["ModelCalled"]))

    def require_prices(self, models: Iterable[tuple[str, str]]) -> None:
        """Under a limit, refuse (before any call) the models that have no price: no budget can bound them."""
        if not self.capped:
            return
        missing = sorted({m for backend, m in models if self.prices.price(backend, m) is None})
        if missing:
            first = missing[0]
            raise ConfigError(
                "--budget needs a price for every model the run may call; no price for "
                + ", ".join(map(repr, missing)),
                hint=f'add [prices."{first}"] to the --config file (e.g. per_second = 0.0011, your GPU\'s price per '
                "second of generation; per_second = 0 if it costs you nothing), or run without --budget",
            )

    def over(self, backend: str, model: str, worst: Mapping[str, Any] | None) -> float | None:
        """The call's worst case (USD) when it would take spending past the limit; ``None`` when it fits,
        and then the worst case is held in the account until ``charge`` (answered) or ``release`` (failed)."""
        if self.limit_usd is None:
            return None
        price = self.prices.price(backend, model)
        if price is None:
            self.require_prices([(backend, model)])
            return None  # pragma: no cover - require_prices raised
        hold = self.ledger.reserve(self.holder, model, call_cost(price, worst))
        while hold.wait:  # another process makes this model's unbounded first call: wait for its cost
            time.sleep(PROBE_POLL_S)
            hold = self.ledger.reserve(self.holder, model, call_cost(price, worst))
        if hold.unbounded:
            note = f"the first call to {model!r} was not bounded by the budget (its backend states no worst case)"
            if note not in self.notes:
                self.notes.append(note)
        if hold.ticket is None:
            self._committed = hold.committed
            return hold.worst
        self._ticket = hold.ticket
        return None

    def release(self) -> None:
        """Drop the hold of a checked call that was not answered (it failed): nothing was billed."""
        ticket, self._ticket = self._ticket, None
        if ticket is not None:
            self.ledger.release(ticket)

    def reached(self, worst: float, *, kind: str, backend: str, model: str, agent: str | None,
                request_key: str) -> BudgetReached:
        """The event recording that a call whose worst case is ``worst`` was not made."""
        return BudgetReached(limit_usd=float(self.limit_usd or 0.0), spent_usd=round(self._committed, 9),
                             call_worst_usd=round(worst, 9), kind=kind, backend=backend,  # type: ignore[arg-type]
                             model=model, agent=agent, request_key=request_key)

    @staticmethod
    def exceeded(mark: BudgetReached, *, shot: int | None, story_id: str, branch: str) -> BudgetExceeded:
        """The error a run stops with after ``mark``: what was spent, the call not made, how to go on."""
        where = story_id + ("" if branch == "main" else f" --branch {branch}")
        what = f"{mark.kind} call" + (f" ({mark.agent})" if mark.agent else "")
        needed = math.ceil((mark.spent_usd + mark.call_worst_usd) * 100) / 100
        return BudgetExceeded(
            f"budget reached: ${mark.spent_usd:.4f} of ${mark.limit_usd:.4f} spent, and the next {what} to "
            f"{mark.model} (shot {shot}) could cost up to ${mark.call_worst_usd:.4f}; it was not made",
            hint=f"continue with a higher budget: `codirector resume {where} --budget {needed:.2f}` or more "
                 "(recorded answers are not paid again)",
            limit_usd=mark.limit_usd, spent_usd=mark.spent_usd, call_worst_usd=mark.call_worst_usd,
        )

    def charge(self, backend: str, model: str, usage: Mapping[str, Any] | None) -> float | None:
        """Add one answered call's cost, settling its hold; returns it (``None``: unpriced, nothing added)."""
        cost = self.prices.cost(backend, model, usage)
        ticket, self._ticket = self._ticket, None
        self.ledger.settle(ticket, model, cost)
        return cost


def spending(limit_usd: float | None, prices: str | os.PathLike[str] | None = None) -> Budget:
    """One command's budget: ``--budget USD`` (``None``: meter only) at the built-in prices and the
    ``[prices]`` of the TOML file ``prices`` (the command's ``--config``)."""
    if limit_usd is not None and (not math.isfinite(limit_usd) or limit_usd < 0):
        raise InvalidArgument(f"--budget must be 0 or more US dollars, got {limit_usd}", hint="e.g. --budget 2.50")
    return Budget(limit_usd, PriceTable.from_file(prices))


__all__ = ["Budget", "spending"]
