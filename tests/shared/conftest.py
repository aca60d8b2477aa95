"""Fixtures for the shared-storage tests (helpers in ``shared.machines``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from shared.machines import Machine, counting_config


@pytest.fixture
def machine(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A factory of simulated machines (each with its own home, cache and call log)."""

    def make(name: str, **kw) -> Machine:  # type: ignore[no-untyped-def]
        m = Machine(home=tmp_path / name / "home", **kw)
        m.calls = tmp_path / name / "calls.log"
        m.home.parent.mkdir(parents=True, exist_ok=True)
        return m

    return make


@pytest.fixture
def counting(tmp_path: Path) -> Path:
    return counting_config(tmp_path / "counting.toml")
