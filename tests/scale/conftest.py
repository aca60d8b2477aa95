"""Fixtures for the scale tests: ONE local Ray per pytest run (session), started with its own HOME and
temp folder; workers load the counting backends (tests/codirector_test_plugins.py) as a plugin."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    ray = pytest.importorskip("ray", reason='Ray is not installed: pip install "codirector[ray]"')
    tmp = Path(tempfile.mkdtemp(prefix="codirector-ray-"))
    saved = {k: os.environ.get(k) for k in ("HOME", "RAY_TMPDIR", "PYTHONPATH", "CODIRECTOR_PLUGINS")}
    os.environ.update(HOME=str(tmp), RAY_TMPDIR=str(tmp / "r"), CODIRECTOR_PLUGINS="codirector_test_plugins",
                      PYTHONPATH=os.pathsep.join([str(TESTS), saved["PYTHONPATH"] or ""]))
    try:  # the workers inherit this environment
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    yield
    ray.shutdown()


@pytest.fixture
def counting_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The counting backends in this process and in the workers (forwarded CODIRECTOR_* settings); the call log."""
    log = tmp_path / "calls.log"
    monkeypatch.setenv("CODIRECTOR_PLUGINS", "codirector_test_plugins")
    monkeypatch.setenv("CODIRECTOR_TEST_CALL_LOG", str(log))
    monkeypatch.setenv("CODIRECTOR_LEASE_TTL", "1")
    return log
