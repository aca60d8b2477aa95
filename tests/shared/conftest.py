"""Fixtures for the shared-storage tests (helpers in ``shared.machines``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from shared.machines import Machine, counting_config

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
