"""The budget's account (engine.recording.account): holds of calls in flight count against the cap, an
unbounded first call goes one at a time per model, and no hold is lost (settled, released, or settled at
its worst case when its process died). The Ray-shared account is this same object in an actor
(tests/scale/test_ray_budget.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from codirector.engine.recording.account import Account
from codirector.engine.recording.budget import Budget, spending
from codirector.engine.studio import Studio
from codirector.generators.prices import Price, PriceTable


def test_holds_count_against_the_cap_until_settled_or_released() -> None:
    account = Account(limit_usd=0.25)
    a = account.reserve("w0", "img", 0.10)
    b = account.reserve("w1", "img", 0.10)
    assert a.ticket is not None and b.ticket is not None and b.committed == pytest.approx(0.10)
    refused = account.reserve("w2", "img", 0.10)  # 0.20 held + 0.10 > 0.25, though nothing is spent yet
    assert refused.ticket is None and refused.worst == 0.10 and refused.committed == pytest.approx(0.20)
    account.settle(a.ticket, "img", 0.04)  # cheaper than its worst case: the difference is free again
    account.release(b.ticket)  # failed: nothing billed
    assert account.spent_usd == pytest.approx(0.04) and account.held == {}
    assert account.reserve("w2", "img", 0.10).ticket is not None


def test_an_unbounded_first_call_goes_alone_then_the_dearest_bounds_the_rest() -> None:
    account = Account(limit_usd=1.0)
    first = account.reserve("w0", "gpu", None)
    assert first.ticket is not None and first.unbounded and first.worst == 0.0
    assert account.reserve("w1", "gpu", None).wait  # the other worker waits for the first call's cost
    account.settle(first.ticket, "gpu", 0.3)
    second = account.reserve("w1", "gpu", None)
    assert second.ticket is not None and second.worst == 0.3 and not second.unbounded


def test_a_dead_holder_is_settled_at_its_worst_case() -> None:
    account = Account(limit_usd=1.0)
    account.reserve("ray-0", "img", 0.2)
    probe = account.reserve("ray-0", "gpu", None)
    account.reserve("ray-1", "img", 0.2)
    assert account.drop_holder("ray-0") == pytest.approx(0.2)
    assert account.spent_usd == pytest.approx(0.2) and len(account.held) == 1
    assert probe.ticket not in account.held and not account.probes  # the next first call may go


def test_a_branch_is_counted_once() -> None:
    account = Account(limit_usd=1.0)
    account.count("pier", "main", [("img", 0.1), ("img", 0.3)])
    account.count("pier", "main", [("img", 0.1)])
    assert account.spent_usd == pytest.approx(0.4) and account.dearest == {"img": 0.3}
    assert account.counts("pier", "main") and not account.counts("pier", "alt")


def test_budget_holds_the_checked_call_until_charge_or_release() -> None:
    prices = PriceTable({"img": Price(per_image=0.1, source="test")})
    budget = Budget(0.25, prices)
    assert budget.over("x", "img", {"images": 1}) is None
    assert budget.spent_usd == 0 and budget.ledger.committed == pytest.approx(0.1)  # type: ignore[attr-defined]
    assert budget.charge("x", "img", {"images": 1}) == pytest.approx(0.1)
    assert budget.over("x", "img", {"images": 1}) is None
    budget.release()  # the call failed
    assert budget.spent_usd == pytest.approx(0.1) and budget.ledger.held == {}  # type: ignore[attr-defined]
    assert budget.over("x", "img", {"images": 2}) == pytest.approx(0.2)  # 0.1 + 0.2 > 0.25: refused
    assert spending(None).over("x", "img", {"images": 99}) is None  # no limit: only meters


QUERY = """
import json, sys
from codirector.cli import main
sys.argv = ["codirector", "--home", sys.argv[1], "stories", "--json"]
try:
    main()
except SystemExit as e:
    assert not e.code, e.code
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "ray" or m.endswith("scale.ray_pool"))))
"""


def test_a_query_command_does_not_import_ray(tmp_path: Path) -> None:
    """`codirector stories`, run as its own process, with Ray installed: neither Ray nor the Ray pool (where the
    shared budget account lives) is imported."""
    Studio(tmp_path / "home").init()
    done = subprocess.run([sys.executable, "-c", QUERY, str(tmp_path / "home")], capture_output=True, text=True,
                          check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
