"""What a branch cost: its model calls' recorded usage x the prices in force when asked.

A projection of ``ModelCalled`` events (nothing here writes, and no price is ever stored):
``branch_cost`` totals a branch's spend, broken down by shot, agent (or call kind, for image,
video and embedding calls) or model, and says what the recording saved.

Invariants:
- Spent = the branch's own answered calls (events on the branch itself). The calls of its lineage
  up to the fork were made and paid by the parent: they are *shared*, reported with what they cost
  the parent (``shared_usd``), counted as served by the recording (``reused_calls``,
  ``saved_usd``), and never as spent again.
- A replay's scratch branch made no call: its ``ModelCalled`` events are copies of the recording
  (``served_from_recording``), so it spends 0 and ``saved_usd`` is what they would have cost.
- A call whose model has no price (or whose usage its price cannot read) is *unpriced*: counted,
  its usage summed per model in ``unpriced_usage``, its model listed in ``unpriced``; never 0.
  ``rows`` sum the usage of the calls spent here, priced or not.
- A failed call (``error`` set) is counted in ``failed_calls`` and costs nothing.
- ``sum(row.usd for row in rows) == total_usd`` and ``sum(row.saved_usd ...) == saved_usd``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from codirector.events import RecordedEvent
from codirector.generators.prices import PriceTable

By = Literal["shot", "agent", "model"]
BY: tuple[str, ...] = ("shot", "agent", "model")


def add_usage(total: dict[str, float], usage: Mapping[str, Any] | None, prefix: str = "") -> None:
    """Sum the numbers of ``usage`` into ``total`` (nested details as dotted keys; text such as sizes skipped)."""
    for key, value in (usage or {}).items():
        if isinstance(value, Mapping):
            add_usage(total, value, f"{prefix}{key}.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            total[prefix + key] = total.get(prefix + key, 0) + value


@dataclass
class CostRow:
    """One line of the breakdown: spent and saved by one shot, agent or model."""

    key: Any
    calls: int = 0
    usd: float = 0.0
    unpriced_calls: int = 0
    reused_calls: int = 0
    saved_usd: float = 0.0
    usage: dict[str, float] = field(default_factory=dict)

    def to_json(self, by: str) -> dict[str, Any]:
        return {by: self.key, "calls": self.calls, "usd": round(self.usd, 12), "unpriced_calls": self.unpriced_calls,
                "reused_calls": self.reused_calls, "saved_usd": round(self.saved_usd, 12), "usage": self.usage}


@dataclass
class CostReport:
    """A branch's spend, what its shared prefix cost the parent, what the recording saved, and the rows."""

    story: str
    branch: str
    by: str
    total_usd: float = 0.0
    calls: int = 0
    failed_calls: int = 0
    unpriced: list[str] = field(default_factory=list)
    unpriced_usage: dict[str, dict[str, float]] = field(default_factory=dict)
    reused_calls: int = 0
    saved_usd: float = 0.0
    shared_calls: int = 0
    shared_usd: float = 0.0
    rows: list[CostRow] = field(default_factory=list)
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)  # the price of each model met, and its source

    def row(self, key: Any) -> CostRow | None:
        return next((r for r in self.rows if r.key == key), None)

    def to_json(self) -> dict[str, Any]:
        """The stable ``codirector cost --json`` document."""
        return {"story": self.story, "branch": self.branch, "by": self.by, "total_usd": round(self.total_usd, 12),
                "calls": self.calls, "failed_calls": self.failed_calls, "unpriced": list(self.unpriced),
                "unpriced_usage": self.unpriced_usage, "reused_calls": self.reused_calls,
                "saved_usd": round(self.saved_usd, 12), "shared_calls": self.shared_calls,
                "shared_usd": round(self.shared_usd, 12), "rows": [r.to_json(self.by) for r in self.rows],
                "prices": self.prices}


def _key(ev: RecordedEvent, by: str) -> Any:
    p = ev.payload
    if by == "shot":
        return ev.shot
    if by == "agent":
        return p.get("agent") or p["kind"]
    return p["model"]


def _order(key: Any) -> tuple[int, Any]:
    return (0, "") if key is None else (1, key)


def branch_cost(
    events: Iterable[RecordedEvent], *, story_id: str, branch: str, prices: PriceTable, by: str = "shot",
    served_from_recording: bool = False,
) -> CostReport:
    """The cost of ``branch`` from its events (its lineage included), at ``prices``, broken down ``by``."""
    report = CostReport(story_id, branch, by)
    rows: dict[Any, CostRow] = {}
    unpriced: set[str] = set()
    for ev in events:
        if ev.type != "ModelCalled":
            continue
        p = ev.payload
        own = ev.branch == branch
        if p.get("error") is not None:
            report.failed_calls += own
            continue
        backend, model, usage = str(p["backend"]), str(p["model"]), p.get("usage")
        price = prices.price(backend, model)
        if price is not None:
            report.prices.setdefault(model, price.to_json())
        cost = None if price is None else prices.cost(backend, model, usage)
        row = rows.setdefault(_key(ev, by), CostRow(_key(ev, by)))
        if cost is None:
            unpriced.add(model)
            add_usage(report.unpriced_usage.setdefault(model, {}), usage)
        if own and not served_from_recording:  # spent here
            report.calls += 1
            row.calls += 1
            add_usage(row.usage, usage)
            if cost is None:
                row.unpriced_calls += 1
            else:
                report.total_usd += cost
                row.usd += cost
            continue
        report.reused_calls += 1  # served by the recording: the parent's prefix, or a replay's copy
        row.reused_calls += 1
        if not own:
            report.shared_calls += 1
            report.shared_usd += cost or 0.0
        if cost is not None:
            report.saved_usd += cost
            row.saved_usd += cost
    report.unpriced = sorted(unpriced)
    report.rows = [rows[k] for k in sorted(rows, key=_order)]
    return report


@dataclass
class Spend:
    """Totals over several branches or stories (a brief's pulls, a bench's methods): USD spent by each."""

    usd: dict[str, float] = field(default_factory=dict)
    unpriced: dict[str, list[str]] = field(default_factory=dict)  # name -> its unpriced models (only if any)

    def add(self, name: str, report: CostReport) -> None:
        self.usd[name] = self.usd.get(name, 0.0) + report.total_usd
        if report.unpriced:
            self.unpriced[name] = sorted({*self.unpriced.get(name, []), *report.unpriced})

    @property
    def total_usd(self) -> float:
        return sum(self.usd.values())

    def line(self, name: str) -> str:
        """``$0.1234`` (with ``+ unpriced`` when some of it has no price)."""
        if name not in self.usd:
            return "-"
        return f"${self.usd[name]:.4f}" + (" + unpriced" if name in self.unpriced else "")

    def to_json(self) -> dict[str, Any]:
        return {"total_usd": round(self.total_usd, 12), "usd": {k: round(v, 12) for k, v in self.usd.items()},
                "unpriced": self.unpriced}


__all__ = ["BY", "By", "CostReport", "CostRow", "Spend", "add_usage", "branch_cost"]
