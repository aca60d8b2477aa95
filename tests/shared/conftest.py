"""Fixtures for the shared-storage tests (helpers in ``shared.machines``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from shared.machines import LeaseClock, Machine, counting_config

from codirector.store.leases import CLOCK_FILE

from processes import ForkServer


@pytest.fixture
def machine(tmp_path: Path, fork_server: ForkServer):  # type: ignore[no-untyped-def]
    """A factory of simulated machines (each with its own home, cache and call log); their commands are real
    processes forked from the session's ``fork_server``."""

    def make(name: str, **kw) -> Machine:  # type: ignore[no-untyped-def]
        m = Machine(home=tmp_path / name / "home", server=fork_server, **kw)
        m.calls = tmp_path / name / "calls.log"
        m.home.parent.mkdir(parents=True, exist_ok=True)
        return m

    return make


@pytest.fixture
def counting(tmp_path: Path) -> Path:
    return counting_config(tmp_path / "counting.toml")


@pytest.fixture
def lease_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LeaseClock:
    """The lease clock of this test: its own leases and those of every `codirector` process it starts (their
    environment is this process's) move on when the test says (``LeaseClock.advance``), not by sleeping."""
    clock = LeaseClock(tmp_path / "lease-clock")
    monkeypatch.setenv(CLOCK_FILE, str(clock.path))
    return clock
